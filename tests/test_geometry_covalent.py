"""Covalent geometry, riding hydrogens, clashscore and MolProbity score (emforge.geometry).

References are analytic: residues built from the ideal internal coordinates themselves, exact
perturbations with known Z, hydrogen geometry checked against the placement rules, hand-made
contacts with known overlaps, and MolProbity scores from cctbx's own regression values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_data

from emforge.geometry.clashes import clash_pairs, clashscore
from emforge.geometry.covalent import STANDARD_AMINO_ACIDS, build_restraints, covalent_geometry, ideal_geometry
from emforge.geometry.hydrogens import add_riding_hydrogens
from emforge.geometry.molprobity import molprobity_score
from emforge.models import AtomModel, read_model

# -- helpers: models from internal coordinates ---------------------------------------------------


def nerf(a, b, c, bond, angle_deg, torsion_deg):
    """Point d with |cd| = bond, angle b-c-d = angle, dihedral a-b-c-d = torsion."""
    a, b, c = (np.asarray(v, float) for v in (a, b, c))
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    th, ph = math.radians(angle_deg), math.radians(torsion_deg)
    return c + bond * (-math.cos(th) * bc + math.sin(th) * math.cos(ph) * m + math.sin(th) * math.sin(ph) * n)


def angle_deg(a, b, c):
    u, v = np.asarray(a) - b, np.asarray(c) - b
    return math.degrees(math.acos(np.clip(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


def dihedral_deg(p0, p1, p2, p3):
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - np.dot(b0, b1) * b1, b2 - np.dot(b2, b1) * b1
    return math.degrees(math.atan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def make_model(atoms) -> AtomModel:
    """atoms: list of (chain, res_seq, res_name, atom_name, element, xyz)."""
    n = len(atoms)
    chain = np.array([a[0] for a in atoms])
    seq = np.array([a[1] for a in atoms], np.int64)
    key = [(a[0], a[1]) for a in atoms]
    ridx = np.cumsum([0] + [key[k] != key[k - 1] for k in range(1, n)]).astype(np.int64)
    return AtomModel(np.array([a[5] for a in atoms], float), np.array([a[4] for a in atoms]),
                     np.array([a[3] for a in atoms]), np.array([a[2] for a in atoms]), seq, np.full(n, ""),
                     chain, np.full(n, 20.0), np.ones(n), np.zeros(n, bool), ridx)


FIELDS = ("coords", "element", "atom_name", "res_name", "res_seq", "ins_code", "chain_id", "b_factor",
          "occupancy", "is_het", "residue_index")


def concat(a: AtomModel, b: AtomModel) -> AtomModel:
    """Atoms of ``a`` followed by those of ``b`` (b's residues renumbered after a's)."""
    offset = int(a.residue_index.max()) + 1 if len(a) else 0
    return AtomModel(*[np.concatenate([getattr(a, f), getattr(b, f) + offset if f == "residue_index"
                                       else getattr(b, f)]) for f in FIELDS])


def _bond(res, a1, a2):
    for r in ideal_geometry()["bonds"][res]:
        if {r[0], r[1]} == {a1, a2}:
            return r[2], r[3]
    raise KeyError((res, a1, a2))


def _angle(res, a1, a2, a3):
    for r in ideal_geometry()["angles"][res]:
        if r[1] == a2 and {r[0], r[2]} == {a1, a3}:
            return r[3], r[4]
    raise KeyError((res, a1, a2, a3))


def ideal_ala_gly(phi2=-120.0, psi1=130.0, psi2=140.0, chain="A", shift=(0.0, 0.0, 0.0)):
    """ALA-GLY dipeptide with every restrained bond and angle exactly at its ideal value."""
    pep = ideal_geometry()["peptide"]
    n1 = np.zeros(3)
    ca1 = np.array([_bond("ALA", "N", "CA")[0], 0.0, 0.0])
    t = math.radians(180.0 - _angle("ALA", "N", "CA", "C")[0])
    c1 = ca1 + _bond("ALA", "CA", "C")[0] * np.array([math.cos(t), math.sin(t), 0.0])
    # CB: N-CA-CB and CB-CA-C both ideal -> dihedral C-N-CA-CB from the spherical law of cosines
    a1, a2, a3 = (math.radians(_angle("ALA", *k)[0]) for k in (("N", "CA", "CB"), ("CB", "CA", "C"), ("N", "CA", "C")))
    tau = math.degrees(math.acos((math.cos(a2) - math.cos(a1) * math.cos(a3)) / (math.sin(a1) * math.sin(a3))))
    cb1 = nerf(c1, n1, ca1, _bond("ALA", "CA", "CB")[0], math.degrees(a1), -tau)
    o1 = nerf(n1, ca1, c1, _bond("ALA", "C", "O")[0], _angle("ALA", "CA", "C", "O")[0], psi1 + 180.0)
    n2 = nerf(n1, ca1, c1, pep["bond_C_N"]["ideal_A"], pep["angle_CA_C_N"]["ideal_deg"], psi1)
    ca2 = nerf(ca1, c1, n2, _bond("GLY", "N", "CA")[0], pep["angle_C_N_CA"]["ideal_deg"], 180.0)
    c2 = nerf(c1, n2, ca2, _bond("GLY", "CA", "C")[0], _angle("GLY", "N", "CA", "C")[0], phi2)
    o2 = nerf(n2, ca2, c2, _bond("GLY", "C", "O")[0], _angle("GLY", "CA", "C", "O")[0], psi2)
    s = np.asarray(shift, float)
    rows = [(chain, 1, "ALA", "N", "N", n1), (chain, 1, "ALA", "CA", "C", ca1), (chain, 1, "ALA", "C", "C", c1),
            (chain, 1, "ALA", "O", "O", o1), (chain, 1, "ALA", "CB", "C", cb1),
            (chain, 2, "GLY", "N", "N", n2), (chain, 2, "GLY", "CA", "C", ca2), (chain, 2, "GLY", "C", "C", c2),
            (chain, 2, "GLY", "O", "O", o2)]
    return make_model([r[:5] + (np.asarray(r[5]) + s,) for r in rows])


def atom(m: AtomModel, res_seq: int, name: str) -> int:
    hit = np.flatnonzero((m.res_seq == res_seq) & (m.atom_name == name))
    assert len(hit) == 1, (res_seq, name)
    return int(hit[0])


CRAMBIN_1_13 = """\
ATOM      1  N   THR A   1      17.047  14.099   3.625  1.00 13.79           N
ATOM      2  CA  THR A   1      16.967  12.784   4.338  1.00 10.80           C
ATOM      3  C   THR A   1      15.685  12.755   5.133  1.00  9.19           C
ATOM      4  O   THR A   1      15.268  13.825   5.594  1.00  9.85           O
ATOM      5  CB  THR A   1      18.170  12.703   5.337  1.00 13.02           C
ATOM      6  OG1 THR A   1      19.334  12.829   4.463  1.00 15.06           O
ATOM      7  CG2 THR A   1      18.150  11.546   6.304  1.00 14.23           C
ATOM      8  N   THR A   2      15.115  11.555   5.265  1.00  7.81           N
ATOM      9  CA  THR A   2      13.856  11.469   6.066  1.00  8.31           C
ATOM     10  C   THR A   2      14.164  10.785   7.379  1.00  5.80           C
ATOM     11  O   THR A   2      14.993   9.862   7.443  1.00  6.94           O
ATOM     12  CB  THR A   2      12.732  10.711   5.261  1.00 10.32           C
ATOM     13  OG1 THR A   2      13.308   9.439   4.926  1.00 12.81           O
ATOM     14  CG2 THR A   2      12.484  11.442   3.895  1.00 11.90           C
ATOM     15  N   CYS A   3      13.488  11.241   8.417  1.00  5.24           N
ATOM     16  CA  CYS A   3      13.660  10.707   9.787  1.00  5.39           C
ATOM     17  C   CYS A   3      12.269  10.431  10.323  1.00  4.45           C
ATOM     18  O   CYS A   3      11.393  11.308  10.185  1.00  6.54           O
ATOM     19  CB  CYS A   3      14.368  11.748  10.691  1.00  5.99           C
ATOM     20  SG  CYS A   3      15.885  12.426  10.016  1.00  7.01           S
ATOM     21  N   CYS A   4      12.019   9.272  10.928  1.00  3.90           N
ATOM     22  CA  CYS A   4      10.646   8.991  11.408  1.00  4.24           C
ATOM     23  C   CYS A   4      10.654   8.793  12.919  1.00  3.72           C
ATOM     24  O   CYS A   4      11.659   8.296  13.491  1.00  5.30           O
ATOM     25  CB  CYS A   4      10.057   7.752  10.682  1.00  4.41           C
ATOM     26  SG  CYS A   4       9.837   8.018   8.904  1.00  4.72           S
ATOM     27  N   PRO A   5       9.561   9.108  13.563  1.00  3.96           N
ATOM     28  CA  PRO A   5       9.448   9.034  15.012  1.00  4.25           C
ATOM     29  C   PRO A   5       9.288   7.670  15.606  1.00  4.96           C
ATOM     30  O   PRO A   5       9.490   7.519  16.819  1.00  7.44           O
ATOM     31  CB  PRO A   5       8.230   9.957  15.345  1.00  5.11           C
ATOM     32  CG  PRO A   5       7.338   9.786  14.114  1.00  5.24           C
ATOM     33  CD  PRO A   5       8.366   9.804  12.958  1.00  5.20           C
ATOM     34  N   SER A   6       8.875   6.686  14.796  1.00  4.83           N
ATOM     35  CA  SER A   6       8.673   5.314  15.279  1.00  4.45           C
ATOM     36  C   SER A   6       8.753   4.376  14.083  1.00  4.99           C
ATOM     37  O   SER A   6       8.726   4.858  12.923  1.00  4.61           O
ATOM     38  CB  SER A   6       7.340   5.121  15.996  1.00  5.05           C
ATOM     39  OG  SER A   6       6.274   5.220  15.031  1.00  6.39           O
ATOM     40  N   ILE A   7       8.881   3.075  14.358  1.00  4.94           N
ATOM     41  CA  ILE A   7       8.912   2.083  13.258  1.00  6.33           C
ATOM     42  C   ILE A   7       7.581   2.090  12.506  1.00  5.32           C
ATOM     43  O   ILE A   7       7.670   2.031  11.245  1.00  6.85           O
ATOM     44  CB  ILE A   7       9.207   0.677  13.924  1.00  8.43           C
ATOM     45  CG1 ILE A   7      10.714   0.702  14.312  1.00  9.78           C
ATOM     46  CG2 ILE A   7       8.811  -0.477  12.969  1.00 11.70           C
ATOM     47  CD1 ILE A   7      11.185  -0.516  15.142  1.00  9.92           C
ATOM     48  N   VAL A   8       6.458   2.162  13.159  1.00  5.02           N
ATOM     49  CA  VAL A   8       5.145   2.209  12.453  1.00  6.93           C
ATOM     50  C   VAL A   8       5.115   3.379  11.461  1.00  5.39           C
ATOM     51  O   VAL A   8       4.664   3.268  10.343  1.00  6.30           O
ATOM     52  CB  VAL A   8       3.995   2.354  13.478  1.00  9.64           C
ATOM     53  CG1 VAL A   8       2.716   2.891  12.869  1.00 13.85           C
ATOM     54  CG2 VAL A   8       3.758   1.032  14.208  1.00 11.97           C
ATOM     55  N   ALA A   9       5.606   4.546  11.941  1.00  3.73           N
ATOM     56  CA  ALA A   9       5.598   5.767  11.082  1.00  3.56           C
ATOM     57  C   ALA A   9       6.441   5.527   9.850  1.00  4.13           C
ATOM     58  O   ALA A   9       6.052   5.933   8.744  1.00  4.36           O
ATOM     59  CB  ALA A   9       6.022   6.977  11.891  1.00  4.80           C
ATOM     60  N   ARG A  10       7.647   4.909  10.005  1.00  3.73           N
ATOM     61  CA  ARG A  10       8.496   4.609   8.837  1.00  3.38           C
ATOM     62  C   ARG A  10       7.798   3.609   7.876  1.00  3.47           C
ATOM     63  O   ARG A  10       7.878   3.778   6.651  1.00  4.67           O
ATOM     64  CB  ARG A  10       9.847   4.020   9.305  1.00  3.95           C
ATOM     65  CG  ARG A  10      10.752   3.607   8.149  1.00  4.55           C
ATOM     66  CD  ARG A  10      11.226   4.699   7.244  1.00  5.89           C
ATOM     67  NE  ARG A  10      12.143   5.571   8.035  1.00  6.20           N
ATOM     68  CZ  ARG A  10      12.758   6.609   7.443  1.00  7.52           C
ATOM     69  NH1 ARG A  10      12.539   6.932   6.158  1.00 10.68           N
ATOM     70  NH2 ARG A  10      13.601   7.322   8.202  1.00  9.48           N
ATOM     71  N   SER A  11       7.186   2.582   8.445  1.00  5.19           N
ATOM     72  CA  SER A  11       6.500   1.584   7.565  1.00  4.60           C
ATOM     73  C   SER A  11       5.382   2.313   6.773  1.00  4.84           C
ATOM     74  O   SER A  11       5.213   2.016   5.557  1.00  5.84           O
ATOM     75  CB  SER A  11       5.908   0.462   8.400  1.00  5.91           C
ATOM     76  OG  SER A  11       6.990  -0.272   9.012  1.00  8.38           O
ATOM     77  N   ASN A  12       4.648   3.182   7.446  1.00  3.54           N
ATOM     78  CA  ASN A  12       3.545   3.935   6.751  1.00  4.57           C
ATOM     79  C   ASN A  12       4.107   4.851   5.691  1.00  4.14           C
ATOM     80  O   ASN A  12       3.536   5.001   4.617  1.00  5.52           O
ATOM     81  CB  ASN A  12       2.663   4.677   7.748  1.00  6.42           C
ATOM     82  CG  ASN A  12       1.802   3.735   8.610  1.00  8.25           C
ATOM     83  OD1 ASN A  12       1.567   2.613   8.165  1.00 12.72           O
ATOM     84  ND2 ASN A  12       1.394   4.252   9.767  1.00  9.92           N
ATOM     85  N   PHE A  13       5.259   5.498   6.005  1.00  3.43           N
ATOM     86  CA  PHE A  13       5.929   6.358   5.055  1.00  3.49           C
ATOM     87  C   PHE A  13       6.304   5.578   3.799  1.00  3.40           C
ATOM     88  O   PHE A  13       6.136   6.072   2.653  1.00  4.07           O
ATOM     89  CB  PHE A  13       7.183   6.994   5.754  1.00  5.48           C
ATOM     90  CG  PHE A  13       7.884   8.006   4.883  1.00  5.57           C
ATOM     91  CD1 PHE A  13       8.906   7.586   4.027  1.00  6.99           C
ATOM     92  CD2 PHE A  13       7.532   9.373   4.983  1.00  6.52           C
ATOM     93  CE1 PHE A  13       9.560   8.539   3.194  1.00  8.20           C
ATOM     94  CE2 PHE A  13       8.176  10.281   4.145  1.00  6.34           C
ATOM     95  CZ  PHE A  13       9.141   9.845   3.292  1.00  6.84           C
"""


def crambin_snippet(tmp_path) -> AtomModel:
    """Crambin (PDB 1CRN, CC0) residues 1-13: Thr, Cys (a disulfide partner 3-4 is absent here),
    Pro, Ser, Ile, Val, Ala, Arg, Asn, Phe."""
    p = tmp_path / "crambin_1_13.pdb"
    p.write_text(CRAMBIN_1_13)
    return read_model(p)


# -- covalent geometry ---------------------------------------------------------------------------


def test_ideal_dipeptide_has_zero_rmsz():
    m = ideal_ala_gly()
    summary, per_res = covalent_geometry(m)
    # ALA: 4 bonds + 4 angles; GLY: 3 + 2; peptide link: 1 bond + 2 angles
    assert summary["n_bonds"] == 8 and summary["n_angles"] == 8
    assert summary["bond_rmsz"] == pytest.approx(0.0, abs=1e-9)
    assert summary["angle_rmsz"] == pytest.approx(0.0, abs=1e-7)
    assert summary["bond_rmsd_A"] == pytest.approx(0.0, abs=1e-10)
    assert summary["bond_outliers"] == 0 and summary["angle_outliers"] == 0
    assert list(per_res.columns[:4]) == ["chain_id", "res_seq", "ins_code", "res_name"]
    assert len(per_res) == 2
    # the peptide link counts for both residues
    assert per_res["n_bonds"].tolist() == [5.0, 4.0]
    assert per_res["n_angles"].tolist() == [6.0, 4.0]


@pytest.mark.parametrize("k", [-3.0, 2.5, 5.0])
def test_bond_stretched_by_k_sigma_has_z_k(k):
    m = ideal_ala_gly()
    x = m.coords.copy()
    c, o = atom(m, 1, "C"), atom(m, 1, "O")
    ideal, sigma = _bond("ALA", "C", "O")
    u = (x[o] - x[c]) / np.linalg.norm(x[o] - x[c])
    x[o] = x[c] + (ideal + k * sigma) * u  # terminal atom along its bond: no angle changes
    summary, per_res = covalent_geometry(m.with_coords(x))
    assert summary["worst_bond_z"] == pytest.approx(k, abs=1e-6)
    assert summary["bond_rmsz"] == pytest.approx(abs(k) / math.sqrt(8), abs=1e-6)
    assert summary["bond_rmsd_A"] == pytest.approx(abs(k) * sigma / math.sqrt(8), abs=1e-9)
    assert summary["angle_rmsz"] == pytest.approx(0.0, abs=1e-6)
    assert per_res.loc[0, "worst_bond_z"] == pytest.approx(abs(k), abs=1e-6)
    assert per_res.loc[0, "n_bond_outliers"] == (1.0 if abs(k) > 4 else 0.0)
    assert summary["bond_outliers"] == (1 if abs(k) > 4 else 0)
    assert summary["bond_outlier_pct"] == pytest.approx(100.0 * summary["bond_outliers"] / 8)


def test_rmsz_combines_known_deviations():
    m = ideal_ala_gly()
    x = m.coords.copy()
    # bend CA-C-O of ALA by +delta in the peptide plane (O is terminal: only that angle moves)
    ca, c, o, n2 = (atom(m, *k) for k in ((1, "CA"), (1, "C"), (1, "O"), (2, "N")))
    ideal_a, sig_a = _angle("ALA", "CA", "C", "O")
    delta = 1.5 * sig_a
    x[o] = nerf(x[n2], x[ca], x[c], np.linalg.norm(x[o] - x[c]), ideal_a + delta,
                dihedral_deg(x[o], x[c], x[ca], x[n2]))
    # and stretch GLY C-O by -2 sigma
    c2, o2 = atom(m, 2, "C"), atom(m, 2, "O")
    ideal_b, sig_b = _bond("GLY", "C", "O")
    x[o2] = x[c2] + (ideal_b - 2.0 * sig_b) * (x[o2] - x[c2]) / np.linalg.norm(x[o2] - x[c2])
    summary, _ = covalent_geometry(m.with_coords(x))
    assert summary["angle_rmsz"] == pytest.approx(math.sqrt(1.5 ** 2 / 8), abs=1e-6)
    assert summary["angle_rmsd_deg"] == pytest.approx(delta / math.sqrt(8), abs=1e-6)
    assert summary["bond_rmsz"] == pytest.approx(math.sqrt(4.0 / 8), abs=1e-6)
    assert summary["worst_angle_z"] == pytest.approx(1.5, abs=1e-6)


def test_peptide_link_needs_close_atoms_and_same_chain():
    m = ideal_ala_gly()
    # a chain break: move residue 2 away by 5 Å -> no link restraints
    x = m.coords.copy()
    x[m.res_seq == 2] += [0.0, 0.0, 5.0]
    s, _ = covalent_geometry(m.with_coords(x))
    assert s["n_bonds"] == 7 and s["n_angles"] == 6
    # same coordinates, different chains -> no link either
    two = AtomModel(m.coords, m.element, m.atom_name, m.res_name, m.res_seq, m.ins_code,
                    np.where(m.res_seq == 1, "A", "B"), m.b_factor, m.occupancy, m.is_het, m.residue_index)
    assert covalent_geometry(two)[0]["n_bonds"] == 7
    # pre-proline C-N uses the proline value
    rst = build_restraints(m)
    assert rst.bond_ideal_A[-1] == pytest.approx(1.329)


def test_non_standard_residues_are_nan_rows():
    m = ideal_ala_gly()
    lig = make_model([("B", 10, "HOH", "O", "O", [20.0, 0, 0])])
    both = concat(m, lig)
    s, per_res = covalent_geometry(both)
    assert len(per_res) == 3
    assert per_res.iloc[2][["n_bonds", "worst_bond_z", "n_angle_outliers"]].isna().all()
    assert s["n_bonds"] == 8


def test_empty_model_summary_is_json_ready():
    import json

    m = make_model([("A", 1, "HOH", "O", "O", [0.0, 0, 0])])
    s, per_res = covalent_geometry(m)
    assert s["n_bonds"] == 0 and s["bond_rmsz"] is None and s["bond_outlier_pct"] is None
    json.dumps(s)


# -- riding hydrogens ----------------------------------------------------------------------------

ECLOUD = {"CH": 0.97, "CHar": 0.93, "NH": 0.86, "NH3": 0.89, "OH": 0.84, "SH": 1.20}
NUCLEAR = {"CH": 1.09, "CHar": 1.08, "NH": 1.02, "NH3": 1.04, "OH": 0.98, "SH": 1.30}
AROMATIC = {("PHE", n) for n in ("CG", "CD1", "CD2", "CE1", "CE2", "CZ")} | \
    {("TYR", n) for n in ("CG", "CD1", "CD2", "CE1", "CE2", "CZ")} | \
    {("TRP", n) for n in ("CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2")} | {("HIS", n) for n in ("CD2", "CE1")}


def _parents(h: AtomModel) -> np.ndarray:
    """Parent heavy atom of every H: nearest heavy atom of the same residue."""
    out = np.full(len(h), -1)
    for i in np.flatnonzero(h.is_hydrogen()):
        same = np.flatnonzero((h.residue_index == h.residue_index[i]) & ~h.is_hydrogen())
        out[i] = same[np.argmin(np.linalg.norm(h.coords[same] - h.coords[i], axis=1))]
    return out


def _xh_class(h: AtomModel, i: int, p: int) -> str:
    el, res, pname = h.element[p], h.res_name[p], h.atom_name[p]
    if el == "C":
        return "CHar" if (res, pname) in AROMATIC else "CH"
    if el == "N":
        nterm = pname == "N" and h.res_seq[p] == h.res_seq.min() and res != "PRO"
        return "NH3" if (pname == "NZ" and res == "LYS") or nterm else "NH"
    return {"O": "OH", "S": "SH"}[el]


@pytest.mark.parametrize("nuclear", [False, True])
def test_hydrogen_bond_lengths(tmp_path, nuclear):
    m = crambin_snippet(tmp_path)
    h = add_riding_hydrogens(m, nuclear=nuclear)
    table = NUCLEAR if nuclear else ECLOUD
    parents = _parents(h)
    hs = np.flatnonzero(h.is_hydrogen())
    assert len(hs) > 80
    for i in hs:
        p = parents[i]
        d = np.linalg.norm(h.coords[i] - h.coords[p])
        assert d == pytest.approx(table[_xh_class(h, i, p)], abs=1e-9), (h.res_name[i], h.atom_name[i])
    # heavy atoms untouched, in the same order
    heavy = ~h.is_hydrogen()
    np.testing.assert_array_equal(h.coords[heavy], m.coords)
    np.testing.assert_array_equal(h.atom_name[heavy], m.atom_name)


def test_hydrogen_angles_and_planarity(tmp_path):
    m = crambin_snippet(tmp_path)
    h = add_riding_hydrogens(m, optimize_rotatable=False)

    def xyz(seq, name):
        return h.coords[atom(h, seq, name)]

    # sp3 CH2 (Ser 6 CB): H-C-H = 109.5, both H symmetric about the CA-CB-OG plane
    hb2, hb3, cb, ca, og = (xyz(6, n) for n in ("HB2", "HB3", "CB", "CA", "OG"))
    assert angle_deg(hb2, cb, hb3) == pytest.approx(109.5, abs=1e-6)
    assert angle_deg(hb2, cb, ca) == pytest.approx(angle_deg(hb3, cb, ca), abs=1e-6)
    assert angle_deg(hb2, cb, og) == pytest.approx(angle_deg(hb3, cb, og), abs=1e-6)
    # naming: HB3 has (H - CB) . ((CA - CB) x (OG - CB)) > 0 (PDB/CCD convention)
    assert np.dot(hb3 - cb, np.cross(ca - cb, og - cb)) > 0 > np.dot(hb2 - cb, np.cross(ca - cb, og - cb))
    # methyl (Ala 9 CB): CA-CB-H = 109.5, staggered: dihedrals to N 180, -60, +60
    cb, ca, n = xyz(9, "CB"), xyz(9, "CA"), xyz(9, "N")
    for name, phi in (("HB1", 180.0), ("HB2", -60.0), ("HB3", 60.0)):
        assert angle_deg(ca, cb, xyz(9, name)) == pytest.approx(109.5, abs=1e-6)
        d = dihedral_deg(xyz(9, name), cb, ca, n)
        assert (d - phi + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-6)
    # aromatic CH (Phe 13 CE1): in the ring plane, bisecting the exterior angle
    ce1, cd1, cz, he1 = (xyz(13, k) for k in ("CE1", "CD1", "CZ", "HE1"))
    normal = np.cross(cd1 - ce1, cz - ce1)
    assert np.dot(he1 - ce1, normal / np.linalg.norm(normal)) == pytest.approx(0.0, abs=1e-9)
    assert angle_deg(he1, ce1, cd1) == pytest.approx(angle_deg(he1, ce1, cz), abs=1e-6)
    # backbone H (Ser 6): in the C(5)-N-CA plane, bisecting
    hn, n6, ca6, c5 = xyz(6, "H"), xyz(6, "N"), xyz(6, "CA"), xyz(5, "C")
    normal = np.cross(c5 - n6, ca6 - n6)
    assert np.dot(hn - n6, normal / np.linalg.norm(normal)) == pytest.approx(0.0, abs=1e-9)
    assert angle_deg(hn, n6, ca6) == pytest.approx(angle_deg(hn, n6, c5), abs=1e-6)
    # planar NH2 (Asn 12): 120 degrees at ND2, HD21 cis and HD22 trans to OD1
    nd2, cg, od1 = xyz(12, "ND2"), xyz(12, "CG"), xyz(12, "OD1")
    for name, phi in (("HD21", 0.0), ("HD22", 180.0)):
        assert angle_deg(cg, nd2, xyz(12, name)) == pytest.approx(120.0, abs=1e-6)
        assert abs((dihedral_deg(xyz(12, name), nd2, cg, od1) - phi + 180.0) % 360.0 - 180.0) < 1e-6
    # Arg guanidinium H in the NE-CZ-NH plane; HH11 cis to NE
    nh1, cz, ne = xyz(10, "NH1"), xyz(10, "CZ"), xyz(10, "NE")
    assert abs(dihedral_deg(xyz(10, "HH11"), nh1, cz, ne)) < 1e-6
    # OH (Ser 6): C-O-H 109.5, anti to CA
    hg, og, cb, ca = xyz(6, "HG"), xyz(6, "OG"), xyz(6, "CB"), xyz(6, "CA")
    assert angle_deg(hg, og, cb) == pytest.approx(109.5, abs=1e-6)
    assert abs(dihedral_deg(hg, og, cb, ca)) == pytest.approx(180.0, abs=1e-6)
    # N-terminal NH3+ on Thr 1, no backbone H on Pro 5
    assert {"H", "H2", "H3"} <= set(h.atom_name[h.res_seq == 1])
    assert "H" not in set(h.atom_name[h.res_seq == 5])
    # Cys 3 and 4 are not disulfide-bonded to each other (3-40, 4-32 in 1CRN): both keep HG
    assert "HG" in set(h.atom_name[h.res_seq == 3]) and "HG" in set(h.atom_name[h.res_seq == 4])


def test_rotor_optimisation_keeps_geometry_and_removes_clashes(tmp_path):
    m = crambin_snippet(tmp_path)
    fixed = add_riding_hydrogens(m, optimize_rotatable=False)
    opt = add_riding_hydrogens(m)
    np.testing.assert_array_equal(fixed.atom_name, opt.atom_name)
    moved = np.linalg.norm(fixed.coords - opt.coords, axis=1) > 1e-9
    # only hydrogens of CH3, NH3+, OH and SH groups move
    assert set(opt.atom_name[moved]) <= {"H", "H2", "H3", "HB1", "HB2", "HB3", "HG1", "HG", "HG21", "HG22", "HG23",
                                         "HG11", "HG12", "HG13", "HD11", "HD12", "HD13", "HH"}
    assert not opt.is_hydrogen()[moved].size or opt.is_hydrogen()[moved].all()
    parents = _parents(opt)
    for i in np.flatnonzero(moved):  # X-H length unchanged by the rotation
        p = parents[i]
        assert np.linalg.norm(opt.coords[i] - opt.coords[p]) == pytest.approx(
            np.linalg.norm(fixed.coords[i] - fixed.coords[p]), abs=1e-9)
    # methyl stays a methyl: CA-CB-H 109.5 and H-C-H equal for Ala 9
    cb, ca = opt.coords[atom(opt, 9, "CB")], opt.coords[atom(opt, 9, "CA")]
    hs = [opt.coords[atom(opt, 9, n)] for n in ("HB1", "HB2", "HB3")]
    for hh in hs:
        assert angle_deg(ca, cb, hh) == pytest.approx(109.5, abs=1e-6)
    assert angle_deg(hs[0], cb, hs[1]) == pytest.approx(angle_deg(hs[1], cb, hs[2]), abs=1e-6)
    assert clashscore(opt)[0]["n_clashes"] <= clashscore(fixed)[0]["n_clashes"]


def test_existing_hydrogens_are_replaced_and_disulfide_has_no_hg(tmp_path):
    m = crambin_snippet(tmp_path)
    h1 = add_riding_hydrogens(m)
    h2 = add_riding_hydrogens(h1)  # H in -> replaced, not duplicated
    assert len(h2) == len(h1)
    np.testing.assert_allclose(h2.coords, h1.coords)
    # move Cys 4 SG to 2.03 Å of Cys 3 SG: a disulfide, no HG on either
    x = m.coords.copy()
    sg3, sg4 = atom(m, 3, "SG"), atom(m, 4, "SG")
    x[sg4] = x[sg3] + 2.03 * (x[sg4] - x[sg3]) / np.linalg.norm(x[sg4] - x[sg3])
    h3 = add_riding_hydrogens(m.with_coords(x))
    assert "HG" not in set(h3.atom_name[np.isin(h3.res_seq, [3, 4])])


HYDROGENS_PER_RESIDUE = {  # internal residue, our protonation (His: HE2 only, Cys: free SH)
    "GLY": 3, "ALA": 5, "SER": 5, "CYS": 5, "THR": 7, "VAL": 9, "LEU": 11, "ILE": 11, "MET": 9, "PRO": 7,
    "PHE": 9, "TYR": 9, "TRP": 10, "HIS": 7, "ASN": 6, "GLN": 8, "ASP": 4, "GLU": 6, "LYS": 13, "ARG": 13,
}


def test_hydrogen_counts_all_residue_types():
    path = require_data("chains", "1a7g_E.pdb.gz")  # a real chain holding all 20 amino acids
    m = read_model(path)
    h = add_riding_hydrogens(m)
    parents = _parents(h)
    starts = h.residue_starts()
    seen = set()
    for r, s in enumerate(starts):
        res = h.res_name[s]
        sel = h.residue_index == h.residue_index[s]
        names = set(h.atom_name[sel & h.is_hydrogen()])
        heavy = set(h.atom_name[sel & ~h.is_hydrogen()])
        if r == 0 or res == "CYS" or "H" not in names or res not in HYDROGENS_PER_RESIDUE:
            continue
        expected_heavy = {a for b in ideal_geometry()["bonds"][res] for a in b[:2]}
        if not expected_heavy <= heavy:
            continue  # incomplete side chain
        assert len(names) == HYDROGENS_PER_RESIDUE[res], (res, sorted(names))
        seen.add(res)
    assert len(seen) >= 18
    # every H sits at an electron-cloud distance of its parent
    hs = np.flatnonzero(h.is_hydrogen())
    d = np.linalg.norm(h.coords[hs] - h.coords[parents[hs]], axis=1)
    assert set(np.round(d, 6)) <= {0.97, 0.93, 0.86, 0.89, 0.84, 1.2}


# -- clashscore ----------------------------------------------------------------------------------

def _lone(chain, seq, res, name, el, xyz):
    return (chain, seq, res, name, el, np.asarray(xyz, float))


def test_clash_between_two_carbons_counts_once():
    # two one-atom ligands (unknown residue -> carbon radius 1.70 Å): overlap 3.40 - d
    for d, expected in ((2.9, 1), (3.05, 0)):
        m = make_model([_lone("A", 1, "LIG", "C1", "C", [0, 0, 0]), _lone("B", 1, "LIG", "C1", "C", [d, 0, 0])])
        s, per_res = clashscore(m)
        assert s["n_clashes"] == expected
        assert s["clashscore"] == pytest.approx(1000.0 * expected / 2)
        assert s["n_atoms_with_h"] == 2
        assert per_res["n_clashes"].tolist() == [float(expected)] * 2
        assert per_res["worst_overlap_A"].tolist() == pytest.approx([3.4 - d] * 2)


def test_hbond_pair_is_exempt_but_same_overlap_with_carbon_clashes():
    base = add_riding_hydrogens(ideal_ala_gly())
    hn = base.coords[atom(base, 2, "H")]
    n = base.coords[atom(base, 2, "N")]
    u = (hn - n) / np.linalg.norm(hn - n)
    site = hn + 1.9 * u  # 1.9 Å from the amide H along N-H: an ideal H-bond acceptor position

    def with_partner(name, el):
        partner = make_model([_lone("B", 1, "GLY", name, el, site)])
        return concat(base, partner)

    alone, _ = clashscore(base)
    assert alone["n_clashes"] == 0  # 1-2, 1-3, 1-4 (and H 1-5) contacts are excluded
    acceptor = with_partner("O", "O")  # backbone O of another residue: H...O overlap 1.05+1.40-1.9 = 0.55
    s, _ = clashscore(acceptor)
    assert s["n_clashes"] == 0
    carbon = with_partner("CA", "C")  # same place, not an acceptor: H...C 0.85 and N...C 0.49 Å overlap
    s, per_res = clashscore(carbon)
    pairs = clash_pairs(carbon)
    assert s["n_clashes"] == 2
    assert sorted(pairs["label_1"].str.split(":").str[-1]) == ["H", "N"]
    assert pairs["overlap_A"].tolist() == pytest.approx([1.05 + 1.70 - 1.9, 1.55 + 1.70 - 1.9 - 0.86], abs=1e-6)
    assert per_res["n_clashes"].tolist() == [0.0, 2.0, 2.0]
    assert s["clashscore"] == pytest.approx(1000.0 * 2 / len(carbon))


def test_bonded_neighbours_never_clash_and_nonbonded_h_do():
    m = add_riding_hydrogens(ideal_ala_gly())
    pairs = clash_pairs(m, overlap_A=0.0)
    # any overlapping pair reported must be more than 3 bonds apart (4 with H): none share a residue
    # neighbourhood this small except through the peptide, so the list holds only distant pairs
    for a, b in zip(pairs["atom_1"], pairs["atom_2"]):
        assert np.linalg.norm(m.coords[a] - m.coords[b]) > 1.9
    # a water placed onto a methyl H clashes (water O is also no acceptor partner for a C-H)
    hb1 = m.coords[atom(m, 1, "HB1")]
    cb = m.coords[atom(m, 1, "CB")]
    w = make_model([_lone("W", 1, "HOH", "O", "O", hb1 + 1.8 * (hb1 - cb) / np.linalg.norm(hb1 - cb))])
    both = concat(m, w)
    s, _ = clashscore(both)
    assert s["n_clashes"] == 1  # HB1...O overlap 1.22 + 1.40 - 1.8 = 0.82
    assert s["n_atoms_with_h"] == len(m)  # water is not counted in the denominator


def test_nuclear_radii_are_smaller():
    m = make_model([_lone("A", 1, "LIG", "C1", "C", [0, 0, 0]), _lone("A", 1, "LIG", "H1", "H", [1.09, 0, 0]),
                    _lone("B", 1, "LIG", "C1", "C", [1.09 + 2.1, 0, 0])])
    ec = clash_pairs(m, overlap_A=0.0)
    nu = clash_pairs(m, nuclear=True, overlap_A=0.0)
    assert ec["overlap_A"].max() == pytest.approx(1.22 + 1.70 - 2.1)
    assert nu["overlap_A"].max() == pytest.approx(1.17 + 1.70 - 2.1)


# -- MolProbity score ----------------------------------------------------------------------------

def test_molprobity_score_published_examples():
    # cctbx mmtbx/validation/utils.py regression values: PDB 2HR0 and 3MKU
    assert molprobity_score(48.0, 9.95, 86.44) == pytest.approx(3.55, abs=0.01)
    assert molprobity_score(215.8, 17.99, 52.18) == pytest.approx(4.71, abs=0.01)
    # formula (Chen et al. 2010): allowances of 1 % rotamer outliers and 2 % non-favoured Rama
    assert molprobity_score(0.0, 0.0, 100.0) == pytest.approx(0.5)
    assert molprobity_score(0.0, 1.0, 98.0) == pytest.approx(0.5)
    expected = 0.426 * math.log(11.0) + 0.33 * math.log(1 + 2.0) + 0.25 * math.log(1 + 3.0) + 0.5
    assert molprobity_score(10.0, 3.0, 95.0) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [(-1.0, 0.0, 90.0), (0.0, float("nan"), 90.0), (0.0, 0.0, 101.0), (None, 1, 90)])
def test_molprobity_score_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        molprobity_score(*bad)


def test_standard_residue_list():
    assert len(STANDARD_AMINO_ACIDS) == 20
    assert set(ideal_geometry()["bonds"]) == set(STANDARD_AMINO_ACIDS)
