"""Map preparation: read any MRC/CCP4 frame, check it is usable, estimate a contour.

The prepared map is written in the canonical frame (columns = X, origin kept), so
later steps never meet permuted axes. Checks stop with one clear
:class:`~emforge.errors.InputError` naming the file: non-finite values, a flat
map, a resolution finer than the grid can carry (below Nyquist, 2 voxels) or
absurdly coarse.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap, read_map, resample

log = logging.getLogger(__name__)

MAX_RESOLUTION_A = 50.0
PROTEIN_DENSITY_A3_PER_DA = 1.21  # partial specific volume of protein, Å^3 per Da


def check_resolution(resolution_A: float, voxel_size_A: np.ndarray, path=None) -> float:
    """Return the resolution if the grid can represent it; raise :class:`InputError` otherwise."""
    resolution = require_positive(resolution_A, "resolution (Å)")
    nyquist = 2.0 * float(np.max(voxel_size_A))
    if resolution < 0.98 * nyquist:
        raise InputError(f"resolution {resolution:g} Å is finer than the grid can carry "
                         f"(Nyquist limit 2 x voxel = {nyquist:.3g} Å)", path)
    if resolution > MAX_RESOLUTION_A:
        raise InputError(f"resolution {resolution:g} Å is coarser than {MAX_RESOLUTION_A:g} Å; "
                         "no atomic modelling is possible", path)
    return resolution


def contour_for_volume(m: DensityMap, volume_A3: float) -> float:
    """Threshold at which the map encloses ``volume_A3`` (highest-density voxels first)."""
    voxel_volume = float(np.prod(m.voxel_size))
    n = int(round(volume_A3 / voxel_volume))
    flat = np.sort(m.data.ravel())[::-1]
    n = min(max(n, 1), flat.size)
    return float(flat[n - 1])


def prepare_map(path: str | os.PathLike, resolution_A: float, voxel_size_A: float | None = None,
                expected_mass_Da: float | None = None) -> tuple[DensityMap, dict]:
    """Read, check and optionally resample a map; return it with a statistics record.

    Parameters
    ----------
    resolution_A
        Global resolution of the map in Å.
    voxel_size_A
        Resample to this voxel size (Å) if given.
    expected_mass_Da
        Mass of the molecule the map holds (from a model or sequence); enables a
        volume-based contour estimate at 1.21 Å^3/Da.

    Returns
    -------
    density_map
        The map in the canonical frame.
    stats
        JSON-ready dict: map statistics, resolution, Nyquist limit, contour estimates.
    """
    m = read_map(path)
    d = m.data.astype(np.float64)
    std = float(d.std())
    if not std > 0:
        raise InputError("map has zero variance (every voxel has the same value)", path)
    if voxel_size_A is not None:
        m = resample(m, voxel_size_A, order=1)
        log.info("resampled %s to %.3f Å voxels: grid %s", path, voxel_size_A, m.shape)
    resolution = check_resolution(resolution_A, m.voxel_size, path)
    stats = m.statistics()
    stats.update({
        "source": os.fspath(path),
        "resolution_A": resolution,
        "nyquist_A": 2.0 * float(np.max(m.voxel_size)),
        "contour_mean_plus_3std": stats["mean"] + 3.0 * stats["std"],
        "fraction_above_3std": float(np.mean(m.data > stats["mean"] + 3.0 * stats["std"])),
    })
    if expected_mass_Da is not None and expected_mass_Da > 0:
        volume = expected_mass_Da * PROTEIN_DENSITY_A3_PER_DA
        stats["expected_mass_Da"] = float(expected_mass_Da)
        stats["contour_for_expected_volume"] = contour_for_volume(m, volume)
    return m, stats
