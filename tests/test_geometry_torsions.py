"""Tests for emforge.geometry: dihedrals, Ramachandran, rotamers, C-beta deviation, peptides.

References are independent of emforge: analytic constructions, gemmi's geometry functions, and the
raw Top8000 text files in ../shared/data/geometry (the grid values at bin centres must come back
unchanged). The comparison with cctbx/MolProbity itself is benchmarks/validate_geometry_vs_molprobity.py
(cctbx is not in the test environment).
"""

from __future__ import annotations

import json
import math

import gemmi
import numpy as np
import pandas as pd
import pytest
from conftest import require_data

from emforge.geometry import (
    _tables,
    backbone_torsions,
    cbeta_deviations,
    chi_angles,
    dihedral_deg,
    peptide_bonds,
    ramachandran,
    rotamers,
)
from emforge.geometry.cbeta import ideal_cbeta, place_atom
from emforge.geometry.peptides import classify_omega
from emforge.geometry.ramachandran import RAMA_CLASSES, rama_percentile
from emforge.geometry.rotamers import nearest_rotamer, rotamer_percentile
from emforge.models import AtomModel, read_model

TOP8000 = ("geometry", "Top8000")
RAMA_FILES = {
    "general": "rama8000-general-noGPIVpreP.data", "gly": "rama8000-gly-sym.data",
    "ile_val": "rama8000-ileval-nopreP.data", "pre_pro": "rama8000-prepro-noGP.data",
    "trans_pro": "rama8000-transpro.data", "cis_pro": "rama8000-cispro.data",
}


# -- builders -----------------------------------------------------------------------------------

def _place(a, b, c, d, ang, dih):
    return place_atom(np.asarray(a)[None], np.asarray(b)[None], np.asarray(c)[None], d, ang, dih)[0]


def build_chain(res_names, phi, psi, omega, chis=None, chain_id="A", start=1, drop=()):
    """Poly-peptide with the given torsions (degrees; phi[0], psi[-1], omega[0] unused).

    ``chis``: {residue index: [chi1, ...]} for side chains (Leu, Lys, Asp, Val, Pro supported);
    every non-Gly residue gets a CB. ``drop``: (residue index, atom name) pairs to leave out.
    """
    n = len(res_names)
    chis = chis or {}
    atoms = []  # (res index, name, element, xyz)
    N = np.zeros(3)
    CA = np.array([1.458, 0.0, 0.0])
    C = CA + 1.525 * np.array([-math.cos(math.radians(111.2)), math.sin(math.radians(111.2)), 0.0])
    for i in range(n):
        if i > 0:
            N_new = _place(N, CA, C, 1.329, 116.2, psi[i - 1])
            CA_new = _place(CA, C, N_new, 1.458, 121.7, omega[i])
            C_new = _place(C, N_new, CA_new, 1.525, 111.2, phi[i])
            N, CA, C = N_new, CA_new, C_new
        oxy = _place(N, CA, C, 1.231, 120.5, psi[i] + 180.0 if i < n - 1 else 0.0)
        res = [("N", "N", N), ("CA", "C", CA), ("C", "C", C), ("O", "O", oxy)]
        name = res_names[i]
        if name != "GLY":
            CB = _place(C, N, CA, 1.53, 110.5, -122.6)
            res.append(("CB", "C", CB))
            x = chis.get(i)
            if x is not None:
                if name == "LEU":
                    CG = _place(N, CA, CB, 1.53, 116.0, x[0])
                    res += [("CG", "C", CG), ("CD1", "C", _place(CA, CB, CG, 1.52, 110.5, x[1])),
                            ("CD2", "C", _place(CA, CB, CG, 1.52, 110.5, x[1] + 122.0))]
                elif name == "LYS":
                    CG = _place(N, CA, CB, 1.52, 114.0, x[0])
                    CD = _place(CA, CB, CG, 1.52, 111.5, x[1])
                    CE = _place(CB, CG, CD, 1.52, 111.5, x[2])
                    res += [("CG", "C", CG), ("CD", "C", CD), ("CE", "C", CE),
                            ("NZ", "N", _place(CG, CD, CE, 1.49, 111.7, x[3]))]
                elif name == "ASP":
                    CG = _place(N, CA, CB, 1.52, 113.0, x[0])
                    res += [("CG", "C", CG), ("OD1", "O", _place(CA, CB, CG, 1.25, 118.4, x[1])),
                            ("OD2", "O", _place(CA, CB, CG, 1.25, 118.4, x[1] + 180.0))]
                elif name == "VAL":
                    res += [("CG1", "C", _place(N, CA, CB, 1.52, 110.5, x[0])),
                            ("CG2", "C", _place(N, CA, CB, 1.52, 110.5, x[0] + 122.0))]
        for aname, el, xyz in res:
            if (i, aname) not in drop:
                atoms.append((i, aname, el, xyz))
    k = len(atoms)
    ri = np.array([a[0] for a in atoms])
    return AtomModel(
        coords=np.array([a[3] for a in atoms]), element=np.array([a[2] for a in atoms]),
        atom_name=np.array([a[1] for a in atoms]), res_name=np.array([res_names[i] for i in ri]),
        res_seq=start + ri, ins_code=np.array([""] * k), chain_id=np.array([chain_id] * k),
        b_factor=np.full(k, 20.0), occupancy=np.ones(k), is_het=np.zeros(k, bool), residue_index=ri)


def concat(*models: AtomModel) -> AtomModel:
    from dataclasses import fields
    out = {}
    offset = 0
    parts = []
    for m in models:
        parts.append(m.residue_index + offset)
        offset = parts[-1].max() + 1
    for f in fields(AtomModel):
        out[f.name] = np.concatenate([getattr(m, f.name) for m in models])
    out["residue_index"] = np.concatenate(parts)
    return AtomModel(**out)


def vals(series) -> list:
    """Column values with every missing marker (None, NaN: pandas versions differ) as None."""
    return [None if pd.isna(v) else v for v in series]


def raw_grid_lines(fname: str, folder: str):
    path = require_data(*TOP8000, folder, fname)
    rows = [line.split() for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return np.array(rows, dtype=float)


# -- dihedrals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("theta", [-180.0, -179.5, -120.0, -60.0, -1e-3, 0.0, 37.0, 90.0, 150.0, 179.9, 180.0])
def test_dihedral_analytic(theta):
    # p0 along +y from p1, p3 at angle theta about the p1->p2 (x) axis: dihedral == theta (IUPAC sign)
    t = math.radians(theta)
    p = [np.array([[-0.5, 1.0, 0.0]]), np.zeros((1, 3)), np.array([[1.5, 0.0, 0.0]]),
         np.array([[2.2, math.cos(t), math.sin(t)]])]
    got = dihedral_deg(*p)[0]
    assert abs((got - theta + 180.0) % 360.0 - 180.0) < 1e-9


def test_dihedral_matches_gemmi_and_nan():
    rng = np.random.default_rng(7)
    p = rng.normal(size=(4, 200, 3)) * 3.0
    ours = dihedral_deg(*p)
    ref = [math.degrees(gemmi.calculate_dihedral(*(gemmi.Position(*q[i]) for q in p))) for i in range(200)]
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    p[2, 5] = np.nan
    assert np.isnan(dihedral_deg(*p)[5]) and np.isfinite(dihedral_deg(*p)[4])


def test_place_atom_geometry_checked_with_gemmi():
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(3, 50, 3)) * 2.0
    d = place_atom(a, b, c, 1.53, 110.0, -122.6)
    for i in range(50):
        P = [gemmi.Position(*x[i]) for x in (a, b, c, d)]
        assert abs(P[2].dist(P[3]) - 1.53) < 1e-9
        assert abs(math.degrees(gemmi.calculate_angle(P[1], P[2], P[3])) - 110.0) < 1e-7
        assert abs(math.degrees(gemmi.calculate_dihedral(*P)) + 122.6) < 1e-7


# -- backbone torsions, breaks ---------------------------------------------------------------------

def test_backbone_torsions_recovered_and_assigned_to_the_right_residue():
    n = 8
    rng = np.random.default_rng(11)
    phi = rng.uniform(-180, 180, n)
    psi = rng.uniform(-180, 180, n)
    omega = np.array([180.0, 178.0, -175.0, 3.0, 179.0, -60.0, 170.0, 180.0])
    m = build_chain(["ALA"] * n, phi, psi, omega)
    t = backbone_torsions(m)
    assert np.isnan(t["phi_deg"][0]) and np.isnan(t["omega_deg"][0]) and np.isnan(t["psi_deg"][-1])
    wrap = lambda x: (x + 180.0) % 360.0 - 180.0  # noqa: E731
    np.testing.assert_allclose(wrap(t["phi_deg"][1:] - phi[1:]), 0.0, atol=1e-8)
    np.testing.assert_allclose(wrap(t["psi_deg"][:-1] - psi[:-1]), 0.0, atol=1e-8)
    np.testing.assert_allclose(wrap(t["omega_deg"][1:] - omega[1:]), 0.0, atol=1e-8)
    np.testing.assert_array_equal(t["linked_prev"], [False] + [True] * (n - 1))
    np.testing.assert_allclose(t["c_n_prev_A"][1:], 1.329, atol=1e-9)


def test_chain_breaks_stop_torsions():
    n = 6
    a = build_chain(["ALA"] * n, [-60.0] * n, [-45.0] * n, [180.0] * n)
    # same chain, second half moved 5 Å away: a gap
    b = build_chain(["ALA"] * n, [-60.0] * n, [-45.0] * n, [180.0] * n, start=n + 1)
    b = b.with_coords(a.coords[-1] + (b.coords - b.coords[0]) + np.array([0.0, 0.0, 5.0]))
    gap = backbone_torsions(concat(a, b))
    assert not gap["linked_prev"][n] and np.isnan(gap["phi_deg"][n]) and np.isnan(gap["psi_deg"][n - 1])
    assert gap["c_n_prev_A"][n] > 2.0
    assert np.isfinite(gap["phi_deg"][n + 1]) and np.isfinite(gap["psi_deg"][n - 2])
    # a bonded continuation in another chain is not linked either
    full = build_chain(["ALA"] * (2 * n), [-60.0] * 2 * n, [-45.0] * 2 * n, [180.0] * 2 * n)
    cid = np.where(full.residue_index < n, "A", "B")
    from dataclasses import replace
    split = replace(full, chain_id=cid)
    t = backbone_torsions(split)
    assert not t["linked_prev"][n] and np.isnan(t["omega_deg"][n])
    assert backbone_torsions(full)["linked_prev"][n]
    # a missing N removes the link on that side only; torsions not using it stay defined
    t = backbone_torsions(build_chain(["ALA"] * n, [-60.0] * n, [-45.0] * n, [180.0] * n, drop={(3, "N")}))
    assert not t["linked_prev"][3] and np.isnan(t["psi_deg"][2]) and np.isnan(t["phi_deg"][3])
    assert t["linked_prev"][4] and np.isnan(t["psi_deg"][3])  # psi(3) needs N(3)
    assert abs(t["phi_deg"][4] + 60.0) < 1e-8 and abs(abs(t["omega_deg"][4]) - 180.0) < 1e-8


# -- Ramachandran ---------------------------------------------------------------------------------

def test_rama_class_assignment_hand_made():
    seq = ["ALA", "GLY", "ALA", "PRO", "ALA", "PRO", "PRO", "VAL", "ILE", "GLY", "PRO", "VAL", "PRO", "ALA"]
    n = len(seq)
    omega = np.full(n, 180.0)
    omega[3] = 0.0     # cis peptide before Pro 4
    omega[6] = -75.0   # strongly twisted, cis-like (|omega| < 90) -> cis-Pro class
    omega[12] = 100.0  # twisted, trans-like -> trans-Pro
    m = build_chain(seq, [-65.0] * n, [140.0] * n, omega)
    s, df = ramachandran(m)
    expected = [None, "gly", "pre_pro", "cis_pro", "pre_pro", "trans_pro", "cis_pro", "ile_val", "ile_val",
                "gly", "trans_pro", "pre_pro", "trans_pro", None]
    assert vals(df["rama_class"]) == expected
    assert list(df.columns[:4]) == ["chain_id", "res_seq", "ins_code", "res_name"]
    assert s["n_rama_residues"] == n - 2 and s["n_rama_cis_pro"] == 2 and s["n_rama_pre_pro"] == 3
    assert math.isclose(s["rama_favoured_pct"] + s["rama_allowed_pct"] + s["rama_outlier_pct"], 100.0)
    assert np.isnan(df["rama_percentile"].iloc[0]) and pd.isna(df["rama_category"].iloc[0])


def test_rama_not_across_breaks_or_modified_residues():
    n = 7
    m = build_chain(["ALA", "ALA", "ALA", "SEP", "ALA", "ALA", "ALA"], [-65.0] * n, [-40.0] * n, [180.0] * n)
    _, df = ramachandran(m)
    # SEP is not a common amino acid: it and both neighbours are not evaluated (as in cctbx)
    assert list(df["rama_class"].isna()) == [True, False, True, True, True, False, True]
    assert np.isfinite(df["phi_deg"].iloc[3])  # its torsions are still reported


@pytest.mark.parametrize("cls", RAMA_CLASSES)
def test_rama_grid_at_bin_centres_equals_raw_file(cls):
    raw = raw_grid_lines(RAMA_FILES[cls], "Top8000_ramachandran_pct_contour_grids")
    rng = np.random.default_rng(0)
    pick = raw[rng.choice(len(raw), 300, replace=False)]
    np.testing.assert_allclose(rama_percentile(cls, pick[:, 0], pick[:, 1]), pick[:, 2], rtol=1e-6, atol=1e-12)
    # bins missing from the sparse file are zero
    listed = {(a, b) for a, b in raw[:, :2]}
    centres = np.arange(-179.0, 180.0, 2.0)
    empty = [(a, b) for a in centres[::7] for b in centres[::7] if (a, b) not in listed]
    if empty:
        e = np.array(empty)
        assert np.all(rama_percentile(cls, e[:, 0], e[:, 1]) == 0.0)


def test_rama_bilinear_between_centres_and_wrapping():
    raw = raw_grid_lines(RAMA_FILES["general"], "Top8000_ramachandran_pct_contour_grids")
    val = {(a, b): v for a, b, v in raw}
    g = lambda a, b: val.get((a, b), 0.0)  # noqa: E731
    # a quarter of the way from (-65, -41) to (-63, -39): bilinear weights 0.75/0.25
    phi, psi = -64.5, -40.5
    exp = (0.75 * 0.75 * g(-65, -41) + 0.25 * 0.75 * g(-63, -41) + 0.75 * 0.25 * g(-65, -39)
           + 0.25 * 0.25 * g(-63, -39))
    assert math.isclose(rama_percentile("general", [phi], [psi])[0], exp, rel_tol=1e-6)
    # across the +-180 seam: phi = 180 is halfway between the centres 179 and -179
    exp = 0.5 * (g(179, -61) + g(-179, -61))
    assert math.isclose(rama_percentile("general", [180.0], [-61.0])[0], exp, rel_tol=1e-6)
    assert math.isclose(rama_percentile("general", [-180.0], [-61.0])[0], exp, rel_tol=1e-6)


def test_rama_thresholds_per_class():
    # MolProbity: favoured >= 2 %; outlier < 0.05 % (general), < 0.2 % (cis-Pro), < 0.1 % otherwise
    m = build_chain(["ALA", "ALA", "PRO", "ALA", "ALA"], [-65, -63.0, -65, 100, -65], [140, 150, 150, -60, 140],
                    [180.0, 180.0, 0.0, 180.0, 180.0])
    _, df = ramachandran(m)
    row = df.iloc[1]  # pre-Pro in the beta region: favoured
    assert row.rama_class == "pre_pro" and row.rama_category == "favoured"
    row = df.iloc[3]  # general at phi 100, psi -60: an outlier
    assert row.rama_class == "general" and row.rama_category == "outlier" and row.rama_percentile < 0.0005
    for c, thr in (("general", 0.0005), ("cis_pro", 0.002), ("trans_pro", 0.001), ("gly", 0.001)):
        raw = raw_grid_lines(RAMA_FILES[c], "Top8000_ramachandran_pct_contour_grids")
        v = raw[:, 2]
        inside = raw[(v >= thr) & (v < 0.02)][:1]
        below = raw[(v > 0) & (v < thr)][:1]
        assert rama_percentile(c, inside[:, 0], inside[:, 1])[0] >= thr
        assert rama_percentile(c, below[:, 0], below[:, 1])[0] < thr


# -- rotamers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fname,aa", [("rota8000-leu.data", "LEU"), ("rota8000-gln.data", "GLN"),
                                      ("rota8000-glu.data", "GLU"), ("rota8000-val.data", "VAL"),
                                      ("rota8000-phetyr.data", "TYR"), ("rota8000-met.data", "MET")])
def test_rotamer_grid_at_bin_centres_equals_raw_file(fname, aa):
    raw = raw_grid_lines(fname, "Top8000_rotamer_pct_contour_grids")
    rng = np.random.default_rng(1)
    pick = raw[rng.choice(len(raw), min(300, len(raw)), replace=False)]
    np.testing.assert_allclose(rotamer_percentile(aa, pick[:, :-1]), pick[:, -1], rtol=1e-6, atol=1e-12)
    # measured chis come in [-180, 180]: the same point shifted by -360 gives the same value
    shifted = pick[:, :-1] - 360.0 * (pick[:, :-1] > 180.0)
    np.testing.assert_allclose(rotamer_percentile(aa, shifted), pick[:, -1], rtol=1e-6, atol=1e-12)


def test_rotamer_symmetric_last_chi():
    rng = np.random.default_rng(2)
    for aa in ("ASP", "GLU", "PHE", "TYR"):
        k = {"ASP": 2, "GLU": 3, "PHE": 2, "TYR": 2}[aa]
        x = rng.uniform(-180, 180, (50, k))
        y = x.copy()
        y[:, -1] = np.where(y[:, -1] > 0, y[:, -1] - 180.0, y[:, -1] + 180.0)
        np.testing.assert_allclose(rotamer_percentile(aa, x), rotamer_percentile(aa, y), rtol=1e-9, atol=1e-12)
    names, _ = nearest_rotamer("PHE", np.array([[-67.0, 99.0], [-67.0, -81.0]]))
    assert list(names) == ["m-80", "m-80"]


def test_rotamers_end_to_end_on_built_side_chains():
    seq = ["ALA", "LEU", "LEU", "LYS", "LYS", "ASP", "VAL", "LEU", "GLY", "ALA"]
    n = len(seq)
    chis = {1: [-65.0, 175.0],             # Leu mt: favoured
            2: [0.0, 0.0],                 # Leu eclipsed: outlier
            3: [-67.0, -179.0, -179.0, 179.0],  # Lys mttt (central values): favoured
            4: [0.0, 0.0, 0.0, 0.0],       # Lys nonsense: outlier
            5: [-69.0, -29.0 + 180.0],     # Asp m-30 with OD1/OD2 swapped: still m-30
            6: [176.0],                    # Val t
            7: [-65.0, 175.0]}
    m = build_chain(seq, [-65.0] * n, [-40.0] * n, [180.0] * n, chis=chis, drop={(7, "CD1")})
    s, df = rotamers(m)
    r = df.set_index("res_seq")
    assert r.loc[2, "rotamer_category"] == "favoured" and r.loc[2, "rotamer_name"] == "mt"
    assert r.loc[3, "rotamer_category"] == "outlier"
    assert r.loc[4, "rotamer_category"] == "favoured" and r.loc[4, "rotamer_name"] == "mttt"
    assert r.loc[4, "rotamer_method"] == "central_values"
    assert r.loc[5, "rotamer_category"] == "outlier"
    assert r.loc[6, "rotamer_name"] == "m-30" and r.loc[6, "rotamer_category"] == "favoured"
    assert r.loc[7, "rotamer_name"] == "t" and r.loc[7, "rotamer_method"] == "grid"
    assert np.isnan(r.loc[8, "rotamer_percentile"]) and "CD1" in r.loc[8, "rotamer_skip_reason"]
    assert pd.isna(r.loc[1, "rotamer_method"]) and pd.isna(r.loc[9, "rotamer_method"])  # Ala, Gly
    np.testing.assert_allclose(r.loc[2, ["chi1_deg", "chi2_deg"]].to_numpy(float), [-65.0, 175.0], atol=1e-8)
    assert s["n_rotamer_residues"] == 6 and s["n_rotamer_skipped"] == 1 and s["n_rotamer_central_values"] == 2
    assert s["n_rotamer_outliers"] == 2 and math.isclose(s["rotamer_outlier_pct"], 100 * 2 / 6)
    assert s["n_rotamer_residues_grid"] == 4 and math.isclose(s["rotamer_outlier_pct_grid"], 25.0)


def test_arg_lys_central_values_favour_every_common_rotamer():
    for aa in ("ARG", "LYS"):
        cv = _tables.central_values(aa)
        common = cv.freq_pct >= 1.0
        p = rotamer_percentile(aa, cv.chi_mean_deg[common])
        assert np.all(p >= 0.02), aa
        names, _ = nearest_rotamer(aa, cv.chi_mean_deg)
        assert list(names) == list(cv.names)
        far = cv.chi_mean_deg[common].copy()
        far[:, 0] = 0.0  # chi1 eclipsed: > 5 esd from every rotamer's chi1
        assert np.all(rotamer_percentile(aa, far) < 0.003), aa


def test_chi_angles_missing_and_definitions():
    m = build_chain(["VAL", "VAL"], [-65.0] * 2, [-40.0] * 2, [180.0] * 2, chis={0: [-60.0], 1: [60.0]},
                    drop={(1, "CG1")})
    c = chi_angles(m)
    assert c["n_chi"].tolist() == [1, 1]
    assert abs(c["chi_deg"][0, 0] + 60.0) < 1e-8 and np.isnan(c["chi_deg"][1, 0])
    assert c["missing_atoms"][1] == ("CG1",)


# -- C-beta ---------------------------------------------------------------------------------------

def test_cbeta_ideal_position_and_outliers():
    n = 6
    m = build_chain(["ALA", "LEU", "VAL", "PRO", "SER", "GLY"], [-65.0] * n, [-40.0] * n, [180.0] * n)
    rows = m.atom_name == "CB"
    t = m.residue_table()
    bb = {a: np.array([m.coords[(m.residue_index == i) & (m.atom_name == a)][0] for i in range(5)])
          for a in ("N", "CA", "C")}
    ideal = ideal_cbeta(bb["N"], bb["CA"], bb["C"], t["res_name"][:5])
    # the ideal CB sits at the target distance from CA, on the L side (chiral volume < 0)
    d = {"ALA": 1.536, "LEU": 1.53, "VAL": 1.54, "PRO": 1.53, "SER": 1.53}
    np.testing.assert_allclose(np.linalg.norm(ideal - bb["CA"], axis=1), [d[r] for r in t["res_name"][:5]], atol=1e-9)
    vol = np.einsum("ij,ij->i", bb["N"] - bb["CA"], np.cross(ideal - bb["CA"], bb["C"] - bb["CA"]))
    assert np.all(vol < 0)
    coords = m.coords.copy()
    coords[rows] = ideal
    coords[np.flatnonzero(rows)[1]] += np.array([0.0, 0.26, 0.0])  # Leu CB moved 0.26 Å
    coords[np.flatnonzero(rows)[2]] += np.array([0.0, 0.0, 0.24])  # Val CB moved 0.24 Å
    s, df = cbeta_deviations(m.with_coords(coords))
    np.testing.assert_allclose(df["cbeta_deviation_A"].iloc[:5], [0.0, 0.26, 0.24, 0.0, 0.0], atol=1e-9)
    assert np.isnan(df["cbeta_deviation_A"].iloc[5]) and pd.isna(df["cbeta_outlier"].iloc[5])  # Gly
    assert s == {"n_cbeta_residues": 5, "cbeta_outliers": 1, "cbeta_outlier_pct": 20.0,
                 "cbeta_deviation_max_A": pytest.approx(0.26)}
    # D-amino acid: the mirror image of an L residue is ideal under D parameters
    mirror = m.with_coords(coords * np.array([1.0, 1.0, -1.0]))
    from dataclasses import replace
    d_names = np.where(mirror.res_name == "LEU", "DLE", mirror.res_name)
    _, df = cbeta_deviations(replace(mirror, res_name=d_names))
    assert abs(df["cbeta_deviation_A"].iloc[1] - 0.26) < 1e-9


# -- peptides -------------------------------------------------------------------------------------

def test_classify_omega_boundaries():
    w = np.array([0.0, 29.9, -29.9, 30.0, -30.0, 90.0, 150.0, -150.0, 150.1, -179.0, 180.0, np.nan])
    assert list(classify_omega(w)) == ["cis", "cis", "cis", "twisted", "twisted", "twisted", "twisted",
                                       "twisted", "trans", "trans", "trans", None]


def test_peptide_bonds_counts():
    seq = ["ALA", "ALA", "PRO", "ALA", "GLY", "PRO", "ALA"]
    n = len(seq)
    omega = np.array([180.0, 180.0, 5.0, -10.0, 120.0, -100.0, 179.0])
    s, df = peptide_bonds(build_chain(seq, [-70.0] * n, [140.0] * n, omega))
    assert vals(df["peptide"]) == [None, "trans", "cis", "cis", "twisted", "twisted", "trans"]
    np.testing.assert_allclose(df["omega_deg"].iloc[1:], omega[1:], atol=1e-8)
    assert s["n_peptides"] == 6 and s["n_pro_peptides"] == 2 and s["n_nonpro_peptides"] == 4
    assert (s["n_cis_pro"], s["n_cis_nonpro"], s["n_twisted_pro"], s["n_twisted_nonpro"]) == (1, 1, 1, 1)
    assert s["cis_pro_pct"] == 50.0 and s["cis_nonpro_pct"] == 25.0


# -- contract on a real chain -----------------------------------------------------------------------

def test_tables_contract_on_real_chain():
    path = require_data("chains", "1a7g_E.pdb.gz")
    m = read_model(path)
    n_res = len(m.residue_starts())
    for fn in (ramachandran, rotamers, cbeta_deviations, peptide_bonds):
        s, df = fn(m)
        assert len(df) == n_res
        assert list(df.columns[:4]) == ["chain_id", "res_seq", "ins_code", "res_name"]
        np.testing.assert_array_equal(df["res_seq"].to_numpy(), m.residue_table()["res_seq"])
        json.dumps(s, allow_nan=False)
        for v in s.values():
            assert type(v) in (int, float)
    s, df = ramachandran(m)
    assert 0 < s["n_rama_residues"] < n_res
    assert df.loc[df["rama_class"].notna(), "rama_category"].isin(["favoured", "allowed", "outlier"]).all()


def test_single_residue_model():
    m = build_chain(["ALA"], [0.0], [0.0], [180.0])
    for fn in (ramachandran, rotamers, cbeta_deviations, peptide_bonds):
        s, df = fn(m)
        assert len(df) == 1
        json.dumps(s, allow_nan=False)
