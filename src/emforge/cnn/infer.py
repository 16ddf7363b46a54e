"""Tiled C-alpha probability prediction on a density map of any size and frame.

:func:`predict_probability` resamples the map to the 1.5 Å working grid, computes the input
channels over the whole map (so every tile sees one normalisation), runs the network tile by
tile and resamples the C-alpha probability back onto the input map's grid.

Tiling
------
The evaluated network (:class:`~emforge.cnn.network.CAlphaNet` in eval mode) is a local
operator: an output voxel depends on the input within ``halo = ceil(RF / 2)`` voxels (RF its
receptive field). Every tile is a window of ``tile_vox + 2 halo`` voxels per axis (clipped to
the map when the map is smaller); the voxels of a window at least ``halo`` from each of its
faces that lies inside the map, and all voxels up to a face that is the map's own face, see
exactly the input the untiled network sees, zero padding included, and are the ones kept.
Windows step by ``tile_vox``, the last one is flush with the map's far face, so the kept parts
cover the map and a tiled prediction equals the untiled one to float rounding. Memory is bounded
by one batch of windows: about ``batch_size * channels * (tile_vox + 2 halo)^3 * 4`` bytes per
activation (32 channels, tile 64, halo 22: 160 MB).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import torch

from emforge.cnn.features import VOXEL_SIZE_A, input_channels, regrid, resample
from emforge.cnn.network import CAlphaNet
from emforge.maps import DensityMap

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _axis_windows(n: int, core: int | None, halo: int) -> list[tuple[int, int, int]]:
    """Windows along one axis of ``n`` voxels: (start, keep_lo, keep_hi), absolute indices, window
    length ``min(core + 2 halo, n)``."""
    if core is None or n <= core + 2 * halo:
        return [(0, 0, n)]
    w = core + 2 * halo
    starts = list(range(0, n - w, core)) + [n - w]
    return [(s, s + halo if s > 0 else 0, s + w - halo if s + w < n else n) for s in starts]


def predict_grid(channels: np.ndarray, model: CAlphaNet, *, tile_vox: int | None = 64,
                 device: str | torch.device = "auto", batch_size: int = 1) -> np.ndarray:
    """C-alpha probability on the working grid from input channels, tile by tile.

    Parameters
    ----------
    channels : (C, D, H, W) float32
        From :func:`emforge.cnn.features.input_channels`.
    model : CAlphaNet
        Evaluated in eval mode (moved to ``device``; its training flag is restored afterwards).
    tile_vox : int or None
        Edge (voxels) of the block each tile contributes; the tile's input adds
        ``model.halo_vox`` on each side. None: the whole map in one pass.
    device : "auto", "cpu", "cuda", ...
    batch_size : int
        Tiles per forward pass (all tiles of a map have one shape).

    Returns
    -------
    (D, H, W) float32 in [0, 1]
    """
    if channels.ndim != 4 or channels.shape[0] != model.in_channels:
        raise ValueError(f"channels must be ({model.in_channels}, D, H, W), got {channels.shape}")
    if tile_vox is not None and int(tile_vox) < 1:
        raise ValueError(f"tile_vox must be >= 1 or None, got {tile_vox}")
    dev = resolve_device(device)
    halo = model.halo_vox
    core = None if tile_vox is None else int(tile_vox)
    shape = channels.shape[1:]
    windows = [_axis_windows(int(n), core, halo) for n in shape]
    length = [int(n) if core is None else min(core + 2 * halo, int(n)) for n in shape]
    tiles = list(itertools.product(*windows))
    step = max(int(batch_size), 1)
    out = np.zeros(shape, np.float32)
    x_all = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))
    was_training = model.training
    model.to(dev).eval()
    try:
        with torch.inference_mode():
            for b0 in range(0, len(tiles), step):
                batch = tiles[b0:b0 + step]
                x = torch.stack([x_all[(slice(None),) + tuple(slice(w[0], w[0] + n) for w, n in zip(t, length))]
                                 for t in batch]).to(dev)
                p = model.probability(x).cpu().numpy()
                for t, pt in zip(batch, p):
                    keep_out = tuple(slice(w[1], w[2]) for w in t)
                    keep_in = tuple(slice(w[1] - w[0], w[2] - w[0]) for w in t)
                    out[keep_out] = pt[keep_in]
    finally:
        model.train(was_training)
    log.debug("predicted %d tiles of %s voxels on grid %s", len(tiles), length, shape)
    return out


def predict_probability(density: DensityMap, model: CAlphaNet, *, tile_vox: int | None = 64,
                        device: str | torch.device = "auto", batch_size: int = 1) -> DensityMap:
    """C-alpha probability map of ``density`` on the input map's own grid.

    Resamples to :data:`~emforge.cnn.features.VOXEL_SIZE_A` (cubic, anti-aliased), computes the
    input channels over the whole map, predicts tile by tile (:func:`predict_grid`; module
    docstring) and interpolates the probability (trilinear) back onto ``density``'s grid: same
    shape, voxel size and origin.

    Returns
    -------
    DensityMap, values in [0, 1], on ``density``'s grid.
    """
    work = resample(density, VOXEL_SIZE_A)
    channels = input_channels(work.data, model.in_channels)
    prob = predict_grid(channels, model, tile_vox=tile_vox, device=device, batch_size=batch_size)
    back = regrid(work.with_data(prob), density.origin, density.voxel_size, density.shape, order=1)
    return back.with_data(np.clip(back.data, 0.0, 1.0))


def default_weights_path() -> Path:
    """The shipped network: ``resources/cnn/calpha_net.pt`` in the emforge source tree."""
    return Path(__file__).resolve().parents[3] / "resources" / "cnn" / "calpha_net.pt"
