"""Global fit scores (CCC variants, MOC, contours) checked against direct numpy formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emforge.errors import InputError
from emforge.fsc import shell_indices
from emforge.global_fit import (
    ccc_contour,
    default_map_contour,
    default_model_contour,
    global_fit,
    manders_overlap,
    simulate_tempy_like,
    volume_contour,
)
from emforge.maps import DensityMap
from emforge.models import read_model
from emforge.simulate import simulate_map


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


@pytest.fixture(scope="module")
def grid(crambin):
    base = DensityMap.around_points(crambin.coords, 1.2, 6.0)
    return DensityMap(base.data, (1.2, 1.05, 1.35), base.origin + (0.21, -0.13, 0.4))


def _corr(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


def test_contour_correlations_match_their_formulas():
    rng = np.random.default_rng(0)
    shape = (12, 13, 14)
    e = rng.gamma(2.0, size=shape)
    s = 0.6 * e + rng.gamma(2.0, size=shape)
    m_e = DensityMap(e.astype(np.float32), 1.0, 0.0)
    m_s = m_e.with_data(s.astype(np.float32))
    e, s = m_e.data.astype(np.float64), m_s.data.astype(np.float64)
    te, ts = 2.5, 3.0
    E, S = e > te, s > ts
    # union: each map centred over its own contour, zero elsewhere (TEMPy CCC_map mode 2)
    ec = np.where(E, e - e[E].mean(), 0.0).ravel()
    sc = np.where(S, s - s[S].mean(), 0.0).ravel()
    assert ccc_contour(m_e, m_s, te, ts, "union") == pytest.approx(ec @ sc / math.sqrt((ec @ ec) * (sc @ sc)))
    assert ccc_contour(m_e, m_s, te, ts, "overlap") == pytest.approx(_corr(e[E & S], s[E & S]))
    assert ccc_contour(m_e, m_s, te, ts, "envelope") == pytest.approx(_corr(e[S], s[S]))
    x, y = e[E & S], s[E & S]
    assert manders_overlap(e, s, E & S) == pytest.approx(x @ y / math.sqrt((x @ x) * (y @ y)))
    assert math.isnan(manders_overlap(np.zeros(5), np.ones(5)))
    with pytest.raises(ValueError, match="region"):
        ccc_contour(m_e, m_s, te, ts, "everything")


def test_default_contours():
    # 90 % zeros and 10 % fours: histogram peak at the first bin centre (0.002), mean 0.4,
    # rms deviation above the peak 3.998, so TEMPy's threshold is 0.4 + 2 * 3.998
    d = np.zeros(1000)
    d[:100] = 4.0
    assert default_map_contour(d) == pytest.approx(0.4 + 2 * 3.998)
    s = np.arange(100.0)
    assert default_model_contour(s, 4.0) == pytest.approx(s.mean() + 0.1 * s.std())  # round(0.09, 1)
    assert default_model_contour(s, 2.0) == pytest.approx(s.mean())  # round(0.045, 1) = 0


def test_volume_contour_encloses_the_model_volume(crambin, grid):
    rng = np.random.default_rng(1)
    values = rng.permutation(np.prod(grid.shape)).reshape(grid.shape).astype(np.float32)
    m = grid.with_data(values)
    level = volume_contour(m, crambin)
    n = round(float(np.sum(crambin.mass)) * 1.21 / float(np.prod(grid.voxel_size)))
    assert int((values > level).sum()) == n


def test_global_fit_on_the_models_own_map(crambin, grid):
    R = 3.5
    own = simulate_tempy_like(crambin, grid, R)
    g = global_fit(crambin, own, R, map_contour=default_model_contour(own, R))
    for key in ("ccc", "ccc_mask", "ccc_envelope", "ccc_contour", "ccc_overlap", "moc", "overlap_fraction"):
        assert g[key] == pytest.approx(1.0, abs=1e-6), key
    freq = shell_indices(grid.shape, grid.voxel_size)[2]
    assert g["resolution_fsc05_A"] == pytest.approx(1.0 / freq[-1])  # FSC 1 everywhere: Nyquist


def test_global_fit_on_a_noisy_map(crambin, grid):
    R = 3.5
    rng = np.random.default_rng(2)
    sim = simulate_map(crambin, grid, R, kernel="gmm")
    noisy = grid.with_data((sim.data + rng.normal(scale=0.5 * sim.data.std(), size=grid.shape)).astype(np.float32))
    g = global_fit(crambin, noisy, R)
    assert set(g) >= {"ccc", "ccc_mask", "ccc_envelope", "ccc_contour", "ccc_overlap", "moc", "overlap_fraction",
                      "resolution_fsc05_A", "map_contour", "model_contour", "mask_radius_A", "resolution_A"}
    own = simulate_tempy_like(crambin, noisy, R)
    assert g["ccc"] == pytest.approx(_corr(noisy.data.astype(np.float64).ravel(),
                                           own.data.astype(np.float64).ravel()), abs=1e-9)
    assert 0.3 < g["ccc"] < 0.99 and 0.3 < g["moc"] <= 1.0
    assert 2 * 1.35 <= g["resolution_fsc05_A"] < 20
    tempy_level = global_fit(crambin, noisy, R, map_contour="tempy")["map_contour"]
    assert tempy_level == pytest.approx(default_map_contour(noisy))
    # a shifted model fits worse
    moved = crambin.with_coords(crambin.coords + (2.5, 0.0, 0.0))
    assert global_fit(moved, noisy, R)["ccc"] < g["ccc"] - 0.1


def test_global_fit_rejects_bad_input(crambin, grid):
    with pytest.raises(InputError, match="zero variance"):
        global_fit(crambin, grid, 3.0)
    far = crambin.with_coords(crambin.coords + 500.0)
    noisy = grid.with_data(np.random.default_rng(0).normal(size=grid.shape).astype(np.float32))
    with pytest.raises(InputError, match="does not overlap"):
        global_fit(far, noisy, 3.0)
    with pytest.raises(InputError):
        global_fit(crambin, noisy, 3.0, map_contour="median")
