"""Benchmark: emforge.geometry (Ramachandran, rotamers, C-beta, peptides) against cctbx's MolProbity code.

Protocol: ../shared/BENCHMARKS.md. One process runs, on the same real chains (seeded choice from
../shared/data/chains), emforge's validators and cctbx 2025.11's ``mmtbx.validation`` classes
(the code behind ``molprobity.ramalyze``, ``molprobity.rotalyze``, ``molprobity.cbetadev`` and
``molprobity.omegalyze``), compares per chain and per residue, times both, and writes
``benchmarks/results/geometry_vs_molprobity.md``.

Peers
-----
* ramalyze, cbetadev, omegalyze: run as shipped (ramalyze's Top8000 tables are compiled in).
* rotalyze: cctbx-base ships neither ``chem_data/rotarama_data`` nor its pickles, so the stock
  class cannot start here. We give it its own tables, built with cctbx's own reader
  (``NDimTable.createFromText``) from the same Top8000 ``rota8000-*.data`` files emforge converts,
  and run cctbx's unchanged ``rotalyze`` class on them. Arg and Lys have no grid in that data, so
  cctbx scores no Arg/Lys here and the rotamer comparison covers the other 16 rotameric types;
  emforge's Arg/Lys percentiles (central-value mixture, see ``emforge.geometry.rotamers``) have no
  peer. Coot's headless API was tried for a rotamer cross-check: its wheel lacks Coot's
  ``rota500-*.data`` probability tables, so ``rotamer_analysis`` falls back to rotamer-library
  populations (a different quantity), and is not used.
* The monomer library that cctbx's rotalyze wants at start-up is coot_headless_api's
  ``share/coot/lib/data/monomers`` (PEERS.md).

Arg/Lys calibration
-------------------
The esd scale of emforge's Arg/Lys mixture (``ESD_SCALE`` in tools/build_geometry_tables.py) is
re-derived here on a disjoint seeded set of chains: for the residue types with both a grid and
central values, the scale at which the mixture's outlier rate equals the grid's is found per chi
count (2 and 3), and extrapolated linearly to 4 chis; the per-residue agreement of the mixture
with the grid at those scales is reported as the expected accuracy of the Arg/Lys verdicts.

Run:  .venv-bench/bin/python benchmarks/validate_geometry_vs_molprobity.py [--seed 0] [--n-chains 24]
"""

from __future__ import annotations

# cctbx must be imported before gemmi (emforge imports gemmi): the other order segfaults here
import argparse
import csv
import datetime as dt
import gzip
import io
import math
import os
import sys
import tempfile
import weakref
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # standard library only: safe before cctbx
    DATA,
    REPO,
    best_s,
    geomean,
    git_commit,
    load_average,
    load_line,
    machine,
    versions,
    write_markdown,
)


def _monomer_library() -> str | None:
    import importlib.util
    spec = importlib.util.find_spec("coot_headless_api")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "share" / "coot" / "lib" / "data" / "monomers"
    return str(p) if p.is_dir() else None


_MONLIB = _monomer_library()
if _MONLIB:
    for var in ("MMTBX_CCP4_MONOMER_LIB", "CLIBD_MON", "MONLIB"):
        os.environ.setdefault(var, _MONLIB)

import iotbx.pdb  # noqa: E402
import numpy as np  # noqa: E402
from mmtbx.rotamer import rotamer_eval  # noqa: E402
from mmtbx.rotamer.n_dim_table import NDimTable  # noqa: E402
from mmtbx.validation.cbetadev import cbetadev  # noqa: E402
from mmtbx.validation.omegalyze import omegalyze  # noqa: E402
from mmtbx.validation.ramalyze import ramalyze  # noqa: E402
from mmtbx.validation.rotalyze import rotalyze  # noqa: E402

from emforge.geometry import _tables, cbeta_deviations, peptide_bonds, ramachandran, rotamers  # noqa: E402
from emforge.geometry.rotamers import GRID_TABLES  # noqa: E402
from emforge.geometry.torsions import CHI_ATOMS, chi_angles  # noqa: E402
from emforge.models import read_model  # noqa: E402

ROTA_DIR = DATA / "geometry" / "Top8000" / "Top8000_rotamer_pct_contour_grids"
RESULT = REPO / "benchmarks" / "results" / "geometry_vs_molprobity.md"
RAMA_CLASS_CCTBX = {0: "general", 1: "gly", 2: "cis_pro", 3: "trans_pro", 4: "pre_pro", 5: "ile_val"}
RAMA_CAT_CCTBX = {0: "outlier", 1: "allowed", 2: "favoured"}
ROTA_CAT_CCTBX = {"OUTLIER": "outlier", "Allowed": "allowed", "Favored": "favoured"}
OMEGA_CCTBX = {0: "trans", 1: "cis", 2: "twisted"}
VERSIONS = ("emforge", "numpy", "pandas", "gemmi", "cctbx-base")
#: uncommitted changes here are noted next to the commit
OWN_FILES = ["src/emforge/geometry", "src/emforge/data", "benchmarks/validate_geometry_vs_molprobity.py"]
DIRTY_NOTE = f" (uncommitted changes under {', '.join(OWN_FILES)})"
#: awkward real files (whole PDB entries or deposited cryo-EM models), named with why they are here
EXTRA_CASES = (
    ("pairs/antibody_antigen/3RJQ_r_b.pdb", "3RJQ antibody H+L (insertion codes)"),
    ("pairs/antibody_antigen/5CBA_r_b.pdb", "5CBA antibody (insertion codes, ligands)"),
    ("pairs/antibody_antigen/6A0Z_r_b.pdb", "6A0Z antibody (insertion codes, PCA)"),
    ("pairs/antibody_antigen/6AL0_l_b.pdb", "6AL0 antigen (insertion codes, SNN)"),
    ("pairs/antibody_antigen/6AL0_r_b.pdb", "6AL0 antibody (PCA N-terminus)"),
    ("pairs/antibody_antigen/3HI6_l_b.pdb", "3HI6 antigen (alternate conformers)"),
    ("pairs/antibody_antigen/4ETQ_r_b.pdb", "4ETQ antibody (ligands)"),
    ("maps/emd_5168/1j6z.pdb", "1J6Z G-actin (alternate conformers)"),
    ("pairs/mbp/1anf.pdb", "1ANF MBP (glucose, waters)"),
    ("maps/emd_2513/deposited_segment.pdb", "EMD-2513 deposited cryo-EM model"),
    ("maps/emd_5778/deposited_segment.pdb", "EMD-5778 TRPV1 cryo-EM model (3J5P)"),
    ("maps/3j9s_A/3j9sA_af2.pdb", "3J9S-A AlphaFold2 model"),
)
#: chain edited into awkward variants (written with gemmi into the temporary folder)
VARIANT_SOURCE = "chains/2ayo_A.pdb.gz"
_KEEP_TABLES: list = []  # strong references behind RotamerEval's weak-reference cache


# -- cctbx rotalyze on the Top8000 grid files ---------------------------------------------------

def install_cctbx_rotamer_tables(tmp: Path) -> list[str]:
    """Give cctbx's RotamerEval tables read by its own NDimTable reader; returns the types covered."""
    covered = []
    for aa, stem in list(rotamer_eval.aminoAcids.items()):
        f = ROTA_DIR / f"rota8000-{stem}.data"
        if not f.is_file():  # arg, lys
            del rotamer_eval.aminoAcids[aa]
            continue
        with open(f) as fh:
            ndt = NDimTable.createFromText(fh)
        _KEEP_TABLES.append(ndt)
        rotamer_eval.RotamerEval.aaTables[aa] = weakref.ref(ndt)
        covered.append(aa.upper())
    rotamer_eval.find_rotarama_data_dir = lambda optional=False: str(tmp)
    rotamer_eval.open_rotarama_dlite = lambda rotarama_data_dir=None: None
    return covered


# -- helpers -------------------------------------------------------------------------------------

def manifest() -> list[str]:
    with open(DATA / "chains" / "MANIFEST.tsv", newline="") as fh:
        return sorted(r["file"] for r in csv.DictReader(fh, delimiter="\t"))


def key(chain: str, resseq, icode: str) -> tuple[str, int, str]:
    return (str(chain).strip(), int(str(resseq).strip()), str(icode).strip())


def pct(k: int, n: int) -> float:
    return 100.0 * k / n if n else 0.0


def fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def make_variants(tmp: Path) -> list[tuple[Path, str]]:
    """2ayo_A as selenomethionine (HETATM MSE, SE) and as its mirror image named as D-amino acids."""
    import gemmi  # after cctbx (see the top of the file)

    from emforge.geometry.cbeta import D_AMINO_ACIDS
    src = DATA / VARIANT_SOURCE
    if not src.is_file():
        return []
    l_to_d = {v: k for k, v in D_AMINO_ACIDS.items()}
    out = []
    st = gemmi.read_structure(str(src))
    for res in st[0][0]:
        if res.name == "MET":
            res.name, res.het_flag = "MSE", "H"
            for atom in res:
                if atom.name == "SD":
                    atom.name, atom.element = "SE", gemmi.Element("Se")
    st.setup_entities()
    p = tmp / "2ayo_A_mse.pdb"
    st.write_pdb(str(p))
    out.append((p, "2ayo_A with Met as HETATM MSE (variant)"))
    st = gemmi.read_structure(str(src))
    for res in st[0][0]:
        res.name = l_to_d.get(res.name, res.name)
        for atom in res:
            atom.pos = gemmi.Position(atom.pos.x, atom.pos.y, -atom.pos.z)
    st.setup_entities()
    p = tmp / "2ayo_A_mirror_D.pdb"
    st.write_pdb(str(p))
    out.append((p, "2ayo_A mirrored, D-amino-acid names (variant)"))
    return out


# -- one chain -----------------------------------------------------------------------------------

def first_conformer(results) -> list:
    """cctbx results of the blank or first ("A") alternate conformer: what emforge reads."""
    return [r for r in results if str(getattr(r, "altloc", "") or "").strip() in ("", "A")]


def run_case(path: Path, tmp: Path, repeats: int, name: str | None = None) -> dict:
    pdb = tmp / path.name.removesuffix(".gz")
    data = path.read_bytes()
    pdb.write_bytes(gzip.decompress(data) if path.suffix == ".gz" else data)
    hier = iotbx.pdb.input(file_name=str(pdb)).construct_hierarchy()
    model = read_model(pdb)
    sink = io.StringIO()
    t = {}
    t["rama_cctbx"], rama_c = best_s(repeats, ramalyze, pdb_hierarchy=hier, outliers_only=False, out=sink, quiet=True)
    t["rota_cctbx"], rota_c = best_s(repeats, rotalyze, pdb_hierarchy=hier, outliers_only=False, out=sink, quiet=True)
    t["cb_cctbx"], cb_c = best_s(repeats, cbetadev, pdb_hierarchy=hier, outliers_only=False, out=sink, quiet=True)
    t["omega_cctbx"], om_c = best_s(repeats, omegalyze, pdb_hierarchy=hier, nontrans_only=False, out=sink, quiet=True)
    t["rama_ours"], (rama_s, rama_o) = best_s(repeats, ramachandran, model)
    t["rota_ours"], (rota_s, rota_o) = best_s(repeats, rotamers, model)
    t["cb_ours"], (cb_s, cb_o) = best_s(repeats, cbeta_deviations, model)
    t["omega_ours"], (om_s, om_o) = best_s(repeats, peptide_bonds, model)
    res: dict = {"name": name or path.name.removesuffix(".pdb.gz"), "n_res": len(rama_o), "times": t, "notes": []}
    notes = res["notes"]

    # Ramachandran
    ours = {key(r.chain_id, r.res_seq, r.ins_code): r for r in rama_o.itertuples() if r.rama_class is not None}
    theirs = {key(r.chain_id, r.resseq, r.icode): r for r in first_conformer(rama_c.results)}
    only_o, only_c = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    for k in only_o:
        notes.append(f"Rama: {k} evaluated by emforge only")
    for k in only_c:
        notes.append(f"Rama: {k} evaluated by cctbx only")
    dmax = 0.0
    n_cls = n_cat = 0
    for k in sorted(set(ours) & set(theirs)):
        o, c = ours[k], theirs[k]
        d = abs(o.rama_percentile - c.score / 100.0)
        dmax = max(dmax, d)
        if RAMA_CLASS_CCTBX[c.res_type] != o.rama_class:
            n_cls += 1
            notes.append(f"Rama class: {k} {o.res_name} emforge {o.rama_class} vs cctbx {RAMA_CLASS_CCTBX[c.res_type]}")
        if RAMA_CAT_CCTBX[c.rama_type] != o.rama_category:
            n_cat += 1
            notes.append(f"Rama category: {k} {o.res_name} emforge {o.rama_category} ({o.rama_percentile:.5f}) vs "
                         f"cctbx {RAMA_CAT_CCTBX[c.rama_type]} ({c.score / 100:.5f}); phi/psi {o.phi_deg:.2f}/"
                         f"{o.psi_deg:.2f} vs {c.phi:.2f}/{c.psi:.2f}")
    res["rama"] = {
        "n_o": rama_s["n_rama_residues"], "n_c": rama_c.n_total,
        "fav_o": rama_s["rama_favoured_pct"], "fav_c": rama_c.fav_percent,
        "out_o": rama_s["rama_outlier_pct"], "out_c": rama_c.out_percent,
        "pct_dmax": dmax, "n_class_diff": n_cls, "n_cat_diff": n_cat, "n_set_diff": len(only_o) + len(only_c),
    }

    # rotamers (grid types only: cctbx has no Arg/Lys tables here)
    ours = {key(r.chain_id, r.res_seq, r.ins_code): r for r in rota_o.itertuples() if r.rotamer_method == "grid"}
    rota_first = first_conformer(rota_c.results)
    theirs = {key(r.chain_id, r.resseq, r.icode): r for r in rota_first}
    only_o, only_c = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    for k in only_o:
        notes.append(f"Rotamer: {k} evaluated by emforge only")
    for k in only_c:
        notes.append(f"Rotamer: {k} evaluated by cctbx only")
    dmax = 0.0
    n_cat = 0
    for k in sorted(set(ours) & set(theirs)):
        o, c = ours[k], theirs[k]
        dmax = max(dmax, abs(o.rotamer_percentile - c.score / 100.0))
        if ROTA_CAT_CCTBX[c.evaluation] != o.rotamer_category:
            n_cat += 1
            notes.append(f"Rotamer category: {k} {o.res_name} emforge {o.rotamer_category} "
                         f"({o.rotamer_percentile:.5f}) vs cctbx {ROTA_CAT_CCTBX[c.evaluation]} ({c.score / 100:.5f})")
    n_c = len(rota_first)
    res["rota"] = {
        "n_o": rota_s["n_rotamer_residues_grid"], "n_c": n_c,
        "out_o": rota_s["rotamer_outlier_pct_grid"],
        "out_c": pct(sum(r.evaluation == "OUTLIER" for r in rota_first), n_c),
        "fav_o": rota_s["rotamer_favoured_pct_grid"],
        "fav_c": pct(sum(r.evaluation == "Favored" for r in rota_first), n_c),
        "out_all_o": rota_s["rotamer_outlier_pct"], "n_all_o": rota_s["n_rotamer_residues"],
        "n_arg_lys": rota_s["n_rotamer_central_values"],
        "pct_dmax": dmax, "n_cat_diff": n_cat, "n_set_diff": len(only_o) + len(only_c),
    }

    # C-beta
    ours = {key(r.chain_id, r.res_seq, r.ins_code): r for r in cb_o.itertuples() if np.isfinite(r.cbeta_deviation_A)}
    cb_first = first_conformer(cb_c.results)
    theirs = {key(r.chain_id, r.resseq, r.icode): r for r in cb_first}
    dmax = 0.0
    for k in sorted(set(ours) ^ set(theirs)):
        notes.append(f"C-beta: {k} evaluated by {'emforge' if k in ours else 'cctbx'} only")
    for k in sorted(set(ours) & set(theirs)):
        d = abs(ours[k].cbeta_deviation_A - theirs[k].deviation)
        dmax = max(dmax, d)
        if (ours[k].cbeta_deviation_A >= 0.25) != (theirs[k].deviation >= 0.25):
            notes.append(f"C-beta outlier: {k} emforge {ours[k].cbeta_deviation_A:.4f} vs cctbx "
                         f"{theirs[k].deviation:.4f}")
    res["cb"] = {"n_o": cb_s["n_cbeta_residues"], "n_c": len(cb_first),
                 "out_o": cb_s["cbeta_outliers"], "out_c": sum(r.deviation >= 0.25 for r in cb_first),
                 "dev_dmax": dmax,
                 "n_set_diff": len(set(ours) ^ set(theirs))}

    # peptides
    ours = {key(r.chain_id, r.res_seq, r.ins_code): r for r in om_o.itertuples() if r.peptide is not None}
    om_first = first_conformer(om_c.results)
    theirs = {key(r.chain_id, r.resseq, r.icode): r for r in om_first}
    dmax = 0.0
    for k in sorted(set(ours) ^ set(theirs)):
        notes.append(f"omega: {k} evaluated by {'emforge' if k in ours else 'cctbx'} only")
    n_cls = 0
    for k in sorted(set(ours) & set(theirs)):
        o, c = ours[k], theirs[k]
        dmax = max(dmax, abs((o.omega_deg - c.omega + 180.0) % 360.0 - 180.0))
        if OMEGA_CCTBX[c.omega_type] != o.peptide:
            n_cls += 1
            notes.append(f"omega class: {k} emforge {o.peptide} ({o.omega_deg:.2f}) vs cctbx "
                         f"{OMEGA_CCTBX[c.omega_type]} ({c.omega:.2f})")
    cis_c = sum(1 for r in om_first if r.omega_type == 1)
    tw_c = sum(1 for r in om_first if r.omega_type == 2)
    res["omega"] = {"n_o": om_s["n_peptides"], "n_c": len(om_first),
                    "cis_o": om_s["n_cis_pro"] + om_s["n_cis_nonpro"], "cis_c": cis_c,
                    "tw_o": om_s["n_twisted_pro"] + om_s["n_twisted_nonpro"], "tw_c": tw_c,
                    "omega_dmax": dmax, "n_class_diff": n_cls, "n_set_diff": len(set(ours) ^ set(theirs))}
    return res


# -- Arg/Lys calibration -----------------------------------------------------------------------

SYM = ("ASP", "GLU", "PHE", "TYR")


def _logdens(x, mean, esd, w, sym):
    d = (x[:, None, :] - mean[None] + 180.0) % 360.0 - 180.0
    if sym:
        d[..., -1] = (d[..., -1] + 90.0) % 180.0 - 90.0
    z = d / esd[None]
    lc = np.log(w)[None] - 0.5 * np.sum(z * z, 2) - np.sum(np.log(esd), 1)[None]
    mx = lc.max(1)
    return mx + np.log(np.exp(lc - mx[:, None]).sum(1))


def _mixture_pct(aa: str, x: np.ndarray, scale: float, n_samples: int = 300_000, seed: int = 1) -> np.ndarray:
    cv = _tables.central_values(aa)
    w = cv.freq_pct / cv.freq_pct.sum()
    esd = cv.chi_esd_deg * scale
    rng = np.random.default_rng(seed)
    comp = rng.choice(len(w), n_samples, p=w)
    s = cv.chi_mean_deg[comp] + rng.standard_normal((n_samples, cv.chi_mean_deg.shape[1])) * esd[comp]
    ref = np.sort(np.concatenate([_logdens(s[i:i + 20000], cv.chi_mean_deg, esd, w, aa in SYM)
                                  for i in range(0, n_samples, 20000)]))
    return np.searchsorted(ref, _logdens(x, cv.chi_mean_deg, esd, w, aa in SYM)) / n_samples


def calibrate(files: list[str]) -> dict:
    groups = {2: ["LEU", "ILE", "HIS", "TRP", "ASN", "ASP", "PHE", "TYR"], 3: ["MET", "GLN", "GLU"]}
    chis: dict[str, list] = {a: [] for g in groups.values() for a in g}
    for f in files:
        m = read_model(DATA / "chains" / f)
        c = chi_angles(m)["chi_deg"]
        names = m.res_name[m.residue_starts()]
        for a in chis:
            x = c[names == a, : len(CHI_ATOMS[a])]
            chis[a].append(x[np.isfinite(x).all(1)])
    chis = {a: np.concatenate(v) for a, v in chis.items()}
    out: dict = {"n_chains": len(files), "scale": {}, "rows": []}
    for nchi, group in groups.items():
        grid_out = {a: _tables.grid("rota_" + GRID_TABLES[a])(chis[a]) < 0.003 for a in group}
        n = sum(len(chis[a]) for a in group)
        target = sum(int(v.sum()) for v in grid_out.values()) / n
        lo, hi = 1.0, 2.0
        for _ in range(10):  # bisection on the pooled outlier rate
            mid = 0.5 * (lo + hi)
            rate = sum(int((_mixture_pct(a, chis[a], mid) < 0.003).sum()) for a in group) / n
            lo, hi = (mid, hi) if rate > target else (lo, mid)
        scale = round(0.5 * (lo + hi), 3)
        out["scale"][nchi] = scale
        for a in group:
            pm = _mixture_pct(a, chis[a], scale)
            pg = _tables.grid("rota_" + GRID_TABLES[a])(chis[a])
            out["rows"].append((a, nchi, len(chis[a]), 100 * np.mean(pg < 0.003), 100 * np.mean(pm < 0.003),
                                100 * np.mean((pg < 0.003) != (pm < 0.003)),
                                100 * np.mean((pg >= 0.02) != (pm >= 0.02)), scale))
    out["scale"][4] = round(out["scale"][3] + (out["scale"][3] - out["scale"][2]), 3)
    return out


# -- main ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-chains", type=int, default=24)
    ap.add_argument("--n-calibration", type=int, default=200, help="chains for the Arg/Lys calibration")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    load_start = load_average()
    files = manifest()
    rng = np.random.default_rng(args.seed)
    order = [files[i] for i in rng.permutation(len(files))]
    chosen, calib = order[: args.n_chains], order[args.n_chains: args.n_chains + args.n_calibration]
    cases = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        covered = install_cctbx_rotamer_tables(tmp)
        todo = [(DATA / "chains" / f, None, "chain") for f in chosen]
        todo += [(DATA / rel, label, "extra") for rel, label in EXTRA_CASES if (DATA / rel).is_file()]
        todo += [(p, label, "variant") for p, label in make_variants(tmp)]
        for path, label, kind in todo:
            r = run_case(path, tmp, args.repeats, label)
            r["kind"] = kind
            cases.append(r)
            print(f"{r['name']}: rama fav {r['rama']['fav_o']:.2f}/{r['rama']['fav_c']:.2f} out "
                  f"{r['rama']['out_o']:.2f}/{r['rama']['out_c']:.2f}; rota out {r['rota']['out_o']:.2f}/"
                  f"{r['rota']['out_c']:.2f}; cb {r['cb']['out_o']}/{r['cb']['out_c']}; cis {r['omega']['cis_o']}/"
                  f"{r['omega']['cis_c']} tw {r['omega']['tw_o']}/{r['omega']['tw_c']}; notes {len(r['notes'])}",
                  flush=True)
    cal = calibrate(calib) if calib else None
    if cal:
        print("calibration scales", cal["scale"], flush=True)
    text = report(args, cases, cal, covered, started, load_start)
    write_markdown(args.out, text)
    print(f"wrote {args.out}")
    return 0


def report(args, cases, cal, covered, started, load_start) -> str:
    cmd = "python benchmarks/validate_geometry_vs_molprobity.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("seed", args.seed), ("n_chains", args.n_chains),
                                                    ("n_calibration", args.n_calibration),
                                                    ("repeats", args.repeats)))
    L = [
        "# Geometry validation: emforge.geometry vs cctbx (MolProbity) ramalyze / rotalyze / cbetadev / omegalyze",
        "",
        f"- command: `.venv-bench/bin/{cmd}`",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- emforge commit: {git_commit(OWN_FILES, DIRTY_NOTE)}",
        f"- versions: {versions(VERSIONS, skip_missing=True)}",
        f"- seed: {args.seed} (choice and order of chains from ../shared/data/chains/MANIFEST.tsv); "
        f"{args.n_chains} chains compared, the next {args.n_calibration} in the same seeded order used for the "
        f"Arg/Lys calibration; plus {sum(c['kind'] == 'extra' for c in cases)} named awkward files (whole entries "
        "with several "
        "chains, insertion codes, ligands, modified residues, alternate conformers; deposited cryo-EM and AlphaFold "
        "models) and two edited variants of 2ayo_A (Met as HETATM MSE; mirror image with D-amino-acid names)",
        "- alternate conformers: emforge reads the first conformer only (`read_model`); cctbx's results are "
        "restricted to the blank/\"A\" conformer for the comparison (ramalyze counts only those itself)",
        "- peers: cctbx `mmtbx.validation.ramalyze/cbetadev/omegalyze` as shipped; `rotalyze` (unchanged code) on "
        "tables read by cctbx's own `NDimTable.createFromText` from the Top8000 `rota8000-*.data` files, covering "
        f"{', '.join(covered)} (no Arg/Lys grid exists in the data, so Arg/Lys are compared by nobody: emforge's "
        "Arg/Lys figures are excluded from the rotamer columns below and reported separately)",
        f"- timings: best of {args.repeats} per tool and chain, analysis only (model already read: emforge "
        "`AtomModel`, cctbx `pdb.hierarchy`), one thread each",
        load_line(load_start),
        "",
        "## Per chain",
        "",
        "Percentages are of the residues each tool evaluated; `d` = |emforge - cctbx| in percentage points. "
        "Rotamers: grid residue types only (all but Arg/Lys). C-beta: outlier counts (>= 0.25 Å). Peptides: "
        "cis / twisted counts.",
        "",
        "| case | residues | Rama n (ours/cctbx) | Rama fav % ours | cctbx | d | Rama out % ours | cctbx | d | "
        "rot n (ours/cctbx) | rot out % ours | cctbx | d | rot fav % ours | cctbx | d | C-beta out ours/cctbx | "
        "cis ours/cctbx | twisted ours/cctbx | residues differing (Rama cat / rot cat / sets) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    diffs = {"rama_fav": [], "rama_out": [], "rot_out": [], "rot_fav": [], "cb": [], "cis": [], "tw": []}
    for c in cases:
        ra, ro, cb, om = c["rama"], c["rota"], c["cb"], c["omega"]
        d = {"rama_fav": abs(ra["fav_o"] - ra["fav_c"]), "rama_out": abs(ra["out_o"] - ra["out_c"]),
             "rot_out": abs(ro["out_o"] - ro["out_c"]), "rot_fav": abs(ro["fav_o"] - ro["fav_c"]),
             "cb": abs(cb["out_o"] - cb["out_c"]), "cis": abs(om["cis_o"] - om["cis_c"]),
             "tw": abs(om["tw_o"] - om["tw_c"])}
        for k, v in d.items():
            diffs[k].append(v)
        L.append(
            f"| {c['name']} | {c['n_res']} | {ra['n_o']}/{ra['n_c']} | {fmt(ra['fav_o'])} | {fmt(ra['fav_c'])} | "
            f"{fmt(d['rama_fav'])} | {fmt(ra['out_o'])} | {fmt(ra['out_c'])} | {fmt(d['rama_out'])} | "
            f"{ro['n_o']}/{ro['n_c']} | {fmt(ro['out_o'])} | {fmt(ro['out_c'])} | {fmt(d['rot_out'])} | "
            f"{fmt(ro['fav_o'])} | {fmt(ro['fav_c'])} | {fmt(d['rot_fav'])} | {cb['out_o']}/{cb['out_c']} | "
            f"{om['cis_o']}/{om['cis_c']} | {om['tw_o']}/{om['tw_c']} | "
            f"{ra['n_cat_diff']} / {ro['n_cat_diff']} / "
            f"{ra['n_set_diff'] + ro['n_set_diff'] + cb['n_set_diff'] + om['n_set_diff']} |")

    def summ(k, unit="pp"):
        v = np.asarray(diffs[k], float)
        return f"mean {v.mean():.3f}, max {v.max():.3f} {unit}; within 0.5: {int(np.sum(v <= 0.5))}/{len(v)}"

    L.append(f"| **summary** ({len(cases)} cases) | | | | | {summ('rama_fav')} | | | {summ('rama_out')} | | | | "
             f"{summ('rot_out')} | | | {summ('rot_fav')} | max diff {max(diffs['cb']):.0f} | "
             f"max diff {max(diffs['cis']):.0f} | max diff {max(diffs['tw']):.0f} | |")
    L += ["", "## Agreement summary", "",
          "| metric | mean abs diff | max abs diff | cases within 0.5 pp (counts: equal) |",
          "|---|---:|---:|---:|"]
    for k, label, unit in (("rama_fav", "Rama favoured %", "pp"), ("rama_out", "Rama outlier %", "pp"),
                           ("rot_out", "rotamer outlier % (grid types)", "pp"),
                           ("rot_fav", "rotamer favoured % (grid types)", "pp"),
                           ("cb", "C-beta outliers (count)", ""), ("cis", "cis peptides (count)", ""),
                           ("tw", "twisted peptides (count)", "")):
        v = np.asarray(diffs[k], float)
        L.append(f"| {label} | {v.mean():.3f} | {v.max():.3f} | {int(np.sum(v <= (0.5 if unit else 0)))}/{len(v)} |")
    pd_rama = max(c["rama"]["pct_dmax"] for c in cases)
    pd_rota = max(c["rota"]["pct_dmax"] for c in cases)
    cb_d = max(c["cb"]["dev_dmax"] for c in cases)
    om_d = max(c["omega"]["omega_dmax"] for c in cases)
    n_rama = sum(min(c["rama"]["n_o"], c["rama"]["n_c"]) for c in cases)
    n_rota = sum(min(c["rota"]["n_o"], c["rota"]["n_c"]) for c in cases)
    L += ["", "Per residue, over all cases:", "",
          f"- Ramachandran: {n_rama} residues; max |percentile diff| {pd_rama:.2e}; class differences "
          f"{sum(c['rama']['n_class_diff'] for c in cases)}; category differences "
          f"{sum(c['rama']['n_cat_diff'] for c in cases)}; residues evaluated by one tool only "
          f"{sum(c['rama']['n_set_diff'] for c in cases)}",
          f"- rotamers (grid types): {n_rota} residues; max |percentile diff| {pd_rota:.2e}; category differences "
          f"{sum(c['rota']['n_cat_diff'] for c in cases)}; residues evaluated by one tool only "
          f"{sum(c['rota']['n_set_diff'] for c in cases)}",
          f"- C-beta: max |deviation diff| {cb_d:.2e} Å; residues evaluated by one tool only "
          f"{sum(c['cb']['n_set_diff'] for c in cases)}",
          f"- omega: max |omega diff| {om_d:.2e} deg; class differences "
          f"{sum(c['omega']['n_class_diff'] for c in cases)}; peptides evaluated by one tool only "
          f"{sum(c['omega']['n_set_diff'] for c in cases)}", ""]

    # timings
    tk = (("rama", "Ramachandran"), ("rota", "rotamers"), ("cb", "C-beta"), ("omega", "peptides"))
    L += ["## Timings", "",
          "Sum over the cases of the best-of-repeats time per case (ms); ratio = cctbx / emforge. cctbx's "
          "`rotalyze` sets up its side-chain/rotamer-name property files and a monomer-library server on every call "
          "(that is how the class runs; most of its time); the other cctbx classes walk the hierarchy in Python. "
          "emforge's time includes building the per-residue pandas table.", "",
          "| tool | emforge ms | cctbx ms | ratio | per-chain ratio geo-mean (min) |", "|---|---:|---:|---:|---:|"]
    for k, label in tk:
        o = np.array([c["times"][f"{k}_ours"] for c in cases]) * 1e3
        t = np.array([c["times"][f"{k}_cctbx"] for c in cases]) * 1e3
        r = t / o
        L.append(f"| {label} | {o.sum():.1f} | {t.sum():.1f} | {t.sum() / o.sum():.1f} | "
                 f"{geomean(r):.1f} ({r.min():.1f}) |")

    # Arg/Lys
    n_al = sum(c["rota"]["n_arg_lys"] for c in cases)
    L += ["", "## Arg/Lys (no peer)", "",
          f"emforge scored {n_al} Arg/Lys residues in these chains from the Top8000 central values (wrapped-Gaussian "
          "mixture percentile). Rotamer outlier % over all rotameric residues including them (emforge only), "
          "per chain: "
          + ", ".join(f"{c['name']} {c['rota']['out_all_o']:.2f}" for c in cases) + ".", "",
          ]
    if cal:
        L += [
            f"Calibration of the mixture's esd scale on {cal['n_chains']} other chains (residue types with both a "
            "grid and central values; scale chosen so the pooled mixture outlier rate equals the grid's):", "",
            f"- 2-chi types: {cal['scale'][2]}; 3-chi types: {cal['scale'][3]}; linear extrapolation to 4 chis "
            f"(Arg, Lys): {cal['scale'][4]} (shipped: {_tables.mixture_calibration('ARG')[2]})", "",
            "| type | chis | residues | grid outlier % | mixture outlier % | outlier status differs % | "
            "favoured status differs % | scale |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for a, nchi, n, g, m, dis, fdis, s in cal["rows"]:
            L.append(f"| {a} | {nchi} | {n} | {g:.2f} | {m:.2f} | {dis:.2f} | {fdis:.2f} | {s} |")
        L += ["", "The per-residue disagreement of the mixture with the grids is the expected accuracy of "
              "emforge's Arg/Lys verdicts; it is an estimate, not a comparison with MolProbity's own Arg/Lys "
              "grids, which are not available here."]

    # notes
    L += ["", "## Every residue that differs", ""]
    any_note = False
    for c in cases:
        for n in c["notes"]:
            L.append(f"- {c['name']}: {n}")
            any_note = True
    if not any_note:
        L.append("- none")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
