"""C-beta deviation (MolProbity's cbetadev): distance of the modelled CB from its ideal position.

The ideal CB is built from the residue's own N, CA and C twice, then averaged (Lovell et al. 2003,
Proteins 50:437; the construction of cctbx's ``mmtbx.validation.cbetadev``, re-implemented here):

1. from the C-CA frame: |CA-CB| = d, angle C-CA-CB = a1, dihedral N-C-CA-CB = t1;
2. from the N-CA frame: |CA-CB| = d, angle N-CA-CB = a2, dihedral C-N-CA-CB = t2;
3. the mean of the two points, pushed back to distance d from CA.

Ideal values (d Å, a1, t1, a2, t2 deg): Ala 1.536, 110.1, 122.9, 110.6, -122.6; Pro 1.530, 112.2,
115.1, 103.0, -120.7; Val/Thr/Ile 1.540, 109.1, 123.4, 111.5, -122.0; all others 1.530, 110.1,
122.8, 110.5, -122.6. D-amino acids (by name, or a non-standard residue whose CA chiral volume
(N-CA).((CB-CA)x(C-CA)) is positive) use the dihedrals with flipped signs. Every residue other than
Gly with N, CA, C and CB is evaluated; a deviation >= 0.25 Å is an outlier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emforge.geometry.ramachandran import residue_frame
from emforge.geometry.torsions import COMMON_AMINO_ACIDS, residue_atom_coords, residue_rows
from emforge.models import AtomModel

OUTLIER_A = 0.25

#: D-amino-acid residue names (PDB chemical component dictionary) and their L parents
D_AMINO_ACIDS = {"DAL": "ALA", "DAR": "ARG", "DAS": "ASP", "DCY": "CYS", "DGL": "GLU", "DGN": "GLN",
                 "DHI": "HIS", "DIL": "ILE", "DLE": "LEU", "DLY": "LYS", "DPN": "PHE", "DPR": "PRO",
                 "DSG": "ASN", "DSN": "SER", "DTH": "THR", "DTR": "TRP", "DTY": "TYR", "DVA": "VAL",
                 "MED": "MET"}

# (dist_A, angle C-CA-CB, dihedral N-C-CA-CB, angle N-CA-CB, dihedral C-N-CA-CB)
_IDEAL = {
    "ALA": (1.536, 110.1, 122.9, 110.6, -122.6),
    "PRO": (1.530, 112.2, 115.1, 103.0, -120.7),
    "VAL": (1.540, 109.1, 123.4, 111.5, -122.0),
    "THR": (1.540, 109.1, 123.4, 111.5, -122.0),
    "ILE": (1.540, 109.1, 123.4, 111.5, -122.0),
}
_IDEAL_OTHER = (1.530, 110.1, 122.8, 110.5, -122.6)
_IDEAL_PARENT = {"DAL": "ALA", "DPR": "PRO", "DVA": "VAL", "DTH": "THR", "DIL": "ILE"}


def place_atom(a: np.ndarray, b: np.ndarray, c: np.ndarray, dist_A: np.ndarray, angle_deg: np.ndarray,
               dihedral_deg: np.ndarray) -> np.ndarray:
    """Place atoms D with |c-D| = dist, angle b-c-D = angle and dihedral a-b-c-D = dihedral.

    Parameters
    ----------
    a, b, c : (n, 3) Å
    dist_A, angle_deg, dihedral_deg : (n,) or scalars

    Returns
    -------
    (n, 3) Å
    """
    a, b, c = (np.asarray(x, dtype=np.float64).reshape(-1, 3) for x in (a, b, c))
    bc = c - b
    bc /= np.linalg.norm(bc, axis=1, keepdims=True)
    nrm = np.cross(b - a, bc)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    ang = np.radians(angle_deg)
    dih = np.radians(dihedral_deg)
    d = np.asarray(dist_A, dtype=np.float64)
    x = -d * np.cos(ang)
    y = d * np.sin(ang) * np.cos(dih)
    z = d * np.sin(ang) * np.sin(dih)
    return (c + np.reshape(x, (-1, 1)) * bc + np.reshape(y, (-1, 1)) * np.cross(nrm, bc)
            + np.reshape(z, (-1, 1)) * nrm)


def ideal_cbeta(n: np.ndarray, ca: np.ndarray, c: np.ndarray, res_name: np.ndarray,
                cb: np.ndarray | None = None) -> np.ndarray:
    """Ideal CB positions (n, 3) Å from N, CA, C (n, 3) and residue names (n,).

    ``cb`` (the modelled CB) is used only to detect D chirality of non-standard residues.
    """
    res_name = np.asarray(res_name).astype(str)
    params = np.array([_IDEAL.get(_IDEAL_PARENT.get(r, r), _IDEAL_OTHER) for r in res_name]).reshape(-1, 5)
    flip = np.isin(res_name, list(D_AMINO_ACIDS))
    if cb is not None:
        vol = np.einsum("ij,ij->i", n - ca, np.cross(cb - ca, c - ca))
        nonstandard = ~np.isin(res_name, list(COMMON_AMINO_ACIDS)) & ~flip
        flip |= nonstandard & (vol > 0)
    sign = np.where(flip, -1.0, 1.0)
    dist = params[:, 0]
    b1 = place_atom(n, c, ca, dist, params[:, 1], sign * params[:, 2])
    b2 = place_atom(c, n, ca, dist, params[:, 3], sign * params[:, 4])
    mid = 0.5 * (b1 + b2)
    v = mid - ca
    return ca + v * (dist / np.linalg.norm(v, axis=1))[:, None]


def cbeta_deviations(model: AtomModel) -> tuple[dict, pd.DataFrame]:
    """C-beta deviations of every non-Gly residue with N, CA, C and CB.

    Returns
    -------
    summary : dict
        ``n_cbeta_residues`` (int), ``cbeta_outliers`` (int, deviation >= 0.25 Å),
        ``cbeta_outlier_pct`` (float, percent of evaluated residues; 0 when none),
        ``cbeta_deviation_max_A`` (float, None when none).
    per_residue : pandas.DataFrame
        One row per residue: chain_id, res_seq, ins_code, res_name, cbeta_deviation_A (NaN when
        not evaluated), cbeta_outlier (bool, None when not evaluated).
    """
    df = residue_frame(model)
    rows = residue_rows(model)
    xyz = residue_atom_coords(model, ("N", "CA", "C", "CB"), rows)
    names = df["res_name"].to_numpy()
    ok = ~np.isnan(xyz).any(axis=(1, 2)) & (names != "GLY")
    dev = np.full(len(df), np.nan)
    idx = np.flatnonzero(ok)
    if len(idx):
        n, ca, c, cb = (xyz[idx, k] for k in range(4))
        ideal = ideal_cbeta(n, ca, c, names[idx], cb)
        dev[idx] = np.linalg.norm(cb - ideal, axis=1)
    outlier = np.full(len(df), None, dtype=object)
    outlier[idx] = [bool(v) for v in dev[idx] >= OUTLIER_A]
    n_eval = int(len(idx))
    n_out = int(np.sum(dev[idx] >= OUTLIER_A))
    summary = {
        "n_cbeta_residues": n_eval,
        "cbeta_outliers": n_out,
        "cbeta_outlier_pct": float(100.0 * n_out / n_eval) if n_eval else 0.0,
        "cbeta_deviation_max_A": float(np.max(dev[idx])) if n_eval else None,
    }
    df["cbeta_deviation_A"] = dev
    df["cbeta_outlier"] = outlier
    return summary, df
