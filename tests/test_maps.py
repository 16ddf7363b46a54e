"""emforge.maps: the map frame, MRC/CCP4 I/O and grid operations.

Every frame check compares against an independent reference: gemmi's CCP4 reader,
raw header fields read with mrcfile, maps written with raw mrcfile calls (see
conftest.write_raw_iota), or analytic functions of world coordinates.
"""

from __future__ import annotations

import gzip
import os
import struct

import gemmi
import mrcfile
import numpy as np
import pytest
from conftest import (
    AXIS_ORDER_NAMES,
    AXIS_ORDERS,
    IOTA_N_XYZ,
    iota_value,
    iota_zyx,
    require_data,
    write_raw_iota,
)

from emforge.atomic import atomic_path
from emforge.errors import InputError
from emforge.maps import (
    DensityMap,
    crop,
    crop_to_points,
    is_map_path,
    normalise,
    pad,
    read_map,
    resample,
    write_map,
)

# -- helpers ----------------------------------------------------------------------------------


def _gemmi_map(path, fill=float("nan")):
    """gemmi's map expanded to the whole unit cell (X, Y, Z order) and its start (x, y, z).

    The start is read from gemmi's own header words before ``setup`` rewrites them.
    """
    ccp4 = gemmi.read_ccp4_map(str(path))
    axes = [ccp4.header_i32(w) for w in (17, 18, 19)]      # mapc, mapr, maps
    starts = [ccp4.header_i32(w) for w in (5, 6, 7)]       # column, row, section starts
    start_xyz = np.zeros(3, np.int64)
    for a, s in zip(axes, starts):
        start_xyz[a - 1] = s
    ccp4.setup(fill)
    return ccp4, start_xyz


def _raw_header(path):
    with mrcfile.open(str(path), permissive=True, header_only=True) as mrc:
        return mrc.header.copy()


def _header_origin(path) -> np.ndarray:
    h = _raw_header(path)
    return np.array([float(h.origin.x), float(h.origin.y), float(h.origin.z)])


def assert_matches_gemmi(path, m: DensityMap, n_samples: int | None = None, seed: int = 0):
    """Our map ``m`` read from ``path`` holds gemmi's values at gemmi's positions.

    For every voxel [k, j, i] of ``m`` (or ``n_samples`` random ones plus the corners),
    the gemmi grid point is (start + (i, j, k)) wrapped into the unit cell; its value must
    equal ours and its position (+ the MRC header origin, which gemmi does not apply) must
    equal ``origin + (i, j, k) * voxel``. Values are also compared through gemmi's own
    world-coordinate lookup (trilinear interpolation at our world positions).
    """
    ccp4, start = _gemmi_map(path)
    grid = ccp4.grid
    arr = grid.array
    h_origin = _header_origin(path)
    nx, ny, nz = m.shape_xyz

    # whole-array value comparison (vectorised)
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    expected = arr[(start[0] + i) % grid.nu, (start[1] + j) % grid.nv, (start[2] + k) % grid.nw]
    np.testing.assert_array_equal(m.data, expected)
    np.testing.assert_allclose(m.voxel_size, grid.spacing, rtol=1e-6)

    # positions, voxel by voxel (or a sample for large maps)
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    if n_samples is not None and len(idx) > n_samples:
        rng = np.random.default_rng(seed)
        corners = np.array([[a, b, c] for a in (0, nx - 1) for b in (0, ny - 1) for c in (0, nz - 1)])
        idx = np.concatenate([corners, idx[rng.choice(len(idx), n_samples, replace=False)]])
    ours = m.index_to_world(idx)
    theirs = np.array([grid.get_position(int(start[0] + a), int(start[1] + b), int(start[2] + c)).tolist()
                       for a, b, c in idx]) + h_origin
    np.testing.assert_allclose(ours, theirs, atol=1e-4)

    # gemmi's world -> value lookup at our world positions (zero-filled cell, so neighbours of
    # a grid point never contribute NaN to the negligible interpolation weights)
    grid0 = _gemmi_map(path, 0.0)[0].grid
    values = np.array([grid0.interpolate_value(gemmi.Position(*(p - h_origin))) for p in ours])
    ref = m.data[idx[:, 2], idx[:, 1], idx[:, 0]]
    np.testing.assert_allclose(values, ref, rtol=1e-5, atol=1e-5 * (np.abs(m.data).max() + 1))


def linear_map(n_xyz=(9, 8, 7), voxel=(0.8, 1.1, 1.3), origin=(-4.0, 2.5, 11.0),
               coef=(1.5, -2.0, 0.75), const=3.0) -> tuple[DensityMap, callable]:
    """A map holding f(world) = const + coef . xyz, and f itself."""
    def f(xyz):
        return const + np.asarray(xyz, dtype=np.float64) @ np.asarray(coef)
    nx, ny, nz = n_xyz
    x = origin[0] + np.arange(nx) * voxel[0]
    y = origin[1] + np.arange(ny) * voxel[1]
    z = origin[2] + np.arange(nz) * voxel[2]
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    data = f(np.stack([xx, yy, zz], axis=-1))
    return DensityMap(data.astype(np.float32), voxel, origin), f


def world_of_all_voxels(m: DensityMap) -> np.ndarray:
    """(nz, ny, nx, 3) world coordinates built from grid_coordinates."""
    x, y, z = m.grid_coordinates()
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    return np.stack([xx, yy, zz], axis=-1)


# -- reading raw-written iota maps ------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("axis_crs", AXIS_ORDERS, ids=lambda o: "crs" + "".join(map(str, o)))
def test_read_all_axis_orders_match_gemmi(tmp_path, axis_crs, gz):
    start = (-2, 3, 1)
    sampling = (8, 9, 6)          # larger than the box (5, 7, 4): gemmi's grid is the whole cell
    cell = (8 * 1.0, 9 * 1.5, 6 * 2.0)
    path = write_raw_iota(tmp_path / ("iota.map" + (".gz" if gz else "")), axis_crs=axis_crs,
                          start_xyz=start, sampling_xyz=sampling, cell_xyz=cell)
    m = read_map(path)

    # analytic expectations first
    assert m.shape == IOTA_N_XYZ[::-1]
    np.testing.assert_array_equal(m.data, iota_zyx())
    np.testing.assert_allclose(m.voxel_size, (1.0, 1.5, 2.0))
    np.testing.assert_allclose(m.origin, np.multiply(start, (1.0, 1.5, 2.0)))
    assert m.data.dtype == np.float32 and m.data.flags.c_contiguous

    # then gemmi, voxel for voxel and in world coordinates
    assert_matches_gemmi(path, m)


@pytest.mark.parametrize("axis_crs", [(1, 2, 3), (3, 1, 2), (2, 3, 1)])
def test_read_box_equal_to_cell_and_negative_starts(tmp_path, axis_crs):
    start = (-5, -7, -4)   # box == cell, starting one full cell below zero
    path = write_raw_iota(tmp_path / "neg.mrc", axis_crs=axis_crs, start_xyz=start,
                          cell_xyz=(5 * 0.9, 7 * 1.3, 4 * 2.2))
    m = read_map(path)
    np.testing.assert_allclose(m.voxel_size, (0.9, 1.3, 2.2), rtol=1e-6)
    np.testing.assert_allclose(m.origin, np.multiply(start, (0.9, 1.3, 2.2)), rtol=1e-6)
    assert_matches_gemmi(path, m)


@pytest.mark.parametrize("axis_crs", [(1, 2, 3), (3, 2, 1), (2, 3, 1)])
def test_header_origin_adds_to_start(tmp_path, axis_crs):
    """Words 50-52 are honoured: world origin = header origin + start * voxel (gemmi ignores them)."""
    header_origin = (12.5, -3.25, 7.0)
    start = (2, -1, 3)
    path = write_raw_iota(tmp_path / "orig.mrc", axis_crs=axis_crs, start_xyz=start,
                          header_origin=header_origin)
    m = read_map(path)
    voxel = np.array([1.0, 1.5, 2.0])
    np.testing.assert_allclose(m.origin, np.add(header_origin, np.multiply(start, voxel)))
    # value at a world point is the analytic iota value there
    ijk = np.array([3, 5, 2])
    assert m.interpolate(header_origin + (np.add(start, ijk)) * voxel)[0] == pytest.approx(iota_value(*ijk))
    assert_matches_gemmi(path, m)   # compares gemmi position + header origin


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float16, np.int8])
def test_read_other_modes(tmp_path, dtype):
    n = (5, 7, 4) if dtype != np.int8 else (5, 3, 1)   # iota values must fit the type
    path = write_raw_iota(tmp_path / "m.mrc", axis_crs=(2, 3, 1), n_xyz=n, start_xyz=(1, 2, 3), dtype=dtype)
    m = read_map(path)
    assert m.data.dtype == np.float32
    np.testing.assert_array_equal(m.data, iota_zyx(n))
    assert_matches_gemmi(path, m)


def test_read_single_section_image(tmp_path):
    """An image (nz = 1, space group 0) reads as a one-section volume."""
    data = iota_zyx((5, 7, 1))[0]
    path = tmp_path / "img.mrc"
    with mrcfile.new(str(path)) as mrc:
        mrc.set_data(data)        # 2D: mrcfile writes ispg 0, nz 1
        mrc.voxel_size = (1.0, 1.5, 2.0)
    m = read_map(path)
    assert m.shape == (1, 7, 5)
    np.testing.assert_array_equal(m.data[0], data)


def test_read_big_endian(tmp_path):
    path = tmp_path / "be.mrc"
    data = iota_zyx().astype(">f4")
    with mrcfile.new(str(path)) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (1.0, 1.5, 2.0)
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = -1, 2, -3
    assert bytes(_raw_header(path).machst)[:2] == b"\x11\x11"
    m = read_map(path)
    np.testing.assert_array_equal(m.data, iota_zyx())
    assert_matches_gemmi(path, m)


# -- writing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".mrc", ".map.gz"])
@pytest.mark.parametrize("order", list(AXIS_ORDER_NAMES))
def test_write_all_axis_orders_whole_voxel_origin(tmp_path, iota_map, order, suffix):
    m = iota_map(origin=(-3.0, 4.5, -10.0))     # = (-3, 3, -5) voxels
    path = write_map(tmp_path / f"w{suffix}", m, axis_order=order)
    if suffix.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"

    h = _raw_header(path)
    axis_crs = AXIS_ORDER_NAMES[order]
    assert (int(h.mapc), int(h.mapr), int(h.maps)) == axis_crs
    n_xyz = np.array(IOTA_N_XYZ)
    assert (int(h.nx), int(h.ny), int(h.nz)) == tuple(int(n_xyz[a - 1]) for a in axis_crs)
    start_xyz = np.array([-3, 3, -5])
    assert (int(h.nxstart), int(h.nystart), int(h.nzstart)) == tuple(int(start_xyz[a - 1]) for a in axis_crs)
    assert (int(h.mx), int(h.my), int(h.mz)) == tuple(IOTA_N_XYZ)
    np.testing.assert_allclose([h.cella.x, h.cella.y, h.cella.z], n_xyz * (1.0, 1.5, 2.0))
    assert (float(h.origin.x), float(h.origin.y), float(h.origin.z)) == (0.0, 0.0, 0.0)
    assert int(h.mode) == 2

    back = read_map(path)
    np.testing.assert_array_equal(back.data, m.data)
    np.testing.assert_allclose(back.voxel_size, m.voxel_size)
    np.testing.assert_allclose(back.origin, m.origin)
    assert_matches_gemmi(path, back)


@pytest.mark.parametrize("order", ["xyz", "zxy", "yzx"])
def test_write_fractional_origin_goes_to_header_origin(tmp_path, iota_map, order):
    m = iota_map(origin=(-3.3, 4.55, 10.1))
    path = write_map(tmp_path / "f.mrc", m, axis_order=order)
    h = _raw_header(path)
    assert (int(h.nxstart), int(h.nystart), int(h.nzstart)) == (0, 0, 0)
    np.testing.assert_allclose([h.origin.x, h.origin.y, h.origin.z], m.origin, atol=1e-5)
    back = read_map(path)
    np.testing.assert_array_equal(back.data, m.data)
    np.testing.assert_allclose(back.origin, m.origin, atol=1e-5)
    assert_matches_gemmi(path, back)


def test_write_far_origin_keeps_sub_voxel_offset(tmp_path):
    """A start of ~10^4 voxels plus 0.006 voxel must not be rounded to a whole voxel."""
    m = DensityMap(iota_zyx(), 0.5, (5000.003, 1.0, 2.0))
    back = read_map(write_map(tmp_path / "far.mrc", m))
    np.testing.assert_allclose(back.origin, m.origin, atol=2e-3 * 0.5)


def test_write_then_gemmi_reads_header_stats(tmp_path, iota_map):
    m = iota_map()
    path = write_map(tmp_path / "s.mrc", m)
    h = _raw_header(path)
    assert float(h.dmin) == pytest.approx(m.data.min())
    assert float(h.dmax) == pytest.approx(m.data.max())
    assert float(h.dmean) == pytest.approx(m.data.mean(), rel=1e-5)


def test_write_rejects_unknown_axis_order(tmp_path, iota_map):
    with pytest.raises(ValueError, match="axis_order"):
        write_map(tmp_path / "x.mrc", iota_map(), axis_order="xxy")
    assert list(tmp_path.iterdir()) == []


def test_written_file_has_normal_permissions(tmp_path, iota_map):
    path = write_map(tmp_path / "p.mrc", iota_map())
    umask = os.umask(0o022)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


# -- real EMDB headers and the shared maps ----------------------------------------------------

def test_emd_3197_matches_gemmi():
    path = require_data("maps", "io_fixtures", "emd_3197.map.gz")
    m = read_map(path)
    assert m.shape == (20, 20, 20)
    np.testing.assert_allclose(m.voxel_size, 11.4, rtol=1e-6)
    np.testing.assert_allclose(m.origin, (-2 * 11.4, 0.0, 0.0), rtol=1e-6)
    assert_matches_gemmi(path, m)


def test_emd_3001_non_orthogonal_rejected():
    path = require_data("maps", "io_fixtures", "emd_3001.map.gz")
    with pytest.raises(InputError, match="non-orthogonal") as err:
        read_map(path)
    assert str(path) in str(err.value)


REAL_MAPS = ["3j9s_A/3j9sA.mrc.gz", "emd_2513/emd_2513_segment.mrc.gz", "emd_2513/emd_2513_box.mrc.gz",
             "emd_5168/emd_5168.map.gz", "emd_5168/emd_5168_monomer.mrc.gz",
             "emd_5778/emd_5778_segment.mrc.gz", "emd_5925/emd_5925_segment.mrc.gz"]


@pytest.mark.parametrize("rel", REAL_MAPS)
def test_real_maps_match_gemmi(rel):
    path = require_data("maps", *rel.split("/"))
    m = read_map(path)
    assert np.all(np.isfinite(m.data))
    assert_matches_gemmi(path, m, n_samples=60)


# -- geometry and sampling --------------------------------------------------------------------

def test_index_world_round_trip_and_extent(iota_map):
    m = iota_map()
    rng = np.random.default_rng(3)
    ijk = rng.uniform(-5, 12, size=(50, 3))
    np.testing.assert_allclose(m.world_to_index(m.index_to_world(ijk)), ijk, atol=1e-12)
    np.testing.assert_allclose(m.index_to_world([1, 2, 3]), np.array([-3.0, 4.5, 10.0]) + (1.0, 3.0, 6.0))
    lo, hi = m.extent_A
    np.testing.assert_allclose(lo, m.origin)
    np.testing.assert_allclose(hi, m.origin + (np.array(IOTA_N_XYZ) - 1) * (1.0, 1.5, 2.0))
    x, y, z = m.grid_coordinates()
    assert (len(x), len(y), len(z)) == IOTA_N_XYZ
    assert m.contains(np.array([lo, hi, (lo + hi) / 2, hi + 0.1])).tolist() == [True, True, True, False]


def test_interpolate_linear_function_is_exact():
    m, f = linear_map()
    rng = np.random.default_rng(4)
    lo, hi = m.extent_A
    pts = rng.uniform(lo, hi, size=(500, 3))
    np.testing.assert_allclose(m.interpolate(pts), f(pts), rtol=1e-5, atol=1e-4)
    # grid points themselves, via world coordinates
    k, j, i = 3, 5, 7
    assert m.interpolate(m.index_to_world([i, j, k]))[0] == pytest.approx(m.data[k, j, i], abs=1e-5)


def test_interpolate_outside_gets_fill(iota_map):
    m = iota_map()
    lo, hi = m.extent_A
    outside = np.array([lo - 1.0, hi + 1.0, [lo[0] - 5, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2]])
    np.testing.assert_array_equal(m.interpolate(outside, outside=-7.5), [-7.5, -7.5, -7.5])
    np.testing.assert_array_equal(m.interpolate(outside), [0.0, 0.0, 0.0])
    # iota is linear in the indices: interior points interpolate exactly
    ijk = np.array([[0.25, 1.5, 2.75], [3.9, 5.1, 0.2]])
    np.testing.assert_allclose(m.interpolate(m.index_to_world(ijk)), iota_value(*ijk.T), rtol=1e-6)


def test_around_points_covers_points_on_a_shared_lattice():
    rng = np.random.default_rng(5)
    pts = rng.uniform(-20, 30, size=(40, 3))
    m = DensityMap.around_points(pts, 1.25, 4.0)
    assert np.all(m.contains(pts, margin_A=-4.0 + 1e-9))
    np.testing.assert_allclose(m.origin / 1.25, np.round(m.origin / 1.25), atol=1e-9)
    lo, hi = m.extent_A
    assert np.all(lo <= pts.min(0) - 4.0 + 1e-9) and np.all(lo > pts.min(0) - 4.0 - 1.25)
    assert np.all(hi >= pts.max(0) + 4.0 - 1e-9) and np.all(hi < pts.max(0) + 4.0 + 1.25)
    assert not m.data.any()


# -- grid operations keep world positions -----------------------------------------------------

def test_crop_keeps_world_positions():
    m, f = linear_map()
    c = crop(m, (2, 1, 3), (4, 5, 2))
    assert c.shape == (2, 5, 4)
    np.testing.assert_array_equal(c.data, m.data[3:5, 1:6, 2:6])
    np.testing.assert_allclose(c.data, f(world_of_all_voxels(c)), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(c.origin, m.index_to_world([2, 1, 3]))


def test_crop_clips_at_both_edges():
    m, f = linear_map()   # 9 x 8 x 7 voxels
    c = crop(m, (-2, 1, 5), (4, 3, 10))
    # x: requested -2..1 -> 0..1; z: 5..14 -> 5..6
    assert tuple(c.shape_xyz) == (2, 3, 2)
    np.testing.assert_allclose(c.origin, m.index_to_world([0, 1, 5]))
    np.testing.assert_allclose(c.data, f(world_of_all_voxels(c)), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError):
        crop(m, (20, 0, 0), (3, 3, 3))


def test_crop_to_points_contains_points():
    m, f = linear_map(n_xyz=(30, 25, 20))
    lo = m.extent_A[0]
    rng = np.random.default_rng(6)
    pts = rng.uniform(lo + 5, lo + 9, size=(10, 3))
    c = crop_to_points(m, pts, margin_A=2.0)
    assert np.all(c.contains(pts, margin_A=-2.0 + 1e-9))
    clo, chi = c.extent_A
    assert np.all(clo > pts.min(0) - 2.0 - m.voxel_size - 1e-9)
    assert np.all(chi < pts.max(0) + 2.0 + m.voxel_size + 1e-9)
    np.testing.assert_allclose(c.data, f(world_of_all_voxels(c)), rtol=1e-5, atol=1e-4)
    # points near the low corner: the box is clipped to the map, not shifted
    edge = crop_to_points(m, lo[None] + 0.1, margin_A=2.0)
    np.testing.assert_allclose(edge.origin, m.origin)
    assert np.all(edge.extent_A[1] <= lo + 2.1 + m.voxel_size)


def test_pad_keeps_world_positions():
    m, f = linear_map()
    p = pad(m, (1, 2, 3), (0, 1, 2), value=-9.0)
    assert tuple(p.shape_xyz) == tuple(m.shape_xyz + (1, 3, 5))
    np.testing.assert_allclose(p.origin, m.origin - np.array([1, 2, 3]) * m.voxel_size)
    inner = crop(p, (1, 2, 3), m.shape_xyz)
    np.testing.assert_array_equal(inner.data, m.data)
    np.testing.assert_allclose(inner.origin, m.origin, atol=1e-12)
    np.testing.assert_allclose(inner.data, f(world_of_all_voxels(inner)), rtol=1e-5, atol=1e-4)
    assert p.data[0, 0, 0] == -9.0 and p.data[-1, -1, -1] == -9.0
    assert np.count_nonzero(p.data == -9.0) == p.data.size - m.data.size
    assert tuple(pad(m, 2).shape_xyz) == tuple(m.shape_xyz + 4)
    with pytest.raises(ValueError):
        pad(m, -1)


def _gaussian_map(voxel=(1.0, 0.9, 1.1), n_xyz=(32, 30, 28), origin=(-15.0, -13.0, -14.0),
                  centre=(0.5, -0.3, 0.2), sigma=4.0):
    def g(xyz):
        d2 = np.sum((np.asarray(xyz) - centre) ** 2, axis=-1)
        return np.exp(-d2 / (2 * sigma ** 2))
    m = DensityMap(np.zeros(n_xyz[::-1], np.float32), voxel, origin)
    return m.with_data(g(world_of_all_voxels(m)).astype(np.float32)), g


def _trilinear_bound(voxel, sigma=4.0):
    """Trilinear error bound for the unit Gaussian: sum_a h_a^2 / 8 * max|d2f/da2| (= 1 / sigma^2)."""
    return float(np.sum(np.square(voxel)) / 8.0 / sigma ** 2)


def test_interpolate_gaussian_linear_and_cubic():
    m, g = _gaussian_map()
    rng = np.random.default_rng(7)
    pts = rng.uniform(-8, 8, size=(400, 3))     # well inside the grid
    np.testing.assert_allclose(m.interpolate(pts), g(pts), atol=_trilinear_bound(m.voxel_size))
    np.testing.assert_allclose(m.interpolate(pts, order=3), g(pts), atol=2e-3)


@pytest.mark.parametrize("new_voxel", [0.7, (1.3, 0.6, 2.0), 2.0])
def test_resample_matches_analytic_gaussian(new_voxel):
    m, g = _gaussian_map()
    r = resample(m, new_voxel)
    np.testing.assert_allclose(r.voxel_size, np.broadcast_to(new_voxel, (3,)))
    np.testing.assert_allclose(r.origin, m.origin)
    # same extent (never beyond the original grid, less than one new voxel short)
    assert np.all(r.extent_A[1] <= m.extent_A[1] + 1e-9)
    assert np.all(r.extent_A[1] > m.extent_A[1] - r.voxel_size)
    # values are interpolated from the old grid: trilinear error bound of the OLD voxel size
    np.testing.assert_allclose(r.data, g(world_of_all_voxels(r)), atol=_trilinear_bound(m.voxel_size))
    r3 = resample(m, new_voxel, order=3)
    np.testing.assert_allclose(r3.data, g(world_of_all_voxels(r3)), atol=2e-3)


def test_resample_same_voxel_is_identity():
    m, _ = _gaussian_map()
    r = resample(m, m.voxel_size)
    assert r.same_grid(m)
    np.testing.assert_array_equal(r.data, m.data)


def test_normalise_and_statistics(iota_map):
    m = iota_map()
    d = m.data.astype(np.float64)
    s = m.statistics()
    assert s["shape_zyx"] == list(m.shape)
    assert s["min"] == d.min() and s["max"] == d.max()
    assert s["mean"] == pytest.approx(d.mean()) and s["std"] == pytest.approx(d.std())
    assert s["rms"] == pytest.approx(np.sqrt((d ** 2).mean()))
    np.testing.assert_allclose(s["box_size_A"], np.array(IOTA_N_XYZ) * (1.0, 1.5, 2.0))
    n = normalise(m)
    assert n.data.mean() == pytest.approx(0.0, abs=1e-6)
    assert n.data.std() == pytest.approx(1.0, abs=1e-6)
    assert n.same_grid(m)
    np.testing.assert_array_equal(m.data, iota_zyx())   # input untouched
    with pytest.raises(ValueError, match="zero variance"):
        normalise(m.with_data(np.ones(m.shape, np.float32)))


def test_density_map_validation():
    with pytest.raises(ValueError):
        DensityMap(np.zeros((2, 3)), 1.0, 0.0)
    with pytest.raises(ValueError):
        DensityMap(np.zeros((2, 3, 0)), 1.0, 0.0)
    with pytest.raises(ValueError):
        DensityMap(np.zeros((2, 3, 4)), (1.0, 0.0, 1.0), 0.0)
    with pytest.raises(ValueError):
        DensityMap(np.zeros((2, 3, 4)), 1.0, (0.0, np.nan, 0.0))
    m = DensityMap(np.zeros((2, 3, 4), np.float64), 1.5, 0.0)
    assert m.data.dtype == np.float32
    np.testing.assert_array_equal(m.voxel_size, (1.5, 1.5, 1.5))
    with pytest.raises(ValueError):
        m.with_data(np.zeros((3, 3, 4)))


# -- bad input --------------------------------------------------------------------------------

def _iota_bytes(tmp_path) -> bytes:
    return write_raw_iota(tmp_path / "good.mrc").read_bytes()


def _with_word(raw: bytes, word: int, value, fmt: str = "<i") -> bytes:
    """``raw`` with 32-bit header word ``word`` (0-based) replaced."""
    b = bytearray(raw)
    b[4 * word:4 * word + 4] = struct.pack(fmt, value)
    return bytes(b)


def _bad_files(tmp_path):
    """(file name, bytes or None, expected problem regex) for every bad-input case."""
    raw = _iota_bytes(tmp_path)
    gz = gzip.compress(raw)
    values = np.frombuffer(raw[1024:], np.float32).copy()
    values[7] = np.nan
    with_nan = raw[:1024] + values.tobytes()
    return [
        ("missing.mrc", None, "not found"),
        ("notes.txt", raw, "unknown map file type"),
        ("noext", raw, "unknown map file type"),
        ("short.mrc", raw[:700], "too short"),
        ("empty.map", b"", "too short"),
        ("truncated.mrc", raw[:-4], "data block"),
        ("nx_too_big.mrc", _with_word(raw, 0, 6), "data block"),
        ("nx_too_small.mrc", _with_word(raw, 0, 4), "does not match the header"),
        ("nx_zero.mrc", _with_word(raw, 0, 0)[:1024], "empty"),
        ("nx_negative.mrc", _with_word(raw, 0, -5), "not a valid MRC"),
        ("bad_mode.mrc", _with_word(raw, 3, 7), "mode"),
        ("nan.mrc", with_nan, "non-finite"),
        ("corrupt_deflate.mrc.gz", gz[:20] + bytes(200) + gz[220:], "cannot read map file"),
        ("truncated.mrc.gz", gz[: len(gz) // 2], "cannot read map file"),
        ("bad_crc.mrc.gz", gz[:-8] + b"\0" * 8, "cannot read map file"),
        ("mapc_4.mrc", _with_word(raw, 16, 4), "axis order"),
        ("mapc_0.mrc", _with_word(raw, 16, 0), "axis order"),
        ("mapc_dup.mrc", _with_word(raw, 17, 1), "axis order"),
        ("cell_zero.mrc", _with_word(_with_word(raw, 10, 0.0, "<f"), 11, 0.0, "<f"), "unit cell"),
        ("non_orthogonal.mrc", _with_word(raw, 14, 100.0, "<f"), "non-orthogonal"),
        ("garbage.map", b"this is not a map\n" * 100, "not a valid MRC"),
        # headers claiming gigabytes must fail fast with a message, not MemoryError/OverflowError
        ("huge_claim.mrc", _with_word(_with_word(_with_word(raw, 0, 2 ** 30), 1, 2 ** 30), 2, 2 ** 30),
         "data block"),
        ("huge_ext_header.mrc", _with_word(raw, 23, 2 ** 31 - 1), "extended header"),
        ("volume_stack_mz0.mrc", _with_word(_with_word(raw, 22, 401), 9, 0), "not a valid MRC"),
    ]


def test_bad_map_inputs_raise_input_error_naming_file(tmp_path):
    cases = _bad_files(tmp_path)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for name, content, problem in cases:
        path = bad_dir / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(InputError, match=problem) as err:
            read_map(path)
        assert str(path) in str(err.value), name
        assert err.value.path == str(path)


def test_volume_stack_of_one_volume_reads(tmp_path):
    """ispg 401 with mz = nz (one volume in a volume stack) is just that volume."""
    raw = _iota_bytes(tmp_path)
    path = tmp_path / "stack1.mrc"
    path.write_bytes(_with_word(raw, 22, 401))
    m = read_map(path)
    np.testing.assert_array_equal(m.data, iota_zyx())


def test_complex_map_rejected(tmp_path):
    path = tmp_path / "complex.mrc"
    with mrcfile.new(str(path)) as mrc:
        mrc.set_data(np.ones((2, 3, 4), np.complex64))
    with pytest.raises(InputError, match="complex") as err:
        read_map(path)
    assert str(path) in str(err.value)


def test_old_header_quirks_still_read(tmp_path):
    """No 'MAP ' tag and a zero machine stamp (old CCP4 files) read with a warning, not an error."""
    raw = _iota_bytes(tmp_path)
    quirky = bytearray(raw)
    quirky[208:212] = b"\0\0\0\0"     # word 53: 'MAP '
    quirky[212:216] = b"\0\0\0\0"     # word 54: machine stamp
    path = tmp_path / "old.map"
    path.write_bytes(bytes(quirky))
    m = read_map(path)
    np.testing.assert_array_equal(m.data, iota_zyx())


def test_is_map_path():
    assert is_map_path("a.mrc") and is_map_path("a.MAP.gz") and is_map_path("x/y.ccp4")
    assert not is_map_path("a.pdb") and not is_map_path("a.gz") and not is_map_path("map")


# -- no partial output ------------------------------------------------------------------------

def test_failed_write_leaves_nothing(tmp_path, iota_map):
    m = iota_map()
    with pytest.raises(InputError, match="unknown map file type") as err:
        write_map(tmp_path / "out.txt", m)
    assert str(tmp_path / "out.txt") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_exception_inside_atomic_path_leaves_nothing(tmp_path):
    target = tmp_path / "out.mrc"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".mrc") and tmp != target
        tmp.write_bytes(b"half a file")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    # an existing target survives a failed rewrite untouched
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"new, partial")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_write_map_failing_midway_leaves_old_file(tmp_path, iota_map, monkeypatch):
    target = tmp_path / "m.mrc"
    write_map(target, iota_map())
    before = target.read_bytes()

    import emforge.maps as maps_mod

    class Boom(Exception):
        pass

    real_new = mrcfile.new

    def failing_new(name, *args, **kwargs):
        mrc = real_new(name, *args, **kwargs)
        mrc.set_data(np.zeros((2, 2, 2), np.float32))
        mrc.close()                         # a complete-looking temp file exists now
        raise Boom("disk full")

    monkeypatch.setattr(maps_mod.mrcfile, "new", failing_new)
    with pytest.raises(Boom):
        write_map(target, iota_map(origin=(0.0, 0.0, 0.0)))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mrc"]
