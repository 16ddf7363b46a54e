"""lDDT (C-alpha), placement cRMSD and CRscore (emforge.compare) against independent references.

* lDDT: identical -> 1; a hand-computed case; invariance to rigid motion; a plain O(L^2)
  Python loop over Mariani's definition (with a missing model residue).
* CRscore: identical -> 1; permutation invariance; a uniform shift (analytic); a 1-D case
  where greedy pairing differs from the optimal assignment (hand-computed); a naive
  sort-all-pairs greedy in Python on spread-out random sets.
* cRMSD: an exactly placed model -> 0 even with a conformational difference; a rigid copy
  moved by a known translation or rotation -> the analytic value.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from emforge.compare import compare_models, crscore, lddt_ca, placement_crmsd, tm_d0
from emforge.models import read_model


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def random_chain(rng, n, step=3.8):
    """A self-avoiding-ish random walk of C-alpha positions, 3.8 Å apart."""
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.cumsum(d * step, axis=0)


# -- lDDT ---------------------------------------------------------------------------------------

def brute_lddt(x, y, r0=15.0, thr=(0.5, 1.0, 2.0, 4.0)):
    n = len(y)
    per_num, per_den = np.zeros(n), np.zeros(n)
    num = den = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            dr = math.dist(y[i], y[j])
            if not dr < r0:
                continue
            if np.isnan(x[i]).any() or np.isnan(x[j]).any():
                s = 0.0
            else:
                dm = math.dist(x[i], x[j])
                s = sum(abs(dm - dr) < t for t in thr) / len(thr)
            per_num[i] += s
            per_den[i] += 1
            num += s
            den += 1
    with np.errstate(invalid="ignore"):
        return num / den, np.where(per_den > 0, per_num / np.maximum(per_den, 1), np.nan)


def test_lddt_identical_is_one():
    y = random_chain(np.random.default_rng(0), 50)
    g, per = lddt_ca(y, y)
    assert g == 1.0 and np.all(per == 1.0)


def test_lddt_hand_computed_line():
    # five atoms on a line 3.8 Å apart: pair (0, 4) is 15.2 Å apart, outside R0 = 15 Å -> 9 pairs
    y = np.zeros((5, 3))
    y[:, 0] = 3.8 * np.arange(5)
    x = y.copy()
    x[4, 0] += 3.0            # pairs (1,4), (2,4), (3,4) change by 3 Å: preserved only at 4 Å
    g, per = lddt_ca(x, y)
    assert g == pytest.approx((6 + 3 * 0.25) / 9)
    np.testing.assert_allclose(per, [1.0, (3 + 0.25) / 4, (3 + 0.25) / 4, (3 + 0.25) / 4, 0.25])


def test_lddt_rigid_motion_invariance_and_brute_force():
    rng = np.random.default_rng(1)
    y = random_chain(rng, 60)
    x = y + rng.normal(scale=1.2, size=y.shape)
    g, per = lddt_ca(x, y)
    moved = x @ random_rotation(rng).T + rng.normal(scale=50, size=3)
    g2, per2 = lddt_ca(moved, y)
    assert g2 == pytest.approx(g, abs=1e-12)
    np.testing.assert_allclose(per2, per, atol=1e-12)
    bg, bper = brute_lddt(x, y)
    assert g == pytest.approx(bg, abs=1e-12)
    np.testing.assert_allclose(per, bper, atol=1e-12)
    # a residue missing from the model: its pairs count as not preserved
    x_missing = x.copy()
    x_missing[7] = np.nan
    gm, perm = lddt_ca(x_missing, y)
    bgm, bperm = brute_lddt(x_missing, y)
    assert gm == pytest.approx(bgm, abs=1e-12) and gm < g
    np.testing.assert_allclose(perm, bperm, atol=1e-12)
    assert perm[7] == 0.0
    # other radius and thresholds
    g3, per3 = lddt_ca(x, y, inclusion_radius_A=8.0, thresholds=(1.0, 3.0))
    bg3, bper3 = brute_lddt(x, y, 8.0, (1.0, 3.0))
    assert g3 == pytest.approx(bg3, abs=1e-12)
    np.testing.assert_allclose(per3, bper3, atol=1e-12)


def test_lddt_without_pairs_is_nan():
    y = np.array([[0.0, 0, 0], [100.0, 0, 0], [0, 100.0, 0]])
    g, per = lddt_ca(y, y)
    assert math.isnan(g) and np.all(np.isnan(per))
    with pytest.raises(ValueError):
        lddt_ca(y, y[:2])


# -- placement cRMSD ----------------------------------------------------------------------------

def test_crmsd_exact_placement_is_zero_despite_conformational_change():
    rng = np.random.default_rng(2)
    target = random_chain(rng, 80)
    model = target + rng.normal(scale=2.0, size=target.shape)      # another conformation
    model = model @ random_rotation(rng).T + [30.0, -5.0, 12.0]     # anywhere in space
    # the ideal placement: the model superposed on the target (Kabsch written here with numpy)
    mc, tc = model.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((model - mc).T @ (target - tc))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1, 1, d]) @ u.T
    placed = (model - mc) @ rot.T + tc
    assert placement_crmsd(placed, target) == pytest.approx(0.0, abs=1e-9)
    assert placement_crmsd(model, target) > 10.0


def test_crmsd_of_known_rigid_offsets():
    rng = np.random.default_rng(3)
    target = random_chain(rng, 70)
    # the model IS the target's conformation, so its best placement is the target itself
    shift = np.array([1.0, -2.0, 2.0])
    assert placement_crmsd(target + shift, target) == pytest.approx(3.0, abs=1e-9)
    theta = math.radians(10.0)
    rz = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    c = target.mean(axis=0)
    rotated = (target - c) @ rz.T + c
    rho2 = np.sum((target - c)[:, :2] ** 2, axis=1)                # squared distance from the z axis
    expected = math.sqrt(np.mean(2.0 * (1.0 - math.cos(theta)) * rho2))
    assert placement_crmsd(rotated, target) == pytest.approx(expected, rel=1e-9)


# -- CRscore ------------------------------------------------------------------------------------

def naive_greedy(p, q, limit=np.inf):
    cand = sorted((math.dist(p[i], q[j]), i, j) for i in range(len(p)) for j in range(len(q)))
    used_p, used_q, pairs = set(), set(), []
    for d, i, j in cand:
        if d > limit:
            break
        if i not in used_p and j not in used_q:
            used_p.add(i)
            used_q.add(j)
            pairs.append((i, j, d))
    return pairs


def test_crscore_identical_and_uniform_shift():
    rng = np.random.default_rng(4)
    grid = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)[:120]
    q = 3.8 * grid + rng.uniform(-0.3, 0.3, size=(120, 3))          # neighbours >= 3.2 Å apart
    assert crscore(q, q)["crscore"] == pytest.approx(1.0)
    shift = np.array([0.6, 0.0, 0.8])                               # 1.0 Å, under half the closest spacing
    r = crscore(q + shift, q)
    d0 = tm_d0(120)
    assert r["d0_A"] == pytest.approx(d0)
    assert r["crscore"] == pytest.approx(1.0 / (1.0 + (1.0 / d0) ** 2), abs=1e-12)
    assert r["n_pairs"] == 120 and r["pair_rmsd_A"] == pytest.approx(1.0)
    np.testing.assert_array_equal(r["predicted_index"][np.argsort(r["native_index"])], np.arange(120))
    # half of the atoms predicted: half the score
    half = crscore(q[::2], q)
    assert half["crscore"] == pytest.approx(0.5) and half["n_pairs"] == 60


def test_crscore_is_order_independent():
    rng = np.random.default_rng(5)
    q = random_chain(rng, 90)
    p = q[rng.permutation(90)[:75]] + rng.normal(scale=1.5, size=(75, 3))
    base = crscore(p, q)
    pp, qp = rng.permutation(len(p)), rng.permutation(len(q))
    again = crscore(p[pp], q[qp])
    assert again["crscore"] == pytest.approx(base["crscore"], abs=1e-12)
    assert again["n_pairs"] == base["n_pairs"]
    np.testing.assert_allclose(np.sort(again["pair_distance_A"]), np.sort(base["pair_distance_A"]), atol=1e-12)


def test_crscore_greedy_hand_case():
    # greedy takes the shortest pair first (p0-n1, 0.9 Å), leaving p1-n0 (3.5 Å); the optimal
    # assignment would be p0-n0 (1.1) + p1-n1 (1.5)
    q = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    p = np.array([[1.1, 0, 0], [3.5, 0, 0]])
    r = crscore(p, q)
    d0 = tm_d0(2)
    assert d0 == 0.5
    assert r["crscore"] == pytest.approx((1 / (1 + (0.9 / d0) ** 2) + 1 / (1 + (3.5 / d0) ** 2)) / 2)
    assert r["predicted_index"].tolist() == [0, 1] and r["native_index"].tolist() == [1, 0]
    # with a pair-distance limit the long pair is dropped
    r2 = crscore(p, q, max_pair_distance_A=2.0)
    assert r2["n_pairs"] == 1 and r2["crscore"] == pytest.approx(1 / (1 + (0.9 / d0) ** 2) / 2)


@pytest.mark.parametrize("limit", [None, 12.0])
@pytest.mark.parametrize("dense_pairs", [250_000, 0])
def test_crscore_matches_naive_greedy_on_spread_sets(limit, dense_pairs, monkeypatch):
    # dense_pairs=0 forces the rounds of doubling radius all the way out
    monkeypatch.setattr("emforge.compare._CRSCORE_DENSE_PAIRS", dense_pairs)
    rng = np.random.default_rng(6)
    q = rng.uniform(0, 60, size=(70, 3))
    p = np.concatenate([q[:40] + rng.normal(scale=2.0, size=(40, 3)),
                        rng.uniform(-200, 200, size=(25, 3))])          # far strays need many rounds
    r = crscore(p, q, max_pair_distance_A=limit)
    pairs = naive_greedy(p, q, np.inf if limit is None else limit)
    assert r["n_pairs"] == len(pairs)
    assert sorted(zip(r["predicted_index"].tolist(), r["native_index"].tolist())) == \
        sorted((i, j) for i, j, _ in pairs)
    d0 = tm_d0(70)
    assert r["crscore"] == pytest.approx(sum(1 / (1 + (d / d0) ** 2) for *_, d in pairs) / 70, abs=1e-12)


# -- compare_models ------------------------------------------------------------------------------

def test_compare_models_reports_lddt(shared_data):
    path = shared_data / "pairs/adk/4akeA.pdb"
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    ref = read_model(path)
    rng = np.random.default_rng(7)
    moved = ref.with_coords(ref.coords @ random_rotation(rng).T + [5.0, 6.0, 7.0])
    result = compare_models(moved, ref)
    assert result["lddt_ca"] == pytest.approx(1.0)
    # drop a third of the residues: the lost pairs count as not preserved
    ca_res = np.unique(ref.residue_index)
    keep = np.isin(ref.residue_index, ca_res[: 2 * len(ca_res) // 3])
    part = compare_models(moved.select(keep), ref)
    y = ref.calpha().coords
    x = y.copy()
    x[np.unique(ref.calpha().residue_index, return_inverse=True)[1] >= 2 * len(ca_res) // 3] = np.nan
    assert part["lddt_ca"] == pytest.approx(lddt_ca(x, y)[0], abs=1e-12)
    assert part["lddt_ca"] < 0.9
    assert {"tm_score", "rmsd_A", "gdt_ts", "gdt_ha", "lddt_ca"} <= set(result)


def test_pairs_are_all_distinct_residues():
    # itertools sanity for the brute-force helper: every unordered pair counted twice
    y = random_chain(np.random.default_rng(8), 6, step=2.0)
    n_pairs = sum(1 for i, j in itertools.permutations(range(6), 2) if math.dist(y[i], y[j]) < 15)
    assert n_pairs == 30
