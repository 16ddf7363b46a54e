"""Map-model fit scores: global CC, CC inside a model mask, per-residue local CC.

All correlations are Pearson coefficients over grid points (paper 000, Eq. 3)::

    CC = sum_g (rc(g) - <rc>)(re(g) - <re>) / sqrt(sum_g (rc(g) - <rc>)^2 sum_g (re(g) - <re>)^2)

with ``rc`` the map simulated from the model on the experimental grid and ``re``
the experimental map. ``cc`` uses every grid point; ``cc_mask`` only the grid
points within ``mask_radius_A`` of a model atom; the per-residue local CC uses
the grid points within ``radius_A`` (8 Å, as paper 000 does for fragments) of
any atom of the residue.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np
import pandas as pd

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap
from emforge.masks import model_mask
from emforge.models import AtomModel
from emforge.simulate import simulate_map

log = logging.getLogger(__name__)

LOCAL_CC_RADIUS_A = 8.0
MIN_OVERLAP_FRACTION = 0.1


def pearson_cc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two equally shaped arrays, optionally over ``mask`` only.

    Raises
    ------
    ValueError
        When either array has zero variance over the points used.
    """
    if a.shape != b.shape:
        raise ValueError(f"arrays differ in shape: {a.shape} vs {b.shape}")
    x = a[mask] if mask is not None else a.ravel()
    y = b[mask] if mask is not None else b.ravel()
    if x.size < 2:
        raise ValueError("fewer than two grid points to correlate")
    x = x.astype(np.float64) - x.mean(dtype=np.float64)
    y = y.astype(np.float64) - y.mean(dtype=np.float64)
    sxx, syy = float(x @ x), float(y @ y)
    if sxx <= 0 or syy <= 0:
        raise ValueError("zero variance over the grid points correlated")
    return float((x @ y) / math.sqrt(sxx * syy))


def default_mask_radius_A(resolution_A: float) -> float:
    """Mask radius around atoms for ``cc_mask``: max(3 Å, R/2)."""
    return max(3.0, 0.5 * resolution_A)


@numba.njit(cache=True, parallel=True)
def _local_cc(idx_xyz, starts, stops, radius_vox, exp_map, sim_map, min_points):
    nz, ny, nx = exp_map.shape
    n_res = starts.shape[0]
    out = np.full(n_res, np.nan)
    npts = np.zeros(n_res, np.int64)
    rx, ry, rz = radius_vox[0], radius_vox[1], radius_vox[2]
    for r in numba.prange(n_res):
        a0, a1 = starts[r], stops[r]
        lo = np.empty(3)
        hi = np.empty(3)
        for d in range(3):
            lo[d] = idx_xyz[a0:a1, d].min()
            hi[d] = idx_xyz[a0:a1, d].max()
        i0 = max(0, int(math.ceil(lo[0] - rx)))
        i1 = min(nx - 1, int(math.floor(hi[0] + rx)))
        j0 = max(0, int(math.ceil(lo[1] - ry)))
        j1 = min(ny - 1, int(math.floor(hi[1] + ry)))
        k0 = max(0, int(math.ceil(lo[2] - rz)))
        k1 = min(nz - 1, int(math.floor(hi[2] + rz)))
        n = 0
        sx = sy = sxx = syy = sxy = 0.0
        for k in range(k0, k1 + 1):
            for j in range(j0, j1 + 1):
                for i in range(i0, i1 + 1):
                    inside = False
                    for a in range(a0, a1):
                        dx = (i - idx_xyz[a, 0]) / rx
                        dy = (j - idx_xyz[a, 1]) / ry
                        dz = (k - idx_xyz[a, 2]) / rz
                        if dx * dx + dy * dy + dz * dz <= 1.0:
                            inside = True
                            break
                    if inside:
                        x = sim_map[k, j, i]
                        y = exp_map[k, j, i]
                        n += 1
                        sx += x
                        sy += y
                        sxx += x * x
                        syy += y * y
                        sxy += x * y
        npts[r] = n
        if n >= min_points:
            vx = sxx - sx * sx / n
            vy = syy - sy * sy / n
            if vx > 0.0 and vy > 0.0:
                out[r] = (sxy - sx * sy / n) / math.sqrt(vx * vy)
    return out, npts


def local_cc_per_residue(model: AtomModel, experimental: DensityMap, simulated: DensityMap,
                         radius_A: float = LOCAL_CC_RADIUS_A) -> pd.DataFrame:
    """Per-residue Pearson CC over grid points within ``radius_A`` of the residue's atoms.

    Parameters
    ----------
    model
        Atoms; residues are taken in file order.
    experimental, simulated
        Maps on the same grid (``simulated`` usually from :func:`simulate_map`).

    Returns
    -------
    DataFrame
        One row per residue: chain_id, res_seq, ins_code, res_name, local_cc
        (NaN where fewer than 8 grid points fall in the region or a map is flat
        there), n_points.
    """
    if not experimental.same_grid(simulated):
        raise ValueError("experimental and simulated maps must share one grid")
    radius = require_positive(radius_A, "local CC radius (Å)")
    starts = model.residue_starts()
    stops = np.append(starts[1:], len(model)).astype(np.int64)
    idx = np.ascontiguousarray(experimental.world_to_index(model.coords))
    cc, npts = _local_cc(idx, starts, stops, radius / experimental.voxel_size,
                         experimental.data, simulated.data, 8)
    table = model.residue_table()
    return pd.DataFrame({
        "chain_id": table["chain_id"], "res_seq": table["res_seq"], "ins_code": table["ins_code"],
        "res_name": table["res_name"], "local_cc": cc, "n_points": npts,
    })


def check_overlap(model: AtomModel, density_map: DensityMap, map_path=None, model_path=None) -> float:
    """Fraction of atoms inside the map box; raise :class:`InputError` when (nearly) none are."""
    inside = float(np.mean(density_map.contains(model.coords)))
    if inside < MIN_OVERLAP_FRACTION:
        lo, hi = density_map.extent_A
        where = model_path or map_path
        raise InputError(
            f"model does not overlap the map: {inside:.0%} of atoms lie inside the map box "
            f"[{lo.round(1).tolist()} .. {hi.round(1).tolist()}] Å; model centre is "
            f"{model.centroid().round(1).tolist()} Å", where)
    if inside < 0.9:
        log.warning("only %.0f%% of the model's atoms lie inside the map box", 100 * inside)
    return inside


def score_model_map(model: AtomModel, density_map: DensityMap, resolution_A: float,
                    kernel: str = "emrefiner", mask_radius_A: float | None = None,
                    local_radius_A: float = LOCAL_CC_RADIUS_A, map_path=None, model_path=None
                    ) -> tuple[dict, pd.DataFrame]:
    """Score how well ``model`` fits ``density_map``.

    Returns
    -------
    scores
        JSON-ready dict: cc (whole grid), cc_mask (grid points within
        ``mask_radius_A`` of an atom), mask_radius_A, n_mask_voxels,
        overlap_fraction, local_cc_mean/median, resolution_A, kernel.
    per_residue
        :func:`local_cc_per_residue` table.
    """
    resolution = require_positive(resolution_A, "resolution (Å)")
    if np.std(density_map.data, dtype=np.float64) == 0:
        raise InputError("map has zero variance (every voxel has the same value)", map_path)
    if len(model) == 0:
        raise InputError("model holds no atoms", model_path)
    overlap = check_overlap(model, density_map, map_path, model_path)
    radius = default_mask_radius_A(resolution) if mask_radius_A is None else float(mask_radius_A)
    simulated = simulate_map(model, density_map, resolution, kernel=kernel)
    if np.std(simulated.data, dtype=np.float64) == 0:
        raise InputError("model density does not reach any grid point of the map", model_path)
    mask = model_mask(model, density_map, radius)
    per_residue = local_cc_per_residue(model, density_map, simulated, local_radius_A)
    local = per_residue["local_cc"].to_numpy()
    scores = {
        "cc": pearson_cc(simulated.data, density_map.data),
        "cc_mask": pearson_cc(simulated.data, density_map.data, mask),
        "mask_radius_A": radius,
        "n_mask_voxels": int(mask.sum()),
        "overlap_fraction": overlap,
        "local_cc_mean": float(np.nanmean(local)) if np.isfinite(local).any() else None,
        "local_cc_median": float(np.nanmedian(local)) if np.isfinite(local).any() else None,
        "local_cc_radius_A": float(local_radius_A),
        "resolution_A": resolution,
        "kernel": kernel,
        "n_atoms": len(model),
        "n_residues": model.n_residues,
    }
    return scores, per_residue
