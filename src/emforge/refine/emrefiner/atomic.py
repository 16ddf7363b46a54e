"""EM-Refiner Step 3: atomic-level SAMC with the six moves M1-M6 of paper 000.

Paper 000: "M1 rotates a randomly selected fragment around a random axis centered at the N or C
terminus of the fragment; M2 shifts the conformation of four residues (i+1 .. i+4) along the
sequence by one residue; M3 is similar to M1 but with the rotation center located at the middle
of the selected fragment; M4 rotates the conformation with the rotation axis oriented from the N-
to C-terminal region of the fragment; M5 translates a selected fragment a short distance along a
random direction; M6 randomly perturbs the coordinate of one residue of a fragment followed by
local structure recovery. In case a movement results in residue discontinuity (normally at the
ends of the moved fragments), a random walk is performed to connect the residues."

Here a Step-3 fragment is a random contiguous segment of ``seg_min`` .. ``seg_max`` residues of one
chain (M2: four residues; M6: one). Every move is a rigid transform of the segment, spread over
``n_flank`` residues on each side with fractions ``1 - k / (n_flank + 1)`` (k steps away): the
chain bends over the flanks instead of breaking. That ramp is our "local recovery": unlike a
random-walk reconnection it is deterministic given the move, so a move and its reverse are equally
likely and Metropolis stays exact; what bond stretch remains is scored by E_bond.

M2 is a register slide: each of the four residues moves a fraction ``f`` of the rigid transform
that puts its N, CA, C onto those of its neighbour one residue along the sequence (``f`` drawn in
(0, ``shift_fraction``], direction drawn at random); ``f = 1`` is the paper's full one-residue shift,
which almost never survives Metropolis in an all-atom model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from emforge.refine.emrefiner.energy import EMRefinerEnergy
from emforge.refine.emrefiner.fragments import partial_rigid_move
from emforge.refine.emrefiner.samc import AnnealingSchedule, Decoy, Trajectory, anneal, random_axis

MOVES = ("M1", "M2", "M3", "M4", "M5", "M6")


@dataclass(frozen=True)
class AtomicMoves:
    """Step sizes of the Step-3 moves (at the hottest temperature; scaled down when colder)."""

    seg_min: int = 2
    seg_max: int = 8
    n_flank: int = 2
    rot_deg: float = 4.0  # M1, M3: N(0, rot_deg)
    axis_rot_deg: float = 8.0  # M4
    trans_A: float = 0.3  # M5: N(0, trans_A) per axis
    shift_fraction: float = 0.25  # M2
    residue_rot_deg: float = 10.0  # M6 rotation about the residue's C-alpha
    residue_trans_A: float = 0.3  # M6


class AtomicMover:
    """Proposes M1-M6 moves on the current coordinates of an :class:`EMRefinerEnergy`.

    Call ``mover(rng, scale)`` for ``(atoms, new_xyz)``; ``counts`` tallies the moves proposed.
    """

    def __init__(self, energy: EMRefinerEnergy, moves: AtomicMoves | None = None):
        self.energy = energy
        self.p = moves or AtomicMoves()
        res = energy.residue
        n_res = len(energy.bb)
        self.atom_start = np.searchsorted(res, np.arange(n_res + 1)).astype(np.int64)  # residue -> atom range
        chain = energy.chain
        # chain segments broken at missing peptide links: moves stay inside one segment
        brk = np.flatnonzero(~energy.prev_linked[1:] | (chain[1:] != chain[:-1])) + 1
        self.seg_lo = np.zeros(n_res, np.int64)
        self.seg_hi = np.zeros(n_res, np.int64)
        for a, b in zip(np.concatenate([[0], brk]), np.concatenate([brk, [n_res]])):
            self.seg_lo[a:b] = a
            self.seg_hi[a:b] = b - 1
        self.counts = dict.fromkeys(MOVES, 0)
        self._frame = np.stack([energy.bb[:, 0], energy.bb[:, 1], energy.bb[:, 2]], axis=1)

    # -- helpers ------------------------------------------------------------------------------------
    def _segment(self, rng: np.random.Generator, length: int) -> tuple[int, int]:
        r = int(rng.integers(len(self.seg_lo)))
        lo, hi = int(self.seg_lo[r]), int(self.seg_hi[r])
        length = min(length, hi - lo + 1)
        a = int(rng.integers(lo, hi - length + 2))
        return a, a + length - 1

    def _span(self, a: int, b: int) -> tuple[int, int, np.ndarray]:
        """Residue range with flanks and the fraction of the move per residue."""
        lo = max(a - self.p.n_flank, int(self.seg_lo[a]))
        hi = min(b + self.p.n_flank, int(self.seg_hi[b]))
        rows = np.arange(lo, hi + 1)
        k = np.maximum(a - rows, rows - b).clip(min=0)
        return lo, hi, 1.0 - k / (self.p.n_flank + 1.0)

    def _ca(self, r: int) -> np.ndarray:
        e = self.energy
        i = e.bb[r, 1]
        if i >= 0:
            return e.coords[i]
        return e.coords[self.atom_start[r]:self.atom_start[r + 1]].mean(axis=0)

    def _rigid(self, a: int, b: int, rotvec: np.ndarray, pivot: np.ndarray, shift: np.ndarray):
        lo, hi, w = self._span(a, b)
        i0, i1 = self.atom_start[lo], self.atom_start[hi + 1]
        frac = np.repeat(w, np.diff(self.atom_start[lo:hi + 2]))
        xyz = self.energy.coords[i0:i1]
        return np.arange(i0, i1, dtype=np.int64), partial_rigid_move(xyz, frac, rotvec, pivot, shift)

    # -- the moves ------------------------------------------------------------------------------------
    def __call__(self, rng: np.random.Generator, scale: float):
        k = int(rng.integers(6))
        self.counts[MOVES[k]] += 1
        p = self.p
        zero = np.zeros(3)
        if k == 1:
            return self._shift(rng, scale)
        if k == 5:  # M6: one residue, perturbed about its C-alpha, recovered over the flanks
            a, _ = self._segment(rng, 1)
            rotvec = random_axis(rng) * math.radians(rng.normal(0.0, p.residue_rot_deg * scale))
            return self._rigid(a, a, rotvec, self._ca(a), rng.normal(0.0, p.residue_trans_A * scale, 3))
        a, b = self._segment(rng, int(rng.integers(p.seg_min, p.seg_max + 1)))
        if k == 0:  # M1: about the N- or C-terminal C-alpha
            pivot = self._ca(a if rng.random() < 0.5 else b)
            return self._rigid(a, b, random_axis(rng) * math.radians(rng.normal(0.0, p.rot_deg * scale)), pivot, zero)
        if k == 2:  # M3: about the middle C-alpha
            return self._rigid(a, b, random_axis(rng) * math.radians(rng.normal(0.0, p.rot_deg * scale)),
                               self._ca((a + b) // 2), zero)
        if k == 3:  # M4: about the N -> C axis of the fragment
            axis = self._ca(b) - self._ca(a)
            n = np.linalg.norm(axis)
            axis = axis / n if n > 1e-6 else random_axis(rng)
            return self._rigid(a, b, axis * math.radians(rng.normal(0.0, p.axis_rot_deg * scale)), self._ca(a), zero)
        # M5: translation
        return self._rigid(a, b, zero, zero, rng.normal(0.0, p.trans_A * scale, 3))

    def _shift(self, rng: np.random.Generator, scale: float):
        """M2: four residues slide a fraction of one residue along the sequence."""
        a, _ = self._segment(rng, 4)
        d = 1 if rng.random() < 0.5 else -1
        return self.register_shift(a, d, float(rng.uniform(0.0, self.p.shift_fraction * scale)))

    def register_shift(self, first: int, direction: int, fraction: float, length: int = 4):
        """Residues ``first .. first + length - 1`` each move ``fraction`` of the rigid transform that
        puts their N, CA, C onto those of the residue ``direction`` (+1 or -1) along the chain.
        Residues whose neighbour is missing or in another segment stay. Returns (atoms, new_xyz)."""
        e = self.energy
        b = min(first + length - 1, int(self.seg_hi[first]))
        rows = np.arange(first, b + 1)
        dest = rows + direction
        ok = (dest >= self.seg_lo[rows]) & (dest <= self.seg_hi[rows]) & (self._frame[rows] >= 0).all(1)
        ok &= (self._frame[np.clip(dest, 0, len(self._frame) - 1)] >= 0).all(1)
        i0, i1 = self.atom_start[first], self.atom_start[b + 1]
        atoms = np.arange(i0, i1, dtype=np.int64)
        new = e.coords[i0:i1].copy()
        if not ok.any():
            return atoms, new
        src = e.coords[self._frame[rows[ok]]]  # (K, 3, 3)
        dst = e.coords[self._frame[dest[ok]]]
        rotvec = Rotation.from_matrix(_kabsch(src, dst)).as_rotvec()
        c_src = src.mean(axis=1)
        c_dst = dst.mean(axis=1)
        for r, rv, cs, cd in zip(rows[ok], rotvec, c_src, c_dst):
            j0, j1 = self.atom_start[r] - i0, self.atom_start[r + 1] - i0
            new[j0:j1] = partial_rigid_move(e.coords[i0 + j0:i0 + j1], np.full(j1 - j0, fraction), rv, cs, cd - cs)
        return atoms, new


def _kabsch(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(K, 3, 3) rotations best mapping centred point sets ``p`` (K, P, 3) onto ``q``."""
    pc = p - p.mean(axis=1, keepdims=True)
    qc = q - q.mean(axis=1, keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("kpi,kpj->kij", pc, qc))
    d = np.sign(np.linalg.det(u @ vt))
    d[d == 0] = 1.0
    vt[:, 2, :] *= d[:, None]
    return np.swapaxes(u @ vt, 1, 2)


def atomic_samc(energy: EMRefinerEnergy, schedule: AnnealingSchedule, *, seed: int,
                moves: AtomicMoves | None = None, n_keep: int = 1,
                progress: Callable[[int, int], None] | None = None) -> tuple[list[Decoy], Trajectory, dict]:
    """Step 3 of paper 000 from the current coordinates of ``energy``.

    Returns the ``n_keep`` lowest-energy decoys (best first), the trajectory and the number of
    proposals per move type. ``energy`` is left at the best decoy.
    """
    mover = AtomicMover(energy, moves)
    decoys, traj = anneal(energy, mover, schedule, seed=seed, n_keep=n_keep, progress=progress, label="Step 3 SAMC")
    return decoys, traj, mover.counts
