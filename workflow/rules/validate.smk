# Validate the dataset's model: fit to the prepared map, agreement with the reference when given.


rule validate:
    input:
        model=get_model,
        map="results/{dataset}/prepare/map.mrc",
        reference=get_optional_reference,
    output:
        scores="results/{dataset}/validate/scores.json",
        per_residue=report(
            "results/{dataset}/validate/per_residue.tsv",
            caption="../report/per_residue.rst",
            category="Validation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "per-residue local CC"},
        ),
        provenance="results/{dataset}/validate/provenance.json",
    params:
        validate=config["validate"],
        resolution_A=get_resolution,
    log:
        "logs/{dataset}/validate.log",
    benchmark:
        "benchmarks/{dataset}/validate.tsv"
    threads: 4
    resources:
        mem_mb=4000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/validate.py"
