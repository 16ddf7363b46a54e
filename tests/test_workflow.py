"""End to end: run the real Snakemake workflow on a tiny real protein (crambin, 46 residues).

The workflow files are copied into a temporary folder together with a dataset table of three
datasets, and ``python -m snakemake`` runs there with 2 cores:

* ``crn_self``  reference only, map simulated from it; the model IS the reference
  -> cc of the model against its own simulated map ~ 1, TM-score 1, RMSD 0
* ``crn_moved`` same simulated map; the model is the reference shifted by 1.5 Å
  -> the fit drops (cc clearly below crn_self) while TM-score stays 1 after superposition
* ``crn_map``   a map given in the table (made here with the library), no model
  -> prepared and reported, validation skipped

Each dataset's model is validated as step "input" (results/{dataset}/validate/input/), and the
summary rule collects every validated model into results/summary.{tsv,html}.

A second run with a truncated MRC must fail in prepare_map with the InputError message in the
rule log and leave no output; bad tables must stop the run before any job starts.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]
# same data folder as tests/conftest.py (EMFORGE_TEST_DATA overrides)
CHAINS = Path(os.environ.get("EMFORGE_TEST_DATA", "/work/shared/data")) / "chains"
CRAMBIN = CHAINS / "1crn_A.pdb.gz"
WORKFLOW_FILES = ("Snakefile", "config", "workflow", "envs", "containers", "profiles")
RESOLUTION_A = 5.0
SHIFT_A = np.array([1.5, 0.0, 0.0])
COLUMNS = ("id", "map", "resolution_A", "sequence", "model", "reference", "component_maps")


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("*.sif", "__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def write_datasets(path: Path, rows: list[dict]) -> None:
    lines = ["\t".join(COLUMNS)] + ["\t".join(str(r.get(c, "")) for c in COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plumbing_weights(path: Path) -> Path:
    """A tiny C-alpha network that calls every voxel a C-alpha with probability 0.993 (head weights 0,
    biases 0 / 5): it exercises cnn_predict's plumbing without depending on the shipped weights."""
    import torch

    from emforge.cnn.network import CAlphaNet
    from emforge.cnn.train import save_weights

    torch.manual_seed(0)
    net = CAlphaNet(channels=4, n_blocks=1)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([0.0, 5.0]))
    return save_weights(net, path)


def write_config(path: Path, datasets: str) -> None:
    # only what differs from config/config.yaml; the rest comes from the workflow's defaults
    write_plumbing_weights(path.parent / "weights" / "plumbing.pt")
    path.write_text(f"seed: 7\ndatasets: {datasets}\nsimulate:\n  voxel_size_A: 1.5\n"
                    "fit:\n  enabled: true\n  method: fft\n  angular_step_deg: 30.0\n  n_poses: 3\n"
                    "refine_gmm:\n  max_iterations: 5\nensemble:\n  max_members: 3\n"
                    "cnn_predict:\n  enabled: true\n  weights: weights/plumbing.pt\n  tile_vox: 32\n", encoding="utf-8")


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # targets before --configfile, which takes every following word as a file
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", "test_config.yaml"]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, check=False)


def outputs_of(dataset: str, validated: bool, simulated: bool) -> list[str]:
    files = [f"results/{dataset}/cnn/{name}" for name in (
        "calpha.cif", "calpha_probability.mrc", "summary.json", "slices.png", "provenance.json")]
    files += [f"logs/{dataset}/cnn_predict.log", f"benchmarks/{dataset}/cnn_predict.tsv"]
    files += [f"results/{dataset}/prepare/map.mrc", f"results/{dataset}/prepare/map_stats.json",
             f"results/{dataset}/prepare/provenance.json", f"results/{dataset}/report.html",
             f"logs/{dataset}/prepare_map.log", f"logs/{dataset}/report.log",
             f"benchmarks/{dataset}/prepare_map.tsv", f"benchmarks/{dataset}/report.tsv"]
    if validated:
        folder = f"results/{dataset}/validate/input"
        files += [f"{folder}/{name}" for name in (
            "scores.json", "per_residue.csv", "fsc.csv", "provenance.json",
            "plots/per_residue.png", "plots/fsc.png", "plots/ramachandran.png")]
        files += [f"logs/{dataset}/validate_input.log", f"benchmarks/{dataset}/validate_input.tsv"]
        files += [f"results/{dataset}/fit/{name}" for name in ("model.cif", "poses.tsv", "fit.json", "provenance.json")]
        files += [f"results/{dataset}/validate/fit/scores.json", f"logs/{dataset}/fit.log",
                  f"benchmarks/{dataset}/fit.tsv"]
        files += [f"results/{dataset}/fragments/{name}" for name in ("fragments.tsv", "provenance.json")]
        files += [f"results/{dataset}/refine_emrefiner/{name}"
                  for name in ("model.cif", "trajectory.tsv", "summary.json", "provenance.json")]
        files += [f"results/{dataset}/validate/refine_emrefiner/scores.json", f"logs/{dataset}/fragments.log",
                  f"logs/{dataset}/refine_emrefiner.log", f"benchmarks/{dataset}/refine_emrefiner.tsv"]
        files += [f"results/{dataset}/refine_gmm/{name}"
                  for name in ("model.cif", "trajectory.tsv", "summary.json", "provenance.json")]
        files += [f"results/{dataset}/ensemble/{name}" for name in (
            "ensemble.cif", "ensemble.mrc", "rmsf.tsv", "curve.tsv", "summary.json", "provenance.json")]
        files += [f"results/{dataset}/validate/refine_gmm/scores.json", f"logs/{dataset}/refine_gmm.log",
                  f"logs/{dataset}/ensemble.log", f"benchmarks/{dataset}/refine_gmm.tsv",
                  f"benchmarks/{dataset}/ensemble.tsv"]
    if simulated:
        files += [f"results/{dataset}/simulate/map.mrc", f"results/{dataset}/simulate/provenance.json",
                  f"logs/{dataset}/simulate_map.log"]
    return files


@pytest.fixture(scope="module")
def crambin():
    if not CRAMBIN.is_file():
        pytest.skip(f"shared test data not available: {CRAMBIN} (set EMFORGE_TEST_DATA to the data folder)")
    from emforge.models import read_model

    return read_model(CRAMBIN)


@pytest.fixture(scope="module")
def run(tmp_path_factory, crambin):
    """The workflow run on the three good datasets (once per module)."""
    from emforge.maps import crop, write_map
    from emforge.models import write_model
    from emforge.simulate import simulate_map

    work = copy_workflow(tmp_path_factory.mktemp("wf"))
    data = work / "data"
    data.mkdir()
    shutil.copy2(CRAMBIN, data / "1crn_A.pdb.gz")
    write_model(data / "1crn_A_moved.cif", crambin.with_coords(crambin.coords + SHIFT_A))
    write_map(data / "1crn_A_given.mrc", simulate_map(crambin, None, RESOLUTION_A, voxel_size_A=2.0))
    # two overlapping component maps of crambin, each sharp for one half of the chain
    full = simulate_map(crambin, None, RESOLUTION_A, voxel_size_A=1.5)
    half = crambin.res_seq <= 23
    nx = full.shape[2]
    for k, sharp in enumerate((half, ~half), start=1):
        m = simulate_map(crambin, full, RESOLUTION_A, sigma_A=np.where(sharp, 1.0, 2.2))
        start = 0 if k == 1 else nx - int(0.7 * nx)
        write_map(data / f"focus{k}.mrc", crop(m, (start, 0, 0), (int(0.7 * nx), full.shape[1], full.shape[0])))
    (data / "1crn_A.fasta").write_text(">1crn_A\n" + crambin.sequences()["A"] + "\n", encoding="utf-8")
    write_datasets(work / "test_datasets.tsv", [
        {"id": "crn_self", "resolution_A": RESOLUTION_A, "sequence": "data/1crn_A.fasta",
         "model": "data/1crn_A.pdb.gz", "reference": "data/1crn_A.pdb.gz",
         "component_maps": "data/focus1.mrc;data/focus2.mrc"},
        {"id": "crn_moved", "resolution_A": RESOLUTION_A, "model": "data/1crn_A_moved.cif",
         "reference": "data/1crn_A.pdb.gz"},
        {"id": "crn_map", "map": "data/1crn_A_given.mrc", "resolution_A": RESOLUTION_A},
    ])
    write_config(work / "test_config.yaml", "test_datasets.tsv")
    proc = snakemake(work)
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return work, proc


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_all_outputs_exist(run):
    work, _ = run
    expected = (outputs_of("crn_self", True, True) + outputs_of("crn_moved", True, True)
                + outputs_of("crn_map", False, False)
                + ["results/summary.tsv", "results/summary.html", "logs/summary.log"]
                + [f"results/crn_self/composite/{n}" for n in ("composite.mrc", "components.tsv", "provenance.json")]
                + ["logs/crn_self/composite.log", "benchmarks/crn_self/composite.tsv"])
    missing = [f for f in expected if not (work / f).is_file()]
    assert not missing, f"missing outputs: {missing}"
    assert not (work / "results/crn_map/validate").exists()
    assert not (work / "results/crn_map/simulate").exists()
    # Snakemake marks a directory() output with .snakemake_timestamp; anything else hidden is a leftover
    leftovers = [p for p in (work / "results").rglob(".*") if p.is_file() and p.name != ".snakemake_timestamp"]
    assert not leftovers, f"temporary files left: {leftovers}"


def test_model_equal_to_reference_scores_perfectly(run):
    work, _ = run
    s = load_json(work / "results/crn_self/validate/input/scores.json")
    fit, ref = s["map_fit"], s["reference"]
    assert s["dataset"] == "crn_self" and s["step"] == "input"
    # the model simulated with the same kernel on the same grid reproduces the map
    assert fit["cc"] > 0.99
    assert fit["cc_mask"] > 0.99
    assert fit["local_cc_median"] > 0.99
    assert s["model"]["n_residues"] == 46 and fit["resolution_A"] == RESOLUTION_A
    assert s["settings"]["seed"] == 7 and s["settings"]["kernel"] == "emrefiner"
    assert ref["tm_score"] == pytest.approx(1.0, abs=1e-6)
    assert ref["rmsd_A"] == pytest.approx(0.0, abs=1e-3)
    assert ref["gdt_ts"] == pytest.approx(1.0, abs=1e-6)
    assert ref["n_aligned"] == 46


def test_fit_puts_the_moved_model_back(run, crambin):
    """The fit rule places the shifted model onto the map made from the native (checked on coordinates)."""
    from emforge.models import read_model

    work, _ = run
    fitted = read_model(work / "results/crn_moved/fit/model.cif")
    ca = fitted.calpha().coords
    native = crambin.calpha().coords
    assert np.sqrt(np.mean(np.sum((ca - native) ** 2, axis=1))) < 1.0
    summary = load_json(work / "results/crn_moved/fit/fit.json")
    assert summary["cc"] > 0.95 and summary["z_score"] > 3
    scores = load_json(work / "results/crn_moved/validate/fit/scores.json")
    assert scores["step"] == "fit" and scores["map_fit"]["cc"] > 0.99
    assert "Placement in the map" in (work / "results/crn_moved/report.html").read_text(encoding="utf-8")


def test_refinement_keeps_a_correct_model(run, crambin):
    """EM-Refiner on the correctly placed crambin in its own map: the model stays the native (TM-score
    against the reference stays near 1), the CC does not drop, the trajectory covers Steps 2 and 3, and
    the OpenMM finish leaves no clashes."""
    import pandas as pd

    work, _ = run
    summary = load_json(work / "results/crn_moved/refine_emrefiner/summary.json")
    assert summary["n_residues"] == 46 and summary["preset"] == "fast"
    assert summary["cc_final"] > summary["cc_start"] - 0.01
    traj = pd.read_csv(work / "results/crn_moved/refine_emrefiner/trajectory.tsv", sep="\t")
    assert set(traj["stage"]) == {"step2", "step3"}
    scores = load_json(work / "results/crn_moved/validate/refine_emrefiner/scores.json")
    assert scores["reference"]["tm_score"] > 0.9
    assert scores["geometry"]["n_clashes"] == 0
    fragments = pd.read_csv(work / "results/crn_moved/fragments/fragments.tsv", sep="\t")
    assert set(fragments["kind"]) <= {"H", "E"} and (fragments["kind"] == "H").sum() >= 2  # crambin's two helices


def test_gmm_refinement_and_ensemble(run, crambin):
    """TEMPy-ReFF on the fitted crambin in its own map: the CCC does not drop, the model stays the
    native, no clash appears; the ensemble has members, a map on the dataset's grid and one RMSF per residue."""
    import gemmi
    import pandas as pd

    from emforge.maps import read_map

    work, _ = run
    summary = load_json(work / "results/crn_moved/refine_gmm/summary.json")
    assert summary["protocol"] == "fast" and 1 <= summary["n_iterations"] <= 5
    assert summary["ccc_final"] >= summary["ccc_start"]
    scores = load_json(work / "results/crn_moved/validate/refine_gmm/scores.json")
    assert scores["reference"]["tm_score"] > 0.9
    fit_scores = load_json(work / "results/crn_moved/validate/fit/scores.json")
    assert scores["geometry"]["n_clashes"] <= fit_scores["geometry"]["n_clashes"]
    ens = load_json(work / "results/crn_moved/ensemble/summary.json")
    st = gemmi.read_structure(str(work / "results/crn_moved/ensemble/ensemble.cif"))
    assert len(st) == ens["n_members"] >= 2
    assert read_map(work / "results/crn_moved/ensemble/ensemble.mrc").same_grid(
        read_map(work / "results/crn_moved/prepare/map.mrc"))
    rmsf = pd.read_csv(work / "results/crn_moved/ensemble/rmsf.tsv", sep="\t")
    assert len(rmsf) == crambin.n_residues and (rmsf["rmsf_A"] > 0).all()


def test_composite_map(run):
    """crn_self has two component maps: the composite covers both boxes, names both in its table and
    the report shows it; datasets without component maps make none."""
    import pandas as pd

    from emforge.maps import read_map

    work, _ = run
    comp = read_map(work / "results/crn_self/composite/composite.mrc")
    parts = [read_map(work / f"data/focus{k}.mrc") for k in (1, 2)]
    assert comp.shape[2] > max(p.shape[2] for p in parts)  # the union of the two boxes
    table = pd.read_csv(work / "results/crn_self/composite/components.tsv", sep="\t")
    assert list(table["map"]) == ["data/focus1.mrc", "data/focus2.mrc"] and table["n_kept"].min() > 0
    assert "Composite map" in (work / "results/crn_self/report.html").read_text(encoding="utf-8")
    assert not (work / "results/crn_moved/composite").exists()


def test_shifted_model_fits_worse(run):
    work, _ = run
    self_fit = load_json(work / "results/crn_self/validate/input/scores.json")["map_fit"]
    moved = load_json(work / "results/crn_moved/validate/input/scores.json")
    # a 1.5 Å shift at 5 Å resolution: clearly worse but still correlated
    assert 0.3 < moved["map_fit"]["cc"] < self_fit["cc"] - 0.02
    assert moved["map_fit"]["cc_mask"] < self_fit["cc_mask"] - 0.02
    # rigid shift: identical after superposition
    assert moved["reference"]["tm_score"] == pytest.approx(1.0, abs=1e-6)
    assert moved["reference"]["rmsd_A"] == pytest.approx(0.0, abs=1e-3)


def test_per_residue_table(run):
    from emforge.report import read_per_residue

    work, _ = run
    table = read_per_residue(work / "results/crn_self/validate/input/per_residue.csv")
    assert list(table.columns[:4]) == ["chain_id", "res_seq", "ins_code", "res_name"]
    assert {"local_cc", "smoc", "qscore", "rama_category", "lddt_ca", "flags"} <= set(table.columns)
    assert len(table) == 46 and set(table["chain_id"]) == {"A"}
    assert table["res_seq"].tolist() == list(range(1, 47))
    assert (table["local_cc"] > 0.95).all()
    assert (table["lddt_ca"] == 1.0).all()


def test_simulated_map_and_prepare_stats(run, crambin):
    from emforge.maps import read_map

    work, _ = run
    sim = read_map(work / "results/crn_self/simulate/map.mrc")
    prepared = read_map(work / "results/crn_self/prepare/map.mrc")
    np.testing.assert_allclose(sim.voxel_size, 1.5)  # the config section reached the rule
    assert prepared.same_grid(sim)
    np.testing.assert_allclose(prepared.data, sim.data)
    assert sim.contains(crambin.coords).all()
    stats = load_json(work / "results/crn_self/prepare/map_stats.json")
    assert stats["resolution_A"] == RESOLUTION_A
    assert stats["shape_zyx"] == list(sim.shape)
    assert stats["mean"] == pytest.approx(float(sim.data.mean(dtype=np.float64)), rel=1e-5)
    # expected mass from the model's atoms (1crn has no hydrogens): sum of element masses
    assert stats["expected_mass_Da"] == pytest.approx(float(crambin.mass.sum()), rel=1e-9)
    given = load_json(work / "results/crn_map/prepare/map_stats.json")
    assert given["voxel_size_A"] == [2.0, 2.0, 2.0] and "expected_mass_Da" not in given


def test_provenance_records(run):
    work, _ = run
    prov = load_json(work / "results/crn_self/simulate/provenance.json")
    assert prov["step"] == "simulate_map" and prov["seed"] == 7
    assert prov["parameters"]["kernel"] == "emrefiner" and prov["parameters"]["voxel_size_A"] == 1.5
    assert len(prov["inputs"]["reference"]["sha256"]) == 64
    val = load_json(work / "results/crn_moved/validate/input/provenance.json")
    assert set(val["inputs"]) == {"model", "map", "reference"}
    assert val["seed"] == 7 and val["parameters"]["resolution_A"] == RESOLUTION_A


def test_reports(run):
    work, _ = run
    html_self = (work / "results/crn_self/report.html").read_text(encoding="utf-8")
    scores = load_json(work / "results/crn_self/validate/input/scores.json")
    assert f'data-key="input.map_fit.cc" data-value="{scores["map_fit"]["cc"]!r}"' in html_self
    assert f'data-key="input.reference.tm_score" data-value="{scores["reference"]["tm_score"]!r}"' in html_self
    # each validated model's three plots (input, fit, refine_emrefiner, refine_gmm), embedded byte for
    # byte, the EM-Refiner trajectory, the TEMPy-ReFF convergence and B/RMSF plots, the CNN slice view
    # and the map histogram
    assert html_self.count("data:image/png;base64,") == 17
    assert 'id="plot-refine_emrefiner-trajectory"' in html_self
    assert 'id="plot-refine_gmm-gmm-convergence"' in html_self and 'id="plot-refine_gmm-b-rmsf"' in html_self
    assert 'data-key="refine_gmm.ensemble.n_members"' in html_self
    for name in ("per_residue", "fsc", "ramachandran"):
        png = (work / f"results/crn_self/validate/input/plots/{name}.png").read_bytes()
        assert base64.b64encode(png).decode("ascii") in html_self, name
    html_map = (work / "results/crn_map/report.html").read_text(encoding="utf-8")
    # no model: no validation; the CNN slice view and the map histogram only
    assert "validation was skipped" in html_map and html_map.count("data:image/png;base64,") == 2
    assert 'id="plot-cnn-slices"' in html_map


def test_summary(run):
    import pandas as pd

    work, _ = run
    table = pd.read_csv(work / "results/summary.tsv", sep="\t")
    # one row per validated model; the map-only dataset has none
    assert sorted(zip(table["dataset"], table["step"])) == [
        ("crn_moved", "fit"), ("crn_moved", "input"), ("crn_moved", "refine_emrefiner"), ("crn_moved", "refine_gmm"),
        ("crn_self", "fit"), ("crn_self", "input"), ("crn_self", "refine_emrefiner"), ("crn_self", "refine_gmm")]
    for row in table.itertuples(index=False):
        scores = load_json(work / f"results/{row.dataset}/validate/{row.step}/scores.json")
        values = dict(zip(table.columns, row))
        assert values["map_fit.cc"] == pytest.approx(scores["map_fit"]["cc"], abs=1e-4)
        assert values["reference.tm_score"] == pytest.approx(scores["reference"]["tm_score"], abs=1e-4)
        assert values["geometry.molprobity_score"] == pytest.approx(scores["geometry"]["molprobity_score"],
                                                                    abs=1e-4)
    html = (work / "results/summary.html").read_text(encoding="utf-8")
    assert 'href="crn_self/report.html"' in html and 'href="crn_moved/report.html"' in html
    assert "crn_map/report.html" not in html


def test_cnn_predict_follows_the_sequence_and_scores_against_the_reference(run):
    """cnn_predict on every dataset: with a sequence (crn_self) L to 1.2 L peaks, every peak in the
    prepared map's box, CRscore against the reference where there is one, the report's section."""
    from emforge.maps import read_map
    from emforge.models import read_model

    work, _ = run
    s = load_json(work / "results/crn_self/cnn/summary.json")
    assert s["n_residues"] == 46 and 46 <= s["n_peaks"] <= 56
    assert s["weights_sha256"] == load_json(work / "weights/plumbing.json")["sha256"]
    assert 0 <= s["reference"]["crscore"] <= 1 and s["reference"]["n_reference"] == 46
    density = read_map(work / "results/crn_self/prepare/map.mrc")
    assert read_map(work / "results/crn_self/cnn/calpha_probability.mrc").same_grid(density)
    assert density.contains(read_model(work / "results/crn_self/cnn/calpha.cif").coords).all()
    assert "reference" not in load_json(work / "results/crn_map/cnn/summary.json")
    html = (work / "results/crn_self/report.html").read_text(encoding="utf-8")
    assert "C-alpha prediction (CNN, paper 003)" in html and 'id="plot-cnn-slices"' in html


def test_rerun_is_a_no_op(run):
    work, _ = run
    proc = snakemake(work, "-n")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_truncated_map_fails_cleanly(tmp_path, crambin):
    from emforge.errors import InputError
    from emforge.maps import read_map, write_map
    from emforge.simulate import simulate_map

    work = copy_workflow(tmp_path / "bad")
    good = write_map(work / "good.mrc", simulate_map(crambin, None, RESOLUTION_A, voxel_size_A=2.0))
    raw = good.read_bytes()
    (work / "truncated.mrc").write_bytes(raw[: 1024 + (len(raw) - 1024) // 2])
    with pytest.raises(InputError) as expected:
        read_map(work / "truncated.mrc")
    write_datasets(work / "test_datasets.tsv", [
        {"id": "bad", "map": "truncated.mrc", "resolution_A": RESOLUTION_A}])
    write_config(work / "test_config.yaml", "test_datasets.tsv")

    proc = snakemake(work, timeout=300)
    assert proc.returncode != 0
    log = (work / "logs/bad/prepare_map.log").read_text(encoding="utf-8")
    # the rule reads the table's relative path: same message, same file
    line = f"bad input: truncated.mrc: {expected.value.problem}"
    assert expected.value.problem.startswith("not a valid MRC/CCP4 map")
    assert line in log
    assert "Traceback" not in log
    assert line in proc.stdout + proc.stderr
    results = work / "results"
    assert not results.exists() or not [p for p in results.rglob("*") if p.is_file()]


@pytest.mark.parametrize("row, message", [
    ({"id": "x", "map": "absent.mrc", "resolution_A": 5.0}, "dataset 'x': map file 'absent.mrc' does not exist"),
    ({"id": "has space", "reference": "ref.pdb.gz", "resolution_A": 5.0}, "does not match"),
    ({"id": "x", "reference": "ref.pdb.gz", "resolution_A": -1}, "less than or equal to the minimum"),
    ({"id": "x", "resolution_A": 5.0}, "is not valid under any of the given schemas"),
])
def test_bad_dataset_table_stops_before_any_job(tmp_path, row, message):
    if not CRAMBIN.is_file():
        pytest.skip(f"shared test data not available: {CRAMBIN} (set EMFORGE_TEST_DATA to the data folder)")
    work = copy_workflow(tmp_path / "table")
    shutil.copy2(CRAMBIN, work / "ref.pdb.gz")
    write_datasets(work / "test_datasets.tsv", [row])
    write_config(work / "test_config.yaml", "test_datasets.tsv")
    proc = snakemake(work, "-n", timeout=120)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (work / "results").exists()


def test_bad_config_value_is_rejected(tmp_path):
    work = copy_workflow(tmp_path / "config")
    (work / "test_config.yaml").write_text("validate:\n  kernel: gaussian\n", encoding="utf-8")
    proc = snakemake(work, "-n", timeout=120)
    assert proc.returncode != 0
    assert "'gaussian' is not one of ['emrefiner', 'crtasser', 'gmm']" in proc.stdout + proc.stderr


def test_train_cnn_rule_releases_weights_and_resumes(tmp_path, crambin):
    """`snakemake train_cnn` on a two-chain manifest (one chain per clust40 split): the release files
    with a card naming the command and the checksum; a second run with more epochs resumes."""
    import pandas as pd

    from emforge.cnn.data import chain_table
    from emforge.cnn.train import checkpoint_paths, load_weights

    work = copy_workflow(tmp_path / "train")
    (work / "chains").mkdir()
    picked = pd.concat([chain_table(split, CHAINS / "MANIFEST.tsv").nsmallest(1, "n_residues")
                        for split in ("train", "validation")])
    for path in picked["path"]:
        shutil.copy2(path, work / "chains" / Path(path).name)
    picked.drop(columns=["path", "split"]).to_csv(work / "chains" / "MANIFEST.tsv", sep="\t", index=False)
    shutil.copy2(CRAMBIN, work / "ref.pdb.gz")
    write_datasets(work / "test_datasets.tsv", [{"id": "x", "reference": "ref.pdb.gz", "resolution_A": 5.0}])

    def config(epochs: int) -> None:
        (work / "test_config.yaml").write_text(
            "datasets: test_datasets.tsv\ntrain_cnn:\n  manifest: chains/MANIFEST.tsv\n  output_dir: release\n"
            f"  checkpoint_dir: training/checkpoints\n  epochs: {epochs}\n  steps_per_epoch: 1\n  crop_vox: 16\n"
            "  channels: 4\n  n_blocks: 1\n"
            "  val_maps_per_band: 1\n  device: cpu\n", encoding="utf-8")

    config(1)
    proc = snakemake(work, "train_cnn", timeout=600)
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    release = work / "release"
    net = load_weights(release / "calpha_net.pt")  # checksum verified on load
    assert (net.channels, net.n_blocks) == (4, 1)  # the config's network size reaches the training
    card = (release / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert load_json(release / "calpha_net.json")["sha256"] in card
    assert "`snakemake --cores 2 train_cnn`" in card and "epochs: 1, steps_per_epoch: 1" in card
    assert "1 training, 1 validation chains" in card
    assert (release / "train_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (work / "logs/train_cnn.log").is_file() and (work / "benchmarks/all/train_cnn.tsv").is_file()

    config(2)
    proc = snakemake(work, "train_cnn", timeout=600)
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    assert [e for e, _ in checkpoint_paths(work / "training/checkpoints")] == [1, 2]
    assert "resumed from" in (work / "logs/train_cnn.log").read_text(encoding="utf-8")
    assert len((release / "train_log.tsv").read_text(encoding="utf-8").splitlines()) == 3
