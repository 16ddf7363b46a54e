"""All-atom clashscore in the MolProbity/Probe sense, computed without Probe.

Definition (Word et al. 1999, J Mol Biol 285:1711; Chen et al. 2010, Acta Cryst D66:12;
``mmtbx/validation/clashscore.py`` of cctbx): a *serious clash* is a pair of atoms whose van der
Waals spheres overlap by >= 0.4 Å, i.e. r_i + r_j - d_ij >= 0.4 Å, that are

* not covalently close: Probe's default ``-4H`` excludes atoms joined by a chain of at most 3
  bonds (1-2, 1-3, 1-4 pairs), and of at most 4 bonds when either atom is a hydrogen;
* not a hydrogen-bond pair: a donor (polar H, or N/O carrying H) against an acceptor. Probe lets
  such pairs overlap by 0.6 Å (0.8 Å when both are charged) before it calls a dot a clash, and
  MolProbity's clashscore drops every atom pair that has any H-bond dot, so H-bond pairs never
  count;
* each pair is counted once; water-water pairs are not counted (``"not water"`` source
  selection), atoms with occupancy < 0.02 are ignored (Probe's occupancy cut-off).

clashscore = 1000 * n_serious_clashes / n_atoms, with n_atoms all non-water atoms with
occupancy >= 0.02, hydrogens included. Clashscores are only meaningful on models with
hydrogens (:func:`emforge.geometry.hydrogens.add_riding_hydrogens`); a model without H gives a
warning.

Differences from Probe, by design or for speed:

* Overlap is measured analytically along the line between atom centres (the deepest point).
  Probe samples dots on the van der Waals surface (16 dots/Å^2) and reports the deepest dot,
  a few hundredths of an Å shallower; Probe also gives each dot to the atom it overlaps most,
  so an atom pair shadowed by a third atom can escape being counted there.
* Covalent bonds come from residue templates (standard amino acids: the Engh & Huber bond list,
  C-OXT, peptide links C(i)-N(i+1) < 2.0 Å, disulfides SG-SG < 2.5 Å; hydrogens: the nearest
  heavy atom within 1.5 Å) and, for other residues (ligands, modified residues), from distances
  (d < r_cov,i + r_cov,j + 0.2 Å, Probe's rule). Probe uses the distance rule for everything, so
  two non-bonded atoms of standard residues squeezed to covalent distance are a clash here and
  "bonded" in Probe.
* Aromatic ring atoms are acceptors for every donor; Probe additionally tests the approach
  angle to the ring face.

Van der Waals radii (Probe's ``atomprops.h``; carbonyl C scaled to 1.65 Å as Probe's
``CORadScale`` and cctbx's probe2 do):

=========================================  ================  ============
atom                                       electron cloud Å  nuclear Å
=========================================  ================  ============
H on C (aliphatic)                         1.22              1.17
H on aromatic C (Phe, Tyr, Trp, His ring)  1.05              1.00
H on N, O, S (polar)                       1.05              1.00
C aromatic (Phe, Tyr, Trp, His ring)       1.75              1.75
C carbonyl (C, Asn/Asp CG, Gln/Glu CD)     1.65              1.65
other C                                    1.70              1.70
N / O / S / Se / P                         1.55 / 1.40 / 1.80 / 1.90 / 1.80
=========================================  ================  ============

Metal ions use Probe's ionic radii (e.g. Zn 0.71, Mg 0.65, Ca 0.99, Na 0.95, Fe 0.74 Å),
halides F 1.30, Cl 1.77, Br 1.95, I 2.10 Å; any other element 1.70 Å. Use ``nuclear=True``
for hydrogens placed at nuclear distances.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.spatial import cKDTree

from emforge.geometry.covalent import (
    STANDARD_AMINO_ACIDS,
    ideal_geometry,
    peptide_links,
    residue_atom_index,
    residue_rows,
)
from emforge.models import AtomModel

log = logging.getLogger(__name__)

CLASH_OVERLAP_A = 0.4
MIN_OCCUPANCY = 0.02
WATER_NAMES = ("HOH", "WAT", "DOD", "H2O", "TIP", "TIP3", "SOL", "MTO")

H_RADII_A = {  # (electron cloud, nuclear)
    "H": (1.22, 1.17),
    "Har": (1.05, 1.00),
    "Hpol": (1.05, 1.00),
}
ELEMENT_RADII_A = {
    "C": 1.70, "N": 1.55, "O": 1.40, "S": 1.80, "SE": 1.90, "P": 1.80,
    "F": 1.30, "CL": 1.77, "BR": 1.95, "I": 2.10,
    "LI": 0.60, "NA": 0.95, "AL": 0.50, "K": 1.33, "MG": 0.65, "CA": 0.99, "MN": 0.80, "FE": 0.74,
    "CO": 0.70, "NI": 0.66, "CU": 0.72, "ZN": 0.71, "RB": 1.48, "SR": 1.10, "MO": 0.93, "AG": 1.26,
    "CD": 0.91, "IN": 0.81, "CS": 1.69, "BA": 1.29, "AU": 1.10, "HG": 1.00, "TL": 1.44, "PB": 0.84,
    "V": 0.79, "CR": 0.73, "W": 0.66, "PT": 0.63, "U": 1.03, "B": 0.20, "SI": 2.10, "AS": 2.00,
}
DEFAULT_RADIUS_A = 1.70
AROMATIC_C_RADIUS_A = 1.75
CARBONYL_C_RADIUS_A = 1.65
COVALENT_RADII_A = {"H": 0.30, "C": 0.77, "N": 0.70, "O": 0.66, "S": 1.04, "P": 1.10, "SE": 1.17}
COVALENT_FUDGE_A = 0.2
H_PARENT_MAX_A = 1.5

AROMATIC_C = {
    "PHE": ("CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
    "TYR": ("CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
    "TRP": ("CG", "CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2"),
    "HIS": ("CG", "CD2", "CE1"),
}
CARBONYL_C = {"ASN": ("CG",), "ASP": ("CG",), "GLN": ("CD",), "GLU": ("CD",)}
# Probe's donor/acceptor table for standard residues (select.c), aromatic-face acceptors as in
# cctbx probe2 (AtomTypes.py)
DONOR_HEAVY = {
    "ASN": ("ND2",), "GLN": ("NE2",), "LYS": ("NZ",), "ARG": ("NE", "NH1", "NH2"), "HIS": ("ND1", "NE2"),
    "SER": ("OG",), "THR": ("OG1",), "TYR": ("OH",), "TRP": ("NE1",),
}
ACCEPTOR = {
    "ASN": ("OD1",), "GLN": ("OE1",), "ASP": ("OD1", "OD2"), "GLU": ("OE1", "OE2"), "HIS": ("ND1", "NE2"),
    "SER": ("OG",), "THR": ("OG1",), "TYR": ("OH", "CG", "CD1", "CD2", "CE1", "CE2", "CZ"), "CYS": ("SG",),
    "MET": ("SD",), "PHE": ("CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
    "TRP": ("CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2"),
}


def _name_mask(model: AtomModel, res_names: np.ndarray, table: dict[str, tuple[str, ...]]) -> np.ndarray:
    keys = {f"{r}:{a}" for r, atoms in table.items() for a in atoms}
    combo = np.char.add(np.char.add(res_names.astype(str), ":"), model.atom_name.astype(str))
    uniq, inv = np.unique(combo, return_inverse=True)
    return np.array([u in keys for u in uniq], bool)[inv] if len(uniq) else np.zeros(0, bool)


def _bond_graph(model: AtomModel, rows: np.ndarray, is_h: np.ndarray, element: np.ndarray) -> sp.csr_matrix:
    """Sparse symmetric (N, N) adjacency of covalent bonds (see module docstring)."""
    n = len(model)
    starts = model.residue_starts()
    res_names = model.res_name[starts]
    standard_res = np.isin(res_names, STANDARD_AMINO_ACIDS)
    table = ideal_geometry()
    names = sorted({a for rs in table["bonds"].values() for b in rs for a in b[:2]} | {"OXT", "C", "N", "SG"})
    col = {nm: k for k, nm in enumerate(names)}
    idx = residue_atom_index(model, names, rows)
    pairs = []
    for res in STANDARD_AMINO_ACIDS:
        r = np.flatnonzero(res_names == res)
        if not len(r):
            continue
        for a1, a2, _, _ in table["bonds"][res] + [["C", "OXT", 0, 0]]:
            i = idx[r][:, [col[a1], col[a2]]]
            pairs.append(i[(i >= 0).all(axis=1)])
    linked = peptide_links(model, rows)
    r = np.flatnonzero(linked)
    if len(r):
        i = np.stack([idx[r, col["C"]], idx[r + 1, col["N"]]], axis=1)
        pairs.append(i[(i >= 0).all(axis=1)])
    x = model.coords
    heavy = np.flatnonzero(~is_h)
    # disulfides
    sg = np.flatnonzero((model.atom_name == "SG") & (element == "S"))
    if len(sg) > 1:
        p = cKDTree(x[sg]).query_pairs(2.5, output_type="ndarray")
        if len(p):
            pairs.append(sg[p])
    # hydrogens: nearest heavy atom within H_PARENT_MAX_A
    h = np.flatnonzero(is_h)
    if len(h) and len(heavy):
        d, j = cKDTree(x[heavy]).query(x[h], distance_upper_bound=H_PARENT_MAX_A)
        ok = np.isfinite(d)
        pairs.append(np.stack([h[ok], heavy[j[ok]]], axis=1))
        if (~ok).any():
            log.debug("%d hydrogens without a heavy atom within %.1f Å", int((~ok).sum()), H_PARENT_MAX_A)
    # heavy atoms outside standard residues: Probe's distance rule, to anything heavy
    other = heavy[~standard_res[rows[heavy]]]
    if len(other):
        cov = np.array([COVALENT_RADII_A.get(e, 1.1) for e in element])
        tree = cKDTree(x[heavy])
        cand = tree.query_ball_point(x[other], r=2 * 1.17 + COVALENT_FUDGE_A)
        ii = np.repeat(other, [len(c) for c in cand])
        jj = heavy[np.concatenate([np.asarray(c, np.int64) for c in cand])] if len(ii) else np.zeros(0, np.int64)
        keep = (ii != jj)
        ii, jj = ii[keep], jj[keep]
        dist = np.linalg.norm(x[ii] - x[jj], axis=1)
        bonded = dist < cov[ii] + cov[jj] + COVALENT_FUDGE_A
        pairs.append(np.stack([ii[bonded], jj[bonded]], axis=1))
    e = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    data = np.ones(2 * len(e), bool)
    adj = sp.csr_matrix((data, (np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]]))),
                        shape=(n, n), dtype=bool)
    return adj


def atom_radii(model: AtomModel, nuclear: bool = False) -> np.ndarray:
    """(N,) Probe van der Waals radii in Å (table in the module docstring)."""
    rows = residue_rows(model)
    res_names = model.res_name[model.residue_starts()][rows] if len(model) else model.res_name
    element = np.char.upper(model.element.astype(str))
    is_h = np.isin(element, ("H", "D"))
    radius = np.array([ELEMENT_RADII_A.get(e, DEFAULT_RADIUS_A) for e in element]) if len(model) else np.zeros(0)
    radius[_name_mask(model, res_names, AROMATIC_C) & (element == "C")] = AROMATIC_C_RADIUS_A
    carbonyl = ((model.atom_name == "C") & np.isin(res_names, STANDARD_AMINO_ACIDS)) | _name_mask(
        model, res_names, CARBONYL_C)
    radius[carbonyl & (element == "C")] = CARBONYL_C_RADIUS_A
    if is_h.any():
        kind = _hydrogen_kinds(model, is_h, element, res_names)
        k = 1 if nuclear else 0
        for name, r in H_RADII_A.items():
            radius[is_h & (kind == name)] = r[k]
    return radius


def _hydrogen_kinds(model: AtomModel, is_h, element, res_names) -> np.ndarray:
    """'H' (on C), 'Har' (on aromatic C) or 'Hpol' (on N, O, S) for hydrogens; '' otherwise."""
    kind = np.full(len(model), "", dtype="U4")
    h = np.flatnonzero(is_h)
    heavy = np.flatnonzero(~is_h)
    kind[h] = "H"
    if not len(heavy):
        return kind
    d, j = cKDTree(model.coords[heavy]).query(model.coords[h], distance_upper_bound=H_PARENT_MAX_A)
    ok = np.isfinite(d)
    parent = heavy[j[ok]]
    aromatic = _name_mask(model, res_names, AROMATIC_C) & (element == "C")
    polar = np.isin(element, ("N", "O", "S"))
    kind[h[ok][aromatic[parent]]] = "Har"
    kind[h[ok][polar[parent]]] = "Hpol"
    return kind


def hbond_roles(model: AtomModel) -> tuple[np.ndarray, np.ndarray]:
    """(donor, acceptor): (N,) bool arrays with Probe's hydrogen-bond roles (module docstring).

    Donors: backbone N, the side-chain N/O listed in ``DONOR_HEAVY`` and every polar H (H on N,
    O or S); acceptors: backbone O/OXT and ``ACCEPTOR``; N and O outside standard residues
    (ligands, water) are given both roles.
    """
    n = len(model)
    rows = residue_rows(model)
    res_names = model.res_name[model.residue_starts()][rows] if n else model.res_name
    element = np.char.upper(model.element.astype(str)) if n else np.zeros(0, "U2")
    is_h = np.isin(element, ("H", "D"))
    aa = np.isin(res_names, STANDARD_AMINO_ACIDS)
    acceptor = _name_mask(model, res_names, ACCEPTOR) | (aa & np.isin(model.atom_name, ("O", "OXT")))
    donor = _name_mask(model, res_names, DONOR_HEAVY) | (aa & (model.atom_name == "N"))
    if is_h.any():
        donor |= _hydrogen_kinds(model, is_h, element, res_names) == "Hpol"
    other_no = ~aa & np.isin(element, ("N", "O"))  # ligands, water: unknown chemistry, both roles
    return donor | other_no, acceptor | other_no


def _reach(adj: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(C1, B2): boolean matrices of atoms within 1 and within 2 bonds (diagonal included)."""
    n = adj.shape[0]
    c1 = (adj + sp.identity(n, dtype=bool, format="csr")).astype(bool).tocsr()
    return c1, (c1 @ c1).astype(bool).tocsr()


def _within_bonds(adj: sp.csr_matrix, i: np.ndarray, j: np.ndarray, n_bonds: int,
                  reach: tuple[sp.csr_matrix, sp.csr_matrix] | None = None) -> np.ndarray:
    """(P,) bool: atoms i[p], j[p] are joined by a path of at most ``n_bonds`` bonds (3 or 4).

    dist(i, j) <= 3 iff some m has dist(i, m) <= 2 and dist(m, j) <= 1 (row product B2[i] . C1[j]);
    <= 4 with B2[j] instead. ``reach`` reuses :func:`_reach` of ``adj``.
    """
    if not len(i):
        return np.zeros(0, bool)
    c1, b2 = _reach(adj) if reach is None else reach
    right = b2 if n_bonds == 4 else c1
    prod = b2[i].multiply(right[j])
    return np.asarray(prod.sum(axis=1)).ravel() > 0


@dataclass(frozen=True)
class _Contacts:
    """Non-bonded, non-H-bond atom pairs with a positive van der Waals overlap."""

    i: np.ndarray
    j: np.ndarray
    overlap_A: np.ndarray
    rows: np.ndarray        # (N,) residue row per atom
    considered: np.ndarray  # (N,) bool: occupancy >= MIN_OCCUPANCY
    n_atoms: int            # clashscore denominator
    n_hydrogens: int


def _contacts(m: AtomModel, nuclear: bool) -> _Contacts:
    n = len(m)
    rows = residue_rows(m)
    res_names = m.res_name[m.residue_starts()][rows] if n else m.res_name
    element = np.char.upper(m.element.astype(str)) if n else np.zeros(0, "U2")
    is_h = np.isin(element, ("H", "D"))
    water = np.isin(res_names, WATER_NAMES)
    use = m.occupancy >= MIN_OCCUPANCY
    n_atoms = int(np.sum(use & ~water))
    empty = np.zeros(0, np.int64)
    result = _Contacts(empty, empty, np.zeros(0), rows, use, n_atoms, int(is_h.sum()))
    considered = np.flatnonzero(use)
    if len(considered) < 2:
        return result
    radius = atom_radii(m, nuclear=nuclear)
    pairs = cKDTree(m.coords[considered]).query_pairs(2.0 * float(radius[considered].max()), output_type="ndarray")
    if not len(pairs):
        return result
    i, j = considered[pairs[:, 0]], considered[pairs[:, 1]]
    overlap = radius[i] + radius[j] - np.linalg.norm(m.coords[i] - m.coords[j], axis=1)
    keep = (overlap > 0) & ~(water[i] & water[j])
    i, j, overlap = i[keep], j[keep], overlap[keep]
    # hydrogen-bond pairs: a donor against an acceptor never clashes
    donor, acceptor = hbond_roles(m)
    hbond = (donor[i] & acceptor[j]) | (acceptor[i] & donor[j])
    i, j, overlap = i[~hbond], j[~hbond], overlap[~hbond]
    # covalent exclusions: <= 3 bonds apart, <= 4 when a hydrogen is involved
    adj = _bond_graph(m, rows, is_h, element)
    reach = _reach(adj)
    with_h = is_h[i] | is_h[j]
    excluded = np.zeros(len(i), bool)
    if with_h.any():
        excluded[with_h] = _within_bonds(adj, i[with_h], j[with_h], 4, reach)
    if (~with_h).any():
        excluded[~with_h] = _within_bonds(adj, i[~with_h], j[~with_h], 3, reach)
    return _Contacts(i[~excluded], j[~excluded], overlap[~excluded], rows, use, n_atoms, int(is_h.sum()))


def clashscore(model_with_h: AtomModel, nuclear: bool = False, overlap_A: float = CLASH_OVERLAP_A
               ) -> tuple[dict, pd.DataFrame]:
    """MolProbity-style all-atom clashscore of a model that carries hydrogens.

    Parameters
    ----------
    model_with_h
        Atoms including hydrogens (e.g. from :func:`add_riding_hydrogens`).
    nuclear
        Use Probe's nuclear hydrogen radii (for H at nuclear distances); default electron cloud.
    overlap_A
        Overlap that makes a serious clash (0.4 Å, MolProbity).

    Returns
    -------
    summary
        JSON-ready dict: clashscore (serious clashes per 1000 atoms; None without atoms),
        n_clashes, n_atoms_with_h (the denominator: non-water atoms with occupancy >= 0.02,
        H included), n_hydrogens, worst_overlap_A (largest overlap of any counted pair, 0.0 when
        none overlaps), clash_overlap_A, nuclear.
    per_residue
        DataFrame, one row per residue in ``model.residue_table()`` order: chain_id, res_seq,
        ins_code, res_name, n_clashes (serious clashes with at least one atom in the residue;
        a clash inside one residue counts once), worst_overlap_A (largest van der Waals overlap,
        Å, of the residue's atoms with any non-bonded, non-H-bond partner; 0.0 when none
        overlaps). Float columns; NaN for residues with no atom considered (occupancy < 0.02).
    """
    m = model_with_h
    if len(m) and not m.is_hydrogen().any():
        log.warning("clashscore on a model without hydrogens: add riding hydrogens first "
                    "(emforge.geometry.hydrogens.add_riding_hydrogens)")
    c = _contacts(m, nuclear)
    t = m.residue_table()
    n_res = len(t["res_name"])
    has_atoms = np.bincount(c.rows[c.considered], minlength=n_res) > 0 if len(m) else np.zeros(0, bool)
    per_n = np.where(has_atoms, 0.0, np.nan)
    per_worst = np.where(has_atoms, 0.0, np.nan)
    serious = c.overlap_A >= overlap_A - 1e-9
    ri, rj = c.rows[c.i], c.rows[c.j]
    for rr in (ri, rj):
        np.maximum.at(per_worst, rr, c.overlap_A)
    counts = np.bincount(ri[serious], minlength=n_res).astype(float)
    counts += np.bincount(rj[serious & (rj != ri)], minlength=n_res)
    per_n[has_atoms] = counts[has_atoms]
    n_clash = int(serious.sum())
    summary = {
        "clashscore": 1000.0 * n_clash / c.n_atoms if c.n_atoms else None,
        "n_clashes": n_clash,
        "n_atoms_with_h": c.n_atoms,
        "n_hydrogens": c.n_hydrogens,
        "worst_overlap_A": float(c.overlap_A.max()) if len(c.overlap_A) else 0.0,
        "clash_overlap_A": float(overlap_A),
        "nuclear": bool(nuclear),
    }
    per_residue = pd.DataFrame({"chain_id": t["chain_id"], "res_seq": t["res_seq"], "ins_code": t["ins_code"],
                                "res_name": t["res_name"], "n_clashes": per_n, "worst_overlap_A": per_worst})
    return summary, per_residue


def clash_pairs(model_with_h: AtomModel, nuclear: bool = False, overlap_A: float = CLASH_OVERLAP_A) -> pd.DataFrame:
    """The serious clashes counted by :func:`clashscore`, worst first: atom_1, atom_2 (indices),
    label_1, label_2 ("chain:RESseq:atom"), overlap_A."""
    m = model_with_h
    c = _contacts(m, nuclear)
    serious = c.overlap_A >= overlap_A - 1e-9
    i, j, ov = c.i[serious], c.j[serious], c.overlap_A[serious]
    order = np.argsort(-ov, kind="stable")
    i, j, ov = i[order], j[order], ov[order]

    def label(k):
        return [f"{m.chain_id[a]}:{m.res_name[a]}{m.res_seq[a]}{m.ins_code[a]}:{m.atom_name[a]}" for a in k]

    return pd.DataFrame({"atom_1": i, "atom_2": j, "label_1": label(i), "label_2": label(j), "overlap_A": ov})
