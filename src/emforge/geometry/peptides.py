"""Peptide-bond conformation (cis / trans / twisted), as MolProbity's omegalyze classifies it.

omega of residue i is the dihedral CA(i-1)-C(i-1)-N(i)-CA(i) of the peptide bond preceding i,
defined when i is peptide-bonded to its predecessor (C-N < 2.0 Å; see
:mod:`emforge.geometry.torsions`). Classes (omegalyze's ``find_omega_type``, open intervals):
cis when -30 < omega < 30, trans when omega < -150 or omega > 150, twisted otherwise. A peptide
counts as a Pro peptide when residue i is proline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emforge.geometry.ramachandran import residue_frame
from emforge.geometry.torsions import MAX_PEPTIDE_C_N_A, backbone_torsions
from emforge.models import AtomModel

CIS_MAX_DEG = 30.0
TRANS_MIN_DEG = 150.0


def classify_omega(omega_deg: np.ndarray) -> np.ndarray:
    """(n,) omega in degrees -> (n,) object array of "cis", "trans", "twisted" (None for NaN)."""
    w = np.asarray(omega_deg, dtype=np.float64)
    out = np.full(w.shape, None, dtype=object)
    finite = np.isfinite(w)
    a = np.abs(np.where(finite, w, 0.0))
    out[finite & (a < CIS_MAX_DEG)] = "cis"
    out[finite & (a > TRANS_MIN_DEG)] = "trans"
    out[finite & (a >= CIS_MAX_DEG) & (a <= TRANS_MIN_DEG)] = "twisted"
    return out


def peptide_bonds(model: AtomModel, max_c_n_A: float = MAX_PEPTIDE_C_N_A) -> tuple[dict, pd.DataFrame]:
    """Cis / twisted peptide analysis of every peptide bond of ``model``.

    Returns
    -------
    summary : dict
        ``n_peptides``, ``n_pro_peptides``, ``n_nonpro_peptides`` (int); ``n_cis_pro``,
        ``n_cis_nonpro``, ``n_twisted_pro``, ``n_twisted_nonpro`` (int); ``cis_pro_pct`` (percent of
        Pro peptides), ``cis_nonpro_pct``, ``twisted_pro_pct``, ``twisted_nonpro_pct`` (percent of
        non-Pro / Pro peptides; 0 when there are none).
    per_residue : pandas.DataFrame
        One row per residue: chain_id, res_seq, ins_code, res_name, omega_deg (of the peptide bond
        preceding the residue; NaN when there is none), peptide ("trans", "cis", "twisted", None).
    """
    df = residue_frame(model)
    omega = backbone_torsions(model, max_c_n_A=max_c_n_A)["omega_deg"]
    kind = classify_omega(omega)
    is_pro = df["res_name"].to_numpy() == "PRO"
    has = kind != None  # noqa: E711 (element-wise comparison on an object array)
    n_pro = int(np.sum(has & is_pro))
    n_non = int(np.sum(has & ~is_pro))

    def count(k: str, pro: bool) -> int:
        return int(np.sum((kind == k) & (is_pro if pro else ~is_pro)))

    def pct(k: int, n: int) -> float:
        return float(100.0 * k / n) if n else 0.0

    c = {"n_cis_pro": count("cis", True), "n_cis_nonpro": count("cis", False),
         "n_twisted_pro": count("twisted", True), "n_twisted_nonpro": count("twisted", False)}
    summary = {
        "n_peptides": n_pro + n_non, "n_pro_peptides": n_pro, "n_nonpro_peptides": n_non, **c,
        "cis_pro_pct": pct(c["n_cis_pro"], n_pro), "cis_nonpro_pct": pct(c["n_cis_nonpro"], n_non),
        "twisted_pro_pct": pct(c["n_twisted_pro"], n_pro), "twisted_nonpro_pct": pct(c["n_twisted_nonpro"], n_non),
    }
    df["omega_deg"] = omega
    df["peptide"] = kind
    return summary, df
