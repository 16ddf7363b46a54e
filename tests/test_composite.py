"""Composite maps (emforge.composite): responsibilities pick, per region, the component that resolves it.

Reference: the sharp map simulated from the deposited model (the "truth" every component is a
degraded copy of), compared with the composite and with the two naive combinations.
"""

from __future__ import annotations

import numpy as np
import pytest

from emforge.composite import common_grid, composite_map, onto_grid
from emforge.errors import InputError
from emforge.maps import DensityMap, crop
from emforge.models import read_model
from emforge.scores import pearson_cc
from emforge.simulate import simulate_map

SHARP_A, BLURRED_A = 0.8, 2.0


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz").without_hydrogens()


def _components(model, rng):
    first = model.res_seq <= 23
    truth = simulate_map(model, None, 3.0, "emrefiner", voxel_size_A=1.0, margin_A=8.0, sigma_A=SHARP_A)
    maps = []
    for sharp_half, noise in ((first, 0.05), (~first, 0.08)):
        m = simulate_map(model, truth, 3.0, "emrefiner", sigma_A=np.where(sharp_half, SHARP_A, BLURRED_A))
        data = m.data + rng.normal(scale=noise * float(m.data.max()), size=m.shape).astype(np.float32)
        maps.append(m.with_data(data))
    return truth, maps


def test_composite_beats_average_and_maximum(crambin):
    truth, maps = _components(crambin, np.random.default_rng(0))
    result = composite_map(maps, crambin, resolution_A=3.0)
    mask = truth.data > 0.05 * truth.data.max()
    cc = pearson_cc(result.map.data, truth.data, mask)
    average = pearson_cc((maps[0].data + maps[1].data) / 2, truth.data, mask)
    maximum = pearson_cc(np.maximum(maps[0].data, maps[1].data), truth.data, mask)
    # hard assignment of every voxel to the map whose sharp half is nearer (an oracle that knows the halves)
    first = crambin.res_seq <= 23
    near_a = simulate_map(crambin.select(first), truth, 3.0, "emrefiner", sigma_A=BLURRED_A).data
    near_b = simulate_map(crambin.select(~first), truth, 3.0, "emrefiner", sigma_A=BLURRED_A).data
    oracle = pearson_cc(np.where(near_a > near_b, maps[0].data, maps[1].data), truth.data, mask)
    assert cc > average + 0.05 and cc > maximum + 0.005
    assert cc > oracle
    # atoms go to the component that resolves them
    assert np.mean(result.assignment[first] == 0) > 0.9
    assert np.mean(result.assignment[~first] == 1) > 0.9
    assert result.components["n_kept"].sum() == len(crambin)


def test_composite_of_cropped_boxes_covers_the_union(crambin):
    truth, maps = _components(crambin, np.random.default_rng(1))
    nx = truth.shape[2]
    a = crop(maps[0], (0, 0, 0), (int(0.75 * nx), truth.shape[1], truth.shape[0]))
    b = crop(maps[1], (int(0.25 * nx), 0, 0), (nx - int(0.25 * nx), truth.shape[1], truth.shape[0]))
    grid = common_grid([a, b])
    assert grid.same_grid(truth)
    result = composite_map([a, b], crambin, resolution_A=3.0)
    assert result.map.same_grid(truth)
    va, ca = onto_grid(a, grid)
    vb, cb = onto_grid(b, grid)
    assert ca.sum() == a.data.size and np.isclose(va[ca].sum(), a.data.sum(), rtol=1e-5)
    # where only one component covers a voxel the composite is that map, rescaled to the mean scale
    scale = result.components["scale"].to_numpy()
    only_a, only_b = ca & ~cb, cb & ~ca
    assert np.allclose(result.map.data[only_a], va[only_a] * scale.mean() / scale[0], rtol=1e-4, atol=1e-6)
    assert np.allclose(result.map.data[only_b], vb[only_b] * scale.mean() / scale[1], rtol=1e-4, atol=1e-6)
    # where both cover, it beats their average
    both = ca & cb & (truth.data > 0.05 * truth.data.max())
    assert pearson_cc(result.map.data, truth.data, both) > pearson_cc((va + vb) / 2, truth.data, both) + 0.02


def test_composite_bad_input(crambin):
    truth, maps = _components(crambin, np.random.default_rng(2))
    with pytest.raises(InputError, match="at least 2"):
        composite_map(maps[:1], crambin)
    with pytest.raises(InputError, match="one consensus model or one per map"):
        composite_map(maps, [crambin] * 3)
    far = DensityMap(maps[1].data, maps[1].voxel_size, maps[1].origin + 500.0)
    with pytest.raises(InputError, match="component 2"):
        composite_map([maps[0], far], crambin)


def test_cli_composite(crambin, tmp_path):
    from emforge.cli import main
    from emforge.maps import read_map, write_map
    from emforge.models import write_model

    truth, maps = _components(crambin, np.random.default_rng(3))
    paths = []
    for k, m in enumerate(maps):
        paths.append(str(tmp_path / f"c{k}.mrc"))
        write_map(paths[-1], m)
    write_model(tmp_path / "m.pdb", crambin)
    out = tmp_path / "comp.mrc"
    assert main(["composite", "--maps", *paths, "--model", str(tmp_path / "m.pdb"), "-r", "3", "-o", str(out),
                 "--table", str(tmp_path / "t.tsv"), "-q"]) == 0
    direct = composite_map(maps, crambin, resolution_A=3.0).map
    assert np.allclose(read_map(out).data, direct.data, atol=1e-5 * float(np.abs(direct.data).max()))
    assert (tmp_path / "t.tsv").read_text().startswith("component\tn_atoms")
    bad = tmp_path / "bad.mrc"
    assert main(["composite", "--maps", paths[0], "--model", str(tmp_path / "m.pdb"), "-o", str(bad), "-q"]) == 2
    assert main(["composite", "--maps", *paths, "-o", str(bad), "-q"]) == 2
    assert not bad.exists()
