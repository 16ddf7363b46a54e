# Per-dataset HTML report (every validated model, the map), and one summary across datasets.


rule report:
    input:
        unpack(get_validation),
        unpack(get_fit_summary),
        unpack(get_refine_summary),
        unpack(get_gmm_summary),
        unpack(get_composite),
        unpack(get_cnn_summary),
        map="results/{dataset}/prepare/map.mrc",
        map_stats="results/{dataset}/prepare/map_stats.json",
    output:
        html=report(
            "results/{dataset}/report.html",
            caption="../report/dataset.rst",
            category="Datasets",
            labels={"dataset": "{dataset}", "page": "report"},
        ),
    params:
        report=config["report"],
        steps=get_model_steps,
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


rule summary:
    input:
        scores=all_validations(),
        reports=all_reports(),
    output:
        tsv="results/summary.tsv",
        html=report(
            "results/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"page": "summary across datasets"},
        ),
    log:
        "logs/summary.log",
    benchmark:
        "benchmarks/all/summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/summary.py"
