"""Q-score (emforge.qscore) against independent references.

* Analytic: a map that is exactly the reference Gaussian (sigma 0.6 Å) around isolated
  atoms gives Q ~ 1; a locally flat map gives Q = 0; white noise gives Q ~ 0 on average.
* Brute force: a plain-Python evaluation of MapQ's definition (spiral points, 0.9 r
  exclusion, retries with 2 more points, all shells pooled, Pearson "about the mean"),
  with its own trilinear interpolation, on a crowded cluster that exercises the retries
  and the empty shells.
* Bookkeeping: per-residue means, hydrogens, frame (origin) invariance, seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.models import AtomModel
from emforge.qscore import qscore, spiral_directions


def make_model(coords, elements=None, atoms_per_residue=1, names=None) -> AtomModel:
    """A synthetic AtomModel; ``atoms_per_residue`` consecutive atoms share a residue."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    n = len(coords)
    elements = np.array(["C"] * n if elements is None else elements, dtype="U2")
    res = np.arange(n) // atoms_per_residue
    names = np.array(elements if names is None else names, dtype="U4")
    return AtomModel(
        coords=coords, element=elements, atom_name=names, res_name=np.full(n, "ALA", dtype="U5"),
        res_seq=res + 1, ins_code=np.full(n, "", dtype="U1"), chain_id=np.full(n, "A", dtype="U4"),
        b_factor=np.full(n, 20.0), occupancy=np.ones(n), is_het=np.zeros(n, bool), residue_index=res)


def gaussian_map(centres, sigma, voxel, margin, shape_pad=0):
    """Sum of unit Gaussians exp(-r^2 / 2 sigma^2) at ``centres`` on a grid, written with numpy."""
    lo = centres.min(axis=0) - margin
    n = np.ceil((centres.max(axis=0) + margin - lo) / voxel).astype(int) + 1 + shape_pad
    gx, gy, gz = (lo[a] + voxel * np.arange(n[a]) for a in range(3))
    data = np.zeros((n[2], n[1], n[0]))
    for c in centres:
        ex = np.exp(-(gx - c[0]) ** 2 / (2 * sigma ** 2))
        ey = np.exp(-(gy - c[1]) ** 2 / (2 * sigma ** 2))
        ez = np.exp(-(gz - c[2]) ** 2 / (2 * sigma ** 2))
        data += ez[:, None, None] * ey[None, :, None] * ex[None, None, :]
    return DensityMap(data.astype(np.float32), voxel, lo)


def isolated_atoms(rng, n_side=3, spacing=8.0):
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    return g + rng.uniform(-0.5, 0.5, g.shape)   # off the voxel grid


# -- brute force reference ----------------------------------------------------------------------

def brute_spiral(n):
    """MapQ's SpherePts written as a loop, independently of emforge.qscore.spiral_directions."""
    pts, theta = [], 0.0
    for k in range(1, n + 1):
        h = -1.0 + 2.0 * (k - 1) / (n - 1)
        phi = math.acos(h)
        if k == 1 or k == n:
            theta = 0.0
        else:
            theta = (theta + 3.6 / math.sqrt(n * (1.0 - h * h))) % (2 * math.pi)
        pts.append((math.sin(phi) * math.cos(theta), math.sin(phi) * math.sin(theta), math.cos(phi)))
    return np.array(pts)


def brute_trilinear(m: DensityMap, p):
    """Trilinear interpolation by hand (0 outside the grid)."""
    f = (np.asarray(p) - m.origin) / m.voxel_size      # (i, j, k) fractional
    i0 = np.floor(f).astype(int)
    t = f - i0
    val = 0.0
    nx, ny, nz = m.shape_xyz
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                i, j, k = i0[0] + di, i0[1] + dj, i0[2] + dk
                w = (t[0] if di else 1 - t[0]) * (t[1] if dj else 1 - t[1]) * (t[2] if dk else 1 - t[2])
                if w == 0:
                    continue
                if not (0 <= i < nx and 0 <= j < ny and 0 <= k < nz):
                    return 0.0                          # map_coordinates' constant mode: outside -> cval
                val += w * float(m.data[k, j, i])
    return val


def brute_q(xyz, a, m: DensityMap, sigma=0.6, n_pts=8, stats=None, rule="mapq"):
    """Q of atom ``a`` by MapQ's definition, plain Python. ``stats`` collects retry/empty counts.

    ``rule="cctbx"``: cctbx's probes instead (one spiral, points whose nearest atom is ``a``).
    """
    d = m.data.astype(np.float64)
    max_d = min(d.mean() + 10 * d.std(), d.max())
    min_d = max(d.mean() - d.std(), d.min())
    A, B = max_d - min_d, min_d
    u = [brute_trilinear(m, xyz[a])] * n_pts
    v = [A + B] * n_pts
    for s in range(1, 21):
        r = 0.1 * s
        chosen = []
        if rule == "cctbx":
            for dvec in brute_spiral(n_pts):
                p = xyz[a] + r * dvec
                d = np.linalg.norm(xyz - p, axis=1)
                if np.argmin(d) == a:
                    chosen.append(p)
        for i in range(50 if rule == "mapq" else 0):
            kept = []
            for dvec in brute_spiral(n_pts + 2 * i):
                p = xyz[a] + r * dvec
                if np.all(np.linalg.norm(xyz - p, axis=1) >= 0.9 * r):
                    kept.append(p)
            if len(kept) >= n_pts:
                chosen = kept
                if stats is not None and i > 0:
                    stats["retries"] += 1
                break
        if stats is not None and not chosen:
            stats["empty"] += 1
        for p in chosen:
            u.append(brute_trilinear(m, p))
            v.append(A * math.exp(-0.5 * (r / sigma) ** 2) + B)
    u, v = np.array(u), np.array(v)
    du, dv = u - u.mean(), v - v.mean()
    return float(du @ dv / math.sqrt((du @ du) * (dv @ dv)))


def crowded_cluster(rng, n=60, min_dist=1.25, box=7.0):
    pts = []
    while len(pts) < n:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm(p - q) >= min_dist for q in pts):
            pts.append(p)
    return np.array(pts)


# -- tests --------------------------------------------------------------------------------------

def test_spiral_matches_loop_form_and_is_on_the_unit_sphere():
    for n in (2, 8, 10, 31, 106):
        d = spiral_directions(n)
        assert d.shape == (n, 3)
        np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
        np.testing.assert_allclose(d, brute_spiral(n), atol=1e-12)


def test_reference_gaussian_map_gives_q_near_one():
    rng = np.random.default_rng(1)
    xyz = isolated_atoms(rng)
    m = gaussian_map(xyz, 0.6, 0.2, 4.0)
    model = make_model(xyz, atoms_per_residue=3)
    per_atom, per_res, summary = qscore(model, m)
    assert per_atom.shape == (len(xyz),)
    assert np.all(per_atom > 0.99), per_atom.min()
    assert summary["qscore_mean"] == pytest.approx(1.0, abs=0.01)
    assert summary["n_atoms_scored"] == len(xyz) and summary["n_shells_empty"] == 0
    # a wider Gaussian in the map reads lower, and monotonically so
    q_wide = [qscore(model, gaussian_map(xyz, s, 0.2, 5.0))[2]["qscore_mean"] for s in (0.9, 1.3)]
    assert 0.99 > q_wide[0] > q_wide[1]


def test_locally_flat_map_gives_zero_and_noise_about_zero():
    rng = np.random.default_rng(2)
    xyz = isolated_atoms(rng, n_side=4, spacing=6.0)
    model = make_model(xyz)
    # flat around every atom; variance only in a far corner (so the map itself is not flat)
    data = np.ones((90, 90, 90), np.float32)
    data[:3, :3, :3] = 5.0
    flat = DensityMap(data, 0.5, xyz.min(axis=0) - 10.0)
    q_flat = qscore(model, flat)[0]
    np.testing.assert_array_equal(q_flat, 0.0)
    noise = DensityMap(rng.normal(size=(90, 90, 90)).astype(np.float32), 0.5, xyz.min(axis=0) - 10.0)
    q_noise = qscore(model, noise)[0]
    assert abs(np.mean(q_noise)) < 0.06, np.mean(q_noise)
    assert np.all(np.abs(q_noise) < 0.9)


def test_wholly_flat_map_is_rejected():
    model = make_model(np.zeros((1, 3)))
    with pytest.raises(InputError, match="zero variance"):
        qscore(model, DensityMap(np.ones((10, 10, 10), np.float32), 1.0, -5.0))


def test_matches_brute_force_definition_on_a_crowded_cluster():
    rng = np.random.default_rng(3)
    xyz = crowded_cluster(rng)
    # a smooth, structured map: Gaussians at the atoms plus a gradient and noise
    m = gaussian_map(xyz, 0.9, 0.35, 3.0)
    grad = np.linspace(0, 0.3, m.shape[2])[None, None, :]
    m = m.with_data(m.data + grad.astype(np.float32)
                    + 0.05 * rng.normal(size=m.shape).astype(np.float32))
    model = make_model(xyz, atoms_per_residue=4)
    per_atom, _, summary = qscore(model, m)
    stats = {"retries": 0, "empty": 0}
    check = list(range(0, len(xyz), 4))
    expected = np.array([brute_q(xyz, a, m, stats=stats) for a in check])
    np.testing.assert_allclose(per_atom[check], expected, atol=1e-9)
    # the cluster really exercises MapQ's fallback paths
    assert stats["retries"] > 0 and stats["empty"] > 0
    assert summary["n_shells_empty"] > 0
    # cctbx's probe rule
    per_atom_c, _, summary_c = qscore(model, m, probe_rule="cctbx")
    expected_c = np.array([brute_q(xyz, a, m, rule="cctbx") for a in check])
    np.testing.assert_allclose(per_atom_c[check], expected_c, atol=1e-9)
    assert summary_c["probe_rule"] == "cctbx"
    assert not np.allclose(per_atom_c, per_atom)
    with pytest.raises(InputError, match="probe rule"):
        qscore(model, m, probe_rule="chimera")


def test_trilinear_matches_density_map_interpolate():
    from emforge.qscore import interpolate_trilinear
    rng = np.random.default_rng(11)
    m = DensityMap(rng.normal(size=(7, 9, 11)).astype(np.float32), [1.0, 1.3, 0.7], [2.0, -3.0, 1.0])
    pts = m.origin + rng.uniform(-2.0, 14.0, size=(5000, 3))
    corners = m.index_to_world(np.array([[0, 0, 0], [10, 8, 6], [10, 0, 6], [0, 8, 0]]))
    pts = np.concatenate([pts, corners])
    np.testing.assert_allclose(interpolate_trilinear(m, pts), m.interpolate(pts, order=1), atol=1e-6)


def test_per_residue_means_hydrogens_frame_and_seed():
    rng = np.random.default_rng(4)
    xyz = crowded_cluster(rng, n=24, min_dist=1.4, box=6.0)
    m = gaussian_map(xyz, 0.8, 0.3, 3.0)
    names = ["N", "CA", "C", "O", "CB", "CG"] * 4
    model = make_model(xyz, atoms_per_residue=6, names=names)
    per_atom, per_res, summary = qscore(model, m)
    assert list(per_res.columns) == ["chain_id", "res_seq", "ins_code", "res_name", "n_atoms", "qscore",
                                     "qscore_backbone", "qscore_sidechain"]
    res = np.arange(24) // 6
    bb = np.isin(names, ["N", "CA", "C", "O"])
    for r in range(4):
        assert per_res["qscore"][r] == pytest.approx(per_atom[res == r].mean(), abs=1e-12)
        assert per_res["qscore_backbone"][r] == pytest.approx(per_atom[(res == r) & bb].mean(), abs=1e-12)
        assert per_res["qscore_sidechain"][r] == pytest.approx(per_atom[(res == r) & ~bb].mean(), abs=1e-12)
    assert summary["qscore_mean"] == pytest.approx(per_atom.mean(), abs=1e-12)
    assert summary["qscore_residue_mean"] == pytest.approx(per_res["qscore"].mean(), abs=1e-12)

    # hydrogens: NaN themselves, and they change nobody else's points
    h = xyz[:5] + np.array([0.0, 0.0, 1.0])
    with_h = make_model(np.concatenate([xyz, h]), ["C"] * 24 + ["H"] * 5, atoms_per_residue=6,
                        names=names + ["H"] * 5)
    q_h = qscore(with_h, m)[0]
    assert np.all(np.isnan(q_h[24:]))
    np.testing.assert_allclose(q_h[:24], per_atom, atol=1e-12)

    # the same map and model shifted together: same scores
    shift = np.array([13.7, -41.2, 5.05])
    moved = qscore(model.with_coords(xyz + shift), DensityMap(m.data, m.voxel_size, m.origin + shift))[0]
    np.testing.assert_allclose(moved, per_atom, atol=1e-6)

    # deterministic, whatever the seed
    np.testing.assert_array_equal(qscore(model, m, seed=123)[0], per_atom)


def test_atoms_outside_the_map_get_nan():
    rng = np.random.default_rng(5)
    xyz = isolated_atoms(rng, n_side=2, spacing=6.0)
    m = gaussian_map(xyz, 0.6, 0.25, 3.0)
    far = np.concatenate([xyz, [[500.0, 500.0, 500.0]]])
    per_atom, _, summary = qscore(make_model(far), m)
    assert np.isnan(per_atom[-1]) and np.all(np.isfinite(per_atom[:-1]))
    assert summary["n_atoms_outside_map"] == 1
    with pytest.raises(InputError, match="inside the map"):
        qscore(make_model([[500.0, 500.0, 500.0]]), m)
