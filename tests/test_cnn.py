"""The C-alpha CNN library (emforge.cnn): network, features, training data, training, inference, peaks, CLI.

Tiny networks (4 channels, 1-2 blocks) stand in for the paper's size wherever the size does not
matter; every random choice is seeded. References are independent of the code under test:
analytic receptive fields, brute-force label and greedy-picking loops, known Gaussian peak centres.
"""

from __future__ import annotations

import itertools
import json
import logging
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from emforge.cli import main
from emforge.cnn.data import LABEL_RADIUS_A, chain_table, make_example, simulate_example
from emforge.cnn.features import VOXEL_SIZE_A, input_channels, resample
from emforge.cnn.infer import _axis_windows, predict_grid, predict_probability
from emforge.cnn.network import CAlphaNet, count_parameters, receptive_field_vox
from emforge.cnn.peaks import peaks_to_model, pick_peaks
from emforge.cnn.sequence import sequence_length
from emforge.cnn.train import checkpoint_paths, load_weights, save_weights, sha256_file, sidecar_path, train
from emforge.errors import InputError
from emforge.maps import DensityMap, read_map, write_map
from emforge.models import read_model, write_model
from emforge.simulate import simulate_map

TINY = {"channels": 4, "n_blocks": 2}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small tensors: one thread is fastest and leaves the other cores alone; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz").protein().without_hydrogens()


def tiny_net(seed: int = 0, **kwargs) -> CAlphaNet:
    """A tiny network with random weights and random (non-trivial) running statistics, in eval mode."""
    torch.manual_seed(seed)
    net = CAlphaNet(**{**TINY, **kwargs})
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm3d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=g))
    return net.eval()


def gaussian_blobs(shape_zyx, voxel, origin, centres, amplitudes, sigma_A):
    """Sum of isotropic Gaussians evaluated at the voxel centres (independent of emforge.simulate)."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_zyx), indexing="ij")
    voxel = np.broadcast_to(np.asarray(voxel, float), (3,))
    x, y, z = (origin[a] + idx * voxel[a] for a, idx in enumerate((i, j, k)))
    out = np.zeros(shape_zyx)
    for c, a in zip(centres, amplitudes):
        out += a * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) / (2 * sigma_A ** 2))
    return out


# -- network ------------------------------------------------------------------------------------

def test_network_shapes_softmax_and_size():
    for in_ch in (1, 2):
        net = tiny_net(in_channels=in_ch)
        x = torch.randn(2, in_ch, 9, 10, 11)
        with torch.no_grad():
            logits = net(x)
        assert logits.shape == (2, 2, 9, 10, 11)
        p = torch.softmax(logits, dim=1)
        assert torch.allclose(p.sum(dim=1), torch.ones(2, 9, 10, 11), atol=1e-6)
        with torch.no_grad():
            prob = net.probability(x)
        assert prob.shape == (2, 9, 10, 11) and torch.allclose(prob, p[:, 1])
        assert float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0
    full = CAlphaNet()
    assert full.architecture == {"in_channels": 2, "channels": 32, "n_blocks": 10, "dropout": 0.2}
    assert count_parameters(full) < 5_000_000  # < 20 MB of float32 weights
    assert full.receptive_field_vox == 43 and full.halo_vox == 22
    with pytest.raises(ValueError):
        CAlphaNet(in_channels=3)


def test_folded_network_gives_the_eval_network_logits():
    net = tiny_net(seed=3)  # random running statistics and affine norms: a non-trivial fold
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm3d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    x = torch.randn(2, 2, 12, 11, 10)
    net.train()  # the fold uses the running statistics whatever the flag; the net is left as it was
    folded = net.folded()
    assert net.training
    with torch.no_grad():
        expected = net.eval()(x)
        got = folded(x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(folded.probability(x), torch.softmax(expected, dim=1)[:, 1], atol=1e-6)
    assert folded.halo_vox == net.halo_vox


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_receptive_field_matches_perturbation(n_blocks):
    """Perturbing one input voxel changes exactly the outputs within the analytic receptive field."""
    net = tiny_net(n_blocks=n_blocks)
    rf = receptive_field_vox(n_blocks)
    assert rf == 1 + 2 * (1 + 2 * n_blocks) == net.receptive_field_vox
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(1, 2, 25, 25, 25, generator=g)
    x1 = x0.clone()
    x1[0, :, 12, 12, 12] += 10.0
    with torch.no_grad():
        changed = (net(x1) - net(x0)).abs().amax(dim=1)[0].numpy() > 0
    idx = np.argwhere(changed)
    r = (rf - 1) // 2
    assert idx.min(axis=0).tolist() == [12 - r] * 3 and idx.max(axis=0).tolist() == [12 + r] * 3


# -- features -----------------------------------------------------------------------------------

def test_resample_keeps_the_world_frame():
    voxel = np.array([0.7, 0.9, 1.2])
    origin = np.array([-3.1, 2.2, 5.0])
    shape = (30, 40, 50)
    centre = np.array([12.37, 17.81, 21.6])
    m = DensityMap(gaussian_blobs(shape, voxel, origin, [centre], [1.0], 2.0), voxel, origin)
    r = resample(m, VOXEL_SIZE_A)
    assert np.allclose(r.voxel_size, VOXEL_SIZE_A) and np.allclose(r.origin, origin)
    assert np.all(r.extent_A[1] >= m.extent_A[1] - 1e-9)  # the new grid covers the old one
    w = r.data.astype(np.float64) / r.data.sum()
    gx, gy, gz = r.grid_coordinates()
    got = np.array([(w.sum((0, 1)) * gx).sum(), (w.sum((0, 2)) * gy).sum(), (w.sum((1, 2)) * gz).sum()])
    assert np.all(np.abs(got - centre) < 0.1)


def test_input_channels_normalisation_and_local_std():
    rng = np.random.default_rng(0)
    d = ndimage.gaussian_filter(rng.standard_normal((20, 21, 22)), 1.5)
    ch = input_channels(d)
    assert ch.shape == (2, 20, 21, 22) and ch.dtype == np.float32
    # invariant to the map's offset and scale
    assert np.allclose(input_channels(3.7 * d - 12.0), ch, atol=1e-5)
    # density: median 0, 99th percentile 1
    assert abs(np.median(ch[0])) < 1e-6 and np.quantile(ch[0], 0.99) == pytest.approx(1.0, abs=1e-5)
    # local std at an interior voxel: brute force over its 3x3x3 window, then the channel's scaling
    x = (d - np.median(d)) / (np.quantile(d, 0.99) - np.median(d))
    raw = np.array([x[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2].std() for k, j, i in [(5, 6, 7), (10, 10, 10)]])
    ratio = ch[1][[5, 10], [6, 10], [7, 10]] / raw
    assert ratio[0] == pytest.approx(ratio[1], rel=1e-4)
    assert np.quantile(ch[1], 0.99) == pytest.approx(1.0, abs=1e-5)
    assert input_channels(d, in_channels=1).shape == (1, 20, 21, 22)
    with pytest.raises(InputError):
        input_channels(np.ones((5, 5, 5)))


# -- training data ------------------------------------------------------------------------------

def test_example_labels_match_calpha_positions(crambin):
    ex = make_example(crambin, 4.0, np.random.default_rng(7), crop_vox=32)
    assert ex.channels.shape == (2, 32, 32, 32) and ex.labels.shape == (32, 32, 32)
    assert ex.channels.dtype == np.float32 and np.all(np.isfinite(ex.channels))
    assert len(ex.ca_xyz_A) == crambin.calpha().n_atoms
    # brute force: voxel centres of the crop against every C-alpha
    k, j, i = np.meshgrid(*(np.arange(32),) * 3, indexing="ij")
    centres = ex.origin_A + np.stack([i, j, k], axis=-1).reshape(-1, 3) * VOXEL_SIZE_A
    dist, _ = cKDTree(ex.ca_xyz_A).query(centres)
    expected = (dist <= LABEL_RADIUS_A).reshape(32, 32, 32)
    assert np.array_equal(ex.labels.astype(bool), expected)
    # every C-alpha inside the crop sits on a positive voxel (its nearest voxel centre)
    nearest = np.round((ex.ca_xyz_A - ex.origin_A) / VOXEL_SIZE_A).astype(int)
    inside = np.all((nearest >= 0) & (nearest < 32), axis=1)
    assert inside.sum() >= 10
    assert np.all(ex.labels[nearest[inside, 2], nearest[inside, 1], nearest[inside, 0]] == 1)
    # positives per C-alpha near the analytic sphere volume / voxel volume (2.7)
    per_ca = ex.labels.sum() / inside.sum()
    assert 1.5 < per_ca < 4.5
    # the crop holds protein: density channel well above the solvent level somewhere
    assert ex.channels[0].max() > 0.5


def test_examples_are_deterministic(crambin):
    a = simulate_example(crambin, 6.0, np.random.default_rng(11), crop_vox=24)
    b = simulate_example(crambin, 6.0, np.random.default_rng(11), crop_vox=24)
    c = simulate_example(crambin, 6.0, np.random.default_rng(12), crop_vox=24)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[1].dtype == np.uint8
    assert not np.array_equal(a[0], c[0])


def test_chain_table_splits_by_cluster(shared_data):
    tr, va = chain_table("train"), chain_table("validation")
    assert len(tr) > 0 and len(va) > 0
    assert not set(tr["clust40"]) & set(va["clust40"])
    assert not set(tr["file"]) & set(va["file"])
    with open(shared_data / "chains" / "MANIFEST.tsv") as fh:
        n_rows = sum(1 for _ in fh) - 1
    assert len(tr) + len(va) == n_rows
    assert all((shared_data / "chains" / f).is_file() for f in tr["file"][:5])


# -- inference ----------------------------------------------------------------------------------

def test_tiled_prediction_equals_untiled():
    net = tiny_net()
    rng = np.random.default_rng(1)
    x = ndimage.gaussian_filter(rng.standard_normal((2, 40, 40, 40)), (0, 1, 1, 1)).astype(np.float32)
    whole = predict_grid(x, net, tile_vox=None)
    for tile, batch in ((24, 1), (16, 3)):  # 16: ten windows per axis, of two lengths
        tiled = predict_grid(x, net, tile_vox=tile, batch_size=batch)
        assert np.abs(tiled - whole).max() < 1e-5
    # on a map in its own frame: probability comes back on the input grid
    voxel, origin = np.array([1.1, 1.2, 1.3]), np.array([5.0, -7.5, 3.3])
    centres = origin + rng.uniform(5, 40, (30, 3))
    m = DensityMap(gaussian_blobs((36, 38, 40), voxel, origin, centres, np.ones(30), 1.5), voxel, origin)
    p_whole = predict_probability(m, net, tile_vox=None, device="cpu")
    p_tiled = predict_probability(m, net, tile_vox=16, device="cpu", batch_size=2)
    assert p_whole.same_grid(m) and p_tiled.same_grid(m)
    assert np.abs(p_whole.data - p_tiled.data).max() < 1e-5
    assert 0.0 <= p_whole.data.min() and p_whole.data.max() <= 1.0


@pytest.mark.parametrize("n, window, halo", [(200, 128, 22), (200, 96, 22), (45, 45, 22), (97, 50, 3), (7, 9, 4)])
def test_tile_windows_cover_the_axis_with_the_fewest_windows(n, window, halo):
    wins = _axis_windows(n, window, halo)
    cores = [(lo, hi) for _, _, lo, hi in wins]
    assert cores[0][0] == 0 and cores[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))  # cores tile the axis
    for start, stop, lo, hi in wins:
        assert stop - start <= window and lo < hi
        # each core sees `halo` voxels of context on every side that is not the map's face
        assert start == max(lo - halo, 0) and stop == min(hi + halo, n)
    # fewest windows: with one fewer, the end windows keep at most window - halo voxels each and
    # the inner ones window - 2 halo, which cannot cover the axis
    k = len(wins)
    assert k == 1 or (k == 2 and n > window) or n > 2 * (window - halo) + (k - 3) * (window - 2 * halo)
    lengths = [stop - start for start, stop, _, _ in wins]
    assert max(lengths) - min(lengths) <= 1
    if n == 200 and window == 128:
        assert [(w[0], w[1]) for w in wins] == [(0, 122), (78, 200)]


def test_tile_window_must_exceed_twice_the_halo():
    with pytest.raises(ValueError, match="twice the network's halo"):
        _axis_windows(100, 44, 22)


# -- peaks --------------------------------------------------------------------------------------

def brute_force_greedy(prob: DensityMap, exclusion_A, n_min, n_max, threshold):
    """Paper 003's procedure, literally: repeatedly take the best voxel not within the exclusion radius."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in prob.shape), indexing="ij")
    xyz = prob.index_to_world(np.stack([i, j, k], axis=-1).reshape(-1, 3))
    p = prob.data.ravel().astype(np.float64)
    order = sorted(range(p.size), key=lambda f: (-p[f], f))
    picked = []
    for f in order:
        if len(picked) >= n_max or p[f] <= 0 or (len(picked) >= n_min and p[f] <= threshold):
            break
        if all(np.linalg.norm(xyz[f] - xyz[g]) >= exclusion_A for g in picked):
            picked.append(f)
    return xyz[picked]


def test_pick_peaks_matches_brute_force_greedy():
    rng = np.random.default_rng(5)
    prob = DensityMap(rng.uniform(0, 1, (9, 10, 11)) ** 3, (1.5, 1.2, 1.0), (1.0, 2.0, 3.0))
    for n_min, n_max, thr in ((None, None, 0.5), (40, None, 0.9), (10, 12, 0.2), (0, 5, 0.0)):
        got = pick_peaks(prob, n_min=n_min, n_max=n_max, threshold=thr)
        n_lo = n_min or 0
        n_hi = n_max if n_max is not None else (math.ceil(1.2 * n_min) if n_min is not None else prob.data.size)
        ref = brute_force_greedy(prob, 3.3, n_lo, n_hi, thr)
        assert np.allclose(got.voxel_xyz_A, ref), (n_min, n_max, thr)


def test_pick_peaks_recovers_subvoxel_gaussian_centres():
    rng = np.random.default_rng(2)
    voxel, origin, sigma = 1.5, np.array([2.0, -3.0, 1.0]), 1.5
    grid = np.array(list(itertools.product(range(3), repeat=3)), float)
    centres = origin + 8.0 + grid * 10.0 + rng.uniform(-0.75, 0.75, (27, 3))
    amps = np.linspace(0.6, 1.0, 27)
    prob = DensityMap(gaussian_blobs((32, 32, 32), voxel, origin, centres, amps, sigma), voxel, origin)
    # the highest sampled value of each blob (its centre lies between voxel centres)
    top = np.array([gaussian_blobs((32, 32, 32), voxel, origin, [c], [a], sigma).max()
                    for c, a in zip(centres, amps)])
    thr = 0.75
    assert 3 <= (top > thr).sum() < 27

    peaks = pick_peaks(prob, threshold=thr)  # without L: all peaks above the threshold
    assert len(peaks) == int((top > thr).sum()) and np.all(peaks.probability > thr)
    dist, idx = cKDTree(centres).query(peaks.xyz_A)
    assert dist.max() < 0.2
    assert np.all(top[idx] > thr) and len(set(idx)) == len(idx)
    assert np.all(np.diff(peaks.probability) <= 0)  # greedy: best first

    peaks = pick_peaks(prob, threshold=0.3)
    assert len(peaks) == 27 and cKDTree(centres).query(peaks.xyz_A)[0].max() < 0.2

    # with L: at least L whatever the probability; exclusion kept between the picked voxels
    many = pick_peaks(prob, n_min=60)
    assert len(many) == 60 and pdist(many.voxel_xyz_A).min() >= 3.3 - 1e-9
    # ... and up to 1.2 L while above the threshold
    assert len(pick_peaks(prob, n_min=5, threshold=0.3)) == 6
    assert len(pick_peaks(prob, n_min=5, threshold=0.999)) == 5
    assert len(pick_peaks(prob, threshold=0.3, n_max=4)) == 4


def test_peaks_to_model_round_trip(tmp_path):
    xyz = np.array([[1.0, 2.0, 3.0], [4.8, 2.0, 3.0], [8.6, 2.5, 3.0]])
    prob = np.array([0.99, 0.95, 0.42])
    m = peaks_to_model(xyz, prob)
    path = write_model(tmp_path / "ca.cif", m)
    back = read_model(path)
    assert back.n_atoms == 3 and list(back.atom_name) == ["CA"] * 3
    assert np.allclose(back.coords, xyz, atol=1e-3) and np.allclose(back.b_factor, prob, atol=1e-2)
    assert list(back.res_seq) == [1, 2, 3] and back.calpha().n_atoms == 3


# -- weights and training -----------------------------------------------------------------------

def test_save_load_weights_and_checksum(tmp_path):
    net = tiny_net(seed=4)
    path = save_weights(net, tmp_path / "w.pt", metadata={"note": "test"})
    side = json.loads(sidecar_path(path).read_text())
    assert side["architecture"] == net.architecture and side["voxel_size_A"] == VOXEL_SIZE_A
    back = load_weights(path)
    x = torch.randn(1, 2, 12, 12, 12)
    with torch.no_grad():
        assert torch.equal(net(x), back(x))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checksum") as err:
        load_weights(path)
    assert err.value.path == str(path)
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "missing.pt")
    sidecar_path(path).unlink()
    with pytest.raises(InputError, match="sidecar"):
        load_weights(path)


def test_saved_weights_bytes_depend_on_the_weights_only(tmp_path):
    net = tiny_net(seed=4)
    a = save_weights(net, tmp_path / "a.pt")
    (tmp_path / "sub").mkdir()
    b = save_weights(net, tmp_path / "sub" / "b.pt")
    assert sha256_file(a) == sha256_file(b)
    assert sha256_file(save_weights(tiny_net(seed=5), tmp_path / "c.pt")) != sha256_file(a)


def test_train_writes_checkpoints_log_and_resumes_exactly(tmp_path, crambin):
    kw = dict(steps_per_epoch=2, batch_size=2, crop_vox=16, seed=3, network={"channels": 4, "n_blocks": 1},
              val_crops=1, val_maps_per_band=1, tile_vox=16, device="cpu")
    threads = torch.get_num_threads()  # before numba's first parallel call, which may reset OpenMP's count
    straight = train([crambin], [crambin], epochs=2, checkpoint_dir=tmp_path / "a",
                     log_path=tmp_path / "a" / "log.tsv", **kw)
    assert [e for e, _ in checkpoint_paths(tmp_path / "a")] == [1, 2]
    log = (tmp_path / "a" / "log.tsv").read_text().splitlines()
    assert log[0].split("\t") == ["epoch", "train_loss", "val_loss", "crscore_2_5A", "crscore_5_10A",
                                  "crscore_10_15A", "val_maps_per_band", "wall_s", "device"]
    assert set(straight.log["device"]) == {f"cpu, {threads} threads"}
    assert len(log) == 3
    assert straight.log["val_loss"].notna().all() and straight.log["crscore_5_10A"].between(0, 1).all()
    assert straight.best_weights is not None and load_weights(straight.best_weights).n_blocks == 1
    # one epoch, then resume to two: the same weights as the straight run
    train([crambin], [crambin], epochs=1, checkpoint_dir=tmp_path / "b", log_path=tmp_path / "b" / "log.tsv", **kw)
    resumed = train([crambin], [crambin], epochs=2, checkpoint_dir=tmp_path / "b",
                    log_path=tmp_path / "b" / "log.tsv", **kw)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert len((tmp_path / "b" / "log.tsv").read_text().splitlines()) == 3
    with pytest.raises(InputError, match="checkpoints"):
        train([crambin], [], epochs=3, checkpoint_dir=tmp_path / "b", resume=False, **kw)


def test_resuming_with_a_larger_validation_set_rescores_the_best_epoch(tmp_path, crambin, caplog):
    kw = dict(steps_per_epoch=1, batch_size=1, crop_vox=16, seed=5, network={"channels": 4, "n_blocks": 1},
              val_crops=1, tile_vox=16, device="cpu", checkpoint_dir=tmp_path, val_bands_A=((3.0, 5.0),))
    first = train([crambin], [crambin], epochs=1, val_maps_per_band=1, **kw)
    best = tmp_path / "best_calpha_net.pt"
    state_before = load_weights(best).state_dict()
    with caplog.at_level(logging.INFO, logger="emforge.cnn.train"):
        second = train([crambin], [crambin], epochs=1, val_maps_per_band=3, **kw)  # nothing left to train
    assert "rescored" not in caplog.text  # no epoch to compare with: nothing scored again
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="emforge.cnn.train"):
        third = train([crambin], [crambin], epochs=2, val_maps_per_band=3, **kw)
    assert "validation set changed: best epoch 1 rescored" in caplog.text
    meta = json.loads(sidecar_path(best).read_text())["metadata"]
    assert meta["settings"]["validation"]["maps_per_band"] == 3
    # the rescored best is the epoch-1 network scored on the 3-map set, the score epoch 2 had to beat
    if meta["epoch"] == 1:
        for name, value in state_before.items():
            assert torch.equal(load_weights(best).state_dict()[name], value), name
    assert list(third.log["val_maps_per_band"]) == [1, 3]
    assert len(first.log) == len(second.log) == 1


# -- command line -------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["predict", "train"])
def test_cli_cnn_help(action, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cnn", action, "--help"])
    assert exc.value.code == 0 and "usage: emforge cnn " + action in capsys.readouterr().out


def test_cli_cnn_predict_end_to_end(tmp_path, crambin, capsys):
    weights = save_weights(tiny_net(seed=9), tmp_path / "tiny.pt")
    density = simulate_map(crambin, None, 4.0, kernel="crtasser", voxel_size_A=1.2)
    map_path = write_map(tmp_path / "crn.mrc", density)
    n_res = crambin.n_residues
    fasta = tmp_path / "crn.fasta"
    fasta.write_text(">crambin\n" + "A" * 30 + "\n" + "G" * (n_res - 30) + "\n")
    assert sequence_length(fasta) == n_res
    out, pmap = tmp_path / "ca.cif", tmp_path / "prob.mrc"
    args = ["cnn", "predict", str(map_path), "-r", "4", "--sequence", str(fasta), "--weights", str(weights),
            "-o", str(out), "--prob-map", str(pmap), "--tile", "16"]
    assert main(args) == 0
    ca = read_model(out)
    assert n_res <= ca.n_atoms <= math.ceil(1.2 * n_res)
    assert pdist(ca.coords).min() > 3.3 - 2 * math.sqrt(3) * 0.5 * 1.2  # exclusion up to the refinement shift
    prob = read_map(pmap)
    assert prob.same_grid(read_map(map_path)) and 0.0 <= prob.data.min() and prob.data.max() <= 1.0

    # bad input: one clear error naming the file, exit 2, no output
    out2, pmap2 = tmp_path / "ca2.cif", tmp_path / "prob2.mrc"
    bad = ["cnn", "predict", str(map_path), "-r", "4", "-o", str(out2), "--prob-map", str(pmap2)]
    assert main(bad + ["--weights", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in capsys.readouterr().err
    broken = tmp_path / "broken.fasta"
    broken.write_text(">x\nAC1D\n")
    assert main(bad + ["--weights", str(weights), "--sequence", str(broken)]) == 2
    assert "broken.fasta" in capsys.readouterr().err
    assert not out2.exists() and not pmap2.exists()


def test_cli_cnn_train_and_default_weights(tmp_path, capsys):
    from emforge.cnn.infer import default_weights_path

    if not default_weights_path().exists():
        assert main(["cnn", "predict", "x.mrc", "-r", "4", "-o", str(tmp_path / "a.cif"),
                     "--prob-map", str(tmp_path / "a.mrc")]) == 2
        assert "calpha_net.pt" in capsys.readouterr().err
    out = tmp_path / "run"
    args = ["cnn", "train", "--out-dir", str(out), "--epochs", "1", "--steps-per-epoch", "1", "--crop", "12",
            "--channels", "2", "--blocks", "1", "--max-train-chains", "1", "--max-val-chains", "1",
            "--val-maps-per-band", "1", "--device", "cpu", "--seed", "1", "-q"]
    assert main(args) == 0
    assert (out / "calpha_net.pt").is_file() and (out / "train_log.tsv").is_file()
    assert load_weights(out / "calpha_net.pt").channels == 2
    assert main(args) == 2  # checkpoints there: needs --resume
    assert "--resume" in capsys.readouterr().err
    assert main(args[:5] + ["2"] + args[6:] + ["--resume"]) == 0
    assert [e for e, _ in checkpoint_paths(out / "checkpoints")] == [1, 2]
    # the release: weights of the best epoch, the log of both epochs, its plot, a card naming the checksum
    record = json.loads(sidecar_path(out / "calpha_net.pt").read_text())
    log_rows = (out / "train_log.tsv").read_text().splitlines()
    assert len(log_rows) == 3
    assert (out / "train_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "MODEL_CARD.md").read_text()
    assert record["sha256"] in card and "--epochs 2" in card and "(shipped)" in card


# -- prediction summary, scores, card -----------------------------------------------------------

def test_score_against_reference_counts_pairs_within_the_distance(crambin):
    from emforge.cnn.predict import score_against_reference

    native = crambin.coords[crambin.atom_name == "CA"]
    assert score_against_reference(native, crambin) == pytest.approx(
        {"crscore": 1.0, "n_reference": len(native), "n_matched": len(native), "matched_fraction": 1.0,
         "matched_rmsd_A": 0.0, "match_distance_A": 3.0})
    # first 20 moved 1 Å (their own C-alpha stays the nearest at 3.8 Å spacing), the rest 50 Å away
    moved = native.copy()
    moved[:20, 0] += 1.0
    moved[20:, 2] += 50.0
    assert (cKDTree(native).query(moved[20:])[0] > 3.0).all()
    s = score_against_reference(moved, crambin)
    assert s["n_matched"] == 20 and s["matched_fraction"] == pytest.approx(20 / len(native))
    assert s["matched_rmsd_A"] == pytest.approx(1.0)
    assert 0 < s["crscore"] < 1


def test_predict_calpha_summary_and_frame(crambin):
    from emforge.cnn.predict import predict_calpha

    density = simulate_map(crambin, None, 4.0, kernel="crtasser", voxel_size_A=1.2)
    res = predict_calpha(density, tiny_net(seed=4), n_residues=crambin.n_residues, tile_vox=16, device="cpu")
    assert res.probability.same_grid(density)
    s = res.summary
    assert crambin.n_residues <= s["n_peaks"] == res.model.n_atoms <= math.ceil(1.2 * crambin.n_residues)
    assert s["probability_min"] <= s["probability_median"] <= s["probability_max"] <= 1
    np.testing.assert_allclose(res.model.b_factor, res.peaks.probability)
    with pytest.raises(InputError, match="zero variance"):
        predict_calpha(density.with_data(np.ones(density.shape, np.float32)), tiny_net(), device="cpu")


def test_model_card_and_plots_come_from_the_files(tmp_path):
    import pandas as pd

    from emforge.cnn.card import model_card
    from emforge.plots import calpha_slices_plot, cnn_training_plot

    weights = save_weights(tiny_net(seed=2), tmp_path / "calpha_net.pt",
                           metadata={"epoch": 2, "settings": {"steps_per_epoch": 10, "batch_size": 1, "crop_vox": 16,
                                                              "seed": 5, "lr": 5e-4}})
    log_table = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.3, 0.2, 0.1], "val_loss": [0.2, 0.15, 0.16],
                              "crscore_2_5A": [0.5, 0.8, 0.7], "crscore_5_10A": [0.4, 0.6, 0.5],
                              "crscore_10_15A": [0.2, 0.3, 0.3], "wall_s": [1800.0, 1800.0, 3600.0]})
    card = model_card(weights, log_table, command="emforge cnn train --epochs 3", device="CPU",
                      data={"manifest": "m.tsv", "n_train_chains": 4, "n_validation_chains": 2})
    assert sha256_of(weights) in card
    assert "| 2 (shipped) | 0.800 | 0.600 | 0.300 | 0.1500 |" in card
    assert "3 x 10 steps x batch 1 = 30 random crops" in card and "wall time 2.0 h" in card
    assert "4 training, 2 validation chains" in card
    assert cnn_training_plot(log_table)[:4] == b"\x89PNG"
    density = DensityMap(np.random.default_rng(0).random((12, 10, 8)).astype(np.float32), 1.5, (1.0, 2.0, 3.0))
    png = calpha_slices_plot(density, density.with_data(density.data / 2), density.index_to_world(
        np.array([[2.0, 3.0, 4.0], [5.0, 5.0, 5.0]])), reference_xyz_A=np.zeros((1, 3)))
    assert png[:4] == b"\x89PNG"


def sha256_of(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
