"""Shared fixtures for the emforge test suite.

* ``shared_data`` (alias ``data_dir``): the shared real-data folder (``/work/shared/data``
  or ``$EMFORGE_TEST_DATA``); tests that need it are skipped with a clear reason when it is absent.
* Tiny "iota" maps: every voxel holds a distinct value that encodes its world
  indices, ``value = 100 * k + 10 * j + i`` for world voxel (i, j, k) = (x, y, z),
  on a non-cubic grid. They are written with raw :mod:`mrcfile` calls (never with
  emforge's writer) in any ``mapc/mapr/maps`` order, so reader frame bugs cannot hide.
"""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

DATA_DIR = Path(os.environ.get("EMFORGE_TEST_DATA", "/work/shared/data"))

#: all six (mapc, mapr, maps) axis orders; 1 = X, 2 = Y, 3 = Z
AXIS_ORDERS = [(1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1)]
AXIS_ORDER_NAMES = {"".join("xyz"[a - 1] for a in o): o for o in AXIS_ORDERS}

#: default iota grid size along (x, y, z): small, non-cubic, all different
IOTA_N_XYZ = (5, 7, 4)


def require_data(*parts: str) -> Path:
    """Path under the shared data folder, or skip the calling test if it is missing."""
    p = DATA_DIR.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not available: {p} (set EMFORGE_TEST_DATA to the data folder)")
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    return require_data()


@pytest.fixture(scope="session")
def data_dir(shared_data) -> Path:
    """Alias of :func:`shared_data`."""
    return shared_data


def iota_value(i, j, k):
    """Value of the iota map at world voxel (i, j, k) = (x, y, z) indices."""
    return 100.0 * np.asarray(k) + 10.0 * np.asarray(j) + np.asarray(i)


def iota_zyx(n_xyz=IOTA_N_XYZ) -> np.ndarray:
    """Iota data indexed [z, y, x] (the emforge frame), float32."""
    nx, ny, nz = n_xyz
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return iota_value(i, j, k).astype(np.float32)


def write_raw_iota(path, axis_crs=(1, 2, 3), n_xyz=IOTA_N_XYZ, start_xyz=(0, 0, 0),
                   sampling_xyz=None, cell_xyz=None, header_origin=(0.0, 0.0, 0.0),
                   dtype=np.float32) -> Path:
    """Write an iota map with raw mrcfile calls, independent of emforge's writer.

    Parameters
    ----------
    axis_crs
        (mapc, mapr, maps): the world axis (1=X, 2=Y, 3=Z) along columns, rows, sections.
    n_xyz, start_xyz
        Grid size and first index along the world axes X, Y, Z.
    sampling_xyz, cell_xyz
        ``mx, my, mz`` and the cell lengths (Å) along X, Y, Z; by default sampling = n
        and a cell giving voxel sizes (1.0, 1.5, 2.0) Å.
    header_origin
        MRC header words 50-52 (Å along X, Y, Z).
    """
    n_xyz = np.asarray(n_xyz)
    sampling_xyz = n_xyz if sampling_xyz is None else np.asarray(sampling_xyz)
    cell_xyz = sampling_xyz * np.array([1.0, 1.5, 2.0]) if cell_xyz is None else np.asarray(cell_xyz)
    mapc, mapr, maps = axis_crs
    n_c, n_r, n_s = n_xyz[mapc - 1], n_xyz[mapr - 1], n_xyz[maps - 1]
    # Fill the file array element by element from its (section, row, column) position:
    # no transposes, so the construction is obviously right.
    arr = np.empty((n_s, n_r, n_c), dtype=dtype)
    for s in range(n_s):
        for r in range(n_r):
            for c in range(n_c):
                w = [0, 0, 0]
                w[mapc - 1], w[mapr - 1], w[maps - 1] = c, r, s
                arr[s, r, c] = iota_value(*w)
    path = Path(path)
    compression = "gzip" if path.suffix == ".gz" else None
    with mrcfile.new(str(path), overwrite=True, compression=compression) as mrc:
        mrc.set_data(arr)
        h = mrc.header
        h.mapc, h.mapr, h.maps = axis_crs
        h.nxstart = start_xyz[mapc - 1]
        h.nystart = start_xyz[mapr - 1]
        h.nzstart = start_xyz[maps - 1]
        h.mx, h.my, h.mz = (int(v) for v in sampling_xyz)
        h.cella.x, h.cella.y, h.cella.z = (float(v) for v in cell_xyz)
        h.origin.x, h.origin.y, h.origin.z = (float(v) for v in header_origin)
        mrc.update_header_stats()
    return path


@pytest.fixture
def iota_map_file(tmp_path):
    """Factory: ``iota_map_file(name, **write_raw_iota_kwargs)`` -> path of a raw-written iota map."""
    def make(name="iota.mrc", **kwargs):
        return write_raw_iota(tmp_path / name, **kwargs)
    return make


@pytest.fixture
def iota_map():
    """Factory for an in-memory iota DensityMap with a non-cubic voxel and a non-zero origin."""
    from emforge.maps import DensityMap

    def make(n_xyz=IOTA_N_XYZ, voxel_size=(1.0, 1.5, 2.0), origin=(-3.0, 4.5, 10.0)):
        return DensityMap(iota_zyx(n_xyz), voxel_size, origin)
    return make
