"""Q-score: per-atom resolvability of a model in a map (Pintilie et al. 2020, Nat. Methods 17:328).

Definition (as in Pintilie's MapQ, the reference implementation)
-----------------------------------------------------------------
For each heavy atom at ``x``:

1. Profile points. The map value at the atom itself, counted ``n_points`` times
   (radius 0), then, for every shell radius ``r = step, 2 step, ..., max_radius``
   (0.1 .. 2.0 Å), points on the sphere of radius ``r`` around ``x`` taken from the
   Saff-Kuijlaars spiral of ``N`` points::

       h_k = -1 + 2 (k - 1) / (N - 1),  phi_k = arccos(h_k),
       theta_1 = theta_N = 0,  theta_k = theta_{k-1} + 3.6 / sqrt(N (1 - h_k^2))  (mod 2 pi)
       u_k = (sin phi_k cos theta_k, sin phi_k sin theta_k, cos phi_k)

   A point is kept when no atom of the model lies closer to it than
   ``exclusion_factor * r`` (0.9 r: MapQ's stand-in for "closer to this atom than to
   any other", the 0.9 keeping the atom itself, at exactly ``r``, from counting; the
   test is evaluated as ``u . v > ((1 - f^2) r^2 + |v|^2) / (2 r)`` for a neighbour at
   offset ``v``, the same inequality). Pintilie's fallback
   for crowded atoms: start with ``N = n_points``; while fewer than ``n_points``
   points survive, retry with ``N + 2``, ``N + 4``, ... (at most ``max_tries``
   spirals); the first spiral giving at least ``n_points`` survivors contributes
   ALL its survivors. If no spiral does, the shell contributes nothing for this
   atom (as MapQ).
2. Reference values ``g(r) = A exp(-r^2 / (2 sigma^2)) + B`` with ``sigma = 0.6`` Å,
   ``A = maxD - minD``, ``B = minD``, ``maxD = min(mean + 10 std, max)``,
   ``minD = max(mean - std, min)`` over the whole map (MapQ's ``MinMaxD``).
3. ``Q`` is the Pearson correlation "about the mean" (Chimera's
   ``overlap_and_correlation`` CCm, which MapQ reports) between the map values
   ``u`` at all the profile points (all shells pooled, one entry per point) and
   the reference values ``v`` at their radii::

       Q = sum (u - <u>)(v - <v>) / sqrt(sum (u - <u>)^2 sum (v - <v>)^2)

   ``Q = 0`` when either profile is flat (Chimera's convention). As ``A > 0`` and
   ``B`` only shift and scale ``v``, Q does not depend on them; they are reported
   for completeness.

Map values are trilinear interpolations (Chimera's ``interpolated_values``; points
outside the box read 0). Hydrogens are ignored (neither scored nor excluding
points), as in MapQ and cctbx. Atoms whose centre lies outside the map box get
NaN.

Probe rules (``probe_rule``)
---------------------------
``"mapq"`` (default) is the rule above, MapQ's. ``"cctbx"`` reproduces cctbx's
``calc_qscore`` (``cctbx.maptbx.qscore``, "precalculate" probes): one spiral of
``n_points`` per shell, no retry, and a point is kept when its nearest atom is the
scored atom (no other atom closer than ``r``; cctbx's extra test that the second
nearest atom lies beyond 0.9 r is then always met), however few points survive. On
buried atoms this leaves the outer shells with one to three points, so per-atom values
scatter more with the direction set (cctbx with 8 vs 32 probes correlates per residue
at about r = 0.9 on real maps, MapQ's rule with 8 vs 16 points at about 0.99; see
``benchmarks/results/qscore_vs_peers.md``). cctbx's ``qscore`` program defaults to 32
probes on shells 0.1 .. 2.0 Å (no atom-centre value).

Implementation: neighbour lists from a :class:`scipy.spatial.cKDTree`; the
spiral/retry selection runs in a numba kernel parallel over atoms (no per-atom Python
loop) and writes all kept points of a chunk of atoms into one array; the map is
interpolated once for all of them (numba trilinear, identical to
``DensityMap.interpolate(order=1)``); the correlations are segment sums over each atom's
contiguous block of points (numba, parallel over atoms).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numba
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap
from emforge.models import BACKBONE_NAMES, AtomModel

log = logging.getLogger(__name__)

#: Reference Gaussian width of the Q-score, Å (Pintilie et al. 2020)
Q_SIGMA_A = 0.6
#: atoms per chunk: bounds memory to about 200 bytes x points (~20 points x 21 shells per atom)
_CHUNK_ATOMS = 20_000


# -- sampling directions -------------------------------------------------------------------------

def spiral_directions(n: int) -> np.ndarray:
    """Unit vectors (n, 3) of the Saff-Kuijlaars spiral used by MapQ (``SpherePts``); n >= 2."""
    if n < 2:
        raise ValueError("the spiral needs at least 2 points")
    k = np.arange(n, dtype=np.float64)
    h = -1.0 + 2.0 * k / (n - 1)
    phi = np.arccos(np.clip(h, -1.0, 1.0))
    steps = np.zeros(n)
    inner = slice(1, n - 1)
    steps[inner] = 3.6 / np.sqrt(n * (1.0 - h[inner] ** 2))
    theta = np.mod(np.cumsum(steps), 2.0 * math.pi)
    theta[-1] = 0.0                       # the pole: its azimuth is irrelevant
    s = np.sin(phi)
    return np.stack([s * np.cos(theta), s * np.sin(theta), np.cos(phi)], axis=1)


def _direction_table(n_points: int, max_tries: int) -> tuple[np.ndarray, np.ndarray]:
    """Spirals of n_points, n_points + 2, ... concatenated; start offsets (max_tries + 1,)."""
    sizes = n_points + 2 * np.arange(max_tries)
    dirs = np.concatenate([spiral_directions(int(n)) for n in sizes])
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return np.ascontiguousarray(dirs), start


# -- numba kernels -------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True, parallel=True)
def _choose_spirals(xyz, atoms, radii, excl, dirs, dir_start, n_min, nb_ptr, nb_idx, which, count, kept):
    """Per (atom t, shell s): the first spiral with >= n_min kept points and which points.

    ``which[t, s]`` is the spiral's index (-1 if none qualifies), ``count[t, s]`` its number
    of kept points and ``kept[t, s, :]`` a bitmask of them (bit p of word p // 64). A point
    is dropped when a neighbour lies closer than ``excl * r``; only neighbours nearer to the
    atom than ``r (1 + excl)`` can do that, so each shell tests a short list, and a spiral is
    abandoned as soon as it can no longer reach ``n_min``.
    """
    n_try = dir_start.shape[0] - 1
    n_words = kept.shape[2]
    for t in numba.prange(atoms.shape[0]):
        a = atoms[t]
        ax, ay, az = xyz[a, 0], xyz[a, 1], xyz[a, 2]
        n_nb = nb_ptr[a + 1] - nb_ptr[a]
        # neighbour offsets, nearest first (they cover the most of a shell, so rejections come early)
        dist = np.empty(n_nb)
        for q in range(n_nb):
            b = nb_idx[nb_ptr[a] + q]
            dist[q] = math.sqrt((xyz[b, 0] - ax) ** 2 + (xyz[b, 1] - ay) ** 2 + (xyz[b, 2] - az) ** 2)
        order = np.argsort(dist)
        rel = np.empty((n_nb, 3))
        for q in range(n_nb):
            b = nb_idx[nb_ptr[a] + order[q]]
            rel[q, 0] = xyz[b, 0] - ax
            rel[q, 1] = xyz[b, 1] - ay
            rel[q, 2] = xyz[b, 2] - az
        h = np.empty(n_nb)
        for s in range(radii.shape[0]):
            r = radii[s]
            reach = r * (1.0 + excl)
            m = 0                                # the first m (nearest) neighbours can reach this shell
            while m < n_nb and dist[order[m]] < reach:
                # |r u - v|^2 < (excl r)^2  <=>  u.v > ((1 - excl^2) r^2 + |v|^2) / (2 r)
                dq = dist[order[m]]
                h[m] = ((1.0 - excl * excl) * r * r + dq * dq) / (2.0 * r)
                m += 1
            which[t, s] = -1
            count[t, s] = 0
            for w in range(n_words):
                kept[t, s, w] = 0
            for k in range(n_try):
                d0 = dir_start[k]
                size = dir_start[k + 1] - d0
                c = 0
                for w in range(n_words):
                    kept[t, s, w] = 0
                for p in range(size):
                    if c + (size - p) < n_min:     # cannot reach n_min any more
                        break
                    ux = dirs[d0 + p, 0]
                    uy = dirs[d0 + p, 1]
                    uz = dirs[d0 + p, 2]
                    ok = True
                    for q in range(m):
                        if ux * rel[q, 0] + uy * rel[q, 1] + uz * rel[q, 2] > h[q]:
                            ok = False
                            break
                    if ok:
                        c += 1
                        kept[t, s, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
                if c >= n_min:
                    which[t, s] = k
                    count[t, s] = c
                    break
            if which[t, s] < 0:
                for w in range(n_words):
                    kept[t, s, w] = 0


@numba.njit(cache=True, nogil=True, parallel=True)
def _fill_points(xyz, atoms, radii, dirs, dir_start, which, kept, offset, out_xyz, out_shell):
    """Write the kept points of the chosen spirals; rows offset[t, s] onwards for (atom t, shell s)."""
    for t in numba.prange(atoms.shape[0]):
        a = atoms[t]
        for s in range(radii.shape[0]):
            k = which[t, s]
            if k < 0:
                continue
            r = radii[s]
            row = offset[t, s]
            d0 = dir_start[k]
            for p in range(dir_start[k + 1] - d0):
                if (kept[t, s, p >> 6] >> np.uint64(p & 63)) & np.uint64(1):
                    out_xyz[row, 0] = xyz[a, 0] + r * dirs[d0 + p, 0]
                    out_xyz[row, 1] = xyz[a, 1] + r * dirs[d0 + p, 1]
                    out_xyz[row, 2] = xyz[a, 2] + r * dirs[d0 + p, 2]
                    out_shell[row] = s
                    row += 1


@numba.njit(cache=True, nogil=True, parallel=True)
def _trilinear(data, origin, voxel, pts, out):
    """Trilinear interpolation of data[z, y, x] at world points (n, 3); 0 outside the grid.

    Same values as ``DensityMap.interpolate(order=1)`` (scipy ``map_coordinates``, mode
    "constant"): a point is inside when every fractional index lies in [0, n - 1].
    """
    nz, ny, nx = data.shape
    for p in numba.prange(pts.shape[0]):
        fx = (pts[p, 0] - origin[0]) / voxel[0]
        fy = (pts[p, 1] - origin[1]) / voxel[1]
        fz = (pts[p, 2] - origin[2]) / voxel[2]
        if not (0.0 <= fx <= nx - 1 and 0.0 <= fy <= ny - 1 and 0.0 <= fz <= nz - 1):
            out[p] = 0.0
            continue
        i0 = min(int(fx), nx - 2) if nx > 1 else 0
        j0 = min(int(fy), ny - 2) if ny > 1 else 0
        k0 = min(int(fz), nz - 2) if nz > 1 else 0
        tx = fx - i0
        ty = fy - j0
        tz = fz - k0
        i1 = min(i0 + 1, nx - 1)
        j1 = min(j0 + 1, ny - 1)
        k1 = min(k0 + 1, nz - 1)
        c00 = data[k0, j0, i0] * (1.0 - tx) + data[k0, j0, i1] * tx
        c01 = data[k0, j1, i0] * (1.0 - tx) + data[k0, j1, i1] * tx
        c10 = data[k1, j0, i0] * (1.0 - tx) + data[k1, j0, i1] * tx
        c11 = data[k1, j1, i0] * (1.0 - tx) + data[k1, j1, i1] * tx
        c0 = c00 * (1.0 - ty) + c01 * ty
        c1 = c10 * (1.0 - ty) + c11 * ty
        out[p] = c0 * (1.0 - tz) + c1 * tz


def interpolate_trilinear(density_map: DensityMap, xyz: np.ndarray) -> np.ndarray:
    """Map values (float64) at world points ``xyz`` (n, 3) Å by trilinear interpolation, 0 outside.

    A numba equivalent of ``density_map.interpolate(xyz, order=1)``, parallel over points.
    """
    pts = np.ascontiguousarray(np.asarray(xyz, dtype=np.float64).reshape(-1, 3))
    out = np.empty(len(pts))
    _trilinear(density_map.data, density_map.origin, density_map.voxel_size, pts, out)
    return out


# -- helpers -------------------------------------------------------------------------------------

def _neighbour_lists(xyz: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """CSR neighbour lists (other atoms within ``radius``) of (n, 3) points."""
    n = len(xyz)
    pairs = cKDTree(xyz).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.argsort(src, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    return ptr, np.ascontiguousarray(dst[order], dtype=np.int64)


def map_reference_levels(density_map: DensityMap) -> tuple[float, float]:
    """``(A, B)`` of the Q-score reference Gaussian from whole-map statistics (MapQ ``MinMaxD``).

    ``maxD = min(mean + 10 std, max)``, ``minD = max(mean - std, min)``, ``A = maxD - minD``,
    ``B = minD``.
    """
    d = density_map.data
    mean = float(d.mean(dtype=np.float64))
    std = float(d.std(dtype=np.float64))
    max_d = min(mean + 10.0 * std, float(d.max()))
    min_d = max(mean - std, float(d.min()))
    return max_d - min_d, min_d


@numba.njit(cache=True, nogil=True, parallel=True)
def _profile_correlations(centre, values, shell, starts, g_shell, w_centre, out):
    """Pearson correlation "about the mean" of each atom's profile with the reference.

    Atom t's profile is its centre value ``centre[t]`` with weight ``w_centre`` (the
    n_points copies at radius 0) and the points ``starts[t] .. starts[t+1]-1`` of
    ``values``, each with the reference ``g_shell[shell + 1]``. Two-pass (centred) sums;
    a flat profile (variance at rounding level) gives 0, Chimera's convention.
    """
    g0 = g_shell[0]
    for t in numba.prange(centre.shape[0]):
        c = centre[t]
        sw = w_centre
        su = w_centre * c
        sv = w_centre * g0
        for p in range(starts[t], starts[t + 1]):
            sw += 1.0
            su += values[p]
            sv += g_shell[shell[p] + 1]
        mu = su / sw
        mv = sv / sw
        du = c - mu
        dv = g0 - mv
        suu = w_centre * du * du
        svv = w_centre * dv * dv
        suv = w_centre * du * dv
        scale = w_centre * c * c
        for p in range(starts[t], starts[t + 1]):
            du = values[p] - mu
            dv = g_shell[shell[p] + 1] - mv
            suu += du * du
            svv += dv * dv
            suv += du * dv
            scale += values[p] * values[p]
        if suu > 1e-24 * max(scale, 1e-300) and svv > 0.0:
            out[t] = min(1.0, max(-1.0, suv / math.sqrt(suu * svv)))
        else:
            out[t] = 0.0


# -- public API ----------------------------------------------------------------------------------

def qscore(model: AtomModel, density_map: DensityMap, sigma_A: float = Q_SIGMA_A, n_points: int = 8,
           seed: int = 0, *, max_radius_A: float = 2.0, step_A: float = 0.1,
           exclusion_factor: float = 0.9, max_tries: int = 50, probe_rule: str = "mapq",
           progress: Callable[[int, int], None] | None = None
           ) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Q-score of every heavy atom of ``model`` in ``density_map`` (see the module docstring).

    Parameters
    ----------
    model : AtomModel
        N atoms, coordinates in Å. Hydrogens (element H/D) are neither scored nor used
        to exclude points.
    density_map : DensityMap
        The map, sampled by trilinear interpolation.
    sigma_A : float
        Width of the reference Gaussian in Å (0.6 in the paper).
    n_points : int
        Points wanted per shell (8 in MapQ), >= 2.
    seed : int
        Accepted for interface uniformity with emforge's stochastic steps; the sampling
        is deterministic (MapQ's spiral), so the result does not depend on it.
    max_radius_A, step_A : float
        Shells at ``step, 2 step, ... max_radius`` Å (0.1 .. 2.0, 20 shells), plus the
        atom position (radius 0).
    exclusion_factor : float
        A point is dropped when an atom lies closer than ``exclusion_factor * r``.
    max_tries : int
        Spirals tried per shell (``n_points``, ``n_points + 2``, ...; 50 in MapQ).
    probe_rule : {"mapq", "cctbx"}
        ``"mapq"``: the rule above (Pintilie's MapQ). ``"cctbx"``: cctbx's
        ``calc_qscore`` rule (one spiral, points whose nearest atom is the scored atom,
        no retry); ``exclusion_factor`` and ``max_tries`` are then not used.
    progress : callable, optional
        Called as ``progress(done_atoms, total_atoms)`` after each chunk of atoms.

    Returns
    -------
    per_atom : ndarray, shape (N,), float64
        Q of each atom; NaN for hydrogens and for atoms outside the map box.
    per_residue : DataFrame
        One row per residue (file order): chain_id, res_seq, ins_code, res_name,
        n_atoms (atoms scored), qscore (mean Q of the residue's scored atoms),
        qscore_backbone (N, CA, C, O), qscore_sidechain (the other atoms); NaN where
        a residue has no such atoms.
    summary : dict
        JSON-ready: qscore_mean (over scored atoms), qscore_median,
        qscore_backbone_mean, qscore_sidechain_mean, qscore_residue_mean (mean of the
        per-residue means), n_atoms_scored, n_atoms_outside_map, n_atoms_hydrogen,
        n_shells_empty (atom-shell pairs contributing no point),
        sigma_A, n_points, max_radius_A, step_A, exclusion_factor, probe_rule,
        reference_A, reference_B (the Gaussian's A and B), seed.

    Raises
    ------
    InputError
        A parameter out of range, a flat map, or no heavy atom inside the map box.
    """
    sigma = require_positive(sigma_A, "Q-score reference sigma (Å)")
    r_max = require_positive(max_radius_A, "Q-score maximum radius (Å)")
    step = require_positive(step_A, "Q-score shell step (Å)")
    if int(n_points) != n_points or n_points < 2:
        raise InputError(f"Q-score needs at least 2 points per shell, got {n_points!r}")
    if int(max_tries) != max_tries or max_tries < 1:
        raise InputError(f"Q-score max_tries must be a positive integer, got {max_tries!r}")
    if not 0.0 < float(exclusion_factor) <= 1.0:
        raise InputError(f"Q-score exclusion factor must lie in (0, 1], got {exclusion_factor!r}")
    if probe_rule not in ("mapq", "cctbx"):
        raise InputError(f"unknown Q-score probe rule {probe_rule!r}; use 'mapq' or 'cctbx'")
    n_points, max_tries, excl = int(n_points), int(max_tries), float(exclusion_factor)
    # cctbx: one spiral whose survivors are all kept (n_min 0), excluded by any atom closer than r
    n_min = n_points
    if probe_rule == "cctbx":
        n_min, max_tries, excl = 0, 1, 1.0

    n_all = len(model)
    heavy = ~model.is_hydrogen()
    heavy_idx = np.flatnonzero(heavy)
    xyz = np.ascontiguousarray(model.coords[heavy_idx], dtype=np.float64)
    inside = density_map.contains(xyz) if len(xyz) else np.zeros(0, bool)
    scored = np.flatnonzero(inside)                         # rows of xyz
    if len(scored) == 0:
        raise InputError("no heavy atom of the model lies inside the map box; cannot compute Q-scores")
    a_ref, b_ref = map_reference_levels(density_map)
    if not a_ref > 0:
        raise InputError("map has zero variance (every voxel has the same value); Q-score is undefined")

    n_shell = int(round(r_max / step))
    radii = step * np.arange(1, n_shell + 1, dtype=np.float64)
    # reference value per shell (index 0 = the atom centre)
    g_shell = a_ref * np.exp(-0.5 * (np.concatenate([[0.0], radii]) / sigma) ** 2) + b_ref
    dirs, dir_start = _direction_table(n_points, max_tries)
    n_words = (int(np.max(np.diff(dir_start))) + 63) // 64     # bitmask words per spiral
    nb_ptr, nb_idx = _neighbour_lists(xyz, float(radii[-1] * (1.0 + excl)) if n_shell else 0.0)

    q_heavy = np.full(len(xyz), np.nan)
    n_empty = 0
    for c0 in range(0, len(scored), _CHUNK_ATOMS):
        atoms = np.ascontiguousarray(scored[c0:c0 + _CHUNK_ATOMS], dtype=np.int64)
        m = len(atoms)
        which = np.empty((m, n_shell), np.int64)
        count = np.empty((m, n_shell), np.int64)
        kept = np.empty((m, n_shell, n_words), np.uint64)
        _choose_spirals(xyz, atoms, radii, excl, dirs, dir_start, n_min, nb_ptr, nb_idx, which, count, kept)
        n_empty += int(np.count_nonzero(count == 0))
        offset = np.concatenate([[0], np.cumsum(count.ravel())])[:-1].reshape(m, n_shell).astype(np.int64)
        total = int(count.sum())
        pts = np.empty((total, 3), np.float64)
        shell = np.empty(total, np.int64)
        _fill_points(xyz, atoms, radii, dirs, dir_start, which, kept, offset, pts, shell)
        # one interpolation call: the atom centres, then every kept shell point
        values = interpolate_trilinear(density_map, np.concatenate([xyz[atoms], pts]))
        starts = np.concatenate([[0], np.cumsum(count.sum(axis=1))]).astype(np.int64)
        q_chunk = np.empty(m)
        _profile_correlations(values[:m], values[m:], shell, starts, g_shell, float(n_points), q_chunk)
        q_heavy[atoms] = q_chunk
        if progress is not None:
            progress(min(c0 + m, len(scored)), len(scored))

    per_atom = np.full(n_all, np.nan)
    per_atom[heavy_idx] = q_heavy
    per_residue = _per_residue(model, per_atom)
    backbone = np.isin(model.atom_name, BACKBONE_NAMES) & model.is_protein()
    fin = np.isfinite(per_atom)

    def mean_of(mask):
        sel = per_atom[mask & fin]
        return float(sel.mean()) if len(sel) else None

    res_means = per_residue["qscore"].to_numpy()
    summary = {
        "qscore_mean": mean_of(np.ones(n_all, bool)),
        "qscore_median": float(np.median(per_atom[fin])),
        "qscore_backbone_mean": mean_of(backbone),
        "qscore_sidechain_mean": mean_of(~backbone),
        "qscore_residue_mean": float(np.nanmean(res_means)) if np.isfinite(res_means).any() else None,
        "n_atoms_scored": int(fin.sum()),
        "n_atoms_outside_map": int(len(xyz) - len(scored)),
        "n_atoms_hydrogen": int(n_all - len(heavy_idx)),
        "n_shells_empty": n_empty,
        "sigma_A": sigma, "n_points": n_points, "max_radius_A": r_max, "step_A": step,
        "exclusion_factor": excl, "probe_rule": probe_rule,
        "reference_A": float(a_ref), "reference_B": float(b_ref),
        "seed": int(seed),
    }
    log.debug("Q-score: %d atoms, mean %.3f, %d empty atom-shells", summary["n_atoms_scored"],
              summary["qscore_mean"], n_empty)
    return per_atom, per_residue, summary


def _per_residue(model: AtomModel, per_atom: np.ndarray) -> pd.DataFrame:
    """Residue means of per-atom Q (all, backbone N/CA/C/O, side chain), NaN-aware."""
    starts = model.residue_starts()
    n_res = len(starts)
    res_of_atom = np.repeat(np.arange(n_res), np.diff(np.append(starts, len(model))))
    fin = np.isfinite(per_atom)
    backbone = np.isin(model.atom_name, BACKBONE_NAMES) & model.is_protein()

    def means(mask):
        sel = mask & fin
        n = np.bincount(res_of_atom[sel], minlength=n_res)
        s = np.bincount(res_of_atom[sel], per_atom[sel], minlength=n_res)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan), n

    q_all, n_all = means(np.ones(len(model), bool))
    q_bb, _ = means(backbone)
    q_sc, _ = means(~backbone)
    table = model.residue_table()
    return pd.DataFrame({
        "chain_id": table["chain_id"], "res_seq": table["res_seq"], "ins_code": table["ins_code"],
        "res_name": table["res_name"], "n_atoms": n_all, "qscore": q_all,
        "qscore_backbone": q_bb, "qscore_sidechain": q_sc,
    })
