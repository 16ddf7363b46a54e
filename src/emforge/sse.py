"""Secondary-structure assignment (DSSP rules) and secondary-structure fragments.

Implements the Kabsch & Sander (1983) DSSP algorithm as DSSP 2.x (``mkdssp``) codes it, vectorised
over residues and hydrogen-bond lists:

* backbone H-bond energy E(i -> j) between the C=O of residue i (acceptor) and the N-H of residue j
  (donor): E = 0.084 * 332 * (1/r_ON + 1/r_CH - 1/r_OH - 1/r_CN) kcal/mol (distances in Å), amide H
  placed 1.0 Å from N along C(j-1)->O(j-1) (none for a segment's first residue and for proline),
  clamped at -9.9 (and set to -9.9 when any distance is below 0.5 Å), evaluated only for CA-CA
  < 9 Å and not for j = i or j = i + 1;
* an H-bond is E < -0.5 kcal/mol with the acceptor among the two lowest-energy acceptors of that
  donor (DSSP keeps two per donor);
* n-turn at i (n = 3, 4, 5): Hbond(i, i+n); minimal helix: n-turns at i-1 and i -> residues
  i..i+n-1 become G (n=3), H (4) or I (5); H overwrites everything, G and I only fill residues that
  are still loop (or of their own kind), so H > E/B > G > I (alpha before pi, as DSSP 2.x);
* bridges (i, j), j - i >= 3: parallel if [Hbond(i-1, j) and Hbond(j, i+1)] or [Hbond(j-1, i) and
  Hbond(i, j+1)]; antiparallel if [Hbond(i, j) and Hbond(j, i)] or [Hbond(i-1, j+1) and
  Hbond(j-1, i+1)]; consecutive bridges form ladders; two ladders of one type are joined across a
  beta bulge when the gap between them is at most 4 residues on one strand and at most 1 on the
  other (DSSP's tests on unsigned index differences, so a shared residue on one strand counts as a
  gap of -1); every residue from the first to the last bridge of a ladder of two or more bridges
  is E (bulge residues included), a lone bridge is B;
* residues still loop: T inside an n-turn, else S where the CA bend angle kappa > 70 degrees,
  else '-'.

Chain segments: consecutive residues of one chain are linked when both have N, CA and C and
C(i)-N(i+1) <= 2.0 Å; no H-bond donor, turn, bridge, ladder or bend spans an unlinked pair
(deviation from DSSP, which may join ladders across a gap within one chain). Residues without N,
CA or C stay in the output with NaN coordinates and are never assigned anything but '-'.

Three-state reduction (``states=3``): H, G, I -> 'H'; E, B -> 'E'; T, S, '-' -> 'C' (the common
reduction that keeps all three helix pitches and isolated bridges; pydssp's 3 states count them the
same way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from scipy.spatial import cKDTree

from emforge.errors import InputError
from emforge.geometry.torsions import residue_atom_coords, residue_rows
from emforge.models import AtomModel

#: DSSP's coupling constant 0.084 * 332 (kcal/mol Å)
COUPLING_KCAL_A = 0.084 * 332.0
#: lowest H-bond energy (kcal/mol); DSSP clamps there
MIN_HBOND_KCAL = -9.9
#: an H-bond needs an energy below this (kcal/mol)
HBOND_CUTOFF_KCAL = -0.5
#: residue pairs are evaluated when their CA atoms are closer than this (Å)
MAX_CA_DISTANCE_A = 9.0
#: C(i)-N(i+1) distance above which consecutive residues are not peptide-linked (Å)
MAX_PEPTIDE_C_N_A = 2.0
#: N-H bond length used to place the amide hydrogen (Å)
N_H_A = 1.0
#: any interatomic distance below this gives the minimal energy, as in DSSP (Å)
MIN_DISTANCE_A = 0.5
#: CA(i-2)-CA(i)-CA(i+2) bend angle above which a loop residue is a bend 'S' (degrees)
BEND_KAPPA_DEG = 70.0


@dataclass(frozen=True, eq=False)
class Backbone:
    """Backbone of the protein residues of a model (R residues, file order).

    Attributes
    ----------
    xyz : (R, 4, 3) float64, Å: N, CA, C, O per residue (NaN where missing)
    chain_index : (R,) int64, chain of each residue (0, 1, ... in order of first appearance)
    chain_id : (R,) str
    res_name : (R,) str
    labels : (R,) str, residue labels such as ``A:GLY12``
    first_atom : (R,) int64, index of the residue's first atom in the model it was taken from
    complete : (R,) bool, residue has N, CA and C
    linked_prev : (R,) bool, peptide-linked to residue i-1 (same chain, both complete,
        C(i-1)-N(i) <= 2.0 Å)
    segment : (R,) int64, index of the unbroken backbone segment holding the residue
    """

    xyz: np.ndarray
    chain_index: np.ndarray
    chain_id: np.ndarray
    res_name: np.ndarray
    labels: np.ndarray
    first_atom: np.ndarray
    complete: np.ndarray
    linked_prev: np.ndarray
    segment: np.ndarray

    @property
    def n_residues(self) -> int:
        return len(self.xyz)


def backbone_arrays(model: AtomModel, max_c_n_A: float = MAX_PEPTIDE_C_N_A) -> Backbone:
    """N, CA, C, O coordinates per protein residue, with chains and chain breaks.

    Parameters
    ----------
    model : AtomModel; only amino-acid residues are used (other residues are skipped)
    max_c_n_A : C(i-1)-N(i) distance (Å) above which two consecutive residues are not linked

    Raises
    ------
    InputError
        When no amino-acid residue has N, CA and C atoms.
    """
    if not isinstance(model, AtomModel):
        raise InputError(f"secondary structure needs an AtomModel, got {type(model).__name__}")
    prot_idx = np.flatnonzero(model.is_protein()) if len(model) else np.zeros(0, np.int64)
    if len(prot_idx) == 0:
        raise InputError("model holds no protein backbone (no amino-acid residues)")
    sub = model.select(prot_idx)
    rows = residue_rows(sub)
    xyz = residue_atom_coords(sub, ("N", "CA", "C", "O"), rows)
    starts = sub.residue_starts()
    complete = ~np.isnan(xyz[:, :3, 0]).any(axis=1)
    if not complete.any():
        raise InputError("model holds no protein backbone (no residue with N, CA and C atoms)")
    chain_id = sub.chain_id[starts]
    _, first, inverse = np.unique(chain_id, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    chain_index = rank[inverse.ravel()]
    linked = np.zeros(len(xyz), bool)
    if len(xyz) > 1:
        with np.errstate(invalid="ignore"):
            d = np.linalg.norm(xyz[1:, 0] - xyz[:-1, 2], axis=1)
            linked[1:] = (chain_index[1:] == chain_index[:-1]) & complete[1:] & complete[:-1] & (d <= max_c_n_A)
    segment = np.cumsum(~linked) - 1
    return Backbone(xyz=xyz, chain_index=chain_index, chain_id=chain_id, res_name=sub.res_name[starts],
                    labels=np.asarray(sub.residue_labels(), dtype=str), first_atom=prot_idx[starts],
                    complete=complete, linked_prev=linked, segment=segment.astype(np.int64))


def _as_backbone(model_or_backbone: AtomModel | Backbone) -> Backbone:
    if isinstance(model_or_backbone, Backbone):
        return model_or_backbone
    return backbone_arrays(model_or_backbone)


def amide_hydrogens(bb: Backbone) -> np.ndarray:
    """DSSP's amide H positions, (R, 3) float64 Å: N(i) + 1.0 Å along C(i-1)->O(i-1).

    NaN for the first residue of a segment, for proline and where C(i-1) or O(i-1) is missing.
    """
    h = np.full((bb.n_residues, 3), np.nan)
    i = np.flatnonzero(bb.linked_prev & (bb.res_name != "PRO"))
    if len(i):
        co = bb.xyz[i - 1, 2] - bb.xyz[i - 1, 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            h[i] = bb.xyz[i, 0] + N_H_A * co / np.linalg.norm(co, axis=1, keepdims=True)
    return h


def hbond_pairs(bb: Backbone) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every evaluated backbone H-bond energy, as three parallel arrays.

    Returns
    -------
    acceptor : (P,) int64, residue whose C=O accepts
    donor : (P,) int64, residue whose N-H donates
    energy_kcal : (P,) float64, E(acceptor -> donor) in kcal/mol (clamped at -9.9)

    Pairs are evaluated when CA-CA < 9 Å, donor not in (acceptor, acceptor + 1), the donor has an
    amide H (:func:`amide_hydrogens`) and the acceptor an O.
    """
    ca = bb.xyz[:, 1]
    idx = np.flatnonzero(bb.complete)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(idx) < 2:
        return empty
    pq = cKDTree(ca[idx]).query_pairs(MAX_CA_DISTANCE_A, output_type="ndarray")
    if len(pq) == 0:
        return empty
    a, b = idx[pq[:, 0]], idx[pq[:, 1]]
    near = np.linalg.norm(ca[a] - ca[b], axis=1) < MAX_CA_DISTANCE_A  # query_pairs keeps d == 9 Å too
    a, b = a[near], b[near]
    acc = np.concatenate([a, b])
    don = np.concatenate([b, a])
    h = amide_hydrogens(bb)
    keep = (don != acc + 1) & ~np.isnan(h[don, 0]) & ~np.isnan(bb.xyz[acc, 3, 0])
    acc, don = acc[keep], don[keep]
    n, hh = bb.xyz[don, 0], h[don]
    c, o = bb.xyz[acc, 2], bb.xyz[acc, 3]
    r_on = np.linalg.norm(o - n, axis=1)
    r_ch = np.linalg.norm(c - hh, axis=1)
    r_oh = np.linalg.norm(o - hh, axis=1)
    r_cn = np.linalg.norm(c - n, axis=1)
    too_close = np.minimum(np.minimum(r_on, r_ch), np.minimum(r_oh, r_cn)) < MIN_DISTANCE_A
    with np.errstate(divide="ignore", invalid="ignore"):
        e = COUPLING_KCAL_A * (1.0 / r_on + 1.0 / r_ch - 1.0 / r_oh - 1.0 / r_cn)
    e = np.where(too_close, MIN_HBOND_KCAL, np.maximum(e, MIN_HBOND_KCAL))
    order = np.lexsort((don, acc))
    return acc[order], don[order], e[order]


def hbond_energy(model_or_backbone: AtomModel | Backbone) -> scipy.sparse.csr_array:
    """Kabsch-Sander backbone H-bond energies as an (R, R) sparse matrix, kcal/mol.

    Entry [i, j] is E(i -> j): C=O of residue i accepting from N-H of residue j (see
    :func:`hbond_pairs` for which pairs are evaluated; the others are structural zeros).
    Residues are in :func:`backbone_arrays` order. ``.toarray()`` gives the dense matrix.
    """
    bb = _as_backbone(model_or_backbone)
    acc, don, e = hbond_pairs(bb)
    r = bb.n_residues
    return scipy.sparse.csr_array((e, (acc, don)), shape=(r, r))


class _Bonds:
    """Set of H-bonds (acceptor, donor) with vectorised membership tests."""

    def __init__(self, acc: np.ndarray, don: np.ndarray, n_res: int):
        self.n = n_res
        self.acc, self.don = acc, don
        self.keys = np.unique(acc * n_res + don)

    def has(self, acc: np.ndarray, don: np.ndarray) -> np.ndarray:
        acc = np.asarray(acc, np.int64)
        don = np.asarray(don, np.int64)
        ok = (acc >= 0) & (acc < self.n) & (don >= 0) & (don < self.n)
        key = np.where(ok, acc * self.n + don, -1)
        if len(self.keys) == 0:
            return np.zeros(key.shape, bool)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return ok & (self.keys[pos] == key)


def _hbonds(bb: Backbone) -> _Bonds:
    """H-bonds: E < -0.5 kcal/mol and among the two best acceptors of the donor (DSSP)."""
    acc, don, e = hbond_pairs(bb)
    good = e < HBOND_CUTOFF_KCAL
    acc, don, e = acc[good], don[good], e[good]
    order = np.lexsort((e, don))
    acc, don = acc[order], don[order]
    group_start = np.searchsorted(don, don, side="left")
    rank = np.arange(len(don)) - group_start
    best2 = rank < 2
    return _Bonds(acc[best2], don[best2], bb.n_residues)


def _turns(bonds: _Bonds, seg: np.ndarray) -> dict[int, np.ndarray]:
    """(R,) bool n-turn starts for n = 3, 4, 5: Hbond(i, i+n) within one segment."""
    r = len(seg)
    out = {}
    for n in (3, 4, 5):
        t = np.zeros(r, bool)
        if r > n:
            i = np.arange(r - n)
            t[: r - n] = bonds.has(i, i + n) & (seg[i] == seg[i + n])
        out[n] = t
    return out


def _bridges(bonds: _Bonds, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parallel and antiparallel bridges as (k, 2) int64 arrays of (i, j), i < j, sorted.

    Candidates come from the H-bond list itself (each bridge pattern contains a bond), so no
    residue-pair matrix is built.
    """
    r = len(seg)
    a, b = bonds.acc, bonds.don
    # parallel: Hbond(i-1, j) & Hbond(j, i+1) (i = a+1, j = b), or the same with i and j swapped
    par = np.stack([a + 1, b], axis=1)[bonds.has(b, a + 2)]
    # antiparallel: Hbond(i, j) & Hbond(j, i); Hbond(i-1, j+1) & Hbond(j-1, i+1) (i = a+1, j = b-1)
    anti = np.concatenate([np.stack([a, b], axis=1)[bonds.has(b, a)],
                           np.stack([a + 1, b - 1], axis=1)[bonds.has(b - 2, a + 2)]])

    def clean(p: np.ndarray) -> np.ndarray:
        if len(p) == 0:
            return np.zeros((0, 2), np.int64)
        p = np.unique(np.sort(p, axis=1), axis=0)
        i, j = p[:, 0], p[:, 1]
        ok = (j - i >= 3) & (i >= 1) & (j + 1 < r)
        p, i, j = p[ok], i[ok], j[ok]
        ok = (seg[i - 1] == seg[i + 1]) & (seg[j - 1] == seg[j + 1])
        return p[ok]

    par, anti = clean(par), clean(anti)
    if len(par) and len(anti):  # DSSP tests parallel first
        anti = anti[~np.isin(anti[:, 0] * r + anti[:, 1], par[:, 0] * r + par[:, 1])]
    return par, anti


def _ladders(par: np.ndarray, anti: np.ndarray) -> list[list]:
    """Consecutive bridges joined into ladders: [type, i_min, i_max, j_min, j_max, n_bridges, j_first].

    Parallel ladders follow (i, j) -> (i+1, j+1), antiparallel ones (i, j) -> (i+1, j-1).
    """
    out = []
    for kind, p in ((0, par), (1, anti)):
        if len(p) == 0:
            continue
        diag = p[:, 1] - p[:, 0] if kind == 0 else p[:, 1] + p[:, 0]
        order = np.lexsort((p[:, 0], diag))
        p, diag = p[order], diag[order]
        new = np.ones(len(p), bool)
        new[1:] = (diag[1:] != diag[:-1]) | (p[1:, 0] != p[:-1, 0] + 1)
        lid = np.cumsum(new) - 1
        n_l = int(lid[-1]) + 1
        i_min = np.full(n_l, np.iinfo(np.int64).max)
        np.minimum.at(i_min, lid, p[:, 0])
        i_max = np.zeros(n_l, np.int64)
        np.maximum.at(i_max, lid, p[:, 0])
        j_min = np.full(n_l, np.iinfo(np.int64).max)
        np.minimum.at(j_min, lid, p[:, 1])
        j_max = np.zeros(n_l, np.int64)
        np.maximum.at(j_max, lid, p[:, 1])
        count = np.bincount(lid, minlength=n_l)
        j_first = j_min if kind == 0 else j_max  # the j of the ladder's first (lowest-i) bridge
        out += [[kind, int(i_min[k]), int(i_max[k]), int(j_min[k]), int(j_max[k]), int(count[k]), int(j_first[k])]
                for k in range(n_l)]
    out.sort(key=lambda L: (L[1], L[6]))
    return out


def _in(x: int, n: int) -> bool:
    """DSSP's unsigned test ``(uint32)x < n``: 0 <= x < n."""
    return 0 <= x < n


def _join_bulges(ladders: list[list], seg: np.ndarray) -> list[list]:
    """Join ladders of one type across beta bulges, following DSSP 2.x's loop (one pass per ladder)."""
    i = 0
    while i < len(ladders):
        j = i + 1
        while j < len(ladders):
            kind, ibi, iei, jbi, jei = ladders[i][:5]
            kind_j, ibj, iej, jbj, jej = ladders[j][:5]
            if (kind != kind_j or seg[min(ibi, ibj)] != seg[max(iei, iej)]
                    or seg[min(jbi, jbj)] != seg[max(jei, jej)]
                    or not _in(ibj - iei, 6) or (iei >= ibj and ibi <= iej)):
                j += 1
                continue
            if kind == 0:
                bulge = (_in(jbj - jei, 6) and _in(ibj - iei, 3)) or _in(jbj - jei, 3)
            else:
                bulge = (_in(jbi - jej, 6) and _in(ibj - iei, 3)) or _in(jbi - jej, 3)
            if bulge:
                L = ladders[i]
                L[2] = iej
                if kind == 0:
                    L[4] = jej
                else:
                    L[3] = jbj
                L[5] += ladders[j][5]
                del ladders[j]
            else:
                j += 1
        i += 1
    return ladders


def _bend(bb: Backbone) -> np.ndarray:
    """(R,) bool: CA(i-2)->CA(i) vs CA(i)->CA(i+2) angle above 70 degrees, i-2..i+2 in one segment."""
    r = bb.n_residues
    out = np.zeros(r, bool)
    if r < 5:
        return out
    ca = bb.xyz[:, 1]
    i = np.arange(2, r - 2)
    u = ca[i] - ca[i - 2]
    v = ca[i + 2] - ca[i]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(u * v, axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
        kappa = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        out[i] = (kappa > BEND_KAPPA_DEG) & (bb.segment[i - 2] == bb.segment[i + 2])
    return out


def _spread(starts: np.ndarray, length: int, r: int) -> np.ndarray:
    """(R,) bool: residues s .. s+length-1 for every True start s."""
    out = np.zeros(r, bool)
    s = np.flatnonzero(starts)
    for k in range(length):
        out[s[s + k < r] + k] = True
    return out


def _minimal_helix_starts(turn: np.ndarray) -> np.ndarray:
    """(R,) bool: i with n-turns at i-1 and i."""
    out = np.zeros(len(turn), bool)
    out[1:] = turn[1:] & turn[:-1]
    return out


def _all_free(free: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """starts restricted to those whose residues s..s+length-1 are all ``free``."""
    r = len(free)
    ok = starts.copy()
    for k in range(length):
        shifted = np.zeros(r, bool)
        shifted[: r - k] = free[k:]
        ok &= shifted
    return ok


def assign_secondary_structure(model: AtomModel | Backbone, *, states: int = 3) -> np.ndarray:
    """Secondary structure per protein residue by the DSSP rules (see the module docstring).

    Parameters
    ----------
    model : AtomModel, or a :class:`Backbone` from :func:`backbone_arrays`
    states : 8 for DSSP codes ``H G I E B T S -``; 3 for ``H E C`` (H, G, I -> H; E, B -> E;
        T, S, - -> C)

    Returns
    -------
    (R,) array of one-letter codes (dtype ``<U1``) in :func:`backbone_arrays` order.
    """
    if states not in (3, 8):
        raise InputError(f"states must be 3 or 8, got {states!r}")
    bb = _as_backbone(model)
    r = bb.n_residues
    seg = bb.segment
    bonds = _hbonds(bb)
    ss = np.full(r, "-", dtype="<U1")
    # beta: ladders (>= 2 bridges, bulges joined) -> E, lone bridges -> B
    par, anti = _bridges(bonds, seg)
    ladders = _join_bulges(_ladders(par, anti), seg)
    strand = np.zeros(r + 1, np.int64)
    bridge = np.zeros(r + 1, np.int64)
    for _, i0, i1, j0, j1, count, _ in ladders:
        target = strand if count > 1 else bridge
        target[i0] += 1
        target[i1 + 1] -= 1
        target[j0] += 1
        target[j1 + 1] -= 1
    is_e = np.cumsum(strand)[:r] > 0
    ss[np.cumsum(bridge)[:r] > 0] = "B"
    ss[is_e] = "E"
    # helices: alpha overwrites everything, then 3-10 and pi where still free
    turns = _turns(bonds, seg)
    ss[_spread(_minimal_helix_starts(turns[4]), 4, r)] = "H"
    g = _all_free(ss == "-", _minimal_helix_starts(turns[3]), 3)
    ss[_spread(g, 3, r)] = "G"
    i5 = _all_free((ss == "-") | (ss == "I"), _minimal_helix_starts(turns[5]), 5)
    ss[_spread(i5, 5, r)] = "I"
    # turns and bends on what is still loop
    in_turn = np.zeros(r, bool)
    for n, t in turns.items():
        for k in range(1, min(n, r)):
            in_turn[k:] |= t[: r - k]
    loop = ss == "-"
    ss[loop & in_turn] = "T"
    ss[(ss == "-") & _bend(bb)] = "S"
    ss[~bb.complete] = "-"
    return reduce_to_three(ss) if states == 3 else ss


def reduce_to_three(ss8: np.ndarray) -> np.ndarray:
    """(R,) DSSP codes -> (R,) 'H' (H, G, I), 'E' (E, B) or 'C' (everything else)."""
    ss8 = np.asarray(ss8).astype(str)
    out = np.full(len(ss8), "C", dtype="<U1")
    out[np.isin(ss8, ("H", "G", "I"))] = "H"
    out[np.isin(ss8, ("E", "B"))] = "E"
    return out


def sse_fragments(ss3: np.ndarray, chain_index: np.ndarray, *, min_helix: int = 4,
                  min_strand: int = 3) -> list[tuple[int, int, str]]:
    """Regular secondary-structure fragments: maximal runs of 'H' or 'E' within one chain.

    Parameters
    ----------
    ss3 : (R,) one-letter codes ('H', 'E', other letters are ignored), e.g. from
        :func:`assign_secondary_structure` with ``states=3``
    chain_index : (R,) chain of each residue (:attr:`Backbone.chain_index`)
    min_helix, min_strand : shortest run kept, in residues

    Returns
    -------
    list of (first residue index, last residue index inclusive, 'H' or 'E'), sorted by position.
    """
    ss3 = np.asarray(ss3).astype(str)
    chain_index = np.asarray(chain_index)
    if ss3.shape != chain_index.shape or ss3.ndim != 1:
        raise InputError(f"ss3 and chain_index must be equal-length 1-D arrays, got {ss3.shape} and "
                         f"{chain_index.shape}")
    if min_helix < 1 or min_strand < 1:
        raise InputError(f"min_helix and min_strand must be >= 1, got {min_helix} and {min_strand}")
    r = len(ss3)
    if r == 0:
        return []
    new = np.ones(r, bool)
    new[1:] = (ss3[1:] != ss3[:-1]) | (chain_index[1:] != chain_index[:-1])
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, r - 1)
    kind = ss3[first]
    length = last - first + 1
    keep = ((kind == "H") & (length >= min_helix)) | ((kind == "E") & (length >= min_strand))
    return [(int(a), int(b), str(k)) for a, b, k in zip(first[keep], last[keep], kind[keep])]
