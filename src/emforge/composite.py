"""Composite maps from aligned component maps, weighted by Gaussian-mixture responsibilities (paper 001, Eq. 11-13).

Given C aligned experimental maps ``M_e,c`` (e.g. focused refinements of parts of a complex) and
their fitted model(s), each component gets a mixture of its atoms (:mod:`emforge.refine.gmm`, widths
refined against that map). An atom present in several components counts only in the one where it
is sharpest (the "lower B" rule of the paper: its Z is 0 in the others), so every region is taken
from the map that resolves it best. Then, on a common grid,

    M_c = sum_(i kept in c) P_i,c + E_c                   (Eq. 11)
    gamma_c = M_c / sum_c M_c                             (Eq. 12)
    M_C = sum_c gamma_c M_e,c / s_c                       (Eq. 13)

Responsibilities decay smoothly, so the composite has no seams. Two details the paper leaves open:

* Units: component maps from separate reconstructions rarely share a scale, so each is divided
  by its mixture's scale ``s_c`` (map units per electron) before the sum, and the ``M_c`` are
  compared in electrons (``s = 1``, background ``E_c / s_c``); the composite is multiplied back by
  the mean scale to stay in the components' usual range.
* Coverage: a component only contributes where its box covers the voxel (``gamma_c = 0`` outside);
  its mixture is fitted with the atoms inside its box (so its scale is that of the atoms it
  holds), and an atom only counts in components whose box holds it at least
  :data:`INSIDE_MARGIN_A` from the edge (near an edge the width estimate is truncated).

The common grid spans the union of the component boxes at the finest voxel size (components are
interpolated trilinearly onto it) unless a grid is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.models import AtomModel
from emforge.refine import gmm
from emforge.simulate import splat_gaussians

log = logging.getLogger(__name__)

INSIDE_MARGIN_A = 3.0
#: starting width when no resolution is given (Å); the width iterations adapt it
DEFAULT_START_SIGMA_A = 1.0


@dataclass
class CompositeResult:
    """``map``: the composite; ``components``: one row per component (index, n_atoms, n_kept
    (atoms it is sharpest for), scale, background, mean_b_A2 of its atoms); ``assignment``: (N,)
    component index per atom of the first model (-1: in no component)."""

    map: DensityMap
    components: pd.DataFrame
    assignment: np.ndarray


def common_grid(maps: list[DensityMap]) -> DensityMap:
    """A zero map covering the union of ``maps``' boxes at the finest voxel size (isotropic)."""
    voxel = float(min(float(np.min(m.voxel_size)) for m in maps))
    lo = np.min([m.extent_A[0] for m in maps], axis=0)
    hi = np.max([m.extent_A[1] for m in maps], axis=0)
    n = np.floor((hi - lo) / voxel + 1e-6).astype(np.int64) + 1
    return DensityMap(np.zeros(tuple(n[::-1]), np.float32), np.full(3, voxel), lo)


def onto_grid(m: DensityMap, grid: DensityMap) -> tuple[np.ndarray, np.ndarray]:
    """``m`` interpolated (trilinear) at ``grid``'s points and the mask of points inside ``m``'s box."""
    if m.same_grid(grid):
        return np.asarray(m.data, np.float32), np.ones(grid.shape, bool)
    x, y, z = grid.grid_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    values = m.interpolate(pts, order=1, outside=0.0).reshape(grid.shape).astype(np.float32)
    eps = 1e-6 * float(np.min(m.voxel_size))
    covered = m.contains(pts, margin_A=eps).reshape(grid.shape)
    return values, covered


def _atom_keys(model: AtomModel) -> np.ndarray:
    return np.array([f"{c}|{s}|{i}|{a}" for c, s, i, a in
                     zip(model.chain_id, model.res_seq, model.ins_code, model.atom_name)])


def composite_map(maps: list[DensityMap], models: AtomModel | list[AtomModel], *, resolution_A: float | None = None,
                  n_iterations: int = gmm.BFACTOR_ITERATIONS, grid: DensityMap | None = None,
                  sigma_max_A: float = gmm.SIGMA_MAX_A) -> CompositeResult:
    """Combine aligned component ``maps`` into one map by mixture responsibilities (Eq. 11-13).

    Parameters
    ----------
    maps
        C >= 2 component maps in one frame (Å).
    models
        One consensus model (every atom is a candidate in every component) or C models, one per
        map (atoms matched across components by chain, residue number, insertion code and name).
    resolution_A
        Starting widths 0.225 R (default: 1 Å); the widths are refined per component.
    n_iterations
        Width iterations per component (paper 001: 25).
    grid
        Output grid (default :func:`common_grid`).
    sigma_max_A
        Width cap (Å).
    """
    if len(maps) < 2:
        raise InputError(f"a composite needs at least 2 component maps, got {len(maps)}")
    if isinstance(models, AtomModel):
        models = [models] * len(maps)
    if len(models) != len(maps):
        raise InputError(f"{len(models)} models for {len(maps)} maps: give one consensus model or one per map")
    models = [m.without_hydrogens() for m in models]
    if any(len(m) == 0 for m in models):
        raise InputError("a component model holds no atoms")
    grid = common_grid(maps) if grid is None else grid
    start_sigma = DEFAULT_START_SIGMA_A if resolution_A is None else 0.225 * float(resolution_A)

    mixtures, inside, rows = [], [], []
    for c, (m, model) in enumerate(zip(maps, models)):
        mix = gmm.Mixture.from_model(model, 1.0, sigma_A=start_sigma)
        in_box = m.contains(mix.coords_A)
        ok = m.contains(mix.coords_A, margin_A=-INSIDE_MARGIN_A)
        if not ok.any():
            raise InputError(f"component {c + 1}: no atom of its model lies inside its map")
        # fit the atoms in the box only: the scale is the intensity per electron of the atoms the map holds
        part = gmm.Mixture(mix.coords_A[in_box], mix.sigma_A[in_box], mix.z[in_box], mix.residue[in_box])
        gmm.refine_widths(part, m, n_iterations, sigma_max_A=sigma_max_A)
        mix.sigma_A[in_box] = part.sigma_A
        mix.scale, mix.background = part.scale, part.background
        mixtures.append(mix)
        inside.append(ok)
        rows.append({"component": c + 1, "n_atoms": int(ok.sum()), "scale": mix.scale,
                     "background": mix.background, "mean_b_A2": float(gmm.sigma_to_b(mix.sigma_A[ok]).mean())})

    # lower-B rule: each atom (by key) counts only in the component where its width is smallest
    keys = [_atom_keys(model) for model in models]
    all_keys = np.unique(np.concatenate(keys))
    sigma_by_comp = np.full((len(maps), len(all_keys)), np.inf)
    for c, (k, mix, ok) in enumerate(zip(keys, mixtures, inside)):
        sigma_by_comp[c, np.searchsorted(all_keys, k)[ok]] = mix.sigma_A[ok]
    best_comp = np.argmin(sigma_by_comp, axis=0)
    best_comp[~np.isfinite(sigma_by_comp.min(axis=0))] = -1
    composite = np.zeros(grid.shape, np.float64)
    total = np.zeros(grid.shape, np.float64)
    weighted = []
    for c, (m, k, mix, ok) in enumerate(zip(maps, keys, mixtures, inside)):
        kept = ok & (best_comp[np.searchsorted(all_keys, k)] == c)
        rows[c]["n_kept"] = int(kept.sum())
        values, covered = onto_grid(m, grid)
        peaks = np.where(kept, gmm._peaks(mix), 0.0)
        mc = splat_gaussians(grid.world_to_index(mix.coords_A), peaks, mix.sigma_A[:, None] / grid.voxel_size[None, :],
                             grid.shape, gmm.CUTOFF_SIGMA).astype(np.float64)
        mc += mix.background / mix.scale
        mc[~covered] = 0.0
        total += mc
        weighted.append((mc, values / mix.scale))
    for mc, values in weighted:
        composite += np.divide(mc, total, out=np.zeros_like(total), where=total > 0) * values
    mean_scale = float(np.mean([mix.scale for mix in mixtures]))
    out = DensityMap((composite * mean_scale).astype(np.float32), grid.voxel_size, grid.origin)
    first_keys = np.searchsorted(all_keys, keys[0])
    assignment = best_comp[first_keys]
    table = pd.DataFrame(rows, columns=["component", "n_atoms", "n_kept", "scale", "background", "mean_b_A2"])
    log.info("composite of %d maps on grid %s: atoms kept per component %s", len(maps), grid.shape,
             table["n_kept"].tolist())
    return CompositeResult(out, table, assignment)


__all__ = ["CompositeResult", "composite_map", "common_grid", "onto_grid"]
