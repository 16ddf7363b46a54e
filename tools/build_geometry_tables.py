#!/usr/bin/env python
"""Convert the Top8000 Ramachandran / rotamer reference data into ``src/emforge/data/top8000_validation.npz``.

Run from the repository root (deterministic: same inputs -> byte-identical arrays)::

    .venv/bin/python tools/build_geometry_tables.py [--source ../shared/data/geometry/Top8000] [--out PATH]

Source: rlabduke/reference_data @ cbe300663a2b, ``Top8000/`` (CC-BY 4.0; cite Williams et al. 2018,
Protein Sci 27:293). Only what emforge uses is converted.

Grid files (``rama8000-*.data``, ``rota8000-*.data``)
------------------------------------------------------
Each file starts with ``#`` header lines::

    # Table name/description: "General (no G/P/I/V/preP), 70%, B<30"
    # Number of dimensions: 2
    # For each dimension, 1 to 2: lower_bound  upper_bound  number_of_bins  wrapping
    #   x1: -180.0 180.0 180 true
    #   x2: -180.0 180.0 180 true
    # List of table coordinates and values. (Value is last number on each line.)

followed by ``x1 [x2 ...] value`` lines. Per dimension d the bins have width
``w_d = (upper_d - lower_d) / nbins_d`` and bin k covers ``[lower_d + k w_d, lower_d + (k+1) w_d)``;
the listed coordinates are bin *centres* ``lower_d + (k + 1/2) w_d`` (checked here to 1e-6 of a bin).
Bins that are not listed hold 0 (the files are sparse; MolProbity's reader starts from a zero table
too). ``wrapping true`` means the dimension is periodic with period ``upper_d - lower_d`` (360 deg,
or 180 deg for the symmetric last chi of Asp, Glu, Phe/Tyr). All dimensions of all shipped tables
wrap. The value is the "percentile" (fraction of the Top8000 reference data lying at lower density
than this point): the scale MolProbity's outlier / favoured thresholds refer to.

Stored per table ``<key>`` (``rama_general``, ..., ``rota_leu``, ...):

* ``<key>__values``: float32 array, shape (nbins_1, ..., nbins_n), axis d = dimension x_d
* ``<key>__lower``, ``<key>__upper``: float64 (n,), bounds in degrees
* ``<key>__nbins``: int64 (n,); ``<key>__wrap``: bool (n,)

Ramachandran tables: the six MolProbity classes, axes (phi, psi), 2 deg bins centred on odd degrees.
Rotamer tables: the ones cctbx's rotalyze reads (``rota8000-leu.data`` = "tt* and mp* removed",
``rota8000-pro.data`` = chi1 only, Phe and Tyr share ``rota8000-phetyr.data``). Arg and Lys have
no grid in this copy of the data.

Rotamer central values (``Top8000_rotamer_central_values/<AA>.csv``)
-------------------------------------------------------------------
Per residue type ``<AA>`` (upper case): ``cv_<AA>__names`` (str), ``cv_<AA>__n`` (int64, number of
reference residues), ``cv_<AA>__freq_pct`` (float64), ``cv_<AA>__chi_mean_deg`` and
``cv_<AA>__chi_esd_deg`` (float64, (n_rotamers, n_chi)). Used to name rotamers for every residue
type, and for Arg and Lys to estimate the percentile (see ``emforge.geometry.rotamers``).

Arg/Lys percentile calibration
------------------------------
``mix_<AA>__logdens`` / ``mix_<AA>__pct`` (float64): for Arg and Lys, the percentile of the
wrapped-Gaussian mixture built from the central values (weights = frequencies, means, esds inflated
by ``ESD_SCALE``, stored as ``mix_<AA>__esd_scale``) as a function of the mixture's log density:
``pct(x) = P[log f(X) < log f(x)]`` for X drawn from the mixture, estimated from ``N_MIX_SAMPLES``
draws (seed ``MIX_SEED``) and stored as a monotone table for interpolation. This mirrors the
definition of the grid values (fraction of reference data at lower density) with the mixture in
place of the smoothed data density.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import sys
from pathlib import Path

import numpy as np

from emforge.geometry.rotamers import mixture_logdens  # the run-time density, so both agree

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "geometry" / "Top8000"
DEFAULT_OUT = REPO / "src" / "emforge" / "data" / "top8000_validation.npz"

RAMA_FILES = {
    "general": "rama8000-general-noGPIVpreP.data",
    "gly": "rama8000-gly-sym.data",
    "ile_val": "rama8000-ileval-nopreP.data",
    "pre_pro": "rama8000-prepro-noGP.data",
    "trans_pro": "rama8000-transpro.data",
    "cis_pro": "rama8000-cispro.data",
}
ROTA_FILES = {
    "asn": "rota8000-asn.data", "asp": "rota8000-asp.data", "cys": "rota8000-cys.data",
    "gln": "rota8000-gln.data", "glu": "rota8000-glu.data", "his": "rota8000-his.data",
    "ile": "rota8000-ile.data", "leu": "rota8000-leu.data", "met": "rota8000-met.data",
    "phetyr": "rota8000-phetyr.data", "pro": "rota8000-pro.data", "ser": "rota8000-ser.data",
    "thr": "rota8000-thr.data", "trp": "rota8000-trp.data", "val": "rota8000-val.data",
}
CENTRAL_AA = ("ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "HIS", "ILE", "LEU", "LYS", "MET", "PHE",
              "PRO", "SER", "THR", "TRP", "TYR", "VAL")
#: symmetric last chi (period 180 deg) per residue type
SYMMETRIC_LAST_CHI = ("ASP", "GLU", "PHE", "TYR")

#: Arg/Lys mixture settings (see module docstring and emforge.geometry.rotamers).
#: ESD_SCALE widens the Top8000 chi esds. It was calibrated on the residue types that have both a
#: grid and central values (benchmarks/validate_geometry_vs_molprobity.py, "Arg/Lys calibration",
#: 200 real chains from ../shared/data/chains, seed 0): matching the mixture's outlier rate
#: (< 0.3 %) to the grid's gives 1.228 for the 2-chi types (Leu, Ile, His, Trp, Asn, Asp, Phe, Tyr)
#: and 1.376 for the 3-chi types (Met, Gln, Glu); Arg and Lys have 4 chis, so the linear trend is
#: extrapolated: 1.376 + (1.376 - 1.228) = 1.524.
MIX_AA = ("ARG", "LYS")
ESD_SCALE = 1.524
N_MIX_SAMPLES = 2_000_000
MIX_SEED = 20180101
N_PCT_TABLE = 4001

_DIM_RE = re.compile(r"^#\s+x(\d+):\s+(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s*$")


def parse_grid(path: Path) -> dict[str, np.ndarray]:
    """Parse one MolProbity ``.data`` grid file (see module docstring) into arrays."""
    header: list[str] = []
    rows: list[list[float]] = []
    with open(path, encoding="ascii") as fh:
        for line in fh:
            if line.startswith("#"):
                header.append(line.rstrip("\n"))
            elif line.strip():
                rows.append([float(x) for x in line.split()])
    m = re.search(r"Number of dimensions:\s*(\d+)", "\n".join(header))
    if m is None:
        raise ValueError(f"{path}: no 'Number of dimensions' header line")
    ndim = int(m.group(1))
    dims = {}
    for h in header:
        d = _DIM_RE.match(h)
        if d:
            dims[int(d.group(1))] = (float(d.group(2)), float(d.group(3)), int(d.group(4)),
                                     d.group(5).lower() in ("true", "yes", "on", "1"))
    if sorted(dims) != list(range(1, ndim + 1)):
        raise ValueError(f"{path}: expected bounds for x1..x{ndim}, found {sorted(dims)}")
    if any("value first" in h.lower() for h in header):
        raise ValueError(f"{path}: value-first layout not supported")
    lower = np.array([dims[i][0] for i in range(1, ndim + 1)])
    upper = np.array([dims[i][1] for i in range(1, ndim + 1)])
    nbins = np.array([dims[i][2] for i in range(1, ndim + 1)], dtype=np.int64)
    wrap = np.array([dims[i][3] for i in range(1, ndim + 1)], dtype=bool)
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != ndim + 1:
        raise ValueError(f"{path}: data lines must hold {ndim} coordinates and one value")
    width = (upper - lower) / nbins
    frac = (data[:, :ndim] - lower) / width - 0.5  # bin index if the coordinate is a bin centre
    idx = np.rint(frac).astype(np.int64)
    if np.abs(frac - idx).max() > 1e-6:
        raise ValueError(f"{path}: coordinates are not at bin centres")
    if (idx < 0).any() or (idx >= nbins).any():
        raise ValueError(f"{path}: coordinates outside the declared bounds")
    values = np.zeros(tuple(nbins), dtype=np.float64)
    flat = np.ravel_multi_index(tuple(idx.T), tuple(nbins))
    if len(np.unique(flat)) != len(flat):
        raise ValueError(f"{path}: a bin is listed twice")
    values.ravel()[flat] = data[:, ndim]
    return {"values": values.astype(np.float32), "lower": lower, "upper": upper, "nbins": nbins, "wrap": wrap}


def parse_central_values(path: Path) -> dict[str, np.ndarray]:
    """Rotamer names, counts, frequencies, chi means and esds from one central-values CSV."""
    with open(path, encoding="ascii", newline="") as fh:
        table = list(csv.DictReader(fh))
    n_chi = sum(1 for k in table[0] if re.fullmatch(r"chi\d_mean", k))
    table.sort(key=lambda r: r["rotamer"])  # deterministic order
    return {
        "names": np.array([r["rotamer"] for r in table], dtype=str),
        "n": np.array([int(r["n"]) for r in table], dtype=np.int64),
        "freq_pct": np.array([float(r["frequency%"]) for r in table]),
        "chi_mean_deg": np.array([[float(r[f"chi{k}_mean"]) for k in range(1, n_chi + 1)] for r in table]),
        "chi_esd_deg": np.array([[float(r[f"chi{k}_esd"]) for k in range(1, n_chi + 1)] for r in table]),
    }


def mixture_percentile_table(cv: dict[str, np.ndarray], esd_scale: float, n_samples: int, seed: int,
                             n_table: int) -> tuple[np.ndarray, np.ndarray]:
    """(log density, percentile) pairs for the wrapped-Gaussian mixture of one residue type."""
    rng = np.random.default_rng(seed)
    w = cv["freq_pct"] / cv["freq_pct"].sum()
    mean = cv["chi_mean_deg"]
    esd = cv["chi_esd_deg"] * esd_scale
    comp = rng.choice(len(w), size=n_samples, p=w)
    x = mean[comp] + rng.standard_normal((n_samples, mean.shape[1])) * esd[comp]
    ld = np.empty(n_samples)
    for s in range(0, n_samples, 20_000):
        ld[s:s + 20_000] = mixture_logdens(x[s:s + 20_000], mean, esd, w)
    ld.sort()
    # quantiles dense in the low tail (where the 0.3 % / 2 % thresholds live), linear above
    p = np.unique(np.concatenate([np.geomspace(1e-5, 0.05, n_table // 2), np.linspace(0.05, 1.0, n_table // 2)]))
    q = np.quantile(ld, p, method="linear")
    q = np.maximum.accumulate(q)
    return q, p


def build(source: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    rama_dir = source / "Top8000_ramachandran_pct_contour_grids"
    rota_dir = source / "Top8000_rotamer_pct_contour_grids"
    cv_dir = source / "Top8000_rotamer_central_values"
    for key, fname in RAMA_FILES.items():
        for k, v in parse_grid(rama_dir / fname).items():
            out[f"rama_{key}__{k}"] = v
    for key, fname in ROTA_FILES.items():
        for k, v in parse_grid(rota_dir / fname).items():
            out[f"rota_{key}__{k}"] = v
    for aa in CENTRAL_AA:
        cv = parse_central_values(cv_dir / f"{aa}.csv")
        for k, v in cv.items():
            out[f"cv_{aa}__{k}"] = v
        if aa in MIX_AA:
            q, p = mixture_percentile_table(cv, ESD_SCALE, N_MIX_SAMPLES, MIX_SEED, N_PCT_TABLE)
            out[f"mix_{aa}__logdens"] = q
            out[f"mix_{aa}__pct"] = p
            out[f"mix_{aa}__esd_scale"] = np.array(ESD_SCALE)
    out["meta__source"] = np.array("rlabduke/reference_data @ cbe300663a2b, Top8000/ (CC-BY 4.0); "
                                   "cite Williams et al. (2018) Protein Sci 27:293-315")
    out["meta__symmetric_last_chi"] = np.array(SYMMETRIC_LAST_CHI)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the Top8000/ folder")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if not args.source.is_dir():
        print(f"source folder not found: {args.source}", file=sys.stderr)
        return 1
    arrays = build(args.source)
    buf = io.BytesIO()
    np.savez_compressed(buf, **dict(sorted(arrays.items())))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".npz.tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(args.out)
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(arrays[k]).tobytes() for k in sorted(arrays))).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(arrays)} arrays, "
          f"content sha256 {digest[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
