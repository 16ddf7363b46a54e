"""Access to the shipped Top8000 validation tables (``emforge/data/top8000_validation.npz``).

The file is built by ``tools/build_geometry_tables.py`` (see its docstring for the layout and the
grid-header parsing); attribution in ``emforge/data/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

DATA_FILE = "top8000_validation.npz"


@dataclass(frozen=True, eq=False)
class GridTable:
    """An n-dimensional percentile grid with bin-centred values.

    ``values`` has shape (nbins_1, ..., nbins_n); bin k of dimension d is centred at
    ``lower[d] + (k + 0.5) * width[d]``; ``wrap[d]`` makes dimension d periodic with period
    ``upper[d] - lower[d]``.
    """

    name: str
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    nbins: np.ndarray
    wrap: np.ndarray

    @property
    def ndim(self) -> int:
        return int(len(self.nbins))

    @property
    def width(self) -> np.ndarray:
        return (self.upper - self.lower) / self.nbins

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Multilinear interpolation between bin centres at (n, ndim) points (degrees) -> (n,).

        This is the interpolation of MolProbity's ``NDimTable.valueAt`` and of cctbx's
        ``rama_eval``: each point takes the 2^ndim bin centres around it, weighted by the
        fractional distances; periodic dimensions wrap, others clamp to the edge bins.
        Only the first ``ndim`` columns of ``points`` are used (the Pro table is chi1 only).
        """
        pts = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, : self.ndim]
        n = len(pts)
        out = np.zeros(n)
        if n == 0:
            return out
        # position in "bin-centre units": bin k is centred at u = k
        u = (pts - self.lower) / self.width - 0.5
        k0 = np.floor(u)
        t = u - k0
        k0 = k0.astype(np.int64)
        for corner in range(1 << self.ndim):
            weight = np.ones(n)
            flat = np.zeros(n, np.int64)
            for d in range(self.ndim):
                bit = (corner >> d) & 1
                k = k0[:, d] + bit
                weight *= t[:, d] if bit else 1.0 - t[:, d]
                nb = int(self.nbins[d])
                k = np.mod(k, nb) if self.wrap[d] else np.clip(k, 0, nb - 1)
                flat = flat * nb + k
            out += weight * self.values.ravel()[flat]
        return out


@dataclass(frozen=True, eq=False)
class CentralValues:
    """Top8000 rotamer central values of one residue type (n rotamers, k chis)."""

    names: np.ndarray  # (n,) str
    n: np.ndarray  # (n,) int64
    freq_pct: np.ndarray  # (n,)
    chi_mean_deg: np.ndarray  # (n, k)
    chi_esd_deg: np.ndarray  # (n, k)


@cache
def _load() -> dict[str, np.ndarray]:
    ref = resources.files("emforge") / "data" / DATA_FILE
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def grid(key: str) -> GridTable:
    """A grid table by key, e.g. ``"rama_general"`` or ``"rota_leu"``."""
    return _grid(key)


@cache
def _grid(key: str) -> GridTable:
    z = _load()
    if f"{key}__values" not in z:
        raise KeyError(f"no grid table {key!r} in {DATA_FILE}")
    return GridTable(key, z[f"{key}__values"], z[f"{key}__lower"], z[f"{key}__upper"], z[f"{key}__nbins"],
                     z[f"{key}__wrap"])


@cache
def central_values(aa: str) -> CentralValues:
    """Rotamer central values for residue type ``aa`` ("ARG", ...)."""
    z = _load()
    p = f"cv_{aa}__"
    return CentralValues(z[p + "names"], z[p + "n"], z[p + "freq_pct"], z[p + "chi_mean_deg"], z[p + "chi_esd_deg"])


@cache
def mixture_calibration(aa: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(log-density knots, percentile knots, esd scale) of the Arg/Lys mixture percentile."""
    z = _load()
    return z[f"mix_{aa}__logdens"], z[f"mix_{aa}__pct"], float(z[f"mix_{aa}__esd_scale"])
