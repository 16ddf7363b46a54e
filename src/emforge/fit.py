"""Rigid-body fitting of an atomic model into a density map.

Three methods share one scoring function and one pose convention.

Score
-----
``cc`` is the *local* Pearson correlation between the map simulated from the moved model
(:func:`emforge.simulate.kernel_parameters`, kernel ``"emrefiner"`` by default = paper 000
Eq. 4) and the target map, taken over the model's footprint: the voxels where the model map
exceeds :data:`FOOTPRINT_FRACTION` of its maximum (PowerFit's "LCC"). Paper 000's energy is
``E = 1 - cc``. Because the sum runs over the model's footprint only, a single chain placed in a
map of a larger complex scores as well as it would in a map of that chain alone. Where the target
is (nearly) flat over the footprint (the model in empty solvent) the score is 0.

Methods
-------
``"fft"``
    Coarse-to-fine rotational search; ``angular_step_deg`` is the final (fine) step.
    *Search resolution*: ``R_s = max(R, SEARCH_RESOLUTION_MIN_A)`` (6 Å): for sharper maps the
    target is Gaussian low-passed by ``sqrt(sigma(R_s)^2 - sigma(R)^2)`` and the model map is
    simulated at ``R_s``. Where a pose is, is a low-resolution question; a 3 Å map searched at 3 Å
    only has a narrower correlation peak (more rotations needed) and more sensitivity to the
    model's local errors. The pose is refined at the true ``R`` afterwards.
    Rotation sets: a super-Fibonacci spiral on the unit quaternions (Alexa, CVPR 2022),
    ``N = ceil(35.5 / step_rad^3)`` rotations (6,679 at 10°, PowerFit's density at that step),
    identity first. Coverage, measured for random rotations (``tests/test_fit.py``): the angle to
    the nearest grid rotation is on average 0.65 x step, 99th percentile 1.0 x step, maximum
    about 1.15 x step. *Global stage*: the whole rotation space at the coarse step
    ``degrees(R_s / r_rms)`` (the step whose arc at the model's rms radius ``r_rms`` equals the
    resolution) clamped to ``[step, 2 step]`` (:func:`search_steps`; 20° for 1ake at 6 Å and the
    default 10° step: 836 rotations instead of 6,679), on an isotropic grid of voxel
    ``max(map voxel, R_s / 2)``. *Local stage*: the best ``max(n_poses, 10)`` distinct global
    poses (non-maximum suppression at the centre distance below and an angle of 1.2 x the coarse
    step) are each searched again over the fine-step grid rotations within 1.2 x the coarse step
    of them (27 rotations per pose for 20° -> 10°), which covers the coarse grid's worst-case gap,
    on a finer grid (voxel ``max(map voxel, R_s / 2.5)``); the effective sampling near the best
    poses is thus the fine step, everywhere else the coarse step (when the coarse step equals the
    fine step there is no local stage). Grids: the target is Gaussian low-passed, then resampled.
    For each rotation the model map is splatted (numba, in parallel over a batch of 8 rotations)
    into a box of the model's bounding sphere, normalised over its footprint and cross-correlated
    with the target for all translations at once (``scipy.fft``, float32). The correlation is
    circular with period ``P = next_fast_len(n + tail)`` per axis (``n`` map voxels, ``tail`` the
    Gaussian cutoff): exact for every pose whose atoms all lie inside the map box; a template box
    larger than ``P`` is folded modulo ``P``, which changes nothing for such poses. Transforms
    are pruned to the rows holding data and to the centres inside the map. Candidate
    translations are the 8 best of that cross-correlation divided by the target's standard
    deviation over a sphere of the model's size (one FFT pair for the whole search); at those the
    exact footprint local correlation (PowerFit's LCC, unfolded, zero outside the map) is
    computed in real space (numba), and the best is the rotation's score. Distinct poses are
    chosen among all scanned rotations (both stages) by non-maximum suppression (a pose within
    ``max(R, 4 Å)`` of the centre *and* within ``max(2 step, 15°)`` of the rotation of a better
    pose is the same pose). *Refinement* at the true ``R`` on a grid of voxel
    ``max(map voxel, R / 4)``: each of the top ``n_poses`` is refined by L-BFGS on a smooth
    surrogate with its analytic gradient (force and torque): the target blurred by the atom
    Gaussian, trilinearly interpolated at the atoms and summed with the atoms' amplitudes (the
    overlap integral of model map and target); then the best three are polished by Nelder-Mead on
    the true score (in parallel threads: the score runs in numba without the GIL), and all are
    re-ranked by the true score. No Laplacian or core weighting is applied.
``"remc"``
    Paper 000 Step 1: ``n_replicas`` (20) replicas at ``T_i = T_min (T_max/T_min)^((i-1)/(N-1))``,
    ``T_min = 0.01``, ``T_max = 1.0``; replica 1 starts from the input pose when the model's
    centre lies inside the map box, the others (all of them otherwise) from random rotations
    about the model centre placed at the map's density centroid. Each step every replica tries a
    small random rotation about the model centre plus a random translation (step sizes grow
    with temperature from 3° / 0.5 Å to 20° / 3 Å), accepted by Metropolis on ``E = 1 - cc``
    (the proposals of all replicas are drawn first, in replica order, and scored together in
    parallel); then neighbouring replicas try to swap (even pairs on even steps, odd pairs on odd steps).
    The best state each replica visited is refined as in ``"fft"`` (surrogate L-BFGS, then a
    Nelder-Mead polish of the best three) and the distinct ones are ranked. Default length
    :data:`REMC_STEPS` steps.
``"auto"``
    The FFT search and surrogate refinement of ``"fft"``, then REMC on the true score (the same
    ladder, :data:`AUTO_REMC_STEPS` steps) with the replicas started from the refined poses
    (replica ``i`` from the ``(i mod n)``-th best), then the Nelder-Mead polish of the best three
    distinct REMC states and a re-ranking of all poses.

Pose table (:attr:`FitResult.poses`)
------------------------------------
One row per distinct pose, best first: ``rank`` (1 = best), ``cc``, ``z_score``, the rotation
as a unit quaternion ``q_w, q_x, q_y, q_z`` (``q_w >= 0``) and as the matrix entries
``r11 .. r33`` (row-major), ``translation_x_A, translation_y_A, translation_z_A``, the model
centre after the move ``centre_x_A, centre_y_A, centre_z_A``, and ``method``. Rotation and
translation are those of the :class:`~emforge.models.RigidTransform` ``x' = R x + t`` that maps
the *input* coordinates onto the pose. ``z_score = (cc - mean(S)) / std(S)`` where ``S`` holds
the search scores: for ``"fft"``/``"auto"`` the best local correlation of every rotation of the
global (uniform, coarse-step) stage of the search; for ``"remc"`` the scores of all states
visited by all replicas. A correct fit stands far above the rest (z typically > 5).

Supported inputs: a protein model (non-protein atoms are ignored for scoring but moved with the
model), a map in any frame, the model smaller than or comparable to the map box (a single chain
in a complex map is supported through the local score). Rejected with :class:`InputError`:
resolution not > 0, no protein atoms, a model whose diameter exceeds 1.5 x the map box diagonal,
a map with (near) zero variance, unknown method.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage, optimize
from scipy.spatial.transform import Rotation

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap, resample
from emforge.models import AtomModel, RigidTransform
from emforge.simulate import add_gaussians, kernel_parameters

log = logging.getLogger(__name__)

METHODS = ("auto", "fft", "remc")
#: Footprint of the model map: voxels above this fraction of its maximum.
FOOTPRINT_FRACTION = 0.05
#: Paper 000 temperature ladder.
T_MIN, T_MAX = 0.01, 1.0
#: A model whose diameter exceeds this many map-box diagonals is rejected (it cannot be placed).
MAX_DIAMETER_RATIO = 1.5
#: Default REMC length (steps) for ``method="remc"`` (random starts) and ``"auto"`` (from FFT poses).
REMC_STEPS, AUTO_REMC_STEPS = 150, 40
#: Gaussian cutoff in sigma units for the model maps.
CUTOFF_SIGMA = 3.0
#: The FFT search runs at no finer a resolution than this (Å): target low-passed, model map widened.
SEARCH_RESOLUTION_MIN_A = 6.0
#: Rotations per batch in the FFT search.
_BATCH = 8
#: Translations per rotation at which the FFT search computes the exact local correlation.
_N_CANDIDATES = 8

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class FitResult:
    """Result of :func:`fit_model`.

    Attributes
    ----------
    poses : pandas.DataFrame
        Distinct poses, best first (columns in the module docstring).
    transform : RigidTransform
        Best pose: maps the input model coordinates onto the fitted position.
    model : AtomModel
        The input model moved by ``transform``.
    cc : float
        Local correlation of the best pose (see module docstring).
    timings_s : dict
        Wall time per phase in seconds (``prepare``, ``search``, ``refine``, ``remc``, ``total``;
        phases a method does not run are absent).
    """

    poses: pd.DataFrame
    transform: RigidTransform
    model: AtomModel
    cc: float
    timings_s: dict


# -- rotations ---------------------------------------------------------------------------------

def rotation_grid(angular_step_deg: float) -> np.ndarray:
    """Near-uniform rotation set with spacing about ``angular_step_deg``.

    Super-Fibonacci spiral on the unit quaternions (Alexa 2022) with
    ``N = ceil(35.5 / step_rad^3)`` points (the count of a packing at that spacing).

    Returns
    -------
    ndarray, shape (N, 3, 3)
        Rotation matrices; the identity is the first element.
    """
    step = math.radians(require_positive(angular_step_deg, "angular step (deg)"))
    n = max(int(math.ceil(35.5 / step ** 3)), 4)
    s = np.arange(n) + 0.5
    r = np.sqrt(s / n)
    rr = np.sqrt(1.0 - s / n)
    alpha = 2.0 * math.pi * s / math.sqrt(2.0)
    beta = 2.0 * math.pi * s / 1.533751168755204288118041
    quat_xyzw = np.stack([r * np.sin(alpha), r * np.cos(alpha), rr * np.sin(beta), rr * np.cos(beta)], axis=1)
    mats = Rotation.from_quat(quat_xyzw).as_matrix()
    return np.concatenate([np.eye(3)[None], mats], axis=0)


def _angle_deg(r1: np.ndarray, r2: np.ndarray) -> float:
    c = np.clip((np.trace(r1.T @ r2) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(c)))


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return Rotation.from_quat(q).as_matrix().reshape(n, 3, 3)


def _small_rotation(rng: np.random.Generator, sigma_rad: float) -> np.ndarray:
    return Rotation.from_rotvec(rng.normal(scale=sigma_rad, size=3)).as_matrix()


# -- model maps --------------------------------------------------------------------------------

@numba.njit(cache=True, parallel=True)
def _splat_batch(index_bxyz, amplitude, sigma_vox, cutoff_sigma, out):  # pragma: no cover - numba
    """:func:`emforge.simulate.add_gaussians` of ``index_bxyz[b]`` into ``out[b]`` for every ``b``,
    in parallel over ``b``."""
    for b in numba.prange(index_bxyz.shape[0]):
        add_gaussians(index_bxyz[b], amplitude, sigma_vox, cutoff_sigma, out[b])
    return out


@numba.njit(cache=True, parallel=True)
def _normalise_footprints(small, frac, mask):  # pragma: no cover - numba
    """In place, per template ``small[b]``: footprint ``> frac * max`` into ``mask[b]``, values
    there standardised (mean 0, sd 1), zero elsewhere."""
    for b in numba.prange(small.shape[0]):
        t = small[b]
        mk = mask[b]
        nz, ny, nx = t.shape
        tmax = -np.inf
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    if t[z, y, x] > tmax:
                        tmax = t[z, y, x]
        thr = frac * tmax
        s = 0.0
        s2 = 0.0
        n = 0
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    val = t[z, y, x]
                    if val > thr:
                        mk[z, y, x] = True
                        s += val
                        s2 += val * val
                        n += 1
                    else:
                        mk[z, y, x] = False
        mean = s / max(n, 1)
        sd = max(math.sqrt(max(s2 / max(n, 1) - mean * mean, 0.0)), 1e-30)
        for z in range(nz):
            for y in range(ny):
                for x in range(nx):
                    t[z, y, x] = (t[z, y, x] - mean) / sd if mk[z, y, x] else 0.0
    return small


@numba.njit(cache=True, parallel=True)
def _fold(small, out):  # pragma: no cover - numba
    """``out[b]`` = ``small[b]`` summed modulo ``out.shape[1:]`` on every axis (periodic folding)."""
    _, fz, fy, fx = out.shape
    box = small.shape[1]
    for b in numba.prange(small.shape[0]):
        out[b] = 0.0
        for z in range(box):
            for y in range(box):
                for x in range(box):
                    out[b, z % fz, y % fy, x % fx] += small[b, z, y, x]
    return out


@numba.njit(cache=True, parallel=True)
def _candidate_lcc(small, mask, cand, ny, nx, big, h, sd_floor, best_cc, best_idx):  # pragma: no cover
    """Exact footprint local correlation of template ``b`` centred at each flat map index
    ``cand[b, k]`` (``big``: the target zero-padded by the box on every side); the best per ``b``."""
    n_b, n_k = cand.shape
    box = small.shape[1]
    for b in numba.prange(n_b):
        best = -np.inf
        bi = cand[b, 0]
        for kk in range(n_k):
            c = cand[b, kk]
            oz = c // (ny * nx) - h + box
            oy = (c // nx) % ny - h + box
            ox = c % nx - h + box
            sg = 0.0
            sg2 = 0.0
            sgv = 0.0
            sv = 0.0
            n = 0
            for z in range(box):
                for y in range(box):
                    for x in range(box):
                        if mask[b, z, y, x]:
                            g = float(big[oz + z, oy + y, ox + x])
                            val = float(small[b, z, y, x])
                            sg += g
                            sg2 += g * g
                            sgv += g * val
                            sv += val
                            n += 1
            lcc = 0.0
            if n > 0:
                mean = sg / n
                sd = math.sqrt(max(sg2 / n - mean * mean, 0.0))
                if sd > sd_floor:
                    lcc = (sgv - mean * sv) / (n * sd)
            if lcc > best:
                best = lcc
                bi = c
        best_cc[b] = best
        best_idx[b] = bi


@numba.njit(cache=True, nogil=True)
def _overlap_force_torque(grid, centred, rot, shift_vox, inv_voxel, weight, out6):  # pragma: no cover
    """``sum_a weight[a] * grid(x_a)`` (trilinear, zero outside ``grid[z, y, x]``) at the voxel
    positions ``x_a = (rot @ centred[a]) * inv_voxel + shift_vox``, with its gradient with respect
    to a translation (per voxel) in ``out6[:3]`` and to an infinitesimal rotation about the centre
    (the torque, Å per voxel) in ``out6[3:]``."""
    nz, ny, nx = grid.shape
    total = 0.0
    for d in range(6):
        out6[d] = 0.0
    for a in range(centred.shape[0]):
        mx = rot[0, 0] * centred[a, 0] + rot[0, 1] * centred[a, 1] + rot[0, 2] * centred[a, 2]
        my = rot[1, 0] * centred[a, 0] + rot[1, 1] * centred[a, 1] + rot[1, 2] * centred[a, 2]
        mz = rot[2, 0] * centred[a, 0] + rot[2, 1] * centred[a, 1] + rot[2, 2] * centred[a, 2]
        x = mx * inv_voxel + shift_vox[0]
        y = my * inv_voxel + shift_vox[1]
        z = mz * inv_voxel + shift_vox[2]
        if not (x >= 0.0 and y >= 0.0 and z >= 0.0 and x < nx - 1 and y < ny - 1 and z < nz - 1):
            continue
        i0 = int(math.floor(x))
        j0 = int(math.floor(y))
        k0 = int(math.floor(z))
        fx = x - i0
        fy = y - j0
        fz = z - k0
        acc = 0.0
        gx = 0.0
        gy = 0.0
        gz = 0.0
        for dk in range(2):
            wz = fz if dk else 1.0 - fz
            sz = 1.0 if dk else -1.0
            for dj in range(2):
                wy = fy if dj else 1.0 - fy
                sy = 1.0 if dj else -1.0
                for di in range(2):
                    wx = fx if di else 1.0 - fx
                    sx = 1.0 if di else -1.0
                    g = grid[k0 + dk, j0 + dj, i0 + di]
                    acc += wz * wy * wx * g
                    gx += sx * wz * wy * g
                    gy += wz * sy * wx * g
                    gz += sz * wy * wx * g
        w = weight[a]
        total += w * acc
        gx *= w
        gy *= w
        gz *= w
        out6[0] += gx
        out6[1] += gy
        out6[2] += gz
        out6[3] += my * gz - mz * gy
        out6[4] += mz * gx - mx * gz
        out6[5] += mx * gy - my * gx
    return total


@numba.njit(cache=True, nogil=True)
def _local_cc(index_xyz, amplitude, sigma_vox, data, pad, frac, var_floor):  # pragma: no cover - numba
    """Footprint local correlation of the model map of atoms at voxel indices ``index_xyz``
    (x, y, z) with ``data[z, y, x]`` (zero outside): the score of :meth:`_Scorer.score`."""
    nz, ny, nx = data.shape
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    for d in range(3):
        lo[d] = int(math.floor(index_xyz[:, d].min())) - pad
        hi[d] = int(math.ceil(index_xyz[:, d].max())) + pad + 1
    dims = (nx, ny, nz)
    for d in range(3):
        if min(hi[d], dims[d]) <= max(lo[d], 0):
            return 0.0
    sim = np.zeros((hi[2] - lo[2], hi[1] - lo[1], hi[0] - lo[0]), np.float32)
    shifted = np.empty_like(index_xyz)
    for a in range(index_xyz.shape[0]):
        for d in range(3):
            shifted[a, d] = index_xyz[a, d] - lo[d]
    add_gaussians(shifted, amplitude, sigma_vox, CUTOFF_SIGMA, sim)
    smax = sim.max()
    if not smax > 0:
        return 0.0
    thr = frac * smax
    n = 0
    ss = 0.0
    st = 0.0
    sss = 0.0
    stt = 0.0
    sst = 0.0
    for k in range(sim.shape[0]):
        z = k + lo[2]
        for j in range(sim.shape[1]):
            y = j + lo[1]
            for i in range(sim.shape[2]):
                sv = sim[k, j, i]
                if sv > thr:
                    x = i + lo[0]
                    tv = 0.0
                    if 0 <= z < nz and 0 <= y < ny and 0 <= x < nx:
                        tv = float(data[z, y, x])
                    sv = float(sv)
                    n += 1
                    ss += sv
                    st += tv
                    sss += sv * sv
                    stt += tv * tv
                    sst += sv * tv
    vt = stt - st * st / n
    if vt <= var_floor * n:
        return 0.0
    vs = sss - ss * ss / n
    return (sst - ss * st / n) / math.sqrt(vs * vt)


@numba.njit(cache=True, parallel=True)
def _local_cc_batch(index_bxyz, amplitude, sigma_vox, data, pad, frac, var_floor, out):  # pragma: no cover
    """:func:`_local_cc` of every ``index_bxyz[b]``, in parallel over ``b``."""
    for b in numba.prange(index_bxyz.shape[0]):
        out[b] = _local_cc(index_bxyz[b], amplitude, sigma_vox, data, pad, frac, var_floor)
    return out


def _model_map(index_xyz: np.ndarray, amplitude: np.ndarray, sigma_vox: np.ndarray,
               shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """Model map (float32, ``shape_zyx``) of atoms at voxel indices ``index_xyz`` (N, 3) (x, y, z)."""
    out = np.zeros(shape_zyx, np.float32)
    return add_gaussians(np.ascontiguousarray(index_xyz, dtype=np.float64), amplitude, sigma_vox,
                  CUTOFF_SIGMA, out)


# -- grids -------------------------------------------------------------------------------------

def _isotropic(m: DensityMap, voxel_A: float) -> DensityMap:
    """``m`` on an isotropic grid of ``voxel_A`` (low-passed first when coarsening)."""
    if np.allclose(m.voxel_size, voxel_A, rtol=1e-3):
        return m
    ratio = voxel_A / m.voxel_size
    data = m.data
    if np.any(ratio > 1.2):
        sigma_vox = np.maximum(0.0, 0.5 * np.sqrt(np.maximum(ratio ** 2 - 1.0, 0.0)))
        data = ndimage.gaussian_filter(data, sigma=sigma_vox[::-1], mode="nearest")
    return resample(m.with_data(data.astype(np.float32)), voxel_A, order=1)


def _low_pass(m: DensityMap, sigma_to_A: float, sigma_from_A: float) -> DensityMap:
    """``m`` blurred by the Gaussian that widens atoms of width ``sigma_from_A`` to ``sigma_to_A``."""
    if sigma_to_A <= sigma_from_A * 1.001:
        return m
    extra_vox = math.sqrt(sigma_to_A ** 2 - sigma_from_A ** 2) / m.voxel_size[::-1]
    return m.with_data(ndimage.gaussian_filter(m.data, sigma=extra_vox, mode="constant").astype(np.float32))


class _Scorer:
    """Local correlation of the model at a pose against a target on an isotropic grid.

    Pose: rotation ``R`` (3, 3) about the model centre and centre position ``p`` (3,) Å:
    ``x' = R (x - c0) + p``.
    """

    def __init__(self, target: DensityMap, centred: np.ndarray, amplitude: np.ndarray, sigma_A: np.ndarray):
        self.voxel = float(target.voxel_size[0])
        self.origin = target.origin
        self.data = np.ascontiguousarray(target.data)
        self.shape_xyz = target.shape_xyz
        self.centred = centred
        self.amplitude = np.ascontiguousarray(amplitude, dtype=np.float64)
        self.sigma_vox = np.ascontiguousarray(sigma_A / self.voxel, dtype=np.float64)
        self.pad = int(math.ceil(CUTOFF_SIGMA * float(sigma_A.max()) / self.voxel)) + 1
        self.var_floor = 1e-6 * float(np.var(target.data, dtype=np.float64))
        self.n_evals = 0
        # surrogate: overlap integral sum_a amp_a (t * G_a)(x_a) with the target blurred by the
        # (mean) atom Gaussian, normalised so that a perfect match of a noise-free map is ~1
        d = target.data.astype(np.float64)
        self.blur = ndimage.gaussian_filter(d - d.mean(), float(np.mean(sigma_A)) / self.voxel, mode="constant")
        self.blur_scale = 1.0 / max(float(np.abs(self.blur).max()) * float(amplitude.sum()), 1e-300)

    def overlap(self, rot: np.ndarray, centre: np.ndarray) -> float:
        """Surrogate score (larger is better): blurred target summed at the atoms, amplitude-weighted."""
        return self.overlap_grad(rot, centre)[0]

    def overlap_grad(self, rot: np.ndarray, centre: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """:meth:`overlap`, its gradient with respect to the centre (per Å) and the torque about the
        centre (the gradient with respect to an infinitesimal rotation vector applied after ``rot``)."""
        out6 = np.empty(6)
        value = _overlap_force_torque(self.blur, self.centred, np.ascontiguousarray(rot),
                                      (centre - self.origin) / self.voxel, 1.0 / self.voxel, self.amplitude, out6)
        out6 *= self.blur_scale / self.voxel
        return value * self.blur_scale, out6[:3], out6[3:]

    def score(self, rot: np.ndarray, centre: np.ndarray) -> float:
        self.n_evals += 1
        idx = (self.centred @ rot.T + (centre - self.origin)) / self.voxel
        return float(_local_cc(np.ascontiguousarray(idx), self.amplitude, self.sigma_vox, self.data,
                               self.pad, FOOTPRINT_FRACTION, self.var_floor))

    def score_many(self, rots: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """:meth:`score` of every pose ``(rots[b], centres[b])`` (in parallel)."""
        self.n_evals += len(rots)
        idx = (np.matmul(self.centred[None], rots.transpose(0, 2, 1))
               + (centres - self.origin)[:, None, :]) / self.voxel
        out = np.empty(len(rots))
        return _local_cc_batch(np.ascontiguousarray(idx), self.amplitude, self.sigma_vox, self.data,
                               self.pad, FOOTPRINT_FRACTION, self.var_floor, out)


# -- local refinement ---------------------------------------------------------------------------

def _refine(scorer: _Scorer, rot: np.ndarray, centre: np.ndarray, radius_A: float,
            max_evals: int = 150, step: float = 0.4) -> tuple[np.ndarray, np.ndarray, float]:
    """Nelder-Mead on the true score over (dx, dy, dz in Å, rotation vector x radius in Å) from a pose."""
    lever = max(radius_A, 1.0)

    def pose(p):
        r = Rotation.from_rotvec(p[3:] / lever).as_matrix() @ rot
        return r, centre + p[:3]

    def f(p):
        return 1.0 - scorer.score(*pose(p))

    x0 = np.zeros(6)
    f0 = f(x0)
    res = optimize.minimize(f, x0, method="Nelder-Mead",
                            options={"initial_simplex": np.vstack([x0, step * np.eye(6)]), "xatol": 0.02,
                                     "fatol": 1e-6, "maxfev": max_evals})
    x, fx = (res.x, float(res.fun)) if res.fun <= f0 else (x0, f0)
    r, c = pose(x)
    return r, c, 1.0 - fx


def _left_jacobian(w: np.ndarray) -> np.ndarray:
    """Left Jacobian of SO(3) at rotation vector ``w``: ``d exp(w) = [J(w) dw]_x exp(w)``."""
    th = float(np.linalg.norm(w))
    k = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
    if th < 1e-8:
        return np.eye(3) + 0.5 * k
    return np.eye(3) + (1 - math.cos(th)) / th ** 2 * k + (th - math.sin(th)) / th ** 3 * (k @ k)


def _refine_surrogate(scorer: _Scorer, rot: np.ndarray, centre: np.ndarray, radius_A: float,
                      max_iter: int = 200) -> tuple[np.ndarray, np.ndarray, float]:
    """L-BFGS on the surrogate overlap with its analytic gradient; returns the pose and its true score."""
    lever = max(radius_A, 1.0)

    def pose(p):
        return Rotation.from_rotvec(p[3:] / lever).as_matrix() @ rot, centre + p[:3]

    def f(p):
        r, c = pose(p)
        val, force, torque = scorer.overlap_grad(r, c)
        g_rot = _left_jacobian(p[3:] / lever).T @ torque / lever
        return -val, -np.concatenate([force, g_rot])

    res = optimize.minimize(f, np.zeros(6), jac=True, method="L-BFGS-B",
                            options={"maxiter": max_iter, "gtol": 1e-9, "ftol": 1e-10})
    r, c = pose(res.x)
    return r, c, scorer.score(r, c)


def _refine_poses(scorer: _Scorer, rots, centres, radius_A: float, n_polish: int = 3):
    """Surrogate refinement of every pose, then true-score polish of the best ``n_polish``."""
    out = []
    for r0, c0 in zip(rots, centres):
        res = _refine_surrogate(scorer, r0, c0, radius_A)
        cc0 = scorer.score(r0, c0)
        out.append(res if res[2] >= cc0 else (r0, c0, cc0))  # never worse than the start
    return _polish_poses(scorer, [o[0] for o in out], [o[1] for o in out], [o[2] for o in out],
                         radius_A, n_polish)


def _polish_poses(scorer: _Scorer, rots, centres, ccs, radius_A: float, n_polish: int):
    """Nelder-Mead on the true score of the best ``n_polish`` poses (in threads); all poses returned."""
    out = list(zip(rots, centres, (float(c) for c in ccs)))
    order = [int(i) for i in np.argsort([-o[2] for o in out], kind="stable")[:n_polish]]
    if not order:
        return out

    def polish(i):
        r, c, cc = out[i]
        res = _refine(scorer, r, c, radius_A)
        return res if res[2] >= cc else (r, c, cc)  # never worse than the surrogate result

    # the true score runs in numba without the GIL: the polishes share the cores
    with ThreadPoolExecutor(max_workers=max(1, min(len(order), numba.get_num_threads()))) as pool:
        for i, res in zip(order, pool.map(polish, order)):
            out[i] = res
    return out


# -- FFT search ---------------------------------------------------------------------------------

def _rfft_padded(small: np.ndarray, p_shape) -> np.ndarray:
    """``rfftn`` over axes 1-3 of ``small`` (B, n, n, n) zero-padded to ``p_shape``, pruned.

    Transforms along x, then y, then z, each pass only over the rows that hold data.
    """
    x = scipy.fft.rfft(small, n=p_shape[2], axis=3, workers=2)
    x = scipy.fft.fft(x, n=p_shape[1], axis=2, workers=2)
    return scipy.fft.fft(x, n=p_shape[0], axis=1, workers=2)


def _irfft_select(spec: np.ndarray, p_shape, sel) -> np.ndarray:
    """``irfftn`` over axes 1-3 of ``spec``, evaluated only at the indices ``sel`` (z, y, x), pruned."""
    x = scipy.fft.ifft(spec, axis=1, workers=2)[:, sel[0]]
    x = scipy.fft.ifft(x, axis=2, workers=2)[:, :, sel[1]]
    return scipy.fft.irfft(x, n=p_shape[2], axis=3, workers=2)[:, :, :, sel[2]]


def _fft_search(target: DensityMap, centred: np.ndarray, amplitude: np.ndarray, sigma_A: np.ndarray,
                rotations: np.ndarray, progress: ProgressFn | None, n_candidates: int = _N_CANDIDATES):
    """Best local correlation and model-centre position for every rotation.

    For each rotation, the cross-correlation of the target with the footprint-normalised
    template is computed for all translations by FFT and divided by the target's standard
    deviation over a sphere of the model's size (one FFT pair for the whole search); at the
    ``n_candidates`` best translations the exact footprint local correlation is then computed in
    real space, and the best of those is the rotation's score.

    Returns
    -------
    scores : (M,) float64
    centres : (M, 3) float64, Å
    """
    v = float(target.voxel_size[0])
    shape = np.array(target.shape)  # (nz, ny, nx)
    radius = float(np.linalg.norm(centred, axis=1).max())
    h = int(math.ceil((radius + CUTOFF_SIGMA * float(sigma_A.max())) / v)) + 1
    box = 2 * h + 1
    # circular correlation of period P >= n + tail (and >= box): exact for every pose whose atoms
    # all lie inside the map box (their Gaussian tails fall in the zero padding); a pose sticking
    # out of the box may pick up wrapped density from the opposite side, but only candidates are
    # chosen from these values: their score is the exact local correlation computed below.
    # The template box (2h + 1, the model's bounding sphere) may exceed P on some axes: it is then
    # folded modulo P, which leaves the correlation unchanged wherever the model fits in the map.
    tail = int(math.ceil(CUTOFF_SIGMA * float(sigma_A.max()) / v)) + 1
    p_shape = tuple(scipy.fft.next_fast_len(int(n + tail), real=True) for n in shape)
    fold_shape = tuple(min(box, p) for p in p_shape)
    tpad = np.zeros(p_shape, np.float32)
    tpad[:shape[0], :shape[1], :shape[2]] = target.data
    ft = scipy.fft.rfftn(tpad, workers=2)[None]
    var_floor = 1e-6 * float(np.var(target.data, dtype=np.float64))
    # correlation index s is the template-box origin; the model centre sits at s + h
    sel = [(np.arange(shape[a]) - h) % p_shape[a] for a in range(3)]
    # target standard deviation over a sphere of the model's rms radius around every centre
    rms = math.sqrt(float(np.mean(np.sum(centred ** 2, axis=1))))
    zz, yy, xx = np.indices((box, box, box)) - h
    sphere = ((zz ** 2 + yy ** 2 + xx ** 2) * v * v <= (1.2 * rms + v) ** 2).astype(np.float32)
    f_sph = np.conj(_rfft_padded(sphere[None], p_shape))
    ft2 = scipy.fft.rfftn(tpad * tpad, workers=2)[None]
    s1, s2 = _irfft_select(np.concatenate([f_sph * ft, f_sph * ft2]), p_shape, sel)
    n_sph = float(sphere.sum())
    var_sph = s2 / n_sph - (s1 / n_sph) ** 2
    inv_sd = np.where(var_sph > var_floor, 1.0 / np.sqrt(np.maximum(var_sph, var_floor)), 0.0).astype(np.float32)
    # target padded by a box on every side, for the real-space local correlations
    big = np.zeros(tuple(shape + 2 * box), np.float32)
    big[box:box + shape[0], box:box + shape[1], box:box + shape[2]] = target.data
    sig_vox = np.ascontiguousarray(sigma_A / v, dtype=np.float64)
    n_rot = len(rotations)
    scores = np.empty(n_rot)
    centres = np.empty((n_rot, 3))
    k_cand = min(n_candidates, int(np.prod(shape)))
    for start in range(0, n_rot, _BATCH):
        rots = rotations[start:start + _BATCH]
        b = len(rots)
        small = np.zeros((b, box, box, box), np.float32)
        idx = np.ascontiguousarray(np.matmul(centred[None], rots.transpose(0, 2, 1)) / v + h)
        _splat_batch(idx, amplitude, sig_vox, CUTOFF_SIGMA, small)
        mask = np.empty(small.shape, np.bool_)
        _normalise_footprints(small, FOOTPRINT_FRACTION, mask)
        folded = small if fold_shape == (box, box, box) else _fold(small, np.empty((b,) + fold_shape, np.float32))
        cross = _irfft_select(np.conj(_rfft_padded(folded, p_shape)) * ft, p_shape, sel)
        approx = (cross * inv_sd[None]).reshape(b, -1)
        cand = np.ascontiguousarray(np.argpartition(-approx, k_cand - 1, axis=1)[:, :k_cand])
        best_cc = np.empty(b)
        best_idx = np.empty(b, np.int64)
        _candidate_lcc(small, mask, cand, int(shape[1]), int(shape[2]), big, h, math.sqrt(var_floor),
                       best_cc, best_idx)
        scores[start:start + b] = best_cc
        ckji = np.stack(np.unravel_index(best_idx, tuple(shape)), axis=1)  # centre voxels (z, y, x)
        centres[start:start + b] = target.index_to_world(ckji[:, ::-1])
        if progress is not None:
            progress(start + b, n_rot)
    return scores, centres


def search_steps(angular_step_deg: float, resolution_A: float, rms_radius_A: float) -> tuple[float, float]:
    """Angular steps (deg) of the global and the local stage of the FFT search.

    The global step is the one whose arc at the model's rms radius equals the resolution,
    ``degrees(R / r_rms)``, clamped to ``[step, 2 step]``; the local step is ``angular_step_deg``.
    """
    fine = float(angular_step_deg)
    coarse = math.degrees(float(resolution_A) / max(float(rms_radius_A), 1e-6))
    return min(2.0 * fine, max(fine, coarse)), fine


def _local_offsets(radius_deg: float, step_deg: float) -> np.ndarray:
    """Rotations of the ``step_deg`` grid within ``radius_deg`` of the identity (identity first)."""
    g = rotation_grid(step_deg)
    c = np.clip((np.trace(g, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return g[np.degrees(np.arccos(c)) <= radius_deg]


def _coarse_to_fine(target: DensityMap, local_target: DensityMap, centred, amplitude, sigma_A,
                    angular_step_deg: float,
                    resolution_A: float, rms_radius_A: float, n_poses: int, dist_A: float,
                    progress: ProgressFn | None):
    """Global FFT search at the coarse step, then local FFT searches at the fine step.

    The global stage scans :func:`rotation_grid` at the coarse step of :func:`search_steps`;
    the best ``max(n_poses, 10)`` distinct poses (non-maximum suppression with the local
    radius ``1.2 x coarse step`` as the angle) seed local searches over the fine-grid rotations
    within that radius of each seed (translations again all scored by FFT).

    Returns
    -------
    rotations, scores, centres : every rotation scanned (global then local), its score and centre
    global_scores : scores of the global (uniform) stage, the background of the z-score
    """
    coarse_deg, fine_deg = search_steps(angular_step_deg, resolution_A, rms_radius_A)
    g_rots = rotation_grid(coarse_deg)
    g_scores, g_centres = _fft_search(target, centred, amplitude, sigma_A, g_rots, progress)
    if coarse_deg <= fine_deg * 1.01:
        return g_rots, g_scores, g_centres, g_scores
    radius = 1.2 * coarse_deg
    order = np.argsort(-g_scores, kind="stable")
    seeds = _distinct(order, g_rots, g_centres, max(n_poses, 10), dist_A, radius)
    offsets = _local_offsets(radius, fine_deg)
    l_rots = np.concatenate([g_rots[i] @ offsets for i in seeds])  # offsets about the seed's frame
    n_g = len(g_rots)
    local_progress = None if progress is None else (lambda d, t: progress(n_g + d, n_g + t))
    l_scores, l_centres = _fft_search(local_target, centred, amplitude, sigma_A, l_rots, local_progress)
    return (np.concatenate([g_rots, l_rots]), np.concatenate([g_scores, l_scores]),
            np.concatenate([g_centres, l_centres]), g_scores)


def _distinct(order: np.ndarray, rots: np.ndarray, centres: np.ndarray, n_keep: int,
              dist_A: float, angle_deg: float) -> list[int]:
    """Greedy non-maximum suppression over poses visited in ``order`` (best first)."""
    kept: list[int] = []
    for i in order:
        same = False
        for j in kept:
            if (np.linalg.norm(centres[i] - centres[j]) < dist_A
                    and _angle_deg(rots[i], rots[j]) < angle_deg):
                same = True
                break
        if not same:
            kept.append(int(i))
            if len(kept) >= n_keep:
                break
    return kept


# -- REMC ---------------------------------------------------------------------------------------

def remc_temperatures(n_replicas: int, t_min: float = T_MIN, t_max: float = T_MAX) -> np.ndarray:
    """Paper 000 Eq. 1: ``T_i = T_min (T_max/T_min)^((i-1)/(N-1))``, i = 1..N."""
    if n_replicas < 1:
        raise InputError(f"n_replicas must be >= 1, got {n_replicas}")
    if n_replicas == 1:
        return np.array([t_min])
    i = np.arange(n_replicas)
    return t_min * (t_max / t_min) ** (i / (n_replicas - 1))


def _remc(scorer: _Scorer, rots: np.ndarray, centres: np.ndarray, n_steps: int,
          rng: np.random.Generator, progress: ProgressFn | None):
    """Replica-exchange Monte Carlo on E = 1 - cc from the given start poses (one per replica).

    Returns the best pose of each replica and the scores of all visited states.
    """
    n = len(rots)
    temps = remc_temperatures(n)
    frac = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    rot_sigma = np.radians(3.0 + 17.0 * frac)
    trans_sigma = 0.5 + 2.5 * frac
    cur_r = rots.copy()
    cur_c = centres.copy()
    cur_e = 1.0 - scorer.score_many(cur_r, cur_c)
    best_r, best_c, best_e = cur_r.copy(), cur_c.copy(), cur_e.copy()
    visited = [1.0 - cur_e.copy()]
    new_r = np.empty_like(cur_r)
    new_c = np.empty_like(cur_c)
    for step in range(n_steps):
        # proposals for every replica (drawn in replica order), scored together, then Metropolis
        for i in range(n):
            new_r[i] = _small_rotation(rng, rot_sigma[i]) @ cur_r[i]
            new_c[i] = cur_c[i] + rng.normal(scale=trans_sigma[i], size=3)
        new_e = 1.0 - scorer.score_many(new_r, new_c)
        for i in range(n):
            e = new_e[i]
            de = e - cur_e[i]
            u = rng.random()
            if de <= 0 or u < math.exp(-de / temps[i]):
                cur_r[i], cur_c[i], cur_e[i] = new_r[i], new_c[i], e
                if e < best_e[i]:
                    best_r[i], best_c[i], best_e[i] = new_r[i], new_c[i], e
        # neighbour swaps: even pairs on even steps, odd pairs on odd steps
        for i in range(step % 2, n - 1, 2):
            delta = (1.0 / temps[i] - 1.0 / temps[i + 1]) * (cur_e[i] - cur_e[i + 1])
            u = rng.random()
            if delta >= 0 or u < math.exp(delta):
                cur_r[[i, i + 1]] = cur_r[[i + 1, i]]
                cur_c[[i, i + 1]] = cur_c[[i + 1, i]]
                cur_e[[i, i + 1]] = cur_e[[i + 1, i]]
        visited.append(1.0 - cur_e.copy())
        if progress is not None:
            progress(step + 1, n_steps)
    return best_r, best_c, 1.0 - best_e, np.concatenate(visited)


# -- public entry point ------------------------------------------------------------------------

def _check_inputs(model: AtomModel, density_map: DensityMap, resolution_A: float, method: str,
                  angular_step_deg: float, n_poses: int, n_replicas: int, n_remc_steps: int) -> AtomModel:
    require_positive(resolution_A, "resolution (Å)")
    require_positive(angular_step_deg, "angular step (deg)")
    if method not in METHODS:
        raise InputError(f"unknown fit method {method!r}; choose one of {', '.join(METHODS)}")
    for name, value, low in (("n_poses", n_poses, 1), ("n_replicas", n_replicas, 1),
                             ("n_remc_steps", n_remc_steps, 0)):
        if int(value) != value or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if len(model) == 0:
        raise InputError("model holds no atoms")
    prot = model.protein().without_hydrogens()
    if len(prot) < 3:
        raise InputError(f"model holds no protein (found {len(prot)} protein heavy atoms among "
                         f"{len(model)} atoms): fitting needs an amino-acid model")
    if not np.all(np.isfinite(model.coords)):
        raise InputError("model has non-finite coordinates")
    d = density_map.data
    if not np.all(np.isfinite(d)):
        raise InputError("map holds non-finite values")
    if not float(np.std(d, dtype=np.float64)) > 0:
        raise InputError("map has zero variance: nothing to fit into")
    diameter = 2.0 * float(np.linalg.norm(prot.coords - prot.coords.mean(axis=0), axis=1).max())
    diagonal = float(np.linalg.norm(density_map.shape_xyz * density_map.voxel_size))
    if diameter > MAX_DIAMETER_RATIO * diagonal:
        raise InputError(f"model is much larger than the map: model diameter {diameter:.1f} Å vs map box "
                         f"diagonal {diagonal:.1f} Å; use a map covering the whole model or fit a part of it")
    return prot


def _density_centroid(m: DensityMap) -> np.ndarray:
    d = m.data.astype(np.float64)
    w = np.maximum(d - d.mean(), 0.0)
    if not w.sum() > 0:
        return m.index_to_world((m.shape_xyz - 1) / 2.0)
    k, j, i = np.indices(d.shape)
    ijk = np.array([(w * i).sum(), (w * j).sum(), (w * k).sum()]) / w.sum()
    return m.index_to_world(ijk)


def fit_model(model: AtomModel, density_map: DensityMap, resolution_A: float, method: str = "auto", *,
              angular_step_deg: float = 10.0, n_poses: int = 10, n_replicas: int = 20,
              n_remc_steps: int | None = None, seed: int = 0, kernel: str = "emrefiner",
              progress: ProgressFn | None = None) -> FitResult:
    """Place ``model`` into ``density_map`` as a rigid body.

    Parameters
    ----------
    model : AtomModel
        Model to place (any starting position). Protein heavy atoms are used for scoring;
        all atoms are moved.
    density_map : DensityMap
        Target map (any frame, any voxel size); not modified.
    resolution_A : float
        Map resolution in Å (> 0): sets the model-map kernel and the search grid.
    method : {"auto", "fft", "remc"}
        See the module docstring.
    angular_step_deg : float
        Final (fine) rotational sampling of the FFT search (deg); the global stage runs at the
        coarser step of :func:`search_steps` (module docstring).
    n_poses : int
        Distinct poses refined and reported.
    n_replicas, n_remc_steps : int
        REMC replicas and steps (each step: one move per replica and a round of neighbour swaps);
        steps default to :data:`REMC_STEPS` for ``"remc"`` and :data:`AUTO_REMC_STEPS` for ``"auto"``
        (whose replicas start from refined FFT poses).
    seed : int
        Seed of the numpy Generator behind every random choice.
    kernel : str
        Model-map kernel (:data:`emforge.simulate.KERNELS`).
    progress : callable(done, total), optional
        Called during the FFT search (rotations) and the REMC (steps).

    Returns
    -------
    FitResult

    Raises
    ------
    InputError
        See the module docstring.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if n_remc_steps is None:
        n_remc_steps = AUTO_REMC_STEPS if method == "auto" else REMC_STEPS
    prot = _check_inputs(model, density_map, resolution_A, method, angular_step_deg,
                         n_poses, n_replicas, n_remc_steps)
    R = float(resolution_A)
    rng = np.random.default_rng(seed)
    amplitude, sigma_A = kernel_parameters(prot, R, kernel)
    c0 = prot.coords.mean(axis=0)
    centred = prot.coords - c0
    radius = float(np.linalg.norm(centred, axis=1).max())
    map_voxel = float(density_map.voxel_size.max())
    fine = _isotropic(density_map, max(map_voxel, R / 4.0))
    scorer = _Scorer(fine, centred, amplitude, sigma_A)
    timings["prepare"] = time.perf_counter() - t_start
    dist_A = max(R, 4.0)
    angle_deg = max(2.0 * angular_step_deg, 15.0)

    pose_r: list[np.ndarray] = []
    pose_c: list[np.ndarray] = []
    pose_cc: list[float] = []
    search_scores = np.empty(0)
    if method in ("fft", "auto"):
        t0 = time.perf_counter()
        R_s = max(R, SEARCH_RESOLUTION_MIN_A)
        amp_s, sigma_s = (amplitude, sigma_A) if R_s == R else kernel_parameters(prot, R_s, kernel)
        blurred = _low_pass(density_map, float(np.median(sigma_s)), float(np.median(sigma_A)))
        global_voxel = max(map_voxel, R_s / 2.0)
        rms = math.sqrt(float(np.mean(np.sum(centred ** 2, axis=1))))
        rotations, scores, centres, search_scores = _coarse_to_fine(
            _isotropic(blurred, global_voxel), _isotropic(blurred, max(map_voxel, R_s / 2.5)),
            centred, amp_s, sigma_s, angular_step_deg, R_s, rms, n_poses, dist_A, progress)
        order = np.argsort(-scores, kind="stable")
        kept = _distinct(order, rotations, centres, n_poses, dist_A, angle_deg)
        timings["search"] = time.perf_counter() - t0
        log.info("FFT search at %.1f Å: %d rotations (%d global at %.1f°, local at %.1f°), global grid "
                 "%.2f Å, best local CC %.3f", R_s, len(rotations), len(search_scores),
                 search_steps(angular_step_deg, R_s, rms)[0], angular_step_deg, global_voxel,
                 float(scores.max()))
        t0 = time.perf_counter()
        # auto: the REMC below refines the poses on the true score, so no polish here
        for r, c, cc in _refine_poses(scorer, rotations[kept], centres[kept], radius,
                                      n_polish=3 if method == "fft" else 0):
            pose_r.append(r)
            pose_c.append(c)
            pose_cc.append(cc)
        timings["refine"] = time.perf_counter() - t0
    if method in ("remc", "auto") and n_remc_steps > 0:
        t0 = time.perf_counter()
        if method == "remc":
            start_r = _random_rotations(rng, n_replicas)
            start_c = np.repeat(_density_centroid(density_map)[None], n_replicas, axis=0)
            if density_map.contains(c0[None])[0]:
                start_r[0], start_c[0] = np.eye(3), c0
        else:
            idx = np.argsort(-np.asarray(pose_cc), kind="stable")
            start_r = np.stack([pose_r[idx[i % len(idx)]] for i in range(n_replicas)])
            start_c = np.stack([pose_c[idx[i % len(idx)]] for i in range(n_replicas)])
        best_r, best_c, best_cc, visited = _remc(scorer, start_r, start_c, int(n_remc_steps), rng, progress)
        timings["remc"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        order = np.argsort(-best_cc, kind="stable")
        kept = _distinct(order, best_r, best_c, n_poses, dist_A, angle_deg)
        for r, c, cc in _polish_poses(scorer, best_r[kept], best_c[kept], best_cc[kept], radius,
                                      n_polish=3) if method == "auto" else \
                _refine_poses(scorer, best_r[kept], best_c[kept], radius):
            pose_r.append(r)
            pose_c.append(c)
            pose_cc.append(cc)
        timings["refine"] = timings.get("refine", 0.0) + time.perf_counter() - t0
        if method == "remc":
            search_scores = visited
    elif method == "remc":  # zero steps: score the start poses only
        start_r = np.eye(3)[None]
        start_c = c0[None]
        cc = scorer.score(start_r[0], start_c[0])
        pose_r, pose_c, pose_cc = [start_r[0]], [start_c[0]], [cc]
        search_scores = np.array([cc])

    cc_arr = np.asarray(pose_cc)
    order = np.argsort(-cc_arr, kind="stable")
    rots = np.stack(pose_r)
    cens = np.stack(pose_c)
    kept = _distinct(order, rots, cens, n_poses, dist_A, angle_deg)
    mu = float(np.mean(search_scores))
    sd = float(np.std(search_scores))
    rows = []
    for rank, i in enumerate(kept, start=1):
        rot = rots[i]
        trans = cens[i] - rot @ c0
        q = Rotation.from_matrix(rot).as_quat()  # x, y, z, w
        q = q if q[3] >= 0 else -q
        row = {"rank": rank, "cc": float(cc_arr[i]),
               "z_score": float((cc_arr[i] - mu) / sd) if sd > 0 else float("nan"),
               "q_w": q[3], "q_x": q[0], "q_y": q[1], "q_z": q[2]}
        for a in range(3):
            for b in range(3):
                row[f"r{a + 1}{b + 1}"] = float(rot[a, b])
        row.update({"translation_x_A": trans[0], "translation_y_A": trans[1], "translation_z_A": trans[2],
                    "centre_x_A": cens[i][0], "centre_y_A": cens[i][1], "centre_z_A": cens[i][2],
                    "method": method})
        rows.append(row)
    poses = pd.DataFrame(rows)
    best = kept[0]
    transform = RigidTransform(rots[best].copy(), cens[best] - rots[best] @ c0)
    timings["total"] = time.perf_counter() - t_start
    log.info("fit (%s): best local CC %.3f, z %.1f, %d distinct poses, %.1f s", method,
             float(cc_arr[best]), float(poses["z_score"].iloc[0]), len(kept), timings["total"])
    return FitResult(poses=poses, transform=transform, model=model.transformed(transform),
                     cc=float(cc_arr[best]), timings_s=timings)


__all__ = ["FitResult", "fit_model", "rotation_grid", "search_steps", "remc_temperatures", "METHODS",
           "FOOTPRINT_FRACTION", "SEARCH_RESOLUTION_MIN_A", "REMC_STEPS", "AUTO_REMC_STEPS"]
