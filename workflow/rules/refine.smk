# EM-Refiner flexible refinement of the fitted model (paper 000 Steps 2-3, OpenMM finish):
# fragments (secondary-structure fragments with their hinge loops), then refine_emrefiner.


rule fragments:
    input:
        model="results/{dataset}/fit/model.cif",
        map="results/{dataset}/prepare/map.mrc",
    output:
        table=report(
            "results/{dataset}/fragments/fragments.tsv",
            caption="../report/fragments.rst",
            category="Refinement",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "EM-Refiner fragments"},
        ),
        provenance="results/{dataset}/fragments/provenance.json",
    params:
        resolution_A=get_resolution,
    log:
        "logs/{dataset}/fragments.log",
    benchmark:
        "benchmarks/{dataset}/fragments.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/refine.yaml"
    container:
        REFINE_CONTAINER
    script:
        "../scripts/fragments.py"


rule refine_emrefiner:
    input:
        model="results/{dataset}/fit/model.cif",
        map="results/{dataset}/prepare/map.mrc",
        fragments="results/{dataset}/fragments/fragments.tsv",
    output:
        model="results/{dataset}/refine_emrefiner/model.cif",
        trajectory=report(
            "results/{dataset}/refine_emrefiner/trajectory.tsv",
            caption="../report/trajectory.rst",
            category="Refinement",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "EM-Refiner trajectory"},
        ),
        summary="results/{dataset}/refine_emrefiner/summary.json",
        provenance="results/{dataset}/refine_emrefiner/provenance.json",
    params:
        refine=config["refine_emrefiner"],
        resolution_A=get_resolution,
        seed=config["seed"],
    log:
        "logs/{dataset}/refine_emrefiner.log",
    benchmark:
        "benchmarks/{dataset}/refine_emrefiner.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=get_refine_runtime_min,
    conda:
        "../../envs/refine.yaml"
    container:
        REFINE_CONTAINER
    script:
        "../scripts/refine_emrefiner.py"
