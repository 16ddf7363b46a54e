"""Model card of a trained C-alpha network: what it is, how it was made, how well it does.

:func:`model_card` renders Markdown from the weights' JSON sidecar (architecture, SHA-256,
training settings, selected epoch) and the per-epoch training log, so every number on the card
comes from the files it describes (the log's plot: :func:`emforge.plots.cnn_training_plot`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from emforge.cnn.train import sidecar_path

_BAND_PREFIX = "crscore_"


def crscore_columns(log_table: pd.DataFrame) -> list[str]:
    return [c for c in log_table.columns if c.startswith(_BAND_PREFIX)]


def band_label(column: str) -> str:
    lo, hi = column[len(_BAND_PREFIX):].rstrip("A").split("_")
    return f"{lo}-{hi} Å"


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float | np.floating) else str(value)


def _devices(log_table: pd.DataFrame) -> str:
    if "device" not in log_table:
        return "not recorded"
    seen = log_table["device"].fillna("not recorded").astype(str)
    return "; ".join(f"{d} (epochs {', '.join(str(e) for e in log_table['epoch'][seen == d])})"
                     for d in dict.fromkeys(seen))


#: Feature channels of paper 003's network; the card explains a release of another width.
PAPER_CHANNELS = 32


def model_card(weights: str | os.PathLike, log_table: pd.DataFrame, *, command: str, data: Mapping,
               device: str, settings_note: str | None = None) -> str:
    """Markdown model card of ``weights`` (a .pt with its sidecar) trained as logged in ``log_table``.

    Parameters
    ----------
    weights : path of the shipped .pt file
    log_table : the training log (:func:`emforge.cnn.train.train`), one row per epoch
    command : the exact command that produced the weights
    data : ``manifest``, ``n_train_chains``, ``n_validation_chains`` (and anything else worth listing)
    device : where this release was written (the log's ``device`` column says where each epoch ran)
    settings_note : where the command's settings come from (e.g. the workflow's config section)
    """
    record = json.loads(sidecar_path(weights).read_text(encoding="utf-8"))
    meta = record.get("metadata", {})
    settings = meta.get("settings", {})
    arch = record["architecture"]
    bands = crscore_columns(log_table)
    epoch = meta.get("epoch")
    chosen = log_table[log_table["epoch"] == epoch] if epoch is not None else log_table.iloc[0:0]
    wall_h = float(log_table["wall_s"].sum()) / 3600 if len(log_table) else 0.0
    steps = int(settings.get("steps_per_epoch", 0))
    batch = int(settings.get("batch_size", 1))
    lines = [
        "# Model card: emforge C-alpha network (`calpha_net.pt`)", "",
        "A 3D residual CNN after CR-I-TASSER (paper 003, Methods) that turns a cryo-EM density map into a",
        "per-voxel C-alpha probability; `emforge cnn predict` and the workflow rule `cnn_predict` pick",
        "C-alpha peaks from it.", "",
        "## Files", "",
        f"- `{Path(weights).name}`: PyTorch state dict, SHA-256 `{record['sha256']}` (checked on every load)",
        f"- `{sidecar_path(weights).name}`: architecture, voxel size, input channels, checksum, training settings",
        "- `train_log.tsv`, `train_curve.png`: the per-epoch training log and its plot", "",
        "## How it was made", "",
        f"- command: `{command}` (training resumes from its checkpoints, so the command may be run "
        "repeatedly until the configured epochs are done; a resumed run continues exactly as an uninterrupted one)",
        *([f"- settings: {settings_note}"] if settings_note else []),
        f"- training device(s): {_devices(log_table)}; release written on {device}, torch {record.get('torch', 'n/a')}",
        f"- epochs trained: {len(log_table)} x {steps} steps x batch {batch} = "
        f"{len(log_table) * steps * batch} random crops of {settings.get('crop_vox', 'n/a')}^3 voxels; "
        f"training wall time {wall_h:.1f} h",
        f"- shipped epoch: {epoch} (highest mean validation CRscore over the bands; paper 003 selects by "
        "validation CRscore)",
        f"- seed {settings.get('seed', 'n/a')}; Adam, learning rate {settings.get('lr', 'n/a')}; cross-entropy class "
        f"weights {settings.get('class_weights', 'n/a')} (background : C-alpha)", "",
        "## Data", "",
        f"- chains: `{data.get('manifest', 'n/a')}`; split by the `clust40` column (no 40 % identity cluster in "
        f"both): {data.get('n_train_chains', 'n/a')} training, {data.get('n_validation_chains', 'n/a')} "
        "validation chains",
        "- maps simulated on the fly from the chains with paper 003's Eq. 2 kernel at resolutions drawn "
        f"uniformly from {settings.get('resolution_range_A', 'n/a')} Å, random rotations, per-atom B blur and "
        "correlated noise (`emforge.cnn.data`)",
        f"- labels: voxels within {record.get('label_radius_A', 'n/a')} Å of a C-alpha", "",
        "## Network", "",
        f"- `CAlphaNet({', '.join(f'{k}={v}' for k, v in sorted(arch.items()))})`, "
        f"{record.get('n_parameters', 'n/a')} parameters",
        *([] if arch.get("channels") == PAPER_CHANNELS else [
            f"- {arch.get('channels')} feature channels where paper 003 has {PAPER_CHANNELS}: at equal CPU "
            "training time the narrower network validated as well (one comparison, within the noise of the "
            "validation set), each training step costing about a third (`benchmarks/results/cnn_width.md`)"]),
        f"- input: the map resampled to {record.get('voxel_size_A', 'n/a')} Å voxels; channels "
        f"{', '.join(record.get('input_channels', []))}", "",
        "## Validation CRscore (paper 003, Eq. 1)", "",
        "Whole validation chains, maps simulated as in training, peaks picked with n_min = chain length:", "",
        "| epoch | " + " | ".join(band_label(b) for b in bands) + " | validation loss |",
        "|---:|" + "---:|" * (len(bands) + 1),
    ]
    for row in chosen.to_dict("records"):
        lines.append(f"| {row['epoch']} (shipped) | " + " | ".join(_fmt(row[b]) for b in bands)
                     + f" | {_fmt(row['val_loss'], 4)} |")
    rescored = meta.get("rescored_val_crscores")
    if rescored:
        n_maps = settings.get("validation", {}).get("maps_per_band", "n/a")
        lines.append(f"| {epoch} rescored on the {n_maps}-map set | "
                     + " | ".join(_fmt(rescored.get(b, math.nan)) for b in bands) + " | |")
    lines += [
        "", "The benchmark `benchmarks/cnn.py` (results in `benchmarks/results/cnn.md`) measures the shipped",
        "network on more validation chains and on experimental maps.", "",
        "## Intended use and limits", "",
        "- C-alpha positions for de novo tracing and template scoring in maps of 2-15 Å. The network never saw "
        "experimental maps in training; the benchmark reports its experimental-map scores separately.",
        "- Protein only; nucleic acids and ligands are background to it.", "",
        "## Per-epoch log", "",
        "| epoch | train loss | validation loss | " + " | ".join(band_label(b) for b in bands)
        + " | validation maps per band | wall s |",
        "|---:|---:|---:|" + "---:|" * (len(bands) + 2),
    ]
    for row in log_table.to_dict("records"):
        maps = row.get("val_maps_per_band", math.nan)
        lines.append(f"| {row['epoch']} | {_fmt(row['train_loss'], 4)} | {_fmt(row['val_loss'], 4)} | "
                     + " | ".join(_fmt(row[b]) for b in bands)
                     + f" | {'n/a' if pd.isna(maps) else int(maps)} | {row['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"

