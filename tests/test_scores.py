"""Map-model scores checked against brute-force numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.masks import model_mask
from emforge.models import read_model
from emforge.scores import local_cc_per_residue, pearson_cc, score_model_map
from emforge.simulate import simulate_map


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


@pytest.fixture(scope="module")
def crambin_grid(crambin):
    # anisotropic voxels and an origin off the integer lattice, so frame slips cannot hide
    base = DensityMap.around_points(crambin.coords, 1.5, 6.0)
    return DensityMap(base.data, (1.5, 1.3, 1.7), base.origin + (0.31, -0.42, 0.17))


def _grid_points(m: DensityMap) -> np.ndarray:
    x, y, z = m.grid_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)


def test_pearson_matches_numpy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 7, 8))
    b = 0.3 * a + rng.normal(size=a.shape)
    mask = rng.random(a.shape) > 0.5
    assert pearson_cc(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
    assert pearson_cc(a, b, mask) == pytest.approx(np.corrcoef(a[mask], b[mask])[0, 1], abs=1e-12)
    with pytest.raises(ValueError, match="zero variance"):
        pearson_cc(np.ones((3, 3, 3)), b[:3, :3, :3])


def test_model_mask_matches_kdtree(crambin, crambin_grid):
    radius = 3.2
    mask = model_mask(crambin, crambin_grid, radius)
    dist, _ = cKDTree(crambin.coords).query(_grid_points(crambin_grid))
    expected = (dist <= radius).reshape(crambin_grid.shape)
    # points within float rounding of the sphere surface may flip; there must be none in practice
    assert np.array_equal(mask, expected)


def test_local_cc_matches_brute_force(crambin, crambin_grid):
    rng = np.random.default_rng(7)
    sim = simulate_map(crambin, crambin_grid, 4.0)
    exp = crambin_grid.with_data(sim.data + rng.normal(scale=sim.data.std(), size=sim.shape).astype(np.float32))
    table = local_cc_per_residue(crambin, exp, sim, radius_A=8.0)
    points = _grid_points(crambin_grid)
    tree = cKDTree(points)
    starts = crambin.residue_starts()
    stops = np.append(starts[1:], len(crambin))
    for r in [0, 5, 17, len(starts) - 1]:
        hits = set()
        for idx in tree.query_ball_point(crambin.coords[starts[r]:stops[r]], 8.0):
            hits.update(idx)
        sel = np.array(sorted(hits))
        expected = np.corrcoef(sim.data.ravel()[sel], exp.data.ravel()[sel])[0, 1]
        assert table["n_points"].iloc[r] == len(sel)
        assert table["local_cc"].iloc[r] == pytest.approx(expected, abs=1e-6)
    assert len(table) == crambin.n_residues
    assert list(table["res_seq"][:3]) == list(crambin.residue_table()["res_seq"][:3])


def test_self_consistent_scores_are_one(crambin, crambin_grid):
    target = simulate_map(crambin, crambin_grid, 5.0)
    scores, per_residue = score_model_map(crambin, target, 5.0)
    assert scores["cc"] == pytest.approx(1.0, abs=1e-6)
    assert scores["cc_mask"] == pytest.approx(1.0, abs=1e-6)
    assert np.nanmin(per_residue["local_cc"]) == pytest.approx(1.0, abs=1e-5)


def test_shifted_model_scores_lower(crambin, crambin_grid):
    target = simulate_map(crambin, crambin_grid, 5.0)
    shifted = crambin.with_coords(crambin.coords + (2.0, 0.0, 0.0))
    near, _ = score_model_map(shifted, target, 5.0)
    far, _ = score_model_map(crambin.with_coords(crambin.coords + (4.0, 0.0, 0.0)), target, 5.0)
    assert 1.0 > near["cc"] > far["cc"]
    assert near["cc_mask"] < 1.0


def test_bad_inputs(crambin, crambin_grid):
    flat = crambin_grid.with_data(np.full(crambin_grid.shape, 2.0, np.float32))
    with pytest.raises(InputError, match="zero variance"):
        score_model_map(crambin, flat, 5.0, map_path="flat.mrc")
    target = simulate_map(crambin, crambin_grid, 5.0)
    away = crambin.with_coords(crambin.coords + 500.0)
    with pytest.raises(InputError, match="does not overlap"):
        score_model_map(away, target, 5.0, model_path="away.pdb")
    with pytest.raises(InputError, match="resolution"):
        score_model_map(crambin, target, 0.0)
