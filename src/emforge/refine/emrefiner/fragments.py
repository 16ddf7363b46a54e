"""EM-Refiner Step 2 building blocks: secondary-structure fragments and hinged rigid-body moves.

Paper 000: "a fragment is defined as a region with regular secondary structure (alpha-helix or
beta-strand) and the movements, including rigid-body fragment rotation and translation, use the
two end loops as the hinge points. For the fragments outside the density map, the length is
expanded to include all residues that have a CC below 0.05", the per-residue CC taken over the
grid points within 8 Å of the residue.

A move applies a rigid transform ``x -> R (x - p) + p + t`` to the fragment and spreads it over
the flanking loops: a loop residue ``k`` steps from the fragment, in a loop of ``n`` residues
between the fragment and the next fixed anchor (the neighbouring fragment), gets the fraction
``1 - k / (n + 1)`` of the rotation angle and of the translation. The loops bend instead of
breaking, and the anchors stay put; a loop that runs to a chain terminus has no anchor and moves
with the fragment in full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from emforge.errors import InputError
from emforge.sse import sse_fragments


@dataclass(frozen=True)
class Fragment:
    """Residue rows (inclusive) of one fragment, its kind, and the loops it moves with.

    ``first``/``last``: the fragment after extension; ``core_first``/``core_last``: the helix
    or strand itself; ``left``/``right``: the first and last residue rows of the hinge loops
    (``left <= first``, ``right >= last``); ``left_anchored``/``right_anchored``: whether a fixed
    neighbour lies beyond the loop (False at a chain terminus).
    """

    first: int
    last: int
    kind: str
    core_first: int
    core_last: int
    left: int
    right: int
    left_anchored: bool
    right_anchored: bool


def define_fragments(ss3: np.ndarray, chain_index: np.ndarray, local_cc: np.ndarray, *,
                     cc_threshold: float = 0.05, min_helix: int = 4, min_strand: int = 3) -> list[Fragment]:
    """Secondary-structure fragments extended over neighbouring residues of low local CC.

    Parameters
    ----------
    ss3 : (R,) str, 3-state secondary structure (H, E, C)
    chain_index : (R,) int, chain of each residue
    local_cc : (R,) float, per-residue local CC (NaN counts as low)
    cc_threshold : residues next to a fragment with local CC below this join it

    Returns
    -------
    list of Fragment, in residue order; extensions never overlap another fragment.
    """
    ss3 = np.asarray(ss3)
    chain_index = np.asarray(chain_index)
    cc = np.asarray(local_cc, dtype=float)
    if not (len(ss3) == len(chain_index) == len(cc)):
        raise InputError(f"ss3, chain_index and local_cc differ in length ({len(ss3)}, {len(chain_index)}, "
                         f"{len(cc)})")
    cores = sse_fragments(ss3, chain_index, min_helix=min_helix, min_strand=min_strand)
    low = ~(cc >= cc_threshold)
    taken = np.zeros(len(ss3), bool)
    for a, b, _ in cores:
        taken[a:b + 1] = True
    extended = []
    for a, b, kind in cores:
        lo, hi = a, b
        while lo - 1 >= 0 and chain_index[lo - 1] == chain_index[a] and low[lo - 1] and not taken[lo - 1]:
            lo -= 1
        while hi + 1 < len(ss3) and chain_index[hi + 1] == chain_index[a] and low[hi + 1] and not taken[hi + 1]:
            hi += 1
        taken[lo:hi + 1] = True
        extended.append((lo, hi, kind, a, b))
    out = []
    for k, (lo, hi, kind, a, b) in enumerate(extended):
        ch = chain_index[a]
        prev_end = extended[k - 1][1] if k > 0 and chain_index[extended[k - 1][3]] == ch else None
        next_start = extended[k + 1][0] if k + 1 < len(extended) and chain_index[extended[k + 1][3]] == ch else None
        chain_rows = np.flatnonzero(chain_index == ch)
        left = prev_end + 1 if prev_end is not None else int(chain_rows[0])
        right = next_start - 1 if next_start is not None else int(chain_rows[-1])
        out.append(Fragment(int(lo), int(hi), kind, int(a), int(b), int(left), int(right),
                            prev_end is not None, next_start is not None))
    return out


def hinge_weights(frag: Fragment) -> tuple[np.ndarray, np.ndarray]:
    """Residue rows a move of ``frag`` touches and the fraction of the move each one gets (0, 1]."""
    rows = np.arange(frag.left, frag.right + 1)
    w = np.ones(len(rows))
    n_left = frag.first - frag.left
    if n_left and frag.left_anchored:
        k = frag.first - rows[:n_left]  # 1 .. n_left steps from the fragment
        w[:n_left] = 1.0 - k / (n_left + 1.0)
    n_right = frag.right - frag.last
    if n_right and frag.right_anchored:
        k = rows[len(rows) - n_right:] - frag.last
        w[len(rows) - n_right:] = 1.0 - k / (n_right + 1.0)
    return rows, w


def hinged_move(coords: np.ndarray, residue_of_atom: np.ndarray, frag: Fragment, rotvec: np.ndarray,
                pivot: np.ndarray, translation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atoms moved by a hinged rigid-body move of ``frag`` and their new coordinates.

    Parameters
    ----------
    coords : (N, 3) Å; residue_of_atom : (N,) residue row of each atom (atoms in residue order)
    rotvec : (3,) rotation vector (rad) of the full move, about ``pivot`` (3,) Å
    translation : (3,) Å of the full move

    Returns
    -------
    atoms : (M,) int64 indices; new_xyz : (M, 3) Å
    """
    rows, w = hinge_weights(frag)
    a, b = np.searchsorted(residue_of_atom, [frag.left, frag.right + 1])
    atoms = np.arange(a, b, dtype=np.int64)
    frac = w[residue_of_atom[a:b] - frag.left]
    return atoms, partial_rigid_move(coords[a:b], frac, np.asarray(rotvec, np.float64),
                                     np.asarray(pivot, np.float64), np.asarray(translation, np.float64))


@numba.njit(cache=True, nogil=True)
def partial_rigid_move(xyz, frac, rotvec, pivot, translation):  # pragma: no cover - numba
    """(M, 3) ``R(f rotvec) (x - pivot) + pivot + f translation`` per atom with fraction ``f = frac``
    (Rodrigues' formula)."""
    out = np.empty_like(xyz)
    theta = math.sqrt(rotvec[0] ** 2 + rotvec[1] ** 2 + rotvec[2] ** 2)
    kx = ky = kz = 0.0
    if theta > 0.0:
        kx, ky, kz = rotvec[0] / theta, rotvec[1] / theta, rotvec[2] / theta
    for m in range(xyz.shape[0]):
        f = frac[m]
        vx = xyz[m, 0] - pivot[0]
        vy = xyz[m, 1] - pivot[1]
        vz = xyz[m, 2] - pivot[2]
        c = math.cos(f * theta)
        sn = math.sin(f * theta)
        dot = (kx * vx + ky * vy + kz * vz) * (1.0 - c)
        out[m, 0] = vx * c + (ky * vz - kz * vy) * sn + kx * dot + pivot[0] + f * translation[0]
        out[m, 1] = vy * c + (kz * vx - kx * vz) * sn + ky * dot + pivot[1] + f * translation[1]
        out[m, 2] = vz * c + (kx * vy - ky * vx) * sn + kz * dot + pivot[2] + f * translation[2]
    return out
