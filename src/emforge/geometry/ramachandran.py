"""MolProbity-style Ramachandran validation against the Top8000 percentile contours.

Method (as MolProbity's ramalyze in cctbx does it, re-implemented here):

* A residue is evaluated when it and both neighbours are common amino acids (the 20 standard ones
  and MSE) and it is peptide-bonded to both (C-N < 2.0 Å, see :mod:`emforge.geometry.torsions`):
  chain termini and residues next to a break or a modified residue get no evaluation.
* Class: Gly -> ``gly``; Pro -> ``cis_pro`` when the preceding peptide's omega is within
  (-90, 90) deg (cis-like, so twisted prolines follow their nearer isomer), else ``trans_pro``;
  a residue followed by Pro (and not Gly or Pro itself) -> ``pre_pro``; Ile or Val ->
  ``ile_val``; everything else (MSE included) -> ``general``.
* Percentile: bilinear interpolation of the class's Top8000 grid (2 deg bins centred on odd
  degrees, periodic) at (phi, psi), exactly cctbx's ``rama_eval``.
* Category: favoured when percentile >= 0.02; outlier when below 0.0005 (general), 0.002
  (cis-Pro) or 0.001 (all other classes); allowed in between.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emforge.geometry import _tables
from emforge.geometry.torsions import COMMON_AMINO_ACIDS, MAX_PEPTIDE_C_N_A, backbone_torsions
from emforge.models import AtomModel

RAMA_CLASSES = ("general", "gly", "ile_val", "pre_pro", "trans_pro", "cis_pro")
FAVOURED_THRESHOLD = 0.02
OUTLIER_THRESHOLDS = {"general": 0.0005, "cis_pro": 0.002, "gly": 0.001, "ile_val": 0.001,
                      "pre_pro": 0.001, "trans_pro": 0.001}
#: |omega| below this makes a Pro "cis" for the Ramachandran class (cctbx's cis-like split)
CIS_PRO_OMEGA_DEG = 90.0

ID_COLUMNS = ("chain_id", "res_seq", "ins_code", "res_name")


def residue_frame(model: AtomModel) -> pd.DataFrame:
    """The identifying columns of the per-residue tables, one row per residue, in file order."""
    t = model.residue_table()
    return pd.DataFrame({
        "chain_id": t["chain_id"].astype(str), "res_seq": t["res_seq"].astype(np.int64),
        "ins_code": t["ins_code"].astype(str), "res_name": t["res_name"].astype(str),
    })


def rama_percentile(rama_class: str, phi_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """Top8000 percentile (0-1) of (phi, psi) for one class; arrays of shape (n,) in degrees."""
    if rama_class not in RAMA_CLASSES:
        raise ValueError(f"unknown Ramachandran class {rama_class!r}; expected one of {RAMA_CLASSES}")
    pts = np.column_stack([np.asarray(phi_deg, float).ravel(), np.asarray(psi_deg, float).ravel()])
    return _tables.grid(f"rama_{rama_class}")(pts)


def ramachandran(model: AtomModel, max_c_n_A: float = MAX_PEPTIDE_C_N_A) -> tuple[dict, pd.DataFrame]:
    """Ramachandran validation of every residue of ``model``.

    Parameters
    ----------
    model : AtomModel
    max_c_n_A : peptide-bond C-N cut-off (Å) for chain-break detection

    Returns
    -------
    summary : dict
        ``n_rama_residues`` (int), ``rama_favoured_pct``, ``rama_allowed_pct``, ``rama_outlier_pct``
        (float, percent of evaluated residues; 0 when none), ``n_rama_outliers``, ``n_rama_favoured``,
        and ``n_rama_<class>`` per class.
    per_residue : pandas.DataFrame
        One row per residue (``model.residue_table()`` order): chain_id, res_seq, ins_code, res_name,
        phi_deg, psi_deg (NaN where undefined), rama_class (None when not evaluated),
        rama_percentile (0-1, NaN when not evaluated), rama_category ("favoured", "allowed",
        "outlier", None when not evaluated).
    """
    df = residue_frame(model)
    n_res = len(df)
    tors = backbone_torsions(model, max_c_n_A=max_c_n_A)
    phi, psi, omega = tors["phi_deg"], tors["psi_deg"], tors["omega_deg"]
    prev_i, next_i = tors["prev_index"], tors["next_index"]
    names = df["res_name"].to_numpy()
    common = np.isin(names, list(COMMON_AMINO_ACIDS))
    # evaluated: a common amino acid bonded to common amino acids on both sides
    ok = (common & (prev_i >= 0) & (next_i >= 0) & common[np.maximum(prev_i, 0)]
          & common[np.maximum(next_i, 0)] & np.isfinite(phi) & np.isfinite(psi))
    next_name = np.where(next_i >= 0, names[np.maximum(next_i, 0)], "")
    cls = np.full(n_res, None, dtype=object)
    is_gly = names == "GLY"
    is_pro = names == "PRO"
    with np.errstate(invalid="ignore"):
        cis_like = np.abs(omega) < CIS_PRO_OMEGA_DEG
    cls[ok] = "general"
    cls[ok & np.isin(names, ["ILE", "VAL"])] = "ile_val"
    cls[ok & (next_name == "PRO") & ~is_gly & ~is_pro] = "pre_pro"
    cls[ok & is_pro & ~cis_like] = "trans_pro"
    cls[ok & is_pro & cis_like] = "cis_pro"
    cls[ok & is_gly] = "gly"
    pct = np.full(n_res, np.nan)
    cat = np.full(n_res, None, dtype=object)
    summary: dict = {}
    for c in RAMA_CLASSES:
        idx = np.flatnonzero(cls == c)
        summary[f"n_rama_{c}"] = int(len(idx))
        if len(idx) == 0:
            continue
        p = rama_percentile(c, phi[idx], psi[idx])
        pct[idx] = p
        cat[idx] = np.where(p >= FAVOURED_THRESHOLD, "favoured",
                            np.where(p >= OUTLIER_THRESHOLDS[c], "allowed", "outlier"))
    n = int(ok.sum())
    n_fav = int(np.sum(cat == "favoured"))
    n_out = int(np.sum(cat == "outlier"))
    n_all = n - n_fav - n_out

    def pct_of(k: int) -> float:
        return float(100.0 * k / n) if n else 0.0

    summary = {
        "n_rama_residues": n,
        "rama_favoured_pct": pct_of(n_fav),
        "rama_allowed_pct": pct_of(n_all),
        "rama_outlier_pct": pct_of(n_out),
        "n_rama_favoured": n_fav,
        "n_rama_allowed": n_all,
        "n_rama_outliers": n_out,
        **summary,
    }
    df["phi_deg"] = phi
    df["psi_deg"] = psi
    df["rama_class"] = cls
    df["rama_percentile"] = pct
    df["rama_category"] = cat
    return summary, df
