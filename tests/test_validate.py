"""emforge.validate: per-residue flags against facts built into perturbed copies of a real chain,
table shape and order, settings, metric families, bad input, strict JSON and clean writes.

Each flag test changes one thing in crambin (46 residues, no flag of that kind to begin with) by
plain coordinate geometry written here (a displaced atom, a rigid rotation about one bond), checks
the change with an independent measurement (distance, dihedral), and expects the flag on exactly
the residue(s) that were changed.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.models import AtomModel, read_model
from emforge.report import read_per_residue
from emforge.validate import (
    FLAG_COLUMNS,
    KEY_COLUMNS,
    ValidationSettings,
    summary_json,
    validate_structure,
    write_validation,
)

GEOMETRY = ValidationSettings(families=("geometry",))
#: keys that only the map_fit / local_fit / qscore families produce
MAP_FAMILY_KEYS = ("cc", "cc_mask", "ccc", "moc", "resolution_fsc05_A", "smoc_mean", "qscore_mean",
                   "loqfit_A_mean", "local_pcc_decoupled_mean")


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


# -- independent geometry -------------------------------------------------------------------------

def dihedral_deg(a, b, c, d) -> float:
    """Dihedral a-b-c-d in degrees (IUPAC sign), written out here on purpose."""
    b0, b1, b2 = a - b, c - b, d - c
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return float(np.degrees(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w))))


def rotation_matrix(axis, angle_deg) -> np.ndarray:
    """Rodrigues' rotation about the unit vector ``axis``."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.radians(angle_deg)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


def atom(model: AtomModel, res_seq: int, name: str) -> int:
    (i,) = np.flatnonzero((model.res_seq == res_seq) & (model.atom_name == name))
    return int(i)


def set_torsion(model: AtomModel, quad: tuple[int, int, int, int], moving: np.ndarray, target_deg: float):
    """Rotate the ``moving`` atoms rigidly about the bond quad[1]-quad[2] so that the dihedral is ``target_deg``."""
    xyz = model.coords.copy()
    current = dihedral_deg(*xyz[list(quad)])
    pivot = xyz[quad[2]]
    rot = rotation_matrix(xyz[quad[2]] - xyz[quad[1]], target_deg - current)
    xyz[moving] = (xyz[moving] - pivot) @ rot.T + pivot
    out = model.with_coords(xyz)
    assert dihedral_deg(*out.coords[list(quad)]) == pytest.approx(target_deg, abs=1e-6)
    # a rigid rotation about a bond keeps every bond length
    assert np.allclose(np.linalg.norm(out.coords[moving] - pivot, axis=1), np.linalg.norm(xyz[moving] - pivot,
                       axis=1))
    return out


def row_of(table: pd.DataFrame, res_seq: int) -> int:
    (i,) = np.flatnonzero(table["res_seq"].to_numpy() == res_seq)
    return int(i)


def flagged(table: pd.DataFrame, column: str) -> list[int]:
    return table.loc[table[column].to_numpy(dtype=bool), "res_seq"].astype(int).tolist()


# -- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crambin(shared_data) -> AtomModel:
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


@pytest.fixture(scope="module")
def baseline(crambin) -> pd.DataFrame:
    table = validate_structure(crambin, settings=GEOMETRY).per_residue
    # the starting point the tests rely on: none of these flags anywhere in crambin
    for column in ("rama_outlier", "rotamer_outlier", "cbeta_outlier", "has_clash", "peptide_flag"):
        assert not table[column].any(), column
    return table


@pytest.fixture(scope="module")
def crambin_map(crambin) -> DensityMap:
    from emforge.simulate import simulate_map

    return simulate_map(crambin, None, 5.0, voxel_size_A=1.5)


# -- flags ----------------------------------------------------------------------------------------

def test_cbeta_displaced_half_an_angstrom(crambin, baseline):
    res = 38  # Ala
    cb, ca = atom(crambin, res, "CB"), atom(crambin, res, "CA")
    bond = crambin.coords[cb] - crambin.coords[ca]
    # swing CB about CA (the bond length stays) through the angle whose chord is 0.5 Å
    angle = np.degrees(2 * np.arcsin(0.25 / np.linalg.norm(bond)))
    xyz = crambin.coords.copy()
    xyz[cb] = xyz[ca] + rotation_matrix(np.cross(bond, [0.0, 0.0, 1.0]), angle) @ bond
    moved = crambin.with_coords(xyz)
    assert np.linalg.norm(moved.coords[cb] - crambin.coords[cb]) == pytest.approx(0.5)
    assert np.linalg.norm(moved.coords[cb] - moved.coords[ca]) == pytest.approx(np.linalg.norm(bond))

    table = validate_structure(moved, settings=GEOMETRY).per_residue
    assert flagged(table, "cbeta_outlier") == [res]
    i = row_of(table, res)
    # the ideal C-beta is built from N, CA, C only, which did not move: the deviation grows by ~0.5 Å
    assert table.loc[i, "cbeta_deviation_A"] == pytest.approx(0.5, abs=baseline.loc[i, "cbeta_deviation_A"] + 1e-6)
    others = np.arange(len(table)) != i
    np.testing.assert_allclose(table["cbeta_deviation_A"][others], baseline["cbeta_deviation_A"][others])
    assert "cbeta" in table.loc[i, "flags"].split(";")


def test_cis_peptide_by_rotating_omega(crambin, baseline):
    res = 46  # Asn, the C-terminal residue: rotate it about the C(45)-N(46) bond
    quad = (atom(crambin, res - 1, "CA"), atom(crambin, res - 1, "C"), atom(crambin, res, "N"),
            atom(crambin, res, "CA"))
    assert abs(dihedral_deg(*crambin.coords[list(quad)])) > 150  # trans to begin with
    cis = set_torsion(crambin, quad, np.flatnonzero(crambin.res_seq == res), 0.0)
    table = validate_structure(cis, settings=GEOMETRY).per_residue
    i = row_of(table, res)
    assert table.loc[i, "res_name"] != "PRO"
    assert flagged(table, "peptide_flag") == [res]
    assert table.loc[i, "peptide"] == "cis" and abs(table.loc[i, "omega_deg"]) < 1e-3
    assert "peptide" in table.loc[i, "flags"].split(";")
    # a twisted peptide (|omega| = 90) is flagged as well
    twisted = set_torsion(crambin, quad, np.flatnonzero(crambin.res_seq == res), 90.0)
    assert flagged(validate_structure(twisted, settings=GEOMETRY).per_residue, "peptide_flag") == [res]


def test_clash_between_two_distant_residues(crambin, baseline):
    src, dst = 10, 30  # Arg backbone O moved onto the C-alpha of Thr 30
    o, ca = atom(crambin, src, "O"), atom(crambin, dst, "CA")
    xyz = crambin.coords.copy()
    xyz[o] = xyz[ca] + np.array([0.2, 0.0, 0.0])
    moved = crambin.with_coords(xyz)
    table = validate_structure(moved, settings=GEOMETRY).per_residue
    hits = flagged(table, "has_clash")
    assert src in hits and dst in hits
    # only residues that the moved atom can touch: its own, or one with a heavy atom within 4.5 Å of it
    # (a clash needs d <= r_O + r_max - 0.4 = 1.40 + 1.80 - 0.4 = 2.8 Å; + 1.1 Å to a riding hydrogen's parent)
    near = set(moved.res_seq[np.linalg.norm(moved.coords - moved.coords[o], axis=1) < 4.5].tolist())
    assert set(hits) <= near | {src}
    for r in (src, dst):
        i = row_of(table, r)
        assert table.loc[i, "n_clashes"] >= 1 and "clash" in table.loc[i, "flags"].split(";")


def test_rama_outlier_from_an_eclipsed_phi(crambin, baseline):
    res = 44  # Tyr: phi = 0 puts C(i-1) on C(i); no residue type allows it
    quad = (atom(crambin, res - 1, "C"), atom(crambin, res, "N"), atom(crambin, res, "CA"), atom(crambin, res, "C"))
    moving = np.flatnonzero(((crambin.res_seq == res) & (crambin.atom_name != "N")) | (crambin.res_seq > res))
    table = validate_structure(set_torsion(crambin, quad, moving, 0.0), settings=GEOMETRY).per_residue
    assert flagged(table, "rama_outlier") == [res]
    i = row_of(table, res)
    assert abs(table.loc[i, "phi_deg"]) < 1e-3
    assert "rama" in table.loc[i, "flags"].split(";")


def test_rotamer_outlier_from_an_eclipsed_chi1(crambin, baseline):
    res = 18  # Leu: chi1 = 0 eclipses CG with N
    quad = tuple(atom(crambin, res, n) for n in ("N", "CA", "CB", "CG"))
    moving = np.flatnonzero((crambin.res_seq == res) & np.isin(crambin.atom_name, ["CG", "CD1", "CD2"]))
    table = validate_structure(set_torsion(crambin, quad, moving, 0.0), settings=GEOMETRY).per_residue
    assert flagged(table, "rotamer_outlier") == [res]
    assert "rotamer" in table.loc[row_of(table, res), "flags"].split(";")


def test_bond_outlier_from_a_stretched_bond(crambin, baseline):
    res = 24  # Ala: C-alpha - C-beta 1.53 Å stretched by 0.3 Å (about 15 standard deviations)
    cb, ca = atom(crambin, res, "CB"), atom(crambin, res, "CA")
    xyz = crambin.coords.copy()
    unit = (xyz[cb] - xyz[ca]) / np.linalg.norm(xyz[cb] - xyz[ca])
    xyz[cb] += 0.3 * unit
    assert np.linalg.norm(xyz[cb] - xyz[ca]) > 1.8
    table = validate_structure(crambin.with_coords(xyz), settings=GEOMETRY).per_residue
    i = row_of(table, res)
    assert not baseline.loc[i, "geometry_outlier"]
    assert table.loc[i, "geometry_outlier"] and table.loc[i, "n_bond_outliers"] >= 1
    assert "bond_angle" in table.loc[i, "flags"].split(";")
    others = np.arange(len(table)) != i
    assert table["geometry_outlier"][others].tolist() == baseline["geometry_outlier"][others].tolist()


def test_flag_columns_and_text_agree(baseline):
    labels = {"rama_outlier": "rama", "rotamer_outlier": "rotamer", "cbeta_outlier": "cbeta",
              "has_clash": "clash", "geometry_outlier": "bond_angle", "peptide_flag": "peptide"}
    for row in baseline.itertuples(index=False):
        expected = [labels[c] for c in FLAG_COLUMNS if getattr(row, c)]
        assert (row.flags.split(";") if row.flags else []) == expected
    for column in FLAG_COLUMNS:
        assert baseline[column].dtype == bool
    # the geometry flag follows the per-residue outlier counts
    counts = baseline["n_bond_outliers"].fillna(0) + baseline["n_angle_outliers"].fillna(0)
    assert baseline["geometry_outlier"].tolist() == (counts > 0).tolist()


# -- table shape and order ------------------------------------------------------------------------

def two_chain_model(crambin: AtomModel) -> AtomModel:
    """Chain B (renumbered 101-146, one insertion code) before chain A, 60 Å apart."""
    b = {f.name: getattr(crambin, f.name).copy() for f in fields(crambin)}
    b["chain_id"] = np.full(len(crambin), "B", dtype=crambin.chain_id.dtype)
    b["res_seq"] = crambin.res_seq + 100
    ins = b["ins_code"].astype(object)
    ins[crambin.res_seq == 20] = "A"
    b["res_seq"][crambin.res_seq == 20] = 119  # 118, 119, 119A, 121, ...
    b["ins_code"] = ins.astype(str)
    b["coords"] = crambin.coords + 60.0
    parts = [b, {f.name: getattr(crambin, f.name) for f in fields(crambin)}]
    merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    merged["residue_index"] = np.concatenate([crambin.residue_index, crambin.residue_index
                                              + crambin.residue_index.max() + 1])
    return AtomModel(**merged)


def test_rows_follow_the_residue_table(crambin):
    model = two_chain_model(crambin)
    result = validate_structure(model, reference=model, settings=ValidationSettings(families=("geometry",
                                                                                               "reference")))
    table = result.per_residue
    expected = model.residue_table()
    assert len(table) == model.n_residues == 92
    assert list(table.columns[:4]) == KEY_COLUMNS
    for column in KEY_COLUMNS:
        assert table[column].tolist() == list(expected[column])
    assert table["chain_id"].tolist()[:2] == ["B", "B"] and table["ins_code"].tolist()[19] == "A"
    # the two copies are identical: every per-residue value is the same in both chains
    for column in ("cbeta_deviation_A", "phi_deg", "psi_deg", "omega_deg"):
        np.testing.assert_allclose(table[column][:46], table[column][46:], atol=1e-6, err_msg=column)
    for column in (*FLAG_COLUMNS, "flags", "rama_category", "rotamer_category", "peptide"):
        assert table[column][:46].tolist() == table[column][46:].tolist(), column
    assert result.summary["reference"]["tm_score"] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(table["lddt_ca"], 1.0)
    assert result.summary["model"]["chains"] == ["B", "A"]


# -- settings and families ------------------------------------------------------------------------

def test_settings_from_mapping():
    s = ValidationSettings.from_mapping({"kernel": "gmm", "families": ["geometry", "reference"], "seed": 3})
    assert s.kernel == "gmm" and s.families == ("geometry", "reference") and s.seed == 3
    assert ValidationSettings.from_mapping(None) == ValidationSettings()
    with pytest.raises(InputError, match="unknown validation setting.*bogus.*kernal"):
        ValidationSettings.from_mapping({"kernal": "gmm", "bogus": 1})


def test_geometry_only_has_no_map_or_reference_numbers(crambin, crambin_map):
    result = validate_structure(crambin, crambin_map, 5.0, reference=crambin, settings=GEOMETRY)
    s = result.summary
    assert "geometry" in s and "reference" not in s
    assert not [k for k in MAP_FAMILY_KEYS if k in s.get("map_fit", {})]
    assert result.fsc_curve is None
    assert not {"smoc", "qscore", "loqfit_A", "lddt_ca"} & set(result.per_residue.columns)
    assert s["settings"]["families"] == ["geometry"]
    # without a map or reference there is no such section at all
    plain = validate_structure(crambin, settings=GEOMETRY).summary
    assert set(plain) == {"model", "settings", "geometry", "flags"}


def test_map_fit_only(crambin, crambin_map):
    steps = []
    result = validate_structure(crambin, crambin_map, 5.0, settings=ValidationSettings(families=("map_fit",)),
                                progress=steps.append)
    fit = result.summary["map_fit"]
    # the map was simulated from this model with the same kernel
    assert fit["cc"] == pytest.approx(1.0, abs=1e-6) and fit["cc_mask"] == pytest.approx(1.0, abs=1e-6)
    assert fit["resolution_A"] == 5.0 and fit["kernel"] == "emrefiner"
    assert "geometry" not in result.summary
    assert result.fsc_curve is not None and {"freq_invA", "fsc"} <= set(result.fsc_curve.columns)
    assert "smoc" not in result.per_residue and "qscore" not in result.per_residue
    assert (result.per_residue["local_cc"] > 0.99).all()
    assert not result.per_residue[FLAG_COLUMNS].any().any()  # no geometry, no flags
    assert steps == ["global fit and FSC"]


# -- bad input ------------------------------------------------------------------------------------

def test_map_needs_resolution_and_back(crambin, crambin_map):
    with pytest.raises(InputError, match="resolution"):
        validate_structure(crambin, crambin_map)
    with pytest.raises(InputError, match="map"):
        validate_structure(crambin, resolution_A=5.0)
    with pytest.raises(InputError, match="resolution"):
        validate_structure(crambin, crambin_map, 0.0)
    flat = DensityMap(np.ones_like(crambin_map.data), crambin_map.voxel_size, crambin_map.origin)
    with pytest.raises(InputError, match="zero variance"):
        validate_structure(crambin, flat, 5.0)
    with pytest.raises(InputError, match="no atoms"):
        validate_structure(crambin.select(np.zeros(len(crambin), bool)))


# -- outputs --------------------------------------------------------------------------------------

def test_summary_json_is_strict():
    text = summary_json({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": np.float32("nan"), "e": np.int64(3)},
                         "f": np.arange(2)})
    assert strict_json(text) == {"a": None, "b": [1.0, None], "c": {"d": None, "e": 3}, "f": [0, 1]}


def test_write_validation(tmp_path, crambin, crambin_map):
    result = validate_structure(crambin, crambin_map, 5.0,
                                settings=ValidationSettings(families=("map_fit", "geometry")))
    written = write_validation(result, tmp_path / "out", plots=False)
    assert set(written) == {"scores", "per_residue", "fsc"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fsc.csv", "per_residue.csv", "scores.json"]
    scores = strict_json(written["scores"].read_text())
    assert scores["map_fit"]["cc"] == pytest.approx(1.0, abs=1e-6)
    assert scores["flags"] == {c: int(result.per_residue[c].sum()) for c in FLAG_COLUMNS}
    back = read_per_residue(written["per_residue"])
    assert list(back.columns) == list(result.per_residue.columns)
    assert back["res_seq"].tolist() == result.per_residue["res_seq"].tolist()
    assert back["flags"].tolist() == result.per_residue["flags"].tolist()
    for column in FLAG_COLUMNS:
        assert back[column].tolist() == result.per_residue[column].tolist()
    fsc = pd.read_csv(written["fsc"])
    np.testing.assert_allclose(fsc["fsc"], result.fsc_curve["fsc"], rtol=1e-5, atol=1e-6)
    # geometry only: no FSC curve
    geometry = write_validation(validate_structure(crambin, settings=GEOMETRY), tmp_path / "geo", plots=False)
    assert set(geometry) == {"scores", "per_residue"}


def test_write_validation_writes_nothing_when_a_plot_fails(tmp_path, crambin, monkeypatch):
    import emforge.validate as validate

    def broken(result):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(validate, "render_plots", broken)
    result = validate_structure(crambin, settings=GEOMETRY)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_validation(result, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_smoc_convention_switch(shared_data):
    """'tempy' uses TEMPy's half-voxel voxel placement and snapped-atom model map: other numbers, same residues."""
    from emforge.local_fit import smoc, tempy_classic_model_map
    from emforge.maps import DensityMap
    from emforge.models import read_model
    from emforge.simulate import simulate_map
    from emforge.validate import ValidationSettings, validate_structure

    model = read_model(shared_data / "chains" / "1crn_A.pdb.gz")
    grid = DensityMap.around_points(model.coords, 1.2, 6.0)
    m = simulate_map(model, grid, 4.0)
    settings = ValidationSettings(families=("local_fit",), smoc_convention="tempy")
    table = validate_structure(model, m, 4.0, settings=settings).per_residue
    expected = smoc(model, m, 4.0, sim_map=tempy_classic_model_map(model, m, 4.0), grid_offset_vox=0.5)
    np.testing.assert_allclose(table["smoc"].to_numpy(float), expected["smoc"].to_numpy(float), atol=1e-12)
    with pytest.raises(InputError, match="smoc_convention"):
        ValidationSettings.from_mapping({"smoc_convention": "chimera"})
