"""emforge.models: reading/writing through gemmi, selections, residues, superposition.

References are independent of emforge: gemmi's own iteration over the structure, the
fixed PDB columns of the raw files, chains/MANIFEST.tsv, gemmi.Element and
gemmi.superpose_positions, and analytic rigid transforms.
"""

from __future__ import annotations

import csv
import gzip

import gemmi
import numpy as np
import pytest
from conftest import require_data

from emforge.errors import InputError
from emforge.models import (
    AtomModel,
    RigidTransform,
    from_gemmi,
    is_model_path,
    read_model,
    superpose,
    write_model,
)

# -- helpers ----------------------------------------------------------------------------------


def gemmi_atoms(path):
    """Per-atom lists from gemmi's own iteration (first model, first altloc)."""
    st = gemmi.read_structure(str(path))
    st.remove_alternative_conformations()
    rows = []
    for ch in st[0]:
        for res in ch:
            for at in res:
                rows.append((at.pos.x, at.pos.y, at.pos.z, at.name, at.element.name, res.name, res.seqid.num,
                             res.seqid.icode.strip(), ch.name, at.b_iso, at.occ, res.het_flag == "H"))
    cols = list(zip(*rows))
    return {
        "coords": np.array(cols[:3]).T, "atom_name": list(cols[3]), "element": list(cols[4]),
        "res_name": list(cols[5]), "res_seq": list(cols[6]), "ins_code": list(cols[7]),
        "chain_id": list(cols[8]), "b_factor": np.array(cols[9]), "occupancy": np.array(cols[10]),
        "is_het": list(cols[11]),
    }


def assert_matches_gemmi(model: AtomModel, path):
    ref = gemmi_atoms(path)
    assert len(model) == len(ref["coords"])
    np.testing.assert_allclose(model.coords, ref["coords"], atol=1e-6)
    np.testing.assert_allclose(model.b_factor, ref["b_factor"], atol=1e-6)
    np.testing.assert_allclose(model.occupancy, ref["occupancy"], atol=1e-6)
    for name in ("atom_name", "element", "res_name", "res_seq", "ins_code", "chain_id", "is_het"):
        assert getattr(model, name).tolist() == ref[name], name


def pdb_atom_records(path):
    """ATOM/HETATM lines of a PDB file (plain or gzipped) - fixed columns, for independent counts."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        return [ln for ln in fh if ln.startswith(("ATOM  ", "HETATM"))]


def same_model(a: AtomModel, b: AtomModel, coord_tol=1e-3, b_tol=5e-3):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.coords, b.coords, atol=coord_tol)
    np.testing.assert_allclose(a.b_factor, b.b_factor, atol=b_tol)
    np.testing.assert_allclose(a.occupancy, b.occupancy, atol=b_tol)
    for name in ("element", "atom_name", "res_name", "res_seq", "ins_code", "chain_id", "is_het",
                 "residue_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.fixture(scope="module")
def adk_path():
    return require_data("pairs", "adk", "1ake.pdb")


@pytest.fixture(scope="module")
def antibody_path():
    """A real antibody with Kabat insertion codes (52A, 82A, ...) and HETATM ligands."""
    return require_data("pairs", "antibody_antigen", "3RJQ_r_u.pdb")


@pytest.fixture(scope="module")
def antibody(antibody_path):
    return read_model(antibody_path)


# -- reading ----------------------------------------------------------------------------------

def test_read_pdb_matches_gemmi_and_columns(adk_path):
    m = read_model(adk_path)
    assert_matches_gemmi(m, adk_path)
    # independent of gemmi: the fixed PDB columns. The file has no altloc letters, but ARG 167
    # lists five side-chain atoms twice; like a second conformer, only the first copy is kept.
    recs, seen = [], set()
    for r in pdb_atom_records(adk_path):
        key = (r[21], r[22:27], r[12:16])
        if key not in seen:
            seen.add(key)
            recs.append(r)
    assert len(pdb_atom_records(adk_path)) == 1661
    assert len(m) == len(recs) == 1656
    xyz = np.array([[float(r[30:38]), float(r[38:46]), float(r[46:54])] for r in recs])
    np.testing.assert_allclose(m.coords, xyz, atol=1e-9)
    assert m.atom_name.tolist() == [r[12:16].strip() for r in recs]
    assert m.chain_id.tolist() == [r[21] for r in recs]
    assert m.res_seq.tolist() == [int(r[22:26]) for r in recs]
    np.testing.assert_allclose(m.b_factor, [float(r[60:66]) for r in recs])
    assert m.coords.dtype == np.float64 and m.coords.shape == (1656, 3)


def test_read_gz_chain_matches_gemmi():
    path = require_data("chains", "1ubq_A.pdb.gz")
    m = read_model(path)
    assert_matches_gemmi(m, path)
    assert len(m) == len(pdb_atom_records(path))


def test_read_insertion_codes(antibody, antibody_path):
    assert_matches_gemmi(antibody, antibody_path)
    recs = pdb_atom_records(antibody_path)
    assert int(np.count_nonzero(antibody.ins_code != "")) == sum(r[26] != " " for r in recs) > 0
    labels = antibody.residue_labels()
    assert "A:TRP52A" in labels and "A:SER52" in labels
    assert labels.index("A:SER52") + 1 == labels.index("A:TRP52A")
    # residues with and without an insertion code stay separate residues
    t = antibody.residue_table()
    keys = list(zip(t["chain_id"].tolist(), t["res_seq"].tolist(), t["ins_code"].tolist()))
    assert len(keys) == len(set(keys))


def test_read_mmcif_written_by_gemmi(tmp_path, antibody, antibody_path):
    st = gemmi.read_structure(str(antibody_path))
    st.setup_entities()
    cif = tmp_path / "ab.cif"
    st.make_mmcif_document().write_file(str(cif))
    m = read_model(cif)
    assert_matches_gemmi(m, cif)
    same_model(m, antibody, coord_tol=1e-9, b_tol=1e-9)


def test_read_altlocs_keeps_first(tmp_path):
    path = require_data("pairs", "mbp", "1anf.pdb")
    m = read_model(path)
    assert_matches_gemmi(m, path)
    # a two-conformer residue made with gemmi: only one copy of each atom survives
    st = gemmi.read_structure(str(require_data("chains", "1crn_A.pdb.gz")))
    res = st[0][0][0]
    n_res_atoms = len(res)
    conformer_b = []
    for idx in range(n_res_atoms):   # clone first: add_atom invalidates references into res
        res[idx].altloc = "A"
        res[idx].occ = 0.6
        b = res[idx].clone()
        b.altloc = "B"
        b.occ = 0.4
        b.pos = gemmi.Position(b.pos.x + 1, b.pos.y, b.pos.z)
        conformer_b.append(b)
    for b in conformer_b:
        res.add_atom(b)
    st.setup_entities()
    p = tmp_path / "alt.pdb"
    st.write_pdb(str(p))
    m = read_model(p)
    first = m.select(m.residue_index == 0)
    assert len(first) == n_res_atoms
    np.testing.assert_allclose(first.occupancy, 0.6)
    ref = gemmi.read_structure(str(require_data("chains", "1crn_A.pdb.gz")))[0][0][0]
    np.testing.assert_allclose(first.coords, [a.pos.tolist() for a in ref])


def test_long_mmcif_names_are_not_truncated(tmp_path):
    """mmCIF allows chain ids, residue and atom names longer than the PDB columns."""
    st = gemmi.read_structure(str(require_data("chains", "1crn_A.pdb.gz")))
    st[0][0].name = "LONGCH"
    st[0][0][1][0].name = "CA12X"
    st.setup_entities()
    cif = tmp_path / "long.cif"
    st.make_mmcif_document().write_file(str(cif))
    m = read_model(cif)
    assert m.chain_ids == ["LONGCH"]
    assert "CA12X" in m.atom_name.tolist()
    assert_matches_gemmi(m, cif)


def test_sequences_match_manifest_and_gemmi():
    manifest = require_data("chains", "MANIFEST.tsv")
    with open(manifest) as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh, delimiter="\t")}
    for name in ["1crn_A.pdb.gz", "1ubq_A.pdb.gz", "1ake.pdb", "antibody_benchmark_3RJQ_l_u_A.pdb.gz",
                 "2ayo_A.pdb.gz", "BM5-clean_1ACB_l_u_B.pdb.gz"]:
        if name not in rows:
            continue
        path = require_data("chains", name)
        m = read_model(path)
        seqs = m.sequences()
        row = rows[name]
        assert list(seqs) == [row["chain"]], name
        assert seqs[row["chain"]] == row["sequence"], name
        assert len(seqs[row["chain"]]) == int(row["n_residues"]) == m.n_residues
        st = gemmi.read_structure(str(path))
        assert seqs[row["chain"]] == gemmi.one_letter_code([r.name for r in st[0][0]])


def test_sequences_skip_non_protein(antibody, antibody_path):
    st = gemmi.read_structure(str(antibody_path))
    expected = {}
    for ch in st[0]:
        aa = [r.name for r in ch if gemmi.find_tabulated_residue(r.name).is_amino_acid()]
        if aa:
            expected[ch.name] = gemmi.one_letter_code(aa)
    got = antibody.sequences()
    assert set(got) == set(expected)
    for c in got:   # gemmi writes X for modified residues (e.g. PCA); we write the parent letter
        assert len(got[c]) == len(expected[c])
        assert all(a == b for a, b in zip(got[c], expected[c]) if b != "X")


# -- writing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pdb", ".cif", ".pdb.gz", ".cif.gz", ".ent", ".mmcif"])
def test_write_read_round_trip(tmp_path, antibody, suffix):
    path = write_model(tmp_path / f"out{suffix}", antibody)
    assert path == tmp_path / f"out{suffix}"
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = read_model(path)
    same_model(back, antibody)
    # gemmi reads our file with the same content
    assert_matches_gemmi(back, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


def test_write_round_trip_with_hydrogens(tmp_path):
    path = require_data("pairs", "adk", "4akeA.pdb")
    m = read_model(path)
    for suffix in (".pdb", ".cif.gz"):
        same_model(read_model(write_model(tmp_path / f"h{suffix}", m)), m)


def test_write_selection_and_new_coordinates(tmp_path, antibody):
    ca = antibody.calpha()
    moved = ca.with_coords(ca.coords + (1.0, -2.0, 0.5))
    back = read_model(write_model(tmp_path / "ca.cif", moved))
    same_model(back.select(np.arange(len(back))), moved.select(np.arange(len(moved))))
    np.testing.assert_allclose(back.coords - ca.coords, np.broadcast_to((1.0, -2.0, 0.5), ca.coords.shape),
                               atol=1e-3)


# -- selections and per-atom properties -------------------------------------------------------

def _gemmi_count(path, pred):
    st = gemmi.read_structure(str(path))
    st.setup_entities()
    st.remove_alternative_conformations()
    return sum(1 for ch in st[0] for res in ch for at in res if pred(res, at))


def test_selections_match_gemmi(antibody, antibody_path):
    sel = gemmi.Selection("CA[C]")
    st = gemmi.read_structure(str(antibody_path))
    n_ca = sum(1 for mdl in sel.models(st) for ch in sel.chains(mdl) for r in sel.residues(ch)
               for _ in sel.atoms(r))
    ca = antibody.calpha()
    assert len(ca) == n_ca == antibody.protein().n_residues
    assert set(ca.atom_name.tolist()) == {"CA"}
    # gemmi's polymer assignment (entities) marks the protein residues of this file
    def is_polymer(r):
        return r.entity_type == gemmi.EntityType.Polymer
    assert len(antibody.protein()) == _gemmi_count(antibody_path, lambda r, a: is_polymer(r)) == 976
    assert len(antibody.backbone()) == _gemmi_count(
        antibody_path, lambda r, a: is_polymer(r) and a.name in ("N", "CA", "C", "O"))
    ligands = antibody.select(~antibody.is_protein())
    assert len(ligands) > 0 and ligands.is_het.all()
    n_chain = _gemmi_count(antibody_path, lambda r, a: True)
    assert len(antibody.chain("A")) == n_chain and len(antibody.chain("Z")) == 0


def test_chain_selection_and_ids():
    path = require_data("pairs", "mbp", "1anf.pdb")
    m = read_model(path)
    st = gemmi.read_structure(str(path))
    assert m.chain_ids == [ch.name for ch in st[0]]
    for ch in st[0]:
        sub = m.chain(ch.name)
        assert len(sub) == sum(len(r) for r in ch)
        assert set(sub.chain_id.tolist()) == {ch.name}


def test_without_hydrogens_and_masses():
    path = require_data("pairs", "adk", "4akeA.pdb")
    m = read_model(path)
    recs = pdb_atom_records(path)
    n_h = sum(r[76:78].strip() == "H" for r in recs)
    assert n_h > 0
    heavy = m.without_hydrogens()
    assert len(heavy) == len(m) - n_h == _gemmi_count(path, lambda r, a: not a.is_hydrogen())
    assert not heavy.is_hydrogen().any()
    assert len(m) == len(recs)
    # masses and atomic numbers against gemmi.Element and textbook values
    np.testing.assert_allclose(m.mass, [gemmi.Element(e).weight for e in m.element])
    np.testing.assert_array_equal(m.atomic_number, [gemmi.Element(e).atomic_number for e in m.element])
    table = dict(zip(m.element.tolist(), zip(m.atomic_number.tolist(), m.mass.tolist())))
    for el, (z, mass) in {"H": (1, 1.008), "C": (6, 12.011), "N": (7, 14.007), "O": (8, 15.999),
                          "S": (16, 32.06)}.items():
        if el in table:
            assert table[el][0] == z
            assert table[el][1] == pytest.approx(mass, abs=0.01)
    assert m.atomic_number.dtype.kind == "i"


def test_unknown_element_and_empty_model(antibody):
    odd = antibody.select(np.arange(3))
    odd = AtomModel(**{**{f: getattr(odd, f) for f in odd.__dataclass_fields__},
                       "element": np.array(["X", "Se", "D"])})
    np.testing.assert_array_equal(odd.atomic_number, [0, 34, 1])
    np.testing.assert_allclose(odd.mass, [0.0, gemmi.Element("Se").weight, gemmi.Element("D").weight])
    np.testing.assert_array_equal(odd.is_hydrogen(), [False, False, True])
    empty = antibody.select(np.zeros(len(antibody), bool))
    assert len(empty) == 0 and empty.n_residues == 0
    assert empty.atomic_number.dtype.kind == "i" and empty.mass.dtype.kind == "f"
    assert empty.sequences() == {} and empty.residue_labels() == []
    assert len(empty.calpha()) == 0


def test_selections_do_not_mutate(antibody):
    before = antibody.coords.copy()
    ca = antibody.calpha()
    ca2 = ca.with_coords(ca.coords + 5.0).with_b_factors(1.0)
    ca.coords[:] = 0.0   # a selection owns its arrays
    np.testing.assert_array_equal(antibody.coords, before)
    np.testing.assert_array_equal(ca2.b_factor, 1.0)
    with pytest.raises(ValueError):
        antibody.with_coords(np.zeros((3, 3)))


def test_residue_table_matches_gemmi(antibody, antibody_path):
    st = gemmi.read_structure(str(antibody_path))
    st.remove_alternative_conformations()
    residues = [(ch.name, r.seqid.num, r.seqid.icode.strip(), r.name) for ch in st[0] for r in ch]
    t = antibody.residue_table()
    assert list(zip(t["chain_id"].tolist(), t["res_seq"].tolist(), t["ins_code"].tolist(),
                    t["res_name"].tolist())) == residues
    assert antibody.n_residues == len(residues)
    assert antibody.residue_labels()[0] == f"{residues[0][0]}:{residues[0][3]}{residues[0][1]}"
    starts = antibody.residue_starts()
    assert starts[0] == 0 and len(starts) == len(residues)
    sizes = np.diff(np.append(starts, len(antibody)))
    assert sizes.tolist() == [len(r) for ch in st[0] for r in ch]


def test_from_gemmi_equals_read_model(antibody, antibody_path):
    st = gemmi.read_structure(str(antibody_path))
    st.remove_alternative_conformations()
    same_model(from_gemmi(st[0]), antibody, coord_tol=0, b_tol=0)


# -- superposition ----------------------------------------------------------------------------

def _positions(a):
    return [gemmi.Position(*map(float, p)) for p in a]


def test_superpose_recovers_known_transform(antibody):
    rng = np.random.default_rng(11)
    x = antibody.calpha().coords
    rot = random_rotation(rng)
    t = rng.uniform(-30, 30, 3)
    y = x @ rot.T + t
    fit, rmsd = superpose(x, y)
    np.testing.assert_allclose(fit.rotation, rot, atol=1e-10)
    np.testing.assert_allclose(fit.translation, t, atol=1e-8)
    assert rmsd < 1e-8
    np.testing.assert_allclose(fit.apply(x), y, atol=1e-8)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0)


@pytest.mark.parametrize("weighted", [False, True])
def test_superpose_matches_gemmi(antibody, weighted):
    rng = np.random.default_rng(12)
    x = antibody.calpha().coords
    y = x @ random_rotation(rng).T + (4.0, -1.0, 9.0) + rng.normal(scale=0.8, size=x.shape)
    w = rng.uniform(0.2, 3.0, len(x)) if weighted else None
    fit, rmsd = superpose(x, y, weights=w)
    sr = gemmi.superpose_positions(_positions(y), _positions(x), [] if w is None else w.tolist())
    assert rmsd == pytest.approx(sr.rmsd, rel=1e-9)
    np.testing.assert_allclose(fit.rotation, np.array(sr.transform.mat.tolist()), atol=1e-9)
    np.testing.assert_allclose(fit.translation, np.array(sr.transform.vec.tolist()), atol=1e-8)
    # brute-force RMSD from the fitted coordinates
    d2 = np.sum((fit.apply(x) - y) ** 2, axis=1)
    ww = np.ones(len(x)) if w is None else w
    assert rmsd == pytest.approx(np.sqrt(np.sum(ww * d2) / ww.sum()), rel=1e-12)


def test_superpose_never_reflects(antibody):
    x = antibody.calpha().coords[:40]
    mirrored = x * (-1.0, 1.0, 1.0)     # the best orthogonal fit would be a reflection
    fit, rmsd = superpose(x, mirrored)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(fit.rotation @ fit.rotation.T, np.eye(3), atol=1e-12)
    assert rmsd > 1.0
    sr = gemmi.superpose_positions(_positions(mirrored), _positions(x))
    assert rmsd == pytest.approx(sr.rmsd, rel=1e-9)
    # planar points (degenerate third axis) still give a proper rotation
    plane = np.c_[np.random.default_rng(2).normal(size=(10, 2)), np.zeros(10)]
    fit, rmsd = superpose(plane, plane * (1.0, -1.0, 1.0))
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0)
    assert rmsd < 1e-10   # a 180-degree turn about x maps the mirrored plane exactly


def test_superpose_rejects_bad_shapes():
    with pytest.raises(ValueError):
        superpose(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError):
        superpose(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        superpose(np.zeros((5, 2)), np.zeros((5, 2)))


def test_rigid_transform_identities():
    rng = np.random.default_rng(13)
    a = RigidTransform(random_rotation(rng), rng.normal(size=3) * 10)
    b = RigidTransform(random_rotation(rng), rng.normal(size=3) * 10)
    p = rng.normal(size=(20, 3)) * 15
    np.testing.assert_allclose(a.inverse().apply(a.apply(p)), p, atol=1e-10)
    np.testing.assert_allclose(a.compose(b).apply(p), a.apply(b.apply(p)), atol=1e-10)
    ident = a.compose(a.inverse())
    np.testing.assert_allclose(ident.rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(ident.translation, 0.0, atol=1e-10)
    ident2 = a.inverse().compose(a)
    np.testing.assert_allclose(ident2.apply(p), p, atol=1e-10)
    np.testing.assert_allclose(RigidTransform.identity().apply(p), p)
    np.testing.assert_allclose(a.apply(p[0]), a.apply(p[:1])[0])
    # rotation angle of a known rotation about z
    th = np.radians(30.0)
    rz = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    assert RigidTransform(rz, np.zeros(3)).rotation_deg == pytest.approx(30.0)
    assert RigidTransform.identity().rotation_deg == pytest.approx(0.0, abs=1e-6)
    # comparing transforms must not blow up on arrays (identity comparison, like DensityMap)
    same = a
    assert same == a
    assert a != b


def test_transformed_model(antibody):
    rng = np.random.default_rng(14)
    tr = RigidTransform(random_rotation(rng), rng.normal(size=3))
    moved = antibody.transformed(tr)
    np.testing.assert_allclose(moved.coords, antibody.coords @ tr.rotation.T + tr.translation)
    fit, rmsd = superpose(moved.coords, antibody.coords)
    assert rmsd < 1e-8
    np.testing.assert_allclose(fit.compose(tr).rotation, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(antibody.centroid(), antibody.coords.mean(0))


# -- bad input --------------------------------------------------------------------------------

def _waters_only_pdb() -> str:
    return "".join(
        f"HETATM{i + 1:5d}  O   HOH W{i + 1:4d}    {i * 3.0:8.3f}{1.0:8.3f}{2.0:8.3f}  1.00 20.00           O  \n"
        for i in range(5)) + "END\n"


def test_bad_model_inputs_raise_input_error_naming_file(tmp_path):
    cases = {
        "missing.pdb": (None, "not found"),
        "model.txt": ("ATOM\n", "unknown model file type"),
        "model": ("ATOM\n", "unknown model file type"),
        "empty.pdb": ("", "no atoms"),
        "empty.cif": ("", "cannot read model|no atoms"),
        "garbage.pdb": ("this is not\na structure at all\n" * 20, "no atoms"),
        "garbage.cif": ("data_x\nloop_\n_atom_site.id\n'unterminated\n", "cannot read model|no atoms"),
        "waters.pdb": (_waters_only_pdb(), "no amino-acid residues"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        with pytest.raises(InputError, match=problem) as err:
            read_model(path)
        assert str(path) in str(err.value), name
    bad_gz = tmp_path / "bad.pdb.gz"
    bad_gz.write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate" * 10)
    with pytest.raises(InputError) as err:
        read_model(bad_gz)
    assert str(bad_gz) in str(err.value)


def test_waters_only_allowed_without_require_protein(tmp_path):
    path = tmp_path / "waters.pdb"
    path.write_text(_waters_only_pdb())
    m = read_model(path, require_protein=False)
    assert len(m) == 5 and not m.is_protein().any()
    assert m.sequences() == {}


def test_failed_model_write_leaves_nothing(tmp_path, antibody):
    with pytest.raises(InputError, match="unknown model file type") as err:
        write_model(tmp_path / "out.txt", antibody)
    assert str(tmp_path / "out.txt") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_pdb_format_limits_reported_as_input_error(tmp_path, antibody):
    long_chain = AtomModel(**{**{f: getattr(antibody, f) for f in antibody.__dataclass_fields__},
                              "chain_id": np.full(len(antibody), "LONGCH")})
    with pytest.raises(InputError, match="PDB format") as err:
        write_model(tmp_path / "long.pdb", long_chain)
    assert str(tmp_path / "long.pdb") in str(err.value)
    assert list(tmp_path.iterdir()) == []
    back = read_model(write_model(tmp_path / "long.cif", long_chain))   # mmCIF has no such limit
    assert back.chain_ids == ["LONGCH"]


def test_is_model_path():
    assert is_model_path("a.pdb") and is_model_path("a.CIF.gz") and is_model_path("x/y.ent")
    assert not is_model_path("a.mrc") and not is_model_path("a.gz") and not is_model_path("pdb")
