"""Benchmark: C-alpha prediction (CR-I-TASSER, paper 003): the CNN vs the paper's naive baseline.

Cases
- ``cnn_val``: chains of the clust40 validation split (never trained on; a seeded sample), one map per
  resolution band 2-5 / 5-10 / 10-15 Å simulated by :func:`emforge.cnn.data.simulate_noisy_map`
  (paper 003's Eq. 2 kernel, per-atom B blur, correlated noise at SNR 1-10: the training
  distribution), each map from its own seed.
- ``experimental``: EMD-5925, EMD-2513, EMD-5778 segments and the EMD-5168 F-actin subunit with their
  deposited models; each map is cut to the model's box + 6 Å, so that neighbouring chains stay out.

Methods (both pick peaks with :func:`emforge.cnn.peaks.pick_peaks`, 3.3 Å exclusion, sub-voxel refinement)
- ``cnn``: the shipped network's probability; at least L, up to 1.2 L peaks above 0.9 (paper 003);
- ``naive``: the raw map's density, exactly L peaks (paper 003's baseline: greedy highest density).
L is the number of C-alphas of the chain. Metrics: CRscore (Eq. 1, d0 of the chain length), the fraction
of native C-alphas with a predicted one within 3 Å, the RMSD of those pairs, peaks picked, seconds.

Speed: the probability and peaks of a 200^3-voxel map on the network's 1.5 Å grid (a 300 Å box) on
the CPU, whole-map and at two tile sizes, each in a fresh process with its peak memory (target:
< 2 min on 2 cores).

Run: ``.venv/bin/python benchmarks/cnn.py [--chains 24] [--seed 0] [--parts accuracy,speed]``; writes
``benchmarks/results/cnn.md`` (``--parts speed`` alone replaces the speed section of an existing table, so
the timing can run on a quiet machine after the accuracy part).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, git_commit, load_average, load_line, machine, versions, write_markdown  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "cnn.md"
BANDS_A = ((2.0, 5.0), (5.0, 10.0), (10.0, 15.0))
EXPERIMENTAL = (  # (name, map, deposited model, published resolution Å)
    ("EMD-5925 (97 residues)", "maps/emd_5925/emd_5925_segment.mrc.gz", "maps/emd_5925/deposited_segment.pdb", 3.7),
    ("EMD-2513 (deposited chain)", "maps/emd_2513/emd_2513_segment.mrc.gz", "maps/emd_2513/deposited_segment.pdb",
     3.4),
    ("EMD-5778 (TRPV1, 3J5P chain A)", "maps/emd_5778/emd_5778_segment.mrc.gz",
     "maps/emd_5778/deposited_segment.pdb", 3.3),
    ("EMD-5168 (F-actin subunit, 3MFP)", "maps/emd_5168/emd_5168_monomer.mrc.gz", "maps/emd_5168/3mfp.pdb", 6.6),
)
CROP_MARGIN_A = 6.0
TARGETS = {(2.0, 5.0): 0.95, (5.0, 10.0): 0.85}
SPEED_EDGE_VOX = 200
SPEED_TILES = (96, 128, None)


def score(xyz: np.ndarray, native: np.ndarray) -> dict:
    from emforge.cnn.predict import calpha_scores

    s = calpha_scores(xyz, native, match_distance_A=3.0)
    return {"crscore": s["crscore"], "matched": s["matched_fraction"], "rmsd": s["matched_rmsd_A"],
            "n_picked": len(xyz)}


def run_case(density, native: np.ndarray, net) -> dict[str, dict]:
    from emforge.cnn.infer import predict_probability
    from emforge.cnn.peaks import pick_peaks

    n = len(native)
    out = {}
    t0 = time.perf_counter()
    prob = predict_probability(density, net, device="cpu")
    peaks = pick_peaks(prob, n_min=n)
    out["cnn"] = {**score(peaks.xyz_A, native), "time_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    peaks = pick_peaks(density, n_min=n, n_max=n, threshold=np.inf)
    out["naive"] = {**score(peaks.xyz_A, native), "time_s": time.perf_counter() - t0}
    return out


def crop_to_model(density, coords: np.ndarray):
    from emforge.maps import crop

    lo = np.floor(density.world_to_index(coords.min(axis=0) - CROP_MARGIN_A)).astype(int)
    hi = np.ceil(density.world_to_index(coords.max(axis=0) + CROP_MARGIN_A)).astype(int) + 1
    return crop(density, lo, hi - lo)


def _timed_prediction(weights: str, tile_vox: int | None, edge: int) -> dict:
    """In a fresh process: predict_probability of an edge^3 map on the 1.5 Å grid (seconds by stage, peak RSS)."""
    import resource

    import torch

    from emforge.cnn.features import VOXEL_SIZE_A, input_channels, resample
    from emforge.cnn.infer import _axis_windows, predict_grid
    from emforge.cnn.peaks import pick_peaks
    from emforge.cnn.train import load_weights
    from emforge.maps import DensityMap

    net = load_weights(weights)
    rng = np.random.default_rng(0)
    density = DensityMap(rng.standard_normal((edge,) * 3).astype(np.float32), VOXEL_SIZE_A, np.zeros(3))
    t0 = time.perf_counter()
    work = resample(density, VOXEL_SIZE_A)
    channels = input_channels(work.data, net.in_channels)
    t1 = time.perf_counter()
    prob = predict_grid(channels, net, tile_vox=tile_vox, device="cpu")
    t2 = time.perf_counter()
    pick_peaks(work.with_data(prob), n_min=0)
    t3 = time.perf_counter()
    per_axis = [len(_axis_windows(n, tile_vox, net.halo_vox)) for n in prob.shape]
    evaluated = np.prod([n + 2 * net.halo_vox * (k - 1) for n, k in zip(prob.shape, per_axis)])
    return {"channels_s": t1 - t0, "network_s": t2 - t1, "peaks_s": t3 - t2, "total_s": t3 - t0,
            "windows": int(np.prod(per_axis)), "evaluated_over_map": float(evaluated / prob.size),
            "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "threads": torch.get_num_threads()}


def speed(weights: str) -> list[str]:
    """One fresh process per tiling, so that each peak memory is its own."""
    import multiprocessing

    from emforge.cnn import TILE_VOX
    from emforge.cnn.features import VOXEL_SIZE_A

    lines = ["", f"## Speed: C-alpha probability and peaks of a {SPEED_EDGE_VOX}^3-voxel map "
             f"({SPEED_EDGE_VOX * VOXEL_SIZE_A:.0f} Å box at 1.5 Å) on the CPU", "",
             "Each tiling runs in a fresh process (peak RSS is that process's maximum resident memory). "
             "`tile_vox` is the longest window edge, halos included; *evaluated / map* is the voxels the network "
             f"computes over the map's voxels (halo overhead). Default `tile_vox`: {TILE_VOX}, so a map of at most "
             f"{TILE_VOX} voxels per edge, this one included, runs as the whole-map row.", "",
             "| tile_vox | windows | evaluated / map | input channels s | network s | peaks s | total s | "
             "peak RSS GB | torch threads |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ctx = multiprocessing.get_context("spawn")
    for tile in SPEED_TILES:
        with ctx.Pool(1) as pool:
            r = pool.apply(_timed_prediction, (weights, tile, SPEED_EDGE_VOX))
        print("speed", tile, {k: round(v, 2) for k, v in r.items()}, flush=True)
        lines.append(f"| {'whole map' if tile is None else tile} | {r['windows']} | {r['evaluated_over_map']:.2f} | "
                     f"{r['channels_s']:.1f} | {r['network_s']:.1f} | {r['peaks_s']:.1f} | {r['total_s']:.1f} | "
                     f"{r['peak_rss_GB']:.1f} | {r['threads']} |")
    return lines


def main() -> int:
    import pandas as pd
    from scipy import stats

    from emforge.cnn.data import chain_table, load_chains, simulate_noisy_map
    from emforge.cnn.infer import default_weights_path
    from emforge.cnn.train import load_weights, sha256_file
    from emforge.maps import read_map
    from emforge.models import read_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=24, help="validation chains (seeded sample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default=str(default_weights_path()))
    ap.add_argument("--parts", default="accuracy,speed",
                    help="accuracy (cases) and/or speed; a speed-only run adds its section to the existing table")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    load0 = load_average()
    net = load_weights(args.weights)
    parts = set(args.parts.split(","))
    if parts == {"speed"}:
        text = Path(args.out).read_text(encoding="utf-8")
        head = text.split("\n## Speed")[0].rstrip("\n").split("\n- load average")[0]
        lines = [head, *speed(args.weights), "", "- speed command: `.venv/bin/python benchmarks/cnn.py --parts speed`, "
                 f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}", load_line(load0, note="(speed part)")]
        write_markdown(args.out, "\n".join(lines) + "\n")
        print(f"wrote {args.out}")
        return 0
    rows = []
    table = chain_table("validation")
    table = table.sample(n=min(args.chains, len(table)), random_state=args.seed).sort_index()
    for (_, row), model in zip(table.iterrows(), load_chains(table)):
        for b, band in enumerate(BANDS_A):
            rng = np.random.default_rng([args.seed, 7, int(row.name), b])
            R = float(rng.uniform(*band))
            sim = simulate_noisy_map(model, R, rng)
            res = run_case(sim.map, sim.ca_xyz_A, net)
            for method, r in res.items():
                rows.append({"set": "cnn_val", "case": Path(row["file"]).name.split(".")[0], "band": f"{band[0]:g}-"
                             f"{band[1]:g}", "resolution_A": R, "n_res": len(sim.ca_xyz_A), "method": method, **r})
            print(rows[-2]["case"], f"{R:.1f}", {m: round(r["crscore"], 3) for m, r in res.items()}, flush=True)
    for name, map_path, model_path, R in EXPERIMENTAL:
        model = read_model(DATA / model_path).protein().without_hydrogens()
        native = model.calpha().coords
        density = crop_to_model(read_map(DATA / map_path), model.coords)
        res = run_case(density, native, net)
        for method, r in res.items():
            rows.append({"set": "experimental", "case": name, "band": "experimental", "resolution_A": R,
                         "n_res": len(native), "method": method, **r})
        print(name, {m: round(r["crscore"], 3) for m, r in res.items()}, flush=True)
    df = pd.DataFrame(rows)

    lines = ["# C-alpha prediction (paper 003): CNN vs the naive greedy-density baseline", "",
             f"- command: `.venv/bin/python benchmarks/cnn.py --chains {args.chains} --seed {args.seed} "
             f"--parts {args.parts}`",
             f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}; machine: {machine()}",
             f"- emforge commit: {git_commit(['src', 'benchmarks'], ' (with uncommitted changes)')}",
             f"- versions: {versions(['emforge', 'torch', 'numpy'])}",
             f"- weights: `{Path(args.weights).name}` SHA-256 {sha256_file(args.weights)[:16]}... "
             f"(epoch {load_weights_meta(args.weights).get('epoch')}; see resources/cnn/MODEL_CARD.md)",
             "- no peer: no installable tool ships C-alpha prediction weights (../shared/PEERS.md); the baseline "
             "is paper 003's naive method", "",
             "## Summary (mean over cases; paired t-test CNN vs naive on CRscore)", "",
             "| set / band | cases | CRscore CNN | CRscore naive | p | matched within 3 Å CNN / naive | "
             "RMSD of matched CNN / naive Å | target (CNN) |", "|---|---:|---:|---:|---:|---|---|---|"]
    for band, part in df.groupby("band", sort=False):
        cnn, naive = part[part.method == "cnn"], part[part.method == "naive"]
        p = stats.ttest_rel(cnn["crscore"], naive["crscore"]).pvalue if len(cnn) > 1 else float("nan")
        key = next((b for b in TARGETS if band == f"{b[0]:g}-{b[1]:g}"), None)
        target = "" if key is None else (f">= {TARGETS[key]}: " + ("met" if cnn["crscore"].mean() >= TARGETS[key]
                                                                      else "not met"))
        label = f"cnn_val {band} Å" if band != "experimental" else "experimental maps"
        lines.append(f"| {label} | {len(cnn)} | {cnn['crscore'].mean():.3f} | {naive['crscore'].mean():.3f} | "
                     f"{p:.2g} | {cnn['matched'].mean():.2f} / {naive['matched'].mean():.2f} | "
                     f"{cnn['rmsd'].mean():.2f} / {naive['rmsd'].mean():.2f} | {target} |")
    lines += ["", "## Cases", "", "| set | case | band | R Å | L | CRscore CNN / naive | matched CNN / naive | "
              "peaks CNN | seconds CNN / naive |", "|---|---|---|---:|---:|---|---|---:|---|"]
    for (_, case, band, R), part in df.groupby(["set", "case", "band", "resolution_A"], sort=False):
        c, n = part[part.method == "cnn"].iloc[0], part[part.method == "naive"].iloc[0]
        lines.append(f"| {c['set']} | {case} | {band} | {R:.1f} | {c['n_res']} | {c['crscore']:.3f} / "
                     f"{n['crscore']:.3f} | {c['matched']:.2f} / {n['matched']:.2f} | {c['n_picked']} | "
                     f"{c['time_s']:.1f} / {n['time_s']:.2f} |")
    if "speed" in parts:
        lines += speed(args.weights)
    lines += ["", load_line(load0)]
    write_markdown(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


def load_weights_meta(path) -> dict:
    import json

    from emforge.cnn.train import sidecar_path

    return json.loads(sidecar_path(path).read_text(encoding="utf-8")).get("metadata", {})


if __name__ == "__main__":
    sys.exit(main())
