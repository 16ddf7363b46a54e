"""Benchmark: TEMPy-ReFF refinement (paper 001) in emforge, fast and paper protocols, vs servalcat and Coot.

Protocol: ../shared/BENCHMARKS.md. Targets (issue 6): on experimental maps the refined CCC >= the
deposited model's CCC with no new clashes; ensemble-map CCC above the single model's; the fast
protocol >= 10x faster than the paper protocol at equal CCC (within 0.01); TM-score recovery from
displaced starts in maps of position-dependent resolution.

Sets (one process run, resumable: finished rows are kept in ``--checkpoint``):

* ``experimental``: the deposited models in their experimental maps (../shared/data/maps, published
  resolutions). Start = deposited model. Methods: emforge fast, emforge paper (only the cases in
  ``--paper-cases``: 2000 Langevin steps of 0.1 fs per iteration, hours on 2 cores; capped at
  ``--paper-max-iterations``), servalcat, Coot. The emforge-fast model also gets an ensemble
  (``generate_ensemble``, minimisation only, at most ``--ensemble-members``).
* ``displaced``: start = another conformation or a normal-mode decoy superposed on the target (the
  cases and decoys of benchmarks/refine_emrefiner.py), map simulated from the target with two local
  resolutions: the C-alpha atoms split into two spatial groups (seeded k-means), the atoms of one
  group blurred as at ``LOCAL_RESOLUTIONS_A[0]``, the other at ``[1]`` (emrefiner kernel widths), the
  refinement told the mean resolution.

Metrics: CCC = :func:`emforge.scores.pearson_cc` of the model's map (kernel "gmm", global width
0.225 R, the CCC emforge's refinement optimises and stops on) and the experimental map over the
voxels within the resolution's mask radius of the starting model; TM-score / RMSD to the target
(displaced set); geometry by ``emforge validate`` (serious clashes with riding H, Ramachandran and
rotamer outliers, MolProbity score); wall time of the call (peers: the subprocess).

Run with the peer venv: ``.venv-bench/bin/python benchmarks/refine_gmm.py --seed 0``; writes
``benchmarks/results/refine_gmm.md`` and the checkpoint ``benchmarks/results/refine_gmm.tsv``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refine_emrefiner as ref  # noqa: E402  (cases, decoys, peers, geometry metrics)
from _common import DATA, git_commit, load_average, load_line, machine, versions, write_markdown  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "refine_gmm.md"
EXPERIMENTAL = (  # (name, map, model, published resolution in Å)
    ("EMD-5925 (97 residues)", "maps/emd_5925/emd_5925_segment.mrc.gz", "maps/emd_5925/deposited_segment.pdb", 3.7),
    ("EMD-2513 (deposited chain)", "maps/emd_2513/emd_2513_segment.mrc.gz", "maps/emd_2513/deposited_segment.pdb", 3.4),
    ("EMD-5778 (TRPV1, 3J5P chain A)", "maps/emd_5778/emd_5778_segment.mrc.gz",
     "maps/emd_5778/deposited_segment.pdb", 3.3),
)
DISPLACED = ("adk", "3V6Z", "3G6D", "2cfx_D", "4j38_A")  # substrings of refine_emrefiner case names
LOCAL_RESOLUTIONS_A = (4.0, 7.0)
METHODS = ("emforge-fast", "emforge-paper", "servalcat", "coot")
FIELDS = ["seed", "set", "case", "method", "status", "n_res", "resolution_A", "ccc_before", "ccc_after",
          "tm_before", "tm_after", "rmsd_before", "rmsd_after", "clashes_before", "clashes_after",
          "rama_out_after", "rot_out_after", "molprobity_before", "molprobity_after", "time_s",
          "ens_members", "ens_ccc", "ens_single_ccc", "ens_time_s", "note"]


class Case(ref.Case):
    pass


def ccc(model, case) -> float:
    from emforge.scores import pearson_cc
    from emforge.simulate import simulate_map

    sim = simulate_map(model, case.density, case.resolution, "gmm", sigma_A=0.225 * case.resolution)
    return float(pearson_cc(sim.data, case.density.data, case.mask))


def metrics(model, case) -> dict:
    from emforge.compare import compare_models
    from emforge.validate import ValidationSettings, validate_structure

    out = {"ccc": ccc(model, case)}
    if case.target is not None:
        cmp = compare_models(model, case.target)
        out.update(tm=float(cmp["tm_score"]), rmsd=float(cmp["rmsd_A"]))
    geo = validate_structure(model, settings=ValidationSettings(families=("geometry",))).summary["geometry"]
    out.update(clashes=geo.get("n_clashes"), rama_out=geo.get("rama_outlier_pct"),
               rot_out=geo.get("rotamer_outlier_pct"), molprobity=geo.get("molprobity_score"))
    return out


def experimental_cases() -> list:
    from emforge.maps import read_map
    from emforge.masks import model_mask
    from emforge.models import read_model
    from emforge.scores import default_mask_radius_A

    cases = []
    for name, map_path, model_path, R in EXPERIMENTAL:
        model = read_model(DATA / model_path).protein().without_hydrogens()
        c = Case(name, "experimental", model_path, model_path, model, None, 0, R, read_map(DATA / map_path))
        c.mask = model_mask(model, c.density, default_mask_radius_A(R))
        cases.append(c)
    return cases


def displaced_cases(seed: int) -> list:
    from scipy.cluster.vq import kmeans2

    from emforge.geometry.covalent import residue_rows
    from emforge.masks import model_mask
    from emforge.scores import default_mask_radius_A
    from emforge.simulate import kernel_parameters, simulate_map

    specs = [s for s in ref.case_specs(seed, 5, 4) if any(k in s[0] for k in DISPLACED)]
    cases = []
    for spec in specs:
        c = ref.prepare(spec, seed, with_fit=False)
        rng = np.random.default_rng(c.seed)
        target = c.target
        ca_rows = np.flatnonzero(target.atom_name == "CA")
        _, group = kmeans2(target.coords[ca_rows], 2, seed=rng, minit="++")
        res = residue_rows(target)
        group_of_res = np.zeros(int(res.max()) + 1, dtype=int)
        group_of_res[res[ca_rows]] = group
        atom_group = group_of_res[res]
        sig = np.where(atom_group == 0, kernel_parameters(target, LOCAL_RESOLUTIONS_A[0], "emrefiner")[1],
                       kernel_parameters(target, LOCAL_RESOLUTIONS_A[1], "emrefiner")[1])
        R = float(np.mean(LOCAL_RESOLUTIONS_A))
        c.resolution = R
        c.density = simulate_map(target, None, R, "emrefiner", voxel_size_A=1.5, margin_A=10.0, sigma_A=sig)
        d = Case(c.name, "displaced", c.start_file, c.target_file, c.starts["ideal"], target, c.seed, R, c.density,
                 info=c.info + f"; local resolutions {LOCAL_RESOLUTIONS_A[0]:g} / {LOCAL_RESOLUTIONS_A[1]:g} Å "
                 f"({int((group == 0).sum())} / {int((group == 1).sum())} residues)")
        d.mask = model_mask(d.start, d.density, default_mask_radius_A(R))
        cases.append(d)
    return cases


def trajectory_logger(path: Path, seed: int, case, method: str):
    """A ``refine_gmm`` progress callback appending (iteration, CCC, elapsed s) rows to ``path`` as
    they happen, so that a run cut short (the paper protocol takes minutes per iteration on 2
    cores) still leaves its trajectory; earlier rows of the same run are dropped first."""
    import pandas as pd

    cols = ["seed", "set", "case", "method", "iteration", "ccc", "elapsed_s"]
    if path.is_file():
        old = pd.read_csv(path, sep="\t", dtype={"case": str})
        old = old[~((old["seed"] == seed) & (old["set"] == case.set) & (old["case"] == case.name)
                    & (old["method"] == method))]
        old.to_csv(path, sep="\t", index=False)
    else:
        path.write_text("\t".join(cols) + "\n")
    t0 = time.perf_counter()

    def log_iteration(iteration: int, _n_max: int, ccc_value: float) -> None:
        with path.open("a") as fh:
            fh.write(f"{seed}\t{case.set}\t{case.name}\t{method}\t{iteration}\t{ccc_value:.5f}\t"
                     f"{time.perf_counter() - t0:.1f}\n")

    return log_iteration


def run_method(method: str, case, args) -> tuple[object, str, dict]:
    from emforge.refine.reff import refine_gmm

    if method.startswith("emforge"):
        protocol = method.split("-")[1]
        cap = args.paper_max_iterations if protocol == "paper" else None
        progress = trajectory_logger(args.out.with_name(args.out.stem + "_trajectories.tsv"), args.seed, case, method)
        res = refine_gmm(case.start, case.density, case.resolution, protocol=protocol, max_iterations=cap, seed=0,
                         progress=progress)
        s = res.summary
        note = (f"CCC {s['ccc_start']:.3f} -> {s['ccc_final']:.3f}, best iteration {s['best_iteration']} of "
                f"{s['n_iterations']}, mean B {s['mean_b_A2']:.0f} Å^2, "
                f"heavy-atom shift {s['heavy_atom_rmsd_A']:.2f} Å")
        return res.model, note, s
    model, note = ref.RUNNERS[method](case.start, case, args)
    return model, note, {}


def ensemble_of(model, case, args) -> dict:
    from emforge.refine.ensemble import generate_ensemble

    t0 = time.perf_counter()
    e = generate_ensemble(model, case.density, case.resolution, max_members=args.ensemble_members, md_steps=0,
                          mask=case.mask, seed=0)
    return {"ens_members": e.summary["n_members"], "ens_ccc": e.summary["ensemble_ccc"],
            "ens_single_ccc": e.summary["single_model_ccc"], "ens_time_s": time.perf_counter() - t0}


def num(row: dict | None, key: str) -> float:
    if not row:
        return math.nan
    try:
        return float(row.get(key, "")) if row.get(key, "") not in ("", None) else math.nan
    except ValueError:
        return math.nan


def fmt(x, d: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def report(args, cases, rows, load0) -> str:
    lines = [
        "# TEMPy-ReFF refinement (paper 001): emforge fast and paper protocols vs servalcat and Coot",
        "",
        f"- command: `.venv-bench/bin/python benchmarks/refine_gmm.py --seed {args.seed}`"
        + (f" --paper-cases '{args.paper_cases}'" if args.paper_cases else ""),
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {machine()}",
        f"- emforge commit: {git_commit(['src', 'benchmarks'], ' (with uncommitted changes)')}",
        f"- versions: {versions(ref.VERSIONS)}",
        load_line(load0),
        "- emforge: `refine_gmm(start, map, R, protocol, seed=0)` (k_gmm 1e4 kJ/mol, 25 B-factor iterations first); "
        f"paper protocol capped at {args.paper_max_iterations} iterations; ensemble: "
        f"`generate_ensemble(refined, map, R, max_members={args.ensemble_members}, md_steps=0, mask=start mask)` "
        "(ensemble and single-model CCC over the same mask as the CCC columns)",
        "- servalcat / Coot: as in benchmarks/refine_emrefiner.py (10 cycles; 1000 cycles at Coot's map weight)",
        "- CCC: model map (gmm kernel, sigma 0.225 R) vs map over the starting model's mask (the CCC the "
        "refinement stops on); clashes: serious clashes with riding H (`emforge validate`)",
        "",
        "## Results per case",
        "",
        "| set | case | R Å | method | CCC before -> after | TM before -> after | clashes after (before) | "
        "Rama out % | rot out % | MolProbity after (before) | time s | ensemble CCC (members) vs single | note |",
        "|---|---|---:|---|---|---|---|---:|---:|---|---:|---|---|",
    ]
    for c in cases:
        for m in METHODS:
            r = rows.get((c.set, c.name, m))
            if not r:
                continue
            if r["status"] != "ok":
                lines.append(f"| {c.set} | {c.name} | {c.resolution:g} | {m} | failed |  |  |  |  |  |  |  | "
                             f"{r.get('note', '')[:200]} |")
                continue
            tm = (f"{fmt(num(r, 'tm_before'))} -> {fmt(num(r, 'tm_after'))}" if c.set == "displaced" else "-")
            ens = (f"{fmt(num(r, 'ens_ccc'))} ({fmt(num(r, 'ens_members'), 0)}) vs {fmt(num(r, 'ens_single_ccc'))}"
                   if r.get("ens_ccc") else "")
            lines.append(
                f"| {c.set} | {c.name} | {c.resolution:g} | {m} | {fmt(num(r, 'ccc_before'))} -> "
                f"{fmt(num(r, 'ccc_after'))} | {tm} | {fmt(num(r, 'clashes_after'), 0)} "
                f"({fmt(num(r, 'clashes_before'), 0)}) | {fmt(num(r, 'rama_out_after'), 1)} | "
                f"{fmt(num(r, 'rot_out_after'), 1)} | {fmt(num(r, 'molprobity_after'), 2)} "
                f"({fmt(num(r, 'molprobity_before'), 2)}) | {fmt(num(r, 'time_s'), 0)} | {ens} | {r.get('note', '')} |")
    lines += ["", "## Summary", "",
              "| set | method | cases | mean CCC before -> after | cases CCC >= before | new clashes (cases) | "
              "mean TM before -> after | median time s |", "|---|---|---:|---|---:|---:|---|---:|"]
    for set_ in ("experimental", "displaced"):
        names = [c.name for c in cases if c.set == set_]
        for m in METHODS:
            rs = [rows.get((set_, n, m)) for n in names]
            rs = [r for r in rs if r and r["status"] == "ok"]
            if not rs:
                continue
            cb = np.array([num(r, "ccc_before") for r in rs])
            ca = np.array([num(r, "ccc_after") for r in rs])
            new = sum(num(r, "clashes_after") > num(r, "clashes_before") for r in rs)
            tm = (f"{np.nanmean([num(r, 'tm_before') for r in rs]):.3f} -> "
                  f"{np.nanmean([num(r, 'tm_after') for r in rs]):.3f}" if set_ == "displaced" else "-")
            lines.append(f"| {set_} | {m} | {len(rs)} | {cb.mean():.3f} -> {ca.mean():.3f} | {int((ca >= cb).sum())} | "
                         f"{new} | {tm} | {np.median([num(r, 'time_s') for r in rs]):.0f} |")
    lines += ["", "## Targets", ""]
    exp = [c.name for c in cases if c.set == "experimental"]
    fast = [rows.get(("experimental", n, "emforge-fast")) for n in exp]
    fast = [r for r in fast if r and r["status"] == "ok"]
    if fast:
        ok = all(num(r, "ccc_after") >= num(r, "ccc_before") for r in fast)
        new = [r["case"] for r in fast if num(r, "clashes_after") > num(r, "clashes_before")]
        lines.append(f"- refined CCC >= deposited CCC, experimental maps (fast): {'met' if ok else 'NOT met'} "
                     f"({sum(num(r, 'ccc_after') >= num(r, 'ccc_before') for r in fast)} of {len(fast)}); "
                     f"new clashes: {'none' if not new else ', '.join(new)}")
        ens = [r for r in fast if r.get("ens_ccc")]
        if ens:
            better = sum(num(r, "ens_ccc") > num(r, "ens_single_ccc") for r in ens)
            lines.append(f"- ensemble-map CCC above the single refined model's: {better} of {len(ens)} "
                         f"({'met' if better == len(ens) else 'NOT met'})")
    lines += speed_lines(args, exp)
    for n in exp:
        f_, p_ = rows.get(("experimental", n, "emforge-fast")), rows.get(("experimental", n, "emforge-paper"))
        if f_ and p_ and f_["status"] == p_["status"] == "ok":
            ratio = num(p_, "time_s") / num(f_, "time_s")
            d = num(f_, "ccc_after") - num(p_, "ccc_after")
            lines.append(f"- fast vs paper protocol on {n}: {ratio:.1f}x faster, CCC {num(f_, 'ccc_after'):.3f} vs "
                         f"{num(p_, 'ccc_after'):.3f} (difference {d:+.3f}; target >= 10x at |difference| <= 0.01: "
                         f"{'met' if ratio >= 10 and d >= -0.01 else 'NOT met'})")
    lines.append("- paper 001 reference: 229 CERES maps 2.1-4.9 Å, TEMPy-ReFF CCC similar to CERES/Phenix "
                 "re-refinement")
    return "\n".join(lines) + "\n"


def speed_lines(args, names) -> list[str]:
    """Fast vs paper protocol from the per-iteration trajectories (also of a paper run cut short):
    the time each protocol needs to come within 0.01 of the fast protocol's best CCC."""
    import pandas as pd

    path = args.out.with_name(args.out.stem + "_trajectories.tsv")
    if not path.is_file():
        return []
    tr = pd.read_csv(path, sep="\t", dtype={"case": str})
    tr = tr[tr["seed"] == args.seed]
    out = []
    for n in names:
        f = tr[(tr["case"] == n) & (tr["method"] == "emforge-fast")]
        p = tr[(tr["case"] == n) & (tr["method"] == "emforge-paper")]
        if f.empty or p.empty:
            continue
        goal = float(f["ccc"].max()) - 0.01
        t_fast = float(f.loc[f["ccc"] >= goal, "elapsed_s"].iloc[0])
        reached = p[p["ccc"] >= goal]
        p_best = float(p["ccc"].max())
        head = (f"- fast vs paper protocol on {n} (per-iteration trajectories, {path.name}): fast best CCC "
                f"{goal + 0.01:.3f}, within 0.01 of it after {t_fast:.0f} s (iteration "
                f"{int(f.loc[f['ccc'] >= goal, 'iteration'].iloc[0])}); paper ")
        if reached.empty:
            out.append(head + f"did not reach {goal:.3f} in {len(p)} iterations / {p['elapsed_s'].max():.0f} s "
                       f"(best {p_best:.3f}): >= {p['elapsed_s'].max() / t_fast:.0f}x")
        else:
            t_p = float(reached["elapsed_s"].iloc[0])
            out.append(head + f"after {t_p:.0f} s (iteration {int(reached['iteration'].iloc[0])}; best "
                       f"{p_best:.3f} over {len(p)} iterations / {p['elapsed_s'].max():.0f} s): {t_p / t_fast:.0f}x "
                       f"(target >= 10x: {'met' if t_p / t_fast >= 10 else 'NOT met'})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default="experimental,displaced")
    ap.add_argument("--methods", default="emforge-fast,servalcat,coot,emforge-paper")
    ap.add_argument("--paper-cases", default="EMD-5925",
                    help="comma-separated substrings of cases for the paper protocol")
    ap.add_argument("--paper-max-iterations", type=int, default=40)
    ap.add_argument("--ensemble-members", type=int, default=10)
    ap.add_argument("--servalcat-cycles", type=int, default=10)
    ap.add_argument("--coot-cycles", type=int, default=1000)
    ap.add_argument("--coot-weight", type=float, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    ckpt = args.out.with_suffix(".tsv")
    rows = ref.read_checkpoint(ckpt, args.seed, key=("set", "case", "method"))
    load0 = load_average()
    cases = []
    if "experimental" in args.sets:
        cases += experimental_cases()
    if "displaced" in args.sets:
        cases += displaced_cases(args.seed)
    methods = [m for m in args.methods.split(",") if m]
    paper_keys = [k for k in args.paper_cases.split(",") if k]
    for c in cases:
        before = None
        for m in methods:
            if m == "emforge-paper" and not (c.set == "experimental" and any(k in c.name for k in paper_keys)):
                continue
            key = (c.set, c.name, m)
            if rows.get(key, {}).get("status") == "ok":
                continue
            before = before or metrics(c.start, c)
            row = {"seed": args.seed, "set": c.set, "case": c.name, "method": m, "n_res": c.start.n_residues,
                   "resolution_A": c.resolution, "ccc_before": before["ccc"], "tm_before": before.get("tm"),
                   "rmsd_before": before.get("rmsd"), "clashes_before": before["clashes"],
                   "molprobity_before": before["molprobity"]}
            print(f"{c.name} [{c.set}] {m}: start CCC {before['ccc']:.3f}", flush=True)
            try:
                t0 = time.perf_counter()
                model, note, _ = run_method(m, c, args)
                row["time_s"] = time.perf_counter() - t0
                after = metrics(model, c)
                row.update(status="ok", note=note, ccc_after=after["ccc"], tm_after=after.get("tm"),
                           rmsd_after=after.get("rmsd"), clashes_after=after["clashes"],
                           rama_out_after=after["rama_out"], rot_out_after=after["rot_out"],
                           molprobity_after=after["molprobity"])
                if m == "emforge-fast" and c.set == "experimental":
                    row.update(ensemble_of(model, c, args))
            except Exception as e:  # noqa: BLE001 - a failed run is a row, not a crash of the benchmark
                traceback.print_exc()
                row.update(status="failed", note=f"{type(e).__name__}: {e}"[:300])
            rows[key] = row
            ref.write_checkpoint(ckpt, rows, FIELDS)
            print(f"    {row['status']}: CCC -> {num(row, 'ccc_after'):.3f}, clashes {row.get('clashes_after')}, "
                  f"{num(row, 'time_s'):.0f} s", flush=True)
            write_markdown(args.out, report(args, cases, rows, load0))
    write_markdown(args.out, report(args, cases, rows, load0))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--coot-worker":
        sys.exit(ref.coot_worker(sys.argv[2:]))
    sys.exit(main())
