"""SMOC, SMOCf and LoQFit checked against brute-force evaluations of their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from emforge.local_fit import (
    _crossing_tempy,
    local_fit,
    loqfit,
    loqfit_mask,
    smoc,
    tempy_box_size,
    tempy_shells,
)
from emforge.maps import DensityMap
from emforge.models import read_model
from emforge.simulate import simulate_map

KEYS = ["chain_id", "res_seq", "ins_code", "res_name"]


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


@pytest.fixture(scope="module")
def gapped(crambin):
    """Crambin without residues 20-22: a numbering gap, so two contiguous segments."""
    return crambin.select(~np.isin(crambin.res_seq, [20, 21, 22]))


@pytest.fixture(scope="module")
def grid(crambin):
    # anisotropic voxels and an off-lattice origin, so frame slips cannot hide
    base = DensityMap.around_points(crambin.coords, 1.1, 7.0)
    return DensityMap(base.data, (1.1, 0.95, 1.25), base.origin + (0.31, -0.42, 0.17))


@pytest.fixture(scope="module")
def noisy_map(crambin, grid):
    rng = np.random.default_rng(11)
    sim = simulate_map(crambin, grid, 3.0, kernel="gmm")
    noise = rng.normal(scale=0.3 * sim.data.std(), size=sim.shape)
    return grid.with_data((sim.data + noise).astype(np.float32))


@pytest.fixture(scope="module")
def cubic_map(crambin):
    """1 Å voxels with room for LoQFit's 40-voxel boxes; noise so the local FSC falls below 0.5."""
    base = DensityMap.around_points(crambin.coords, 1.0, 12.0)
    rng = np.random.default_rng(12)
    sim = simulate_map(crambin, base, 3.0, kernel="gmm")
    return base.with_data((sim.data + rng.normal(scale=sim.data.std(), size=sim.shape)).astype(np.float32))


def _points(m: DensityMap, offset: float = 0.0) -> np.ndarray:
    x, y, z = m.grid_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1) + offset * m.voxel_size


def _brute_sets(model, m, radius, centre_radius=0.0, offset=0.0):
    """Per-residue sets of flat voxel indices, from a k-d tree over all grid points."""
    tree = cKDTree(_points(m, offset))
    starts = model.residue_starts()
    stops = np.append(starts[1:], len(model))
    sets = []
    for a, b in zip(starts, stops):
        s = set()
        for hit in tree.query_ball_point(model.coords[a:b], radius + 1e-9):
            s.update(hit)
        if centre_radius > 0:
            ca = [i for i in range(a, b) if model.atom_name[i] == "CA"]
            s.update(tree.query_ball_point(model.coords[ca[0]], centre_radius + 1e-9))
        sets.append(s)
    return sets


def _moc(idx, e, s):
    idx = np.fromiter(idx, int)
    x, y = e[idx].astype(np.float64), s[idx].astype(np.float64)
    return float(x @ y / math.sqrt((x @ x) * (y @ y)))


def _zscored_model_map(model, m, R):
    s = simulate_map(model, m, R, "emrefiner", sigma_A=0.225 * R, cutoff_sigma=4.0).data.astype(np.float64)
    return ((s - s.mean()) / s.std()).ravel()


@pytest.mark.parametrize("R", [3.0, 4.5])  # 4.5 Å > 3.5 Å adds the sphere of radius R around C-alpha
def test_smoc_per_residue_matches_brute_force(crambin, noisy_map, R):
    table = smoc(crambin, noisy_map, R)
    assert list(table.columns) == KEYS + ["smoc", "n_voxels"]
    assert len(table) == crambin.n_residues
    radius = 2.5 * max(0.225 * R, 1.0)
    sets = _brute_sets(crambin, noisy_map, radius, R if R > 3.5 else 0.0)
    e = noisy_map.data.ravel()
    s = _zscored_model_map(crambin, noisy_map, R)
    expected = [_moc(v, e, s) for v in sets]
    assert table["n_voxels"].tolist() == [len(v) for v in sets]
    assert np.allclose(table["smoc"], expected, atol=1e-9)


def _window_sets(sets, segments, half):
    out = []
    for i in range(len(sets)):
        u = set()
        for j in range(len(sets)):
            if segments[j] == segments[i] and abs(j - i) <= half:
                u |= sets[j]
        out.append(u)
    return out


@pytest.mark.parametrize("span", [False, True])
def test_smocf_windows_match_brute_force(gapped, noisy_map, span):
    R = 3.0
    table = smoc(gapped, noisy_map, R, fragment=True, span_breaks=span)
    assert list(table.columns) == KEYS + ["smocf", "n_voxels"]
    sets = _brute_sets(gapped, noisy_map, 2.5 * max(0.225 * R, 1.0))
    seq = gapped.residue_table()["res_seq"]
    segments = np.zeros(len(seq), int) if span else np.cumsum(np.r_[0, np.diff(seq) != 1])
    windows = _window_sets(sets, segments, 5)
    e = noisy_map.data.ravel()
    s = _zscored_model_map(gapped, noisy_map, R)
    assert table["n_voxels"].tolist() == [len(w) for w in windows]
    assert np.allclose(table["smocf"], [_moc(w, e, s) for w in windows], atol=1e-9)
    if not span:  # the residue before the gap sees nothing after it
        assert windows[seq.tolist().index(19)] == set().union(*sets[seq.tolist().index(14):seq.tolist().index(19) + 1])


def test_smoc_fragments_and_tempy_offset(crambin, noisy_map):
    R = 3.0
    radius = 2.5 * max(0.225 * R, 1.0)
    e = noisy_map.data.ravel()
    s = _zscored_model_map(crambin, noisy_map, R)
    labels = np.full(crambin.n_residues, -1)
    labels[5:12] = 0
    labels[30:40] = 7
    table = smoc(crambin, noisy_map, R, fragments=labels)
    sets = _brute_sets(crambin, noisy_map, radius)
    for lab in (0, 7):
        members = np.flatnonzero(labels == lab)
        union = set().union(*(sets[i] for i in members))
        assert np.allclose(table["smoc"].to_numpy()[members], _moc(union, e, s), atol=1e-9)
    assert table["smoc"].iloc[0] == pytest.approx(_moc(sets[0], e, s), abs=1e-9)
    # grid_offset_vox=0.5 picks voxels as TEMPy does: centres at origin + (index + 0.5) * voxel
    shifted = smoc(crambin, noisy_map, R, grid_offset_vox=0.5)
    sets = _brute_sets(crambin, noisy_map, radius, offset=0.5)
    assert np.allclose(shifted["smoc"], [_moc(v, e, s) for v in sets], atol=1e-9)


def test_scores_drop_where_the_model_moved(shared_data):
    """Real map (EMD-5778 segment) and its deposited chain; residues 450-470 moved by 3 Å."""
    folder = shared_data / "maps" / "emd_5778"
    from emforge.maps import read_map
    m = read_map(folder / "emd_5778_segment.mrc.gz")
    model = read_model(folder / "deposited_segment.pdb")
    R = 3.3
    sel = (model.res_seq >= 450) & (model.res_seq <= 470)
    coords = model.coords.copy()
    coords[sel] += (3.0, 0.0, 0.0)
    moved = model.with_coords(coords)
    seq = model.residue_table()["res_seq"]
    region = (seq >= 452) & (seq <= 468)
    tree = cKDTree(np.vstack([model.coords[sel], coords[sel]]))

    def far_from_move(dist_A):  # residues with no atom within dist_A of a moved atom
        near = np.isfinite(tree.query(model.coords, distance_upper_bound=dist_A)[0])
        return np.bincount(model.residue_index, near) == 0

    for frag, col in ((False, "smoc"), (True, "smocf")):
        drop = smoc(model, m, R, fragment=frag)[col].to_numpy() - smoc(moved, m, R, fragment=frag)[col].to_numpy()
        assert np.all(drop[region] > 0.05)
        assert np.median(drop[region]) > 0.15
        far = far_from_move(8.0) if not frag else far_from_move(8.0) & ~((seq >= 440) & (seq <= 480))
        assert far.sum() > 100 and np.all(np.abs(drop[far]) < 0.02)
    worse = loqfit(moved, m, R)["loqfit_A"].to_numpy() - loqfit(model, m, R)["loqfit_A"].to_numpy()
    assert np.all(worse[region] > 0.2)  # LoQFit is a resolution: larger is worse
    assert np.median(worse[region]) > 1.0
    far = far_from_move(30.0)  # beyond the mask (16.5 Å diameter + 10 voxel edge)
    # far residues see the move only through the model map's [-1, 1] rescaling; a few whose FSC
    # hovers near 0.5 at high frequency can flip their last crossing (LoQFit's own fragility)
    assert far.sum() > 50 and np.median(np.abs(worse[far])) < 0.03
    assert np.mean(np.abs(worse[far]) < 0.05) > 0.9


def test_loqfit_of_a_map_against_itself_saturates_at_nyquist(crambin, grid):
    R = 3.0
    cubic = DensityMap(grid.data, 1.0, grid.origin)
    sim = simulate_map(crambin, cubic, R, "emrefiner", sigma_A=0.356 * R, cutoff_sigma=4.0)
    for out in (loqfit(crambin, sim, R, sim_map=sim),  # the map itself as model map
                loqfit(crambin, sim, R)):  # noise-free map made with TEMPy's LoQFit model map
        assert np.allclose(out["loqfit_A"], 2.0)
        assert out["fsc_saturated"].all()
    assert list(out.columns) == KEYS + ["loqfit_A", "fsc_saturated", "capped"]


def _reference_local_fsc(exp, sim, centre_xyz, m, R):
    """One residue's LoQFit from the written recipe, with plain numpy (full complex FFT, loops)."""
    voxel = m.voxel_size[0]
    e = (exp - exp.min()) / (exp.max() - exp.min()) * 2 - 1
    s = (sim - sim.min()) / (sim.max() - sim.min()) * 2 - 1
    d = max(int(5 * R / voxel), 6)
    edge = max(int(round(d / 3)), 10)
    n = tempy_box_size(d + 2 * edge)
    mask = loqfit_mask(d, (n, n, n), edge)
    c = np.round(m.world_to_index(centre_xyz)).astype(int)[::-1]
    c = np.clip(c, n // 2, np.array(m.shape) - n // 2)
    sl = tuple(slice(ci - n // 2, ci + n // 2) for ci in c)
    fa = np.fft.fftn(e[sl] * mask)
    fb = np.fft.fftn(s[sl] * mask)
    q1 = np.fft.fftfreq(n)
    qz, qy, qx = np.meshgrid(q1, q1, q1, indexing="ij")
    shell = np.floor(np.sqrt(qx ** 2 + qy ** 2 + qz ** 2) * n + 1e-9).astype(int)
    half = qx >= 0  # TEMPy sums the half spectrum of the real FFT
    half &= ~((qx == -0.5) | (np.isclose(qx, 0.5)))
    half |= np.isclose(qx, -0.5) if n % 2 == 0 else False
    prev_f, prev_r, out = 1.0, 1001.0, 0.0
    for k in range(n // 2 + 1):
        sel = half & (shell == k)
        num = np.sum((fa[sel] * np.conj(fb[sel])).real)
        fsc = num / np.sqrt(np.sum(np.abs(fa[sel]) ** 2) * np.sum(np.abs(fb[sel]) ** 2))
        res = 1000.0 if k == 0 else voxel * n / k
        if fsc < 0.5 < prev_f:
            out = res + (0.5 - fsc) * (prev_r - res) / (prev_f - fsc)
        prev_f, prev_r = fsc, res
    return min(max(out, 2 * voxel), 18.0)


def test_loqfit_matches_plain_numpy_recipe(crambin, cubic_map):
    R = 3.0
    cubic = cubic_map
    assert min(cubic.shape) >= 40
    out = loqfit(crambin, cubic, R)
    sim = simulate_map(crambin, cubic, R, "emrefiner", sigma_A=0.356 * R, cutoff_sigma=4.0).data
    ca = crambin.calpha()
    assert out["loqfit_A"].nunique() > 10
    for r in (0, 7, 22, 40):
        ref = _reference_local_fsc(cubic.data.astype(np.float64), sim.astype(np.float64), ca.coords[r], cubic, R)
        assert out["loqfit_A"].iloc[r] == pytest.approx(ref, abs=1e-3)


def test_loqfit_half_maps_and_contract(crambin, cubic_map):
    R = 3.0
    cubic = cubic_map
    rng = np.random.default_rng(9)
    halves = [cubic.with_data(cubic.data + rng.normal(scale=cubic.data.std(), size=cubic.shape).astype(np.float32))
              for _ in range(2)]
    out = loqfit(crambin, cubic, R, half_maps=halves)
    assert list(out.columns) == KEYS + ["loqfit_A", "fsc_saturated", "capped", "local_resolution_A",
                                        "loqfit_normalised"]
    assert np.allclose(out["loqfit_normalised"], out["loqfit_A"] / out["local_resolution_A"])
    assert np.all(out["local_resolution_A"] >= 2.0)
    # a residue without C-alpha gets no LoQFit, but keeps its row
    no_ca = crambin.select(~((crambin.res_seq == 5) & (crambin.atom_name == "CA")))
    t = loqfit(no_ca, cubic, R)
    assert len(t) == crambin.n_residues
    assert np.isnan(t["loqfit_A"].iloc[4]) and np.isfinite(t["loqfit_A"].drop(index=4)).all()
    both = local_fit(crambin, cubic, R)
    assert list(both.columns[:7]) == KEYS + ["smoc", "smocf", "loqfit_A"]


def test_loqfit_map_smaller_than_box_is_padded(crambin):
    R = 3.0
    small = DensityMap.around_points(crambin.coords, 1.0, 2.0)  # ~35 voxels, box is 40
    rng = np.random.default_rng(13)
    sim = simulate_map(crambin, small, R, "gmm")
    noisy = small.with_data((sim.data + rng.normal(scale=sim.data.std(), size=sim.shape)).astype(np.float32))
    out = loqfit(crambin, noisy, R)
    assert np.isfinite(out["loqfit_A"]).all()
    assert out["loqfit_A"].nunique() > 5  # each residue gets its own mask, not one whole-map value


def test_tempy_helpers():
    assert [tempy_box_size(d) for d in (6, 7, 11, 26, 32, 33, 41, 60)] == [6, 10, 12, 40, 40, 40, 48, 80]
    mask = loqfit_mask(16, (40, 40, 40), 10)
    assert mask[20, 20, 20] == 1.0 and mask[0, 0, 0] == 0.0
    assert np.all(np.diff(mask[20, 20, 20:]) <= 0)  # falls monotonically from the centre
    labels, qbins = tempy_shells((40, 40, 40))
    assert qbins[-1] == 0.5 and len(qbins) == 21
    fsc = np.array([[0.9, 0.8, 0.4, 0.6, 0.3], [0.9, 0.9, 0.9, 0.9, 0.9]])
    res = np.array([1000.0, 10.0, 5.0, 10 / 3, 2.5])
    got = _crossing_tempy(fsc, res, 0.5, True)
    # last crossing, between 10/3 Å (0.6) and 2.5 Å (0.3), interpolated in Å
    assert got[0] == pytest.approx(2.5 + (0.5 - 0.3) * (10 / 3 - 2.5) / 0.3)
    assert got[1] == 0.0


def _two_chains(model):
    """The model twice, as chains A and B (B moved by 25 Å along x), one AtomModel."""
    import dataclasses

    from emforge.models import AtomModel

    b = dataclasses.replace(model, coords=model.coords + (25.0, 0.0, 0.0),
                            chain_id=np.full(len(model), "B"),
                            residue_index=model.residue_index + model.residue_index.max() + 1)
    fields = [f.name for f in dataclasses.fields(AtomModel)]
    return AtomModel(**{k: np.concatenate([getattr(model, k), getattr(b, k)]) for k in fields})


def test_smocf_windows_stop_at_chain_ends(crambin):
    R = 3.0
    both = _two_chains(crambin)
    grid = DensityMap.around_points(both.coords, 1.2, 6.0)
    rng = np.random.default_rng(21)
    sim = simulate_map(both, grid, R, kernel="gmm")
    m = grid.with_data((sim.data + rng.normal(scale=0.3 * sim.data.std(), size=grid.shape)).astype(np.float32))
    for span in (False, True):
        table = smoc(both, m, R, fragment=True, span_breaks=span)
        sets = _brute_sets(both, m, 2.5 * max(0.225 * R, 1.0))
        chain = both.residue_table()["chain_id"]
        windows = _window_sets(sets, (chain == "B").astype(int), 5)
        assert np.allclose(table["smocf"], [_moc(w, m.data.ravel(), _zscored_model_map(both, m, R)) for w in windows],
                           atol=1e-9)
    assert table["chain_id"].tolist() == list(chain)
