"""EM-Refiner energy: term definitions on hand-built cases and incremental = total."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from emforge.models import read_model
from emforge.refine.emrefiner.energy import (
    TERMS,
    EMRefinerEnergy,
    HBondParams,
    TorsionTable,
    _lj_pair,
)
from emforge.simulate import simulate_map

RES_A = 6.0


@pytest.fixture(scope="module")
def ubq(shared_data):
    return read_model(shared_data / "chains" / "1ubq_A.pdb.gz").protein().without_hydrogens()


@pytest.fixture(scope="module")
def params():
    """Hand-set H-bond features and a smooth analytic torsion table (tests must not need the
    shipped tables): a Gaussian well at the alpha and beta regions."""
    hb = HBondParams(mean=np.array([[1.95, 150.0, 160.0, 160.0], [1.95, 155.0, 165.0, 0.0]]),
                     sd=np.array([[0.2, 12.0, 12.0, 25.0], [0.2, 15.0, 12.0, 1.0]]))
    centres = (np.arange(36) + 0.5) * 10.0 - 180.0
    phi, psi = np.meshgrid(centres, centres, indexing="ij")

    def well(p0, s0):
        dp = (phi - p0 + 180) % 360 - 180
        ds = (psi - s0 + 180) % 360 - 180
        return np.exp(-(dp ** 2 + ds ** 2) / (2 * 30.0 ** 2))

    p = 0.02 + well(-63, -43) + well(-120, 130)
    table = np.broadcast_to(-np.log(p / p.sum()), (20, 3, 36, 36)).copy()
    return hb, TorsionTable(values=table)


@pytest.fixture(scope="module")
def energy_setup(ubq, params):
    hb, tor = params
    target = simulate_map(ubq, None, RES_A, voxel_size_A=2.0, margin_A=8.0)
    n_res = ubq.n_residues
    ss = "".join("H" if 22 <= i <= 34 else ("E" if i < 7 else "C") for i in range(n_res))
    return target, ss, hb, tor


def make_energy(ubq, energy_setup, start=None):
    target, ss, hb, tor = energy_setup
    return EMRefinerEnergy.from_model(ubq, target, RES_A, ss, start=start, hbond=hb, torsion=tor)


def test_lj_pair_minimum_at_sum_of_radii():
    rr, eps = 3.8, 0.15
    d = np.linspace(3.0, 6.0, 3001)
    e = np.array([_lj_pair(x * x, rr, eps) for x in d])
    assert d[np.argmin(e)] == pytest.approx(rr, abs=2e-3)
    assert e.min() == pytest.approx(-eps, rel=1e-6)
    # the wall is capped at 0.6 r: finite and equal below it
    assert _lj_pair(0.0, rr, eps) == pytest.approx(_lj_pair((0.6 * rr) ** 2, rr, eps))
    assert _lj_pair(0.0, rr, eps) == pytest.approx(eps * (0.6 ** -12 - 2 * 0.6 ** -6))


def test_native_model_scores_its_own_map(ubq, energy_setup):
    e = make_energy(ubq, energy_setup)
    t = e.terms()
    assert t["cc"] == pytest.approx(0.0, abs=1e-9)  # model = map source, same kernel
    assert t["restraint"] == 0.0  # start = model
    assert t["bond"] > 0 and t["lj"] < 0  # real structure: bonds near ideal, net attractive vdW
    assert t["hb"] < -10  # ubiquitin has dozens of backbone hydrogen bonds


def test_moving_a_segment_out_of_density_costs_cc_and_restraint(ubq, energy_setup):
    e = make_energy(ubq, energy_setup)
    seg = np.flatnonzero(np.isin(e.residue, np.arange(40, 46)))
    dE, d = e.delta(seg, e.coords[seg] + np.array([3.0, 0.0, 0.0]))
    terms = dict(zip(TERMS, d))
    assert terms["cc"] > 0 and terms["restraint"] > 0 and terms["bond"] > 0
    assert dE > 0


def _segment_rotation(e, rng, first, last):
    atoms = np.flatnonzero((e.residue >= first) & (e.residue <= last))
    pivot = e.coords[e.bb[first, 1]]
    rot = Rotation.from_rotvec(rng.normal(size=3) * math.radians(8.0)).as_matrix()
    return atoms, (e.coords[atoms] - pivot) @ rot.T + pivot


def test_incremental_equals_total(ubq, energy_setup):
    """Random moves (segment rotations, translations, single atoms), some accepted: after each,
    the current total equals the starting total plus the accepted increments, term by term."""
    rng = np.random.default_rng(7)
    start = ubq
    e = make_energy(ubq, energy_setup, start=start)
    base = np.array([e.terms(e.coords.copy())[t] for t in TERMS])
    acc = base.copy()
    n_res = len(e.bb)
    for step in range(40):
        kind = step % 3
        if kind == 0:
            first = int(rng.integers(0, n_res - 6))
            atoms, new = _segment_rotation(e, rng, first, first + int(rng.integers(2, 6)))
        elif kind == 1:
            first = int(rng.integers(0, n_res - 4))
            atoms = np.flatnonzero((e.residue >= first) & (e.residue <= first + 3))
            new = e.coords[atoms] + rng.normal(scale=0.7, size=3)
        else:
            atoms = rng.choice(len(e.coords), size=3, replace=False)
            new = e.coords[atoms] + rng.normal(scale=0.5, size=(3, 3))
        dE, d = e.delta(atoms, new)
        assert dE == pytest.approx(float(e.weights.as_array() @ d))
        if rng.random() < 0.6:
            e.accept()
            acc += d
        else:
            e.reject()
    fresh = np.array([e.terms(e.coords.copy())[t] for t in TERMS])
    np.testing.assert_allclose(acc, fresh, rtol=1e-7, atol=1e-8)
    assert not np.allclose(fresh, base)  # the moves changed every term
    assert np.all(np.abs(fresh - base) > 1e-6)
    # the incrementally maintained model map equals one simulated from scratch
    e2 = make_energy(ubq.with_coords(e.coords), energy_setup, start=start)
    assert e.cc() == pytest.approx(e2.cc(), abs=1e-9)


def test_accept_without_delta_fails(ubq, energy_setup):
    e = make_energy(ubq, energy_setup)
    with pytest.raises(RuntimeError):
        e.accept()


# -- the shipped knowledge-based tables -------------------------------------------------------------

def _helix_energy(phi, psi, ss, target):
    from backbone_builder import build_backbone, make_model

    model = make_model({"A": build_backbone(np.asarray(phi, float), np.asarray(psi, float))})
    return EMRefinerEnergy.from_model(model, target, RES_A, ss)


def test_ideal_helix_hbonds_beat_a_broken_helix(ubq):
    """Shipped H-bond statistics: an ideal alpha helix has a lower E_hb than the same helix with
    its middle residue's psi turned by 70 degrees (which breaks the i -> i+4 bonds across it)."""
    n = 16
    target = simulate_map(ubq, None, RES_A, voxel_size_A=2.0)
    phi, psi = np.full(n, -57.0), np.full(n, -47.0)
    ideal = _helix_energy(phi, psi, "H" * n, target).terms()
    psi_broken = psi.copy()
    psi_broken[n // 2] += 70.0
    broken = _helix_energy(phi, psi_broken, "H" * n, target).terms()
    assert ideal["hb"] < -0.35 * (n - 4)  # the n - 4 i -> i+4 bonds all formed
    assert broken["hb"] > ideal["hb"] + 1.0


def test_torsion_table_prefers_populated_regions(ubq):
    """Shipped torsion table: helical residues in the alpha region score lower than in the
    left-handed region, strand residues in the beta region lower than in the alpha region."""
    target = simulate_map(ubq, None, RES_A, voxel_size_A=2.0)
    n = 8

    def tor(phi, psi, ss):
        return _helix_energy(np.full(n, phi), np.full(n, psi), ss * n, target).terms()["torsion"]

    assert tor(-60.0, -45.0, "H") < tor(60.0, 45.0, "H") - 2.0 * (n - 2)
    assert tor(-120.0, 130.0, "E") < tor(-60.0, -45.0, "E") - 0.5 * (n - 2)


def _hbond_sum_by_hand(e, X):
    """Eq. 6 (Gaussian-well reading) over all acceptor/donor pairs, in plain numpy from the public
    feature function: the reference for the numba kernel."""
    from emforge.refine.emrefiner.energy import HB_CUTOFF_A, bisector_amide_hydrogens, hbond_features

    bb = e.bb
    n_res = len(bb)
    n_xyz, ca_xyz, c_xyz, o_xyz = (X[np.maximum(bb[:, k], 0)] for k in range(4))
    h_xyz = bisector_amide_hydrogens(n_xyz, ca_xyz, np.roll(c_xyz, 1, axis=0))
    acc_ok, don_ok = e.hb_roles
    i, j = np.meshgrid(np.arange(n_res), np.arange(n_res), indexing="ij")
    keep = acc_ok[i] & don_ok[j] & ((np.abs(i - j) >= 3) | (e.chain[i] != e.chain[j]))
    i, j = i[keep], j[keep]
    near = np.linalg.norm(o_xyz[i] - h_xyz[j], axis=1) < HB_CUTOFF_A
    i, j = i[near], j[near]
    f = hbond_features(c_xyz[i], o_xyz[i], h_xyz[j], n_xyz[j])
    helical = (e.ss[i] == 0) & (e.ss[j] == 0)
    row = np.where(helical, 0, 1)
    mean, sd = e.hb.mean[row], e.hb.sd[row]
    q = np.sum((f[:, :3] - mean[:, :3]) ** 2 / (2 * sd[:, :3] ** 2), axis=1)
    dt = (f[:, 3] - mean[:, 3] + 180.0) % 360.0 - 180.0
    q += np.where(helical, dt ** 2 / (2 * sd[:, 3] ** 2), 0.0)
    return float(-np.sum(np.exp(-q)))


def test_hbond_kernel_matches_a_numpy_evaluation(ubq, energy_setup):
    e = make_energy(ubq, energy_setup)
    rng = np.random.default_rng(1)
    everything = np.arange(len(e.bb))
    for X in (e.coords.copy(), e.coords + rng.normal(scale=0.3, size=e.coords.shape)):
        assert e._hb_partial(X, everything) == pytest.approx(_hbond_sum_by_hand(e, X), rel=1e-9)
