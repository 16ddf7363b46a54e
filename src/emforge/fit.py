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
    Exhaustive rotational search. Rotations: a super-Fibonacci spiral on the unit
    quaternions (Alexa, CVPR 2022), ``N = ceil(35.5 / step_rad^3)`` rotations (6,679 at 10°,
    PowerFit's density at that step), identity first. Coverage, measured for random rotations
    (``tests/test_fit.py``): the angle to the nearest grid rotation is on average 0.65 x step,
    99th percentile 1.0 x step, maximum about 1.15 x step. Search grid: isotropic voxel
    ``max(map voxel, R / 2.5)`` (the target is Gaussian low-passed, then resampled). For each
    rotation the model map is splatted (numba) into a small box, normalised over its footprint
    and cross-correlated with the target for all translations at once (``scipy.fft``, float32,
    8 rotations per batch, transforms pruned to the rows holding data and to the model-centre
    positions inside the map). Candidate translations are the 8 best of that cross-correlation
    divided by the target's standard deviation over a sphere of the model's size (one FFT pair
    for the whole search); at those the exact footprint local correlation (PowerFit's LCC) is
    computed in real space, and the best is the rotation's score. Distinct poses are chosen by
    non-maximum suppression (a pose within ``max(R, 4 Å)`` of the centre *and* within
    ``max(2 step, 15°)`` of the rotation of a better pose is the same pose); each of the top
    ``n_poses`` is refined by Nelder-Mead on the six rigid parameters, first on a fast
    surrogate (the target blurred by the atom Gaussian, summed at the atoms, weighted by
    amplitude: the overlap integral of model map and target), then the best three on the true
    score on the refinement grid (voxel ``max(map voxel, R / 4)``), and all are re-ranked by the
    true score. No Laplacian or core weighting is applied.
``"remc"``
    Paper 000 Step 1: ``n_replicas`` (20) replicas at ``T_i = T_min (T_max/T_min)^((i-1)/(N-1))``,
    ``T_min = 0.01``, ``T_max = 1.0``; replica 1 starts from the input pose when the model's
    centre lies inside the map box, the others (all of them otherwise) from random rotations
    about the model centre placed at the map's density centroid. Each step every replica tries a
    small random rotation about the model centre plus a random translation (step sizes grow
    with temperature from 3° / 0.5 Å to 20° / 3 Å), accepted by Metropolis on ``E = 1 - cc``;
    then neighbouring replicas try to swap (even pairs on even steps, odd pairs on odd steps).
    The best state each replica visited is polished by Nelder-Mead and the distinct ones are
    ranked.
``"auto"``
    ``"fft"``, then REMC (same ladder) with the replicas started from the refined top poses
    (replica ``i`` from pose ``i mod n``), then a final Nelder-Mead polish and re-ranking.

Pose table (:attr:`FitResult.poses`)
------------------------------------
One row per distinct pose, best first: ``rank`` (1 = best), ``cc``, ``z_score``, the rotation
as a unit quaternion ``q_w, q_x, q_y, q_z`` (``q_w >= 0``) and as the matrix entries
``r11 .. r33`` (row-major), ``translation_x_A, translation_y_A, translation_z_A``, the model
centre after the move ``centre_x_A, centre_y_A, centre_z_A``, and ``method``. Rotation and
translation are those of the :class:`~emforge.models.RigidTransform` ``x' = R x + t`` that maps
the *input* coordinates onto the pose. ``z_score = (cc - mean(S)) / std(S)`` where ``S`` holds
the search scores: for ``"fft"``/``"auto"`` the best local correlation of every rotation of the
search; for ``"remc"`` the scores of all states visited by all replicas. A correct fit stands
far above the rest (z typically > 5).

Supported inputs: a protein model (non-protein atoms are ignored for scoring but moved with the
model), a map in any frame, the model smaller than or comparable to the map box (a single chain
in a complex map is supported through the local score). Rejected with :class:`InputError`:
resolution not > 0, no protein atoms, a model whose diameter exceeds 1.2 x the map box diagonal,
a map with (near) zero variance, unknown method.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
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
from emforge.simulate import kernel_parameters

log = logging.getLogger(__name__)

METHODS = ("auto", "fft", "remc")
#: Footprint of the model map: voxels above this fraction of its maximum.
FOOTPRINT_FRACTION = 0.05
#: Paper 000 temperature ladder.
T_MIN, T_MAX = 0.01, 1.0
#: Gaussian cutoff in sigma units for the model maps.
CUTOFF_SIGMA = 3.0
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

@numba.njit(cache=True, nogil=True)
def _splat(index_xyz, amplitude, sigma_vox, cutoff_sigma, out):  # pragma: no cover - numba
    """Add isotropic truncated Gaussians (serial; small grids) into ``out[z, y, x]``.

    Same definition as :func:`emforge.simulate.splat_gaussians` (cut at a sphere of
    ``cutoff_sigma`` sigma), without its per-call set-up: the inner loop of the fit.
    """
    nz, ny, nx = out.shape
    c2 = cutoff_sigma * cutoff_sigma
    n_buf = int(2.0 * cutoff_sigma * sigma_vox.max()) + 3
    wx = np.empty(n_buf)
    dx2 = np.empty(n_buf)
    for a in range(index_xyz.shape[0]):
        s = sigma_vox[a]
        r = cutoff_sigma * s
        x = index_xyz[a, 0]
        y = index_xyz[a, 1]
        z = index_xyz[a, 2]
        i0 = max(0, int(math.ceil(x - r)))
        i1 = min(nx - 1, int(math.floor(x + r)))
        j0 = max(0, int(math.ceil(y - r)))
        j1 = min(ny - 1, int(math.floor(y + r)))
        k0 = max(0, int(math.ceil(z - r)))
        k1 = min(nz - 1, int(math.floor(z + r)))
        if i1 < i0 or j1 < j0 or k1 < k0:
            continue
        inv = 1.0 / s
        for i in range(i0, i1 + 1):
            d = (i - x) * inv
            dx2[i - i0] = d * d
            wx[i - i0] = math.exp(-0.5 * d * d)
        amp = amplitude[a]
        for k in range(k0, k1 + 1):
            dz = (k - z) * inv
            dz2 = dz * dz
            if dz2 > c2:
                continue
            fz = amp * math.exp(-0.5 * dz2)
            for j in range(j0, j1 + 1):
                dy = (j - y) * inv
                dyz2 = dy * dy + dz2
                if dyz2 > c2:
                    continue
                f = fz * math.exp(-0.5 * dy * dy)
                for i in range(i0, i1 + 1):
                    if dx2[i - i0] + dyz2 <= c2:
                        out[k, j, i] += f * wx[i - i0]
    return out


def _model_map(index_xyz: np.ndarray, amplitude: np.ndarray, sigma_vox: np.ndarray,
               shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """Model map (float32, ``shape_zyx``) of atoms at voxel indices ``index_xyz`` (N, 3) (x, y, z)."""
    out = np.zeros(shape_zyx, np.float32)
    return _splat(np.ascontiguousarray(index_xyz, dtype=np.float64), amplitude, sigma_vox,
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


class _Scorer:
    """Local correlation of the model at a pose against a target on an isotropic grid.

    Pose: rotation ``R`` (3, 3) about the model centre and centre position ``p`` (3,) Å:
    ``x' = R (x - c0) + p``.
    """

    def __init__(self, target: DensityMap, centred: np.ndarray, amplitude: np.ndarray, sigma_A: np.ndarray):
        self.voxel = float(target.voxel_size[0])
        self.origin = target.origin
        self.data = target.data
        self.shape_xyz = target.shape_xyz
        self.centred = centred
        self.amplitude = amplitude
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
        idx = (self.centred @ rot.T + (centre - self.origin)) / self.voxel
        vals = ndimage.map_coordinates(self.blur, idx[:, ::-1].T, order=1, mode="constant", cval=0.0)
        return float(self.amplitude @ vals) * self.blur_scale

    def score(self, rot: np.ndarray, centre: np.ndarray) -> float:
        self.n_evals += 1
        idx = (self.centred @ rot.T + (centre - self.origin)) / self.voxel
        lo = np.floor(idx.min(axis=0)).astype(np.int64) - self.pad
        hi = np.ceil(idx.max(axis=0)).astype(np.int64) + self.pad + 1
        size = hi - lo
        sim = _model_map(idx - lo, self.amplitude, self.sigma_vox, tuple(int(n) for n in size[::-1]))
        tgt = np.zeros(sim.shape, np.float32)
        a = np.clip(lo, 0, self.shape_xyz)
        b = np.clip(hi, 0, self.shape_xyz)
        if np.any(b <= a):
            return 0.0
        tgt[a[2] - lo[2]:b[2] - lo[2], a[1] - lo[1]:b[1] - lo[1], a[0] - lo[0]:b[0] - lo[0]] = \
            self.data[a[2]:b[2], a[1]:b[1], a[0]:b[0]]
        smax = float(sim.max())
        if not smax > 0:
            return 0.0
        m = sim > FOOTPRINT_FRACTION * smax
        s = sim[m].astype(np.float64)
        t = tgt[m].astype(np.float64)
        s -= s.mean()
        t -= t.mean()
        vt = float(t @ t)
        if vt <= self.var_floor * len(t):
            return 0.0
        return float((s @ t) / math.sqrt(float(s @ s) * vt))


# -- local refinement ---------------------------------------------------------------------------

def _refine(scorer: _Scorer, rot: np.ndarray, centre: np.ndarray, radius_A: float,
            max_evals: int = 400, surrogate: bool = False, steps=(1.5, 0.5)
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Nelder-Mead on (dx, dy, dz in Å, rotation vector x radius in Å) from a pose.

    With ``surrogate`` the fast overlap score is optimised and the returned score is the
    true local correlation of the result; otherwise the true score is optimised.
    """
    lever = max(radius_A, 1.0)

    def pose(p):
        r = Rotation.from_rotvec(p[3:] / lever).as_matrix() @ rot
        return r, centre + p[:3]

    def f(p):
        r, c = pose(p)
        return -scorer.overlap(r, c) if surrogate else 1.0 - scorer.score(r, c)

    best_x = np.zeros(6)
    best_f = f(best_x)
    for step in steps:  # restarts with smaller simplices
        simplex = np.vstack([best_x, best_x + step * np.eye(6)])
        res = optimize.minimize(f, best_x, method="Nelder-Mead",
                                options={"initial_simplex": simplex, "xatol": 0.02, "fatol": 1e-6,
                                         "maxfev": max_evals})
        if res.fun <= best_f:
            best_x, best_f = res.x, float(res.fun)
    r, c = pose(best_x)
    return r, c, (scorer.score(r, c) if surrogate else 1.0 - best_f)


def _refine_poses(scorer: _Scorer, rots, centres, radius_A: float, n_polish: int = 3):
    """Surrogate refinement of every pose, then true-score polish of the best ``n_polish``."""
    out = []
    for r0, c0 in zip(rots, centres):
        res = _refine(scorer, r0, c0, radius_A, max_evals=600, surrogate=True, steps=(2.0, 0.7))
        cc0 = scorer.score(r0, c0)
        out.append(res if res[2] >= cc0 else (r0, c0, cc0))  # never worse than the start
    order = np.argsort([-o[2] for o in out], kind="stable")
    for i in order[:n_polish]:
        r, c, cc = out[i]
        out[i] = _refine(scorer, r, c, radius_A, max_evals=150, steps=(0.4,))
        if out[i][2] < cc:  # never worse than the surrogate result
            out[i] = (r, c, cc)
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
    p_shape = tuple(scipy.fft.next_fast_len(int(n + box - 1), real=True) for n in shape)
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
    big_flat = big.ravel()
    strides = np.array([big.shape[1] * big.shape[2], big.shape[2], 1], dtype=np.int64)
    sig_vox = np.ascontiguousarray(sigma_A / v, dtype=np.float64)
    n_rot = len(rotations)
    scores = np.empty(n_rot)
    centres = np.empty((n_rot, 3))
    k_cand = min(n_candidates, int(np.prod(shape)))
    for start in range(0, n_rot, _BATCH):
        rots = rotations[start:start + _BATCH]
        b = len(rots)
        small = np.zeros((b, box, box, box), np.float32)
        feet = []
        for k, rot in enumerate(rots):
            t = _model_map(centred @ rot.T / v + h, amplitude, sig_vox, (box, box, box))
            m = t > FOOTPRINT_FRACTION * t.max()
            vals = t[m]
            vals = (vals - vals.mean()) / max(float(vals.std()), 1e-30)
            small[k][m] = vals
            feet.append((np.flatnonzero(m), vals))
        cross = _irfft_select(np.conj(_rfft_padded(small, p_shape)) * ft, p_shape, sel)
        approx = (cross * inv_sd[None]).reshape(b, -1)
        cand = np.argpartition(-approx, k_cand - 1, axis=1)[:, :k_cand]
        for k in range(b):
            flat_idx, vals = feet[k]
            # footprint voxel offsets in the padded target, relative to the box origin
            fz, fy, fx = np.unravel_index(flat_idx, (box, box, box))
            off = fz * strides[0] + fy * strides[1] + fx
            ckji = np.stack(np.unravel_index(cand[k], tuple(shape)), axis=1)  # centre voxels
            base = (ckji - h + box) @ strides
            g = big_flat[base[:, None] + off[None, :]].astype(np.float64)  # (K, M)
            g -= g.mean(axis=1, keepdims=True)
            sd = np.sqrt(np.mean(g * g, axis=1))
            lcc = np.where(sd > math.sqrt(var_floor), (g @ vals) / (len(vals) * np.maximum(sd, 1e-300)), 0.0)
            j = int(np.argmax(lcc))
            scores[start + k] = lcc[j]
            centres[start + k] = target.index_to_world(ckji[j][::-1])
        if progress is not None:
            progress(start + b, n_rot)
    return scores, centres


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
    cur_e = np.array([1.0 - scorer.score(cur_r[i], cur_c[i]) for i in range(n)])
    best_r, best_c, best_e = cur_r.copy(), cur_c.copy(), cur_e.copy()
    visited = [1.0 - cur_e.copy()]
    for step in range(n_steps):
        for i in range(n):
            new_r = _small_rotation(rng, rot_sigma[i]) @ cur_r[i]
            new_c = cur_c[i] + rng.normal(scale=trans_sigma[i], size=3)
            e = 1.0 - scorer.score(new_r, new_c)
            de = e - cur_e[i]
            u = rng.random()
            if de <= 0 or u < math.exp(-de / temps[i]):
                cur_r[i], cur_c[i], cur_e[i] = new_r, new_c, e
                if e < best_e[i]:
                    best_r[i], best_c[i], best_e[i] = new_r, new_c, e
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
    if diameter > 1.2 * diagonal:
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
              n_remc_steps: int = 150, seed: int = 0, kernel: str = "emrefiner",
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
        Rotational sampling of the FFT search (deg).
    n_poses : int
        Distinct poses refined and reported.
    n_replicas, n_remc_steps : int
        REMC replicas and steps (each step: one move per replica and a round of neighbour swaps).
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
    prot = _check_inputs(model, density_map, resolution_A, method, angular_step_deg,
                         n_poses, n_replicas, n_remc_steps)
    R = float(resolution_A)
    rng = np.random.default_rng(seed)
    amplitude, sigma_A = kernel_parameters(prot, R, kernel)
    c0 = prot.coords.mean(axis=0)
    centred = prot.coords - c0
    radius = float(np.linalg.norm(centred, axis=1).max())
    fine_voxel = max(float(density_map.voxel_size.max()), R / 4.0)
    fine = _isotropic(density_map, fine_voxel)
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
        coarse_voxel = max(float(density_map.voxel_size.max()), R / 2.5)
        coarse = _isotropic(density_map, coarse_voxel)
        rotations = rotation_grid(angular_step_deg)
        search_scores, centres = _fft_search(coarse, centred, amplitude, sigma_A, rotations, progress)
        order = np.argsort(-search_scores, kind="stable")
        kept = _distinct(order, rotations, centres, n_poses, dist_A, angle_deg)
        timings["search"] = time.perf_counter() - t0
        log.info("FFT search: %d rotations at %.1f° on a %.2f Å grid, best local CC %.3f",
                 len(rotations), angular_step_deg, coarse_voxel, float(search_scores.max()))
        t0 = time.perf_counter()
        for r, c, cc in _refine_poses(scorer, rotations[kept], centres[kept], radius):
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
        for r, c, cc in _refine_poses(scorer, best_r[kept], best_c[kept], radius):
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


__all__ = ["FitResult", "fit_model", "rotation_grid", "remc_temperatures", "METHODS", "FOOTPRINT_FRACTION"]
