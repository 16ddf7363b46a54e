"""MolProbity-style side-chain rotamer validation against the Top8000 rotamer data.

Method
------
* chi1..chi4 per residue with MolProbity's atom definitions (:data:`emforge.geometry.torsions.CHI_ATOMS`;
  MSE is evaluated as Met). A residue is evaluated only when every chi atom of its type is present
  (otherwise NaN with ``rotamer_skip_reason``); Gly and Ala have no rotamers.
* Grid residue types (all but Arg and Lys): the percentile is the multilinear interpolation between
  bin centres of the Top8000 percentile grid (periodic in every chi), MolProbity's
  ``NDimTable.valueAt``. Asp, Glu, Phe and Tyr grids span 0-180 deg in the last chi, so that chi
  enters modulo 180 (the symmetry of OD1/OD2, OE1/OE2, CD1/CD2). Pro uses chi1 only (the grid
  cctbx uses is one-dimensional); Val, Thr, Ser and Cys are one-dimensional too.
* Arg and Lys: the Top8000 4-chi grids are not in the shipped data, so the percentile is computed
  from the Top8000 *central values* instead (``rotamer_method == "central_values"``): the chi
  density is modelled as a mixture of independent wrapped Gaussians, one per rotamer (weight =
  rotamer frequency, mean = chi means, width = chi esds times a scale), and the percentile is
  ``P[f(X) < f(chi)]`` for X drawn from that mixture -- the fraction of the model's probability
  mass at lower density than the residue, which is what the grid values are for the real data.
  The mapping log f -> percentile is precomputed by ``tools/build_geometry_tables.py``. The esd
  scale (> 1: real chi distributions have heavier tails than Gaussians) was calibrated on the
  residue types that have both a grid and central values, by matching outlier rates on real
  chains per chi count (2 and 3 chis: 1.228, 1.376) and extrapolating to the 4 chis of Arg/Lys
  (1.524); on those types the mixture changes the outlier verdict of 0.6-3 % of residues relative
  to the grid (see ``benchmarks/results/geometry_vs_molprobity.md``). This approximates MolProbity's Arg/Lys
  verdicts, it does not reproduce them; the summary reports the number of residues scored this
  way (``n_rotamer_central_values``) and the grid-only figures.
* Category: outlier when percentile < 0.003 (0.3 %), favoured when >= 0.02, allowed in between.
* Name: the Top8000 rotamer whose central chi values are nearest in esd-scaled angular distance
  (last chi modulo 180 for Asp/Glu/Phe/Tyr; all three chis for Pro), given for every evaluated
  residue (MolProbity prints "OUTLIER" instead for outliers: use ``rotamer_category``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emforge.geometry import _tables
from emforge.geometry.ramachandran import residue_frame
from emforge.geometry.torsions import CHI_ATOMS, chi_angles, residue_rows
from emforge.models import AtomModel

OUTLIER_THRESHOLD = 0.003
FAVOURED_THRESHOLD = 0.02

#: residue type -> grid table key
GRID_TABLES = {"ASN": "asn", "ASP": "asp", "CYS": "cys", "GLN": "gln", "GLU": "glu", "HIS": "his",
               "ILE": "ile", "LEU": "leu", "MET": "met", "MSE": "met", "PHE": "phetyr", "PRO": "pro",
               "SER": "ser", "THR": "thr", "TRP": "trp", "TYR": "phetyr", "VAL": "val"}
#: residue types scored from the central values (no grid shipped)
CENTRAL_VALUE_TYPES = ("ARG", "LYS")
#: residue types whose last chi is 180-degree symmetric
SYMMETRIC_LAST_CHI = ("ASP", "GLU", "PHE", "TYR")


def _wrap180(x: np.ndarray) -> np.ndarray:
    """Angles to [-180, 180)."""
    return (np.asarray(x, dtype=np.float64) + 180.0) % 360.0 - 180.0


def mixture_logdens(chis_deg: np.ndarray, mean_deg: np.ndarray, esd_deg: np.ndarray,
                    weight: np.ndarray) -> np.ndarray:
    """Log density (up to a constant) of a mixture of independent wrapped Gaussians.

    Parameters
    ----------
    chis_deg : (n, k) angles
    mean_deg, esd_deg : (m, k) component means and widths
    weight : (m,) component weights (sum 1)

    Returns
    -------
    (n,) float64; the nearest periodic image of each component is used (widths << 360 deg).
    """
    d = _wrap180(chis_deg[:, None, :] - mean_deg[None, :, :])
    z = d / esd_deg[None]
    log_comp = np.log(weight)[None] - 0.5 * np.sum(z * z, axis=2) - np.sum(np.log(esd_deg), axis=1)[None]
    mx = log_comp.max(axis=1)
    return mx + np.log(np.exp(log_comp - mx[:, None]).sum(axis=1))


def central_value_percentile(aa: str, chis_deg: np.ndarray) -> np.ndarray:
    """Mixture percentile (0-1) of (n, 4) chi angles for Arg or Lys (see module docstring)."""
    cv = _tables.central_values(aa)
    q, p, esd_scale = _tables.mixture_calibration(aa)
    w = cv.freq_pct / cv.freq_pct.sum()
    chis = np.asarray(chis_deg, dtype=np.float64).reshape(len(chis_deg), -1)[:, : cv.chi_mean_deg.shape[1]]
    ld = mixture_logdens(chis, cv.chi_mean_deg, cv.chi_esd_deg * esd_scale, w)
    return np.interp(ld, q, p, left=0.0, right=1.0)


def nearest_rotamer(aa: str, chis_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest Top8000 rotamer by esd-scaled angular distance.

    Returns
    -------
    names : (n,) object array of rotamer names
    distance : (n,) float64, root-mean-square of (chi difference / esd) over the chis
    """
    cv = _tables.central_values("MET" if aa == "MSE" else aa)
    k = cv.chi_mean_deg.shape[1]
    chis = np.asarray(chis_deg, dtype=np.float64).reshape(len(chis_deg), -1)[:, :k]
    d = chis[:, None, :] - cv.chi_mean_deg[None]
    d = _wrap180(d)
    if aa in SYMMETRIC_LAST_CHI:
        d[..., -1] = (d[..., -1] + 90.0) % 180.0 - 90.0
    z2 = np.mean((d / cv.chi_esd_deg[None]) ** 2, axis=2)
    best = np.argmin(z2, axis=1)
    return cv.names[best].astype(object), np.sqrt(z2[np.arange(len(best)), best])


def rotamer_percentile(res_name: str, chis_deg: np.ndarray) -> np.ndarray:
    """Top8000 rotamer percentile (0-1) of (n, >=n_chi) chi angles (degrees) for one residue type."""
    if res_name in CENTRAL_VALUE_TYPES:
        return central_value_percentile(res_name, chis_deg)
    if res_name not in GRID_TABLES:
        raise ValueError(f"no rotamer data for residue type {res_name!r}")
    return _tables.grid(f"rota_{GRID_TABLES[res_name]}")(np.asarray(chis_deg, dtype=np.float64))


def rotamers(model: AtomModel) -> tuple[dict, pd.DataFrame]:
    """Rotamer validation of every residue of ``model``.

    Returns
    -------
    summary : dict
        ``n_rotamer_residues`` (int, residues evaluated), ``rotamer_outlier_pct``,
        ``rotamer_allowed_pct``, ``rotamer_favoured_pct`` (float, percent of evaluated residues;
        0 when none), ``n_rotamer_outliers``, ``n_rotamer_favoured``, ``n_rotamer_skipped``
        (residues of a rotameric type with missing side-chain atoms), ``n_rotamer_central_values``
        (Arg/Lys residues scored from the central values), and the same figures over grid-scored
        residues only (``n_rotamer_residues_grid``, ``rotamer_outlier_pct_grid``,
        ``rotamer_favoured_pct_grid``), which is the set MolProbity's tables cover here.
    per_residue : pandas.DataFrame
        One row per residue: chain_id, res_seq, ins_code, res_name, chi1_deg..chi4_deg (as measured,
        [-180, 180]; NaN where undefined), rotamer_percentile (0-1), rotamer_category ("favoured",
        "allowed", "outlier"), rotamer_name (nearest Top8000 rotamer), rotamer_method ("grid" or
        "central_values"), rotamer_skip_reason (e.g. "missing side-chain atoms: CD, NE"); None/NaN
        where not evaluated.
    """
    df = residue_frame(model)
    n_res = len(df)
    rows = residue_rows(model)
    chi = chi_angles(model, rows)
    names = df["res_name"].to_numpy()
    pct = np.full(n_res, np.nan)
    cat = np.full(n_res, None, dtype=object)
    rot_name = np.full(n_res, None, dtype=object)
    method = np.full(n_res, None, dtype=object)
    reason = np.full(n_res, None, dtype=object)
    for aa in sorted(set(GRID_TABLES) | set(CENTRAL_VALUE_TYPES)):  # one pass per residue type
        r = np.flatnonzero(names == aa)
        if len(r) == 0:
            continue
        k = len(CHI_ATOMS[aa])
        c = chi["chi_deg"][r, :k]
        complete = np.isfinite(c).all(axis=1)
        for j in np.flatnonzero(~complete):
            miss = chi["missing_atoms"][r[j]]
            reason[r[j]] = ("missing side-chain atoms: " + ", ".join(miss)) if miss else "undefined chi angle"
        r, c = r[complete], c[complete]
        if len(r) == 0:
            continue
        p = rotamer_percentile(aa, c)
        pct[r] = p
        cat[r] = np.where(p >= FAVOURED_THRESHOLD, "favoured",
                          np.where(p >= OUTLIER_THRESHOLD, "allowed", "outlier"))
        rot_name[r] = nearest_rotamer(aa, c)[0]
        method[r] = "central_values" if aa in CENTRAL_VALUE_TYPES else "grid"

    def figures(mask: np.ndarray) -> tuple[int, int, int]:
        return int(mask.sum()), int(np.sum(mask & (cat == "outlier"))), int(np.sum(mask & (cat == "favoured")))

    def pct_of(k: int, n: int) -> float:
        return float(100.0 * k / n) if n else 0.0

    n, n_out, n_fav = figures(method != None)  # noqa: E711 (element-wise)
    ng, ng_out, ng_fav = figures(method == "grid")
    summary = {
        "n_rotamer_residues": n,
        "rotamer_outlier_pct": pct_of(n_out, n),
        "rotamer_allowed_pct": pct_of(n - n_out - n_fav, n),
        "rotamer_favoured_pct": pct_of(n_fav, n),
        "n_rotamer_outliers": n_out,
        "n_rotamer_favoured": n_fav,
        "n_rotamer_skipped": int(np.sum(reason != None)),  # noqa: E711
        "n_rotamer_central_values": int(np.sum(method == "central_values")),
        "n_rotamer_residues_grid": ng,
        "rotamer_outlier_pct_grid": pct_of(ng_out, ng),
        "rotamer_favoured_pct_grid": pct_of(ng_fav, ng),
    }
    for j in range(4):
        df[f"chi{j + 1}_deg"] = chi["chi_deg"][:, j]
    df["rotamer_percentile"] = pct
    df["rotamer_category"] = cat
    df["rotamer_name"] = rot_name
    df["rotamer_method"] = method
    df["rotamer_skip_reason"] = reason
    return summary, df
