"""Dihedral angles of protein models: phi, psi, omega and side-chain chi1-chi4, vectorised.

Conventions (IUPAC-IUB 1970, as MolProbity uses them):

* dihedral(p0, p1, p2, p3) in degrees on [-180, 180], positive for a clockwise rotation of the
  p0-p1 bond about p1->p2 when looking down p1->p2 (the right-handed convention);
* residue i: phi = C(i-1)-N(i)-CA(i)-C(i), psi = N(i)-CA(i)-C(i)-N(i+1),
  omega = CA(i-1)-C(i-1)-N(i)-CA(i) (the peptide bond *preceding* residue i, as MolProbity's
  omegalyze and ramalyze's cis/trans-Pro test use it);
* two consecutive residues of one chain are peptide-linked when both have N, CA and C and the
  C(i-1)-N(i) distance is below ``max_c_n_A`` (2.0 Å, cctbx's bond cut-off); no phi/psi/omega is
  defined across a break.

All per-residue arrays are in :meth:`emforge.models.AtomModel.residue_table` order (one row per
residue, file order). Missing atoms give NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emforge.models import AtomModel

#: C(i-1)-N(i) distance below which two consecutive residues are peptide-bonded (Å)
MAX_PEPTIDE_C_N_A = 2.0

#: the residues cctbx calls "common amino acids": the 20 standard ones and selenomethionine
COMMON_AMINO_ACIDS = frozenset((
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET", "MSE",
    "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL"))

#: side-chain dihedrals (chi1..chi4) per residue type, MolProbity's definitions: Val chi1 uses
#: CG1, Thr chi1 OG1, Ile chi1 CG1; the symmetric last chi of Asp/Glu/Phe/Tyr is reduced to
#: [0, 180) where it is evaluated, not here; Arg chi4 is CG-CD-NE-CZ (no chi5).
CHI_ATOMS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ARG": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "NE"), ("CG", "CD", "NE", "CZ")),
    "ASN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "ASP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "CYS": (("N", "CA", "CB", "SG"),),
    "GLN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "GLU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "HIS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "ND1")),
    "ILE": (("N", "CA", "CB", "CG1"), ("CA", "CB", "CG1", "CD1")),
    "LEU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "LYS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "CE"), ("CG", "CD", "CE", "NZ")),
    "MET": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
    "MSE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SE"), ("CB", "CG", "SE", "CE")),
    "PHE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "PRO": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "N")),
    "SER": (("N", "CA", "CB", "OG"),),
    "THR": (("N", "CA", "CB", "OG1"),),
    "TRP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "TYR": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "VAL": (("N", "CA", "CB", "CG1"),),
}


def dihedral_deg(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """Dihedral angles of n quadruplets of points.

    Parameters
    ----------
    p0, p1, p2, p3 : (n, 3) float arrays (Å); rows with NaN give NaN

    Returns
    -------
    (n,) float64, degrees on [-180, 180]
    """
    p0, p1, p2, p3 = (np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in (p0, p1, p2, p3))
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    with np.errstate(invalid="ignore", divide="ignore"):
        b1n = b1 / np.linalg.norm(b1, axis=1, keepdims=True)
        # components of b0 and b2 perpendicular to the central bond
        v = b0 - np.sum(b0 * b1n, axis=1, keepdims=True) * b1n
        w = b2 - np.sum(b2 * b1n, axis=1, keepdims=True) * b1n
        x = np.sum(v * w, axis=1)
        y = np.sum(np.cross(b1n, v) * w, axis=1)
    return np.degrees(np.arctan2(y, x))


def residue_rows(model: AtomModel) -> np.ndarray:
    """(N,) int64: the row of each atom's residue in ``model.residue_table()`` order."""
    if len(model) == 0:
        return np.zeros(0, np.int64)
    change = np.diff(model.residue_index) != 0
    return np.concatenate([[0], np.cumsum(change)]).astype(np.int64)


def atom_name_index(model: AtomModel) -> dict[str, np.ndarray]:
    """Atom indices per atom name (file order within each name), from one sort of the names."""
    if len(model) == 0:
        return {}
    names, inv = np.unique(model.atom_name, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(len(names) + 1))
    return {str(nm): order[bounds[i]:bounds[i + 1]] for i, nm in enumerate(names)}


def residue_atom_coords(model: AtomModel, atom_names: Sequence[str], rows: np.ndarray | None = None,
                        name_index: dict[str, np.ndarray] | None = None,
                        subset: np.ndarray | None = None) -> np.ndarray:
    """Coordinates of named atoms per residue.

    Parameters
    ----------
    model : AtomModel
    atom_names : k atom names ("N", "CA", ...)
    rows : (N,) residue rows from :func:`residue_rows` (computed when omitted)
    name_index : from :func:`atom_name_index` (computed when omitted; pass it when calling often)
    subset : (m,) residue rows to return (all R residues when omitted)

    Returns
    -------
    (R, k, 3) (or (m, k, 3) for ``subset``) float64 Å, NaN where the residue has no atom of that
    name; when a residue holds the name twice, the first atom counts.
    """
    if rows is None:
        rows = residue_rows(model)
    if name_index is None:
        name_index = {nm: np.flatnonzero(model.atom_name == nm) for nm in set(atom_names)}
    n_res = int(rows[-1]) + 1 if len(rows) else 0
    if subset is None:
        pos = None
        out = np.full((n_res, len(atom_names), 3), np.nan)
    else:
        pos = np.full(n_res, -1, np.int64)
        pos[subset] = np.arange(len(subset))
        out = np.full((len(subset), len(atom_names), 3), np.nan)
    for k, name in enumerate(atom_names):
        sel = name_index.get(name)
        if sel is None or len(sel) == 0:
            continue
        r = rows[sel]
        if pos is not None:
            r = pos[r]
            keep = r >= 0
            r, sel = r[keep], sel[keep]
        r, first = np.unique(r, return_index=True)
        out[r, k] = model.coords[sel[first]]
    return out


def backbone_torsions(model: AtomModel, max_c_n_A: float = MAX_PEPTIDE_C_N_A) -> dict[str, np.ndarray]:
    """phi, psi and omega per residue, with chain-break detection.

    Parameters
    ----------
    model : AtomModel
    max_c_n_A : C(i-1)-N(i) distance (Å) below which residues i-1 and i are peptide-bonded

    Returns
    -------
    dict of (R,) arrays: ``phi_deg``, ``psi_deg``, ``omega_deg`` (float64, NaN where undefined),
    ``linked_prev`` (bool: residue i is peptide-bonded to its predecessor), ``prev_index`` and
    ``next_index`` (int64 row of the bonded predecessor / successor, -1 when none), ``c_n_prev_A``
    (float64, C(prev)-N(i) distance to the previous residue with backbone atoms in the same chain,
    NaN at chain starts or missing atoms). Residues without a CA, or without both N and C, are
    skipped when looking for the predecessor, so a ligand listed inside a chain does not break it;
    a link needs only C(prev) and N(i), and each torsion is NaN where one of its atoms is missing.
    """
    rows = residue_rows(model)
    bb = residue_atom_coords(model, ("N", "CA", "C"), rows)  # (R, 3, 3)
    n_res = len(bb)
    chain = model.chain_id[model.residue_starts()] if n_res else np.zeros(0, dtype=str)
    n, ca, c = bb[:, 0], bb[:, 1], bb[:, 2]
    has = ~np.isnan(bb[:, :, 0])  # (R, 3): N, CA, C present
    # candidate pairs: consecutive residues with a CA and an N or C (a ligand or water listed in
    # between does not break a chain; a real gap shows in the C-N distance). Only C(prev) and N(i)
    # are needed for the link (as in cctbx); each torsion is then defined where its atoms exist.
    cand = np.flatnonzero(has[:, 1] & (has[:, 0] | has[:, 2]))
    prev_index = np.full(n_res, -1, np.int64)
    next_index = np.full(n_res, -1, np.int64)
    c_n = np.full(n_res, np.nan)
    if len(cand) > 1:
        a, b = cand[:-1], cand[1:]
        same_chain = chain[a] == chain[b]
        a, b = a[same_chain], b[same_chain]
        d = np.linalg.norm(n[b] - c[a], axis=1)
        c_n[b] = d
        with np.errstate(invalid="ignore"):
            bonded = d < max_c_n_A  # False where C or N is missing (NaN)
        prev_index[b[bonded]] = a[bonded]
        next_index[a[bonded]] = b[bonded]
    linked = prev_index >= 0
    phi = np.full(n_res, np.nan)
    psi = np.full(n_res, np.nan)
    omega = np.full(n_res, np.nan)
    i = np.flatnonzero(linked)  # residues with a bonded predecessor
    if len(i):
        h = prev_index[i]
        phi[i] = dihedral_deg(c[h], n[i], ca[i], c[i])
        omega[i] = dihedral_deg(ca[h], c[h], n[i], ca[i])
        psi[h] = dihedral_deg(n[h], ca[h], c[h], n[i])
    return {"phi_deg": phi, "psi_deg": psi, "omega_deg": omega, "linked_prev": linked,
            "prev_index": prev_index, "next_index": next_index, "c_n_prev_A": c_n}


def chi_angles(model: AtomModel, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Side-chain chi1..chi4 per residue (MolProbity's atom definitions, :data:`CHI_ATOMS`).

    Returns
    -------
    dict with ``chi_deg`` (R, 4) float64 (NaN where the residue type has fewer chis or an atom is
    missing), ``n_chi`` (R,) int64 (number of chis defined for the residue type; 0 for Gly, Ala and
    residue types without a definition) and ``missing_atoms`` (R,) object array of the missing
    side-chain atom names (tuple, empty when complete).
    """
    if rows is None:
        rows = residue_rows(model)
    n_res = int(rows[-1]) + 1 if len(rows) else 0
    chi = np.full((n_res, 4), np.nan)
    n_chi = np.zeros(n_res, np.int64)
    missing = np.empty(n_res, dtype=object)
    missing[:] = [()] * n_res
    if n_res == 0:
        return {"chi_deg": chi, "n_chi": n_chi, "missing_atoms": missing}
    res_name = model.res_name[model.residue_starts()]
    index = atom_name_index(model)
    for aa, defs in CHI_ATOMS.items():  # one pass per residue *type*
        r = np.flatnonzero(res_name == aa)
        if len(r) == 0:
            continue
        names = list(dict.fromkeys(a for d in defs for a in d))
        xyz = residue_atom_coords(model, names, rows, index, subset=r)  # (m, k, 3)
        col = {a: j for j, a in enumerate(names)}
        for k, d in enumerate(defs):
            chi[r, k] = dihedral_deg(*(xyz[:, col[a]] for a in d))
        n_chi[r] = len(defs)
        absent = np.isnan(xyz[:, :, 0])
        for j in np.flatnonzero(absent.any(axis=1)):
            missing[r[j]] = tuple(names[q] for q in np.flatnonzero(absent[j]))
    return {"chi_deg": chi, "n_chi": n_chi, "missing_atoms": missing}
