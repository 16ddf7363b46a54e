"""Density maps: one frame convention, MRC/CCP4 input and output, resampling.

Frame (DESIGN.md §3)
--------------------
``DensityMap.data`` is a float32 array indexed ``[z, y, x]``; ``voxel_size`` and
``origin`` are (x, y, z) in Å, ``origin`` being the world position of voxel
``[0, 0, 0]``. The world position of voxel ``[k, j, i]`` is::

    origin + (i, j, k) * voxel_size

Reading an MRC/CCP4 file
------------------------
* ``mapc/mapr/maps`` say which world axis (1=X, 2=Y, 3=Z) runs along the file's
  columns, rows and sections; the data are transposed to ``[z, y, x]``.
* ``nxstart/nystart/nzstart`` are the first column/row/section indices (file
  order) in voxels; ``origin`` (header words 50-52) is in Å along X, Y, Z.
  Both are honoured: world origin = header origin + start * voxel size.
* voxel size = cell lengths / sampling (``mx, my, mz``), both along X, Y, Z.

Writing uses the canonical order (columns=X) unless asked otherwise, and stores
the origin as integer start indices when it is a whole number of voxels (what
CCP4 programs and gemmi read), otherwise in the header origin with zero starts.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
from scipy import ndimage

from emforge.atomic import atomic_path
from emforge.errors import InputError, require_positive
from emforge.fileformats import check_file_type, format_suffix

log = logging.getLogger(__name__)

MAP_SUFFIXES = (".mrc", ".map", ".ccp4", ".mrcs")

_AXIS_ORDERS = {"xyz": (1, 2, 3), "xzy": (1, 3, 2), "yxz": (2, 1, 3),
                "yzx": (2, 3, 1), "zxy": (3, 1, 2), "zyx": (3, 2, 1)}


@dataclass(frozen=True, eq=False)
class DensityMap:
    """A density map on a regular orthogonal grid.

    Attributes
    ----------
    data : ndarray, shape (nz, ny, nx), float32
        Density values indexed ``[z, y, x]``.
    voxel_size : ndarray, shape (3,), float64
        Voxel edge lengths (x, y, z) in Å.
    origin : ndarray, shape (3,), float64
        World position (x, y, z) in Å of voxel ``[0, 0, 0]``.
    """

    data: np.ndarray
    voxel_size: np.ndarray
    origin: np.ndarray

    def __post_init__(self) -> None:
        data = np.ascontiguousarray(self.data, dtype=np.float32)
        if data.ndim != 3 or min(data.shape) < 1:
            raise ValueError(f"map data must be a non-empty 3D array, got shape {data.shape}")
        voxel = np.broadcast_to(np.asarray(self.voxel_size, dtype=np.float64), (3,)).copy()
        origin = np.broadcast_to(np.asarray(self.origin, dtype=np.float64), (3,)).copy()
        if not np.all(np.isfinite(voxel)) or np.any(voxel <= 0):
            raise ValueError(f"voxel size must be finite and > 0, got {voxel}")
        if not np.all(np.isfinite(origin)):
            raise ValueError(f"origin must be finite, got {origin}")
        for arr in (voxel, origin):
            arr.setflags(write=False)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "voxel_size", voxel)
        object.__setattr__(self, "origin", origin)

    # -- geometry ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape (nz, ny, nx)."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def shape_xyz(self) -> np.ndarray:
        """Grid size along (x, y, z), shape (3,) int."""
        return np.array(self.data.shape[::-1], dtype=np.int64)

    @property
    def extent_A(self) -> np.ndarray:
        """World positions of the first and last voxel centres, shape (2, 3) Å, rows (min, max)."""
        return np.stack([self.origin, self.origin + (self.shape_xyz - 1) * self.voxel_size])

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Map (..., 3) voxel indices ordered (i, j, k) = (x, y, z) to world coordinates in Å."""
        return self.origin + np.asarray(ijk, dtype=np.float64) * self.voxel_size

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map (..., 3) world coordinates in Å to fractional voxel indices (i, j, k) = (x, y, z)."""
        return (np.asarray(xyz, dtype=np.float64) - self.origin) / self.voxel_size

    def grid_coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinate vectors along x, y, z (each 1D, Å), for broadcasting over ``data``."""
        nx, ny, nz = self.shape_xyz
        return tuple(self.origin[a] + np.arange(n) * self.voxel_size[a]  # type: ignore[return-value]
                     for a, n in enumerate((nx, ny, nz)))

    def contains(self, xyz: np.ndarray, margin_A: float = 0.0) -> np.ndarray:
        """Boolean (N,) mask: which points lie inside the grid box (grown by ``margin_A``)."""
        lo, hi = self.extent_A
        p = np.atleast_2d(xyz)
        return np.all((p >= lo - margin_A) & (p <= hi + margin_A), axis=1)

    def same_grid(self, other: "DensityMap", atol_A: float = 1e-3) -> bool:
        """True when ``other`` has the same shape, voxel size and origin (within ``atol_A``)."""
        return (self.shape == other.shape
                and np.allclose(self.voxel_size, other.voxel_size, atol=atol_A)
                and np.allclose(self.origin, other.origin, atol=atol_A))

    def with_data(self, data: np.ndarray) -> "DensityMap":
        """A map on the same grid carrying ``data`` (shape must match)."""
        if data.shape != self.shape:
            raise ValueError(f"data shape {data.shape} does not match grid {self.shape}")
        return DensityMap(data, self.voxel_size, self.origin)

    @classmethod
    def empty_like(cls, other: "DensityMap") -> "DensityMap":
        """A zero-filled map on the grid of ``other``."""
        return cls(np.zeros(other.shape, np.float32), other.voxel_size, other.origin)

    @classmethod
    def around_points(cls, xyz: np.ndarray, voxel_size_A: float, margin_A: float) -> "DensityMap":
        """A zero-filled map whose grid covers the points ``xyz`` (N, 3) plus ``margin_A`` on each side.

        The origin is snapped to a multiple of the voxel size so that maps made
        around different models share grid points.
        """
        voxel = require_positive(voxel_size_A, "voxel size (Å)")
        p = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        lo = np.floor((p.min(axis=0) - margin_A) / voxel) * voxel
        hi = np.ceil((p.max(axis=0) + margin_A) / voxel) * voxel
        n = np.round((hi - lo) / voxel).astype(np.int64) + 1
        return cls(np.zeros(tuple(n[::-1]), np.float32), voxel, lo)

    # -- sampling ---------------------------------------------------------------------------
    def interpolate(self, xyz: np.ndarray, order: int = 1, outside: float = 0.0) -> np.ndarray:
        """Values at world points ``xyz`` (N, 3) Å; trilinear by default (``order=1``).

        Points outside the grid get ``outside``.
        """
        ijk = self.world_to_index(np.atleast_2d(xyz))
        coords = ijk[:, ::-1].T  # (3, N) in [z, y, x] axis order
        return ndimage.map_coordinates(self.data, coords, order=order, mode="constant",
                                       cval=outside, prefilter=order > 1)

    # -- statistics -------------------------------------------------------------------------
    def statistics(self) -> dict:
        """Summary numbers of the map: shape, voxel size, origin, min/max/mean/std, rms."""
        d = self.data.astype(np.float64)
        return {
            "shape_zyx": list(self.shape),
            "voxel_size_A": self.voxel_size.tolist(),
            "origin_A": self.origin.tolist(),
            "box_size_A": (self.shape_xyz * self.voxel_size).tolist(),
            "min": float(d.min()), "max": float(d.max()),
            "mean": float(d.mean()), "std": float(d.std()),
            "rms": float(np.sqrt(np.mean(d * d))),
        }


# -- grid operations ----------------------------------------------------------------------------

def crop(m: DensityMap, start_xyz, size_xyz) -> DensityMap:
    """Sub-box of ``m`` starting at voxel ``start_xyz`` (i, j, k) with ``size_xyz`` voxels.

    The box is clipped to the grid; the origin moves so world positions are unchanged.
    """
    start_req = np.asarray(start_xyz, dtype=np.int64)
    # the stop comes from the requested (unclipped) start, so a box hanging over the low
    # edge is clipped there instead of being shifted up by the overhang
    start = np.clip(start_req, 0, m.shape_xyz)
    stop = np.clip(start_req + np.asarray(size_xyz, dtype=np.int64), 0, m.shape_xyz)
    if np.any(stop <= start):
        raise ValueError("crop box does not overlap the map")
    data = m.data[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]]
    return DensityMap(data.copy(), m.voxel_size, m.index_to_world(start))


def crop_to_points(m: DensityMap, xyz: np.ndarray, margin_A: float) -> DensityMap:
    """Crop ``m`` to the bounding box of points ``xyz`` (N, 3) Å grown by ``margin_A``."""
    p = np.atleast_2d(xyz)
    lo = np.floor(m.world_to_index(p.min(axis=0) - margin_A)).astype(np.int64)
    hi = np.ceil(m.world_to_index(p.max(axis=0) + margin_A)).astype(np.int64) + 1
    return crop(m, lo, hi - lo)


def pad(m: DensityMap, before_xyz, after_xyz=None, value: float = 0.0) -> DensityMap:
    """Add voxels around ``m`` (counts per axis x, y, z); the origin moves with the lower pad."""
    before = np.broadcast_to(np.asarray(before_xyz, dtype=np.int64), (3,))
    after = before if after_xyz is None else np.broadcast_to(np.asarray(after_xyz, dtype=np.int64), (3,))
    if np.any(before < 0) or np.any(after < 0):
        raise ValueError("pad widths must be >= 0")
    widths = [(int(before[a]), int(after[a])) for a in (2, 1, 0)]
    data = np.pad(m.data, widths, mode="constant", constant_values=value)
    return DensityMap(data, m.voxel_size, m.origin - before * m.voxel_size)


def resample(m: DensityMap, voxel_size_A, order: int = 1) -> DensityMap:
    """Resample ``m`` onto a grid with a new voxel size (Å, scalar or (x, y, z)).

    The new grid starts at the same origin and covers the same extent. Values are
    interpolated (trilinear by default, cubic spline with ``order=3``). When
    coarsening by more than about 1.5x, low-pass the map first to avoid aliasing.
    """
    new_voxel = np.broadcast_to(np.asarray(voxel_size_A, dtype=np.float64), (3,))
    for v in new_voxel:
        require_positive(v, "voxel size (Å)")
    length = (m.shape_xyz - 1) * m.voxel_size
    n_new = np.floor(length / new_voxel + 1e-6).astype(np.int64) + 1
    scale = new_voxel / m.voxel_size  # old voxels per new voxel, per axis (x, y, z)
    axes = [np.arange(n_new[a]) * scale[a] for a in (2, 1, 0)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
    coords = np.broadcast_arrays(zz, yy, xx)
    data = ndimage.map_coordinates(m.data, coords, order=order, mode="nearest", prefilter=order > 1)
    return DensityMap(data.astype(np.float32), new_voxel, m.origin)


def normalise(m: DensityMap) -> DensityMap:
    """Map with zero mean and unit standard deviation (raises on zero variance)."""
    d = m.data.astype(np.float64)
    std = d.std()
    if not std > 0:
        raise ValueError("map has zero variance")
    return m.with_data(((d - d.mean()) / std).astype(np.float32))


# -- MRC / CCP4 input and output ----------------------------------------------------------------

def is_map_path(path: str | os.PathLike) -> bool:
    """True when the file name has a map suffix (.mrc, .map, .ccp4, .mrcs, optionally .gz)."""
    return format_suffix(path) in MAP_SUFFIXES


def read_map(path: str | os.PathLike) -> DensityMap:
    """Read an MRC/CCP4 map (optionally gzipped) into the emforge frame.

    Raises
    ------
    InputError
        Unknown suffix, missing/unreadable/truncated file, inconsistent header,
        unsupported data mode, or non-finite values.
    """
    path = Path(path)
    check_file_type(path, MAP_SUFFIXES, "map")
    if not path.is_file():
        raise InputError("map file not found", path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # zlib.error: corrupt deflate data
        raise InputError(f"cannot read map file ({exc})", path) from None
    if len(raw) < 1024:
        raise InputError(f"file is too short to hold an MRC header ({len(raw)} bytes)", path)

    header, data = _parse_mrc(raw, path)
    return _to_frame(header, data, path)


class _BoundedMrcInterpreter(mrcfile.mrcinterpreter.MrcInterpreter):
    """MrcInterpreter that never allocates more than the bytes left in its stream.

    mrcfile allocates the extended header and data block sizes the header claims
    before reading; a garbage or corrupt header can claim gigabytes (slow, or a
    MemoryError/OverflowError instead of a clear message). Capping the request at
    what the stream holds keeps mrcfile's own "expected N bytes but could only read
    M" check working, since M is then always below N.
    """

    def _read_bytearray_from_stream(self, number_of_bytes):
        stream = self._iostream
        pos = stream.tell()
        left = stream.seek(0, io.SEEK_END) - pos
        stream.seek(pos)
        n = int(number_of_bytes)
        return super()._read_bytearray_from_stream(min(n, left) if n > 0 else n)


def _parse_mrc(raw: bytes, path: Path):
    """Header and data block of an MRC file held in memory.

    mrcfile runs in permissive mode so that harmless header quirks of old files
    (no 'MAP ' tag, unusual machine stamp) only log a warning; a data block that
    does not match the header sizes, in either direction, is an error.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _BoundedMrcInterpreter(io.BytesIO(raw), permissive=True) as mrc:
                header = mrc.header.copy() if mrc.header is not None else None
                data = None if mrc.data is None else np.asarray(mrc.data)
                ext_bytes = int(mrc.header.nsymbt) if mrc.header is not None else 0
        except (ValueError, TypeError, OSError, ArithmeticError) as exc:  # ZeroDivision: ispg 401, mz 0
            # the warnings seen so far say what is wrong ("Map ID string not found", ...);
            # the exception itself can be as opaque as "a bytes-like object is required"
            detail = "; ".join([str(w.message) for w in caught] + [str(exc)])
            raise InputError(f"not a valid MRC/CCP4 map ({detail})", path) from None
    messages = [str(w.message) for w in caught]
    if header is None or data is None:
        detail = "; ".join(messages) or "header does not describe a data block"
        raise InputError(f"not a valid MRC/CCP4 map ({detail})", path)
    for msg in messages:
        log.warning("%s: %s", path, msg)
    expected = 1024 + ext_bytes + data.nbytes
    if len(raw) != expected:
        raise InputError(f"file size {len(raw)} bytes does not match the header "
                         f"({expected} bytes for {int(header.nx)} x {int(header.ny)} x {int(header.nz)} "
                         f"voxels of {data.dtype})", path)
    return header, data


def _to_frame(header, data: np.ndarray, path: Path) -> DensityMap:
    n_crs = np.array([int(header.nx), int(header.ny), int(header.nz)])
    if np.any(n_crs < 1):  # else DensityMap raises a ValueError that does not name the file
        raise InputError(f"header grid size nx, ny, nz = {tuple(n_crs.tolist())} is empty", path)
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim == 4 and data.shape[0] == 1:  # a volume stack (ispg 401+) holding one volume
        data = data[0]
    if data.ndim != 3 or tuple(data.shape) != tuple(n_crs[::-1]):
        raise InputError(f"data block shape {data.shape} does not match header sizes "
                         f"{tuple(n_crs.tolist())}", path)
    axis_crs = (int(header.mapc), int(header.mapr), int(header.maps))
    if sorted(axis_crs) != [1, 2, 3]:
        raise InputError(f"invalid axis order mapc/mapr/maps = {axis_crs}", path)
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise InputError(f"unsupported data type {data.dtype} (complex maps are not density)", path)

    # data axes are (section, row, column) = world axes (maps, mapr, mapc); reorder to (Z, Y, X)
    file_axes = [axis_crs[2], axis_crs[1], axis_crs[0]]
    data_zyx = np.transpose(data, [file_axes.index(3), file_axes.index(2), file_axes.index(1)])
    data_zyx = np.ascontiguousarray(data_zyx, dtype=np.float32)
    if not np.all(np.isfinite(data_zyx)):
        n_bad = int(np.count_nonzero(~np.isfinite(data_zyx)))
        raise InputError(f"map contains {n_bad} non-finite values (NaN or infinity)", path)

    start_crs = np.array([int(header.nxstart), int(header.nystart), int(header.nzstart)])
    start_xyz = np.zeros(3)
    for file_pos, world_axis in enumerate(axis_crs):
        start_xyz[world_axis - 1] = start_crs[file_pos]

    angles = np.array([float(header.cellb.alpha), float(header.cellb.beta), float(header.cellb.gamma)])
    if np.all(angles > 0) and not np.allclose(angles, 90.0, atol=1e-3):
        raise InputError(f"non-orthogonal unit cell (angles {angles.round(3).tolist()} deg); "
                         "cryo-EM maps are orthogonal and emforge supports only those", path)
    cell = np.array([float(header.cella.x), float(header.cella.y), float(header.cella.z)])
    sampling = np.array([int(header.mx), int(header.my), int(header.mz)])
    n_xyz = np.array(data_zyx.shape[::-1])
    if np.all(cell > 0) and np.all(sampling > 0):
        voxel = cell / sampling
    elif np.all(cell > 0):
        log.warning("%s: sampling mx/my/mz unset; using the grid size for the voxel size", path)
        voxel = cell / n_xyz
    else:
        raise InputError(f"unit cell {cell.tolist()} is not positive; voxel size unknown", path)

    header_origin = np.array([float(header.origin.x), float(header.origin.y), float(header.origin.z)])
    if not np.all(np.isfinite(header_origin)):
        header_origin = np.zeros(3)
    origin = header_origin + start_xyz * voxel
    return DensityMap(data_zyx, voxel, origin)


def write_map(path: str | os.PathLike, m: DensityMap, axis_order: str = "xyz",
              label: str = "emforge") -> Path:
    """Write ``m`` as an MRC2014 file (mode 2, float32), atomically; ``.gz`` compresses.

    Parameters
    ----------
    axis_order
        World axes along (columns, rows, sections): ``"xyz"`` (default, canonical)
        or any permutation such as ``"zxy"``; every order reads back identically.
    """
    path = Path(path)
    check_file_type(path, MAP_SUFFIXES, "map")
    if axis_order not in _AXIS_ORDERS:
        raise ValueError(f"axis_order must be one of {sorted(_AXIS_ORDERS)}, got {axis_order!r}")
    axis_crs = _AXIS_ORDERS[axis_order]

    # data[z, y, x] -> file array (section, row, column) = world axes (maps, mapr, mapc)
    zyx_pos = {3: 0, 2: 1, 1: 2}
    data_file = np.ascontiguousarray(
        np.transpose(m.data, [zyx_pos[axis_crs[2]], zyx_pos[axis_crs[1]], zyx_pos[axis_crs[0]]]),
        dtype=np.float32)

    start_float = m.origin / m.voxel_size
    start_int = np.round(start_float)
    if np.allclose(start_float, start_int, rtol=0.0, atol=1e-4):  # rtol=0: large starts stay exact
        start_xyz, header_origin = start_int.astype(np.int64), np.zeros(3)
    else:
        start_xyz, header_origin = np.zeros(3, np.int64), m.origin

    n_xyz = m.shape_xyz
    with atomic_path(path) as tmp:
        compression = "gzip" if path.suffix.lower() == ".gz" else None
        with mrcfile.new(tmp, overwrite=True, compression=compression) as mrc:
            mrc.set_data(data_file)
            h = mrc.header
            h.mapc, h.mapr, h.maps = axis_crs
            h.nxstart, h.nystart, h.nzstart = (int(start_xyz[a - 1]) for a in axis_crs)
            h.mx, h.my, h.mz = (int(v) for v in n_xyz)
            h.cella.x, h.cella.y, h.cella.z = (float(v) for v in n_xyz * m.voxel_size)
            h.origin.x, h.origin.y, h.origin.z = (float(v) for v in header_origin)
            mrc.update_header_stats()
            h.label[0] = label.encode("ascii", "replace")[:80]
            h.nlabl = 1
    return path
