"""Benchmark: emforge covalent geometry, riding hydrogens and clashscore against peers.

Protocol: ../shared/BENCHMARKS.md. One process run measures ours and the peers on the same
real chains (seeded choice from ``../shared/data/chains``) and writes
``benchmarks/results/geometry_covalent_vs_peers.md``.

Comparisons
-----------
* Bond lengths / bond angles: ``emforge.geometry.covalent.covalent_geometry`` (Engh & Huber 1991
  ideal values, AlphaFold's table) against servalcat's ``util geom`` computed in-process
  (``Geom.show_model_stats``, CCP4 monomer library from the coot-headless-api wheel, the
  library's own ideal values and sigmas, links TRANS/PTRANS). Whole-model RMSD/RMSZ of both;
  and, on the restraints both programs define (matched by atom labels; servalcat run a second
  time with the outlier cut-off at Z = 0 so that it lists every restraint), the measured values
  (must agree to coordinate precision), the difference of the ideal values, and the RMSD of
  each program's deviations on the common set.
* Riding hydrogens: ``add_riding_hydrogens`` (electron-cloud X-H) against gemmi
  ``prepare_topology(..., HydrogenChange.ReAdd)`` with the same monomer library (its
  electron-cloud ``value_dist``), H matched by residue and atom name. "Rigid" hydrogens (every H
  whose position follows from the heavy atoms: CH, CH2, aromatic, planar NH/NH2, backbone H)
  are compared position by position; rotatable ones (CH3, NH3+, OH, SH) depend on the chosen
  rotation (ours are optimised against clashes, gemmi's follow library torsions) and are only
  counted. Coot's ``add_hydrogen_atoms`` is timed as a second peer.
* Clashscore: no MolProbity reference runs here: cctbx's ``clashscore`` needs the Probe
  executable (not built) and ``mmtbx.clashscore2`` (Probe2) stops in PDB interpretation with
  the Coot monomer library ("Found Hydrogen with no neighbors: ... HB3"; also with gemmi's
  hydrogens). The closest peer is Coot's ``get_atom_overlaps`` on the Coot-protonated model.
  Its rules differ from Probe's (its own radii, e.g. O 1.52 Å, and 1-4 pairs are not excluded),
  so it is not a clashscore; we report, on the very same Coot-protonated coordinates, the
  serious-clash pairs of both (overlap >= 0.4 Å, no H-bond pair) and how many of ours Coot also
  lists, plus our clashscore on our own hydrogens.

Run:  .venv-bench/bin/python benchmarks/validate_geometry_covalent_vs_peers.py [--seed 0] [--n-cases 24]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import gemmi
import numpy as np
from scipy import stats

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
    versions,
    write_markdown,
)

from emforge.geometry.clashes import clash_pairs, clashscore  # noqa: E402
from emforge.geometry.covalent import build_restraints, covalent_geometry  # noqa: E402
from emforge.geometry.hydrogens import add_riding_hydrogens  # noqa: E402
from emforge.models import AtomModel, from_gemmi, read_model, write_model  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "geometry_covalent_vs_peers.md"
ROTATABLE_H = {  # hydrogens whose position depends on a free rotation
    "ALA": {"HB1", "HB2", "HB3"}, "VAL": {"HG11", "HG12", "HG13", "HG21", "HG22", "HG23"},
    "LEU": {"HD11", "HD12", "HD13", "HD21", "HD22", "HD23"},
    "ILE": {"HG21", "HG22", "HG23", "HD11", "HD12", "HD13"}, "THR": {"HG1", "HG21", "HG22", "HG23"},
    "MET": {"HE1", "HE2", "HE3"}, "LYS": {"HZ1", "HZ2", "HZ3"}, "SER": {"HG"}, "CYS": {"HG"}, "TYR": {"HH"},
}
N_TERMINAL_H = {"H", "H1", "H2", "H3"}
VERSIONS = ("emforge", "numpy", "scipy", "gemmi", "servalcat", "coot-headless-api", "cctbx-base")
OWN_FILES = ["src/emforge/geometry"]  # uncommitted changes here are noted next to the commit


def monlib_dir() -> str:
    import coot_headless_api

    return str(Path(coot_headless_api.__file__).parent / "share" / "coot" / "lib" / "data" / "monomers")


@contextlib.contextmanager
def quiet():
    """Silence stdout/stderr at the file-descriptor level (Coot and servalcat print a lot)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# -- cases -------------------------------------------------------------------------------------

def choose_cases(seed: int, n: int, min_res: int, max_res: int) -> list[dict]:
    with open(DATA / "chains" / "MANIFEST.tsv") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if min_res <= int(r["n_residues"]) <= max_res]
    rows.sort(key=lambda r: r["file"])
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(picked)]


# -- servalcat ---------------------------------------------------------------------------------

def servalcat_geom(path: str, monlib: str, sigma: float = 5.0):
    """servalcat ``util geom`` in-process: (summary DataFrame, outlier tables with |Z| >= sigma)."""
    import argparse as ap
    import importlib

    importlib.import_module("servalcat.utils")  # before servalcat.refine, which imports it circularly
    from servalcat.refine.refine import Geom, RefineParams, load_config
    from servalcat.refmac import refmac_keywords
    from servalcat.utils import fileio, restraints
    from servalcat.utils import model as smodel

    params = refmac_keywords.parse_keywords([])
    cfg = load_config(None, ap.Namespace(write_trajectory=False, fix_xyz=False), params)
    st = fileio.read_structure(path)
    st.remove_hydrogens()
    ml = restraints.load_monomer_library(st, monomer_dir=monlib, cif_files=None, stop_for_unknowns=True,
                                         params=params)
    smodel.setup_entities(st, clear=True, force_subchain_names=True, overwrite_entity_type=True)
    restraints.find_and_fix_links(st, ml, find_metal_links=False, add_found=False)
    topo, _ = restraints.prepare_topology(st, ml, h_change=gemmi.HydrogenChange.NoChange, check_hydrogen=True,
                                          params=params)
    geom = Geom(st, topo, ml, RefineParams(st, refine_xyz=True), cfg, params=params, use_nucleus=False)
    for k in geom.outlier_sigmas:
        geom.outlier_sigmas[k] = sigma
    geom.setup_nonbonded()
    ret = geom.show_model_stats(show_outliers=True)
    return ret["summary"], ret["outliers"]


def our_labels(m: AtomModel) -> np.ndarray:
    ins = np.char.add(m.res_seq.astype(str), m.ins_code.astype(str))
    return np.char.add(np.char.add(np.char.add(np.char.add(np.char.add(
        m.chain_id.astype(str), "/"), m.res_name.astype(str)), " "), ins), np.char.add("/", m.atom_name.astype(str)))


def matched_restraints(m: AtomModel, outliers) -> dict:
    """Compare ours and servalcat's per-restraint values on the restraints both define."""
    rst = build_restraints(m)
    lab = our_labels(m)
    x = m.coords
    from emforge.geometry.covalent import bond_angles_deg, bond_lengths

    ours_b = {frozenset((lab[i], lab[j])): (v, ideal) for (i, j), v, ideal in
              zip(rst.bond_atoms, bond_lengths(x, rst.bond_atoms), rst.bond_ideal_A)}
    ours_a = {(frozenset((lab[i], lab[k])), lab[j]): (v, ideal) for (i, j, k), v, ideal in
              zip(rst.angle_atoms, bond_angles_deg(x, rst.angle_atoms), rst.angle_ideal_deg)}
    out = {}
    for kind, ours, key in (("bond", ours_b, lambda r: frozenset((r["atom1"], r["atom2"]))),
                            ("angle", ours_a, lambda r: (frozenset((r["atom1"], r["atom3"])), r["atom2"]))):
        tab = outliers[kind]
        vd, idd, dev_o, dev_s = [], [], [], []
        for r in tab.to_dict(orient="records"):
            k = key(r)
            if k in ours:
                v, ideal = ours[k]
                vd.append(abs(v - r["value"]))
                idd.append(abs(ideal - r["ideal"]))
                dev_o.append(v - ideal)
                dev_s.append(r["value"] - r["ideal"])
        n = len(vd)
        out[kind] = {
            "n_common": n, "n_ours": len(ours), "n_serv": len(tab),
            "max_value_diff": float(np.max(vd)) if n else float("nan"),
            "mean_ideal_diff": float(np.mean(idd)) if n else float("nan"),
            "rmsd_ours_common": float(np.sqrt(np.mean(np.square(dev_o)))) if n else float("nan"),
            "rmsd_serv_common": float(np.sqrt(np.mean(np.square(dev_s)))) if n else float("nan"),
        }
    return out


# -- hydrogens ---------------------------------------------------------------------------------

def gemmi_hydrogens(path: str, monlib: str) -> AtomModel:
    st = gemmi.read_structure(path)
    st.setup_entities()
    st.remove_alternative_conformations()
    st.remove_hydrogens()
    ml = gemmi.MonLib()
    ml.read_monomer_lib(monlib, st[0].get_all_residue_names())
    gemmi.prepare_topology(st, ml, h_change=gemmi.HydrogenChange.ReAdd, warnings=None, ignore_unknown_links=True)
    return from_gemmi(st[0])


def compare_hydrogens(ours: AtomModel, peer: AtomModel) -> dict:
    def keyed(m):
        hs = np.flatnonzero(m.is_hydrogen())
        return {(m.chain_id[i], int(m.res_seq[i]), m.ins_code[i], m.atom_name[i]): i for i in hs}

    ko, kp = keyed(ours), keyed(peer)
    common = sorted(set(ko) & set(kp))
    rigid, rot, labels = [], 0, []
    for k in common:
        i = ko[k]
        res, name = ours.res_name[i], k[3]
        if name in ROTATABLE_H.get(str(res), ()) or name in N_TERMINAL_H - {"H"} or (name == "H" and _is_nterm(
                ours, i)):
            rot += 1
            continue
        rigid.append(np.linalg.norm(ours.coords[i] - peer.coords[kp[k]]))
        labels.append(f"{k[0]}:{res}{k[1]}{k[2]}:{name}")
    rigid = np.asarray(rigid)
    worst = labels[int(np.argmax(rigid))] if len(rigid) else ""
    return {"n_ours": len(ko), "n_peer": len(kp), "n_common": len(common), "n_rigid": len(rigid), "n_rotatable": rot,
            "rigid_median_A": float(np.median(rigid)) if len(rigid) else float("nan"),
            "rigid_p95_A": float(np.percentile(rigid, 95)) if len(rigid) else float("nan"),
            "rigid_max_A": float(rigid.max()) if len(rigid) else float("nan"),
            "rigid_within_0.1A": float(np.mean(rigid < 0.1)) if len(rigid) else float("nan"),
            "rigid_worst": worst}


def _is_nterm(m: AtomModel, i: int) -> bool:
    sel = m.residue_index == m.residue_index[i]
    return bool(np.isin(["H2", "H3"], m.atom_name[sel]).any())


# -- Coot ----------------------------------------------------------------------------------------

def coot_overlaps(mc, imol, coot_model: AtomModel) -> dict:
    """Coot's atom-overlap list on ``coot_model``'s atoms: {frozenset(i, j): (r1 + r2 - d, is_h_bond)}."""
    pos = {(str(c), int(s), str(n).strip()): k for k, (c, s, n) in enumerate(
        zip(coot_model.chain_id, coot_model.res_seq, coot_model.atom_name))}
    out = {}
    for o in mc.get_atom_overlaps(imol):
        a = pos.get((o.atom_spec_1.chain_id, o.atom_spec_1.res_no, o.atom_spec_1.atom_name.strip()))
        b = pos.get((o.atom_spec_2.chain_id, o.atom_spec_2.res_no, o.atom_spec_2.atom_name.strip()))
        if a is None or b is None:
            continue
        d = np.linalg.norm(coot_model.coords[a] - coot_model.coords[b])
        out[frozenset((a, b))] = (o.r_1 + o.r_2 - d, bool(o.is_h_bond))
    return out


# -- main ------------------------------------------------------------------------------------------

def fmt(v, nd=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-cases", type=int, default=24)
    ap.add_argument("--min-residues", type=int, default=40)
    ap.add_argument("--max-residues", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))
    monlib = monlib_dir()
    os.environ.setdefault("MONLIB", monlib)
    load_start = load_average()
    cases = choose_cases(args.seed, args.n_cases, args.min_residues, args.max_residues)
    args.out = args.out.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="emforge_geom_bench_"))
    os.chdir(tmp)  # Coot writes a coot-backup/ folder into the working directory
    import coot_headless_api

    with quiet():
        mc = coot_headless_api.molecules_container_t(False)
    # warm-up (imports, caches) outside the timings
    m0 = read_model(DATA / "chains" / cases[0]["file"])
    covalent_geometry(m0)
    clashscore(add_riding_hydrogens(m0))
    results = []
    for row in cases:
        name = row["file"].removesuffix(".pdb.gz")
        path = str(DATA / "chains" / row["file"])
        plain = tmp / f"{name}.pdb"
        write_model(plain, read_model(path))
        r = {"case": name}
        r["t_read"], m = best_ms(args.repeats, read_model, plain)
        r.update({"n_res": m.n_residues, "n_atoms": len(m)})
        # covalent geometry
        r["t_cov_ours"], (cov, _) = best_ms(args.repeats, covalent_geometry, m)
        with quiet():
            t = time.perf_counter()
            summ, _ = servalcat_geom(str(plain), monlib)
            r["t_cov_serv"] = 1000.0 * (time.perf_counter() - t)
            _, every = servalcat_geom(str(plain), monlib, sigma=0.0)
        r.update({"bond_rmsz": cov["bond_rmsz"], "angle_rmsz": cov["angle_rmsz"], "bond_rmsd": cov["bond_rmsd_A"],
                  "angle_rmsd": cov["angle_rmsd_deg"], "n_bonds": cov["n_bonds"], "n_angles": cov["n_angles"],
                  "bond_out": cov["bond_outliers"], "angle_out": cov["angle_outliers"]})
        sb, sa = summ.loc["Bond distances, non H"], summ.loc["Bond angles, non H"]
        r.update({"s_bond_rmsz": float(sb["r.m.s.Z"]), "s_angle_rmsz": float(sa["r.m.s.Z"]),
                  "s_bond_rmsd": float(sb["r.m.s.d."]), "s_angle_rmsd": float(sa["r.m.s.d."]),
                  "s_n_bonds": int(sb["N restraints"]), "s_n_angles": int(sa["N restraints"])})
        r["match"] = matched_restraints(m, every)
        # hydrogens
        r["t_h_ours"], ours_h = best_ms(args.repeats, add_riding_hydrogens, m)
        r["t_h_ours_fixed"], _ = best_ms(args.repeats, add_riding_hydrogens, m, optimize_rotatable=False)
        with quiet():
            r["t_h_gemmi"], gem_h = best_ms(args.repeats, gemmi_hydrogens, str(plain), monlib)
        r["h_vs_gemmi"] = compare_hydrogens(ours_h, gem_h)
        # clashscore: ours on our H, ours and Coot on Coot's H
        r["t_clash_ours"], (cs, _) = best_ms(args.repeats, clashscore, ours_h)
        r["clashscore"], r["n_clashes"] = cs["clashscore"], cs["n_clashes"]
        r["clashscore_gemmi_h"] = clashscore(gem_h)[0]["clashscore"]
        with quiet():
            imol = mc.read_pdb(str(plain))
            t = time.perf_counter()
            mc.add_hydrogen_atoms(imol)
            r["t_h_coot"] = 1000.0 * (time.perf_counter() - t)
            coot_h_path = tmp / f"{name}_cootH.pdb"
            mc.write_coordinates(imol, str(coot_h_path))
            t = time.perf_counter()
            mc.get_atom_overlaps(imol)
            r["t_overlaps_coot"] = 1000.0 * (time.perf_counter() - t)
        coot_h = read_model(coot_h_path)
        with quiet():
            coot = coot_overlaps(mc, imol, coot_h)
            mc.close_molecule(imol)
        counted = clash_pairs(coot_h, overlap_A=1e-9)  # every pair our rules count, any overlap
        counted = {frozenset((a, b)): ov for a, b, ov in zip(counted["atom_1"], counted["atom_2"],
                                                             counted["overlap_A"])}
        ours_serious = {k for k, ov in counted.items() if ov >= 0.4}
        coot_serious = {k for k, (ov, hb) in coot.items() if ov >= 0.4 and not hb}
        r["clashscore_coot_h"] = clashscore(coot_h)[0]["clashscore"]
        r["n_ours_coot_h"] = len(ours_serious)
        r["n_ours_in_coot_list"] = len(ours_serious & set(coot))
        missing = ours_serious - set(coot)
        r["n_missing_adjacent"] = sum(abs(int(coot_h.residue_index[a]) - int(coot_h.residue_index[b])) == 1
                                      for a, b in (tuple(k) for k in missing))
        r["n_coot_pairs"] = len(coot_serious)
        r["n_coot_excluded"] = len(coot_serious - set(counted))
        r["n_common_pairs"] = len(coot_serious & ours_serious)
        r["coot_h_n"] = int(coot_h.is_hydrogen().sum())
        results.append(r)
        print(f"{name}: {len(m)} atoms; bond RMSZ {fmt(r['bond_rmsz'])} (servalcat {fmt(r['s_bond_rmsz'])}), "
              f"clashscore {fmt(r['clashscore'], 2)}; {r['t_cov_ours']:.1f} vs {r['t_cov_serv']:.0f} ms", flush=True)
    load_end = load_average()
    write_report(args, command, results, load_start, load_end)
    return 0


def write_report(args, command, results, load_start, load_end) -> None:
    def col(key, sub=None):
        return np.array([(r[key][sub] if sub else r[key]) for r in results], float)

    lines = [
        "# Covalent geometry, riding hydrogens, clashscore: emforge vs servalcat / gemmi / Coot", "",
        f"- command: `{command}` (run with `.venv-bench/bin/python`)",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- emforge commit: {git_commit(OWN_FILES, ' (src/emforge/geometry has uncommitted changes)')}",
        f"- versions: {versions(VERSIONS)}",
        f"- seed: {args.seed} (choice of {len(results)} chains with {args.min_residues}-{args.max_residues} residues "
        f"from `../shared/data/chains`); timings: best of {args.repeats} after a warm-up call for emforge and "
        "gemmi; servalcat and Coot: one call (topology set-up included, as `servalcat util geom` does)",
        "- monomer library for servalcat, gemmi and Coot: the CCP4 library in the coot-headless-api wheel",
        load_line(load_start, load_end, "(shared cores: treat times as ±2x)"),
        "",
        "## Bond lengths and angles (heavy atoms): emforge (Engh & Huber 1991) vs servalcat `util geom` "
        "(CCP4 monomer library)", "",
        "RMSZ differ by construction: the CCP4 library's sigmas are about half of Engh & Huber's (bond sigma "
        "mostly 0.010-0.013 Å vs 0.013-0.026 Å), and the libraries' ideal values differ. RMSD (Å, degrees) "
        "depends much less on the library. `common` columns use only the restraints both programs define "
        "(matched by atom labels): `max |Δvalue|` checks that both measure the same quantity; RMSD "
        "ours/serv on the common set isolates the effect of the ideal values.", "",
        "| case | atoms | bonds ours/serv | bond RMSZ ours | bond RMSZ serv | bond RMSD Å ours | bond RMSD Å serv "
        "| angles ours/serv | angle RMSZ ours | angle RMSZ serv | angle RMSD ° ours | angle RMSD ° serv "
        "| common bonds | max \\|Δvalue\\| Å | mean \\|Δideal\\| Å | common angles | max \\|Δvalue\\| ° "
        "| mean \\|Δideal\\| ° | outliers (>4σ) b/a | ms ours | ms ours + read | ms serv | ratio serv/(ours + read) |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        mb, ma = r["match"]["bond"], r["match"]["angle"]
        lines.append(
            f"| {r['case']} | {r['n_atoms']} | {r['n_bonds']}/{r['s_n_bonds']} | {fmt(r['bond_rmsz'])} | "
            f"{fmt(r['s_bond_rmsz'])} | {fmt(r['bond_rmsd'], 4)} | {fmt(r['s_bond_rmsd'], 4)} | "
            f"{r['n_angles']}/{r['s_n_angles']} | {fmt(r['angle_rmsz'])} | {fmt(r['s_angle_rmsz'])} | "
            f"{fmt(r['angle_rmsd'], 2)} | {fmt(r['s_angle_rmsd'], 2)} | {mb['n_common']} | "
            f"{mb['max_value_diff']:.1e} | {fmt(mb['mean_ideal_diff'], 4)} | {ma['n_common']} | "
            f"{ma['max_value_diff']:.1e} | {fmt(ma['mean_ideal_diff'], 2)} | {r['bond_out']}/{r['angle_out']} | "
            f"{r['t_cov_ours']:.1f} | {r['t_cov_ours'] + r['t_read']:.1f} | {r['t_cov_serv']:.0f} | "
            f"{r['t_cov_serv'] / (r['t_cov_ours'] + r['t_read']):.0f} |")
    br, sbr = col("bond_rmsd"), col("s_bond_rmsd")
    ar, sar = col("angle_rmsd"), col("s_angle_rmsd")
    bz, sbz = col("bond_rmsz"), col("s_bond_rmsz")
    az, saz = col("angle_rmsz"), col("s_angle_rmsz")
    tcov = col("t_cov_serv") / (col("t_cov_ours") + col("t_read"))
    p_cov = stats.ttest_rel(np.log(col("t_cov_ours") + col("t_read")), np.log(col("t_cov_serv"))).pvalue
    vmax_b = max(r["match"]["bond"]["max_value_diff"] for r in results)
    vmax_a = max(r["match"]["angle"]["max_value_diff"] for r in results)
    lines.append(
        f"| **summary** ({len(results)} cases) | | | median {np.median(bz):.3f} | median {np.median(sbz):.3f} | "
        f"median {np.median(br):.4f} | median {np.median(sbr):.4f} | | median {np.median(az):.3f} | "
        f"median {np.median(saz):.3f} | median {np.median(ar):.2f} | median {np.median(sar):.2f} | | "
        f"max {vmax_b:.1e} | | | max {vmax_a:.1e} | | | | | | geo-mean {geomean(tcov):.0f} |")
    rb_o = np.array([r["match"]["bond"]["rmsd_ours_common"] for r in results])
    rb_s = np.array([r["match"]["bond"]["rmsd_serv_common"] for r in results])
    ra_o = np.array([r["match"]["angle"]["rmsd_ours_common"] for r in results])
    ra_s = np.array([r["match"]["angle"]["rmsd_serv_common"] for r in results])
    lines += [
        "",
        f"- Agreement across cases: Pearson r of bond RMSD ours vs servalcat {np.corrcoef(br, sbr)[0, 1]:.3f}, "
        f"angle RMSD {np.corrcoef(ar, sar)[0, 1]:.3f}; bond RMSZ {np.corrcoef(bz, sbz)[0, 1]:.3f}, angle RMSZ "
        f"{np.corrcoef(az, saz)[0, 1]:.3f}. Median ratio ours/servalcat: bond RMSD {np.median(br / sbr):.3f}, "
        f"angle RMSD {np.median(ar / sar):.3f}, bond RMSZ {np.median(bz / sbz):.3f}, angle RMSZ "
        f"{np.median(az / saz):.3f}.",
        f"- On the common restraints, RMSD with our ideal values / with servalcat's: bonds median "
        f"{np.median(rb_o):.4f} / {np.median(rb_s):.4f} Å, angles median {np.median(ra_o):.2f} / "
        f"{np.median(ra_s):.2f}°; measured values agree to {max(vmax_b, vmax_a):.1e} (Å or °).",
        "- Restraint counts differ by design: servalcat also restrains C-OXT, O-C-N of the peptide and the "
        "angles around OXT; ours only what the Engh & Huber table and the peptide link define "
        "(C-N, CA-C-N, C-N-CA).",
        f"- Time, covalent geometry (ours including reading the PDB file with emforge, as servalcat's time "
        f"includes reading it and the monomer library): servalcat/ours geo-mean "
        f"{geomean(tcov):.0f}x, paired t-test on log time p = {p_cov:.1e}.",
        "",
        "## Riding hydrogens: emforge vs gemmi (ReAdd, CCP4 monomer library) and Coot", "",
        "`rigid` = hydrogens fixed by the heavy atoms (all but CH3, NH3+, OH, SH); distance between our "
        "position and gemmi's, same name. Both use electron-cloud X-H distances (ours: Reduce's 0.97/0.93/"
        "0.86/0.89/0.84/1.20 Å; gemmi: the library's `value_dist`, e.g. C-H 0.97-0.99, N-H 0.86-0.89, "
        "aromatic C-H 0.93-0.94), so part of the difference is the X-H length itself. gemmi names all "
        "hydrogens of both His nitrogens (HD1 and HE2) and places N-terminal H as H/H2/H3.", "",
        "| case | H ours | H gemmi | H Coot | common | rigid | rigid median Å | rigid p95 Å | rigid max Å "
        "| rigid < 0.1 Å | ms ours | ms ours (no rotor opt.) | ms gemmi | ms Coot |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        h = r["h_vs_gemmi"]
        lines.append(f"| {r['case']} | {h['n_ours']} | {h['n_peer']} | {r['coot_h_n']} | {h['n_common']} | "
                     f"{h['n_rigid']} | {fmt(h['rigid_median_A'])} | {fmt(h['rigid_p95_A'])} | "
                     f"{fmt(h['rigid_max_A'])} | {100 * h['rigid_within_0.1A']:.1f}% | {r['t_h_ours']:.1f} | "
                     f"{r['t_h_ours_fixed']:.1f} | {r['t_h_gemmi']:.1f} | {r['t_h_coot']:.1f} |")
    med = np.array([r["h_vs_gemmi"]["rigid_median_A"] for r in results])
    p95 = np.array([r["h_vs_gemmi"]["rigid_p95_A"] for r in results])
    w01 = np.array([r["h_vs_gemmi"]["rigid_within_0.1A"] for r in results])
    th = col("t_h_ours")
    lines += [
        f"| **summary** | | | | | | median {np.median(med):.3f} | median {np.median(p95):.3f} | "
        f"max {max(r['h_vs_gemmi']['rigid_max_A'] for r in results):.3f} | median {100 * np.median(w01):.1f}% | "
        f"median {np.median(th):.1f} | median {np.median(col('t_h_ours_fixed')):.1f} | "
        f"median {np.median(col('t_h_gemmi')):.1f} | median {np.median(col('t_h_coot')):.1f} |",
        "",
        "- Largest rigid-H differences (case: hydrogen, Å): " + "; ".join(
            f"{r['case']}: {r['h_vs_gemmi']['rigid_worst']} {r['h_vs_gemmi']['rigid_max_A']:.2f}"
            for r in sorted(results, key=lambda r: -r["h_vs_gemmi"]["rigid_max_A"])[:4]) + ". Backbone H of "
        "a residue that follows a chain break has no C(i-1) to orient it (we place it like Reduce, staggered "
        "to C); HA differences of 0.1-0.3 Å come from distorted CA geometry, where we point HA along "
        "-(u_N + u_C + u_CB) and gemmi fits the library angles.",
        f"- H counts: ours equal Coot's in {sum(r['h_vs_gemmi']['n_ours'] == r['coot_h_n'] for r in results)} of "
        f"{len(results)} cases; every one of ours has a gemmi namesake in "
        f"{sum(r['h_vs_gemmi']['n_ours'] == r['h_vs_gemmi']['n_common'] for r in results)} cases. gemmi adds "
        "more: H on non-standard residues/ligands and on both His nitrogens (ours: HE2 only, by default).",
        f"- Time, hydrogens (with rotor optimisation): gemmi/ours geo-mean "
        f"{geomean(col('t_h_gemmi') / th):.2f}x; without optimisation "
        f"{geomean(col('t_h_gemmi') / col('t_h_ours_fixed')):.1f}x; Coot/ours "
        f"{geomean(col('t_h_coot') / th):.2f}x (gemmi and Coot do not optimise rotors).",
        "",
        "## Clashscore: emforge vs Coot overlaps (no MolProbity/Probe reference can run here)", "",
        "`ours` = emforge clashscore on emforge hydrogens (rotors optimised); `ours@gemmi-H`, `ours@Coot-H` "
        "= emforge clashscore on gemmi's / Coot's hydrogens. Pair columns are on the Coot-protonated "
        "coordinates: our serious clashes and how many of them Coot's overlap list holds (it lists every "
        "contact, with its own radii); Coot's non-H-bond overlaps r1 + r2 - d >= 0.4 Å with Coot's radii, "
        "how many of those our rules exclude (<= 3 bonds apart, <= 4 with H, or a donor-acceptor pair) "
        "and how many are serious clashes for us too.", "",
        "| case | atoms+H | clashscore ours | n clashes | ours@gemmi-H | ours@Coot-H | pairs ours@Coot-H "
        "| in Coot's list | Coot >= 0.4 | Coot, excluded by Probe rules | common | ms ours | ms Coot overlaps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['case']} | {r['h_vs_gemmi']['n_ours'] + r['n_atoms']} | {fmt(r['clashscore'], 2)} | "
                     f"{r['n_clashes']} | {fmt(r['clashscore_gemmi_h'], 2)} | {fmt(r['clashscore_coot_h'], 2)} | "
                     f"{r['n_ours_coot_h']} | {r['n_ours_in_coot_list']} | {r['n_coot_pairs']} | "
                     f"{r['n_coot_excluded']} | {r['n_common_pairs']} | "
                     f"{r['t_clash_ours']:.1f} | {r['t_overlaps_coot']:.1f} |")
    tclash = col("t_overlaps_coot") / col("t_clash_ours")
    lines += [
        f"| **summary** | | median {np.median(col('clashscore')):.2f} | | median "
        f"{np.median(col('clashscore_gemmi_h')):.2f} | median {np.median(col('clashscore_coot_h')):.2f} | "
        f"{int(col('n_ours_coot_h').sum())} | {int(col('n_ours_in_coot_list').sum())} | "
        f"{int(col('n_coot_pairs').sum())} | {int(col('n_coot_excluded').sum())} | "
        f"{int(col('n_common_pairs').sum())} | median {np.median(col('t_clash_ours')):.1f} | "
        f"median {np.median(col('t_overlaps_coot')):.1f} (Coot/ours geo-mean "
        f"{geomean(tclash):.1f}x) |",
        "",
        f"- Of our {int(col('n_ours_coot_h').sum())} serious clashes (on Coot's hydrogens), "
        f"{int(col('n_ours_in_coot_list').sum())} are in Coot's overlap list; the "
        f"{int(col('n_ours_coot_h').sum() - col('n_ours_in_coot_list').sum())} missing ones include "
        f"{int(col('n_missing_adjacent').sum())} between sequence-adjacent residues: contacts across the "
        "peptide bond that Coot does not list (e.g. O(i)...C(i+1), H(i)...H(i+1), HB(i)...HD of Pro(i+1)) "
        "and that Probe's 3/4-bond rule counts.",
        f"- Our clashscore on gemmi's or Coot's hydrogens is higher than on our own (median "
        f"{np.median(col('clashscore_gemmi_h')):.2f} and {np.median(col('clashscore_coot_h')):.2f} vs "
        f"{np.median(col('clashscore')):.2f}): their CH3/NH3+/OH hydrogens are not turned away from clashes.",
        "",
        "Why no clashscore cross-check: cctbx `molprobity.clashscore` needs the Probe executable (not "
        "built in cctbx-base wheels) and `mmtbx.clashscore2`/`mmtbx.probe2` need cctbx's own monomer "
        "library; with the Coot wheel's CCP4 library, PDB interpretation stops at the first CH2 hydrogen "
        "(\"Found Hydrogen with no neighbors: A 3 ASN HB3\", with our and with gemmi's hydrogens). Coot's "
        "overlap list is the only independent contact calculation available. It finds every pair we call "
        "a serious clash (column `in Coot's list`), but it is not a clashscore: its radii differ (every H "
        "1.05 Å where Probe gives H on carbon 1.22 Å; O 1.52 Å; all C 1.70 Å), so fewer H...H contacts reach "
        "0.4 Å, and it keeps 1-4 pairs (e.g. O...CG1 of Val, C...CB across a disulfide) that Probe excludes.",
    ]
    write_markdown(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
