"""Training of :class:`~emforge.cnn.network.CAlphaNet` and its weight files.

Training (:func:`train`) follows paper 003: Adam with learning rate 5e-4, cross-entropy with class
weights 1 (background) : 50 (C-alpha), dropout 0.2, maps simulated by Eq. 2 at resolutions drawn
uniformly from 1-15 Å (:mod:`emforge.cnn.data`), and model selection by the validation CRscore
(Eq. 1). Each epoch is ``steps_per_epoch`` optimiser steps on batches of ``batch_size`` fresh
random crops, then a validation pass:

* ``val_loss``: the weighted cross-entropy on a fixed set of validation crops;
* ``crscore_<lo>_<hi>A``: per resolution band (2-5, 5-10, 10-15 Å), the mean CRscore
  (:func:`emforge.compare.crscore`) of the peaks picked (:func:`emforge.cnn.peaks.pick_peaks`,
  n_min = number of C-alphas) from the predicted probability of fixed held-out simulated maps of
  whole validation chains, against their true C-alphas.

Determinism and resuming: the network starts from ``torch.manual_seed(seed)``; every example is
drawn from its own generator seeded by ``(seed, epoch, step, index)``, and torch's generator
(dropout) is reseeded from ``(seed, epoch)`` at the start of every epoch. A run resumed from a
checkpoint therefore continues exactly as the uninterrupted run would have (on the same device).
A checkpoint (``checkpoint_dir/checkpoint_epochNNNN.pt``, written atomically after every epoch,
the last ``keep_checkpoints`` kept) holds the model, optimiser and gradient-scaler states, the
torch RNG states, the epoch, the run settings, the best validation score and the log rows.
The validation set may grow between runs (``val_maps_per_band``, ``val_crops``): on resuming with
another validation set, the best weights so far are scored again on the new one before training
continues, so model selection always compares epochs on the same maps (the log's
``val_maps_per_band`` column says which set scored each epoch).
Mixed precision (float16 autocast with gradient scaling) is used on CUDA only.

Weight files (:func:`save_weights`, :func:`load_weights`): ``NAME.pt`` is a plain state dict;
``NAME.json`` beside it records the architecture, the working voxel size, the input channels and
the SHA-256 of ``NAME.pt``, which :func:`load_weights` checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emforge.atomic import atomic_path, write_text_atomic
from emforge.cnn import TILE_VOX
from emforge.cnn.data import LABEL_RADIUS_A, make_example, simulate_noisy_map
from emforge.cnn.features import VOXEL_SIZE_A
from emforge.cnn.infer import device_label, predict_probability, resolve_device
from emforge.cnn.network import CHANNEL_NAMES, CAlphaNet, count_parameters
from emforge.cnn.peaks import pick_peaks
from emforge.compare import crscore
from emforge.errors import InputError
from emforge.models import AtomModel

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "emforge-calpha-net"
WEIGHTS_FORMAT_VERSION = 1
#: Resolution bands (Å) of the validation CRscore.
VAL_BANDS_A = ((2.0, 5.0), (5.0, 10.0), (10.0, 15.0))
_CHECKPOINT = re.compile(r"^checkpoint_epoch(\d+)\.pt$")


# -- weight files -------------------------------------------------------------------------------

def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a weights file: ``NAME.pt`` -> ``NAME.json``."""
    return Path(path).with_suffix(".json")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` with bytes that depend on ``obj`` only: saved to a file name, torch names the
    archive's records after the file (here a random temporary name), so equal weights would get
    different checksums."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    Path(path).write_bytes(buffer.getvalue())


def save_weights(model: CAlphaNet, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``model``'s state dict to ``path`` (.pt) and the JSON sidecar, both atomically.

    The sidecar holds ``format``, ``version``, ``architecture`` (constructor arguments),
    ``voxel_size_A``, ``input_channels``, ``label_radius_A``, ``n_parameters``, ``torch``,
    ``sha256`` of the .pt file and ``metadata`` (anything JSON-serialisable, e.g. the training
    settings and scores).
    """
    path = Path(path)
    if path.suffix != ".pt":
        raise InputError("weights file name must end in .pt", path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        _torch_save(state, tmp)
        digest = sha256_file(tmp)
    record = {
        "format": WEIGHTS_FORMAT, "version": WEIGHTS_FORMAT_VERSION, "weights_file": path.name,
        "sha256": digest, "architecture": model.architecture, "voxel_size_A": VOXEL_SIZE_A,
        "input_channels": list(CHANNEL_NAMES[:model.in_channels]), "label_radius_A": LABEL_RADIUS_A,
        "n_parameters": count_parameters(model), "torch": torch.__version__, "metadata": metadata or {},
    }
    write_text_atomic(sidecar_path(path), json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def load_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CAlphaNet:
    """The network stored by :func:`save_weights`, in eval mode.

    Raises
    ------
    InputError
        Naming the file: the weights or the sidecar is missing or unreadable, the sidecar is not
        an emforge C-alpha network record, the SHA-256 does not match, the voxel size differs
        from :data:`~emforge.cnn.features.VOXEL_SIZE_A`, or the state dict does not fit the
        recorded architecture.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise InputError("CNN weights file not found", path)
    if not side.is_file():
        raise InputError(f"CNN weights sidecar {side.name} not found beside the weights", path)
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
        arch = dict(record["architecture"])
        expected = str(record["sha256"])
        voxel = float(record["voxel_size_A"])
        if record.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"format is {record.get('format')!r}, not {WEIGHTS_FORMAT!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a valid CNN weights sidecar ({exc})", side) from None
    actual = sha256_file(path)
    if actual != expected:
        raise InputError(f"checksum mismatch: SHA-256 {actual[:12]}... differs from {expected[:12]}... "
                         f"recorded in {side.name} (corrupt or replaced weights file)", path)
    if abs(voxel - VOXEL_SIZE_A) > 1e-9:
        raise InputError(f"weights were trained on a {voxel} Å grid; this emforge uses {VOXEL_SIZE_A} Å", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        model = CAlphaNet(**arch)
        model.load_state_dict(state)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/... on bad content
        raise InputError(f"cannot load CNN weights ({type(exc).__name__}: {exc})", path) from None
    return model.eval()


# -- checkpoints --------------------------------------------------------------------------------

def checkpoint_paths(checkpoint_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, path) of the checkpoints in a folder, by epoch."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def _load_checkpoint(path: Path, device: torch.device) -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read the training checkpoint ({type(exc).__name__}: {exc})", path) from None


# -- training -----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : CAlphaNet, the network after the last epoch (eval mode, on the CPU)
    log : pandas.DataFrame, one row per epoch (the TSV of ``log_path``)
    best_weights : Path or None, weights of the epoch with the best mean validation CRscore
    best_epoch : int or None
    """

    model: CAlphaNet
    log: object
    best_weights: Path | None
    best_epoch: int | None


def _band_column(band: Sequence[float]) -> str:
    return f"crscore_{band[0]:g}_{band[1]:g}A"


def _example_batch(models, seed, epoch, step, batch_size, resolution_range_A, crop_vox, in_channels):
    xs, ys = [], []
    for b in range(batch_size):
        rng = np.random.default_rng([seed, epoch, step, b])
        model = models[int(rng.integers(len(models)))]
        ex = make_example(model, float(rng.uniform(*resolution_range_A)), rng, crop_vox, in_channels)
        xs.append(ex.channels)
        ys.append(ex.labels)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def _validation_set(val_models, seed, n_crops, bands, maps_per_band, crop_vox, in_channels, resolution_range_A):
    """Fixed validation crops and whole maps (the same every epoch)."""
    crops = []
    for i in range(n_crops):
        rng = np.random.default_rng([seed, 1_000_003, i])
        model = val_models[i % len(val_models)]
        ex = make_example(model, float(rng.uniform(*resolution_range_A)), rng, crop_vox, in_channels)
        crops.append((torch.from_numpy(ex.channels[None]), torch.from_numpy(ex.labels[None].astype(np.int64))))
    maps = {}
    for b, band in enumerate(bands):
        maps[_band_column(band)] = []
        for i in range(maps_per_band):
            rng = np.random.default_rng([seed, 2_000_003, b, i])
            model = val_models[i % len(val_models)]
            maps[_band_column(band)].append(simulate_noisy_map(model, float(rng.uniform(*band)), rng, margin_A=8.0))
    return crops, maps


def _validate(model, loss_fn, crops, maps, device, tile_vox) -> dict:
    row = {}
    model.eval()
    with torch.inference_mode():
        losses = [float(loss_fn(model(x.to(device)).float(), y.to(device))) for x, y in crops]
    row["val_loss"] = float(np.mean(losses)) if losses else math.nan
    for col, sims in maps.items():
        scores = []
        for sim in sims:
            prob = predict_probability(sim.map, model, tile_vox=tile_vox, device=device)
            peaks = pick_peaks(prob, n_min=len(sim.ca_xyz_A))
            scores.append(crscore(peaks.xyz_A, sim.ca_xyz_A)["crscore"] if len(peaks) else 0.0)
        row[col] = float(np.mean(scores)) if scores else math.nan
    return row


def _write_log(log_path, rows: list[dict], columns: list[str]):
    import pandas as pd

    table = pd.DataFrame(rows, columns=columns)
    if log_path is not None:
        with atomic_path(log_path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    return table


def train(train_models: Sequence[AtomModel], val_models: Sequence[AtomModel], *, epochs: int,
          steps_per_epoch: int, batch_size: int = 1, lr: float = 5e-4, class_weights=(1.0, 50.0),
          resolution_range_A=(1.0, 15.0), crop_vox: int = 48, seed: int = 0,
          checkpoint_dir: str | os.PathLike, device: str | torch.device = "auto",
          log_path: str | os.PathLike | None = None, network: dict | None = None, resume: bool = True,
          val_crops: int = 8, val_maps_per_band: int = 2, val_bands_A=VAL_BANDS_A, tile_vox: int = TILE_VOX,
          keep_checkpoints: int = 2,
          progress: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a :class:`CAlphaNet` on simulated maps of ``train_models`` (module docstring).

    Parameters
    ----------
    train_models, val_models : sequences of AtomModel
        Chains (protein heavy atoms) of the two splits (:func:`emforge.cnn.data.chain_table`).
        ``val_models`` may be empty: the validation columns are then NaN.
    epochs : int
        Total number of epochs; a resumed run trains only the missing ones.
    steps_per_epoch, batch_size : int
        Optimiser steps per epoch and crops per step (paper 003: batch size 1).
    lr, class_weights : Adam learning rate and cross-entropy weights (background, C-alpha).
    resolution_range_A : (float, float)
        Training resolutions, drawn uniformly per crop (paper 003: 1-15 Å).
    crop_vox : int
        Edge of the training crops in 1.5 Å voxels.
    seed : int
        Seed of everything random (initial weights, examples, dropout, validation set).
    checkpoint_dir : path
        Checkpoints and ``best_calpha_net.pt`` (+ ``.json``) go here.
    device : "auto" (CUDA when available), "cpu", "cuda", ...
    log_path : path, optional
        Per-epoch TSV: ``epoch, train_loss, val_loss, crscore_2_5A, crscore_5_10A,
        crscore_10_15A, val_maps_per_band, wall_s, device`` (wall time of the epoch in s; where it ran, e.g. "cpu, 2
        threads"), rewritten atomically each epoch.
    network : dict, optional
        :class:`CAlphaNet` arguments (default: the paper's size, 2 input channels).
    resume : bool
        Continue from the latest checkpoint in ``checkpoint_dir`` (default). With False, a folder
        that holds checkpoints is an error.
    val_crops, val_maps_per_band, val_bands_A, tile_vox
        Size of the validation set, its resolution bands (Å) and the inference tile edge.
    keep_checkpoints : int
        Newest checkpoints to keep (>= 1).
    progress : callable(epoch, row), optional
        Called after every epoch with its log row.

    Returns
    -------
    TrainResult
    """
    if epochs < 0 or steps_per_epoch < 1 or batch_size < 1 or crop_vox < 1 or keep_checkpoints < 1:
        raise InputError(f"bad training settings: epochs={epochs}, steps_per_epoch={steps_per_epoch}, "
                         f"batch_size={batch_size}, crop_vox={crop_vox}, keep_checkpoints={keep_checkpoints}")
    if not train_models:
        raise InputError("no training chains")
    lo, hi = (float(v) for v in resolution_range_A)
    if not 0 < lo <= hi:
        raise InputError(f"resolution range must satisfy 0 < low <= high (Å), got {resolution_range_A}")
    dev = resolve_device(device)
    amp = dev.type == "cuda"
    arch = CAlphaNet(**(network or {})).architecture
    settings = {
        "architecture": arch, "seed": int(seed), "lr": float(lr), "class_weights": [float(w) for w in class_weights],
        "resolution_range_A": [lo, hi], "crop_vox": int(crop_vox), "batch_size": int(batch_size),
        "steps_per_epoch": int(steps_per_epoch), "voxel_size_A": VOXEL_SIZE_A, "label_radius_A": LABEL_RADIUS_A,
        "validation": {"crops": int(val_crops), "maps_per_band": int(val_maps_per_band),
                       "bands_A": [[float(v) for v in b] for b in val_bands_A]},
    }
    ckdir = Path(checkpoint_dir)
    ckdir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    model = CAlphaNet(**arch).to(dev)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32, device=dev))
    bands = [tuple(float(v) for v in b) for b in val_bands_A]
    columns = (["epoch", "train_loss", "val_loss"] + [_band_column(b) for b in bands]
               + ["val_maps_per_band", "wall_s", "device"])
    where = device_label(dev)
    rows: list[dict] = []
    start_epoch = 1
    best = {"score": -math.inf, "epoch": None}

    best_path = ckdir / "best_calpha_net.pt"
    rescore = False
    existing = checkpoint_paths(ckdir)
    if existing and not resume:
        raise InputError("folder already holds training checkpoints (resume, or use a new folder)", ckdir)
    if existing:
        epoch0, path = existing[-1]
        ck = _load_checkpoint(path, dev)
        if ck.get("settings", {}).get("architecture") != arch:
            raise InputError(f"checkpoint architecture {ck.get('settings', {}).get('architecture')} differs "
                             f"from the requested {arch}", path)
        changed = sorted(k for k, v in settings.items() if ck["settings"].get(k) != v)
        if changed:
            log.warning("%s: resuming with changed settings %s", path, ", ".join(changed))
        model.load_state_dict(ck["model"])
        optimiser.load_state_dict(ck["optimiser"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng_state"]["torch"].cpu())
        if torch.cuda.is_available() and ck["rng_state"].get("cuda"):
            torch.cuda.set_rng_state_all([s.cpu() for s in ck["rng_state"]["cuda"]])
        rows = [dict(r) for r in ck["log"]]
        best = dict(ck["best"])
        start_epoch = int(ck["epoch"]) + 1
        rescore = ck["settings"].get("validation") != settings["validation"] and best_path.is_file()
        log.info("resumed from %s (epoch %d)", path, epoch0)

    crops, maps = ([], {})
    if val_models and start_epoch <= epochs:
        crops, maps = _validation_set(list(val_models), seed, val_crops, bands, val_maps_per_band, crop_vox,
                                      arch["in_channels"], (lo, hi))
        if rescore:
            # the best epoch so far was scored on another validation set: score it again on this
            # one, so that later epochs are compared with it like for like
            record = json.loads(sidecar_path(best_path).read_text(encoding="utf-8"))
            best_net = load_weights(best_path, map_location=dev).to(dev)
            row = _validate(best_net, loss_fn, crops, maps, dev, tile_vox)
            old = best["score"]
            best["score"] = float(np.nanmean([row[_band_column(b)] for b in bands]))
            meta = dict(record.get("metadata", {}), mean_val_crscore=best["score"], settings=settings,
                        rescored_val_crscores={k: v for k, v in row.items() if k.startswith("crscore")})
            save_weights(best_net, best_path, metadata=meta)
            log.info("validation set changed: best epoch %s rescored, mean CRscore %.4f -> %.4f",
                     best["epoch"], old, best["score"])
    models = list(train_models)
    for epoch in range(start_epoch, epochs + 1):
        t0 = time.perf_counter()
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        model.train()
        losses = []
        for step in range(steps_per_epoch):
            x, y = _example_batch(models, seed, epoch, step, batch_size, (lo, hi), crop_vox, arch["in_channels"])
            x, y = x.to(dev), y.to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses))}
        row.update(_validate(model, loss_fn, crops, maps, dev, tile_vox) if val_models
                   else {"val_loss": math.nan, **{_band_column(b): math.nan for b in bands}})
        row["val_maps_per_band"] = int(val_maps_per_band) if val_models else 0
        row["wall_s"] = time.perf_counter() - t0
        row["device"] = where
        rows.append(row)
        score = np.nanmean([row[_band_column(b)] for b in bands]) if bands and val_models else math.nan
        if np.isfinite(score) and score > best["score"]:
            best = {"score": float(score), "epoch": epoch}
            save_weights(model, best_path,
                         metadata={"epoch": epoch, "mean_val_crscore": float(score), "settings": settings})
        state = {
            "epoch": epoch, "model": model.state_dict(), "optimiser": optimiser.state_dict(),
            "scaler": scaler.state_dict(), "settings": settings, "best": best, "log": rows,
            "rng_state": {"torch": torch.get_rng_state(),
                          "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }
        with atomic_path(ckdir / f"checkpoint_epoch{epoch:04d}.pt") as tmp:
            _torch_save(state, tmp)
        for _, old in checkpoint_paths(ckdir)[:-keep_checkpoints]:
            old.unlink(missing_ok=True)
        _write_log(log_path, rows, columns)
        log.info("epoch %d: %s", epoch, row)
        if progress is not None:
            progress(epoch, row)

    table = _write_log(log_path, rows, columns)
    return TrainResult(model.cpu().eval(), table, best_path if best["epoch"] is not None and best_path.is_file()
                       else None, best["epoch"])
