"""Fourier shell correlation (FSC) between maps, soft model masks, and the model-map FSC.

Definitions
-----------
For two maps ``a`` and ``b`` on one grid (optionally both multiplied by a mask ``m``
first) with Fourier transforms ``A`` and ``B``, the FSC of shell ``k`` is::

    FSC(k) = sum_{s in k} Re(A(s) B*(s)) / sqrt(sum_{s in k} |A(s)|^2 * sum_{s in k} |B(s)|^2)

Shells are one reciprocal voxel wide: with ``L`` the longest box edge in Å
(``max(n_a * voxel_a)``), Fourier coefficient ``s`` (spatial frequency ``|s|`` in 1/Å)
belongs to shell ``k = round(|s| L)``, whose frequency is ``k / L``. Shells run from
0 (the mean) up to the Nyquist frequency of the coarsest axis, ``1 / (2 max(voxel))``;
coefficients beyond it (the corners of the box) are not used. The transform is a real
FFT (``rfftn``); every coefficient of the half spectrum that stands for
itself and its Friedel mate is counted twice, so the sums and ``n_coeffs`` are those of
the full sphere. Transforms run in float64 with :func:`scipy.fft.rfftn` on all cores.

:func:`fsc_crossing` reads the resolution where the FSC first falls below a threshold
(0.5 by default), interpolating linearly in spatial frequency between the two shells
around the crossing.

TEMPy's FSC (``TEMPy.math.fourier.calculate_fsc``) differs in three details, which
:mod:`emforge.local_fit` reproduces for LoQFit: shells are ``floor(|s| n)`` rather than
rounded, each shell is reported at its lower edge ``k/n``, and the half spectrum is
summed without Friedel weights.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import scipy.fft

from emforge.errors import require_positive
from emforge.maps import DensityMap
from emforge.masks import soft_mask
from emforge.models import AtomModel
from emforge.simulate import simulate_map

log = logging.getLogger(__name__)


# -- shells --------------------------------------------------------------------------------------

def shell_indices(shape_zyx, voxel_size_xyz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shell index of every coefficient of the real FFT of a grid, with Friedel weights.

    Parameters
    ----------
    shape_zyx : (nz, ny, nx)
        Grid shape.
    voxel_size_xyz : (3,) float
        Voxel edges (x, y, z) in Å.

    Returns
    -------
    labels : ndarray (nz, ny, nx//2 + 1) int64
        Shell of each coefficient of ``rfftn`` (``-1`` beyond Nyquist).
    weights : ndarray (nx//2 + 1,) float64
        How many coefficients of the full spectrum each x-plane of the half spectrum stands for.
    freq_invA : ndarray (K,) float64
        Spatial frequency of each shell in 1/Å.
    """
    nz, ny, nx = (int(n) for n in shape_zyx)
    vx, vy, vz = (float(v) for v in np.broadcast_to(np.asarray(voxel_size_xyz, float), (3,)))
    length = max(nx * vx, ny * vy, nz * vz)
    sx = np.fft.rfftfreq(nx, d=vx)
    sy = np.fft.fftfreq(ny, d=vy)
    sz = np.fft.fftfreq(nz, d=vz)
    s = np.sqrt(sz[:, None, None] ** 2 + sy[None, :, None] ** 2 + sx[None, None, :] ** 2)
    labels = np.floor(s * length + 0.5).astype(np.int64)
    n_shells = int(math.floor(length / (2.0 * max(vx, vy, vz)) + 1e-9)) + 1
    labels[labels >= n_shells] = -1
    weights = np.full(nx // 2 + 1, 2.0)
    weights[0] = 1.0
    if nx % 2 == 0:
        weights[-1] = 1.0
    return labels, weights, np.arange(n_shells) / length


def fsc_curve(map_a: DensityMap, map_b: DensityMap, mask: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fourier shell correlation between two maps on the same grid.

    Parameters
    ----------
    map_a, map_b : DensityMap
        Maps on one grid (same shape, voxel size and origin).
    mask : ndarray [z, y, x], optional
        Real-space weights (binary or soft, e.g. :func:`soft_mask`) multiplied into both
        maps before the transform.

    Returns
    -------
    freq_invA : ndarray (K,)
        Shell frequencies in 1/Å (shell ``k`` at ``k / L``, ``L`` the longest box edge in Å).
    fsc : ndarray (K,)
        FSC per shell (NaN where a map has no power in the shell).
    n_coeffs : ndarray (K,) int64
        Number of Fourier coefficients (full spectrum) in each shell.
    """
    if not map_a.same_grid(map_b):
        raise ValueError("FSC needs two maps on the same grid (shape, voxel size, origin)")
    a = map_a.data.astype(np.float64)
    b = map_b.data.astype(np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != a.shape:
            raise ValueError(f"mask shape {mask.shape} does not match the maps {a.shape}")
        a = a * mask
        b = b * mask
    labels, weights, freq = shell_indices(a.shape, map_a.voxel_size)
    fa = scipy.fft.rfftn(a, workers=-1)
    fb = scipy.fft.rfftn(b, workers=-1)
    w = np.broadcast_to(weights, labels.shape)
    keep = labels >= 0
    lab = labels[keep]
    wk = w[keep]
    k = len(freq)
    num = np.bincount(lab, weights=wk * (fa.real * fb.real + fa.imag * fb.imag)[keep], minlength=k)
    den_a = np.bincount(lab, weights=wk * (fa.real ** 2 + fa.imag ** 2)[keep], minlength=k)
    den_b = np.bincount(lab, weights=wk * (fb.real ** 2 + fb.imag ** 2)[keep], minlength=k)
    count = np.bincount(lab, weights=wk, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = num / np.sqrt(den_a * den_b)
    fsc[~((den_a > 0) & (den_b > 0))] = np.nan
    return freq, fsc, np.rint(count).astype(np.int64)


def fsc_crossing(freq_invA: np.ndarray, fsc: np.ndarray, threshold: float = 0.5,
                 which: str = "first") -> float:
    """Resolution (Å) where an FSC curve falls below ``threshold``.

    The crossing lies between shell ``i - 1`` (FSC >= threshold) and shell ``i``
    (FSC < threshold); its frequency is interpolated linearly in spatial frequency and
    returned as ``1 / f`` Å. Shells whose FSC is NaN are skipped.

    Parameters
    ----------
    which : {"first", "last"}
        The first crossing (lowest frequency, the usual reading) or the last one (the
        highest-frequency crossing, as TEMPy's ``use_highest_resolution``).

    Returns
    -------
    float
        Resolution in Å; ``1 / freq[-1]`` (the Nyquist limit) when the curve never falls
        below the threshold, ``inf`` when it starts below it.
    """
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    f = np.asarray(freq_invA, dtype=np.float64)
    c = np.asarray(fsc, dtype=np.float64)
    ok = np.isfinite(c)
    f, c = f[ok], c[ok]
    if len(c) == 0:
        return math.nan
    if c[0] < threshold:
        return math.inf
    below = np.flatnonzero((c[1:] < threshold) & (c[:-1] >= threshold)) + 1
    if len(below) == 0:
        return 1.0 / f[-1] if f[-1] > 0 else math.inf
    i = int(below[0] if which == "first" else below[-1])
    f0, f1, c0, c1 = f[i - 1], f[i], c[i - 1], c[i]
    fc = f0 + (threshold - c0) * (f1 - f0) / (c1 - c0)
    return 1.0 / fc if fc > 0 else math.inf


# -- model-map FSC ------------------------------------------------------------------------------

def model_map_fsc(model: AtomModel, density_map: DensityMap, resolution_A: float,
                  kernel: str = "emrefiner", mask_radius_A: float | None = None, *,
                  soft_edge_A: float | None = None, sim_map: DensityMap | None = None,
                  sigma_A=None, threshold: float = 0.5) -> dict:
    """FSC between an experimental map and the map simulated from a model.

    Parameters
    ----------
    model, density_map
        Atoms (Å) and the experimental map.
    resolution_A
        Resolution used to simulate the model map (Å).
    kernel, sigma_A
        Density kernel (and optional Gaussian widths, Å) for :func:`simulate_map`.
    mask_radius_A
        When given, both maps are multiplied by :func:`soft_mask` (this radius around the
        atoms, cosine edge ``soft_edge_A``, default ``resolution_A``); when None the whole
        box is used.
    sim_map
        Precomputed model map on the grid of ``density_map`` (then ``kernel`` is unused).
    threshold
        FSC threshold (0.5).

    Returns
    -------
    dict
        ``resolution_fsc05_A`` (first crossing of ``threshold``, Å; the key keeps its
        name for other thresholds), ``curve`` {``freq_invA``, ``fsc``, ``n_coeffs``} as
        lists, ``threshold``, ``mask_radius_A``, ``soft_edge_A``, ``resolution_A``, ``kernel``.
    """
    resolution = require_positive(resolution_A, "resolution (Å)")
    given = sim_map is not None
    if sim_map is None:
        sim_map = simulate_map(model, density_map, resolution, kernel=kernel, sigma_A=sigma_A)
    elif not sim_map.same_grid(density_map):
        raise ValueError("sim_map must lie on the grid of density_map")
    mask = None
    edge = None
    if mask_radius_A is not None:
        edge = resolution if soft_edge_A is None else float(soft_edge_A)
        mask = soft_mask(model, density_map, mask_radius_A, edge)
    freq, fsc, count = fsc_curve(density_map, sim_map, mask)
    res = fsc_crossing(freq, fsc, threshold, "first")
    return {
        "resolution_fsc05_A": float(res),
        "threshold": float(threshold),
        "curve": {"freq_invA": freq.tolist(),
                  "fsc": [None if not np.isfinite(v) else float(v) for v in fsc],
                  "n_coeffs": count.tolist()},
        "mask_radius_A": None if mask_radius_A is None else float(mask_radius_A),
        "soft_edge_A": edge,
        "resolution_A": resolution,
        "kernel": None if given else (kernel if sigma_A is None else f"{kernel} (sigma_A given)"),
    }
