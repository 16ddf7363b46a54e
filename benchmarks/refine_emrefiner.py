"""Benchmark: EM-Refiner flexible refinement (paper 000, Steps 2-3) against servalcat and Coot.

Protocol: ../shared/BENCHMARKS.md; spec: the EM-Refiner refinement issue (targets: mean TM-score gain
>= +0.06 for starts with TM >= 0.5, no case losing more than 0.02, no clashes, a 200-residue protein
in <= 10 min with the default preset). One process run refines every case with every method and
writes ``benchmarks/results/refine_emrefiner.md`` (rewritten after each case) and a checkpoint
``benchmarks/results/refine_emrefiner.tsv`` (one row per case, start and method; an interrupted run
started again with the same arguments skips the rows already there).

Cases (real structures from ../shared/data; every random choice from ``--seed``, per case through a
generator seeded by the seed and the case name):

* ``pairs``: adenylate kinase 4AKE chain A (open) -> 1AKE chain A (closed); maltodextrin-binding
  protein 1OMP (open) -> 1ANF (closed), first chain, protein heavy atoms;
* ``antigen``: Docking Benchmark 5.5 antibody-antigen cases, antigen only (``l`` = antigen in the
  data README): start the unbound ``<ID>_l_u.pdb``, target the bound ``<ID>_l_b.pdb``; the first
  ``--n-antigen`` IDs in name order whose common part has <= 250 residues;
* ``decoy``: ``--n-decoys`` chains of ../shared/data/chains in the validation split
  (``split_of(clust40) == "validation"``), 100-250 residues, distinct 40 % clusters, in seeded
  order; start = ``normal_mode_decoy(native, tm_target ~ U[0.6, 0.8], seed)`` relaxed with
  ``emforge.md.relax(restraint_k_kj_per_mol_A2=1.0)`` (the raw normal-mode decoys carry stretched
  peptide bonds and clashes a predicted model would not have; the peptide C-N lengths after relax
  are printed and reported).

Start and target are restricted to their common residues (``residue_correspondence``). The map is
simulated from the TARGET: ``simulate_map(target, None, R, "emrefiner", voxel_size_A=R/3,
margin_A=10)``, R ~ U[5, 10] Å. Starts (paper 000 Table 1): ``ideal`` = the start superposed onto
the target by TM-score (``tm_score(...).transform`` on the paired C-alphas); ``fit`` = the start at a
seeded random rotation and position in the box, placed by emforge's own ``fit_model(..., seed)``
(``--fit-start pairs`` (default): pairs only, to keep the run under ~50 min on 2 cores).

Methods, each from the same start in the same map:

* ``emforge``: ``refine_emrefiner(start, map, R, preset="fast", seed=0)`` (the default preset,
  OpenMM relax at the end);
* ``servalcat``: ``servalcat refine_spa_norefmac --map map.mrc --model start.pdb -d R --ncycle 10
  --monlib $MONLIB`` in a temporary folder (MONLIB: the monomer library of the coot-headless-api
  wheel, see PEERS.md); its ``<prefix>.pdb`` is read back (hydrogens dropped);
* ``coot``: coot-headless-api ``refine_residues_using_atom_cid(imol, "//<chain>", "ALL", N)`` with
  ``N = --coot-cycles`` in a child process (Coot in-process corrupted later emforge arrays in
  benchmarks/qscore_vs_peers.py); Coot ignores the MRC origin, so it gets the map with its origin at
  0 and the model shifted by -origin (shifted back afterwards); map weight: Coot's default (50) on
  the simulated map as is (``--coot-weight`` overrides).

Metrics (one definition for all methods): TM-score and C-alpha RMSD to the target
(``compare_models``: sequence-dependent pairs, superposition-independent TM); CC = ``cc`` of
``emforge.scores.score_model_map(model, map, R)`` (the model simulated with the emrefiner kernel on
the target map's grid, Pearson over the whole grid, as ``emforge score``); geometry from
``validate_structure(..., families=("geometry",))`` (``emforge validate``'s MolProbity-like summary:
serious clashes with riding hydrogens, clashscore, Ramachandran and rotamer outliers %, MolProbity
score); wall time of the method's call (peers: the whole subprocess, start-up and file I/O included).

Run:  .venv-bench/bin/python benchmarks/refine_emrefiner.py [--seed 0] [--quick] [--cases adk,mbp]
"""

from __future__ import annotations

import sys

# Coot runs in a child process of this script; the child imports Coot before anything else.
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--coot-worker":
    import coot_headless_api  # noqa: F401

import argparse
import csv
import datetime as dt
import math
import os
import subprocess
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402  (helpers shared by the benchmarks)
    DATA,
    REPO,
    git_commit,
    load_average,
    load_line,
    machine,
    versions,
    write_markdown,
)

OUT = REPO / "benchmarks" / "results" / "refine_emrefiner.md"
KERNEL = "emrefiner"
RES_RANGE = (5.0, 10.0)  # Å, resolution drawn uniformly per case
MARGIN_A = 10.0
DECOY_TM_RANGE = (0.6, 0.8)
DECOY_RESIDUES = (100, 250)
DECOY_RELAX_K = 1.0  # kJ/mol/Å^2
MAX_ANTIGEN_RESIDUES = 250
TM_GOOD = 0.5
LOSS_TOL = 0.02
TARGET_GAIN = 0.06
TARGET_TIME_S = 600.0  # 200-residue protein, default preset
METHODS = ("emforge", "servalcat", "coot")
PEERS = ("servalcat", "coot")
PEER_TIMEOUT_S = 900
VERSIONS = ["emforge", "numpy", "scipy", "numba", "gemmi", "openmm", "pdbfixer", "mrcfile", "servalcat",
            "coot-headless-api"]
OWN_FILES = ["src/emforge/refine", "src/emforge/md.py", "benchmarks/refine_emrefiner.py"]
CACHE = Path(tempfile.gettempdir()) / "emforge-refbench-cache"


def _monlib() -> str:
    """$MONLIB, else the CCP4 monomer library in the coot-headless-api wheel (PEERS.md)."""
    import importlib.util

    if os.environ.get("MONLIB"):
        return os.environ["MONLIB"]
    spec = importlib.util.find_spec("coot_headless_api")
    base = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else Path(".")
    return str(base / "share" / "coot" / "lib" / "data" / "monomers")


MONLIB = _monlib()
#: checkpoint columns (one row per case x start x method)
FIELDS = ["seed", "case", "set", "start", "method", "status", "n_res", "resolution_A", "tm_before", "tm_after",
          "rmsd_before", "rmsd_after", "cc_before", "cc_after", "clashes_before", "clashes_after",
          "clashscore_after", "rama_out_before", "rama_out_after", "rot_out_before", "rot_out_after",
          "molprobity_before", "molprobity_after", "time_s", "note"]
PAPER = ("paper 000 (EM-Refiner, 278 proteins, simulated maps): mean TM 0.713 -> 0.779; correct folds "
         "0.746 -> 0.824")


# -- cases -------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    set: str
    start_file: str
    target_file: str
    start: object  # AtomModel, restricted to the residues it shares with the target
    target: object
    seed: int = 0
    resolution: float = 0.0
    density: object = None
    starts: dict = field(default_factory=dict)  # "ideal"/"fit" -> AtomModel in the map frame
    info: str = ""  # decoy / restriction notes


def case_seed(seed: int, name: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def _protein(path: Path, first_chain: bool = True, chain: str | None = None):
    from emforge.models import read_model

    m = read_model(path).protein().without_hydrogens()
    if chain is None and first_chain:
        chain = m.chain_ids[0]
    return m.chain(chain) if chain else m


def common_residues(start, target):
    """``start`` and ``target`` cut to the residues paired by ``residue_correspondence``."""
    from emforge.compare import residue_correspondence

    corr = residue_correspondence(start, target)

    def keep(model, ca_rows):
        res = model.calpha().residue_index[ca_rows]
        return model.select(np.isin(model.residue_index, res))

    return keep(start, corr.model_index), keep(target, corr.reference_index)


def _manifest() -> list[dict]:
    with open(DATA / "chains" / "MANIFEST.tsv", newline="") as fh:
        return sorted(csv.DictReader(fh, delimiter="\t"), key=lambda r: r["file"])


def case_specs(seed: int, n_antigen: int, n_decoys: int) -> list[tuple]:
    """(name, set, start path, target path, chain) per case; decoys: start path = target path."""
    specs = [("adk 4AKE-A -> 1AKE-A", "pairs", DATA / "pairs/adk/4akeA.pdb", DATA / "pairs/adk/1ake.pdb", "A"),
             ("mbp 1OMP -> 1ANF", "pairs", DATA / "pairs/mbp/1omp.pdb", DATA / "pairs/mbp/1anf.pdb", None)]
    ab = DATA / "pairs" / "antibody_antigen"
    n = 0
    for f in sorted(ab.glob("*_l_u.pdb")):
        if n >= n_antigen:
            break
        pid = f.name.removesuffix("_l_u.pdb")
        s, t = common_residues(_protein(f, first_chain=False), _protein(ab / f"{pid}_l_b.pdb", first_chain=False))
        if t.n_residues <= MAX_ANTIGEN_RESIDUES:
            specs.append((f"antigen {pid} unbound -> bound", "antigen", f, ab / f"{pid}_l_b.pdb", None))
            n += 1
    from emforge.splits import split_of

    rows = [r for r in _manifest() if split_of(r["clust40"]) == "validation"
            and DECOY_RESIDUES[0] <= int(r["n_residues"]) <= DECOY_RESIDUES[1]]
    rng = np.random.default_rng(seed)
    clusters: set[str] = set()
    for r in (rows[i] for i in rng.permutation(len(rows))):
        if len(clusters) >= n_decoys:
            break
        if r["clust40"] in clusters:
            continue
        clusters.add(r["clust40"])
        p = DATA / "chains" / r["file"]
        specs.append((f"decoy of {r['file'].removesuffix('.pdb.gz')} ({r['pdb_id']} {r['chain']}, "
                      f"{r['n_residues']} res)", "decoy", p, p, None))
    return specs


def peptide_bonds(model, bonded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """C(i)-N(i+1) distances (Å) of consecutive residues of one chain, and the mask of those that
    are bonds (< 2 Å) in this model; ``bonded`` (from the native) overrides the mask."""
    starts = model.residue_starts()
    atom_res = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(model))))
    rows = {}
    for name in ("C", "N"):
        r = np.full(len(starts), -1, np.int64)
        idx = np.flatnonzero(model.atom_name == name)[::-1]
        r[atom_res[idx]] = idx  # first such atom of each residue
        rows[name] = r
    a, b = rows["C"][:-1], rows["N"][1:]
    ok = (a >= 0) & (b >= 0) & (model.chain_id[starts[:-1]] == model.chain_id[starts[1:]])
    d = np.where(ok, np.linalg.norm(model.coords[a] - model.coords[b], axis=1), np.nan)
    mask = (ok & (d < 2.0)) if bonded is None else bonded
    return d, mask


def make_decoy(native, seed: int, rng: np.random.Generator, cache: Path):
    """Relaxed normal-mode decoy of ``native`` (cached as PDB) and a description."""
    from emforge.compare import compare_models
    from emforge.decoys import normal_mode_decoy
    from emforge.md import relax
    from emforge.models import read_model, write_model

    tm_target = float(rng.uniform(*DECOY_TM_RANGE))
    path = cache / f"decoy_{seed}.pdb"
    raw_d = None
    if path.exists():
        decoy = read_model(path)
    else:
        raw, info = normal_mode_decoy(native, tm_target, seed=seed)
        raw_d, _ = peptide_bonds(raw)
        # OpenMM integrators take a 32-bit signed seed
        decoy, _ = relax(raw, restraint_k_kj_per_mol_A2=DECOY_RELAX_K, seed=seed % 2**31)
        write_model(path, decoy)
    _, bonded = peptide_bonds(native)
    d, _ = peptide_bonds(decoy)
    d = d[bonded]
    tm = compare_models(decoy, native)["tm_score"]
    raw_txt = "" if raw_d is None else f"raw max C-N {np.nanmax(raw_d[bonded]):.2f} Å, "
    note = (f"TM target {tm_target:.3f}; after relax (k {DECOY_RELAX_K:g}) TM {tm:.3f}; {raw_txt}relaxed C-N "
            f"mean {np.nanmean(d):.3f} / max {np.nanmax(d):.3f} Å, {int(np.sum(d > 1.5))} > 1.5 Å")
    return decoy, note


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def prepare(spec: tuple, seed: int, with_fit: bool) -> Case:
    """Load, restrict, draw R, simulate the map and build the starts of one case."""
    from emforge.compare import residue_correspondence, tm_score
    from emforge.fit import fit_model
    from emforge.models import RigidTransform, read_model, write_model
    from emforge.simulate import simulate_map

    name, set_, sp, tp, chain = spec
    cseed = case_seed(seed, name)
    rng = np.random.default_rng(cseed)
    cache = CACHE / f"seed{seed}" / f"{zlib.crc32(name.encode()):08x}"
    cache.mkdir(parents=True, exist_ok=True)
    first = set_ != "antigen"  # antigens: every chain of the file
    target = _protein(tp, first_chain=first, chain=chain)
    info = ""
    if set_ == "decoy":
        start, info = make_decoy(target, cseed, rng, cache)
    else:
        start = _protein(sp, first_chain=first, chain=chain)
    n0 = (start.n_residues, target.n_residues)
    start, target = common_residues(start, target)
    if n0 != (start.n_residues, target.n_residues):
        info += f"{'; ' if info else ''}restricted to {target.n_residues} common residues (from {n0[0]} / {n0[1]})"
    case = Case(name, set_, str(sp.relative_to(DATA)), str(tp.relative_to(DATA)), start, target, cseed, info=info)
    case.resolution = float(rng.uniform(*RES_RANGE))
    case.density = simulate_map(target, None, case.resolution, KERNEL, voxel_size_A=case.resolution / 3,
                                margin_A=MARGIN_A)
    corr = residue_correspondence(start, target)
    x = start.calpha().coords[corr.model_index]
    y = target.calpha().coords[corr.reference_index]
    case.starts["ideal"] = start.transformed(tm_score(x, y, corr.n_reference).transform)
    rot = random_rotation(rng)
    lo, hi = case.density.extent_A
    pos = rng.uniform(lo + MARGIN_A, hi - MARGIN_A)
    if with_fit:
        path = cache / "fit_start.pdb"
        if path.exists():
            case.starts["fit"] = read_model(path)
        else:
            placed = start.transformed(RigidTransform(rot, pos - rot @ start.centroid()))
            case.starts["fit"] = fit_model(placed, case.density, case.resolution, seed=cseed).model
            write_model(path, case.starts["fit"])
    return case


# -- metrics -----------------------------------------------------------------------------------

def metrics(model, case: Case) -> dict:
    """TM/RMSD to the target, CC in the map, MolProbity-like geometry of one model."""
    from emforge.compare import compare_models
    from emforge.scores import score_model_map
    from emforge.validate import ValidationSettings, validate_structure

    cmp = compare_models(model, case.target)
    cc = score_model_map(model, case.density, case.resolution, kernel=KERNEL)[0]["cc"]
    geo = validate_structure(model, settings=ValidationSettings(families=("geometry",))).summary["geometry"]
    return {"tm": float(cmp["tm_score"]), "rmsd": float(cmp["rmsd_A"]), "cc": float(cc),
            "clashes": geo.get("n_clashes"), "clashscore": geo.get("clashscore"),
            "rama_out": geo.get("rama_outlier_pct"), "rot_out": geo.get("rotamer_outlier_pct"),
            "molprobity": geo.get("molprobity_score")}


# -- methods -----------------------------------------------------------------------------------

def run_emforge(model, case: Case, args) -> tuple[object, str]:
    from emforge.refine.emrefiner.pipeline import refine_emrefiner

    res = refine_emrefiner(model, case.density, case.resolution, preset=args.preset, seed=0)
    s = res.summary
    t = s.get("timings_s", {})
    relax = s.get("relax", [])
    rounds = (f"minimisation rounds {len(relax)} (clashes >= 0.35 Å after each: "
              f"{' -> '.join(str(r['serious_clashes']) for r in relax)}); ") if relax else ""
    return res.model, (f"own CC {s['cc_start']:.3f} -> step2 {s['cc_step2']:.3f} -> step3 {s['cc_step3']:.3f} "
                       f"-> final {s['cc_final']:.3f}; {rounds}" +
                       ", ".join(f"{k.removesuffix('_s')} {v:.0f}s" for k, v in t.items()))


def _tail(proc: subprocess.CompletedProcess, n: int = 3) -> str:
    return " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-n:])


def run_servalcat(model, case: Case, args) -> tuple[object, str]:
    from emforge.maps import write_map
    from emforge.models import read_model, write_model

    with tempfile.TemporaryDirectory(prefix="emforge-bench-servalcat-") as tmp:
        tmp = Path(tmp)
        write_model(tmp / "start.pdb", model)
        write_map(tmp / "map.mrc", case.density)
        exe = Path(sys.executable).with_name("servalcat")
        cmd = [str(exe), "refine_spa_norefmac", "--map", "map.mrc", "--model", "start.pdb",
               "-d", f"{case.resolution:.3f}", "--ncycle", str(args.servalcat_cycles), "--monlib", MONLIB,
               "-o", "refined"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
        out = tmp / "refined.pdb"
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"servalcat rc={proc.returncode}: {_tail(proc)}")
        weight = next((ln.split(":", 1)[1].strip() for ln in proc.stdout.splitlines()
                       if ln.startswith("Weight used:")), "?")
        return read_model(out).protein().without_hydrogens(), f"weight {weight}"


def write_mrc_origin0(path: Path, m) -> None:
    """The map for Coot: mrcfile, origin 0 (Coot ignores the header origin)."""
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(m.data, dtype=np.float32))
        mrc.voxel_size = float(np.asarray(m.voxel_size, dtype=float)[0])


def run_coot(model, case: Case, args) -> tuple[object, str]:
    from emforge.models import read_model, write_model

    origin = np.asarray(case.density.origin, dtype=float)
    with tempfile.TemporaryDirectory(prefix="emforge-bench-coot-") as tmp:
        tmp = Path(tmp)
        write_model(tmp / "start.pdb", model.with_coords(model.coords - origin))
        write_mrc_origin0(tmp / "map.mrc", case.density)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--coot-worker", str(tmp / "map.mrc"),
               str(tmp / "start.pdb"), str(tmp / "refined.pdb"), str(args.coot_cycles),
               "" if args.coot_weight is None else str(args.coot_weight), ",".join(model.chain_ids)]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=PEER_TIMEOUT_S)
        out = tmp / "refined.pdb"
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"coot worker rc={proc.returncode}: {_tail(proc)}")
        note = next((ln for ln in proc.stdout.splitlines() if ln.startswith("coot:")), "")
        got = read_model(out).protein().without_hydrogens()
        return got.with_coords(got.coords + origin), note.removeprefix("coot: ")


def coot_worker(argv: list[str]) -> int:
    """Child-process entry: ``--coot-worker MAP MODEL OUT N_CYCLES WEIGHT CHAINS``."""
    import contextlib
    import io

    import coot_headless_api as chapi

    map_path, model_path, out, n_cycles, weight, chains = argv
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        mc = chapi.molecules_container_t(False)
        imol = mc.read_pdb(model_path)
        imap = mc.read_ccp4_map(map_path, False)
        mc.set_imol_refinement_map(imap)
        if weight:
            mc.set_map_weight(float(weight))
        w = mc.get_map_weight()
        status = [mc.refine_residues_using_atom_cid(imol, f"//{c}", "ALL", int(n_cycles)) for c in chains.split(",")]
        mc.write_coordinates(imol, out)
    print(f"coot: map weight {w:g}, {n_cycles} cycles, refine status {status}")
    return 0 if Path(out).exists() else 1


RUNNERS = {"emforge": run_emforge, "servalcat": run_servalcat, "coot": run_coot}


# -- checkpoint --------------------------------------------------------------------------------

def read_checkpoint(path: Path, seed: int, key: tuple[str, ...] = ("case", "start", "method")) -> dict:
    """Finished rows of an earlier run with the same seed, by their ``key`` columns."""
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {tuple(r[k] for k in key): r for r in csv.DictReader(fh, delimiter="\t")
                if r.get("seed") == str(seed)}


def write_checkpoint(path: Path, rows: dict, fields: list[str] = FIELDS) -> None:
    import io

    from emforge.atomic import write_text_atomic

    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, delimiter="\t", lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows.values():
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    write_text_atomic(path, buf.getvalue())


def num(row: dict, key: str) -> float:
    v = row.get(key, "")
    try:
        return float(v) if v not in ("", None) else math.nan
    except ValueError:
        return math.nan


# -- report ------------------------------------------------------------------------------------

def fmt(x, d: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{d}f}"


def pval(a: np.ndarray, b: np.ndarray) -> str:
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2 or np.allclose(a[ok], b[ok]):
        return f"n/a (n={ok.sum()})"
    return f"{stats.ttest_rel(a[ok], b[ok]).pvalue:.3g} (n={ok.sum()})"


def summary_rows(rows: dict, cases: list[str], start: str, methods: list[str]) -> list[str]:
    def col(m, key):
        return np.array([num(rows.get((c, start, m), {}), key) for c in cases])

    lines = []
    em_tm, em_t = col("emforge", "tm_after"), col("emforge", "time_s")
    for m in methods:
        ok = np.array([rows.get((c, start, m), {}).get("status") == "ok" for c in cases])
        if not ok.any():
            continue
        b, a, t = col(m, "tm_before"), col(m, "tm_after"), col(m, "time_s")
        b, a, t = np.where(ok, b, np.nan), np.where(ok, a, np.nan), np.where(ok, t, np.nan)
        g = a - b
        good = ok & (b >= TM_GOOD)
        clash = col(m, "clashes_after")
        vs = "-"
        ratio = "-"
        if m != "emforge":
            vs = pval(em_tm, a)
            both = np.isfinite(em_t) & np.isfinite(t)
            ratio = fmt(np.median(t[both]) / np.median(em_t[both]), 2) if both.any() else "n/a"
        lines.append(
            f"| {start} | {m} | {ok.sum()}/{len(cases)} | {fmt(np.nanmean(b))} | {fmt(np.nanmean(a))} "
            f"| {np.nanmean(g):+.3f} | {(f'{np.nanmean(g[good]):+.3f} (n={good.sum()})') if good.any() else 'n/a'} "
            f"| {int(np.sum(g < -LOSS_TOL))} | {pval(a, b)} | {vs} | {fmt(np.nanmean(col(m, 'cc_before')))} -> "
            f"{fmt(np.nanmean(col(m, 'cc_after')))} | {fmt(np.nanmean(clash), 1)} ({int(np.sum(clash == 0))} with 0) "
            f"| {fmt(np.nanmean(col(m, 'rama_out_after')), 2)} | {fmt(np.nanmean(col(m, 'rot_out_after')), 2)} "
            f"| {fmt(np.nanmean(col(m, 'molprobity_after')), 2)} | {fmt(np.nanmedian(t), 1)} | {ratio} |")
    return lines


def targets(rows: dict, cases: list[Case], starts: list[str]) -> list[str]:
    out = []
    for s in starts:
        r = [rows[(c.name, s, "emforge")] for c in cases if rows.get((c.name, s, "emforge"), {}).get("status") == "ok"]
        if not r:
            continue
        b = np.array([num(x, "tm_before") for x in r])
        g = np.array([num(x, "tm_after") for x in r]) - b
        good = b >= TM_GOOD
        clashes = np.array([num(x, "clashes_after") for x in r])
        gain = np.mean(g[good]) if good.any() else math.nan
        worst = int(np.argmin(g))
        out += [f"- {s} start, emforge fast (n={len(r)}): mean TM gain for starts with TM >= {TM_GOOD}: "
                f"{fmt(gain)} (target >= +{TARGET_GAIN}: {'met' if gain >= TARGET_GAIN else 'NOT met'}); "
                f"cases losing > {LOSS_TOL}: {int(np.sum(g < -LOSS_TOL))} (target 0: "
                f"{'met' if not np.any(g < -LOSS_TOL) else 'NOT met'}; worst {g[worst]:+.3f}, {r[worst]['case']}); "
                f"models with serious clashes: {int(np.sum(clashes > 0))} (max {fmt(np.nanmax(clashes), 0)}; target 0: "
                f"{'met' if np.nansum(clashes) == 0 else 'NOT met'})"]
    big = [(c, rows.get((c.name, "ideal", "emforge"), {})) for c in cases if 150 <= c.target.n_residues <= 250]
    big = [(c, r) for c, r in big if r.get("status") == "ok"]
    if big:
        t = [num(r, "time_s") for _, r in big]
        out.append(f"- time, 150-250-residue cases (ideal start, fast preset): max {max(t):.0f} s, median "
                   f"{np.median(t):.0f} s over {len(t)} cases (target <= {TARGET_TIME_S:.0f} s for 200 residues: "
                   f"{'met' if max(t) <= TARGET_TIME_S else 'NOT met'})")
    return out


def report(args, cases: list[Case], rows: dict, starts: list[str], methods: list[str], load_start: float,
           done: bool, n_total: int, skipped: list[str] | None = None) -> str:
    exe = Path(sys.executable)
    exe_text = exe.relative_to(REPO).as_posix() if exe.is_relative_to(REPO) else str(exe)
    script = Path(sys.argv[0]).resolve()
    script_text = script.relative_to(REPO).as_posix() if script.is_relative_to(REPO) else str(script)
    cmd = " ".join([exe_text, script_text, *sys.argv[1:]])
    lines = [
        "# EM-Refiner flexible refinement: emforge vs servalcat vs Coot",
        "",
        f"- command: `{cmd}`",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + ("" if done else f" (PARTIAL: {len(cases)} of {n_total} cases so far)"),
        f"- machine: {machine()}",
        f"- emforge commit: {git_commit(OWN_FILES, ' (refinement code not yet committed)')}",
        f"- versions: {versions(VERSIONS)}",
        f"- seed: {args.seed} (decoy choice; per case, from the seed and the case name: R, decoy TM target and "
        "normal-mode draw, random pose of the fit start, seed of `fit_model`); emforge refines with seed 0",
        (f"- maps: `simulate_map(target, None, R, \"{KERNEL}\", voxel_size_A=R/3, margin_A={MARGIN_A:g})`, "
         f"R uniform in [{RES_RANGE[0]:g}, {RES_RANGE[1]:g}] Å; start and target cut to their common residues "
         "(`residue_correspondence`), protein heavy atoms, first chain (antigens: all chains)"),
        (f"- decoys: `normal_mode_decoy(native, tm ~ U[{DECOY_TM_RANGE[0]:g}, {DECOY_TM_RANGE[1]:g}], seed)` then "
         f"`md.relax(restraint_k_kj_per_mol_A2={DECOY_RELAX_K:g})` (raw decoys carry stretched peptide bonds and "
         "clashes); validation-split chains (`split_of(clust40)`), "
         f"{DECOY_RESIDUES[0]}-{DECOY_RESIDUES[1]} residues, distinct clusters"),
        ("- starts: `ideal` = start superposed onto the target by TM-score; `fit` = start at a seeded random "
         "pose placed by `emforge.fit.fit_model` (paper 000 Table 1's two columns)"
         + ("" if args.fit_start == "all" else f"; `fit` run for: {args.fit_start}")),
        (f"- emforge: `refine_emrefiner(start, map, R, preset=\"{args.preset}\", seed=0)` (OpenMM minimisation "
         "with clash removal, `md.remove_clashes`, included); "
         "time = the call in this process (numba cache load / compile of the first case included)"),
        (f"- servalcat: `servalcat refine_spa_norefmac --map map.mrc --model start.pdb -d R --ncycle "
         f"{args.servalcat_cycles} --monlib $MONLIB` (MONLIB = coot-headless-api's monomer library); output "
         "model read back, hydrogens dropped; time = the subprocess"),
        (f"- Coot: coot-headless-api `refine_residues_using_atom_cid(imol, '//<chain>', 'ALL', {args.coot_cycles})`, "
         f"map weight {'Coot default (50)' if args.coot_weight is None else args.coot_weight} on the simulated map "
         "as is (origin moved to 0 for Coot, model shifted with it); in a child process; time = the subprocess. "
         "Weights tried on adk (ideal start, 1000 cycles, seed 0): 5 / 15 / 50 gave TM 0.732 / 0.774 / 0.821 "
         "and 107 / 148 / 550 serious clashes (start 52): the default, with the best fit, is kept"),
        ("- metrics: TM-score / C-alpha RMSD to the target: `compare_models` (fixed residue pairing, TM "
         "superposition-independent, RMSD after least-squares fit); CC: `score_model_map(model, map, R)['cc']` "
         "(emrefiner kernel, target grid, as `emforge score`); geometry: `validate_structure(model, "
         "families=('geometry',))` = `emforge validate`: serious clashes (riding H), Ramachandran and rotamer "
         "outliers %, MolProbity score"),
        load_line(load_start, note="(all methods saw the same conditions)"),
        "",
        "## Cases",
        "",
        "| case | set | start file | target file | residues | R Å | start TM | notes |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    for c in cases:
        r = rows.get((c.name, "ideal", "emforge")) or next((v for k, v in rows.items() if k[0] == c.name), {})
        lines.append(f"| {c.name} | {c.set} | {c.start_file} | {c.target_file} | {c.target.n_residues} "
                     f"| {c.resolution:.2f} | {fmt(num(r, 'tm_before'))} | {c.info} |")
    lines += ["", "## Results per case", "",
              "TM and CC: before -> after; clashes: serious clashes after (before); Rama / rotamer outliers % and "
              "MolProbity score after (before).", "",
              "| case | start | method | TM | gain | Cα RMSD Å | CC | clashes | Rama out % | rot out % | MolProbity "
              "| time s | note |",
              "|---|---|---|---|---:|---|---|---|---|---|---|---:|---|"]
    failures = []
    for c in cases:
        for s in starts:
            for m in methods:
                r = rows.get((c.name, s, m))
                if r is None:
                    continue
                if r["status"] != "ok":
                    lines.append(f"| {c.name} | {s} | {m} | {fmt(num(r, 'tm_before'))} -> failed | | | | | | | | "
                                 f"{fmt(num(r, 'time_s'), 1)} | {r['note'][:200]} |")
                    failures.append(f"- {c.name}, {s}, {m}: {r['note']}")
                    continue
                g = num(r, "tm_after") - num(r, "tm_before")
                lines.append(
                    f"| {c.name} | {s} | {m} | {fmt(num(r, 'tm_before'))} -> {fmt(num(r, 'tm_after'))} | {g:+.3f} "
                    f"| {fmt(num(r, 'rmsd_before'), 2)} -> {fmt(num(r, 'rmsd_after'), 2)} "
                    f"| {fmt(num(r, 'cc_before'))} -> {fmt(num(r, 'cc_after'))} "
                    f"| {fmt(num(r, 'clashes_after'), 0)} ({fmt(num(r, 'clashes_before'), 0)}) "
                    f"| {fmt(num(r, 'rama_out_after'), 1)} ({fmt(num(r, 'rama_out_before'), 1)}) "
                    f"| {fmt(num(r, 'rot_out_after'), 1)} ({fmt(num(r, 'rot_out_before'), 1)}) "
                    f"| {fmt(num(r, 'molprobity_after'), 2)} ({fmt(num(r, 'molprobity_before'), 2)}) "
                    f"| {fmt(num(r, 'time_s'), 1)} | {r['note']} |")
    lines += ["", "## Summary (Table-1 style)", "",
              "| start | method | cases ok | mean TM before | mean TM after | mean gain | mean gain, start TM >= 0.5 "
              f"| cases losing > {LOSS_TOL} | p, TM after vs before | p, TM emforge vs this | mean CC before -> after "
              "| mean clashes after | Rama out % | rot out % | MolProbity | median time s "
              "| median time ratio this/emforge |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for s in starts:
        names = [c.name for c in cases if (c.name, s, "emforge") in rows or (c.name, s, methods[-1]) in rows]
        if names:
            lines += summary_rows(rows, names, s, methods)
    lines += ["", "p-values: paired t-test (`scipy.stats.ttest_rel`) over the cases both columns have.",
              "", "## Targets (issue) and paper", "", *targets(rows, cases, starts), f"- reference: {PAPER}"]
    failures += [f"- {s}" for s in skipped or []]
    if failures:
        lines += ["", "## Failures", "", *failures]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------

def run_one(case: Case, start: str, method: str, before: dict, args) -> dict:
    row = {"seed": args.seed, "case": case.name, "set": case.set, "start": start, "method": method,
           "n_res": case.target.n_residues,
           "resolution_A": f"{case.resolution:.3f}"}
    row.update({f"{k}_before": v for k, v in before.items()})
    t0 = time.perf_counter()
    try:
        model, note = RUNNERS[method](case.starts[start], case, args)
        row["time_s"] = time.perf_counter() - t0
        after = metrics(model, case)
        row.update({f"{k}_after": v for k, v in after.items()}, status="ok", note=note)
    except Exception as e:  # noqa: BLE001 - a failed run is a result, recorded in the row
        row.update(time_s=time.perf_counter() - t0, status="failed", note=f"{type(e).__name__}: {e}"[:500])
        traceback.print_exc()
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    ap.add_argument("--quick", action="store_true", help="smoke run: pairs only, ideal start only")
    ap.add_argument("--cases", default="", help="comma-separated substrings; run only cases whose name has one")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    ap.add_argument("--n-antigen", type=int, default=5, help="antigen cases (default 5)")
    ap.add_argument("--n-decoys", type=int, default=4, help="decoy cases (default 4)")
    ap.add_argument("--fit-start", choices=("all", "pairs", "none"), default="pairs",
                    help="cases that also run from emforge's own fit (default pairs)")
    ap.add_argument("--preset", default="fast", help="EM-Refiner preset (default fast)")
    ap.add_argument("--servalcat-cycles", type=int, default=10)
    ap.add_argument("--coot-cycles", type=int, default=1000, help="Coot refinement cycles (default 1000)")
    ap.add_argument("--coot-weight", type=float, default=None, help="Coot map weight (default: Coot's own)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--checkpoint", type=Path, default=None, help="TSV of finished rows (default: --out with .tsv)")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if bad := [m for m in methods if m not in METHODS]:
        ap.error(f"unknown method(s) {bad}")
    ckpt = args.checkpoint or args.out.with_suffix(".tsv")
    rows = read_checkpoint(ckpt, args.seed)
    if rows:
        print(f"checkpoint {ckpt}: {len(rows)} rows done", flush=True)

    load_start = load_average()
    specs = case_specs(args.seed, 0 if args.quick else args.n_antigen, 0 if args.quick else args.n_decoys)
    if args.cases:
        keys = [k.strip().lower() for k in args.cases.split(",") if k.strip()]
        specs = [s for s in specs if any(k in s[0].lower() for k in keys)]
    print(f"seed {args.seed}; {len(specs)} cases; methods {methods}; MONLIB {MONLIB}", flush=True)
    cases: list[Case] = []
    starts_all = ["ideal"] if args.quick or args.fit_start == "none" else ["ideal", "fit"]
    t_all = time.perf_counter()
    skipped: list[str] = []
    for spec in specs:
        with_fit = not args.quick and (args.fit_start == "all" or (args.fit_start == "pairs" and spec[1] == "pairs"))
        t0 = time.perf_counter()
        try:
            case = prepare(spec, args.seed, with_fit)
        except Exception as e:  # noqa: BLE001 - a case that cannot be built is reported, not dropped silently
            traceback.print_exc()
            skipped.append(f"{spec[0]}: case preparation failed ({type(e).__name__}: {e})"[:500])
            continue
        cases.append(case)
        print(f"{case.name}: R {case.resolution:.2f} Å, {case.target.n_residues} residues, grid "
              f"{case.density.shape_xyz.tolist()}, starts {list(case.starts)} ({time.perf_counter() - t0:.0f} s) "
              f"{case.info}", flush=True)
        for s, model in case.starts.items():
            todo = [m for m in methods if rows.get((case.name, s, m), {}).get("status") != "ok"]
            if not todo:
                continue
            before = metrics(model, case)
            print(f"  {s}: TM {before['tm']:.3f}, CC {before['cc']:.3f}, clashes {before['clashes']}", flush=True)
            for m in todo:
                row = run_one(case, s, m, before, args)
                rows[(case.name, s, m)] = row
                write_checkpoint(ckpt, rows)
                print(f"    {m:9s} {row['status']}: TM {fmt(num(row, 'tm_after'))}, CC {fmt(num(row, 'cc_after'))}, "
                      f"clashes {row.get('clashes_after')}, {num(row, 'time_s'):.0f} s  {row['note'][:160]}",
                      flush=True)
        write_markdown(args.out, report(args, cases, rows, starts_all, methods, load_start, False, len(specs),
                                        skipped))
    text = report(args, cases, rows, starts_all, methods, load_start, True, len(specs), skipped)
    write_markdown(args.out, text)
    print(text)
    print(f"written {args.out} and {ckpt} ({time.perf_counter() - t_all:.0f} s)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--coot-worker":
        sys.exit(coot_worker(sys.argv[2:]))
    sys.exit(main())
