# Rigid-body placement of the dataset's starting model in its prepared map (EM-Refiner step 1, FFT search).


rule fit:
    input:
        model=get_starting_model,
        map="results/{dataset}/prepare/map.mrc",
    output:
        model="results/{dataset}/fit/model.cif",
        poses=report(
            "results/{dataset}/fit/poses.tsv",
            caption="../report/poses.rst",
            category="Fit",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "ranked poses"},
        ),
        summary="results/{dataset}/fit/fit.json",
        provenance="results/{dataset}/fit/provenance.json",
    params:
        fit=config["fit"],
        resolution_A=get_resolution,
        seed=config["seed"],
    log:
        "logs/{dataset}/fit.log",
    benchmark:
        "benchmarks/{dataset}/fit.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/fit.py"
