"""Per-residue fit scores after TEMPy: SMOC (Manders' overlap per residue), SMOCf, LoQFit.

Every function returns one row per residue in :meth:`AtomModel.residue_table` order,
columns ``chain_id, res_seq, ins_code, res_name`` first, then the score.

SMOC, SMOCf (Joseph et al. 2016; TEMPy ``ScoringFunctions.SMOC``, ``FastSMOC``)
-----------------------------------------------------------------------------------
Manders' overlap coefficient of the experimental map ``e`` and the model map ``s``
over a set of voxels ``V``::

    MOC(V) = sum_V e s / sqrt(sum_V e^2  sum_V s^2)

* Model map: TEMPy's ``gaussian_blur_real_space(sigma_coeff=0.225, normalise=True)``:
  mass-weighted Gaussians of width ``0.225 R`` on the map's grid, then z-scored over
  the whole box (so ``s`` is negative in empty regions, as in TEMPy). ``e`` is used as is.
* Voxels of a residue: grid points within ``sigma_threshold * max(sigma_coeff * R, 1 Å)``
  (2.5 x max(0.225 R, 1) Å) of any of its atoms (TEMPy ``get_indices`` /
  ``mapGridPositions``, FastSMOC's sphere radius).
* ``fragment=False`` (SMOC per residue, TEMPy's SMOCd, ``SMOC(fragment_score=False)``):
  ``V`` = the residue's voxels; at resolutions worse than 3.5 Å TEMPy adds the grid
  points within ``R`` of the residue's C-alpha (C1' for nucleotides), and so do we.
* ``fragment=True`` (SMOCf; ``TEMPy.smoc`` / ``FastSMOC.score_chain_contig``): ``V`` =
  the union of the voxels of the residues in a window of ``window`` (11) residues
  centred on the residue, inside its contiguous segment; windows are cut at segment
  ends (a terminal residue's window holds itself and the 5 residues on one side).
  Segments break where the chain changes or the residue number does not go up by one
  (an insertion code on the same number continues the segment). ``span_breaks=True``
  lets windows run over numbering gaps within a chain, like TEMPy's older
  ``SMOC(fragment_score=True)`` and ``FastSMOC.score_chain_span``.
* ``fragments``: per-residue group labels (e.g. secondary-structure elements or rigid
  bodies); residues of one group all get the MOC over the union of the group's voxels
  (TEMPy's ``rigid_body_file``); residues labelled -1 keep their own score.

Computation: every (voxel, residue) pair is generated once by a numba kernel; the
pairs are sorted by voxel and each voxel adds its products to the windows it belongs
to through a difference array over residue positions (the union of the intervals
``[p - h, p + h]`` of its residues, so a voxel shared by several residues of a window
counts once). Cost grows with the number of pairs, not with the window length.

Differences from TEMPy's default call, both deliberate: voxel centres are at
``origin + index * voxel``, the map's own frame (TEMPy's ``SMOC`` k-d tree and
FastSMOC's voxcov accumulator put them at ``origin + (index + 0.5) * voxel``, half a
voxel off the frame its readers and model maps use); the model map uses exact Gaussians
cut at 4 sigma (TEMPy's default "classic" blur adds each atom's mass to the nearest
voxel of a ~1 Å grid, so atoms move by up to 0.5 Å per axis, then filters and
resamples). Both matter at this scale: per-residue Pearson r with TEMPy's default
SMOC is 0.71-0.96 on real maps, and 1.0000 once ``grid_offset_vox=0.5`` and
``sim_map=tempy_classic_model_map(...)`` reproduce TEMPy's choices
(benchmarks/results/validate_vs_tempy.md). Residues with no voxel in the box, or a
window with zero density, get NaN (TEMPy copies a neighbour's score or writes 0).

LoQFit (Malhotra et al.; TEMPy ``ScoringFunctions.LoQFit``)
----------------------------------------------------------
Local model-map FSC in a soft spherical mask around each residue's C-alpha; the score
is the resolution (Å) where the FSC falls to 0.5. TEMPy's recipe, followed step by step:

* model map: mass-weighted Gaussians of width ``0.356 R`` (TEMPy's default
  ``sigma_coeff`` for LoQFit); both maps rescaled to [-1, 1] by their min and max over
  the whole box (an offset that matters, since the masked FSC is not offset-invariant).
* mask: diameter ``d = int(5 R / voxel)`` voxels (at least 6), cosine edge
  ``max(10, round(d / 3))`` voxels, made as TEMPy's ``make_spherical_mask`` does
  (radius ``int(d/2)``, distances binned in steps of ``r_max / (int(r_max) - 1)``),
  centred in a cubic box of the first size >= ``d + 2 edge`` in 2, 3, 5, 4, 6, 10, 8,
  12, 20, ... (``get_fft_optimised_box_size``).
* box: centred on the C-alpha's nearest voxel, moved inside the map near its edges.
* FSC: shells ``floor(|q| n)`` of the box's real FFT (``q`` in cycles/voxel), no
  Friedel weights, shell ``k`` reported at resolution ``voxel * n / k``, shells up to
  ``|q| = 0.5``.
* score: the highest-frequency crossing of 0.5 (``use_highest_resolution``), linearly
  interpolated in resolution (Å) between the two shells, the curve starting at
  (1001 Å, 1.0); no crossing gives Nyquist (``2 x voxel``): what TEMPy reports for a
  noise-free model map that matches the map, so a perfect fit reads as "Nyquist", not
  as a number with meaning; values above ``max_res_A`` (18 Å) are set to it.
* half maps (normalised LoQFit): the local FSC of the two half maps in the same mask
  gives a local resolution (no interpolation; Nyquist when it never falls below 0.5,
  where TEMPy divides by zero); the score is ``loqfit / local``. TEMPy then also turns
  interpolation off for ``loqfit_A``; ``interpolate`` overrides.

Where the map is smaller than the box TEMPy scores every residue with the whole map
(one value for all); we pad the map with its minimum by half a box on every side
instead, so each mask stays centred on its residue.

Computation: residues are taken in batches; a numba kernel cuts each residue's two
masked boxes (only the mask's non-zero rows) into one complex box ``(e + i s) * mask``
in a reused buffer, ``torch.fft.fftn`` (float32, all threads) transforms it, and a
numba kernel separates the two spectra by Hermitian symmetry and sums the products per
shell over the coefficients TEMPy keeps. One complex FFT per residue instead of TEMPy's
two real double-precision ones; the FFT is what bounds the speed-up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numba
import numpy as np
import pandas as pd
import torch

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap
from emforge.models import AtomModel
from emforge.simulate import simulate_map

log = logging.getLogger(__name__)

SMOC_SIGMA_COEFF = 0.225
SMOC_SIGMA_THRESHOLD = 2.5
SMOC_WINDOW = 11
LOQFIT_SIGMA_COEFF = 0.356
LOQFIT_MAX_RES_A = 18.0
LOQFIT_DIAMETER_FACTOR = 5.0
#: Gaussians of the model map are cut at 4 sigma, as TEMPy's voxcov blurring does: LoQFit reads
#: the FSC out to Nyquist, where the step left by a 3 sigma cut is visible (per-residue r with
#: TEMPy 0.92 at 3 sigma, 0.997 at 4 sigma on EMD-5778).
MODEL_MAP_CUTOFF_SIGMA = 4.0


# -- helpers shared by SMOC and LoQFit ---------------------------------------------------------

def _residue_frame(model: AtomModel) -> pd.DataFrame:
    t = model.residue_table()
    return pd.DataFrame({"chain_id": t["chain_id"], "res_seq": t["res_seq"],
                         "ins_code": t["ins_code"], "res_name": t["res_name"]})


def _atom_residue(model: AtomModel) -> tuple[np.ndarray, int]:
    """(N,) residue ordinal (0..R-1, residue_table order) of every atom, and R."""
    starts = model.residue_starts()
    owner = np.zeros(len(model), np.int64)
    if len(starts) > 1:
        owner[starts[1:]] = 1
        owner = np.cumsum(owner)
    return owner, len(starts)


def _centre_atoms(model: AtomModel, owner: np.ndarray, n_res: int) -> np.ndarray:
    """(R,) index of each residue's centre atom (first CA of an amino acid, else first C1'), -1 if none."""
    centre = np.full(n_res, -1, np.int64)
    is_ca = (model.atom_name == "CA") & model.is_protein()
    for sel in (model.atom_name == "C1'", is_ca):  # CA last, so it wins
        idx = np.flatnonzero(sel)
        res, first = np.unique(owner[idx], return_index=True)
        centre[res] = idx[first]
    return centre


def _segments(model: AtomModel, span_breaks: bool) -> np.ndarray:
    """(R,) segment id per residue: a new segment where the chain changes or the numbering jumps."""
    t = model.residue_table()
    chain = t["chain_id"]
    seq = np.asarray(t["res_seq"], np.int64)
    n = len(seq)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.zeros(n, bool)
    new[0] = True
    new[1:] = chain[1:] != chain[:-1]
    if not span_breaks:
        step = np.diff(seq)
        same_number = (step == 0) & (t["ins_code"][1:] != t["ins_code"][:-1])
        new[1:] |= ~((step == 1) | same_number)
    return np.cumsum(new) - 1


def _simulated(model: AtomModel, like: DensityMap, resolution: float, sigma_coeff: float | None,
               kernel: str, sim_map: DensityMap | None) -> DensityMap:
    if sim_map is not None:
        if not sim_map.same_grid(like):
            raise ValueError("sim_map must lie on the grid of density_map")
        return sim_map
    sigma = None if sigma_coeff is None else require_positive(sigma_coeff, "sigma_coeff") * resolution
    return simulate_map(model, like, resolution, kernel=kernel, sigma_A=sigma, cutoff_sigma=MODEL_MAP_CUTOFF_SIGMA)


def _check_inputs(model: AtomModel, density_map: DensityMap, resolution_A: float) -> float:
    resolution = require_positive(resolution_A, "resolution (Å)")
    if len(model) == 0:
        raise InputError("model holds no atoms")
    if not np.all(np.isfinite(model.coords)):
        raise InputError("model has non-finite coordinates")
    if not np.all(np.isfinite(density_map.data)):
        raise InputError("map holds non-finite values")
    return resolution


def tempy_classic_model_map(model: AtomModel, like: DensityMap, resolution_A: float,
                            sigma_coeff: float = SMOC_SIGMA_COEFF) -> DensityMap:
    """The model map TEMPy's SMOC and FastSMOC make by default (``gaussian_blur_real_space``
    without voxcov), for cross-checks against TEMPy: not a better model map.

    Each atom's mass is added to the nearest voxel of a grid with the origin of ``like``
    and ``int(n * voxel)`` voxels per axis (about 1 Å, so positions are off by up to half a
    voxel per axis), the grid is Gaussian-filtered with ``sigma_coeff * R`` voxels
    (:func:`scipy.ndimage.gaussian_filter`, reflecting edges, 4 sigma), resampled onto
    ``like`` with cubic splines (outside: the map minimum) and z-scored.
    """
    from scipy import ndimage

    resolution = require_positive(resolution_A, "resolution (Å)")
    n_xyz = like.shape_xyz
    fine_n = np.maximum((n_xyz * like.voxel_size).astype(np.int64), 1)
    fine_voxel = like.voxel_size * n_xyz / fine_n
    idx = np.round((model.coords - like.origin) / fine_voxel).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < fine_n), axis=1)
    grid = np.zeros(tuple(fine_n[::-1]), np.float64)
    np.add.at(grid, (idx[inside, 2], idx[inside, 1], idx[inside, 0]), model.mass[inside])
    grid = ndimage.gaussian_filter(grid, float(sigma_coeff) * resolution)
    coeffs = ndimage.spline_filter(grid, order=3)
    axes = [np.arange(n) * like.voxel_size[a] / fine_voxel[a] for a, n in ((2, n_xyz[2]), (1, n_xyz[1]),
                                                                           (0, n_xyz[0]))]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    data = ndimage.map_coordinates(coeffs, [zz, yy, xx], order=3, prefilter=False, cval=float(grid.min()))
    data = (data - data.mean()) / data.std()
    return like.with_data(data.astype(np.float32))


# -- SMOC ----------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _sphere_pairs(centres, radii_A, owner, voxel, shape_zyx):
    """Unique (flat voxel, owner) pairs for spheres sorted by owner.

    centres : (M, 3) fractional voxel indices (x, y, z); radii_A : (M,) Å; owner : (M,)
    non-decreasing. A voxel is in a sphere when its centre lies within the radius (<=).
    """
    nz, ny, nx = shape_zyx
    vx, vy, vz = voxel[0], voxel[1], voxel[2]
    m = centres.shape[0]
    bound = 0
    for a in range(m):
        r = radii_A[a]
        bound += ((2 * int(r / vx) + 3) * (2 * int(r / vy) + 3) * (2 * int(r / vz) + 3))
    vox = np.empty(bound, np.int64)
    res = np.empty(bound, np.int64)
    mark = np.full(nz * ny * nx, -1, np.int32)
    n = 0
    for a in range(m):
        r = radii_A[a]
        o = owner[a]
        r2 = r * r
        cx, cy, cz = centres[a, 0], centres[a, 1], centres[a, 2]
        k0 = max(0, int(math.ceil(cz - r / vz)))
        k1 = min(nz - 1, int(math.floor(cz + r / vz)))
        j0 = max(0, int(math.ceil(cy - r / vy)))
        j1 = min(ny - 1, int(math.floor(cy + r / vy)))
        i0 = max(0, int(math.ceil(cx - r / vx)))
        i1 = min(nx - 1, int(math.floor(cx + r / vx)))
        for k in range(k0, k1 + 1):
            dz = (k - cz) * vz
            for j in range(j0, j1 + 1):
                dy = (j - cy) * vy
                dzy = dz * dz + dy * dy
                if dzy > r2:
                    continue
                base = (k * ny + j) * nx
                for i in range(i0, i1 + 1):
                    dx = (i - cx) * vx
                    if dzy + dx * dx <= r2:
                        v = base + i
                        if mark[v] != o:
                            mark[v] = o
                            vox[n] = v
                            res[n] = o
                            n += 1
    return vox[:n], res[:n]



@numba.njit(cache=True, inline="always")
def _add_run(diff, first, last, x, y):
    """Add one voxel's (xy, xx, yy, 1) to windows first..last via a difference array."""
    diff[first, 0] += x * y
    diff[first, 1] += x * x
    diff[first, 2] += y * y
    diff[first, 3] += 1.0
    diff[last + 1, 0] -= x * y
    diff[last + 1, 1] -= x * x
    diff[last + 1, 2] -= y * y
    diff[last + 1, 3] -= 1.0

@numba.njit(cache=True)
def _window_sums(keys, n_res, lo, hi, e_flat, s_flat):
    """Per-window sums (sum es, sum ee, sum ss, n) from voxel-sorted keys ``v * n_res + r``.

    Voxel ``v`` covered by residues P(v) adds its products to every window centre in the
    union of the intervals [lo[p], hi[p]] over p in P(v).
    """
    diff = np.zeros((n_res + 1, 4))
    m = keys.shape[0]
    i = 0
    while i < m:
        v = keys[i] // n_res
        x = e_flat[v]
        y = s_flat[v]
        cur_lo = -1
        cur_hi = -2
        j = i
        while j < m and keys[j] // n_res == v:
            r = keys[j] - v * n_res
            a = lo[r]
            b = hi[r]
            if a > cur_hi + 1:
                if cur_lo >= 0:
                    _add_run(diff, cur_lo, cur_hi, x, y)
                cur_lo = a
                cur_hi = b
            elif b > cur_hi:
                cur_hi = b
            j += 1
        if cur_lo >= 0:
            _add_run(diff, cur_lo, cur_hi, x, y)
        i = j
    out = np.zeros((n_res, 4))
    acc = np.zeros(4)
    for r in range(n_res):
        for c in range(4):
            acc[c] += diff[r, c]
            out[r, c] = acc[c]
    return out


def _moc_from_sums(sums: np.ndarray) -> np.ndarray:
    sxy, sxx, syy, n = sums.T
    den = np.sqrt(np.maximum(sxx, 0.0) * np.maximum(syy, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        moc = np.where((den > 0) & (n > 0.5), sxy / den, np.nan)
    return moc


def residue_voxels(model: AtomModel, like: DensityMap, radius_A: float,
                   centre_radius_A: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Unique (flat voxel index, residue ordinal) pairs: grid points within ``radius_A`` of
    a residue's atoms, plus within ``centre_radius_A`` of its C-alpha (C1') when > 0.

    Flat indices address ``like.data.ravel()``; residue ordinals follow
    :meth:`AtomModel.residue_table`. Returned sorted by voxel, then residue.
    """
    owner, n_res = _atom_residue(model)
    centres = [model.coords]
    radii = [np.full(len(model), float(radius_A))]
    owners = [owner]
    if centre_radius_A > 0:
        ca = _centre_atoms(model, owner, n_res)
        has = ca >= 0
        centres.append(model.coords[ca[has]])
        radii.append(np.full(int(has.sum()), float(centre_radius_A)))
        owners.append(np.flatnonzero(has).astype(np.int64))
    xyz = np.concatenate(centres)
    rad = np.concatenate(radii)
    own = np.concatenate(owners)
    order = np.argsort(own, kind="stable")
    idx = np.ascontiguousarray(like.world_to_index(xyz[order]))
    vox, res = _sphere_pairs(idx, rad[order], own[order], np.asarray(like.voxel_size, np.float64),
                             np.array(like.shape, np.int64))
    keys = np.sort(vox * max(n_res, 1) + res)
    return keys // max(n_res, 1), keys % max(n_res, 1)


def smoc(model: AtomModel, density_map: DensityMap, resolution_A: float, fragment: bool = False, *,
         window: int = SMOC_WINDOW, span_breaks: bool = False, fragments=None,
         sim_map: DensityMap | None = None, sigma_coeff: float | None = SMOC_SIGMA_COEFF,
         sigma_threshold: float = SMOC_SIGMA_THRESHOLD, kernel: str = "emrefiner",
         centre_radius_A: float | None = None, normalise_simulated: bool = True,
         grid_offset_vox: float = 0.0) -> pd.DataFrame:
    """SMOC per residue (``fragment=False``) or SMOCf over sliding windows (``fragment=True``).

    Parameters
    ----------
    model, density_map
        Atoms (Å) and the experimental map.
    resolution_A
        Map resolution R (Å).
    fragment
        False: each residue's own voxels (TEMPy SMOCd). True: the union over an
        ``window``-residue window within the contiguous segment (TEMPy SMOCf, the
        ``TEMPy.smoc`` default).
    window
        Odd window length in residues (11).
    span_breaks
        Windows run over numbering gaps inside a chain (TEMPy's older SMOCf).
    fragments : array_like (R,) int, optional
        Group label per residue (-1: none); residues of a group share the MOC over the
        group's voxels.
    sim_map
        Precomputed model map on the grid of ``density_map`` (z-scored here when
        ``normalise_simulated``).
    sigma_coeff, kernel
        Model map: ``kernel`` amplitudes with width ``sigma_coeff * R`` (TEMPy: mass,
        0.225); ``sigma_coeff=None`` keeps the kernel's widths.
    sigma_threshold
        Voxel radius around atoms: ``sigma_threshold * max(sigma_coeff * R, 1)`` Å
        (with ``sigma_coeff=None``, 0.225 is used for the radius).
    centre_radius_A
        Extra sphere around each C-alpha; default ``R`` for ``fragment=False`` at
        R > 3.5 Å (TEMPy), else none.
    normalise_simulated
        z-score the model map over the box first (TEMPy does).
    grid_offset_vox
        Place the voxel centres used to pick voxels at ``origin + (index + offset) * voxel``.
        0 (default) is the map's own frame; 0.5 reproduces TEMPy, whose SMOC k-d tree
        and voxcov accumulator put voxel centres half a voxel off the frame its model
        maps and readers use (for cross-checks only).

    Returns
    -------
    DataFrame
        chain_id, res_seq, ins_code, res_name, ``smoc`` (or ``smocf``), ``n_voxels``.
    """
    resolution = _check_inputs(model, density_map, resolution_A)
    window = int(window)
    if window < 1 or window % 2 == 0:
        raise InputError(f"SMOC window must be an odd number >= 1, got {window}")
    sim = _simulated(model, density_map, resolution, sigma_coeff, kernel, sim_map)
    s = sim.data.astype(np.float64)
    if normalise_simulated:
        std = s.std()
        if not std > 0:
            raise InputError("model density does not reach any grid point of the map")
        s = (s - s.mean()) / std
    e = density_map.data.astype(np.float64)
    coeff = SMOC_SIGMA_COEFF if sigma_coeff is None else float(sigma_coeff)
    radius = float(sigma_threshold) * max(coeff * resolution, 1.0)
    if centre_radius_A is None:
        centre_radius_A = resolution if (not fragment and resolution > 3.5) else 0.0
    frame = density_map
    if grid_offset_vox:
        frame = DensityMap(density_map.data, density_map.voxel_size,
                           density_map.origin + float(grid_offset_vox) * density_map.voxel_size)
    vox, res = residue_voxels(model, frame, radius, float(centre_radius_A))
    n_res = len(model.residue_starts())
    pos = np.arange(n_res, dtype=np.int64)
    if fragment:
        half = (window - 1) // 2
        seg = _segments(model, span_breaks)
        first = np.zeros(n_res, np.int64)
        last = np.zeros(n_res, np.int64)
        if n_res:
            starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
            stops = np.r_[starts[1:], n_res] - 1
            first = starts[seg]
            last = stops[seg]
        lo = np.maximum(pos - half, first)
        hi = np.minimum(pos + half, last)
    else:
        lo = pos.copy()
        hi = pos.copy()
    keys = vox * max(n_res, 1) + res
    sums = _window_sums(keys, max(n_res, 1), lo, hi, e.ravel(), s.ravel())[:n_res]
    score = _moc_from_sums(sums)
    count = sums[:, 3].round().astype(np.int64)
    if fragments is not None:
        labels = np.asarray(fragments, dtype=np.int64)
        if labels.shape != (n_res,):
            raise InputError(f"fragments must hold one label per residue ({n_res}), got shape {labels.shape}")
        score, count = _fragment_scores(labels, vox, res, e.ravel(), s.ravel(), score, count)
    out = _residue_frame(model)
    out["smocf" if fragment else "smoc"] = score
    out["n_voxels"] = count
    return out


def _fragment_scores(labels, vox, res, e_flat, s_flat, score, count):
    grouped = labels[res]
    keep = grouped >= 0
    if not keep.any():
        return score, count
    g_ids, g_index = np.unique(grouped[keep], return_inverse=True)
    pair = np.unique(vox[keep] * len(g_ids) + g_index)
    v = pair // len(g_ids)
    g = pair % len(g_ids)
    x = e_flat[v]
    y = s_flat[v]
    k = len(g_ids)
    sums = np.stack([np.bincount(g, x * y, k), np.bincount(g, x * x, k), np.bincount(g, y * y, k),
                     np.bincount(g, minlength=k).astype(np.float64)], axis=1)
    g_score = _moc_from_sums(sums)
    score = score.copy()
    count = count.copy()
    lookup = {int(gid): i for i, gid in enumerate(g_ids)}
    for r in np.flatnonzero(labels >= 0):
        i = lookup.get(int(labels[r]))
        if i is None:  # a labelled residue with no voxel at all
            score[r], count[r] = np.nan, 0
        else:
            score[r], count[r] = g_score[i], int(sums[i, 3])
    return score, count


# -- LoQFit --------------------------------------------------------------------------------------

def tempy_box_size(diameter_px: int) -> int:
    """Smallest size in TEMPy's sequence 2, 3, 5, 4, 6, 10, 8, 12, 20, ... that holds ``diameter_px``."""
    p2, p3, p5 = 2, 3, 5
    while True:
        if diameter_px <= p2:
            return p2
        if diameter_px <= p3:
            return p3
        if diameter_px <= p5:
            return p5
        p2, p3, p5 = 2 * p2, 2 * p3, 2 * p5


def loqfit_mask(diameter_px: int, box: tuple[int, int, int], cos_edge_px: int) -> np.ndarray:
    """TEMPy's soft spherical LoQFit mask (``make_spherical_mask``) in a box [z, y, x].

    Radius ``int(diameter/2)``; distances from the box centre ``box/2`` are binned in
    steps of ``r_max / (int(r_max) - 1)``; bins up to the radius are 1, the next
    ``cos_edge_px`` bins fall as ``(1 + cos(pi (n - radius) / cos_edge)) / 2``.
    """
    radius = int(diameter_px / 2)
    centre = [b / 2 for b in box]
    for a in range(3):  # TEMPy keeps the sphere inside the box
        if centre[a] - radius - cos_edge_px < 0:
            centre[a] = radius + cos_edge_px
    if centre[0] + radius > box[0]:
        centre[0] = box[0] - radius - cos_edge_px
    for a in (1, 2):
        if centre[a] + radius + cos_edge_px >= box[a]:
            centre[a] = box[a] - radius - cos_edge_px
    z = np.arange(box[0]) - centre[0]
    y = np.arange(box[1]) - centre[1]
    x = np.arange(box[2]) - centre[2]
    r = np.sqrt(z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2)
    rbins = np.linspace(0, r.max(), int(r.max()))
    label = np.searchsorted(rbins, r, "right") - 1
    mask = np.zeros(box)
    for n in range(radius, radius + cos_edge_px):
        mask[label == n] = (math.cos(math.pi * (n - radius) / cos_edge_px) + 1) / 2
    mask[label <= radius] = 1.0
    return mask


def tempy_shells(box: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """TEMPy's FSC shells for a box [z, y, x]: labels of the rfft coefficients and the kept shell frequencies.

    Returns
    -------
    labels : (nz, ny, nx//2+1) int64, ``floor(|q| / q_step)`` with ``q_step = 1/nx``
        (cycles/voxel), computed as TEMPy does (``searchsorted`` on the bin edges).
    qbins : (K,) float64, lower edge of each kept shell (``<= 0.5``), cycles/voxel.
    """
    nz, ny, nx = box
    qx = np.fft.rfftfreq(nx)
    qy = np.fft.fftfreq(ny)
    qz = np.fft.fftfreq(nz)
    qr = np.sqrt(qz[:, None, None] ** 2 + qy[None, :, None] ** 2 + qx[None, None, :] ** 2)
    qstep = np.min(qx[qx > 0])
    nbins = int(np.max(qr) / qstep)
    qbins = np.linspace(0, nbins * qstep, nbins + 1)
    labels = np.searchsorted(qbins, qr, "right") - 1
    return labels, qbins[qbins <= 0.5]


def _crossing_tempy(fsc: np.ndarray, res_A: np.ndarray, threshold: float, interpolate: bool
                    ) -> np.ndarray:
    """TEMPy's ``get_fsc_resolution`` for a batch of curves (B, K): last crossing, in Å; 0 if none."""
    b, k = fsc.shape
    prev_f = np.concatenate([np.ones((b, 1)), fsc[:, :-1]], axis=1)
    prev_r = np.concatenate([[1001.0], res_A[:-1]])
    cross = (fsc < threshold) & (prev_f > threshold)
    any_cross = cross.any(axis=1)
    last = k - 1 - np.argmax(cross[:, ::-1], axis=1)
    rows = np.arange(b)
    f1 = fsc[rows, last]
    f0 = prev_f[rows, last]
    r1 = res_A[last]
    r0 = prev_r[last]
    if interpolate:
        with np.errstate(invalid="ignore", divide="ignore"):
            val = r1 + (threshold - f1) * (r0 - r1) / (f0 - f1)
    else:
        val = r0
    return np.where(any_cross, val, 0.0)


def _box_starts(centre_zyx: np.ndarray, box: int, shape_zyx) -> np.ndarray:
    """First voxel of the box around each centre, moved inside the map as TEMPy's ``get_cropped_box``."""
    if box % 2:
        left, right = int(box / 2 - 0.5), int(box / 2 + 0.5)
    else:
        left = right = box // 2
    c = centre_zyx.copy()
    shape = np.asarray(shape_zyx, np.int64)
    c = np.where(c - left < 0, left, c)
    c = np.where(c + right >= shape, shape - right, c)
    return c - left


@numba.njit(cache=True, parallel=True)
def _cut_masked_pairs(volume_a, volume_b, starts_zyx, mask, row_lo, row_hi, out):
    """Write ``(a + i b) * mask`` boxes into ``out[:B]`` (B, n, n, n) complex64, ``a``/``b`` cut
    from the two volumes at each start (B, 3).

    Only the non-zero part of the mask is written (``row_lo[k, j] .. row_hi[k, j]``, exclusive,
    per row); the rest of ``out`` must hold zeros and is left alone.
    """
    b = starts_zyx.shape[0]
    nz, ny, nx = mask.shape
    for r in numba.prange(b):
        z0, y0, x0 = starts_zyx[r, 0], starts_zyx[r, 1], starts_zyx[r, 2]
        for k in range(nz):
            for j in range(ny):
                for i in range(row_lo[k, j], row_hi[k, j]):
                    w = mask[k, j, i]
                    out[r, k, j, i] = complex(volume_a[z0 + k, y0 + j, x0 + i] * w,
                                              volume_b[z0 + k, y0 + j, x0 + i] * w)


@numba.njit(cache=True, parallel=True)
def _shell_sums_pair(z, q_index, mirror_index, labels, n_shells):
    """Per-shell sums of Re(A B*), |A|^2, |B|^2 from spectra Z = FFT(a + i b) (B, M) complex.

    For real ``a`` and ``b``: ``A(q) = (Z(q) + conj Z(-q)) / 2`` and
    ``B(q) = (Z(q) - conj Z(-q)) / 2i``; ``q_index``/``mirror_index`` address ``q`` and ``-q``
    for the coefficients of the real FFT's half spectrum that are summed (shell ``labels``).
    With ``u = Z(q) + conj Z(-q)`` and ``v = Z(q) - conj Z(-q)``:
    ``Re(A B*) = -Im(u conj v) / 4``, ``|A|^2 = |u|^2 / 4``, ``|B|^2 = |v|^2 / 4``.
    """
    nb = z.shape[0]
    out = np.zeros((nb, 3, n_shells))
    for r in numba.prange(nb):
        acc0 = np.zeros(n_shells)
        acc1 = np.zeros(n_shells)
        acc2 = np.zeros(n_shells)
        zr = z[r]
        for t in range(q_index.shape[0]):
            p = zr[q_index[t]]
            m = np.conj(zr[mirror_index[t]])
            u = p + m
            v = p - m
            lab = labels[t]
            acc0[lab] -= (u * np.conj(v)).imag
            acc1[lab] += u.real * u.real + u.imag * u.imag
            acc2[lab] += v.real * v.real + v.imag * v.imag
        for k in range(n_shells):
            out[r, 0, k] = 0.25 * acc0[k]
            out[r, 1, k] = 0.25 * acc1[k]
            out[r, 2, k] = 0.25 * acc2[k]
    return out


class _LocalFSC:
    """Masked FSC of boxes cut from pairs of maps.

    Both boxes of a residue go into one complex box ``(a + i b) * mask``; one complex FFT
    (torch, float32) gives both spectra (measured 2-5x faster here than two real FFTs
    through ``torch.fft.rfftn``). numba cuts the boxes and sums per shell.
    """

    def __init__(self, mask: np.ndarray, voxel_A: float):
        self.box = mask.shape
        self.mask = np.ascontiguousarray(mask, dtype=np.float32)
        nonzero = self.mask != 0
        any_row = nonzero.any(axis=2)
        first = np.argmax(nonzero, axis=2)
        last = mask.shape[2] - np.argmax(nonzero[:, :, ::-1], axis=2)
        self.row_lo = np.where(any_row, first, 0).astype(np.int64)
        self.row_hi = np.where(any_row, last, 0).astype(np.int64)
        labels, qbins = tempy_shells(self.box)  # on the half spectrum (nz, ny, nx//2 + 1)
        flat = labels.ravel()
        self.n_shells = len(qbins)
        keep = np.flatnonzero(flat < self.n_shells)
        self.labels = flat[keep].astype(np.int64)
        nz, ny, nx = self.box
        kz, ky, kx = np.unravel_index(keep, (nz, ny, nx // 2 + 1))
        self.q_index = ((kz * ny + ky) * nx + kx).astype(np.int64)
        self.mirror_index = ((((nz - kz) % nz) * ny + (ny - ky) % ny) * nx + (nx - kx) % nx).astype(np.int64)
        with np.errstate(divide="ignore"):
            res = voxel_A / qbins
        res[0] = 1000.0
        self.res_A = res
        self._boxes: np.ndarray | None = None
        self._spec: torch.Tensor | None = None

    def __call__(self, volume_a: np.ndarray, volume_b: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """FSC (B, K) of the masked boxes starting at ``starts`` (B, 3) [z, y, x] in both volumes."""
        b = len(starts)
        if self._boxes is None or self._boxes.shape[0] < b:  # buffers reused across batches
            self._boxes = np.zeros((b,) + self.box, np.complex64)
            self._spec = torch.empty((b,) + self.box, dtype=torch.complex64)
        _cut_masked_pairs(volume_a, volume_b, starts, self.mask, self.row_lo, self.row_hi, self._boxes)
        spec = self._spec[:b]
        torch.fft.fftn(torch.from_numpy(self._boxes[:b]), dim=(1, 2, 3), out=spec)
        z = spec.numpy().reshape(b, -1)
        sums = _shell_sums_pair(z, self.q_index, self.mirror_index, self.labels, self.n_shells)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[:, 0] / np.sqrt(sums[:, 1] * sums[:, 2])


def _to_unit_range(d: np.ndarray) -> np.ndarray:
    lo, hi = float(d.min()), float(d.max())
    if not hi > lo:
        raise InputError("map is flat (min == max): LoQFit cannot rescale it")
    return ((d - lo) / (hi - lo) * 2.0 - 1.0).astype(np.float32)


def loqfit(model: AtomModel, density_map: DensityMap, resolution_A: float,
           half_maps: tuple[DensityMap, DensityMap] | None = None, *,
           sim_map: DensityMap | None = None, sigma_coeff: float | None = LOQFIT_SIGMA_COEFF,
           kernel: str = "emrefiner", max_res_A: float = LOQFIT_MAX_RES_A,
           diameter_factor: float = LOQFIT_DIAMETER_FACTOR, interpolate: bool | None = None,
           threshold: float = 0.5, batch_size: int = 64,
           progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """LoQFit per residue: local model-map FSC = 0.5 resolution (Å) around each C-alpha.

    Parameters
    ----------
    model, density_map
        Atoms (Å) and the experimental map (voxels should be cubic; the x edge is used).
    resolution_A
        Global map resolution R (Å): sets the mask diameter ``diameter_factor * R``.
    half_maps
        Two half maps on the grid of ``density_map`` for the normalised score.
    sim_map
        Precomputed model map on the grid of ``density_map``.
    sigma_coeff, kernel
        Model map widths ``sigma_coeff * R`` (TEMPy: 0.356) with ``kernel`` amplitudes
        (mass); ``sigma_coeff=None`` keeps the kernel's widths.
    max_res_A
        Scores above this are set to it (TEMPy: 18 Å).
    interpolate
        Interpolate the crossing; default True without half maps, False with them (TEMPy).
    batch_size
        Residue boxes per FFT batch (fewer when a batch would pass ~64 MB).
    progress
        Called as ``progress(done, total)`` after each batch.

    Returns
    -------
    DataFrame
        chain_id, res_seq, ins_code, res_name, ``loqfit_A`` (NaN for residues without a
        C-alpha/C1'), ``fsc_saturated`` (never fell below 0.5: set to Nyquist),
        ``capped`` (set to ``max_res_A``); with half maps also ``local_resolution_A`` and
        ``loqfit_normalised`` (``loqfit_A / local_resolution_A``).
    """
    resolution = _check_inputs(model, density_map, resolution_A)
    voxel = float(density_map.voxel_size[0])
    if not np.allclose(density_map.voxel_size, voxel, rtol=1e-3):
        log.warning("LoQFit assumes cubic voxels; using the x edge %.4f Å of %s", voxel,
                    density_map.voxel_size.tolist())
    if interpolate is None:
        interpolate = half_maps is None
    sim = _simulated(model, density_map, resolution, sigma_coeff, kernel, sim_map)
    maps = [_to_unit_range(density_map.data), _to_unit_range(sim.data)]
    if half_maps is not None:
        if len(half_maps) != 2:
            raise InputError("half_maps must be two maps")
        for h in half_maps:
            if h.shape != density_map.shape:
                raise InputError(f"half map grid {h.shape} differs from the map {density_map.shape}")
        maps += [np.asarray(h.data, np.float32) for h in half_maps]

    diameter = max(int(diameter_factor * resolution / voxel), 6)
    cos_edge = max(int(round(diameter / 3)), 10)
    box = tempy_box_size(diameter + 2 * cos_edge)
    fsc = _LocalFSC(loqfit_mask(diameter, (box, box, box), cos_edge), voxel)

    # a map smaller than the box is padded with its minimum by half a box on every side, so each
    # residue's box stays centred on it (TEMPy would score every residue with the whole map)
    shape = np.asarray(density_map.shape, np.int64)
    pad_lo = np.zeros(3, np.int64)
    if np.any(shape < box):
        pad_lo[:] = box // 2
        maps = [np.pad(m, box // 2, mode="constant", constant_values=float(m.min())) for m in maps]
        log.info("map %s is smaller than the LoQFit box %d: padded with its minimum",
                 tuple(shape.tolist()), box)
    padded_shape = maps[0].shape

    owner, n_res = _atom_residue(model)
    centre = _centre_atoms(model, owner, n_res)
    has = np.flatnonzero(centre >= 0)
    ijk = np.round(density_map.world_to_index(model.coords[centre[has]])).astype(np.int64)
    centre_zyx = ijk[:, ::-1] + pad_lo
    starts = _box_starts(centre_zyx, box, padded_shape)
    maps = [np.ascontiguousarray(m, dtype=np.float32) for m in maps]

    nyquist = 2.0 * float(np.min(density_map.voxel_size))
    score = np.full(n_res, np.nan)
    saturated = np.zeros(n_res, bool)
    capped = np.zeros(n_res, bool)
    local = np.full(n_res, np.nan)
    total = len(has)
    # batches of at most batch_size boxes and ~64 MB of complex64 buffer
    batch = max(1, min(int(batch_size), (1 << 26) // (8 * box ** 3)))
    for b0 in range(0, total, batch):
        sl = slice(b0, min(total, b0 + batch))
        st = np.ascontiguousarray(starts[sl])
        curve = fsc(maps[0], maps[1], st)
        val = _crossing_tempy(curve, fsc.res_A, threshold, interpolate)
        rows = has[sl]
        sat = val < nyquist
        val = np.where(sat, nyquist, val)
        cap = val > max_res_A
        val = np.where(cap, max_res_A, val)
        score[rows], saturated[rows], capped[rows] = val, sat, cap
        if half_maps is not None:
            hv = _crossing_tempy(fsc(maps[2], maps[3], st), fsc.res_A, threshold, False)
            local[rows] = np.where(hv < nyquist, nyquist, hv)
        if progress is not None:
            progress(sl.stop, total)
    out = _residue_frame(model)
    out["loqfit_A"] = score
    out["fsc_saturated"] = saturated
    out["capped"] = capped
    if half_maps is not None:
        out["local_resolution_A"] = local
        out["loqfit_normalised"] = score / local
    log.debug("LoQFit: %d residues, box %d, mask diameter %d px, edge %d px", total, box, diameter, cos_edge)
    return out


def local_fit(model: AtomModel, density_map: DensityMap, resolution_A: float, *,
              half_maps: tuple[DensityMap, DensityMap] | None = None) -> pd.DataFrame:
    """SMOC, SMOCf and LoQFit in one table (columns ``smoc``, ``smocf``, ``loqfit_A``)."""
    a = smoc(model, density_map, resolution_A, fragment=False)
    b = smoc(model, density_map, resolution_A, fragment=True)
    c = loqfit(model, density_map, resolution_A, half_maps)
    out = a.drop(columns="n_voxels")
    out["smocf"] = b["smocf"].to_numpy()
    for col in c.columns[4:]:
        out[col] = c[col].to_numpy()
    return out
