# Per-dataset HTML report: numbers and plots of the map and of the model's fit.


rule report:
    input:
        unpack(get_validation),
        map="results/{dataset}/prepare/map.mrc",
        map_stats="results/{dataset}/prepare/map_stats.json",
    output:
        html=report(
            "results/{dataset}/report.html",
            caption="../report/dataset.rst",
            category="Datasets",
            labels={"dataset": "{dataset}", "page": "summary"},
        ),
    params:
        report=config["report"],
        resolution_A=get_resolution,
    log:
        "logs/{dataset}/report.log",
    benchmark:
        "benchmarks/{dataset}/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/report.py"
