# Prepare the map: canonical frame, sanity checks, statistics and contour estimates.


rule prepare_map:
    input:
        map=get_raw_map,
        mass_model=get_mass_source,
    output:
        map="results/{dataset}/prepare/map.mrc",
        stats="results/{dataset}/prepare/map_stats.json",
        provenance="results/{dataset}/prepare/provenance.json",
    params:
        prepare=config["prepare"],
        resolution_A=get_resolution,
    log:
        "logs/{dataset}/prepare_map.log",
    benchmark:
        "benchmarks/{dataset}/prepare_map.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/core.yaml"
    container:
        CORE_CONTAINER
    script:
        "../scripts/prepare_map.py"
