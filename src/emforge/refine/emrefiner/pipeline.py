"""EM-Refiner refinement of a superposed model in a density map (paper 000, Steps 2-3 + finish).

1. Secondary structure (:func:`emforge.sse.assign_secondary_structure`, 3 states) and per-residue
   local CC of the model in the map (grid points within 8 Å of the residue).
2. Step 2: fragment SAMC (:func:`.samc.fragment_samc`) over the SSE fragments extended by
   neighbours of local CC < 0.05; the ``n_runs`` lowest-energy decoys are kept.
3. Step 3: atomic SAMC (:func:`.atomic.atomic_samc`) from each kept decoy; the lowest-energy
   conformation over all runs is the refined model.
4. Finish: restrained AMBER14 + implicit-solvent minimisation (:func:`emforge.md.remove_clashes`) restores
   full atoms and removes clashes (paper 000 used FG-MD here).

The map is cropped to the model's bounding box plus :data:`MAP_MARGIN_A` (at least twice the
resolution) so CC and its increments cover the model's neighbourhood, not a whole complex.
Only protein heavy atoms move; other atoms (ligands, waters) are carried over unchanged.

Presets: ``paper`` is paper 000's protocol (Step 2: 30 x 20 x 500 moves, T 2 -> 0.01; Step 3: five
runs of 50 x 30 x 500, T 1 -> 0.001); ``fast`` (the default) is shorter annealing with the same
energy, temperatures and moves; see :data:`PRESETS` and the benchmark in
``benchmarks/results/refine_emrefiner.md`` for what each costs and gains.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from emforge.errors import InputError
from emforge.maps import DensityMap, crop_to_points
from emforge.models import AtomModel
from emforge.refine.emrefiner.atomic import AtomicMoves, atomic_samc
from emforge.refine.emrefiner.energy import TERMS, EMRefinerEnergy, Weights
from emforge.refine.emrefiner.fragments import Fragment, define_fragments
from emforge.refine.emrefiner.samc import AnnealingSchedule, fragment_samc

log = logging.getLogger(__name__)

MAP_MARGIN_A = 10.0
LOCAL_CC_RADIUS_A = 8.0
FRAGMENT_CC_THRESHOLD = 0.05


@dataclass(frozen=True)
class Preset:
    """Annealing lengths of Steps 2 and 3 and the number of Step-3 runs."""

    step2: AnnealingSchedule
    step3: AnnealingSchedule
    n_runs: int
    weights: Weights


#: Density-weighted energy of the ``fast`` preset: with the paper's weights the density term is one
#: to two orders of magnitude weaker than the others as emforge evaluates them (median |w dE| per
#: Step-2 move on adenylate kinase 4AKE -> 1AKE at 6 Å: CC 0.5, restraint 156, bond 104, LJ 61) and
#: SAMC accepts 0-2 % of moves without changing the model; CC x 20000 and restraint x 1 move it.
#: The fast preset's lengths: on the demo (4AKE fitted into the 6 Å map of 1AKE, 214 residues) TM-score
#: 0.684 -> 0.806 / 0.856 / 0.909 with Step 2 of 6 / 12 / 24 repeats and Step 3 of 4 / 8 / 16 (2 runs):
#: sampling still pays at 4x; the preset takes about 3x (a few minutes for 200 residues on 2 cores).
DENSITY_WEIGHTS = Weights(cc=20000.0, restraint=1.0)

PRESETS = {
    "paper": Preset(AnnealingSchedule(30, 20, 500, 2.0, 0.01), AnnealingSchedule(50, 30, 500, 1.0, 0.001), 5,
                    Weights()),
    "fast": Preset(AnnealingSchedule(16, 12, 250, 2.0, 0.01), AnnealingSchedule(12, 12, 400, 1.0, 0.001), 2,
                   DENSITY_WEIGHTS),
}
DEFAULT_PRESET = "fast"


@dataclass
class RefineResult:
    """Refined model, per-temperature trajectory of Steps 2-3, and a summary record."""

    model: AtomModel
    trajectory: pd.DataFrame
    summary: dict


@dataclass
class FragmentSet:
    """Secondary structure, local CC and Step-2 fragments of a model in a map."""

    model: AtomModel  # protein heavy atoms
    ss: np.ndarray  # (R,) H, E or C
    local_cc: np.ndarray  # (R,) per-residue local CC (NaN where undefined)
    fragments: list[Fragment]

    def table(self) -> pd.DataFrame:
        """One row per fragment: residue rows and the chain/number/name of its ends."""
        label = np.array(self.model.residue_labels())
        cols = ["first", "last", "kind", "core_first", "core_last", "left", "right", "left_anchored", "right_anchored"]
        df = pd.DataFrame([asdict(f) for f in self.fragments], columns=cols)
        df.insert(0, "fragment", np.arange(1, len(df) + 1))
        df["first_residue"] = label[df["first"].to_numpy(int)] if len(df) else []
        df["last_residue"] = label[df["last"].to_numpy(int)] if len(df) else []
        df["n_residues"] = df["last"] - df["first"] + 1
        df["mean_local_cc"] = [float(np.nanmean(self.local_cc[a:b + 1])) if np.isfinite(self.local_cc[a:b + 1]).any()
                               else float("nan") for a, b in zip(df["first"], df["last"])]
        return df


def fragments_from_table(table: pd.DataFrame, n_residues: int, source: str | None = None) -> list[Fragment]:
    """Fragments back from :meth:`FragmentSet.table` (checked against the model's residue count)."""
    cols = ["first", "last", "kind", "core_first", "core_last", "left", "right", "left_anchored", "right_anchored"]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputError(f"fragment table lacks column(s) {', '.join(missing)}", source)
    out = []
    for row in table[cols].itertuples(index=False):
        f = Fragment(int(row.first), int(row.last), str(row.kind), int(row.core_first), int(row.core_last),
                     int(row.left), int(row.right), _as_bool(row.left_anchored), _as_bool(row.right_anchored))
        if not (0 <= f.left <= f.first <= f.last <= f.right < n_residues):
            raise InputError(f"fragment {f.first}-{f.last} does not fit a model of {n_residues} residues", source)
        out.append(f)
    return out


def _as_bool(v) -> bool:
    return v if isinstance(v, bool | np.bool_) else str(v).strip().lower() in ("true", "1", "yes")


def find_fragments(model: AtomModel, density_map: DensityMap, resolution_A: float) -> FragmentSet:
    """Step-2 fragments of ``model`` in ``density_map``: SSE runs (3-state DSSP rules) extended over
    neighbouring residues with local CC below :data:`FRAGMENT_CC_THRESHOLD` (8 Å regions)."""
    from emforge.scores import local_cc_per_residue
    from emforge.simulate import simulate_map
    from emforge.sse import assign_secondary_structure, backbone_arrays

    prot = model.without_hydrogens().protein()
    if len(prot) == 0:
        raise InputError("model has no protein atoms to refine")
    if not resolution_A > 0:
        raise InputError(f"resolution must be > 0 Å, got {resolution_A}")
    target = _crop(density_map, prot, resolution_A)
    bb = backbone_arrays(prot)
    ss = assign_secondary_structure(bb, states=3)
    sim = simulate_map(prot, target, resolution_A)
    local_cc = local_cc_per_residue(prot, target, sim, LOCAL_CC_RADIUS_A)["local_cc"].to_numpy()
    return FragmentSet(prot, ss, local_cc, define_fragments(ss, bb.chain_index, local_cc,
                                                            cc_threshold=FRAGMENT_CC_THRESHOLD))


def _crop(density_map: DensityMap, prot: AtomModel, resolution_A: float) -> DensityMap:
    if not float(density_map.data.std()) > 0:
        raise InputError("map has zero variance (every voxel has the same value)")
    return crop_to_points(density_map, prot.coords, max(MAP_MARGIN_A, 2.0 * resolution_A))


def refine_emrefiner(model: AtomModel, density_map: DensityMap, resolution_A: float, *, preset: str = DEFAULT_PRESET,
                     seed: int = 0, weights: Weights | None = None, moves: AtomicMoves | None = None,
                     fragments: list[Fragment] | None = None, relax: bool = True, n_jobs: int | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> RefineResult:
    """Refine ``model`` (already superposed) into ``density_map`` at ``resolution_A`` (Å).

    Parameters
    ----------
    preset
        ``"fast"`` (default) or ``"paper"`` (:data:`PRESETS`): annealing lengths and energy weights.
    weights
        Override the preset's weights of Eq. 2.
    seed
        Seeds every Monte Carlo run (Step 2 with ``seed``, Step-3 run k with ``seed + 1 + k``).
    fragments
        Step-2 fragments (default: :func:`find_fragments`).
    relax
        Finish with the restrained OpenMM minimisation and clash removal (:func:`emforge.md.remove_clashes`;
        needs OpenMM and pdbfixer).
    n_jobs
        Threads for the Step-3 runs (default: one per run, up to the CPUs available); the runs are
        independent and the result does not depend on ``n_jobs``.
    progress
        Called as ``progress(stage, done, total)`` per annealing temperature (Step-3 runs in
        parallel threads report once, at their end).

    Returns
    -------
    RefineResult
        ``model``: input atoms with the protein heavy atoms refined (hydrogens dropped; atoms
        pdbfixer adds for incomplete residues appended to their residues when relaxed).
        ``trajectory``: one row per temperature (stage, run, repeat, temperature, energy, acceptance,
        cc, E_<term>). ``summary``: CC and energy before/after each stage, timings, fragments.
    """
    if preset not in PRESETS:
        raise InputError(f"unknown EM-Refiner preset {preset!r} (choose from {', '.join(PRESETS)})")
    if not resolution_A > 0:
        raise InputError(f"resolution must be > 0 Å, got {resolution_A}")
    p = PRESETS[preset]
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    heavy = model.without_hydrogens()
    is_prot = heavy.is_protein()
    found = find_fragments(heavy, density_map, resolution_A)
    prot, ss = found.model, found.ss
    fragments = found.fragments if fragments is None else fragments
    n_res = len(ss)
    if any(not (0 <= f.left <= f.first <= f.last <= f.right < n_res) for f in fragments):
        raise InputError(f"a fragment lies outside the model's {n_res} residues")
    target = _crop(density_map, prot, resolution_A)
    energy = EMRefinerEnergy.from_model(prot, target, resolution_A, ss, start=prot, weights=weights or p.weights)
    start_terms = energy.terms()
    summary: dict = {"preset": preset, "seed": seed, "resolution_A": float(resolution_A),
                     "n_residues": int(n_res), "n_atoms_refined": int(len(prot)),
                     "n_fragments": len(fragments), "secondary_structure": "".join(ss),
                     "cc_start": energy.cc(), "energy_start": energy.total(),
                     "terms_start": start_terms, "schedule": asdict(p)}
    timings["setup_s"] = time.perf_counter() - t0

    def stage_progress(stage: str):
        return None if progress is None else (lambda done, total: progress(stage, done, total))

    frames = []
    t1 = time.perf_counter()
    if fragments:
        decoys, traj2 = fragment_samc(energy, fragments, p.step2, seed=seed, n_keep=p.n_runs,
                                      progress=stage_progress("step2"))
        frames.append(pd.DataFrame(traj2.rows).assign(stage="step2", run=0))
        starts = [d.coords for d in decoys]
    else:
        log.warning("no helix or strand fragments: Step 2 skipped")
        starts = [energy.coords.copy()]
    summary["cc_step2"] = energy.cc()
    summary["energy_step2"] = energy.total()
    timings["step2_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    runs = starts[:p.n_runs]
    if n_jobs is None:
        n_jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_jobs = max(1, min(int(n_jobs), len(runs)))
    jobs = [(k, xyz, seed + 1 + k) for k, xyz in enumerate(runs)]
    if n_jobs > 1:
        import copy
        from concurrent.futures import ThreadPoolExecutor

        # threads, not processes: the numba kernels release the GIL, and threads need no pickling and
        # no re-import of the caller's __main__ (Snakemake scripts, notebooks); each run has its own energy
        with ThreadPoolExecutor(n_jobs) as pool:
            outcomes = list(pool.map(_step3_run, [(copy.deepcopy(energy), p.step3, moves, xyz, s)
                                                  for _, xyz, s in jobs]))
        if progress is not None:
            progress("step3", len(jobs), len(jobs))
    else:
        outcomes = [_step3_run((energy, p.step3, moves, xyz, s),
                               stage_progress(f"step3 run {k + 1}/{len(jobs)}")) for k, xyz, s in jobs]
    best = None
    move_counts: dict[str, int] = {}
    for k, (decoy, rows, counts) in enumerate(outcomes):
        frames.append(pd.DataFrame(rows).assign(stage="step3", run=k))
        for m, c in counts.items():
            move_counts[m] = move_counts.get(m, 0) + c
        if best is None or decoy.energy < best.energy:
            best = decoy
    energy.coords[:] = best.coords
    energy.refresh()
    summary["cc_step3"] = energy.cc()
    summary["energy_step3"] = energy.total()
    summary["terms_step3"] = energy.terms()
    summary["step3_moves"] = move_counts
    timings["step3_s"] = time.perf_counter() - t2

    refined_heavy = heavy.coords.copy()
    refined_heavy[is_prot] = energy.coords
    out = heavy.with_coords(refined_heavy)
    if relax:
        from emforge.md import remove_clashes

        t3 = time.perf_counter()
        out, rounds = remove_clashes(out, seed=seed)
        summary["relax"] = rounds
        X = _coords_by_key(out, prot)
        summary["cc_final"] = 1.0 - energy.terms(X)["cc"]
        timings["relax_s"] = time.perf_counter() - t3
    else:
        summary["cc_final"] = summary["cc_step3"]
    timings["total_s"] = time.perf_counter() - t0
    summary["timings_s"] = timings
    trajectory = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(trajectory):
        cols = ["stage", "run", "repeat", "temperature", "energy", "acceptance", "cc"] + [f"E_{t}" for t in TERMS]
        trajectory = trajectory[cols]
    log.info("EM-Refiner %s: CC %.4f -> %.4f (Step 2 %.4f, Step 3 %.4f) in %.0f s", preset, summary["cc_start"],
             summary["cc_final"], summary["cc_step2"], summary["cc_step3"], timings["total_s"])
    return RefineResult(out, trajectory, summary)


def _step3_run(job, progress=None):
    """One Step-3 run: (energy, schedule, moves, start coordinates, seed) -> (best decoy, trajectory rows,
    move counts)."""
    energy, schedule, moves, xyz, run_seed = job
    energy.coords[:] = xyz
    energy.refresh()
    decoys, traj, counts = atomic_samc(energy, schedule, seed=run_seed, moves=moves, progress=progress)
    return decoys[0], traj.rows, counts


def _coords_by_key(model: AtomModel, like: AtomModel) -> np.ndarray:
    """(len(like), 3) coordinates of ``like``'s atoms found in ``model`` by chain, residue and name
    (atoms missing from ``model`` keep ``like``'s coordinates)."""
    def keys(m: AtomModel):
        return [f"{c}|{r}|{i}|{a}" for c, r, i, a in zip(m.chain_id, m.res_seq, m.ins_code, m.atom_name)]

    where = {k: n for n, k in enumerate(keys(model))}
    out = like.coords.astype(np.float64).copy()
    for n, k in enumerate(keys(like)):
        j = where.get(k)
        if j is not None:
            out[n] = model.coords[j]
    return out
