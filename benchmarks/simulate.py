"""Benchmark: emforge.simulate.simulate_map against gemmi and TEMPy on real structures.

Protocol: ../shared/BENCHMARKS.md. One process run times every tool on the same models and the
same grids (same shape, voxel size and origin), best of several repeats after a warm-up call
(which also takes numba's compile/cache load out of the figures), and writes
``benchmarks/results/simulate.md``.

Tools
-----
* ours: ``simulate_map(model, like=grid, R, kernel="gmm")``: one Gaussian per atom with
  sigma_i = sqrt((0.225 R)^2 + B_i / 8 pi^2), amplitude Z_i, cut at 3 sigma; numba, all
  cores (and, for reference, one thread).
* gemmi ``DensityCalculatorE`` (electron scattering factors, 5 Gaussians per atom, plus
  blur = 8 pi^2 (0.225 R)^2 and the atom's own B), on the same grid: the model is shifted
  by -origin into a P1 cell of exactly grid-shape x voxel, so gemmi's grid points are ours.
  ``cutoff`` (a density threshold) is set per case so that a carbon atom with the model's
  median B gets the same radius as our 3 sigma cut ("matched"); gemmi's default
  (cutoff = 1e-5) is timed too. gemmi is single-threaded.
* TEMPy 2.1.2 ``StructureBlurrer.gaussian_blur_real_space`` with ``sigma_coeff=0.225`` on the
  same grid (``densMap``): the voxcov path (``with_vc=True``: one mass-weighted Gaussian per
  atom, 4 sigma cut, per-atom calls from Python) and the classic path (atoms put on a
  ~1 Å grid, scipy gaussian_filter, resampled onto the grid).

CC (Pearson, whole grid) checks that the maps agree: against gemmi with our Gaussians of the
same per-atom widths normalised to the atom's mass (as gemmi's densities are normalised), and
also for the timed "gmm" map; against TEMPy's voxcov map with TEMPy's own kernel (mass-weighted,
one width 0.225 R) computed by emforge.

Cases: real chains from ../shared/data/chains (seeded choice): one chain of about 1k atoms,
and assemblies of whole real chains packed side by side (shelf packing of their bounding
boxes, 2 Å apart, no overlap) of about 10k and 50k atoms; each at 2 Å (0.8 Å voxels) and
6 Å (1.2 Å voxels, the spacings of PEERS.md).

Run:  .venv-bench/bin/python benchmarks/simulate.py [--seed 0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import gemmi
import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402  (helpers shared by the benchmarks)
    DATA,
    REPO,
    best_ms,
    geomean,
    git_commit,
    load_average,
    load_line,
    machine,
    tempy_structure,
    versions,
    write_markdown,
)

from emforge.maps import DensityMap  # noqa: E402
from emforge.models import AtomModel, read_model, to_gemmi  # noqa: E402
from emforge.simulate import kernel_parameters, simulate_map  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "simulate.md"
CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SETTINGS = [(2.0, 0.8), (6.0, 1.2)]  # (resolution Å, voxel Å)
KERNEL = "gmm"
CUTOFF_SIGMA = 3.0
VERSIONS = ["emforge", "numpy", "numba", "scipy", "gemmi", "BioTEMPy", "voxcov"]
OWN_FILES = ["src/emforge/simulate.py"]  # uncommitted changes here are noted next to the commit


# -- cases -------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    model: AtomModel
    chains: list[str]


def manifest() -> list[str]:
    with open(DATA / "chains" / "MANIFEST.tsv", newline="") as fh:
        return sorted(row["file"] for row in csv.DictReader(fh, delimiter="\t"))


def concat(models: list[AtomModel]) -> AtomModel:
    """One model from several, with unique one-letter chain ids and residue indices."""
    parts = []
    offset = 0
    for n, m in enumerate(models):
        values = {f.name: getattr(m, f.name) for f in fields(m)}
        values["chain_id"] = np.full(len(m), CHAIN_IDS[n], dtype="U4")
        values["residue_index"] = m.residue_index - m.residue_index.min() + offset
        offset = int(values["residue_index"].max()) + 1
        parts.append(values)
    return AtomModel(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def shelf_pack(models: list[AtomModel], gap_A: float = 2.0) -> list[AtomModel]:
    """Translate whole chains so their bounding boxes sit side by side (rows, layers), gap_A apart."""
    ext = [np.ptp(m.coords, axis=0) + gap_A for m in models]
    side = float(np.sum([np.prod(e) for e in ext])) ** (1 / 3) * 1.15
    pos = np.zeros(3)
    row_h = layer_d = 0.0
    placed = []
    for m, e in zip(models, ext):
        if pos[0] > 0 and pos[0] + e[0] > side:
            pos[0], pos[1], row_h = 0.0, pos[1] + row_h, 0.0
        if pos[1] > 0 and pos[1] + e[1] > side:
            pos[1], pos[2], layer_d = 0.0, pos[2] + layer_d, 0.0
        placed.append(m.with_coords(m.coords - m.coords.min(axis=0) + pos))
        pos[0] += e[0]
        row_h, layer_d = max(row_h, e[1]), max(layer_d, e[2])
    return placed


def build_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    files = manifest()
    order = [files[i] for i in rng.permutation(len(files))]
    cache: dict[str, AtomModel] = {}

    def load(f):
        if f not in cache:
            cache[f] = read_model(DATA / "chains" / f).protein()
        return cache[f]

    cases = []
    single = next(f for f in order if 900 <= len(load(f)) <= 1100)
    cases.append(Case(f"{single.removesuffix('.pdb.gz')} (1 chain)", load(single), [single]))
    for target, label in ((10_000, "10k"), (50_000, "50k")):
        chosen, total = [], 0
        for f in order:
            if f == single:
                continue
            chosen.append(f)
            total += len(load(f))
            if total >= target:
                break
        model = concat(shelf_pack([load(f) for f in chosen]))
        cases.append(Case(f"assembly-{label} ({len(chosen)} chains)", model, chosen))
    return cases


# -- tools -------------------------------------------------------------------------------------

def gemmi_structure(model: AtomModel, grid: DensityMap) -> gemmi.Structure:
    st = to_gemmi(model.with_coords(model.coords - grid.origin))
    st.cell = gemmi.UnitCell(*(grid.shape_xyz * grid.voxel_size), 90, 90, 90)
    st.spacegroup_hm = "P 1"
    return st


def gemmi_map(st: gemmi.Structure, grid: DensityMap, R: float, cutoff: float | None) -> np.ndarray:
    dc = gemmi.DensityCalculatorE()
    dc.d_min = 0.0  # keep the grid set below (no resampling from d_min and rate)
    dc.blur = 8 * math.pi ** 2 * (0.225 * R) ** 2
    if cutoff is not None:
        dc.cutoff = cutoff
    dc.grid.set_unit_cell(st.cell)
    nx, ny, nz = (int(v) for v in grid.shape_xyz)
    dc.grid.set_size(nx, ny, nz)
    dc.put_model_density_on_grid(st[0])
    return np.array(dc.grid, copy=False).transpose(2, 1, 0)  # [x, y, z] -> [z, y, x]


def matched_gemmi_cutoff(R: float, b_iso: float) -> float:
    """gemmi density cutoff giving a carbon atom (B = b_iso) a radius of CUTOFF_SIGMA * our sigma."""
    target = CUTOFF_SIGMA * math.sqrt((0.225 * R) ** 2 + b_iso / (8 * math.pi ** 2))
    atom = gemmi.Atom()
    atom.element = gemmi.Element("C")
    atom.b_iso = b_iso
    atom.occ = 1.0
    lo, hi = -12.0, 0.0  # log10(cutoff)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        dc = gemmi.DensityCalculatorE()
        dc.blur = 8 * math.pi ** 2 * (0.225 * R) ** 2
        dc.cutoff = 10 ** mid
        if dc.estimate_radius(atom) > target:
            lo = mid
        else:
            hi = mid
    return 10 ** (0.5 * (lo + hi))


def tempy_available() -> bool:
    try:
        import TEMPy  # noqa: F401
        return True
    except ImportError:
        return False


def tempy_map(structure, grid: DensityMap, R: float, with_vc: bool) -> np.ndarray:
    from TEMPy.maps.em_map import Map
    from TEMPy.protein.structure_blurrer import StructureBlurrer

    template = Map(np.zeros(grid.shape), list(grid.origin), np.array(grid.voxel_size), "grid")
    blurrer = StructureBlurrer(with_vc=with_vc)
    out = blurrer.gaussian_blur_real_space(structure, R, densMap=template, sigma_coeff=0.225,
                                           normalise=False)
    return np.asarray(out.fullMap)


def cc(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("nan")
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


# -- report ------------------------------------------------------------------------------------

def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed for the choice of chains (default 0)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per tool, best taken (default 5)")
    ap.add_argument("--tempy-repeats", type=int, default=2, help="timed repeats for TEMPy (default 2)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    args.load_start = load_average()
    print(f"seed {args.seed}", flush=True)
    cases = build_cases(args.seed)
    have_tempy = tempy_available()
    threads = numba.get_num_threads()
    rows = []
    for case in cases:
        tempy_struct = tempy_structure(case.model) if have_tempy else None
        for R, voxel in SETTINGS:
            _, sigma = kernel_parameters(case.model, R, KERNEL)
            grid = DensityMap.around_points(case.model.coords, voxel,
                                            CUTOFF_SIGMA * float(sigma.max()) + 2 * voxel)
            ours_ms, ours = best_ms(args.repeats, simulate_map, case.model, grid, R, KERNEL, warmup=True)
            numba.set_num_threads(1)
            try:
                ours1_ms, _ = best_ms(args.repeats, simulate_map, case.model, grid, R, KERNEL, warmup=True)
            finally:
                numba.set_num_threads(threads)
            st = gemmi_structure(case.model, grid)
            med_b = float(np.median(case.model.b_factor))
            g_cut = matched_gemmi_cutoff(R, med_b)
            gem_ms, gem = best_ms(args.repeats, gemmi_map, st, grid, R, g_cut, warmup=True)
            gem_cc = cc(ours.data, gem)
            # same per-atom widths, each Gaussian normalised to the atom's mass (≈ 2 Z for C, N, O, S),
            # as gemmi's scattering-factor densities are; "gmm" amplitudes are Z whatever the width
            ours_norm = simulate_map(case.model, grid, R, "emrefiner", sigma_A=sigma).data
            gem_cc_norm = cc(ours_norm, gem)
            del gem, ours_norm
            gem_def_ms, _ = best_ms(args.repeats, gemmi_map, st, grid, R, None, warmup=True)
            tvc_ms = tcl_ms = tvc_cc = float("nan")
            if have_tempy:
                tvc_ms, tvc = best_ms(args.tempy_repeats, tempy_map, tempy_struct, grid, R, True, warmup=True)
                # TEMPy's kernel: mass-weighted Gaussians of one width 0.225 R (no B)
                ours_tempy = simulate_map(case.model, grid, R, "emrefiner", sigma_A=0.225 * R).data
                tvc_cc = cc(ours_tempy, tvc)
                del tvc, ours_tempy
                tcl_ms, _ = best_ms(args.tempy_repeats, tempy_map, tempy_struct, grid, R, False, warmup=True)
            row = {"case": case.name, "atoms": len(case.model), "R": R, "voxel": voxel,
                   "grid": "x".join(str(v) for v in grid.shape_xyz), "ours": ours_ms, "ours1": ours1_ms,
                   "gemmi": gem_ms, "ratio": gem_ms / ours_ms, "ratio1": gem_ms / ours1_ms,
                   "gemmi_def": gem_def_ms, "tempy_vc": tvc_ms, "tempy_classic": tcl_ms,
                   "cc_gemmi": gem_cc, "cc_gemmi_norm": gem_cc_norm, "cc_tempy": tvc_cc,
                   "gemmi_cutoff": g_cut, "median_b": med_b}
            rows.append(row)
            print("  ".join(f"{k}={fmt(v, 3) if isinstance(v, float) else v}" for k, v in row.items()), flush=True)

    text = report(args, cases, rows, threads, have_tempy)
    write_markdown(args.out, text)
    print(text)
    print(f"written {args.out}")
    return 0


def report(args, cases, rows, threads, have_tempy) -> str:
    from scipy import stats

    exe = Path(sys.executable)
    exe_text = exe.relative_to(REPO).as_posix() if exe.is_relative_to(REPO) else str(exe)
    script = Path(sys.argv[0]).resolve()
    script_text = script.relative_to(REPO).as_posix() if script.is_relative_to(REPO) else str(script)
    cmd = " ".join([exe_text, script_text, *sys.argv[1:]])
    tempy_note = "" if have_tempy else " - NOT INSTALLED"
    header = [
        "# Map simulation: emforge vs gemmi vs TEMPy",
        "",
        f"- command: `{cmd}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}; numba threads: {threads}",
        f"- emforge commit: {git_commit(OWN_FILES, ' (src/emforge/simulate.py not yet committed)')}",
        f"- versions: {versions(VERSIONS)}",
        (f"- seed: {args.seed} (choice of chains); timings: best of {args.repeats} after one warm-up call "
         f"(TEMPy: best of {args.tempy_repeats}); all tools on the same grid (shape, voxel, origin)"),
        (f"- ours: `simulate_map(..., kernel=\"{KERNEL}\")`, sigma_i = sqrt((0.225 R)^2 + B_i/8pi^2), "
         f"amplitude Z_i, cut at {CUTOFF_SIGMA:g} sigma; `ours 1t` is the same with numba on one thread "
         "(gemmi and TEMPy run on one thread)"),
        ("- gemmi: `DensityCalculatorE`, blur = 8 pi^2 (0.225 R)^2 (+ the atom's B), grid set to ours "
         "(P1 cell = grid shape x voxel, model shifted by -origin, d_min = 0); `gemmi ms` uses a cutoff "
         "matched to our 3 sigma radius for a carbon atom at the model's median B (value in the notes "
         "below); `gemmi dflt ms` uses gemmi's default cutoff 1e-5"),
        ("- TEMPy: `StructureBlurrer.gaussian_blur_real_space(sigma_coeff=0.225, densMap=grid)`; "
         "`TEMPy vc` = voxcov path (per-atom Gaussians, 4 sigma), `TEMPy flt` = classic path "
         f"(atoms on a ~1 Å grid + scipy gaussian_filter + resampling){tempy_note}"),
        ("- CC: Pearson correlation over the whole grid with the peer's map (matched-cutoff gemmi map; "
         "TEMPy voxcov map). `CC ours-vs-gemmi`: our map with the same per-atom widths as the timed one, "
         "each Gaussian normalised to the atom's mass (`kernel=\"emrefiner\", sigma_A=<gmm widths>`; "
         "mass ≈ 2 Z for C, N, O, S), as gemmi's densities are normalised; remaining differences are "
         "gemmi's scattering-factor shapes. `CC gmm-vs-gemmi`: the timed \"gmm\" map itself, whose "
         "amplitude Z does not shrink as B widens the atom (paper 001's Eq. 1), so high-B chains weigh "
         "more: low at 2 Å where B dominates the width. `CC ours-vs-TEMPy vc`: our map with TEMPy's "
         "kernel (mass-weighted, sigma = 0.225 R for all atoms, `kernel=\"emrefiner\", sigma_A=0.225 R`)"),
        load_line(args.load_start, note="(other jobs shared the cores; all tools saw the same conditions)"),
        "",
        ("| case | atoms | resolution Å | voxel Å | grid (x,y,z) | ours ms | ours 1t ms | gemmi ms "
         "| ratio gemmi/ours | ratio gemmi/ours 1t | gemmi dflt ms | TEMPy vc ms | TEMPy flt ms "
         "| CC ours-vs-gemmi | CC gmm-vs-gemmi | CC ours-vs-TEMPy vc |"),
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    body = [
        (f"| {r['case']} | {r['atoms']} | {r['R']:g} | {r['voxel']:g} | {r['grid']} | {fmt(r['ours'])} "
         f"| {fmt(r['ours1'])} | {fmt(r['gemmi'])} | {fmt(r['ratio'], 2)} | {fmt(r['ratio1'], 2)} "
         f"| {fmt(r['gemmi_def'])} | {fmt(r['tempy_vc'])} | {fmt(r['tempy_classic'])} "
         f"| {fmt(r['cc_gemmi_norm'], 4)} | {fmt(r['cc_gemmi'], 4)} | {fmt(r['cc_tempy'], 4)} |")
        for r in rows
    ]
    ratio = np.array([r["ratio"] for r in rows])
    ratio1 = np.array([r["ratio1"] for r in rows])
    log_ours = np.log([r["ours"] for r in rows])
    log_gem = np.log([r["gemmi"] for r in rows])
    p = float(stats.ttest_rel(log_ours, log_gem).pvalue) if len(rows) > 1 else float("nan")
    ccs = np.array([r["cc_gemmi_norm"] for r in rows])
    n = len(rows)
    summary = [
        (f"| **summary** ({n} cases) | | | | | | | "
         f"| geo-mean {geomean(ratio):.2f}, median {np.median(ratio):.2f}, "
         f"min {ratio.min():.2f}; faster in {(ratio > 1).sum()}/{n} "
         f"| geo-mean {geomean(ratio1):.2f}, min {ratio1.min():.2f}; "
         f"faster in {(ratio1 > 1).sum()}/{n} | | | "
         f"| median {np.median(ccs):.4f}, min {ccs.min():.4f} | | |"),
        "",
        f"Paired t-test on log time, ours vs gemmi (matched cutoff), {n} cases: p = {p:.2g}.",
        "",
        "## Notes",
        "",
        ("- Assemblies are whole real chains from `../shared/data/chains` (no symmetry copies), packed "
         "side by side by their bounding boxes (2 Å apart, no overlaps); chains used:"),
    ]
    notes = [f"  - {c.name}: {', '.join(f.removesuffix('.pdb.gz') for f in c.chains)}" for c in cases]
    notes.append("- gemmi cutoffs matched to our 3 sigma radius (carbon, median B of the model):")
    notes += [f"  - {r['case']}, {r['R']:g} Å: median B {r['median_b']:.1f} Å², cutoff {r['gemmi_cutoff']:.3g}"
              for r in rows]
    return "\n".join([*header, *body, *summary, *notes, ""])


if __name__ == "__main__":
    sys.exit(main())
