"""FSC, soft masks and the model-map FSC, checked against analytic cases and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from emforge.errors import InputError
from emforge.fsc import fsc_crossing, fsc_curve, model_map_fsc, shell_indices
from emforge.maps import DensityMap
from emforge.masks import soft_mask
from emforge.models import read_model
from emforge.simulate import simulate_map


def _grid(shape_zyx=(20, 24, 18), voxel=(1.1, 1.0, 1.3), origin=(2.0, -3.0, 0.5), data=None):
    d = np.zeros(shape_zyx, np.float32) if data is None else data.astype(np.float32)
    return DensityMap(d, voxel, origin)


def test_shell_counts_and_fsc_match_full_complex_fft():
    """fsc_curve (real FFT + Friedel weights) equals a plain full-spectrum computation."""
    rng = np.random.default_rng(3)
    shape = (14, 17, 12)  # odd and even sizes, non-cubic
    voxel = (1.2, 0.9, 1.5)
    a = rng.normal(size=shape)
    b = 0.5 * a + rng.normal(size=shape)
    freq, fsc, count = fsc_curve(_grid(shape, voxel, data=a), _grid(shape, voxel, data=b))

    # reference: full complex FFT, shells by rounding |s| * L on the full spectrum
    vx, vy, vz = voxel
    nz, ny, nx = shape
    length = max(nx * vx, ny * vy, nz * vz)
    sz, sy, sx = np.meshgrid(np.fft.fftfreq(nz, vz), np.fft.fftfreq(ny, vy), np.fft.fftfreq(nx, vx),
                             indexing="ij")
    lab = np.floor(np.sqrt(sx ** 2 + sy ** 2 + sz ** 2) * length + 0.5).astype(int)
    fa = np.fft.fftn(a.astype(np.float32).astype(np.float64))
    fb = np.fft.fftn(b.astype(np.float32).astype(np.float64))
    k = len(freq)
    assert k == int(length / (2 * max(voxel))) + 1
    for s in range(k):
        sel = lab == s
        num = np.sum((fa[sel] * np.conj(fb[sel])).real)
        den = np.sqrt(np.sum(np.abs(fa[sel]) ** 2) * np.sum(np.abs(fb[sel]) ** 2))
        assert count[s] == sel.sum()
        assert fsc[s] == pytest.approx(num / den, abs=1e-9)
    assert freq == pytest.approx(np.arange(k) / length)


def test_identical_maps_give_one_and_nyquist():
    rng = np.random.default_rng(0)
    m = _grid(data=rng.normal(size=(20, 24, 18)))
    freq, fsc, _ = fsc_curve(m, m)
    assert np.allclose(fsc, 1.0, atol=1e-12)
    assert fsc_crossing(freq, fsc) == pytest.approx(1.0 / freq[-1])


def test_independent_noise_gives_zero():
    rng = np.random.default_rng(1)
    shape = (40, 40, 40)
    a = _grid(shape, (1.0, 1.0, 1.0), data=rng.normal(size=shape))
    b = _grid(shape, (1.0, 1.0, 1.0), data=rng.normal(size=shape))
    _, fsc, count = fsc_curve(a, b)
    # each shell correlation ~ N(0, 1/n): stay within 5 standard errors
    ok = count >= 50
    assert np.all(np.abs(fsc[ok]) < 5.0 / np.sqrt(count[ok]))


def test_known_snr_gives_snr_over_one_plus_snr():
    """Two copies of a signal with a Gaussian spectrum plus independent white noise:
    FSC(s) = SNR(s) / (1 + SNR(s)), SNR(s) = exp(-4 pi^2 sigma^2 s^2) / noise^2, and the
    0.5 crossing sits where SNR = 1."""
    rng = np.random.default_rng(5)
    n, voxel, sigma, noise = 48, 1.2, 2.0, 0.05
    shape = (n, n, n)
    sx = np.fft.rfftfreq(n, voxel)
    s1 = np.fft.fftfreq(n, voxel)
    s2 = s1[:, None, None] ** 2 + s1[None, :, None] ** 2 + sx[None, None, :] ** 2
    signal = np.fft.irfftn(np.fft.rfftn(rng.normal(size=shape)) * np.exp(-2 * np.pi ** 2 * sigma ** 2 * s2),
                           s=shape, axes=(0, 1, 2))
    a = _grid(shape, voxel, (0, 0, 0), signal + rng.normal(scale=noise, size=shape))
    b = _grid(shape, voxel, (0, 0, 0), signal + rng.normal(scale=noise, size=shape))
    freq, fsc, count = fsc_curve(a, b)
    snr = np.exp(-4 * np.pi ** 2 * sigma ** 2 * freq ** 2) / noise ** 2
    expected = snr / (1 + snr)
    ok = count >= 100
    # shells are one reciprocal voxel wide, so SNR varies inside a shell: allow that plus 5 s.e.
    assert np.all(np.abs(fsc[ok] - expected[ok]) < 0.03 + 5.0 / np.sqrt(count[ok]))
    res = fsc_crossing(freq, fsc)
    analytic = 1.0 / math.sqrt(math.log(1 / noise ** 2) / (4 * np.pi ** 2 * sigma ** 2))
    assert res == pytest.approx(analytic, rel=0.03)


def test_crossing_interpolates_linearly_and_picks_first_or_last():
    freq = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    fsc = np.array([1.0, 0.9, 0.4, 0.6, 0.2, 0.1])
    # first crossing between 0.1 (0.9) and 0.2 (0.4): f = 0.1 + 0.4/0.5 * 0.1 = 0.18
    assert fsc_crossing(freq, fsc) == pytest.approx(1 / 0.18)
    # last crossing between 0.3 (0.6) and 0.4 (0.2): f = 0.3 + 0.1/0.4 * 0.1 = 0.325
    assert fsc_crossing(freq, fsc, which="last") == pytest.approx(1 / 0.325)
    assert fsc_crossing(freq, fsc, threshold=0.143) == pytest.approx(1 / (0.4 + 0.057 / 0.1 * 0.1))
    assert fsc_crossing(freq, np.full(6, 0.9)) == pytest.approx(2.0)  # never below: Nyquist
    assert fsc_crossing(freq, np.full(6, 0.1)) == math.inf
    with_nan = fsc.copy()
    with_nan[1] = np.nan  # skipped: crossing now between 0.0 (1.0) and 0.2 (0.4)
    assert fsc_crossing(freq, with_nan) == pytest.approx(1 / (0.5 / 0.6 * 0.2))


def test_mask_multiplies_both_maps():
    rng = np.random.default_rng(2)
    shape = (16, 18, 20)
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    mask = rng.random(shape)
    f1 = fsc_curve(_grid(shape, data=a), _grid(shape, data=b), mask)[1]
    f2 = fsc_curve(_grid(shape, data=(a.astype(np.float32) * mask)),
                   _grid(shape, data=(b.astype(np.float32) * mask)))[1]
    assert np.allclose(f1, f2, atol=1e-6)
    with pytest.raises(ValueError, match="same grid"):
        fsc_curve(_grid(shape, data=a), _grid(shape, voxel=(1, 1, 1), data=b))


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


def test_soft_mask_matches_kdtree_distances(crambin):
    base = DensityMap.around_points(crambin.coords, 1.3, 8.0)
    grid = DensityMap(base.data, (1.3, 1.1, 1.6), base.origin + (0.2, -0.3, 0.1))
    radius, edge = 2.5, 3.0
    mask = soft_mask(crambin, grid, radius, edge)
    x, y, z = grid.grid_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    d, _ = cKDTree(crambin.coords).query(np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1))
    d = d.reshape(grid.shape)
    expected = np.where(d <= radius, 1.0, np.where(d < radius + edge,
                                                   0.5 * (1 + np.cos(np.pi * (d - radius) / edge)), 0.0))
    assert np.allclose(mask, expected, atol=1e-5)
    assert mask.max() == 1.0 and mask.min() == 0.0
    with pytest.raises(InputError):
        soft_mask(crambin, grid, 2.0, -1.0)


def test_model_map_fsc(crambin):
    grid = DensityMap.around_points(crambin.coords, 1.0, 6.0)
    sim = simulate_map(crambin, grid, 4.0)
    # the model's own map: FSC 1 in every shell with power, resolution at Nyquist
    out = model_map_fsc(crambin, sim, 4.0)
    assert out["resolution_fsc05_A"] == pytest.approx(1.0 / out["curve"]["freq_invA"][-1])
    # noise lowers it to a finite resolution worse than Nyquist; masking keeps that behaviour
    rng = np.random.default_rng(4)
    noisy = sim.with_data(sim.data + rng.normal(scale=0.5 * sim.data.std(), size=sim.shape).astype(np.float32))
    whole = model_map_fsc(crambin, noisy, 4.0)
    masked = model_map_fsc(crambin, noisy, 4.0, mask_radius_A=3.0)
    for out in (whole, masked):
        assert 2.0 < out["resolution_fsc05_A"] < 20.0
        assert set(out["curve"]) == {"freq_invA", "fsc", "n_coeffs"}
    assert masked["mask_radius_A"] == 3.0 and masked["soft_edge_A"] == 4.0
    assert whole["mask_radius_A"] is None
    # masking out the noise-only solvent gives a better (smaller) resolution
    assert masked["resolution_fsc05_A"] < whole["resolution_fsc05_A"]


def test_shell_indices_marks_corners_beyond_nyquist():
    labels, weights, freq = shell_indices((10, 10, 10), (1.0, 1.0, 1.0))
    assert labels.shape == (10, 10, 6)
    assert labels.max() == len(freq) - 1 == 5
    assert (labels == -1).any()  # corners beyond 0.5 cycles/voxel
    assert weights.tolist() == [1, 2, 2, 2, 2, 1]
