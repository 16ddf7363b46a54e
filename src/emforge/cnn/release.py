"""A training run that ends in a releasable weight set: weights, sidecar, log, plot and model card.

:func:`train_release` is what ``emforge cnn train`` and the workflow rule ``train_cnn`` run: it
reads the chain manifest, trains (resuming from ``checkpoint_dir``), and writes into ``out_dir``

* ``calpha_net.pt`` + ``calpha_net.json``: the epoch with the best mean validation CRscore
  (paper 003 selects by validation CRscore), checksummed;
* ``train_log.tsv`` and ``train_curve.png``: the per-epoch log and its plot;
* ``MODEL_CARD.md``: :func:`emforge.cnn.card.model_card`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from emforge.atomic import atomic_path, write_text_atomic
from emforge.cnn.card import model_card
from emforge.cnn.data import DEFAULT_MANIFEST, chain_table, load_chains
from emforge.cnn.infer import device_label, resolve_device
from emforge.cnn.train import load_weights, save_weights, sidecar_path, train
from emforge.errors import InputError

log = logging.getLogger(__name__)

RELEASE_FILES = {"weights": "calpha_net.pt", "sidecar": "calpha_net.json", "log_table": "train_log.tsv",
                 "plot": "train_curve.png", "card": "MODEL_CARD.md"}


def train_release(out_dir: str | os.PathLike, *, checkpoint_dir: str | os.PathLike, epochs: int,
                  command: str, manifest: str | os.PathLike | None = None, steps_per_epoch: int = 200,
                  batch_size: int = 1, lr: float = 5e-4, crop_vox: int = 40, seed: int = 0,
                  resolution_range_A=(1.0, 15.0), network: dict | None = None, val_maps_per_band: int = 2,
                  device: str = "auto", max_train_chains: int | None = None,
                  max_val_chains: int | None = None, settings_note: str | None = None,
                  progress: Callable[[int, dict], None] | None = None) -> dict[str, Path]:
    """Train (or resume) and write the release files of :data:`RELEASE_FILES` into ``out_dir``.

    The per-epoch log is kept beside the checkpoints (``checkpoint_dir/../train_log.tsv``) while
    training and copied to ``out_dir`` at the end. ``command`` (and ``settings_note``, where its
    settings come from) is recorded on the model card as the way to reproduce the weights.
    ``max_train_chains`` / ``max_val_chains`` take a seeded random subset of a split. Returns the
    written paths by :data:`RELEASE_FILES` key.
    """
    from emforge.plots import cnn_training_plot

    manifest = Path(DEFAULT_MANIFEST if manifest is None else manifest)
    tables = {}
    for split, limit in (("train", max_train_chains), ("validation", max_val_chains)):
        table = chain_table(split, manifest)
        if limit is not None and limit < len(table):
            table = table.sample(n=limit, random_state=seed).sort_index()
        tables[split] = table
    if len(tables["train"]) == 0:
        raise InputError("the training split holds no chains", manifest)
    train_models = load_chains(tables["train"])
    val_models = load_chains(tables["validation"])
    log.info("training on %d chains, validating on %d", len(train_models), len(val_models))

    checkpoint_dir = Path(checkpoint_dir)
    result = train(train_models, val_models, epochs=epochs, steps_per_epoch=steps_per_epoch,
                   batch_size=batch_size, lr=lr, crop_vox=crop_vox, seed=seed, resolution_range_A=resolution_range_A,
                   checkpoint_dir=checkpoint_dir, device=device, log_path=checkpoint_dir.parent / "train_log.tsv",
                   network=network, val_maps_per_band=val_maps_per_band, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in RELEASE_FILES.items()}
    if result.best_weights is not None:
        meta = json.loads(sidecar_path(result.best_weights).read_text(encoding="utf-8"))["metadata"]
        save_weights(load_weights(result.best_weights), paths["weights"], metadata=meta)
    else:  # no validation chains: the last epoch
        save_weights(result.model, paths["weights"], metadata={"epoch": int(result.log["epoch"].max())})
    with atomic_path(paths["log_table"]) as tmp:
        result.log.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    png = cnn_training_plot(result.log)
    with atomic_path(paths["plot"]) as tmp:
        Path(tmp).write_bytes(png or b"")
    data = {"manifest": str(manifest), "n_train_chains": len(train_models), "n_validation_chains": len(val_models)}
    write_text_atomic(paths["card"], model_card(paths["weights"], result.log, command=command, data=data,
                                                device=device_label(resolve_device(device)),
                                                settings_note=settings_note))
    log.info("released weights of epoch %s to %s", result.best_epoch, out)
    return paths
