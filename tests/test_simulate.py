"""Tests for emforge.simulate: simulated maps checked against analytic formulas and brute force.

References used here are independent of the numba kernel: the kernels' formulas written
out again from the papers, a plain numpy sum over all atoms and voxels, the analytic
mass fraction of a 3D Gaussian inside a sphere, and gemmi's DensityCalculatorE.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from conftest import require_data

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.models import AtomModel, read_model
from emforge.simulate import KERNELS, kernel_parameters, simulate_map, splat_gaussians

ADK = ("pairs", "adk", "1ake.pdb")
CRAMBIN = ("chains", "1crn_A.pdb.gz")

MASS = {"C": 12.011, "N": 14.007, "O": 15.999, "S": 32.06}  # IUPAC atomic weights (Da); gemmi: +-1e-4 relative
Z = {"C": 6, "N": 7, "O": 8, "S": 16}


def make_model(coords, elements, b_factors=None) -> AtomModel:
    """A tiny AtomModel (one residue per atom) from coordinates (N, 3) Å and element symbols."""
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    n = len(coords)
    b = np.full(n, 20.0) if b_factors is None else np.asarray(b_factors, dtype=np.float64)
    return AtomModel(
        coords=coords, element=np.array(elements, dtype="U2"),
        atom_name=np.array(elements, dtype="U4"), res_name=np.full(n, "ALA", dtype="U5"),
        res_seq=np.arange(1, n + 1), ins_code=np.full(n, "", dtype="U1"),
        chain_id=np.full(n, "A", dtype="U4"), b_factor=b, occupancy=np.ones(n),
        is_het=np.zeros(n, bool), residue_index=np.arange(n))


# An asymmetric little cluster with four elements and different B-factors.
TINY_XYZ = np.array([[0.31, 0.12, -0.45], [1.72, 0.57, 0.23], [2.41, -0.93, 1.04],
                     [-1.18, 1.36, 0.77], [0.66, -1.49, -1.21], [3.05, 1.88, -0.62]])
TINY_ELEMENTS = ["C", "N", "O", "S", "C", "O"]
TINY_B = np.array([12.0, 25.0, 40.0, 18.0, 60.0, 5.0])


def expected_kernel(kernel: str, element: str, R: float, B: float = 0.0) -> tuple[float, float]:
    """(amplitude, sigma_A) of one atom, written out from the papers' equations."""
    if kernel == "emrefiner":  # paper 000 Eq. 4
        beta = (math.pi / (2.4 + 0.8 * R)) ** 2
        return MASS[element] * (beta / math.pi) ** 1.5, math.sqrt(1.0 / (2.0 * beta))
    if kernel == "crtasser":  # paper 003 Eq. 2, sigma = R / sqrt(2 pi)
        sigma = R / math.sqrt(2.0 * math.pi)
        return Z[element] / math.sqrt(2.0 * math.pi * sigma ** 2), sigma
    # gmm, paper 001 Eq. 1 with sigma from resolution and B
    return float(Z[element]), math.sqrt((0.225 * R) ** 2 + B / (8.0 * math.pi ** 2))


def brute_force(model: AtomModel, grid: DensityMap, amplitude, sigma, cutoff_sigma=None) -> np.ndarray:
    """sum_i A_i exp(-r^2 / 2 s_i^2) over all atoms at every voxel centre, in float64 numpy."""
    gx, gy, gz = grid.grid_coordinates()
    zz, yy, xx = np.meshgrid(gz, gy, gx, indexing="ij")
    out = np.zeros(grid.shape)
    for (x, y, z), a, s in zip(model.coords, amplitude, sigma):
        r2 = (xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2
        term = a * np.exp(-r2 / (2.0 * s * s))
        if cutoff_sigma is not None:
            term[r2 > (cutoff_sigma * s) ** 2] = 0.0
        out += term
    return out


def fraction_inside(c: float) -> float:
    """Mass fraction of an isotropic 3D Gaussian within radius c sigma: P(chi2_3 <= c^2)."""
    return math.erf(c / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * c * math.exp(-c * c / 2.0)


# -- analytic checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("cutoff", [2.0, 3.0])
def test_emrefiner_integral_is_mass_inside_cutoff(cutoff):
    model = read_model(require_data(*ADK))
    m = simulate_map(model, None, 4.0, "emrefiner", cutoff_sigma=cutoff)
    integral = float(m.data.sum(dtype=np.float64)) * float(np.prod(m.voxel_size))
    expected = float(model.mass.sum()) * fraction_inside(cutoff)
    # 2.9% (3 sigma) or 26% (2 sigma) is lost at the cutoff; the rest is exact up to sampling
    assert integral == pytest.approx(expected, rel=1e-3)
    assert m.data.dtype == np.float32


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("R", [2.0, 6.0])
def test_single_atom_profile_width_and_height(kernel, R):
    element, B = "N", 30.0
    amp_ref, sigma_ref = expected_kernel(kernel, element, R, B)
    voxel = 0.2
    # y and z on grid lines, x between them: the x line through the atom is an exact Gaussian
    atom = np.array([[5.0 + 0.37 * voxel, 5.0, 5.0]])
    n = round(10.0 / voxel) + 1
    like = DensityMap(np.zeros((n, n, n), np.float32), voxel, 0.0)
    m = simulate_map(make_model(atom, [element], [B]), like, R, kernel, cutoff_sigma=6.0)
    k = j = round(5.0 / voxel)
    profile = m.data[k, j, :].astype(np.float64)
    x = m.grid_coordinates()[0]
    sel = profile > profile.max() * 1e-3
    c2, c1, c0 = np.polyfit(x[sel], np.log(profile[sel]), 2)
    sigma_fit = math.sqrt(-1.0 / (2.0 * c2))
    x0 = -c1 / (2.0 * c2)
    peak = math.exp(c0 - c1 * c1 / (4.0 * c2))
    assert sigma_fit == pytest.approx(sigma_ref, rel=1e-4)
    assert x0 == pytest.approx(atom[0, 0], abs=1e-4)
    assert peak == pytest.approx(amp_ref, rel=1e-4)
    amp, sig = kernel_parameters(make_model(atom, [element], [B]), R, kernel)
    assert amp[0] == pytest.approx(amp_ref, rel=1e-4) and sig[0] == pytest.approx(sigma_ref, rel=1e-12)


def test_truncated_second_moment_matches_analytic():
    """Per-axis variance of a 3-sigma-truncated 3D Gaussian is sigma^2 P(chi2_5<=9)/P(chi2_3<=9)."""
    R, voxel = 4.0, 0.15
    _, sigma = expected_kernel("emrefiner", "C", R)
    atom = np.array([[4.03, 3.98, 4.07]])
    n = round(8.0 / voxel) + 1
    like = DensityMap(np.zeros((n, n, n), np.float32), voxel, 0.0)
    d = simulate_map(make_model(atom, ["C"]), like, R, "emrefiner").data.astype(np.float64)
    gx = like.grid_coordinates()[0] - atom[0, 0]
    wx = d.sum(axis=(0, 1))
    var_x = float((wx * gx ** 2).sum() / wx.sum())
    c = 3.0
    p5 = math.erf(c / math.sqrt(2)) - math.sqrt(2 / math.pi) * math.exp(-c * c / 2) * (c + c ** 3 / 3)
    assert var_x == pytest.approx(sigma ** 2 * p5 / fraction_inside(c), rel=2e-3)


# -- brute force -------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_brute_force_sum(kernel):
    model = make_model(TINY_XYZ, TINY_ELEMENTS, TINY_B)
    R = 3.0
    m = simulate_map(model, None, R, kernel, voxel_size_A=0.45)
    amplitude, sigma = kernel_parameters(model, R, kernel)
    cut = brute_force(model, m, amplitude, sigma, cutoff_sigma=3.0)
    full = brute_force(model, m, amplitude, sigma)
    scale = float(np.abs(full).max())
    # same definition (3-sigma sphere): equal to float32 precision
    np.testing.assert_allclose(m.data, cut, rtol=0, atol=2e-6 * scale)
    # no cutoff: differs by at most the summed Gaussian tails beyond 3 sigma
    tail = float((amplitude * math.exp(-4.5)).sum())
    assert np.abs(m.data - full).max() <= tail
    assert np.abs(m.data - full).max() > 0  # the cutoff does act


def test_anisotropic_voxels_and_offset_origin_match_brute_force():
    model = make_model(TINY_XYZ + [1.4, 8.3, 12.6], TINY_ELEMENTS, TINY_B)
    # non-cubic grid, different voxel edges per axis, origin off the world axes;
    # the grid clips some atoms' spheres and one atom lies far outside
    far = make_model(np.array([[80.0, -50.0, 300.0]]), ["S"])
    model = AtomModel(**{f: np.concatenate([getattr(model, f), getattr(far, f)])
                         for f in model.__dataclass_fields__})
    like = DensityMap(np.zeros((11, 17, 13), np.float32), (0.55, 0.7, 0.95), (-1.3, 6.9, 5.2))
    for kernel in KERNELS:
        m = simulate_map(model, like, 2.5, kernel)
        assert m.same_grid(like)
        amplitude, sigma = kernel_parameters(model, 2.5, kernel)
        ref = brute_force(model, like, amplitude, sigma, cutoff_sigma=3.0)
        np.testing.assert_allclose(m.data, ref, rtol=0, atol=2e-6 * float(ref.max()))


def test_atoms_outside_the_grid_contribute_nothing():
    like = DensityMap(np.zeros((6, 7, 8), np.float32), 1.0, (100.0, 100.0, 100.0))
    m = simulate_map(make_model(TINY_XYZ, TINY_ELEMENTS), like, 4.0)
    assert not m.data.any()


# -- frames ------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 2])  # world x, world z
def test_translation_by_one_voxel_shifts_the_map(axis):
    model = make_model(TINY_XYZ, TINY_ELEMENTS, TINY_B)
    voxel = np.array([0.5, 0.625, 0.75])
    like = DensityMap(np.zeros((24, 28, 30), np.float32), voxel, (-7.0, -6.25, -9.0))
    shift = np.zeros(3)
    shift[axis] = voxel[axis]
    a = simulate_map(model, like, 3.0, "gmm").data
    b = simulate_map(model.with_coords(model.coords + shift), like, 3.0, "gmm").data
    data_axis = 2 - axis  # data is [z, y, x]
    lead = [slice(None)] * 3
    lead[data_axis] = slice(1, None)
    trail = [slice(None)] * 3
    trail[data_axis] = slice(None, -1)
    np.testing.assert_allclose(b[tuple(lead)], a[tuple(trail)], rtol=0, atol=1e-6 * float(a.max()))
    assert not np.allclose(a, b)


def test_default_grid_covers_the_model_with_empty_border():
    model = make_model(TINY_XYZ, TINY_ELEMENTS, TINY_B)
    m = simulate_map(model, None, 6.0, "emrefiner")
    assert np.allclose(m.voxel_size, 2.0)
    assert np.all(m.contains(model.coords))
    for face in (m.data[0], m.data[-1], m.data[:, 0], m.data[:, -1], m.data[:, :, 0], m.data[:, :, -1]):
        assert not face.any()


def test_thread_count_does_not_change_the_result():
    """Slabs are split independently of the thread count: bit-identical maps (a tall grid, many slabs)."""
    rng = np.random.default_rng(7)
    shape = (240, 30, 26)  # (nz, ny, nx)
    idx = rng.uniform(0.0, 1.0, (3000, 3)) * np.array(shape[::-1])  # fractional (i, j, k)
    amp = rng.uniform(1.0, 10.0, 3000)
    sig = rng.uniform(0.6, 1.8, (3000, 1)) * np.array([1.0, 1.3, 0.8])
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = splat_gaussians(idx, amp, sig, shape, 3.0)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = splat_gaussians(idx, amp, sig, shape, 3.0)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)
    # and both equal the same sum accumulated in three batches through ``out``
    single = np.zeros(shape, np.float32)
    for a in range(0, 3000, 1000):
        splat_gaussians(idx[a:a + 1000], amp[a:a + 1000], sig[a:a + 1000], shape, 3.0, out=single)
    np.testing.assert_allclose(single, one, rtol=1e-5, atol=1e-5)


def test_progress_callback_reports_all_atoms():
    calls = []
    simulate_map(make_model(TINY_XYZ, TINY_ELEMENTS), None, 4.0, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (len(TINY_XYZ), len(TINY_XYZ))


# -- independent implementation ----------------------------------------------------------------

def test_gmm_kernel_correlates_with_gemmi_density_calculator():
    gemmi = pytest.importorskip("gemmi")
    from emforge.models import to_gemmi

    model = read_model(require_data(*CRAMBIN))
    R, voxel = 4.0, 1.0
    model = model.with_coords(model.coords - model.coords.min(axis=0) + 10.0)  # all inside the box
    n = (np.ceil(model.coords.max(axis=0) + 10.0) / voxel).astype(int)  # (x, y, z)
    like = DensityMap(np.zeros(tuple(n[::-1]), np.float32), voxel, 0.0)
    ours = simulate_map(model, like, R, "gmm").data

    st = to_gemmi(model)
    st.cell = gemmi.UnitCell(*(n * voxel), 90, 90, 90)
    st.spacegroup_hm = "P 1"
    dc = gemmi.DensityCalculatorE()
    dc.d_min = 0.0  # keep the grid we set up below
    dc.blur = 8 * math.pi ** 2 * (0.225 * R) ** 2
    dc.grid.set_unit_cell(st.cell)
    dc.grid.set_size(int(n[0]), int(n[1]), int(n[2]))
    dc.put_model_density_on_grid(st[0])
    theirs = np.array(dc.grid, copy=True).transpose(2, 1, 0)  # gemmi [x, y, z] -> [z, y, x]
    cc = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    assert cc > 0.95


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("R", [0.0, -3.0, float("nan"), float("inf")])
def test_bad_resolution_raises_input_error(R):
    model = make_model(TINY_XYZ, TINY_ELEMENTS)
    with pytest.raises(InputError, match="resolution"):
        simulate_map(model, None, R)
    with pytest.raises(InputError):
        kernel_parameters(model, R)


def test_unknown_kernel_raises_input_error():
    with pytest.raises(InputError, match="kernel"):
        simulate_map(make_model(TINY_XYZ, TINY_ELEMENTS), None, 4.0, "chimera")


def test_bad_sigma_shape_raises_value_error():
    model = make_model(TINY_XYZ, TINY_ELEMENTS)
    with pytest.raises(ValueError):
        kernel_parameters(model, 4.0, "gmm", sigma_A=np.ones(len(model) + 1))
    with pytest.raises(ValueError):
        kernel_parameters(model, 4.0, "gmm", sigma_A=-1.0)
    amp, sig = kernel_parameters(model, 4.0, "gmm", sigma_A=0.8)
    assert np.all(sig == 0.8) and np.array_equal(amp, model.atomic_number)
