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
