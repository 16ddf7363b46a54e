"""Rigid-body fitting (emforge.fit): known-answer placements checked against the original coordinates."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from emforge.errors import InputError
from emforge.fit import FitResult, fit_model, remc_temperatures, rotation_grid
from emforge.maps import DensityMap, crop, read_map
from emforge.models import AtomModel, RigidTransform, read_model
from emforge.scores import pearson_cc
from emforge.simulate import simulate_map

DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo"
RES = 6.0
STEP = 20.0  # coarse rotational sampling keeps the tests fast; refinement closes the gap

POSE_COLUMNS = ["rank", "cc", "z_score", "q_w", "q_x", "q_y", "q_z",
                "r11", "r12", "r13", "r21", "r22", "r23", "r31", "r32", "r33",
                "translation_x_A", "translation_y_A", "translation_z_A",
                "centre_x_A", "centre_y_A", "centre_z_A", "method"]


def ca_rmsd(a: AtomModel, b: AtomModel) -> float:
    """C-alpha RMSD without superposition, straight from the coordinates."""
    x, y = a.calpha().coords, b.calpha().coords
    return float(np.sqrt(np.mean(np.sum((x - y) ** 2, axis=1))))


def moved(model: AtomModel, seed: int, shift_A=(6.0, -4.0, 3.0)) -> AtomModel:
    rot = Rotation.random(random_state=seed).as_matrix()
    c = model.coords.mean(axis=0)
    # rotate about the centre, then shift: the moved model still overlaps the map
    return model.transformed(RigidTransform(rot, c - rot @ c + np.asarray(shift_A)))


@pytest.fixture(scope="module")
def ubq(shared_data) -> AtomModel:
    return read_model(shared_data / "chains" / "1ubq_A.pdb.gz")


@pytest.fixture(scope="module")
def ubq_map(ubq) -> DensityMap:
    return simulate_map(ubq, None, RES, voxel_size_A=2.0, margin_A=10.0)


@pytest.fixture(scope="module")
def demo_fft():
    native = read_model(DEMO / "1ake_A.cif")
    m = read_map(DEMO / "1ake_A_6A.mrc")
    res = fit_model(moved(native, 7, (8.0, 5.0, -6.0)), m, RES, "fft", angular_step_deg=STEP, n_poses=6)
    return native, m, res


def test_fft_puts_demo_model_back(demo_fft):
    native, _, res = demo_fft
    assert isinstance(res, FitResult)
    assert ca_rmsd(res.model, native) < 1.0
    assert res.cc > 0.95
    # the transform maps the input coordinates onto the fitted model
    assert set(res.timings_s) >= {"prepare", "search", "refine", "total"}


def test_pose_table_and_significance(demo_fft):
    _, _, res = demo_fft
    p = res.poses
    assert list(p.columns) == POSE_COLUMNS
    assert list(p["rank"]) == list(range(1, len(p) + 1))
    assert np.all(np.diff(p["cc"].to_numpy()) <= 1e-12)
    assert (p["method"] == "fft").all()
    assert p["z_score"].iloc[0] > 5.0
    assert res.cc == pytest.approx(p["cc"].iloc[0])
    # quaternion and matrix columns describe the same rotation as the returned transform
    q = p.loc[0, ["q_x", "q_y", "q_z", "q_w"]].to_numpy(dtype=float)
    mat = p.loc[0, ["r11", "r12", "r13", "r21", "r22", "r23", "r31", "r32", "r33"]].to_numpy(float)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), mat.reshape(3, 3), atol=1e-9)
    np.testing.assert_allclose(res.transform.rotation, mat.reshape(3, 3), atol=1e-9)
    t = p.loc[0, ["translation_x_A", "translation_y_A", "translation_z_A"]].to_numpy(float)
    np.testing.assert_allclose(res.transform.translation, t, atol=1e-9)


def test_auto_puts_chain_back(ubq, ubq_map):
    start = moved(ubq, 3)
    assert ca_rmsd(start, ubq) > 10.0
    calls = []
    res = fit_model(start, ubq_map, RES, "auto", angular_step_deg=STEP, n_poses=4,
                    n_replicas=6, n_remc_steps=15, seed=1, progress=lambda d, t: calls.append((d, t)))
    search = calls[:-15]  # global (coarse) then local (fine) rotations, counted together
    assert search[-1][0] == search[-1][1] > len(rotation_grid(2 * STEP))  # search finished
    assert calls[-1] == (15, 15)  # then the REMC steps
    assert ca_rmsd(res.model, ubq) < 1.0
    assert np.allclose(res.transform.apply(start.coords), res.model.coords)
    assert (res.poses["method"] == "auto").all()
    assert res.poses["z_score"].iloc[0] > 5.0
    assert "remc" in res.timings_s


def test_remc_improves_perturbed_start_and_is_deterministic(ubq, ubq_map):
    c = ubq.coords.mean(axis=0)
    rot = Rotation.from_rotvec(np.radians(15.0) * np.array([0.6, 0.8, 0.0])).as_matrix()
    start = ubq.transformed(RigidTransform(rot, c - rot @ c + np.array([2.0, -1.5, 1.0])))
    kw = dict(n_replicas=6, n_remc_steps=25, n_poses=3, seed=11)
    a = fit_model(start, ubq_map, RES, "remc", **kw)
    b = fit_model(start, ubq_map, RES, "remc", **kw)
    # independent check: global Pearson CC of simulated maps on the whole grid, and the RMSD
    cc_start = pearson_cc(simulate_map(start, ubq_map, RES).data, ubq_map.data)
    cc_fit = pearson_cc(simulate_map(a.model, ubq_map, RES).data, ubq_map.data)
    assert cc_fit > cc_start + 0.05
    assert ca_rmsd(a.model, ubq) < ca_rmsd(start, ubq)
    assert (a.poses["method"] == "remc").all()
    # same inputs + seed = same output
    np.testing.assert_array_equal(a.transform.rotation, b.transform.rotation)
    np.testing.assert_array_equal(a.transform.translation, b.transform.translation)
    assert a.poses.drop(columns="method").equals(b.poses.drop(columns="method"))


def test_single_chain_in_map_of_two_chains(shared_data, ubq):
    """Local correlation: ubiquitin placed into a map that also holds crambin next to it."""
    crn = read_model(shared_data / "chains" / "1crn_A.pdb.gz")
    # put crambin beside ubiquitin, touching but not overlapping
    shift = ubq.coords.mean(axis=0) - crn.coords.mean(axis=0) + np.array([26.0, 0.0, 0.0])
    crn = crn.transformed(RigidTransform(np.eye(3), shift))
    both = np.vstack([ubq.coords, crn.coords])
    grid = DensityMap.around_points(both, 2.0, 10.0)
    data = simulate_map(ubq, grid, RES).data + simulate_map(crn, grid, RES).data
    m = grid.with_data(data)
    res = fit_model(moved(ubq, 5, (10.0, 3.0, -2.0)), m, RES, "fft", angular_step_deg=STEP, n_poses=4)
    assert ca_rmsd(res.model, ubq) < 1.0
    assert res.cc > 0.95


def test_rotation_grid_coverage():
    for step in (20.0, 30.0):
        grid = rotation_grid(step)
        assert np.allclose(grid[0], np.eye(3))
        assert np.allclose(np.einsum("nij,nkj->nik", grid, grid), np.eye(3), atol=1e-9)
        assert np.allclose(np.linalg.det(grid), 1.0)
        q = Rotation.from_matrix(grid).as_quat()
        p = Rotation.random(2000, random_state=0).as_quat()
        nearest = np.degrees(2 * np.arccos(np.clip(np.abs(p @ q.T).max(axis=1), -1, 1)))
        assert nearest.mean() < 0.7 * step
        assert nearest.max() < 1.25 * step
    assert len(rotation_grid(10.0)) > 6000


def test_remc_temperatures_follow_eq1():
    t = remc_temperatures(20)
    assert t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(1.0)
    i = np.arange(1, 21)
    np.testing.assert_allclose(t, 0.01 * (1.0 / 0.01) ** ((i - 1) / 19))


def test_bad_inputs(ubq, ubq_map):
    with pytest.raises(InputError, match="resolution"):
        fit_model(ubq, ubq_map, 0.0, "fft")
    with pytest.raises(InputError, match="resolution"):
        fit_model(ubq, ubq_map, -3.0, "fft")
    with pytest.raises(InputError, match="method"):
        fit_model(ubq, ubq_map, RES, "powerfit")
    values = {f.name: getattr(ubq, f.name) for f in fields(ubq)}
    values["res_name"] = np.array(["HOH"] * len(ubq), dtype=ubq.res_name.dtype)
    with pytest.raises(InputError, match="no protein"):
        fit_model(AtomModel(**values), ubq_map, RES, "fft")
    tiny = crop(ubq_map, ubq_map.shape_xyz // 2 - 2, (5, 5, 5))  # 10 Å box, dense
    with pytest.raises(InputError, match="larger than the map"):
        fit_model(ubq, tiny, RES, "fft")
    with pytest.raises(InputError, match="zero variance"):
        fit_model(ubq, ubq_map.with_data(np.ones(ubq_map.shape, np.float32)), RES, "fft")


def test_inputs_not_modified(ubq, ubq_map):
    before_xyz = ubq.coords.copy()
    before_map = ubq_map.data.copy()
    fit_model(ubq, ubq_map, RES, "remc", n_replicas=2, n_remc_steps=2, n_poses=1)
    np.testing.assert_array_equal(ubq.coords, before_xyz)
    np.testing.assert_array_equal(ubq_map.data, before_map)


def test_search_steps_and_coarse_to_fine_recovery(ubq, ubq_map):
    from emforge.fit import search_steps

    # global step: arc at the rms radius = resolution, clamped to [step, 2 step]
    assert search_steps(10.0, 6.0, 11.0) == (20.0, 10.0)
    assert search_steps(10.0, 6.0, 1000.0) == (10.0, 10.0)
    coarse, fine = search_steps(10.0, 6.0, 25.0)
    assert coarse == pytest.approx(np.degrees(6.0 / 25.0)) and fine == 10.0
    # default 10° step: coarse global stage + fine local stage puts a randomly rotated chain back
    start = moved(ubq, 11, (-5.0, 4.0, 7.0))
    assert ca_rmsd(start, ubq) > 10.0
    res = fit_model(start, ubq_map, RES, "fft", angular_step_deg=10.0, n_poses=3)
    assert ca_rmsd(res.model, ubq) < 1.0
    assert res.poses["z_score"].iloc[0] > 5.0
