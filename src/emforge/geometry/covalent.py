"""Covalent geometry of standard amino acids: bond lengths and bond angles against ideal values.

Ideal values and standard deviations are Engh & Huber (1991) as tabulated in AlphaFold's
``stereo_chemical_props.txt`` (shipped as ``emforge/data/ideal_geometry.json``, built by
``tools/build_ideal_geometry.py``; see ``emforge/data/README.md`` for sources and licences).
The peptide link between consecutive residues uses AlphaFold's between-residue values:
C(i)-N(i+1) 1.329 ± 0.014 Å (1.341 ± 0.016 Å before proline), CA(i)-C(i)-N(i+1)
116.568 ± 1.995 degrees and C(i)-N(i+1)-CA(i+1) 121.352 ± 2.315 degrees. A link is made when both
residues are amino acids of the same chain, adjacent in file order, and C(i)-N(i+1) < 2.0 Å.
O(i)-C(i)-N(i+1), terminal OXT, hydrogens and disulfides are not restrained here.

Per restraint Z = (value - ideal) / sigma; RMSZ = sqrt(mean(Z^2)); RMSD = sqrt(mean((value -
ideal)^2)) in Å or degrees; an outlier has |Z| > ``outlier_z`` (4 by default, MolProbity's
cut-off for bond-length and bond-angle outliers).

The restraint list is built once per model with one pass per residue *type* (never per residue)
over a (residues x atom names) index table; values, Z-scores and per-residue reductions are
numpy array operations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from emforge.models import AtomModel

log = logging.getLogger(__name__)

STANDARD_AMINO_ACIDS = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
                        "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")
PEPTIDE_LINK_MAX_A = 2.0
DEFAULT_OUTLIER_Z = 4.0


@cache
def ideal_geometry() -> dict:
    """The shipped ideal-geometry table (``emforge/data/ideal_geometry.json``), parsed once."""
    text = resources.files("emforge").joinpath("data/ideal_geometry.json").read_text(encoding="utf-8")
    return json.loads(text)


# -- shared residue/atom indexing (also used by hydrogens and clashes) ------------------------

def residue_rows(model: AtomModel) -> np.ndarray:
    """(N,) int64: the 0-based row of each atom's residue in ``model.residue_table()`` order."""
    n = len(model)
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.zeros(n, np.int64)
    change[1:] = np.diff(model.residue_index) != 0
    return np.cumsum(change)


def residue_atom_index(model: AtomModel, names: Sequence[str], rows: np.ndarray | None = None
                       ) -> np.ndarray:
    """(R, len(names)) int64 table: index of atom ``names[k]`` in residue row r, -1 when absent.

    Where a residue holds an atom name twice the first occurrence wins.
    """
    rows = residue_rows(model) if rows is None else rows
    n_res = int(rows[-1]) + 1 if len(rows) else 0
    table = np.full((n_res, len(names)), -1, np.int64)
    if not len(model) or not len(names):
        return table
    position = {name: k for k, name in enumerate(names)}
    uniq, inverse = np.unique(model.atom_name, return_inverse=True)
    code = np.array([position.get(str(u), -1) for u in uniq], np.int64)[inverse]
    atoms = np.flatnonzero(code >= 0)[::-1]  # reversed so the first occurrence is written last
    table[rows[atoms], code[atoms]] = atoms
    return table


def peptide_links(model: AtomModel, rows: np.ndarray | None = None,
                  max_distance_A: float = PEPTIDE_LINK_MAX_A) -> np.ndarray:
    """(R,) bool: residue row r is peptide-bonded to row r + 1 (C(r)-N(r+1) < ``max_distance_A``).

    Both residues must be amino acids of the same chain, adjacent in file order.
    """
    rows = residue_rows(model) if rows is None else rows
    n_res = int(rows[-1]) + 1 if len(rows) else 0
    linked = np.zeros(n_res, bool)
    if n_res < 2:
        return linked
    idx = residue_atom_index(model, ("C", "N"), rows)
    starts = model.residue_starts()
    aa = model.is_protein()[starts]
    chain = model.chain_id[starts]
    c, n = idx[:-1, 0], idx[1:, 1]
    ok = (c >= 0) & (n >= 0) & aa[:-1] & aa[1:] & (chain[:-1] == chain[1:])
    d = np.full(n_res - 1, np.inf)
    d[ok] = np.linalg.norm(model.coords[c[ok]] - model.coords[n[ok]], axis=1)
    linked[:-1] = d < max_distance_A
    return linked


# -- restraints ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CovalentRestraints:
    """Bond and angle restraints of one model (B bonds, A angles).

    Attributes
    ----------
    bond_atoms : (B, 2) int64 atom indices
    bond_ideal_A, bond_sigma_A : (B,) float64
    bond_rows : (B, 2) int64 residue rows of the two atoms (equal for intra-residue bonds)
    angle_atoms : (A, 3) int64 atom indices, vertex in the middle
    angle_ideal_deg, angle_sigma_deg : (A,) float64
    angle_rows : (A, 2) int64 residue rows of the first and last atom
    """

    bond_atoms: np.ndarray
    bond_ideal_A: np.ndarray
    bond_sigma_A: np.ndarray
    bond_rows: np.ndarray
    angle_atoms: np.ndarray
    angle_ideal_deg: np.ndarray
    angle_sigma_deg: np.ndarray
    angle_rows: np.ndarray


def _atom_names_in_table(table: dict) -> list[str]:
    names: set[str] = {"N", "CA", "C", "O"}
    for rows in table["bonds"].values():
        for r in rows:
            names.update(r[:2])
    for rows in table["angles"].values():
        for r in rows:
            names.update(r[:3])
    return sorted(names)


def build_restraints(model: AtomModel) -> CovalentRestraints:
    """Bond and angle restraints for the standard amino acids of ``model`` (see module docstring)."""
    table = ideal_geometry()
    names = _atom_names_in_table(table)
    col = {n: k for k, n in enumerate(names)}
    rows = residue_rows(model)
    idx = residue_atom_index(model, names, rows)
    starts = model.residue_starts()
    res_names = model.res_name[starts] if len(model) else np.zeros(0, str)

    b_atoms, b_ideal, b_sigma, b_rows = [], [], [], []
    a_atoms, a_ideal, a_sigma, a_rows = [], [], [], []
    for res in STANDARD_AMINO_ACIDS:
        r = np.flatnonzero(res_names == res)
        if not len(r):
            continue
        for a1, a2, ideal, sigma in table["bonds"][res]:
            i = idx[r][:, [col[a1], col[a2]]]
            ok = (i >= 0).all(axis=1)
            b_atoms.append(i[ok])
            b_ideal.append(np.full(ok.sum(), ideal))
            b_sigma.append(np.full(ok.sum(), sigma))
            b_rows.append(np.repeat(r[ok, None], 2, axis=1))
        for a1, a2, a3, ideal, sigma in table["angles"][res]:
            i = idx[r][:, [col[a1], col[a2], col[a3]]]
            ok = (i >= 0).all(axis=1)
            a_atoms.append(i[ok])
            a_ideal.append(np.full(ok.sum(), ideal))
            a_sigma.append(np.full(ok.sum(), sigma))
            a_rows.append(np.repeat(r[ok, None], 2, axis=1))

    # peptide links between consecutive standard residues
    linked = peptide_links(model, rows)
    standard = np.isin(res_names, STANDARD_AMINO_ACIDS)
    r = np.flatnonzero(linked[:-1] & standard[:-1] & standard[1:]) if len(linked) > 1 else np.zeros(0, np.int64)
    if len(r):
        pep = table["peptide"]
        ca0, c0 = idx[r, col["CA"]], idx[r, col["C"]]
        n1, ca1 = idx[r + 1, col["N"]], idx[r + 1, col["CA"]]
        pair_rows = np.stack([r, r + 1], axis=1)
        pro = res_names[r + 1] == "PRO"
        b_atoms.append(np.stack([c0, n1], axis=1))
        b_ideal.append(np.where(pro, pep["bond_C_N_pro"]["ideal_A"], pep["bond_C_N"]["ideal_A"]))
        b_sigma.append(np.where(pro, pep["bond_C_N_pro"]["sigma_A"], pep["bond_C_N"]["sigma_A"]))
        b_rows.append(pair_rows)
        for first, vertex, last, key in ((ca0, c0, n1, "angle_CA_C_N"), (c0, n1, ca1, "angle_C_N_CA")):
            ok = (first >= 0) & (last >= 0)
            a_atoms.append(np.stack([first, vertex, last], axis=1)[ok])
            a_ideal.append(np.full(ok.sum(), pep[key]["ideal_deg"]))
            a_sigma.append(np.full(ok.sum(), pep[key]["sigma_deg"]))
            a_rows.append(pair_rows[ok])

    def cat(parts, shape, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)

    return CovalentRestraints(
        cat(b_atoms, (0, 2), np.int64), cat(b_ideal, (0,), np.float64), cat(b_sigma, (0,), np.float64),
        cat(b_rows, (0, 2), np.int64),
        cat(a_atoms, (0, 3), np.int64), cat(a_ideal, (0,), np.float64), cat(a_sigma, (0,), np.float64),
        cat(a_rows, (0, 2), np.int64),
    )


def bond_lengths(coords: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(B,) distances in Å between atom pairs (B, 2) of ``coords`` (N, 3)."""
    return np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1)


def bond_angles_deg(coords: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """(A,) angles in degrees at the middle atom of triples (A, 3) of ``coords`` (N, 3)."""
    v1 = coords[triples[:, 0]] - coords[triples[:, 1]]
    v2 = coords[triples[:, 2]] - coords[triples[:, 1]]
    cross = np.linalg.norm(np.cross(v1, v2), axis=1)
    return np.degrees(np.arctan2(cross, np.einsum("ij,ij->i", v1, v2)))


def _rms(x: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(x * x))) if len(x) else None


def _per_residue(n_res: int, res_rows: np.ndarray, z: np.ndarray, outlier_z: float):
    """Counts of restraints and outliers, and largest |Z|, per residue row (restraint counted
    once for every residue it involves)."""
    count = np.zeros(n_res)
    outliers = np.zeros(n_res)
    worst = np.full(n_res, -np.inf)
    absz = np.abs(z)
    for k in range(res_rows.shape[1]):
        rr = res_rows[:, k]
        # an intra-residue restraint has the same row twice: count it once
        use = np.ones(len(rr), bool) if k == 0 else res_rows[:, k] != res_rows[:, 0]
        count += np.bincount(rr[use], minlength=n_res)
        outliers += np.bincount(rr[use], weights=(absz[use] > outlier_z).astype(float), minlength=n_res)
        np.maximum.at(worst, rr[use], absz[use])
    has = count > 0
    return (np.where(has, count, np.nan), np.where(has, outliers, np.nan), np.where(has, worst, np.nan))


def covalent_geometry(model: AtomModel, outlier_z: float = DEFAULT_OUTLIER_Z,
                      restraints: CovalentRestraints | None = None) -> tuple[dict, pd.DataFrame]:
    """Bond-length and bond-angle deviations of the standard amino acids of ``model``.

    Parameters
    ----------
    model
        Atoms (hydrogens, waters and ligands are present but not restrained).
    outlier_z
        A restraint with |Z| > ``outlier_z`` is an outlier (default 4).
    restraints
        Restraints from :func:`build_restraints` for this model's topology, to reuse across
        coordinate sets of the same model (e.g. a refinement trajectory).

    Returns
    -------
    summary
        JSON-ready dict: bond_rmsz, angle_rmsz, bond_rmsd_A, angle_rmsd_deg, n_bonds, n_angles,
        bond_outliers, angle_outliers (counts), bond_outlier_pct, angle_outlier_pct, outlier_z,
        worst_bond_z, worst_angle_z (signed Z of largest magnitude). RMS values and percentages
        are None when there is no restraint of that kind.
    per_residue
        DataFrame, one row per residue in ``model.residue_table()`` order: chain_id, res_seq,
        ins_code, res_name, n_bonds, n_angles, n_bond_outliers, n_angle_outliers, worst_bond_z,
        worst_angle_z (largest |Z| of the restraints involving the residue). A restraint spanning
        two residues (peptide link) counts for both. Float columns; NaN for residues without
        restraints (non-standard residues, ligands, water).
    """
    rst = build_restraints(model) if restraints is None else restraints
    x = model.coords
    b = bond_lengths(x, rst.bond_atoms) if len(rst.bond_atoms) else np.zeros(0)
    a = bond_angles_deg(x, rst.angle_atoms) if len(rst.angle_atoms) else np.zeros(0)
    bd = b - rst.bond_ideal_A
    ad = a - rst.angle_ideal_deg
    bz = bd / rst.bond_sigma_A
    az = ad / rst.angle_sigma_deg
    nb_out = int(np.sum(np.abs(bz) > outlier_z))
    na_out = int(np.sum(np.abs(az) > outlier_z))

    def worst(z):
        return float(z[np.argmax(np.abs(z))]) if len(z) else None

    summary = {
        "bond_rmsz": _rms(bz), "angle_rmsz": _rms(az),
        "bond_rmsd_A": _rms(bd), "angle_rmsd_deg": _rms(ad),
        "n_bonds": int(len(bz)), "n_angles": int(len(az)),
        "bond_outliers": nb_out, "angle_outliers": na_out,
        "bond_outlier_pct": 100.0 * nb_out / len(bz) if len(bz) else None,
        "angle_outlier_pct": 100.0 * na_out / len(az) if len(az) else None,
        "worst_bond_z": worst(bz), "worst_angle_z": worst(az),
        "outlier_z": float(outlier_z),
    }
    t = model.residue_table()
    n_res = len(t["res_name"])
    nb, nbo, wb = _per_residue(n_res, rst.bond_rows, bz, outlier_z)
    na, nao, wa = _per_residue(n_res, rst.angle_rows, az, outlier_z)
    per_residue = pd.DataFrame({
        "chain_id": t["chain_id"], "res_seq": t["res_seq"], "ins_code": t["ins_code"], "res_name": t["res_name"],
        "n_bonds": nb, "n_angles": na, "n_bond_outliers": nbo, "n_angle_outliers": nao,
        "worst_bond_z": wb, "worst_angle_z": wa,
    })
    log.debug("covalent geometry: %d bonds (RMSZ %s), %d angles (RMSZ %s)", len(bz), summary["bond_rmsz"],
              len(az), summary["angle_rmsz"])
    return summary, per_residue
