# Simulate a map from the reference model, for datasets whose `map` cell is empty.


rule simulate_map:
    input:
        reference=get_simulation_source,
    output:
        map="results/{dataset}/simulate/map.mrc",
        provenance="results/{dataset}/simulate/provenance.json",
    params:
        simulate=config["simulate"],
        resolution_A=get_resolution,
        seed=config["seed"],
    log:
        "logs/{dataset}/simulate_map.log",
    benchmark:
        "benchmarks/{dataset}/simulate_map.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/simulate_map.py"
