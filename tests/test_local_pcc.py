"""Decoupled local PCC of paper 003 (emforge.local_pcc) against independent references.

* Brute force: Eq. 2 densities of every residue on the whole grid with plain numpy, Eq. 11
  decoupling and Eq. 10 correlations over each residue's support.
* Analytic: when the map is exactly the model's own Eq. 2 density the decoupled density
  equals the residue's density, so every residue scores 1 (while the plain local PCC,
  polluted by neighbours, does not); one residue alone: decoupled == plain.
* Invariance to the scale of the experimental map.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from emforge.local_pcc import local_pcc_decoupled
from emforge.maps import DensityMap
from emforge.models import AtomModel
from emforge.simulate import simulate_map

Z = {"C": 6, "N": 7, "O": 8, "S": 16}


def make_model(coords, elements, residue_of_atom) -> AtomModel:
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    n = len(coords)
    res = np.asarray(residue_of_atom)
    return AtomModel(
        coords=coords, element=np.array(elements, dtype="U2"), atom_name=np.array(elements, dtype="U4"),
        res_name=np.full(n, "GLY", dtype="U5"), res_seq=res + 10, ins_code=np.full(n, "", dtype="U1"),
        chain_id=np.full(n, "B", dtype="U4"), b_factor=np.full(n, 30.0), occupancy=np.ones(n),
        is_het=np.zeros(n, bool), residue_index=res)


def tiny_case(rng):
    """Three residues of 4 atoms along a zig-zag, close enough for their densities to overlap."""
    base = np.array([[0.0, 0.0, 0.0], [1.5, 0.3, 0.1], [2.1, 1.6, -0.4], [0.4, -1.3, 0.9]])
    coords = np.concatenate([base + [3.6 * k, 0.8 * (k % 2), 0.0] for k in range(3)])
    coords += rng.normal(scale=0.2, size=coords.shape)
    elements = ["N", "C", "C", "O"] * 3
    return make_model(coords, elements, np.repeat(np.arange(3), 4))


def brute_force(model: AtomModel, m: DensityMap, R: float, cutoff: float = 3.0):
    """Eq. 2 per residue on the full grid (numpy), Eq. 11, Eq. 10 over the support."""
    sigma = R / math.sqrt(2 * math.pi)
    gx, gy, gz = m.grid_coordinates()
    Zg, Yg, Xg = np.meshgrid(gz, gy, gx, indexing="ij")
    n_res = int(model.residue_index.max()) + 1
    per = np.zeros((n_res,) + m.shape)
    for a in range(len(model)):
        d2 = (Xg - model.coords[a, 0]) ** 2 + (Yg - model.coords[a, 1]) ** 2 + (Zg - model.coords[a, 2]) ** 2
        g = Z[model.element[a]] / math.sqrt(2 * math.pi * sigma ** 2) * np.exp(-d2 / (2 * sigma ** 2))
        per[model.residue_index[a]] += np.where(d2 <= (cutoff * sigma) ** 2, g, 0.0)
    total = per.sum(axis=0)
    rho0 = m.data.astype(np.float64)
    dec, raw = [], []
    for i in range(n_res):
        sup = per[i] > 0
        a = per[i][sup]
        b = rho0[sup] * per[i][sup] / total[sup]
        dec.append(np.corrcoef(a, b)[0, 1])
        raw.append(np.corrcoef(a, rho0[sup])[0, 1])
    return np.array(dec), np.array(raw)


def test_matches_brute_force(tmp_path):
    rng = np.random.default_rng(7)
    model = tiny_case(rng)
    R = 3.0
    like = DensityMap.around_points(model.coords, 0.7, 5.0)
    sim = simulate_map(model, like, R, "crtasser")
    noisy = like.with_data(sim.data + rng.normal(scale=0.3 * sim.data.std(), size=like.shape).astype(np.float32))
    df = local_pcc_decoupled(model, noisy, R)
    dec, raw = brute_force(model, noisy, R)
    assert list(df.columns) == ["chain_id", "res_seq", "ins_code", "res_name", "local_pcc_decoupled",
                                "local_pcc_raw", "n_points"]
    assert df["res_seq"].tolist() == [10, 11, 12]
    np.testing.assert_allclose(df["local_pcc_decoupled"], dec, atol=2e-6)
    np.testing.assert_allclose(df["local_pcc_raw"], raw, atol=2e-6)
    assert np.all(df["n_points"] > 50)


def test_self_consistent_map_scores_one_and_beats_plain_pcc():
    rng = np.random.default_rng(8)
    model = tiny_case(rng)
    R = 4.0
    sim = simulate_map(model, None, R, "crtasser", voxel_size_A=0.8)
    df = local_pcc_decoupled(model, sim, R)
    np.testing.assert_allclose(df["local_pcc_decoupled"], 1.0, atol=1e-6)
    assert np.all(df["local_pcc_raw"] < 0.99)
    # scale of the experimental map does not matter
    scaled = local_pcc_decoupled(model, sim.with_data(sim.data * 37.0), R)
    np.testing.assert_allclose(scaled["local_pcc_decoupled"], df["local_pcc_decoupled"], atol=1e-9)


def test_single_residue_decoupled_equals_plain():
    rng = np.random.default_rng(9)
    model = tiny_case(rng).select(np.arange(4))
    like = DensityMap.around_points(model.coords, 0.6, 6.0)
    noise = like.with_data(rng.normal(size=like.shape).astype(np.float32))
    df = local_pcc_decoupled(model, noise, 3.0)
    assert df["local_pcc_decoupled"][0] == pytest.approx(df["local_pcc_raw"][0], abs=1e-9)


def test_residue_outside_map_is_nan():
    rng = np.random.default_rng(10)
    model = tiny_case(rng)
    far = model.with_coords(np.where(model.residue_index[:, None] == 2, model.coords + 500.0, model.coords))
    like = DensityMap.around_points(model.coords[:8], 0.7, 5.0)
    sim = simulate_map(model, like, 3.0, "crtasser")
    df = local_pcc_decoupled(far, sim, 3.0)
    assert np.isnan(df["local_pcc_decoupled"][2]) and df["n_points"][2] == 0
    assert np.isfinite(df["local_pcc_decoupled"][:2]).all()
