"""Benchmark: cost of the AMBER14 + GBn2 system in TEMPy-ReFF with and without a nonbonded cutoff.

GBn2 exists in OpenMM only as a CustomGBForce; without a cutoff its O(N^2) sums dominate every
refinement iteration. For each deposited chain (../shared/data/maps) this script builds the
system of ``emforge.refine.reff`` (pdbfixer-completed, hydrogens) at each cutoff and times 30
L-BFGS iterations and 200 Langevin steps of 0.1 fs from the same minimised start, and runs the fast
refinement of the smallest case at each cutoff to show the result does not change (CCC, clashes).

Run: ``.venv-bench/bin/python benchmarks/gmm_cutoff.py``; writes ``benchmarks/results/gmm_cutoff.md``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, git_commit, load_average, load_line, machine, versions, write_markdown  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "gmm_cutoff.md"
CASES = (
    ("EMD-5925", "maps/emd_5925/deposited_segment.pdb"),
    ("EMD-2513", "maps/emd_2513/deposited_segment.pdb"),
)
CUTOFFS_A = (None, 20.0, 12.0)
LBFGS_ITERATIONS = 30
MD_STEPS = 200


def time_system(sp, cutoff_A) -> tuple[float, float]:
    from emforge import md

    mm = md._openmm()
    unit = mm.unit
    system = md.build_system(sp.comp.topology, solvent="gbn2", nonbonded_cutoff_A=cutoff_A)
    integrator = mm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 1e-4 * unit.picosecond)
    integrator.setRandomNumberSeed(1)
    context = mm.Context(system, integrator, sp.platform)
    context.setPositions(sp.comp.positions_A * md.NM_PER_A)
    t0 = time.perf_counter()
    mm.LocalEnergyMinimizer.minimize(context, 1.0, LBFGS_ITERATIONS)
    t_min = time.perf_counter() - t0
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    t0 = time.perf_counter()
    integrator.step(MD_STEPS)
    return t_min, time.perf_counter() - t0


def main() -> int:
    import refine_gmm as bench

    from emforge.models import read_model
    from emforge.refine.reff import prepare_protein, refine_gmm

    load0 = load_average()
    lines = ["# GBn2 with and without a nonbonded cutoff (TEMPy-ReFF's force field)", "",
             "- command: `.venv-bench/bin/python benchmarks/gmm_cutoff.py`",
             f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {machine()}",
             f"- emforge commit: {git_commit(['src', 'benchmarks'], ' (with uncommitted changes)')}",
             f"- versions: {versions(['emforge', 'openmm', 'pdbfixer', 'numpy'])}", "",
             f"| chain | atoms (with H) | cutoff Å | {LBFGS_ITERATIONS} L-BFGS iterations s | "
             f"{MD_STEPS} Langevin steps s | ms per step |", "|---|---:|---|---:|---:|---:|"]
    for name, path in CASES:
        sp = prepare_protein(read_model(DATA / path))
        n = sp.comp.topology.getNumAtoms()
        for cut in CUTOFFS_A:
            t_min, t_md = time_system(sp, cut)
            print(name, cut, round(t_min, 1), round(t_md, 1), flush=True)
            lines.append(f"| {name} | {n} | {'none' if cut is None else f'{cut:g}'} | {t_min:.1f} | {t_md:.1f} | "
                         f"{1000 * t_md / MD_STEPS:.0f} |")
    lines += ["", "## Fast refinement of EMD-5925 at each cutoff", "",
              "| cutoff Å | CCC before -> after | clashes after | MolProbity after | iterations | time s |",
              "|---|---|---:|---:|---:|---:|"]
    case = bench.experimental_cases()[0]
    for cut in CUTOFFS_A:
        t0 = time.perf_counter()
        res = refine_gmm(case.start, case.density, case.resolution, protocol="fast", nonbonded_cutoff_A=cut, seed=0)
        secs = time.perf_counter() - t0
        m = bench.metrics(res.model, case)
        label = "none" if cut is None else f"{cut:g}"
        lines.append(f"| {label} | {bench.ccc(case.start, case):.3f} -> {m['ccc']:.3f} | {m['clashes']} | "
                     f"{m['molprobity']:.2f} | {res.summary['n_iterations']} | {secs:.0f} |")
    lines += ["", load_line(load0)]
    write_markdown(OUT, "\n".join(lines) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
