"""Masks around a model on a map grid: nearest-atom distances, hard and cosine-edged masks.

All distances are in Å in the world frame of the grid (anisotropic voxels are handled);
every function returns an array indexed ``[z, y, x]`` like ``DensityMap.data``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap
from emforge.models import AtomModel


@numba.njit(cache=True)
def _nearest_atom_distance(idx_xyz, voxel, cutoff_A, shape_zyx):
    """Distance (Å) from every grid point to its nearest atom, capped at ``cutoff_A``."""
    nz, ny, nx = shape_zyx
    out = np.full((nz, ny, nx), cutoff_A)
    vx, vy, vz = voxel[0], voxel[1], voxel[2]
    rx, ry, rz = cutoff_A / vx, cutoff_A / vy, cutoff_A / vz
    c2 = cutoff_A * cutoff_A
    for a in range(idx_xyz.shape[0]):
        cx, cy, cz = idx_xyz[a, 0], idx_xyz[a, 1], idx_xyz[a, 2]
        k0 = max(0, int(math.ceil(cz - rz)))
        k1 = min(nz - 1, int(math.floor(cz + rz)))
        j0 = max(0, int(math.ceil(cy - ry)))
        j1 = min(ny - 1, int(math.floor(cy + ry)))
        i0 = max(0, int(math.ceil(cx - rx)))
        i1 = min(nx - 1, int(math.floor(cx + rx)))
        for k in range(k0, k1 + 1):
            dz = (k - cz) * vz
            for j in range(j0, j1 + 1):
                dy = (j - cy) * vy
                dzy = dz * dz + dy * dy
                if dzy > c2:
                    continue
                for i in range(i0, i1 + 1):
                    dx = (i - cx) * vx
                    d2 = dzy + dx * dx
                    if d2 < c2:
                        d = math.sqrt(d2)
                        if d < out[k, j, i]:
                            out[k, j, i] = d
    return out


def nearest_atom_distance(model: AtomModel, like: DensityMap, cutoff_A: float) -> np.ndarray:
    """Distance (Å) from every grid point of ``like`` to the nearest atom, capped at ``cutoff_A``.

    Returns
    -------
    ndarray [z, y, x] float64.
    """
    cutoff = require_positive(cutoff_A, "distance cutoff (Å)")
    idx = np.ascontiguousarray(like.world_to_index(np.asarray(model.coords, dtype=np.float64)))
    return _nearest_atom_distance(idx, np.asarray(like.voxel_size, np.float64), cutoff,
                                  np.array(like.shape, np.int64))


def model_mask(model: AtomModel, like: DensityMap, radius_A: float) -> np.ndarray:
    """Boolean grid [z, y, x] on ``like``: grid points within ``radius_A`` of any atom."""
    radius = require_positive(radius_A, "mask radius (Å)")
    return nearest_atom_distance(model, like, radius * (1.0 + 1e-9) + 1e-9) <= radius


def soft_mask(model: AtomModel, like: DensityMap, radius_A: float, soft_edge_A: float) -> np.ndarray:
    """Cosine-edged mask around a model on the grid of ``like``.

    The mask is 1 within ``radius_A`` of any atom, falls as
    ``(1 + cos(pi (d - radius) / soft_edge)) / 2`` for atom distances ``d`` between
    ``radius_A`` and ``radius_A + soft_edge_A``, and is 0 beyond.

    Returns
    -------
    ndarray [z, y, x] float32 with values in [0, 1].
    """
    radius = require_positive(radius_A, "mask radius (Å)")
    edge = float(soft_edge_A)
    if not edge >= 0 or not math.isfinite(edge):
        raise InputError(f"soft edge must be a finite number >= 0 (Å), got {soft_edge_A!r}")
    d = nearest_atom_distance(model, like, radius + edge + 1e-6)
    out = np.zeros(like.shape, np.float32)
    out[d <= radius] = 1.0
    if edge > 0:
        ring = (d > radius) & (d < radius + edge)
        out[ring] = (0.5 * (1.0 + np.cos(np.pi * (d[ring] - radius) / edge))).astype(np.float32)
    return out
