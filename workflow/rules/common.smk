# Shared by every step: the dataset table, wildcard constraints, input functions, environments.
#
# Paths in the dataset table are relative to the working directory (where snakemake runs).

import re
from pathlib import Path

import pandas as pd

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# -- dataset table --------------------------------------------------------------------------------

DATASET_PATH_COLUMNS = ("map", "sequence", "model", "reference")


def _number_or_text(value):
    """Float for numeric cells (so the schema can check them), the text itself otherwise."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_datasets(path):
    """Read, validate and check the dataset table; returns a DataFrame indexed by id."""
    if not Path(path).is_file():
        raise WorkflowError(
            f"dataset table {path} not found (config key 'datasets'; "
            f"relative to the working directory {Path.cwd()})"
        )
    table = pd.read_csv(path, sep="\t", dtype=str, comment="#", skip_blank_lines=True)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("id", "resolution_A") if c not in table.columns]
    if missing:
        raise WorkflowError(
            f"dataset table {path} lacks the column(s) {', '.join(missing)}"
        )
    if table.empty:
        raise WorkflowError(f"dataset table {path} has no rows")
    for column in table.columns:
        table[column] = table[column].str.strip()
    table["resolution_A"] = table["resolution_A"].map(_number_or_text)
    validate(table, schema="../../config/schemas/datasets.schema.yaml")
    duplicated = sorted(set(table.loc[table["id"].duplicated(), "id"]))
    if duplicated:
        raise WorkflowError(
            f"dataset table {path}: duplicated id(s) {', '.join(duplicated)}"
        )
    for column in DATASET_PATH_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    text_columns = [c for c in table.columns if c != "resolution_A"]
    table[text_columns] = table[text_columns].fillna("")
    table["resolution_A"] = table["resolution_A"].astype(float)
    if "component_maps" not in table.columns:
        table["component_maps"] = ""
    table["component_maps"] = table["component_maps"].fillna("")
    for row in table.itertuples(index=False):
        components = [c.strip() for c in row.component_maps.split(";") if c.strip()]
        if len(components) == 1:
            raise WorkflowError(
                f"dataset '{row.id}': component_maps names one map; a composite needs two or more (separate with ;)"
            )
        if components and not row.model:
            raise WorkflowError(f"dataset '{row.id}': component_maps need a model to weight them by")
        for column, file in [(c, getattr(row, c)) for c in DATASET_PATH_COLUMNS] + [
            ("component_maps", c) for c in components
        ]:
            if file and not Path(file).is_file():
                raise WorkflowError(
                    f"dataset '{row.id}': {column} file '{file}' does not exist "
                    f"(paths in {path} are relative to the working directory {Path.cwd()})"
                )
    return table.set_index("id", drop=False)


DATASETS = load_datasets(config["datasets"])


# -- models to validate ---------------------------------------------------------------------------
# Every step that produces a model registers its output here, keyed by step name; the validate rule
# runs on each of them (wildcard {step}) and the report shows them all. "input" is the dataset's own
# starting model. A later step family adds e.g. MODEL_OUTPUTS["fit"] = "results/{dataset}/fit/model.cif"
# and a condition in model_steps().
MODEL_OUTPUTS = {
    "input": None,
    "fit": "results/{dataset}/fit/model.cif",
    "refine_emrefiner": "results/{dataset}/refine_emrefiner/model.cif",
    "refine_gmm": "results/{dataset}/refine_gmm/model.cif",
}


def model_steps(dataset_id):
    """Steps whose model exists for a dataset, in pipeline order."""
    if not has_model(dataset_id):
        return []
    steps = ["input"]
    if config["fit"]["enabled"]:
        steps.append("fit")
        if config["refine_emrefiner"]["enabled"]:
            steps.append("refine_emrefiner")
        if config["refine_gmm"]["enabled"]:
            steps.append("refine_gmm")
    return steps


# -- wildcard constraints -------------------------------------------------------------------------


wildcard_constraints:
    dataset="|".join(re.escape(i) for i in DATASETS.index),
    step="|".join(re.escape(s) for s in MODEL_OUTPUTS),


# -- software environments ------------------------------------------------------------------------
# Conda env files are named relative to the step files (../../envs/*.yaml). The container is the
# Apptainer image built from containers/core.def (see containers/README.md), resolved against the
# workflow directory so that the working directory does not matter.

CORE_CONTAINER = str(Path(workflow.basedir) / "containers" / "core.sif")
REFINE_CONTAINER = str(Path(workflow.basedir) / "containers" / "refine.sif")


def cnn_env(section):
    """Conda env of a CNN rule: the CUDA build of torch when its config section asks for "cuda"."""
    return "../../envs/cnn-cuda.yaml" if config[section]["device"] == "cuda" else "../../envs/cnn.yaml"


def cnn_container(section):
    """Apptainer image of a CNN rule (GPU twin for device "cuda", run with --apptainer-args --nv)."""
    name = "cnn-cuda.sif" if config[section]["device"] == "cuda" else "cnn.sif"
    return str(Path(workflow.basedir) / "containers" / name)


# -- helpers and input functions ------------------------------------------------------------------


def dataset(wildcards):
    """The dataset table row of ``wildcards.dataset``."""
    return DATASETS.loc[wildcards.dataset]


def has_model(dataset_id):
    return bool(DATASETS.loc[dataset_id, "model"])


def get_resolution(wildcards):
    return float(dataset(wildcards)["resolution_A"])


def get_reference(wildcards):
    """Reference model of a dataset (required: only asked for where it exists)."""
    reference = dataset(wildcards)["reference"]
    if not reference:
        raise WorkflowError(f"dataset '{wildcards.dataset}' has no reference model")
    return reference


def get_optional_reference(wildcards):
    """Reference model if the dataset has one, else nothing."""
    reference = dataset(wildcards)["reference"]
    return [reference] if reference else []


def get_simulation_source(wildcards):
    """The reference of a dataset whose map is to be simulated."""
    if dataset(wildcards)["map"]:
        raise WorkflowError(
            f"dataset '{wildcards.dataset}' has a map; nothing to simulate"
        )
    return get_reference(wildcards)


def get_raw_map(wildcards):
    """The dataset's own map, or the map simulated from its reference when it has none."""
    row = dataset(wildcards)
    return row["map"] if row["map"] else f"results/{wildcards.dataset}/simulate/map.mrc"


def get_mass_source(wildcards):
    """Model whose mass sets the volume-based contour estimate: the model, else the reference."""
    row = dataset(wildcards)
    return (
        [row["model"]]
        if row["model"]
        else ([row["reference"]] if row["reference"] else [])
    )


def get_starting_model(wildcards):
    """The dataset's starting model (the input of fit)."""
    model = dataset(wildcards)["model"]
    if not model:
        raise WorkflowError(f"dataset '{wildcards.dataset}' has no starting model to fit")
    return model


def get_fit_summary(wildcards):
    """The fit step's summary and pose table, for the report (when the dataset is fitted)."""
    if "fit" not in model_steps(wildcards.dataset):
        return {}
    return {"fit_summary": f"results/{wildcards.dataset}/fit/fit.json",
            "fit_poses": f"results/{wildcards.dataset}/fit/poses.tsv"}


def get_refine_summary(wildcards):
    """The EM-Refiner step's summary and trajectory, for the report (when the dataset is refined)."""
    if "refine_emrefiner" not in model_steps(wildcards.dataset):
        return {}
    folder = f"results/{wildcards.dataset}/refine_emrefiner"
    return {"refine_emrefiner_summary": f"{folder}/summary.json",
            "refine_emrefiner_trajectory": f"{folder}/trajectory.tsv"}


def component_maps(dataset_id):
    """The dataset's aligned component maps (empty: no composite)."""
    cell = DATASETS.loc[dataset_id, "component_maps"]
    return [c.strip() for c in cell.split(";") if c.strip()]


def get_component_maps(wildcards):
    return component_maps(wildcards.dataset)


def get_final_model(wildcards):
    """The last model the pipeline made for a dataset (the composite's consensus model)."""
    steps = model_steps(wildcards.dataset)
    if not steps:
        raise WorkflowError(f"dataset '{wildcards.dataset}' has no model for its composite map")
    step = steps[-1]
    return dataset(wildcards)["model"] if step == "input" else MODEL_OUTPUTS[step].format(dataset=wildcards.dataset)


def get_composite(wildcards):
    """The composite's component table, for the report (datasets with component maps)."""
    if not (config["composite"]["enabled"] and component_maps(wildcards.dataset)):
        return {}
    return {"composite_components": f"results/{wildcards.dataset}/composite/components.tsv"}


def get_gmm_summary(wildcards):
    """TEMPy-ReFF summaries, convergence and ensemble tables, for the report (when they run)."""
    if "refine_gmm" not in model_steps(wildcards.dataset):
        return {}
    folder = f"results/{wildcards.dataset}"
    files = {"refine_gmm_summary": f"{folder}/refine_gmm/summary.json",
             "refine_gmm_trajectory": f"{folder}/refine_gmm/trajectory.tsv",
             "refine_gmm__model": f"{folder}/refine_gmm/model.cif"}
    if config["ensemble"]["enabled"]:
        files.update({"ensemble_summary": f"{folder}/ensemble/summary.json",
                      "ensemble_rmsf": f"{folder}/ensemble/rmsf.tsv",
                      "ensemble_curve": f"{folder}/ensemble/curve.tsv"})
    return files


# Wall-time request (minutes) of refine_gmm per protocol on 2 cores for a ~200-residue chain.
GMM_RUNTIME_MIN = {"fast": 60, "paper": 1440}


def get_gmm_runtime_min(wildcards):
    return GMM_RUNTIME_MIN[config["refine_gmm"]["protocol"]]


# Wall-time request (minutes) of refine_emrefiner per preset on 2 cores for a ~200-residue chain
# (benchmarks/results/refine_emrefiner.md), with room for larger models.
REFINE_RUNTIME_MIN = {"fast": 30, "paper": 720}


def get_refine_runtime_min(wildcards):
    return REFINE_RUNTIME_MIN[config["refine_emrefiner"]["preset"]]


# -- C-alpha CNN (paper 003) ---------------------------------------------------------------------

CNN_WEIGHTS_OUTPUTS = {
    key: str(Path(config["train_cnn"]["output_dir"]) / name)
    for key, name in (("weights", "calpha_net.pt"), ("sidecar", "calpha_net.json"), ("card", "MODEL_CARD.md"),
                      ("log_table", "train_log.tsv"), ("plot", "train_curve.png"))
}

# Seconds per training step on 2 CPU cores for a 40^3 crop (emforge cnn train, batch 1); GPUs ~50x less.
CNN_SECONDS_PER_STEP_CPU = 4.0


def get_train_cnn_runtime_min(wildcards):
    """Wall-time request (minutes) of train_cnn: the configured epochs, validation included."""
    t = config["train_cnn"]
    per_step = CNN_SECONDS_PER_STEP_CPU * (t["crop_vox"] / 40) ** 3 * t["batch_size"]
    if t["device"] == "cuda":
        per_step /= 50
    return int(60 + t["epochs"] * (t["steps_per_epoch"] * per_step + 300) / 60)


def cnn_weights_sha256(wildcards):
    """SHA-256 recorded beside the configured CNN weights (rerun cnn_predict when they change)."""
    import json

    weights = Path(config["cnn_predict"]["weights"])
    sidecar = weights.with_suffix(".json")
    if not weights.is_file() or not sidecar.is_file():
        raise WorkflowError(
            f"C-alpha network weights {weights} (with {sidecar.name}) not found: train them with "
            f"`snakemake train_cnn`, point cnn_predict.weights at a trained calpha_net.pt, or set "
            f"cnn_predict.enabled: false"
        )
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise WorkflowError(f"{sidecar}: not a valid CNN weights sidecar ({exc})")


def get_cnn_inputs(wildcards):
    """Optional inputs of cnn_predict: the sequence (sets the peak count) and the reference (CRscore)."""
    row = dataset(wildcards)
    return {k: row[k] for k in ("sequence", "reference") if row[k]}


def get_cnn_summary(wildcards):
    """The CNN prediction summary and slice view, for the report (when cnn_predict runs)."""
    if not config["cnn_predict"]["enabled"]:
        return {}
    folder = f"results/{wildcards.dataset}/cnn"
    return {"cnn_summary": f"{folder}/summary.json", "cnn_slices": f"{folder}/slices.png"}


def get_model(wildcards):
    """The model a step produced (for {step} = "input": the dataset's starting model)."""
    if wildcards.step == "input":
        model = dataset(wildcards)["model"]
        if not model:
            raise WorkflowError(f"dataset '{wildcards.dataset}' has no model to validate")
        return model
    return MODEL_OUTPUTS[wildcards.step].format(dataset=wildcards.dataset)


def validation_dir(dataset_id, step):
    return f"results/{dataset_id}/validate/{step}"


def get_validation(wildcards):
    """Validation outputs of every model of a dataset, for its report."""
    files = {}
    for step in model_steps(wildcards.dataset):
        folder = validation_dir(wildcards.dataset, step)
        files[f"{step}__scores"] = f"{folder}/scores.json"
        files[f"{step}__per_residue"] = f"{folder}/per_residue.csv"
        files[f"{step}__plots"] = f"{folder}/plots"
    return files


def get_model_steps(wildcards):
    return model_steps(wildcards.dataset)


def all_validations():
    return [
        f"{validation_dir(d, step)}/scores.json"
        for d in DATASETS.index
        for step in model_steps(d)
    ]


def all_reports():
    return expand("results/{dataset}/report.html", dataset=DATASETS.index)
