"""The command line: verbs, outputs, and one clear error (exit 2, no partial output) for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from emforge.cli import main
from emforge.maps import read_map
from emforge.models import read_model, write_model


@pytest.fixture(scope="module")
def crambin_path(shared_data):
    return shared_data / "chains" / "1crn_A.pdb.gz"


@pytest.mark.parametrize("verb", ["simulate", "score", "compare", "prepare", "validate"])
def test_every_verb_has_help(verb):
    out = subprocess.run([sys.executable, "-m", "emforge.cli", verb, "--help"],
                         capture_output=True, text=True, check=True)
    assert "usage: emforge" in out.stdout


def test_simulate_score_compare(tmp_path, crambin_path, capsys):
    out_map = tmp_path / "crn.mrc"
    assert main(["simulate", str(crambin_path), "--resolution", "5", "--voxel", "1.5", "-o", str(out_map)]) == 0
    m = read_map(out_map)
    assert np.allclose(m.voxel_size, 1.5)
    model = read_model(crambin_path)
    assert np.all(m.contains(model.coords))

    scores_json = tmp_path / "scores.json"
    assert main(["score", str(crambin_path), str(out_map), "--resolution", "5", "--json", str(scores_json)]) == 0
    scores = json.loads(scores_json.read_text())
    assert scores["cc"] == pytest.approx(1.0, abs=1e-5)
    assert scores["cc_mask"] == pytest.approx(1.0, abs=1e-5)

    moved = tmp_path / "moved.cif"
    write_model(moved, model.with_coords(model.coords + (1.0, -0.5, 0.25)))
    cmp_json = tmp_path / "compare.json"
    assert main(["compare", str(moved), str(crambin_path), "--json", str(cmp_json)]) == 0
    cmp = json.loads(cmp_json.read_text())
    assert cmp["tm_score"] == pytest.approx(1.0, abs=1e-6)
    assert cmp["rmsd_A"] == pytest.approx(0.0, abs=1e-3)
    assert cmp["n_aligned"] == model.n_residues


def test_simulate_like_map_keeps_grid(tmp_path, crambin_path):
    like = tmp_path / "like.mrc"
    assert main(["simulate", str(crambin_path), "-r", "6", "--voxel", "2.0", "-o", str(like)]) == 0
    out = tmp_path / "out.mrc"
    assert main(["simulate", str(crambin_path), "-r", "4", "--like", str(like), "-o", str(out)]) == 0
    a, b = read_map(like), read_map(out)
    assert a.same_grid(b)


def _fails_cleanly(argv, capsys, out_path, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("emforge: error:"), err
    for needle in needles:
        assert needle in err, err
    assert not out_path.exists()
    assert not list(out_path.parent.glob(f".{out_path.name}*")), "temporary file left behind"


def test_bad_inputs_exit_2_without_output(tmp_path, crambin_path, capsys):
    good_map = tmp_path / "good.mrc"
    assert main(["simulate", str(crambin_path), "-r", "5", "--voxel", "1.5", "-o", str(good_map)]) == 0
    capsys.readouterr()
    out = tmp_path / "out.json"

    missing = tmp_path / "missing.mrc"
    _fails_cleanly(["score", str(crambin_path), str(missing), "-r", "5", "--json", str(out)], capsys, out,
                   str(missing), "not found")

    truncated = tmp_path / "truncated.mrc"
    truncated.write_bytes(good_map.read_bytes()[:-1000])
    _fails_cleanly(["score", str(crambin_path), str(truncated), "-r", "5", "--json", str(out)], capsys, out,
                   str(truncated))

    wrong_type = tmp_path / "map.txt"
    wrong_type.write_text("not a map")
    _fails_cleanly(["score", str(crambin_path), str(wrong_type), "-r", "5", "--json", str(out)], capsys, out,
                   str(wrong_type), "unknown map file type")

    far = tmp_path / "far.cif"
    model = read_model(crambin_path)
    write_model(far, model.with_coords(model.coords + 300.0))
    _fails_cleanly(["score", str(far), str(good_map), "-r", "5", "--json", str(out)], capsys, out,
                   str(far), "does not overlap")

    water = tmp_path / "water.pdb"
    water.write_text("HETATM    1  O   HOH A   1      10.000  10.000  10.000  1.00 20.00           O\nEND\n")
    out_map = tmp_path / "sim.mrc"
    _fails_cleanly(["simulate", str(water), "-r", "5", "-o", str(out_map)], capsys, out_map,
                   str(water), "no amino-acid")

    # resolution <= 0 is refused by the argument parser, also with exit code 2
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(crambin_path), "-r", "0", "-o", str(out_map)])
    assert exc.value.code == 2
    assert "resolution" in capsys.readouterr().err
    assert not out_map.exists()


def test_prepare_writes_canonical_map(tmp_path, crambin_path):
    src = tmp_path / "src.mrc"
    assert main(["simulate", str(crambin_path), "-r", "6", "--voxel", "2", "-o", str(src)]) == 0
    out, stats = tmp_path / "prepared.mrc", tmp_path / "stats.json"
    assert main(["prepare", str(src), "-r", "6", "-o", str(out), "--json", str(stats)]) == 0
    record = json.loads(stats.read_text())
    assert record["resolution_A"] == 6.0 and record["nyquist_A"] == pytest.approx(4.0)
    assert np.array_equal(read_map(out).data, read_map(src).data)
    # a resolution finer than Nyquist is refused
    bad = tmp_path / "bad.mrc"
    assert main(["prepare", str(src), "-r", "3", "-o", str(bad)]) == 2
    assert not bad.exists()


# -- validate -------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant} in {path}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.fixture(scope="module")
def crambin_map(tmp_path_factory, crambin_path):
    path = tmp_path_factory.mktemp("validate") / "crn_5A.mrc"
    assert main(["simulate", str(crambin_path), "-r", "5", "--voxel", "1.5", "-o", str(path)]) == 0
    return path


def test_validate_with_map_and_reference(tmp_path, crambin_path, crambin_map, capsys):
    from emforge.report import read_per_residue
    from emforge.validate import FLAG_COLUMNS

    out = tmp_path / "out"
    assert main(["validate", str(crambin_path), "--map", str(crambin_map), "--resolution", "5",
                 "--reference", str(crambin_path), "--out-dir", str(out), "--seed", "3"]) == 0
    stdout = capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["fsc.csv", "per_residue.csv", "plots/fsc.png", "plots/per_residue.png",
                     "plots/ramachandran.png", "scores.json"]
    assert "wrote 6 files" in stdout
    for png in (out / "plots").iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, png

    scores = _strict_json(out / "scores.json")
    model = read_model(crambin_path)
    assert scores["model"]["path"] == str(crambin_path) and scores["model"]["n_residues"] == model.n_residues
    assert scores["settings"]["seed"] == 3
    fit, geometry, ref = scores["map_fit"], scores["geometry"], scores["reference"]
    # the map was simulated from this very model with the same kernel: the fit is perfect
    assert fit["map"] == str(crambin_map) and fit["resolution_A"] == 5.0
    assert fit["cc"] == pytest.approx(1.0, abs=1e-5) and fit["cc_mask"] == pytest.approx(1.0, abs=1e-5)
    assert fit["local_cc_median"] == pytest.approx(1.0, abs=1e-4)
    assert 0.9 < fit["ccc"] <= 1.0 and 0.9 < fit["moc"] <= 1.0 and 0.9 < fit["smoc_mean"] <= 1.0
    assert fit["resolution_fsc05_A"] <= 5.0  # the model-map FSC stays above 0.5 to the map's resolution
    assert -1.0 <= fit["qscore_mean"] <= 1.0
    # model == reference
    assert ref["tm_score"] == pytest.approx(1.0, abs=1e-6) and ref["gdt_ts"] == pytest.approx(1.0, abs=1e-6)
    assert ref["rmsd_A"] == pytest.approx(0.0, abs=1e-6) and ref["lddt_ca"] == pytest.approx(1.0, abs=1e-9)
    assert ref["n_aligned"] == model.n_residues and ref["path"] == str(crambin_path)
    # a well refined crystal structure (1crn, 1.5 Å): good MolProbity numbers
    assert 0.0 <= geometry["molprobity_score"] < 2.0 and 0.0 <= geometry["clashscore"] < 10.0
    assert geometry["rama_favoured_pct"] + geometry["rama_allowed_pct"] + geometry["rama_outlier_pct"] == \
        pytest.approx(100.0)
    assert 0.5 < geometry["bond_rmsz"] < 3.0

    table = read_per_residue(out / "per_residue.csv")
    assert table["res_seq"].tolist() == list(model.residue_table()["res_seq"])
    assert (table["local_cc"] > 0.99).all()
    np.testing.assert_allclose(table["lddt_ca"], 1.0)
    assert scores["flags"] == {c: int(table[c].sum()) for c in FLAG_COLUMNS}
    fsc = np.loadtxt(out / "fsc.csv", delimiter=",", skiprows=1, usecols=(0, 1))
    assert np.all(np.diff(fsc[:, 0]) > 0)


def test_validate_geometry_only(tmp_path, crambin_path, capsys):
    out = tmp_path / "geo"
    assert main(["validate", str(crambin_path), "--out-dir", str(out), "--no-plots"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["per_residue.csv", "scores.json"]
    scores = _strict_json(out / "scores.json")
    assert "map_fit" not in scores and "reference" not in scores
    assert scores["geometry"]["molprobity_score"] is not None
    assert "molprobity_score" in capsys.readouterr().out


def _fails_cleanly_dir(argv, capsys, out_dir, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("emforge: error:"), err
    for needle in needles:
        assert needle in err, err
    assert not out_dir.exists() or not list(out_dir.iterdir()), "something was written into --out-dir"


def test_validate_bad_input_writes_nothing(tmp_path, crambin_path, crambin_map, capsys):
    out = tmp_path / "out"
    model = str(crambin_path)
    _fails_cleanly_dir(["validate", model, "--map", str(crambin_map), "--out-dir", str(out)], capsys, out,
                       "--map and --resolution go together")
    assert not out.exists()
    _fails_cleanly_dir(["validate", model, "--resolution", "5", "--out-dir", str(out)], capsys, out,
                       "--map and --resolution go together")
    out.mkdir()  # an existing folder stays empty
    missing = tmp_path / "missing.mrc"
    _fails_cleanly_dir(["validate", model, "--map", str(missing), "-r", "5", "--out-dir", str(out)], capsys, out,
                       str(missing), "not found")
    far = tmp_path / "far.cif"
    m = read_model(crambin_path)
    write_model(far, m.with_coords(m.coords + 300.0))
    _fails_cleanly_dir(["validate", str(far), "--map", str(crambin_map), "-r", "5", "--out-dir", str(out)], capsys,
                       out, str(far), "does not overlap")
    _fails_cleanly_dir(["validate", model, "--reference", str(tmp_path / "nope.pdb"), "--out-dir", str(out)],
                       capsys, out, "nope.pdb")
    with pytest.raises(SystemExit) as exc:  # --out-dir is required
        main(["validate", model])
    assert exc.value.code == 2
