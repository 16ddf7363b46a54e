"""Benchmark: speed of a full ``emforge validate`` run, and SMOC/LoQFit against TEMPy on the same inputs.

Protocol: ../shared/BENCHMARKS.md. Target (issue 3): full validation of a ~5,000-atom model in a
200^3 map in < 30 s on 2 cores; SMOC and LoQFit at least 5x faster than TEMPy. One process run:

* the timing case is a real chain from ../shared/data/chains (~5,000 atoms, chosen by the seed) in a
  200^3 map at 1 Å voxels simulated by emforge (kernel "gmm", 3.5 Å) plus seeded Gaussian noise;
* the real cases are the deposited models in their experimental maps (../shared/data/maps);
* for each case: wall time of a cold full validation (first call in the process: numba compile or
  cache load included), of a warm one (best of ``--repeats``) and of each metric family, and, on the
  same model and map, emforge's ``smoc`` and ``loqfit`` against TEMPy's ``SMOC`` and ``LoQFit``.

Run with the peer venv: ``.venv-bench/bin/python benchmarks/validate.py``; writes
``benchmarks/results/validate.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, best_s, geomean, load_average, load_line, tempy_structure, write_markdown  # noqa: E402
from validate_vs_tempy import (  # noqa: E402  (shared TEMPy plumbing and header lines of the fit-score benchmark)
    git_commit,
    machine,
    quiet,
    synthetic_case,
    tempy_map,
    versions,
)

from emforge.local_fit import loqfit, smoc  # noqa: E402
from emforge.maps import read_map  # noqa: E402
from emforge.models import read_model  # noqa: E402
from emforge.validate import ValidationSettings, validate_structure  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "validate.md"
REAL_CASES = (  # (name, map, model, published resolution in Å; see ../shared/data/README.md)
    ("EMD-5778 (TRPV1, 3J5P chain A)", "maps/emd_5778/emd_5778_segment.mrc.gz",
     "maps/emd_5778/deposited_segment.pdb", 3.3),
    ("EMD-2513 (deposited chain)", "maps/emd_2513/emd_2513_segment.mrc.gz", "maps/emd_2513/deposited_segment.pdb", 3.4),
    ("EMD-5925 (97 residues)", "maps/emd_5925/emd_5925_segment.mrc.gz", "maps/emd_5925/deposited_segment.pdb", 3.7),
    ("EMD-5168 (F-actin 3MFP subunit)", "maps/emd_5168/emd_5168.map.gz", "maps/emd_5168/3mfp.pdb", 6.6),
)


def timed_validation(model, m, R, settings):
    """(total seconds, {family: seconds}) of one validate_structure call."""
    marks = []
    t0 = time.perf_counter()
    validate_structure(model, m, R, settings=settings, progress=lambda what: marks.append((what, time.perf_counter())))
    total = time.perf_counter() - t0
    families, last = {}, t0
    for what, t in marks:
        families[what] = t - last
        last = t
    return total, families


def run_case(name, model, m, R, repeats, settings, with_tempy=True):
    from TEMPy.protein.scoring_functions import ScoringFunctions

    row = {"case": name, "atoms": len(model), "residues": model.n_residues,
           "grid": "x".join(str(n) for n in m.shape[::-1]), "R": R}
    row["cold_s"], _ = timed_validation(model, m, R, settings)
    warm = [timed_validation(model, m, R, settings) for _ in range(max(repeats, 1))]
    row["warm_s"], row["families"] = min(warm, key=lambda x: x[0])
    row["t_smoc"], _ = best_s(repeats, smoc, model, m, R)
    row["t_loqfit"], _ = best_s(repeats, loqfit, model, m, R)
    if with_tempy:
        sf, st = ScoringFunctions(), tempy_structure(model)
        row["t_smoc_tempy"], _ = best_s(1, quiet, sf.SMOC, tempy_map(m), R, st, fragment_score=False)
        row["t_loqfit_tempy"], _ = best_s(1, quiet, sf.LoQFit, st, tempy_map(m), R, verbose=False)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    settings = ValidationSettings(seed=args.seed)
    load0 = load_average()

    rows = []
    name, model, m, R = synthetic_case(args.seed)
    rows.append(run_case(f"{name} in a 200^3 map (simulated, gmm kernel, {R} Å, noise)", model, m, R,
                         args.repeats, settings))
    print(rows[-1], flush=True)
    for case, map_rel, model_rel, R in REAL_CASES:
        rows.append(run_case(case, read_model(DATA / model_rel), read_map(DATA / map_rel), R, args.repeats, settings))
        print(rows[-1], flush=True)

    def r(a, b):
        return b / a if a > 0 else float("nan")

    lines = [
        "# Full validation speed, and SMOC/LoQFit against TEMPy",
        "",
        f"- command: `.venv-bench/bin/python benchmarks/validate.py --seed {args.seed} --repeats {args.repeats}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- emforge commit: {git_commit()}",
        f"- versions: {versions()}",
        f"- seed: {args.seed} (choice of the timing chain and its noise)",
        load_line(load0),
        "- full validation = `validate_structure` with every family (map fit + FSC, local fit: local CC, SMOC, "
        "SMOCf, LoQFit, decoupled local PCC; Q-score; geometry incl. riding hydrogens and clashscore); "
        "`cold` = first call in the process (numba compile or cache load included), `warm` = best of the repeats",
        "- SMOC/LoQFit: emforge best of the repeats after the validation warm-up; TEMPy 2.1.2 `ScoringFunctions.SMOC` "
        "(fragment_score=False) and `LoQFit`, one call each, same model and map",
        "",
        "| case | atoms | grid (x,y,z) | R Å | full validation cold s | warm s | slowest family (s) | SMOC ours s | "
        "SMOC TEMPy s | ratio | LoQFit ours s | LoQFit TEMPy s | ratio |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        slow = max(row["families"].items(), key=lambda kv: kv[1])
        lines.append(
            f"| {row['case']} | {row['atoms']} | {row['grid']} | {row['R']:g} | {row['cold_s']:.1f} | "
            f"{row['warm_s']:.1f} | {slow[0]} ({slow[1]:.1f}) | {row['t_smoc']:.2f} | {row['t_smoc_tempy']:.2f} | "
            f"{r(row['t_smoc'], row['t_smoc_tempy']):.1f} | {row['t_loqfit']:.2f} | {row['t_loqfit_tempy']:.2f} | "
            f"{r(row['t_loqfit'], row['t_loqfit_tempy']):.1f} |")
    smoc_ratios = [r(x["t_smoc"], x["t_smoc_tempy"]) for x in rows]
    loq_ratios = [r(x["t_loqfit"], x["t_loqfit_tempy"]) for x in rows]
    big = rows[0]
    lines += [
        f"| **summary** | | | | 200^3 case: {big['cold_s']:.1f} | {big['warm_s']:.1f} "
        f"(target < 30 s: {'met' if big['cold_s'] < 30 else 'NOT met'}) | | | | geo-mean {geomean(smoc_ratios):.1f}, "
        f"min {min(smoc_ratios):.1f} | | | geo-mean {geomean(loq_ratios):.1f}, min {min(loq_ratios):.1f} |",
        "",
        "## Time per metric family, warm (s)",
        "",
    ]
    families = list(rows[0]["families"])
    lines.append("| case | " + " | ".join(families) + " |")
    lines.append("|---|" + "---:|" * len(families))
    for row in rows:
        cells = " | ".join(f"{row['families'].get(f, np.nan):.2f}" for f in families)
        lines.append(f"| {row['case']} | {cells} |")
    write_markdown(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
