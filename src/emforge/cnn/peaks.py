"""C-alpha positions from a C-alpha probability map (paper 003, Methods).

Greedy picking, as paper 003 describes it: the voxel of highest probability is the first
C-alpha; the next is the voxel of highest probability at least ``exclusion_A`` (3.3 Å) from every
C-alpha picked so far, and so on.

* With the sequence length L known (``n_min = L``), at least L peaks are picked whatever their
  probability, then more while the next probability exceeds ``threshold`` (0.9), up to
  ``n_max`` (default ``ceil(1.2 L)``).
* Without it (``n_min=None``), every peak whose probability exceeds ``threshold`` is picked
  (up to ``n_max`` when given). The default 0.9 suits both modes: the network is trained with
  class weights 1:50, which inflates the odds of the C-alpha class about 50-fold, so 0.9 means
  an unweighted probability of about 0.15 that the voxel is a C-alpha voxel.

Voxels of zero probability are never picked, so fewer than ``n_min`` peaks come back when the
map has fewer positive voxels far enough apart.

The greedy pass sorts the candidate voxels once and walks them in a numba loop that marks the
voxels within the exclusion radius of each pick on a boolean grid (no per-voxel Python loop).
Each pick is then refined below the voxel by a three-point Gaussian fit per axis (a parabola
through the logarithm of the probability at the voxel and its two neighbours; exact for a
sampled Gaussian peak), the shift limited to half a voxel. The exclusion applies to the picked
voxel centres; the refined positions move by at most half a voxel per axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from emforge.maps import DensityMap
from emforge.models import AtomModel

#: Minimum distance (Å) between picked C-alpha voxels (paper 003).
EXCLUSION_A = 3.3
#: Probability above which peaks beyond the first L (or, without L, any peak) are picked (paper 003).
THRESHOLD = 0.9
#: Upper bound on the number of peaks as a multiple of the sequence length (paper 003).
MAX_PER_RESIDUE = 1.2


@dataclass(frozen=True, eq=False)
class Peaks:
    """Picked C-alpha peaks in pick order (descending probability).

    Attributes
    ----------
    xyz_A : (P, 3) float64, sub-voxel refined positions in Å
    voxel_xyz_A : (P, 3) float64, world positions of the picked voxel centres in Å
    probability : (P,) float64, probability at the picked voxel
    """

    xyz_A: np.ndarray
    voxel_xyz_A: np.ndarray
    probability: np.ndarray

    def __len__(self) -> int:
        return len(self.probability)


@numba.njit(cache=True, nogil=True)
def _greedy(order, prob, shape, offsets, suppressed, picks, count, n_max, n_min, threshold):  # pragma: no cover
    """Walk candidate flat indices ``order`` (descending probability); returns the new pick count.

    ``picks`` (n_max,) receives flat indices; ``suppressed`` (flat bool) is updated in place.
    Stops at ``n_max`` picks, or once ``n_min`` picks are made and the probability is at or
    below ``threshold``.
    """
    nz, ny, nx = shape
    for t in range(order.shape[0]):
        if count >= n_max:
            break
        f = order[t]
        p = prob[f]
        if count >= n_min and p <= threshold:
            break
        if suppressed[f]:
            continue
        picks[count] = f
        count += 1
        k = f // (ny * nx)
        j = (f // nx) % ny
        i = f % nx
        for m in range(offsets.shape[0]):
            kk = k + offsets[m, 0]
            jj = j + offsets[m, 1]
            ii = i + offsets[m, 2]
            if 0 <= kk < nz and 0 <= jj < ny and 0 <= ii < nx:
                suppressed[(kk * ny + jj) * nx + ii] = True
    return count


def _exclusion_offsets(voxel_size: np.ndarray, exclusion_A: float) -> np.ndarray:
    """(M, 3) int64 offsets (dk, dj, di) of the voxels closer than ``exclusion_A`` to a voxel."""
    reach = np.ceil(exclusion_A / voxel_size).astype(np.int64)  # (x, y, z)
    dk, dj, di = np.meshgrid(*(np.arange(-reach[a], reach[a] + 1) for a in (2, 1, 0)), indexing="ij")
    d2 = (di * voxel_size[0]) ** 2 + (dj * voxel_size[1]) ** 2 + (dk * voxel_size[2]) ** 2
    keep = d2 < exclusion_A ** 2 * (1.0 - 1e-12)
    return np.stack([dk[keep], dj[keep], di[keep]], axis=1).astype(np.int64)


def _refine(prob: np.ndarray, kji: np.ndarray) -> np.ndarray:
    """Sub-voxel shifts (P, 3) in voxels along (z, y, x): three-point Gaussian fit per axis."""
    shape = np.array(prob.shape)

    def logp(idx: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(prob[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.float64), 1e-30))

    shift = np.zeros(kji.shape, np.float64)
    c = logp(kji)
    for a in range(3):
        step = np.zeros(3, np.int64)
        step[a] = 1
        inside = (kji[:, a] > 0) & (kji[:, a] < shape[a] - 1)
        lo = np.where(inside[:, None], kji - step, kji)
        hi = np.where(inside[:, None], kji + step, kji)
        m, p = logp(lo), logp(hi)
        curv = m - 2.0 * c + p
        ok = inside & (curv < 0)
        s = np.zeros(len(kji))
        s[ok] = 0.5 * (m[ok] - p[ok]) / curv[ok]
        shift[:, a] = np.clip(s, -0.5, 0.5)
    return shift


def pick_peaks(prob: DensityMap, *, exclusion_A: float = EXCLUSION_A, n_min: int | None = None,
               n_max: int | None = None, threshold: float = THRESHOLD) -> Peaks:
    """Greedy C-alpha peaks of a probability map (module docstring).

    Parameters
    ----------
    prob : DensityMap
        C-alpha probability (0..1) on any grid (e.g. from :func:`emforge.cnn.infer.predict_probability`).
    exclusion_A : float
        Minimum distance in Å between picked voxel centres (3.3 Å, paper 003).
    n_min : int, optional
        Peaks to pick whatever their probability: the sequence length L when known.
    n_max : int, optional
        Most peaks to pick; default ``ceil(1.2 n_min)`` with ``n_min``, unbounded without.
    threshold : float
        Peaks beyond ``n_min`` are picked only while their probability exceeds this.

    Returns
    -------
    Peaks
    """
    if not exclusion_A > 0:
        raise ValueError(f"exclusion_A must be > 0, got {exclusion_A}")
    n_min_i = 0 if n_min is None else int(n_min)
    if n_min_i < 0:
        raise ValueError(f"n_min must be >= 0, got {n_min}")
    flat = np.ascontiguousarray(prob.data, dtype=np.float64).ravel()
    if n_max is None:
        n_max_i = math.ceil(MAX_PER_RESIDUE * n_min_i) if n_min is not None else flat.size
    else:
        n_max_i = int(n_max)
    n_max_i = max(min(n_max_i, flat.size), 0)
    n_min_i = min(n_min_i, n_max_i)
    offsets = _exclusion_offsets(prob.voxel_size, float(exclusion_A))
    suppressed = np.zeros(flat.size, np.bool_)
    shape = tuple(int(s) for s in prob.shape)
    # stage 1: voxels above the threshold; stage 2 (only when fewer than n_min): the other positive voxels
    above = np.flatnonzero(flat > threshold)
    order = above[np.argsort(-flat[above], kind="stable")]
    picks = np.zeros(max(min(n_max_i, len(above)), n_min_i), np.int64)  # no more picks than candidates
    count = _greedy(order, flat, shape, offsets, suppressed, picks, 0, n_max_i, n_min_i, float(threshold))
    if count < n_min_i:
        rest = np.flatnonzero((flat <= threshold) & (flat > 0))
        order = rest[np.argsort(-flat[rest], kind="stable")]
        count = _greedy(order, flat, shape, offsets, suppressed, picks, count, n_min_i, n_min_i, np.inf)
    picks = picks[:count]
    kji = np.stack(np.unravel_index(picks, prob.shape), axis=1).astype(np.int64)
    ijk = kji[:, ::-1].astype(np.float64)
    shift = _refine(prob.data, kji)[:, ::-1]
    return Peaks(prob.index_to_world(ijk + shift), prob.index_to_world(ijk), flat[picks].copy())


def peaks_to_model(xyz_A: np.ndarray, probability: np.ndarray, chain_id: str = "A", res_name: str = "UNK"
                   ) -> AtomModel:
    """A C-alpha-only model: one residue ``res_name`` per peak, chain ``chain_id``, numbered 1..P.

    The probabilities (0..1) go in the B-factor column; occupancies are 1.
    """
    xyz = np.asarray(xyz_A, dtype=np.float64).reshape(-1, 3)
    n = len(xyz)
    p = np.broadcast_to(np.asarray(probability, dtype=np.float64), (n,)).copy()
    return AtomModel(
        coords=xyz.copy(), element=np.full(n, "C"), atom_name=np.full(n, "CA"), res_name=np.full(n, res_name),
        res_seq=np.arange(1, n + 1, dtype=np.int64), ins_code=np.full(n, ""), chain_id=np.full(n, chain_id),
        b_factor=p, occupancy=np.ones(n), is_het=np.zeros(n, bool), residue_index=np.arange(n, dtype=np.int64))
