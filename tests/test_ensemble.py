"""Ensembles from B-factors (emforge.refine.ensemble): RMSF on analytic cases, members and map on a real chain."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from emforge.errors import InputError
from emforge.models import read_model, write_models
from emforge.refine import ensemble
from emforge.scores import pearson_cc
from emforge.simulate import simulate_map


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz").without_hydrogens()


def test_rmsf_of_known_displacements(crambin):
    ca = crambin.atom_name == "CA"
    shifts = np.zeros((4, len(crambin), 3))
    # C-alpha k moves +-d_k along x in two members each: RMSF = d_k about the unchanged mean
    d = np.linspace(0.1, 2.0, ca.sum())
    shifts[0, ca, 0] = d
    shifts[1, ca, 0] = -d
    shifts[2, ca, 1] = d
    shifts[3, ca, 1] = -d
    members = [crambin.with_coords(crambin.coords + s) for s in shifts]
    table = ensemble.rmsf_per_residue(members)
    assert len(table) == crambin.n_residues
    assert np.allclose(table["rmsf_A"], d)


def test_sampling_widths_are_shifted_to_the_minimum():
    sd = ensemble.sampling_sigma_A(np.array([0.5, 1.0, 2.0]))
    b = np.sqrt(2) * np.array([0.5, 1.0, 2.0])
    assert np.allclose(sd * np.sqrt(2), b - b.min() + 0.25)


def test_ensemble_members_and_map(crambin, tmp_path):
    pytest.importorskip("openmm")
    density = simulate_map(crambin, None, 3.0, "emrefiner", voxel_size_A=1.0, margin_A=6.0,
                           sigma_A=np.where(crambin.res_seq <= 23, 0.8, 1.6))
    result = ensemble.generate_ensemble(crambin, density, 3.0, max_members=3, md_steps=0, seed=1)
    n = result.summary["n_members"]
    assert 2 <= n <= 3 and len(result.members) == n
    assert all(len(m) == len(result.members[0]) for m in result.members)
    xyz = np.stack([m.coords for m in result.members])
    assert np.abs(xyz[0] - xyz[1]).max() > 0.05  # members differ
    # the ensemble map is the mean of the members' maps (recomputed independently)
    sigma = 0.225 * 3.0
    mean = np.mean([simulate_map(m, density, 3.0, "gmm", sigma_A=sigma).data for m in result.members], axis=0)
    assert np.allclose(result.map.data, mean, atol=1e-4 * float(mean.max()))
    assert result.curve["ccc"].iloc[n - 1] == pytest.approx(result.summary["ensemble_ccc"])
    # the spread of the ensemble explains the map better than the single model (same width, same mask)
    from emforge.masks import model_mask
    from emforge.scores import default_mask_radius_A

    mask = model_mask(crambin, density, default_mask_radius_A(3.0))
    single = simulate_map(crambin, density, 3.0, "gmm", sigma_A=sigma).data
    assert pearson_cc(result.map.data, density.data, mask) > pearson_cc(single, density.data, mask)
    # the sharper half moves less than the blurred half
    table = result.rmsf
    assert table.loc[table.res_seq >= 27, "rmsf_A"].mean() > table.loc[table.res_seq <= 20, "rmsf_A"].mean()
    path = write_models(tmp_path / "ens.cif", result.members)
    st = gemmi.read_structure(str(path))
    assert len(st) == n and st[0].count_atom_sites() == len(result.members[0])


def test_ensemble_bad_input(crambin):
    density = simulate_map(crambin, None, 3.0, "gmm", voxel_size_A=1.0)
    with pytest.raises(InputError, match="at least 2 members"):
        ensemble.generate_ensemble(crambin, density, 3.0, max_members=1)
    with pytest.raises(InputError, match="resolution"):
        ensemble.generate_ensemble(crambin, density, 0.0)


def test_cli_ensemble(crambin, tmp_path):
    pytest.importorskip("openmm")
    from emforge.cli import main
    from emforge.maps import read_map, write_map
    from emforge.models import write_model

    density = simulate_map(crambin, None, 3.0, "gmm", voxel_size_A=1.0, margin_A=6.0)
    write_map(tmp_path / "map.mrc", density)
    write_model(tmp_path / "m.pdb", crambin)
    args = ["ensemble", str(tmp_path / "m.pdb"), str(tmp_path / "map.mrc"), "-r", "3", "--max-members", "2",
            "--md-steps", "0", "-o", str(tmp_path / "ens.cif"), "--map-out", str(tmp_path / "ens.mrc"),
            "--rmsf", str(tmp_path / "rmsf.tsv"), "-q"]
    assert main(args) == 0
    assert len(gemmi.read_structure(str(tmp_path / "ens.cif"))) == 2
    assert read_map(tmp_path / "ens.mrc").same_grid(density)
    assert (tmp_path / "rmsf.tsv").read_text().startswith("chain_id\tres_seq")
    bad = ["ensemble", str(tmp_path / "m.pdb"), str(tmp_path / "map.mrc"), "-r", "3", "--max-members", "1",
           "-o", str(tmp_path / "bad.cif"), "--map-out", str(tmp_path / "bad.mrc"), "-q"]
    assert main(bad) == 2
    assert not (tmp_path / "bad.cif").exists() and not (tmp_path / "bad.mrc").exists()
