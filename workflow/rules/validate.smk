# Validate every model a step produced ({step}; see MODEL_OUTPUTS in common.smk): fit to the prepared
# map, MolProbity-style geometry, and agreement with the reference when the dataset has one.


rule validate:
    input:
        model=get_model,
        map="results/{dataset}/prepare/map.mrc",
        reference=get_optional_reference,
    output:
        scores="results/{dataset}/validate/{step}/scores.json",
        per_residue=report(
            "results/{dataset}/validate/{step}/per_residue.csv",
            caption="../report/per_residue.rst",
            category="Validation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{step}", "table": "per-residue scores"},
        ),
        plots=directory("results/{dataset}/validate/{step}/plots"),
        provenance="results/{dataset}/validate/{step}/provenance.json",
    params:
        validate=config["validate"],
        resolution_A=get_resolution,
        seed=config["seed"],
    log:
        "logs/{dataset}/validate_{step}.log",
    benchmark:
        "benchmarks/{dataset}/validate_{step}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/validate.py"
