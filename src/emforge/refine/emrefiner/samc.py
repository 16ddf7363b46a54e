"""Simulated-annealing Monte Carlo (SAMC) of EM-Refiner, Step 2: hinged fragment moves.

Paper 000 Step 2: ``n_repeats`` annealing repeats (30), each through ``n_temperatures`` (20)
temperatures from ``T_max`` = 2 down to ``T_min`` = 0.01 spaced as Eq. 1
(``T_i = T_min (T_max / T_min)^((i - 1)/(N - 1))``, visited from hot to cold), with
``n_moves`` (500) attempted moves per temperature, Metropolis on the full energy of Eq. 2
(:class:`~.energy.EMRefinerEnergy`). A move picks a fragment uniformly (:mod:`.fragments`) and
either rotates it about a random axis through the C-alpha of its first or last residue (the
hinge) or translates it, the flanking loops following partially (:func:`.fragments.hinged_move`).
Step sizes: rotation angle ``N(0, rot_deg)``, translation ``N(0, trans_A)`` per axis, both scaled by
``sqrt(T / T_max)`` clipped to [0.25, 1] so cold temperatures make finer moves.

Each repeat starts from the lowest-energy conformation found so far; the final conformation of
every repeat is kept as a decoy, and the ``n_keep`` lowest-energy decoys are returned (paper: the
five lowest go to Step 3). :func:`anneal` is the loop shared with Step 3 (:mod:`.atomic`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emforge.refine.emrefiner.energy import TERMS, EMRefinerEnergy
from emforge.refine.emrefiner.fragments import Fragment, hinged_move

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnealingSchedule:
    """Repeats x temperatures x moves, temperatures ``t_max -> t_min`` spaced as paper 000 Eq. 1."""

    n_repeats: int = 30
    n_temperatures: int = 20
    n_moves: int = 500
    t_max: float = 2.0
    t_min: float = 0.01

    def temperatures(self) -> np.ndarray:
        """(n_temperatures,) from hot to cold."""
        if self.n_temperatures == 1:
            return np.array([self.t_min])
        i = np.arange(self.n_temperatures)
        return (self.t_min * (self.t_max / self.t_min) ** (i / (self.n_temperatures - 1)))[::-1]


@dataclass
class Trajectory:
    """Per-temperature record of an annealing run: energy terms and acceptance."""

    rows: list[dict] = field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)


@dataclass(frozen=True)
class Decoy:
    coords: np.ndarray  # (N, 3) Å
    energy: float
    terms: dict


Proposal = Callable[[np.random.Generator, float], "tuple[np.ndarray, np.ndarray]"]


def anneal(energy: EMRefinerEnergy, propose: Proposal, schedule: AnnealingSchedule, *, seed: int,
           n_keep: int = 5, progress: Callable[[int, int], None] | None = None,
           label: str = "SAMC") -> tuple[list[Decoy], Trajectory]:
    """Simulated-annealing Monte Carlo on ``energy`` with moves from ``propose``.

    ``propose(rng, scale)`` returns the atoms a trial move touches (M,) and their new coordinates
    (M, 3); ``scale`` in [0.25, 1] shrinks step sizes at cold temperatures (``sqrt(T / T_max)``,
    clipped). Proposals must be symmetric (a move and its reverse equally likely) for Metropolis
    to sample the Boltzmann distribution at each temperature.

    Each repeat restarts from the lowest-energy conformation found so far; the final
    conformation of every repeat is a decoy. Returns the ``n_keep`` lowest-energy distinct decoys
    (best first; the overall best is always the first) and the per-temperature trajectory;
    ``energy`` is left at the best decoy.
    """
    rng = np.random.default_rng(seed)
    temps = schedule.temperatures()
    w = energy.weights.as_array()
    terms0 = energy.terms(energy.coords.copy())
    term_cur = np.array([terms0[t] for t in TERMS])
    e_cur = float(w @ term_cur)
    best = Decoy(energy.coords.copy(), e_cur, dict(zip(TERMS, term_cur)))
    decoys: list[Decoy] = []
    traj = Trajectory()
    traj.add(repeat=-1, temperature=float("nan"), energy=e_cur, acceptance=float("nan"), cc=energy.cc(),
             **{f"E_{t}": v for t, v in zip(TERMS, term_cur)})
    total = schedule.n_repeats * len(temps)
    done = 0
    for rep in range(schedule.n_repeats):
        if rep:
            _set_coords(energy, best.coords)
            e_cur, term_cur = best.energy, np.array([best.terms[t] for t in TERMS])
        for temp in temps:
            scale = float(np.clip(math.sqrt(temp / schedule.t_max), 0.25, 1.0))
            n_acc = 0
            for _ in range(schedule.n_moves):
                atoms, new = propose(rng, scale)
                d_e, d_terms = energy.delta(atoms, new)
                if d_e <= 0.0 or rng.random() < math.exp(-d_e / temp):
                    energy.accept()
                    e_cur += d_e
                    term_cur = term_cur + d_terms
                    n_acc += 1
                    if e_cur < best.energy - 1e-12:
                        best = Decoy(energy.coords.copy(), e_cur, dict(zip(TERMS, term_cur)))
                else:
                    energy.reject()
            traj.add(repeat=rep, temperature=float(temp), energy=e_cur, acceptance=n_acc / schedule.n_moves,
                     cc=energy.cc(), **{f"E_{t}": v for t, v in zip(TERMS, term_cur)})
            done += 1
            if progress is not None:
                progress(done, total)
        decoys.append(Decoy(energy.coords.copy(), e_cur, dict(zip(TERMS, term_cur))))
        log.info("%s repeat %d/%d: E %.2f (best %.2f), CC %.3f", label, rep + 1, schedule.n_repeats, e_cur,
                 best.energy, energy.cc())
    decoys.append(best)
    decoys.sort(key=lambda d: d.energy)
    kept: list[Decoy] = []
    for d in decoys:  # distinct conformations only
        if all(np.abs(d.coords - k.coords).max() > 1e-6 for k in kept):
            kept.append(d)
        if len(kept) == n_keep:
            break
    _set_coords(energy, kept[0].coords)
    return kept, traj


def fragment_samc(energy: EMRefinerEnergy, fragments: list[Fragment], schedule: AnnealingSchedule, *,
                  seed: int, rot_deg: float = 6.0, trans_A: float = 0.6, n_keep: int = 5,
                  progress: Callable[[int, int], None] | None = None) -> tuple[list[Decoy], Trajectory]:
    """Step 2 of paper 000 on ``energy`` (its coordinates are left at the best decoy).

    A move picks a fragment uniformly and, with equal odds, rotates it about a random axis
    through the C-alpha of its first or last residue by ``N(0, rot_deg)`` degrees or translates it
    by ``N(0, trans_A)`` Å per axis (both times ``scale``), the hinge loops following
    (:func:`.fragments.hinged_move`). Returns the ``n_keep`` lowest-energy decoys (best first) and
    the trajectory.
    """
    if not fragments:
        raise ValueError("no fragments to move")
    ca = energy.bb[:, 1]

    def propose(rng: np.random.Generator, scale: float):
        frag = fragments[int(rng.integers(len(fragments)))]
        if rng.random() < 0.5:
            end = frag.first if rng.random() < 0.5 else frag.last
            pivot = energy.coords[ca[end]] if ca[end] >= 0 else energy.coords[energy.residue == end].mean(0)
            rotvec = random_axis(rng) * math.radians(rng.normal(0.0, rot_deg * scale))
            shift = np.zeros(3)
        else:
            pivot = np.zeros(3)
            rotvec = np.zeros(3)
            shift = rng.normal(0.0, trans_A * scale, size=3)
        return hinged_move(energy.coords, energy.residue, frag, rotvec, pivot, shift)

    return anneal(energy, propose, schedule, seed=seed, n_keep=n_keep, progress=progress, label="Step 2 SAMC")


def random_axis(rng: np.random.Generator) -> np.ndarray:
    """Unit vector uniform on the sphere."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _set_coords(energy: EMRefinerEnergy, coords: np.ndarray) -> None:
    """Move every atom of ``energy`` to ``coords`` (a full-set move, then a fresh map/cell rebuild)."""
    energy.coords[:] = coords
    energy.refresh()
