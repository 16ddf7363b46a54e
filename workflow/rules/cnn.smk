# CR-I-TASSER's C-alpha CNN (paper 003): training of the shipped weights (train_cnn, run on request:
# `snakemake train_cnn`) and prediction of C-alpha positions in every dataset's map (cnn_predict).


rule train_cnn:
    input:
        manifest=config["train_cnn"]["manifest"],
    output:
        weights=CNN_WEIGHTS_OUTPUTS["weights"],
        sidecar=CNN_WEIGHTS_OUTPUTS["sidecar"],
        card=CNN_WEIGHTS_OUTPUTS["card"],
        log_table=CNN_WEIGHTS_OUTPUTS["log_table"],
        plot=CNN_WEIGHTS_OUTPUTS["plot"],
    params:
        train=config["train_cnn"],
        # checkpoints live outside the outputs, so an interrupted or extended run resumes from them
        checkpoint_dir=config["train_cnn"]["checkpoint_dir"],
        output_dir=config["train_cnn"]["output_dir"],
    log:
        "logs/train_cnn.log",
    benchmark:
        "benchmarks/all/train_cnn.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=get_train_cnn_runtime_min,
        gpu=1 if config["train_cnn"]["device"] == "cuda" else 0,
    conda:
        cnn_env("train_cnn")
    container:
        cnn_container("train_cnn")
    script:
        "../scripts/train_cnn.py"


rule cnn_predict:
    input:
        unpack(get_cnn_inputs),
        map="results/{dataset}/prepare/map.mrc",
    output:
        model="results/{dataset}/cnn/calpha.cif",
        probability="results/{dataset}/cnn/calpha_probability.mrc",
        summary="results/{dataset}/cnn/summary.json",
        slices=report(
            "results/{dataset}/cnn/slices.png",
            caption="../report/cnn_slices.rst",
            category="C-alpha prediction",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "map and C-alpha probability"},
        ),
        provenance="results/{dataset}/cnn/provenance.json",
    params:
        cnn=config["cnn_predict"],
        # the weights are a shipped resource, not a workflow product: their checksum reruns the
        # predictions when they change, without making every run depend on train_cnn
        weights_sha256=cnn_weights_sha256,
        resolution_A=get_resolution,
    log:
        "logs/{dataset}/cnn_predict.log",
    benchmark:
        "benchmarks/{dataset}/cnn_predict.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=30,
        gpu=1 if config["cnn_predict"]["device"] == "cuda" else 0,
    conda:
        cnn_env("cnn_predict")
    container:
        cnn_container("cnn_predict")
    script:
        "../scripts/cnn_predict.py"
