"""The CNN's working grid (1.5 Å voxels) and its input channels.

Voxel size
----------
:data:`VOXEL_SIZE_A` = 1.5 Å for training and inference alike:

* consecutive C-alpha atoms are 3.8 Å apart and peaks are picked with a 3.3 Å exclusion
  (paper 003), i.e. 2.2 voxels: neighbouring C-alpha blobs stay separate voxels apart;
* every C-alpha lies within 1.3 Å (half the voxel diagonal) of a voxel centre, and
  sub-voxel refinement of the probability peaks (:mod:`emforge.cnn.peaks`) recovers the
  position within a fraction of a voxel, so the coarse grid costs little accuracy;
* a 1.5 Å grid holds 3.4x fewer voxels than a 1 Å grid (1.5^3), so training and inference
  on a CPU stay affordable and GPU tiles cover 3.4x more volume.

Input channels (:func:`input_channels`)
---------------------------------------
1. ``density``: the map minus its median (the solvent level of a boxed map), divided by the
   99th percentile of the same difference. The median and a high quantile are unmoved by
   the arbitrary offset and scale of a deposited map and by a few hot voxels; dividing by
   the 99th percentile rather than the standard deviation puts the strongest protein density
   near 1 whether the map is sharp (2 Å: tall atom peaks) or blurred (15 Å: one blob), which
   the standard deviation, dominated by the solvent, does not.
2. ``local_std``: the standard deviation of the normalised density in a 3x3x3-voxel window
   (4.5 Å), divided by its own 99th percentile. It marks edges and atom-sized detail; its
   raw size falls steeply with resolution (a 15 Å map is smooth everywhere), and the division
   by its own high quantile makes it comparable from 1 to 15 Å.

Both statistics are taken over the whole map (or a given sub-box, see ``stats_slices``)
before any tiling, so every tile of a map sees the same normalisation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap

#: Voxel edge of the CNN's working grid in Å (see the module docstring for why 1.5 Å).
VOXEL_SIZE_A = 1.5

#: Quantile that sets the scale of each channel.
SCALE_QUANTILE = 0.99

#: Window edge (voxels) of the local standard deviation channel.
LOCAL_STD_WINDOW_VOX = 3


def regrid(m: DensityMap, origin_A, voxel_size_A, shape_zyx, order: int = 1) -> DensityMap:
    """Interpolate ``m`` onto another axis-aligned grid (same world frame, Å).

    Parameters
    ----------
    m : DensityMap
        Source map.
    origin_A, voxel_size_A : array_like (3,) or scalar
        Target grid origin and voxel size, (x, y, z) in Å.
    shape_zyx : tuple of 3 int
        Target grid shape.
    order : int
        Spline order (1 trilinear, 3 cubic). Target voxels beyond the source grid take the
        value of the nearest source voxel.

    Uses :func:`scipy.ndimage.affine_transform` with a diagonal matrix: no coordinate arrays,
    memory of the output only.
    """
    origin = np.broadcast_to(np.asarray(origin_A, dtype=np.float64), (3,))
    voxel = np.broadcast_to(np.asarray(voxel_size_A, dtype=np.float64), (3,))
    scale_zyx = (voxel / m.voxel_size)[::-1]
    offset_zyx = ((origin - m.origin) / m.voxel_size)[::-1]
    data = ndimage.affine_transform(m.data, scale_zyx, offset=offset_zyx, output_shape=tuple(shape_zyx),
                                    order=order, mode="nearest", prefilter=order > 1, output=np.float32)
    return DensityMap(data, voxel, origin)


def resample(density: DensityMap, voxel_size_A: float = VOXEL_SIZE_A, order: int = 3) -> DensityMap:
    """``density`` on a cubic grid of ``voxel_size_A`` Å in the same world frame.

    The origin is kept and the new grid covers the old one: its last voxel centre lies at or
    beyond the old last centre on every axis (shape ``ceil(extent / voxel) + 1``). Values are
    cubic-spline interpolated (``order=3``; 1 for trilinear). When a map is coarsened, it is
    first blurred by a Gaussian of ``(ratio - 1) / 2`` old voxels per axis (the
    scikit-image anti-aliasing rule), ``ratio`` = new / old voxel size; finer grids are only
    interpolated.

    Returns
    -------
    DensityMap, voxel size ``voxel_size_A`` on all axes, origin ``density.origin``.
    """
    v = require_positive(voxel_size_A, "voxel size (Å)")
    length = (density.shape_xyz - 1) * density.voxel_size
    n_new = np.ceil(length / v - 1e-6).astype(np.int64) + 1
    ratio = v / density.voxel_size
    src = density
    sigma_zyx = np.maximum((ratio - 1.0) / 2.0, 0.0)[::-1]
    if np.any(sigma_zyx > 0.05):
        src = density.with_data(ndimage.gaussian_filter(density.data, sigma_zyx, mode="nearest"))
    return regrid(src, density.origin, v, tuple(n_new[::-1]), order=order)


def input_channels(data: np.ndarray, in_channels: int = 2, stats_slices=None) -> np.ndarray:
    """The network's input channels for one map on the working grid.

    Parameters
    ----------
    data : ndarray (D, H, W)
        Density on the 1.5 Å grid (:func:`resample`), any offset and scale.
    in_channels : {1, 2}
        1: ``density`` only; 2: ``density`` and ``local_std`` (module docstring).
    stats_slices : tuple of 3 slices, optional
        Sub-box of ``data`` whose voxels set the median and the 99th percentiles (default: the
        whole map). Training uses it to normalise a crop as the whole box around a chain
        would be normalised.

    Returns
    -------
    ndarray (in_channels, D, H, W) float32

    Raises
    ------
    InputError
        The map (sub-box) has no contrast: its 99th percentile equals its median and its
        maximum does too.
    """
    if in_channels not in (1, 2):
        raise ValueError(f"in_channels must be 1 or 2, got {in_channels}")
    d = np.asarray(data, dtype=np.float64)
    if d.ndim != 3:
        raise ValueError(f"data must be 3D (D, H, W), got shape {d.shape}")
    ref = d if stats_slices is None else d[tuple(stats_slices)]
    centre = float(np.median(ref))
    scale = float(np.quantile(ref, SCALE_QUANTILE)) - centre
    if not scale > 0:
        scale = float(ref.max()) - centre
    if not scale > 0 or not np.isfinite(scale):
        raise InputError("map has no contrast (its 99th percentile and maximum equal its median)")
    x = (d - centre) / scale
    channels = [x]
    if in_channels == 2:
        w = LOCAL_STD_WINDOW_VOX
        mean = ndimage.uniform_filter(x, w, mode="nearest")
        mean2 = ndimage.uniform_filter(x * x, w, mode="nearest")
        local_std = np.sqrt(np.maximum(mean2 - mean * mean, 0.0))
        ref_std = local_std if stats_slices is None else local_std[tuple(stats_slices)]
        s = float(np.quantile(ref_std, SCALE_QUANTILE))
        if not s > 0:
            s = float(ref_std.max())
        channels.append(local_std / s if s > 0 else local_std)
    return np.stack(channels).astype(np.float32)
