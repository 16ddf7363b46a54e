"""TEMPy-ReFF's Gaussian mixture of a model in a map (paper 001, Eq. 1-9): E and M steps.

Every atom i is a normalised Gaussian carrying ``s Z_i`` of intensity,
``P_i(v) = s Z_i (2 pi sigma_i^2)^(-3/2) exp(-|v - x_i|^2 / (2 sigma_i^2))`` (Eq. 1), with its
atomic number ``Z_i``, a width ``sigma_i`` in Å and one global scale ``s`` (map units x Å^3 per
electron); the mixture adds a uniform background ``E`` (Eq. 3): ``M_s = sum_i P_i + E``.

* E step (Eq. 4-5): responsibilities ``gamma_i = P_i / M_s`` and the responsibility-weighted
  experimental map ``W_i = M_e gamma_i``.
* M step (Eq. 6-7): each atom's target is the ``W_i``-weighted mean voxel position and its new
  width the ``W_i``-weighted spread about its present position, per axis (a 3D isotropic Gaussian
  has ``<|v - x|^2> = 3 sigma^2``; no Sheppard correction: map values are samples of the density at
  the voxel centres, not bin integrals, and sampled moments of a Gaussian wider than a voxel are
  exact), averaged over the atoms of each residue (as ``sigma^2``, i.e. as B-factors) and
  clipped to ``[sigma_min_A, sigma_max_A]``. Eq. 7 as printed measures the spread about the
  present position x_i, not the new mean x_i': positions move only through the force field, so
  an atom off its density is wider until it has moved. Measured on the deposited chains in their
  experimental maps (fixed mask, 25 iterations, widths started from the deposited B): about the
  present position the mixture CC went 0.838 -> 0.806 (EMD-5925), 0.816 -> 0.813 (EMD-2513),
  0.771 -> 0.816 (EMD-5778); about the new mean 0.753, 0.792, 0.772 (one global width 0.225 R:
  0.723, 0.784, 0.703). ``width_about="target"`` keeps the textbook M step.
* Background (Eq. 8-9): ``E' = mean_V(M_e E / M_s)`` over the voxels V within 4 sigma of an atom.
* Scale: ``s' = sum_i sum_v W_i dV / sum_i Z_i``, the intensity the atoms took over their
  electrons (the M step of a mixing weight shared by all atoms in proportion to Z).

Deviation from the paper: Eq. 1 prints an unnormalised Gaussian ``Z exp(-|v - x|^2 / B^2)``,
whose intensity grows with its width. With fixed peak heights, width and background trade
intensity and the iteration is unstable: on crambin in a 3 Å map with known widths (0.9 / 1.5 Å
per half) the mean width first rose to 0.99 Å and then collapsed to 0.64 Å in 60 iterations
while the background grew 7-fold and the model-map CC fell from 0.91 to 0.34. With normalised
Gaussians the steps are those of a standard EM and the known widths are recovered
(tests/test_gmm.py).

Conventions: paper 001 prints Eq. 1 as ``Z exp(-|v - x|^2 / B^2)``, so its per-atom "B-factor" is
``sqrt(2) sigma``, a length. emforge keeps ``sigma_A`` (Å) and writes crystallographic B-factors
``B = 8 pi^2 sigma^2`` (Å^2) into models: the width of the fitted Gaussian, map blur included. To
re-simulate the mixture pass ``sigma_A = sqrt(B / (8 pi^2))`` to :func:`emforge.simulate.simulate_map`.
Negative map values carry no weight (``M_e`` is clipped at 0 in Eq. 5 and 8): responsibilities
split intensity, and a negative intensity has no place to go.

All per-atom sums run over the voxels within ``cutoff_sigma`` (4) widths of the atom only (numba,
parallel over atoms); the simulated map is splatted by :func:`emforge.simulate.splat_gaussians`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd

from emforge.errors import InputError
from emforge.geometry.covalent import residue_rows
from emforge.maps import DensityMap
from emforge.models import AtomModel
from emforge.simulate import GMM_SIGMA_PER_RESOLUTION, splat_gaussians

log = logging.getLogger(__name__)

#: per-atom sums and the background region reach this many widths from each atom (paper: 4 sigma)
CUTOFF_SIGMA = 4.0
#: width caps (Å); paper 001 caps its "B" (sqrt(2) sigma) at 2.5 (1.5 for membrane proteins)
SIGMA_MAX_A = 2.5
SIGMA_MIN_A = 0.3
#: crystallographic B per squared width: B = 8 pi^2 sigma^2
B_PER_SIGMA2 = 8.0 * math.pi**2
#: B-factor-only refinement iterations before any positional refinement (paper 001)
BFACTOR_ITERATIONS = 25
#: Eq. 7 measures the spread about the atom's present position (module doc: why not the new mean)
WIDTH_ABOUT = "position"


def sigma_to_b(sigma_A: np.ndarray) -> np.ndarray:
    """Crystallographic B (Å^2) of Gaussian widths sigma (Å): B = 8 pi^2 sigma^2."""
    return B_PER_SIGMA2 * np.asarray(sigma_A, dtype=np.float64) ** 2


def b_to_sigma(b_A2: np.ndarray) -> np.ndarray:
    """Gaussian widths (Å) of crystallographic B-factors (Å^2); B <= 0 gives 0."""
    return np.sqrt(np.maximum(np.asarray(b_A2, dtype=np.float64), 0.0) / B_PER_SIGMA2)


@dataclass
class Mixture:
    """The mixture's parameters for N atoms.

    Attributes
    ----------
    coords_A : (N, 3) float64, Å, atom centres
    sigma_A : (N,) float64, Å, widths
    z : (N,) float64, atomic numbers (relative amplitudes)
    residue : (N,) int64, residue row of each atom (widths are averaged per residue)
    scale : map units per electron at the centre of a Gaussian
    background : E, map units
    """

    coords_A: np.ndarray
    sigma_A: np.ndarray
    z: np.ndarray
    residue: np.ndarray
    scale: float = 1.0
    background: float = 0.0

    @classmethod
    def from_model(cls, model: AtomModel, resolution_A: float, sigma_A=None) -> "Mixture":
        """A mixture of ``model``'s atoms, widths from the resolution and the model's B-factors
        (``sqrt((0.225 R)^2 + B / 8 pi^2)``, as the "gmm" simulation kernel) unless ``sigma_A``."""
        if len(model) == 0:
            raise InputError("model holds no atoms: nothing to fit a Gaussian mixture to")
        if not np.isfinite(model.coords).all():
            raise InputError("model has non-finite coordinates")
        if sigma_A is None:
            sigma = np.sqrt((GMM_SIGMA_PER_RESOLUTION * float(resolution_A)) ** 2
                            + b_to_sigma(np.nan_to_num(model.b_factor, nan=0.0)) ** 2)
        else:
            sigma = np.broadcast_to(np.asarray(sigma_A, dtype=np.float64), (len(model),)).copy()
        z = np.asarray(model.atomic_number, dtype=np.float64).copy()
        z[z <= 0] = 6.0  # unknown elements weigh as carbon
        return cls(np.array(model.coords, dtype=np.float64), np.clip(sigma, SIGMA_MIN_A, None), z,
                   residue_rows(model).astype(np.int64))


@dataclass
class EMStep:
    """One E+M step: targets and widths of the M step, and the statistics of the E step.

    Attributes
    ----------
    targets_A : (N, 3) Å, responsibility-weighted mean positions (Eq. 6); an atom with no weight
        keeps its position
    sigma_A : (N,) Å, new widths (Eq. 7, residue-averaged and clipped)
    weight : (N,) responsibility-weighted intensity of each atom, sum_v W_i (map units x voxels)
    background : E' (Eq. 9)
    scale : s' (M step)
    cc : Pearson correlation of M_s and M_e over the background region V
    n_region_voxels : |V|
    """

    targets_A: np.ndarray
    sigma_A: np.ndarray
    weight: np.ndarray
    background: float
    scale: float
    cc: float
    n_region_voxels: int
    raw_sigma_A: np.ndarray = field(repr=False, default=None)


@numba.njit(parallel=True, cache=True)
def _moments(index_xyz, sigma_vox, peak, cutoff, me, ms, voxel, tot, first, second):  # pragma: no cover - numba
    """Per atom a: tot = sum W, first = sum W dv (Å), second = sum W |dv|^2 (Å^2), dv = v - x_a,
    W = me * P_a / ms over the voxels within cutoff widths (P_a = peak_a exp(-q/2))."""
    nz, ny, nx = me.shape
    c2 = cutoff * cutoff
    for a in numba.prange(index_xyz.shape[0]):
        x, y, z = index_xyz[a, 0], index_xyz[a, 1], index_xyz[a, 2]
        sx, sy, sz = sigma_vox[a, 0], sigma_vox[a, 1], sigma_vox[a, 2]
        i0 = max(0, int(math.ceil(x - cutoff * sx)))
        i1 = min(nx - 1, int(math.floor(x + cutoff * sx)))
        j0 = max(0, int(math.ceil(y - cutoff * sy)))
        j1 = min(ny - 1, int(math.floor(y + cutoff * sy)))
        k0 = max(0, int(math.ceil(z - cutoff * sz)))
        k1 = min(nz - 1, int(math.floor(z + cutoff * sz)))
        t = 0.0
        fx = 0.0
        fy = 0.0
        fz = 0.0
        s2 = 0.0
        for k in range(k0, k1 + 1):
            dz = (k - z) / sz
            qz = dz * dz
            if qz > c2:
                continue
            wz = (k - z) * voxel[2]
            for j in range(j0, j1 + 1):
                dy = (j - y) / sy
                qy = qz + dy * dy
                if qy > c2:
                    continue
                wy = (j - y) * voxel[1]
                for i in range(i0, i1 + 1):
                    dx = (i - x) / sx
                    q = qy + dx * dx
                    if q > c2:
                        continue
                    e = me[k, j, i]
                    if e <= 0.0:
                        continue
                    w = e * peak[a] * math.exp(-0.5 * q) / ms[k, j, i]
                    wx = (i - x) * voxel[0]
                    t += w
                    fx += w * wx
                    fy += w * wy
                    fz += w * wz
                    s2 += w * (wx * wx + wy * wy + wz * wz)
        tot[a] = t
        first[a, 0] = fx
        first[a, 1] = fy
        first[a, 2] = fz
        second[a] = s2


def _peaks(mix: Mixture) -> np.ndarray:
    """Peak height of each normalised Gaussian at scale 1: Z (2 pi sigma^2)^(-3/2) (per Å^3)."""
    return mix.z * (2.0 * math.pi * mix.sigma_A**2) ** -1.5


def _unit_mixture(mix: Mixture, grid: DensityMap, cutoff: float) -> np.ndarray:
    """sum_i P_i / s on ``grid`` (scale 1, no background), float32 (z, y, x)."""
    index = grid.world_to_index(mix.coords_A)
    return splat_gaussians(index, _peaks(mix), mix.sigma_A[:, None] / grid.voxel_size[None, :], grid.shape, cutoff)


def _region(mix: Mixture, grid: DensityMap, cutoff: float) -> np.ndarray:
    """Boolean (z, y, x): voxels within ``cutoff`` widths of any atom."""
    index = grid.world_to_index(mix.coords_A)
    ones = np.ones(len(mix.z))
    return splat_gaussians(index, ones, mix.sigma_A[:, None] / grid.voxel_size[None, :], grid.shape, cutoff) > 0


def _residue_mean(values: np.ndarray, residue: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-atom mean of ``values`` over its residue's atoms with weight > 0 (all atoms if none)."""
    w = (weight > 0).astype(np.float64)
    n_res = int(residue.max()) + 1
    num = np.bincount(residue, weights=values * w, minlength=n_res)
    den = np.bincount(residue, weights=w, minlength=n_res)
    all_num = np.bincount(residue, weights=values, minlength=n_res)
    all_den = np.bincount(residue, minlength=n_res).astype(np.float64)
    mean = np.where(den > 0, num / np.maximum(den, 1e-300), all_num / np.maximum(all_den, 1.0))
    return mean[residue]


def initial_scale_background(mix: Mixture, density: DensityMap,
                             cutoff_sigma: float = CUTOFF_SIGMA) -> tuple[float, float]:
    """Starting scale and background: all positive intensity within reach of the atoms given to
    the atoms, and a background of 1 % of its mean (the E steps raise it to what the map needs)."""
    region = _region(mix, density, cutoff_sigma)
    if not region.any():
        raise InputError("the model lies outside the map: no voxel within reach of any atom")
    pos = np.maximum(density.data[region].astype(np.float64), 0.0)
    dv = float(np.prod(density.voxel_size))
    scale = max(float(pos.sum()) * dv / float(mix.z.sum()), 1e-30)
    background = max(0.01 * float(pos.mean()), 1e-30)
    return scale, background


def _eq9(me_region: np.ndarray, ms_region: np.ndarray, background: float) -> float:
    """E' = mean over V of M_e E / M_s (M_e clipped at 0), floored at a tiny positive value."""
    e = float(np.mean(np.maximum(me_region, 0.0) * background / ms_region)) if len(me_region) else background
    return max(e, 1e-9 * float(np.max(np.abs(me_region), initial=1.0)))


def em_step(mix: Mixture, density: DensityMap, *, sigma_min_A: float = SIGMA_MIN_A, sigma_max_A: float = SIGMA_MAX_A,
            residue_average: bool = True, cutoff_sigma: float = CUTOFF_SIGMA,
            width_about: str = WIDTH_ABOUT) -> EMStep:
    """One expectation-maximisation step of ``mix`` against ``density`` (does not modify ``mix``).

    ``width_about``: "position" (Eq. 7 as printed: the spread about the atom's present position,
    so that an atom off its density gets wider) or "target" (about the new mean, the textbook M step
    when positions and widths are updated together).

    The E step uses ``mix``'s scale and background; the returned scale and background are their
    M-step updates.
    """
    grid = density
    me = np.ascontiguousarray(density.data, dtype=np.float32)
    unit = _unit_mixture(mix, grid, cutoff_sigma)
    region = _region(mix, grid, cutoff_sigma)
    if not region.any():
        raise InputError("the model lies outside the map: no voxel within reach of any atom")
    me_r = me[region].astype(np.float64)
    ms = (mix.scale * unit + mix.background).astype(np.float32)
    ms[ms <= 0] = np.float32(max(mix.background, 1e-30))
    n = len(mix.z)
    tot = np.zeros(n)
    first = np.zeros((n, 3))
    second = np.zeros(n)
    index = grid.world_to_index(mix.coords_A)
    sigma_vox = np.ascontiguousarray(mix.sigma_A[:, None] / grid.voxel_size[None, :])
    _moments(np.ascontiguousarray(index), sigma_vox, mix.scale * _peaks(mix), float(cutoff_sigma), me, ms,
             np.asarray(grid.voxel_size, dtype=np.float64), tot, first, second)
    has = tot > 0
    shift = np.zeros((n, 3))
    shift[has] = first[has] / tot[has, None]
    targets = mix.coords_A + shift
    var = np.full(n, np.nan)
    var[has] = second[has] / tot[has]
    if width_about == "target":
        var[has] -= np.sum(shift[has] ** 2, axis=1)
    elif width_about != "position":
        raise InputError(f"width_about must be 'position' or 'target', got {width_about!r}")
    raw_sigma2 = np.where(has, var / 3.0, mix.sigma_A**2)
    raw_sigma2 = np.maximum(raw_sigma2, sigma_min_A**2)
    sigma2 = _residue_mean(raw_sigma2, mix.residue, tot) if residue_average else raw_sigma2
    sigma = np.clip(np.sqrt(sigma2), sigma_min_A, sigma_max_A)
    background = _eq9(me_r, ms[region].astype(np.float64), mix.background)
    scale = max(float(tot.sum()) * float(np.prod(grid.voxel_size)) / float(mix.z.sum()), 1e-30)
    cc = float(np.corrcoef(ms[region], me_r)[0, 1]) if region.sum() > 1 else float("nan")
    return EMStep(targets, sigma, tot, background, scale, cc, int(region.sum()), np.sqrt(raw_sigma2))


def refine_widths(mix: Mixture, density: DensityMap, n_iterations: int, *, sigma_min_A: float = SIGMA_MIN_A,
                  sigma_max_A: float = SIGMA_MAX_A, residue_average: bool = True,
                  cutoff_sigma: float = CUTOFF_SIGMA, width_about: str = WIDTH_ABOUT) -> pd.DataFrame:
    """``n_iterations`` E+M steps updating widths, scale and background of ``mix`` in place
    (positions fixed), starting from :func:`initial_scale_background`.

    Returns one row per iteration: iteration, cc (M_s vs M_e over the region, E-step map),
    background, scale, mean_sigma_A, mean_b_A2.
    """
    mix.sigma_A = np.clip(mix.sigma_A, sigma_min_A, sigma_max_A)
    mix.scale, mix.background = initial_scale_background(mix, density, cutoff_sigma)
    rows = []
    for it in range(int(n_iterations)):
        step = em_step(mix, density, sigma_min_A=sigma_min_A, sigma_max_A=sigma_max_A,
                       residue_average=residue_average, cutoff_sigma=cutoff_sigma, width_about=width_about)
        mix.sigma_A, mix.background, mix.scale = step.sigma_A, step.background, step.scale
        rows.append({"iteration": it + 1, "cc": step.cc, "background": step.background, "scale": step.scale,
                     "mean_sigma_A": float(mix.sigma_A.mean()), "mean_b_A2": float(sigma_to_b(mix.sigma_A).mean())})
    return pd.DataFrame(rows, columns=["iteration", "cc", "background", "scale", "mean_sigma_A", "mean_b_A2"])


@dataclass
class BFactorResult:
    """Outcome of :func:`refine_bfactors`."""

    model: AtomModel
    mixture: Mixture
    history: pd.DataFrame


def refine_bfactors(model: AtomModel, density: DensityMap, resolution_A: float, *,
                    n_iterations: int = BFACTOR_ITERATIONS, sigma_min_A: float = SIGMA_MIN_A,
                    sigma_max_A: float = SIGMA_MAX_A, residue_average: bool = True,
                    cutoff_sigma: float = CUTOFF_SIGMA, width_about: str = WIDTH_ABOUT) -> BFactorResult:
    """Refine per-atom widths with positions fixed (paper 001: 25 iterations before positional refinement).

    Parameters
    ----------
    model
        N atoms (Å); hydrogens are ignored (carried over with the B of their residue's mean).
    density
        Experimental map (any grid; the model must lie in it).
    resolution_A
        Map resolution (Å): the starting widths (:meth:`Mixture.from_model`).
    n_iterations
        E+M steps.
    sigma_min_A, sigma_max_A
        Width caps (Å); B = 8 pi^2 sigma^2.
    residue_average
        Average the widths per residue (paper 001).
    width_about
        "position" (Eq. 7) or "target" (:func:`em_step`).

    Returns
    -------
    BFactorResult
        ``model`` with B = 8 pi^2 sigma^2 (Å^2) on every atom; ``mixture`` (final widths, scale,
        background); ``history`` per iteration: iteration, cc (M_s vs M_e over the region),
        background, scale, mean_sigma_A, mean_b_A2.
    """
    _check_args(resolution_A, n_iterations, sigma_min_A, sigma_max_A)
    heavy_mask = ~model.is_hydrogen()
    heavy = model.select(heavy_mask)
    mix = Mixture.from_model(heavy, resolution_A)
    history = refine_widths(mix, density, n_iterations, sigma_min_A=sigma_min_A, sigma_max_A=sigma_max_A,
                            residue_average=residue_average, cutoff_sigma=cutoff_sigma, width_about=width_about)
    b = np.empty(len(model))
    b[heavy_mask] = sigma_to_b(mix.sigma_A)
    if (~heavy_mask).any():  # hydrogens: the mean B of their residue's heavy atoms
        rows_all = residue_rows(model)
        per_res = np.bincount(rows_all[heavy_mask], weights=b[heavy_mask], minlength=rows_all.max() + 1)
        cnt = np.bincount(rows_all[heavy_mask], minlength=rows_all.max() + 1)
        b[~heavy_mask] = (per_res / np.maximum(cnt, 1))[rows_all[~heavy_mask]]
    if len(history):
        log.info("B-factor refinement: %d iterations, CC %.4f -> %.4f, mean B %.1f Å^2", len(history),
                 history["cc"].iloc[0], history["cc"].iloc[-1], history["mean_b_A2"].iloc[-1])
    return BFactorResult(model.with_b_factors(b), mix, history)


def _check_args(resolution_A, n_iterations, sigma_min_A, sigma_max_A) -> None:
    try:
        ok = math.isfinite(float(resolution_A)) and float(resolution_A) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"resolution must be a finite number > 0 Å, got {resolution_A!r}")
    if int(n_iterations) < 0:
        raise InputError(f"number of iterations must be >= 0, got {n_iterations!r}")
    if not 0 < sigma_min_A < sigma_max_A:
        raise InputError(f"width caps must satisfy 0 < sigma_min ({sigma_min_A}) < sigma_max ({sigma_max_A}) Å")


__all__ = ["Mixture", "EMStep", "BFactorResult", "em_step", "refine_widths", "refine_bfactors",
           "initial_scale_background", "sigma_to_b", "b_to_sigma", "CUTOFF_SIGMA", "SIGMA_MAX_A", "SIGMA_MIN_A",
           "BFACTOR_ITERATIONS"]
