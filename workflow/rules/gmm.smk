# TEMPy-ReFF (paper 001): Gaussian-mixture refinement of the fitted model with B-factors and
# OpenMM (refine_gmm), and an ensemble of the refined model with its ensemble map (ensemble).


rule refine_gmm:
    input:
        model="results/{dataset}/fit/model.cif",
        map="results/{dataset}/prepare/map.mrc",
    output:
        model="results/{dataset}/refine_gmm/model.cif",
        trajectory=report(
            "results/{dataset}/refine_gmm/trajectory.tsv",
            caption="../report/gmm_trajectory.rst",
            category="Refinement",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "TEMPy-ReFF convergence"},
        ),
        summary="results/{dataset}/refine_gmm/summary.json",
        provenance="results/{dataset}/refine_gmm/provenance.json",
    params:
        refine=config["refine_gmm"],
        resolution_A=get_resolution,
        seed=config["seed"],
    log:
        "logs/{dataset}/refine_gmm.log",
    benchmark:
        "benchmarks/{dataset}/refine_gmm.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=get_gmm_runtime_min,
    conda:
        "../../envs/refine.yaml"
    container:
        REFINE_CONTAINER
    script:
        "../scripts/refine_gmm.py"


rule ensemble:
    input:
        model="results/{dataset}/refine_gmm/model.cif",
        map="results/{dataset}/prepare/map.mrc",
    output:
        models="results/{dataset}/ensemble/ensemble.cif",
        map="results/{dataset}/ensemble/ensemble.mrc",
        rmsf=report(
            "results/{dataset}/ensemble/rmsf.tsv",
            caption="../report/rmsf.rst",
            category="Refinement",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "ensemble RMSF"},
        ),
        curve="results/{dataset}/ensemble/curve.tsv",
        summary="results/{dataset}/ensemble/summary.json",
        provenance="results/{dataset}/ensemble/provenance.json",
    params:
        ensemble=config["ensemble"],
        resolution_A=get_resolution,
        seed=config["seed"],
    log:
        "logs/{dataset}/ensemble.log",
    benchmark:
        "benchmarks/{dataset}/ensemble.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/refine.yaml"
    container:
        REFINE_CONTAINER
    script:
        "../scripts/ensemble.py"


rule composite:
    input:
        maps=get_component_maps,
        model=get_final_model,
    output:
        map="results/{dataset}/composite/composite.mrc",
        components=report(
            "results/{dataset}/composite/components.tsv",
            caption="../report/composite.rst",
            category="Maps",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "composite components"},
        ),
        provenance="results/{dataset}/composite/provenance.json",
    params:
        composite=config["composite"],
        resolution_A=get_resolution,
    log:
        "logs/{dataset}/composite.log",
    benchmark:
        "benchmarks/{dataset}/composite.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/refine.yaml"
    container:
        REFINE_CONTAINER
    script:
        "../scripts/composite.py"
