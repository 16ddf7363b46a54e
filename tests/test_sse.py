"""Tests for emforge.sse: DSSP-rule secondary structure and secondary-structure fragments.

References are independent of emforge's own output: ideal backbones built here with a small NeRF
builder (torsions checked with gemmi) whose DSSP assignment follows from the Kabsch & Sander rules
by hand, the H-bond energy formula evaluated directly on the built coordinates, and the HELIX/SHEET
records of real PDB files (read with gemmi). The comparison with pydssp is
benchmarks/sse_vs_pydssp.py.
"""

from __future__ import annotations

import gemmi
import numpy as np
import pytest
from backbone_builder import build_backbone, make_model

from emforge.errors import InputError
from emforge.models import AtomModel, read_model
from emforge.sse import (
    assign_secondary_structure,
    backbone_arrays,
    hbond_energy,
    sse_fragments,
)


def _dihedral(p0, p1, p2, p3) -> float:
    return float(np.degrees(gemmi.calculate_dihedral(*(gemmi.Position(*p) for p in (p0, p1, p2, p3)))))


@pytest.fixture(scope="module")
def helix20() -> np.ndarray:
    return build_backbone([-57.0] * 20, [-47.0] * 20)


def test_builder_torsions_are_as_requested(helix20):
    assert _dihedral(helix20[4, 2], helix20[5, 0], helix20[5, 1], helix20[5, 2]) == pytest.approx(-57.0, abs=1e-6)
    assert _dihedral(helix20[5, 0], helix20[5, 1], helix20[5, 2], helix20[6, 0]) == pytest.approx(-47.0, abs=1e-6)
    assert abs(_dihedral(helix20[5, 1], helix20[5, 2], helix20[6, 0], helix20[6, 1])) == pytest.approx(180.0, abs=1e-6)


# -- ideal helix ---------------------------------------------------------------------------------

def test_ideal_alpha_helix_follows_minimal_helix_rule(helix20):
    # every i -> i+4 H-bond exists for i = 0..15 (residue 0 donates nothing): 4-turns at 0..15, minimal
    # helices at 1..15 (turns at i-1 and i) -> H on residues 1..18; 0 and 19 are in no minimal helix.
    # Residue 19 is no T (a 4-turn at 16..18 would need residue 20) and neither end can be a bend.
    m = make_model({"A": helix20})
    assert "".join(assign_secondary_structure(m, states=8)) == "-" + "H" * 18 + "-"
    assert "".join(assign_secondary_structure(m)) == "C" + "H" * 18 + "C"


@pytest.mark.parametrize(("phi", "psi", "code", "n"), [(-49.0, -26.0, "G", 3), (-57.0, -70.0, "I", 5)])
def test_ideal_310_and_pi_helices(phi, psi, code, n):
    # 12 residues with only i -> i+n bonds: n-turns at 0..11-n, minimal helices at 1..11-n, each
    # covering n residues -> residues 1..10 carry the code, the two ends are '-'
    bb = build_backbone([phi] * 12, [psi] * 12)
    m = make_model({"A": bb})
    e = hbond_energy(m).toarray()
    others = [k for k in (3, 4, 5) if k != n]
    assert e[2, 2 + n] < -0.5 and all(e[2, 2 + k] > -0.5 for k in others)
    assert "".join(assign_secondary_structure(m, states=8)) == "-" + code * 10 + "-"
    assert "".join(assign_secondary_structure(m)) == "C" + "H" * 10 + "C"


def test_hbond_energy_is_the_kabsch_sander_formula(helix20):
    m = make_model({"A": helix20})
    e = hbond_energy(m)
    assert e.shape == (20, 20)
    for i in (0, 5, 15):  # C=O of i accepts from N-H of i+4; H = N + unit(C(i+3) - O(i+3)) * 1.0 Å
        j = i + 4
        n, c, o = helix20[j, 0], helix20[i, 2], helix20[i, 3]
        co = helix20[j - 1, 2] - helix20[j - 1, 3]
        h = n + co / np.linalg.norm(co)
        d = np.linalg.norm
        ref = 0.084 * 332 * (1 / d(o - n) + 1 / d(c - h) - 1 / d(o - h) - 1 / d(c - n))
        assert e[i, j] == pytest.approx(ref, rel=1e-9)
        assert ref < -0.5
    dense = e.toarray()
    assert not dense[:, 0].any()  # the chain's first residue has no amide H
    assert not np.diagonal(dense).any() and not np.diagonal(dense, 1).any()  # i -> i and i -> i+1 never evaluated


def test_proline_donates_no_hbond(helix20):
    m = make_model({"A": helix20}, res_names={("A", 10): "PRO"})
    dense = hbond_energy(m).toarray()
    assert not dense[:, 10].any() and dense[:, 9].any()
    # losing the 6 -> 10 bond removes the 4-turn at 6: minimal helices start at 1..5 (H on 1..8) and
    # at 8..15 (H on 8..18), so residues 1..18 are still all H
    ss = "".join(assign_secondary_structure(m, states=8))
    assert ss == "-" + "H" * 18 + "-"


def test_chain_break_and_missing_atoms_stop_helices(helix20):
    # residue 9 deleted: C(8)-N(10) ~ 4 Å is a break; segments of 9 and 10 residues
    keep = np.r_[0:9, 10:20]
    m = make_model({"A": helix20[keep]})
    assert "".join(assign_secondary_structure(m, states=8)) == "-HHHHHHH-" + "-HHHHHHHH-"
    # residue 9 without CA: kept (NaN), never assigned, and breaks the chain on both sides
    m = make_model({"A": helix20}, drop=(("A", 9, "CA"),))
    bb = backbone_arrays(m)
    assert bb.n_residues == 20 and np.isnan(bb.xyz[9, 1]).all() and not bb.complete[9]
    assert "".join(assign_secondary_structure(bb, states=8)) == "-HHHHHHH--" + "-HHHHHHHH-"


# -- strands -------------------------------------------------------------------------------------

def test_isolated_extended_strand_is_not_E():
    m = make_model({"A": build_backbone([-120.0] * 9, [130.0] * 9)})
    ss = assign_secondary_structure(m, states=8)
    assert not np.isin(ss, ("E", "B")).any()
    assert "E" not in assign_secondary_structure(m)


def test_antiparallel_strand_pair_is_E():
    # two 7-residue strands related by a two-fold axis normal to the sheet: narrow (mutually
    # H-bonded) pairs (1, 5'), (3, 3'), (5, 1'), wide pairs (2, 4') and (4, 2') -> one antiparallel
    # ladder of five bridges: E on residues 1..5 of both strands, ends unpaired.
    s1 = build_backbone([-120.0] * 7, [120.0] * 7)
    ca = s1[:, 1]
    x = (ca[6] - ca[0]) / np.linalg.norm(ca[6] - ca[0])
    co = s1[3, 3] - s1[3, 2]
    y = co - (co @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    axis_point = ca[3] - 0.1 * x + 2.6 * y  # strand axes 5.2 Å apart
    q = s1.reshape(-1, 3) - axis_point
    s2 = (axis_point - np.outer(q @ x, x) - np.outer(q @ y, y) + np.outer(q @ z, z)).reshape(s1.shape)
    for r in (1, 3, 5):  # construction check: N-H...O=C distances of the narrow pairs
        assert np.linalg.norm(s1[r, 0] - s2[6 - r, 3]) == pytest.approx(2.9, abs=0.1)
        assert np.linalg.norm(s1[r, 3] - s2[6 - r, 0]) == pytest.approx(2.9, abs=0.1)
    m = make_model({"A": s1, "B": s2})
    e = hbond_energy(m)
    for r in (1, 3, 5):
        assert e[r, 7 + 6 - r] < -0.5 and e[7 + 6 - r, r] < -0.5
    ss = "".join(assign_secondary_structure(m, states=8))
    assert ss == "-EEEEE-" + "-EEEEE-"
    assert "".join(assign_secondary_structure(m)) == "CEEEEEC" * 2
    # residues 2..4 of each strand: only the narrow pair (3, 3') is left, a lone bridge -> B
    m = make_model({"A": s1[2:5], "B": s2[2:5]})
    assert "".join(assign_secondary_structure(m, states=8)) == "-B-" + "-B-"
    assert "".join(assign_secondary_structure(m)) == "CEC" * 2


# -- real structures -----------------------------------------------------------------------------

def _record_ss3(path, model, bb) -> np.ndarray:
    """'H' / 'E' / 'C' per backbone residue from the file's HELIX and SHEET records (gemmi)."""
    st = gemmi.read_structure(str(path))
    seq = model.res_seq[bb.first_atom]
    ref = np.full(bb.n_residues, "C")
    spans = [("H", h.start, h.end) for h in st.helices]
    spans += [("E", s.start, s.end) for sheet in st.sheets for s in sheet.strands]
    assert spans, f"{path} has no HELIX/SHEET records"
    for kind, a, b in spans:
        ref[(bb.chain_id == a.chain_name) & (seq >= a.res_id.seqid.num) & (seq <= b.res_id.seqid.num)] = kind
    return ref


@pytest.mark.parametrize("rel", ["pairs/adk/1ake.pdb", "maps/emd_5168/1j6z.pdb"])
def test_three_state_agrees_with_records(shared_data, rel):
    path = shared_data / rel
    m = read_model(path)
    bb = backbone_arrays(m)
    ss = assign_secondary_structure(bb)
    ref = _record_ss3(path, m, bb)
    covered = (ref != "C") | (ss != "C")
    assert np.mean(ss[covered] == ref[covered]) >= 0.85


def test_1anf_helices_and_recorded_strands(shared_data):
    # 1ANF's SHEET records list only 10 strands (author assignment); DSSP finds more, so strands are
    # checked as recall of the recorded ones and helices as agreement over residues covered by either
    path = shared_data / "pairs/mbp/1anf.pdb"
    m = read_model(path)
    bb = backbone_arrays(m)
    ss = assign_secondary_structure(bb)
    ref = _record_ss3(path, m, bb)
    helix = (ref == "H") | (ss == "H")
    assert np.mean(ss[helix] == ref[helix]) >= 0.85
    assert np.mean(ss[ref == "E"] == "E") >= 0.85


def test_known_helical_hbond_and_backbone_mapping(shared_data):
    path = shared_data / "pairs/adk/1ake.pdb"
    m = read_model(path)
    bb = backbone_arrays(m)
    st = gemmi.read_structure(str(path))
    st.remove_alternative_conformations()
    n_aa = sum(1 for ch in st[0] for res in ch
               if (info := gemmi.find_tabulated_residue(res.name)) is not None and info.is_amino_acid())
    assert bb.n_residues == n_aa
    # first_atom points at the residue's atoms; xyz are the model's N, CA, C, O
    labels = np.asarray(m.residue_labels())[np.searchsorted(m.residue_starts(), bb.first_atom)]
    assert (labels == bb.labels).all()
    r = 17
    atoms = np.flatnonzero(m.residue_index == m.residue_index[bb.first_atom[r]])
    for k, name in enumerate(("N", "CA", "C", "O")):
        np.testing.assert_array_equal(bb.xyz[r, k], m.coords[atoms[m.atom_name[atoms] == name][0]])
    # an alpha helix from the records (class 1, >= 8 residues): C=O(i) ... H-N(i+4) in its middle
    helix = next(h for h in st.helices if h.pdb_helix_class.name == "RAlpha" and h.length >= 8)
    seq = m.res_seq[bb.first_atom]
    i = int(np.flatnonzero((bb.chain_id == helix.start.chain_name) & (seq == helix.start.res_id.seqid.num + 2))[0])
    assert seq[i + 4] == seq[i] + 4
    assert hbond_energy(bb)[i, i + 4] < -0.5


# -- errors and fragments ------------------------------------------------------------------------

def test_model_without_protein_backbone_raises(helix20):
    water = AtomModel(np.zeros((1, 3)), np.array(["O"]), np.array(["O"]), np.array(["HOH"]), np.array([1]),
                      np.array([""]), np.array(["A"]), np.zeros(1), np.ones(1), np.array([True]), np.array([0]))
    with pytest.raises(InputError, match="no protein backbone"):
        assign_secondary_structure(water)
    only_o = make_model({"A": helix20[:3]}, drop=tuple(("A", i, a) for i in range(3) for a in ("N", "CA", "C")))
    with pytest.raises(InputError, match="no protein backbone"):
        backbone_arrays(only_o)
    with pytest.raises(InputError, match="states"):
        assign_secondary_structure(make_model({"A": helix20}), states=4)


def test_sse_fragments_are_maximal_runs_within_chains():
    ss3 = np.array(list("CHHHHCEEEEEECCEEHHHHHHH"))
    chain = np.array([0] * 18 + [1] * 5)  # the last H run crosses the chain boundary at 18
    got = sse_fragments(ss3, chain)
    assert got == [(1, 4, "H"), (6, 11, "E"), (18, 22, "H")]  # EE (2) too short; HH at 16-17 too short
    assert sse_fragments(ss3, chain, min_helix=2, min_strand=2) == [
        (1, 4, "H"), (6, 11, "E"), (14, 15, "E"), (16, 17, "H"), (18, 22, "H")]
    assert sse_fragments(np.array([], dtype=str), np.array([], dtype=int)) == []
    with pytest.raises(InputError):
        sse_fragments(ss3, chain[:-1])
