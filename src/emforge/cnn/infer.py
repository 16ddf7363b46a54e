"""Tiled C-alpha probability prediction on a density map of any size and frame.

:func:`predict_probability` resamples the map to the 1.5 Å working grid, computes the input
channels over the whole map (so every tile sees one normalisation), runs the network tile by
tile and resamples the C-alpha probability back onto the input map's grid.

Tiling
------
The evaluated network (:class:`~emforge.cnn.network.CAlphaNet` in eval mode) is a local
operator: an output voxel depends on the input within ``halo = ceil(RF / 2)`` voxels (RF its
receptive field). Along each axis the map is split into cores, each predicted in a window that
adds ``halo`` voxels on every side that is not the map's own face, with the fewest windows ``k``
no longer than ``tile_vox`` voxels (all of nearly one length). Each window is predicted on its own and only its core is
kept: the core's voxels see exactly the input the untiled network sees, zero padding included,
so a tiled prediction equals the untiled one to float rounding. Along an axis of ``n`` voxels the
network evaluates ``n + 2 halo (k - 1)`` voxels, the least any exact tiling with ``k`` windows
can, whereas fixed-size tiles stepping by their core waste up to a whole window at the far face.
Memory is bounded by one batch of windows: on the CPU the peak is about 240 bytes per window
voxel (``batch_size * tile_vox^3`` of them) with 16 channels, 1.9 GB for a 200^3 window (about
420 bytes, 3.4 GB, with 32).
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import torch

from emforge.cnn import TILE_VOX
from emforge.cnn.features import VOXEL_SIZE_A, input_channels, regrid, resample
from emforge.cnn.network import CAlphaNet
from emforge.maps import DensityMap

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_label(device: torch.device) -> str:
    """Where torch runs, for logs and model cards: ``"cuda, <GPU name>"`` or ``"cpu, N threads"``."""
    if device.type == "cuda":
        return f"cuda, {torch.cuda.get_device_name(device)}"
    return f"{device.type}, {torch.get_num_threads()} threads"


def _axis_windows(n: int, window: int | None, halo: int) -> list[tuple[int, int, int, int]]:
    """Windows along one axis of ``n`` voxels (module docstring), each as absolute indices
    ``(start, stop, keep_lo, keep_hi)``: the window is [start, stop), its core [keep_lo, keep_hi).

    An end window keeps up to ``window - halo`` voxels, an inner one ``window - 2 halo``, which
    fixes the fewest windows ``k``; their ``n + 2 halo (k - 1)`` voxels are then shared out as
    evenly as possible, so the windows have (nearly) one length and batch together.
    """
    if window is None or n <= window:
        return [(0, n, 0, n)]
    if window <= 2 * halo:
        raise ValueError(f"tile_vox {window} must exceed twice the network's halo ({2 * halo} voxels)")
    k = 2 + max(0, -(-(n - 2 * (window - halo)) // (window - 2 * halo)))
    total = n + 2 * halo * (k - 1)
    lengths = np.diff(np.round(np.linspace(0, total, k + 1)).astype(np.int64))
    wins, lo = [], 0
    for i, length in enumerate(lengths):
        start = max(lo - halo, 0)
        stop = start + int(length)
        hi = stop - halo if i < k - 1 else n
        wins.append((start, stop, lo, hi))
        lo = hi
    return wins


def predict_grid(channels: np.ndarray, model: CAlphaNet, *, tile_vox: int | None = TILE_VOX,
                 device: str | torch.device = "auto", batch_size: int = 1) -> np.ndarray:
    """C-alpha probability on the working grid from input channels, tile by tile.

    Parameters
    ----------
    channels : (C, D, H, W) float32
        From :func:`emforge.cnn.features.input_channels`.
    model : CAlphaNet
        Evaluated as in eval mode, through its folded twin (:meth:`CAlphaNet.folded`) on
        ``device``; ``model`` itself is left as it is.
    tile_vox : int or None
        Longest window edge in voxels, halos included (bounds memory; module docstring); must
        exceed ``2 * model.halo_vox``. None: the whole map in one pass.
    device : "auto", "cpu", "cuda", ...
    batch_size : int
        Windows per forward pass (windows of one shape are batched together).

    Returns
    -------
    (D, H, W) float32 in [0, 1]
    """
    if channels.ndim != 4 or channels.shape[0] != model.in_channels:
        raise ValueError(f"channels must be ({model.in_channels}, D, H, W), got {channels.shape}")
    if tile_vox is not None and int(tile_vox) < 1:
        raise ValueError(f"tile_vox must be >= 1 or None, got {tile_vox}")
    dev = resolve_device(device)
    window = None if tile_vox is None else int(tile_vox)
    shape = channels.shape[1:]
    windows = [_axis_windows(int(n), window, model.halo_vox) for n in shape]
    by_shape: dict[tuple[int, ...], list] = {}
    for t in itertools.product(*windows):
        by_shape.setdefault(tuple(w[1] - w[0] for w in t), []).append(t)
    step = max(int(batch_size), 1)
    out = np.zeros(shape, np.float32)
    x_all = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))
    # channels-last (N, D, H, W, C) memory suits oneDNN's 3D convolutions: 1.5x faster on the CPU
    # with 32 channels (benchmarks/results/cnn.md)
    net = model.folded().to(dev, memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        for tiles in by_shape.values():
            for b0 in range(0, len(tiles), step):
                batch = tiles[b0:b0 + step]
                x = torch.stack([x_all[(slice(None),) + tuple(slice(w[0], w[1]) for w in t)]
                                 for t in batch]).to(dev).contiguous(memory_format=torch.channels_last_3d)
                p = net.probability(x).cpu().numpy()
                for t, pt in zip(batch, p):
                    keep_out = tuple(slice(w[2], w[3]) for w in t)
                    keep_in = tuple(slice(w[2] - w[0], w[3] - w[0]) for w in t)
                    out[keep_out] = pt[keep_in]
    log.debug("predicted %s windows (per axis) of at most %s voxels on grid %s",
              [len(w) for w in windows], window, shape)
    return out


def predict_probability(density: DensityMap, model: CAlphaNet, *, tile_vox: int | None = TILE_VOX,
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
