"""Compare a model with a reference structure: TM-score, GDT, C-alpha RMSD.

Residues are paired first (:func:`residue_correspondence`: by chain + residue
number, or by a per-chain global sequence alignment), then the paired C-alpha
atoms are scored with the correspondence held fixed, as Zhang's TM-score program
does:

* :func:`tm_score` -- TM = (1 / L_ref) sum_i 1 / (1 + (d_i / d0)^2) maximised over
  rigid superpositions, with d0 = 1.24 (L_ref - 15)^(1/3) - 1.8 Å (0.5 Å when
  L_ref <= 21, and never below 0.5 Å).
* :func:`gdt` -- fraction of reference residues within 0.5, 1, 2, 4, 8 Å after
  the superposition that maximises each count; GDT-TS (1, 2, 4, 8 Å) and GDT-HA
  (0.5, 1, 2, 4 Å).
* :func:`rmsd_after_superposition` -- C-alpha RMSD after the least-squares fit of
  all pairs.

The superposition search follows TMscore (Zhang & Skolnick 2004; the
``TMscore8_search`` routine of TM-align/US-align): seed fragments of L, L/2, L/4,
... down to 4 consecutive pairs (at most six lengths), slid over every start
position; least-squares fit on the seed; then up to 20 rounds of re-selecting the pairs
closer than a search distance and re-fitting, keeping the best score seen. The
search runs in numba; a 300-residue pair takes a few tens of milliseconds.

All scores are normalised by the number of reference C-alpha atoms, so a model
missing residues is penalised.

Scores that need no superposition or no residue order:

* :func:`lddt_ca` -- C-alpha lDDT (Mariani et al. 2013): fraction of reference
  distances under 15 Å preserved within 0.5, 1, 2 and 4 Å, averaged.
* :func:`placement_crmsd` -- cRMSD of a placement (BENCHMARKS.md): RMSD between a
  placed model and the same model superposed onto the target.
* :func:`crscore` -- CRscore of paper 003 (Eq. 1) for unordered C-alpha sets, with
  greedy shortest-distance pairing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import gemmi
import numba
import numpy as np
from scipy.spatial import cKDTree

from emforge.errors import InputError
from emforge.models import AtomModel, RigidTransform, superpose

log = logging.getLogger(__name__)

#: "auto" pairs by residue numbering when at least this fraction of the numbering pairs
#: have the same amino acid ...
AUTO_MIN_IDENTITY = 0.9
#: ... and the numbering pairs cover at least this fraction of the shorter structure
#: (the one with fewer C-alpha atoms), and the sequence alignment does not pair more
#: identical residues; otherwise it aligns sequences.
AUTO_MIN_COVERAGE = 0.5
#: chains with different ids are paired only when their aligned sequence identity
#: (identical pairs / length of the shorter chain) reaches this (a lone chain on each
#: side is always paired).
MIN_CHAIN_IDENTITY = 0.3
#: fewest residue pairs a comparison accepts (a superposition needs 3 points).
MIN_PAIRS = 3

#: cutoffs of GDT-TS and GDT-HA, Å
GDT_TS_CUTOFFS_A = (1.0, 2.0, 4.0, 8.0)
GDT_HA_CUTOFFS_A = (0.5, 1.0, 2.0, 4.0)

# TMscore search parameters (TMscore8_search)
_N_ITER = 20          # refinement rounds per seed
_N_INIT_MAX = 6       # at most six seed fragment lengths
_L_INIT_MIN = 4       # shortest seed fragment
_D0_SEARCH_MIN_A = 4.5
_D0_SEARCH_MAX_A = 8.0

_MODE_TM = 0
_MODE_COUNT = 1


# -- residue correspondence ---------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Correspondence:
    """Paired residues of a model and a reference, as indices of their C-alpha atoms.

    Attributes
    ----------
    model_index : (K,) int64
        Rows of ``model.calpha()``.
    reference_index : (K,) int64
        Rows of ``reference.calpha()``; pairs are sorted by this (reference order).
    method : str
        The pairing actually used: ``"numbering"`` or ``"alignment"``.
    n_reference : int
        Number of reference residues with a C-alpha atom (the normalisation length
        of the scores).
    n_model : int
        Number of model residues with a C-alpha atom.
    sequence_identity : float
        Fraction of the K pairs whose residues are the same amino acid.
    """

    model_index: np.ndarray
    reference_index: np.ndarray
    method: str
    n_reference: int
    n_model: int
    sequence_identity: float

    @property
    def n_pairs(self) -> int:
        return len(self.model_index)


@dataclass(frozen=True)
class _Residues:
    """C-alpha rows of one structure: one per residue (duplicates dropped), with labels."""

    index: np.ndarray      # (R,) rows of AtomModel.calpha()
    chain_id: np.ndarray   # (R,) str
    res_seq: np.ndarray    # (R,) int64
    ins_code: np.ndarray   # (R,) str
    one_letter: np.ndarray  # (R,) str
    n_calpha: int          # residues with a C-alpha (= R)

    def chains(self) -> list[tuple[str, np.ndarray]]:
        """(chain id, positions in this table) per chain, in order of first appearance."""
        _, first = np.unique(self.chain_id, return_index=True)
        ids = [str(self.chain_id[i]) for i in np.sort(first)]
        return [(c, np.flatnonzero(self.chain_id == c)) for c in ids]


def _residues(model: AtomModel) -> _Residues:
    ca = model.calpha()
    starts = ca.residue_starts()           # first C-alpha of each residue (drops duplicates)
    table = ca.residue_table()
    return _Residues(starts, table["chain_id"].astype(str), np.asarray(table["res_seq"], np.int64),
                     table["ins_code"].astype(str), table["one_letter"].astype(str), len(starts))


def _n_identical(a: np.ndarray, b: np.ndarray) -> int:
    """Number of positions where one-letter codes agree (unknown 'X' never counts)."""
    return int(np.count_nonzero((a == b) & (a != "X")))


def _identity(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of positions where one-letter codes agree (0 for no positions)."""
    return _n_identical(a, b) / len(a) if len(a) else 0.0


def _pair_by_numbering(m: _Residues, r: _Residues) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in the residue tables) of residues with equal (chain, number, insertion code)."""
    ref_pos = {(c, int(s), i): k for k, (c, s, i) in
               enumerate(zip(r.chain_id.tolist(), r.res_seq.tolist(), r.ins_code.tolist()))}
    mi, ri = [], []
    seen: set[int] = set()
    for k, key in enumerate(zip(m.chain_id.tolist(), m.res_seq.tolist(), m.ins_code.tolist())):
        j = ref_pos.get((key[0], int(key[1]), key[2]))
        if j is not None and j not in seen:
            seen.add(j)
            mi.append(k)
            ri.append(j)
    return np.asarray(mi, np.int64), np.asarray(ri, np.int64)


_CIGAR = re.compile(r"(\d+)([MID])")


def _align_sequences(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global alignment of one-letter arrays ``a`` (query) and ``b`` (target).

    gemmi's Needleman-Wunsch with BLOSUM62 (gap open -10, extend -1; residue names
    are expanded to three letters so gemmi applies the matrix). Returns the
    positions in ``a`` and ``b`` of the aligned (non-gap) pairs.
    """
    def names(seq):
        return [gemmi.expand_one_letter(str(c), gemmi.ResidueKind.AA) or "UNK" for c in seq]

    res = gemmi.align_string_sequences(names(a), names(b), [], gemmi.AlignmentScoring("b"))
    ia, ib = [], []
    i = j = 0
    for n, op in _CIGAR.findall(res.cigar_str()):
        n = int(n)
        if op == "M":
            ia.extend(range(i, i + n))
            ib.extend(range(j, j + n))
            i += n
            j += n
        elif op == "I":     # residues only in the query
            i += n
        else:               # "D": residues only in the target
            j += n
    return np.asarray(ia, np.int64), np.asarray(ib, np.int64)


def _pair_by_alignment(m: _Residues, r: _Residues) -> tuple[np.ndarray, np.ndarray]:
    """Pair chains (same ids, else best sequence identity), then align each chain pair."""
    mch, rch = m.chains(), r.chains()
    cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, float]] = {}

    def aligned(a: int, b: int):
        if (a, b) not in cache:
            pa, pb = mch[a][1], rch[b][1]
            ia, ib = _align_sequences(m.one_letter[pa], r.one_letter[pb])
            same = _n_identical(m.one_letter[pa][ia], r.one_letter[pb][ib])
            cache[(a, b)] = (pa[ia], pb[ib], same / max(1, min(len(pa), len(pb))))
        return cache[(a, b)]

    m_ids = [c for c, _ in mch]
    r_ids = [c for c, _ in rch]
    shared = [c for c in m_ids if c in r_ids]
    chain_pairs: list[tuple[int, int]] = []
    if shared and len(shared) == min(len(m_ids), len(r_ids)):
        by_id = [(m_ids.index(c), r_ids.index(c)) for c in shared]
        if all(aligned(a, b)[2] >= MIN_CHAIN_IDENTITY for a, b in by_id):
            chain_pairs = by_id
    if not chain_pairs and len(mch) == 1 and len(rch) == 1:
        chain_pairs = [(0, 0)]
    if not chain_pairs:
        # greedy one-to-one matching by identity; ties go to the same position in chain order
        cand = [(-aligned(a, b)[2], abs(a - b), a, b) for a in range(len(mch)) for b in range(len(rch))]
        used_m: set[int] = set()
        used_r: set[int] = set()
        for neg_id, _, a, b in sorted(cand):
            if -neg_id < MIN_CHAIN_IDENTITY:
                break
            if a not in used_m and b not in used_r:
                used_m.add(a)
                used_r.add(b)
                chain_pairs.append((a, b))
    for a, b in chain_pairs:
        log.debug("chain %s of the model pairs with chain %s of the reference (identity %.2f)",
                  m_ids[a], r_ids[b], aligned(a, b)[2])
    if not chain_pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    mi = np.concatenate([aligned(a, b)[0] for a, b in chain_pairs])
    ri = np.concatenate([aligned(a, b)[1] for a, b in chain_pairs])
    return mi, ri


def residue_correspondence(model: AtomModel, reference: AtomModel, method: str = "auto") -> Correspondence:
    """Pair the residues (C-alpha atoms) of ``model`` with those of ``reference``.

    Parameters
    ----------
    model, reference
        Atomic models; only amino-acid residues with a C-alpha atom take part.
    method
        ``"numbering"``: pair residues with equal (chain id, residue number, insertion
        code). ``"alignment"``: pair chains (by id when the ids correspond and each
        such pair reaches :data:`MIN_CHAIN_IDENTITY`; otherwise one-to-one by best
        sequence identity, ties to the same position in chain order; a single chain on
        each side always pairs), then globally align each chain pair's sequences
        (BLOSUM62, gap open 10, extend 1) and pair the aligned, non-gap positions.
        ``"auto"``: numbering when its pairs are at least :data:`AUTO_MIN_IDENTITY`
        identical in amino acid, cover at least :data:`AUTO_MIN_COVERAGE` of the
        shorter structure, and hold at least as many identical pairs as the alignment
        (so a partly shifted numbering loses to the alignment); else alignment.

    Returns
    -------
    Correspondence
        Indices into ``model.calpha()`` and ``reference.calpha()``, sorted in
        reference order.

    Raises
    ------
    InputError
        If fewer than :data:`MIN_PAIRS` residues can be paired.
    """
    if method not in ("auto", "numbering", "alignment"):
        raise ValueError(f"unknown correspondence method {method!r}; use auto, numbering or alignment")
    m, r = _residues(model), _residues(reference)
    if len(m.index) == 0 or len(r.index) == 0:
        which = "model" if len(m.index) == 0 else "reference"
        raise InputError(f"the {which} has no amino-acid C-alpha atoms to compare")
    used = method
    if method in ("auto", "numbering"):
        mi, ri = _pair_by_numbering(m, r)
    if method == "auto":
        ident = _identity(m.one_letter[mi], r.one_letter[ri])
        coverage = len(mi) / min(len(m.index), len(r.index))
        ai, bi = _pair_by_alignment(m, r)
        same_num = _n_identical(m.one_letter[mi], r.one_letter[ri])
        same_ali = _n_identical(m.one_letter[ai], r.one_letter[bi])
        numbering_ok = ident >= AUTO_MIN_IDENTITY and coverage >= AUTO_MIN_COVERAGE and same_num >= same_ali
        used = "numbering" if numbering_ok else "alignment"
        log.debug("numbering pairs %d residues (identity %.2f, coverage %.2f, %d identical), alignment %d "
                  "identical: using %s", len(mi), ident, coverage, same_num, same_ali, used)
        if not numbering_ok:
            mi, ri = ai, bi
    elif method == "alignment":
        mi, ri = _pair_by_alignment(m, r)
    if len(mi) < MIN_PAIRS:
        raise InputError(f"model and reference share only {len(mi)} residue pair(s) by {used}; "
                         f"at least {MIN_PAIRS} are needed (check chains, numbering and sequences)")
    order = np.argsort(ri, kind="stable")
    mi, ri = mi[order], ri[order]
    return Correspondence(model_index=m.index[mi], reference_index=r.index[ri], method=used,
                          n_reference=r.n_calpha, n_model=m.n_calpha,
                          sequence_identity=_identity(m.one_letter[mi], r.one_letter[ri]))


# -- superposition search (numba) ---------------------------------------------------------------

def _seed_lengths(n: int) -> np.ndarray:
    """Seed fragment lengths n, n/2, n/4, ... down to 4 (at most six), as TMscore."""
    lmin = min(_L_INIT_MIN, n)
    out = []
    for i in range(_N_INIT_MAX - 1):
        li = int(n / 2.0 ** i)
        if li <= lmin:
            out.append(lmin)
            return np.asarray(out, np.int64)
        out.append(li)
    out.append(lmin)
    return np.asarray(out, np.int64)


@numba.njit(cache=True)
def _top_eigenvector4(k):
    """Unit eigenvector of the largest eigenvalue of a symmetric (4, 4) matrix (cyclic Jacobi).

    Hand-written rather than LAPACK so the numba kernels compile in seconds.
    """
    a = k.copy()
    v = np.eye(4)
    scale = 0.0
    for p in range(4):
        for q in range(4):
            scale += a[p, q] * a[p, q]
    for _ in range(60):
        off = 0.0
        for p in range(3):
            for q in range(p + 1, 4):
                off += a[p, q] * a[p, q]
        if off <= 1e-32 * scale or off == 0.0:
            break
        for p in range(3):
            for q in range(p + 1, 4):
                apq = a[p, q]
                if apq == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * apq)
                if abs(theta) > 1e150:
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for r in range(4):      # A <- A J
                    arp = a[r, p]
                    arq = a[r, q]
                    a[r, p] = c * arp - s * arq
                    a[r, q] = s * arp + c * arq
                for r in range(4):      # A <- J^T A
                    apr = a[p, r]
                    aqr = a[q, r]
                    a[p, r] = c * apr - s * aqr
                    a[q, r] = s * apr + c * aqr
                for r in range(4):      # V <- V J
                    vrp = v[r, p]
                    vrq = v[r, q]
                    v[r, p] = c * vrp - s * vrq
                    v[r, q] = s * vrp + c * vrq
    best = 0
    for p in range(1, 4):
        if a[p, p] > a[best, best]:
            best = p
    out = v[:, best].copy()
    return out / np.sqrt(np.sum(out * out))


@numba.njit(cache=True)
def _kabsch(x, y, idx, n, rot, trans):
    """Least-squares fit of x[idx[:n]] onto y[idx[:n]]; writes rot (3, 3) and trans (3,).

    Horn's unit-quaternion solution: the rotation is the top eigenvector of the 4 x 4
    matrix built from the cross-covariance, always proper (no reflection case).
    """
    cx = np.zeros(3)
    cy = np.zeros(3)
    for k in range(n):
        m = idx[k]
        for a in range(3):
            cx[a] += x[m, a]
            cy[a] += y[m, a]
    cx /= n
    cy /= n
    h = np.zeros((3, 3))                  # h[a, b] = sum (x_a - cx_a)(y_b - cy_b)
    for k in range(n):
        m = idx[k]
        for a in range(3):
            xa = x[m, a] - cx[a]
            for b in range(3):
                h[a, b] += xa * (y[m, b] - cy[b])
    sxx, sxy, sxz = h[0, 0], h[0, 1], h[0, 2]
    syx, syy, syz = h[1, 0], h[1, 1], h[1, 2]
    szx, szy, szz = h[2, 0], h[2, 1], h[2, 2]
    kmat = np.empty((4, 4))
    kmat[0, 0] = sxx + syy + szz
    kmat[0, 1] = kmat[1, 0] = syz - szy
    kmat[0, 2] = kmat[2, 0] = szx - sxz
    kmat[0, 3] = kmat[3, 0] = sxy - syx
    kmat[1, 1] = sxx - syy - szz
    kmat[1, 2] = kmat[2, 1] = sxy + syx
    kmat[1, 3] = kmat[3, 1] = szx + sxz
    kmat[2, 2] = -sxx + syy - szz
    kmat[2, 3] = kmat[3, 2] = syz + szy
    kmat[3, 3] = -sxx - syy + szz
    q = _top_eigenvector4(kmat)
    q0, q1, q2, q3 = q[0], q[1], q[2], q[3]
    rot[0, 0] = q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3
    rot[0, 1] = 2.0 * (q1 * q2 - q0 * q3)
    rot[0, 2] = 2.0 * (q1 * q3 + q0 * q2)
    rot[1, 0] = 2.0 * (q1 * q2 + q0 * q3)
    rot[1, 1] = q0 * q0 - q1 * q1 + q2 * q2 - q3 * q3
    rot[1, 2] = 2.0 * (q2 * q3 - q0 * q1)
    rot[2, 0] = 2.0 * (q1 * q3 - q0 * q2)
    rot[2, 1] = 2.0 * (q2 * q3 + q0 * q1)
    rot[2, 2] = q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3
    for a in range(3):
        trans[a] = cy[a] - (rot[a, 0] * cx[0] + rot[a, 1] * cx[1] + rot[a, 2] * cx[2])


@numba.njit(cache=True)
def _evaluate(x, y, rot, trans, mode, d0, d_select, lnorm, cut2, counts_best, d2, i_ali):
    """Score one superposition; select pairs closer than ``d_select`` into ``i_ali``.

    As TMscore's score_fun8: the selection distance grows by 0.5 Å until at least
    three pairs are selected (when there are more than three pairs). Updates
    ``counts_best`` with the per-cutoff counts of this superposition.
    Returns (score, n_selected).
    """
    n = x.shape[0]
    for i in range(n):
        s = 0.0
        for a in range(3):
            p = rot[a, 0] * x[i, 0] + rot[a, 1] * x[i, 1] + rot[a, 2] * x[i, 2] + trans[a] - y[i, a]
            s += p * p
        d2[i] = s
    score = 0.0
    if mode == _MODE_TM:
        inv_d02 = 1.0 / (d0 * d0)
        for i in range(n):
            score += 1.0 / (1.0 + d2[i] * inv_d02)
    else:
        c2 = d0 * d0
        for i in range(n):
            if d2[i] < c2:
                score += 1.0
    score /= lnorm
    for c in range(cut2.shape[0]):
        cnt = 0
        for i in range(n):
            if d2[i] < cut2[c]:
                cnt += 1
        counts_best[c] = max(counts_best[c], cnt)
    d = d_select
    while True:
        dd = d * d
        n_cut = 0
        for i in range(n):
            if d2[i] < dd:
                i_ali[n_cut] = i
                n_cut += 1
        if n_cut < 3 and n > 3:
            d += 0.5
        else:
            return score, n_cut


@numba.njit(cache=True)
def _search(x, y, mode, d0, d_seed, d_iter, lnorm, cut2, keys, lengths):
    """TMscore-style search for the superposition of x (model) onto y maximising a score.

    mode 0: TM-score with ``d0``; mode 1: count of pairs closer than ``d0``.
    Pairs are selected below ``d_seed`` after a seed fit and below ``d_iter`` in the
    refinement rounds; seeds are ``lengths`` consecutive pairs at every start.
    Returns (best score, rot, trans, best count per ``cut2``).

    A refinement round depends only on the pair set it fits, so a set already fitted
    with at least as many rounds left is not followed again (sets are recognised by
    a sum of per-pair random 64-bit ``keys``): this skips repeated work without
    changing the result.
    """
    n = x.shape[0]
    best = -1.0
    best_rot = np.eye(3)
    best_trans = np.zeros(3)
    counts_best = np.zeros(cut2.shape[0], np.int64)
    rot = np.eye(3)
    trans = np.zeros(3)
    d2 = np.empty(n)
    i_ali = np.empty(n, np.int64)
    k_ali = np.empty(n, np.int64)
    n_seeds = 0
    for l_frag in lengths:
        n_seeds += n - l_frag + 1
    cap = 64
    while cap < 8 * n_seeds:
        cap *= 2
    memo_key = np.zeros(cap, np.int64)      # open-addressing table: pair-set hash -> rounds left
    memo_left = np.zeros(cap, np.int64)
    memo_used = 0
    n_cut = 0
    for l_frag in lengths:
        for start in range(n - l_frag + 1):
            # round 0 fits the seed fragment; rounds 1.._N_ITER re-fit the selected pairs
            for k in range(l_frag):
                k_ali[k] = start + k
            ka = l_frag
            d_select = d_seed
            for it in range(_N_ITER + 1):
                if it > 0:
                    if n_cut < 3:
                        break
                    h = np.int64(n_cut)
                    for k in range(n_cut):
                        h += keys[i_ali[k]]
                    if h == 0:
                        h = 1
                    left = _N_ITER + 1 - it
                    slot = h & (cap - 1)
                    while memo_key[slot] != 0 and memo_key[slot] != h:
                        slot = (slot + 1) & (cap - 1)
                    if memo_key[slot] == h:
                        if memo_left[slot] >= left:
                            break
                        memo_left[slot] = left
                    elif 2 * memo_used < cap:       # table half full: stop remembering (still exact)
                        memo_key[slot] = h
                        memo_left[slot] = left
                        memo_used += 1
                    for k in range(n_cut):
                        k_ali[k] = i_ali[k]
                    ka = n_cut
                    d_select = d_iter
                _kabsch(x, y, k_ali, ka, rot, trans)
                score, n_cut = _evaluate(x, y, rot, trans, mode, d0, d_select, lnorm, cut2, counts_best,
                                         d2, i_ali)
                if score > best:
                    best = score
                    best_rot[:, :] = rot
                    best_trans[:] = trans
                if it > 0 and n_cut == ka:
                    same = True
                    for k in range(n_cut):
                        if i_ali[k] != k_ali[k]:
                            same = False
                            break
                    if same:
                        break
    return best, best_rot, best_trans, counts_best


def _pair_keys(n: int) -> np.ndarray:
    """(n,) fixed pseudo-random int64 keys identifying pairs in :func:`_search`'s memo."""
    return np.random.default_rng(20040701).integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max,
                                                    size=n, dtype=np.int64)


# -- scores on paired coordinates --------------------------------------------------------------

@dataclass(frozen=True)
class TMResult:
    """TM-score of paired C-alpha coordinates.

    Attributes
    ----------
    tm_score : float
        In (0, 1]; normalised by ``n_reference``.
    transform : RigidTransform
        The superposition found: maps the model onto the reference.
    d0_A : float
        The distance scale d0 in Å.
    n_aligned : int
        Number of residue pairs scored.
    n_reference : int
        Normalisation length L_ref.
    """

    tm_score: float
    transform: RigidTransform
    d0_A: float
    n_aligned: int
    n_reference: int


def tm_d0(n_reference: int) -> float:
    """TM-score distance scale d0 in Å for a reference of ``n_reference`` residues.

    d0 = 1.24 (L - 15)^(1/3) - 1.8, 0.5 Å when L <= 21 and never below 0.5 Å (as in
    TM-score / TM-align).
    """
    if n_reference <= 21:
        return 0.5
    return max(0.5, 1.24 * (n_reference - 15.0) ** (1.0 / 3.0) - 1.8)


def _pair_arrays(model_xyz, reference_xyz, n_reference) -> tuple[np.ndarray, np.ndarray, int]:
    x = np.ascontiguousarray(model_xyz, dtype=np.float64)
    y = np.ascontiguousarray(reference_xyz, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"need two (L, 3) coordinate arrays of equal shape, got {x.shape} and {y.shape}")
    if len(x) < MIN_PAIRS:
        raise ValueError(f"need at least {MIN_PAIRS} residue pairs, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("coordinates must be finite")
    lref = len(x) if n_reference is None else int(n_reference)
    if lref < len(x):
        raise ValueError(f"n_reference ({lref}) is smaller than the number of pairs ({len(x)})")
    return x, y, lref


def _centred_search(x, y, mode, d0, d_seed, d_iter, lnorm, cut2):
    """Run :func:`_search` on centred copies (well-scaled arithmetic); transform in the input frame."""
    cx, cy = x.mean(axis=0), y.mean(axis=0)
    score, rot, trans, counts = _search(x - cx, y - cy, mode, d0, d_seed, d_iter, float(lnorm), cut2,
                                        _pair_keys(len(x)), _seed_lengths(len(x)))
    # x' = R (x - cx) + t + cy  =>  translation t + cy - R cx
    return score, RigidTransform(rot, trans + cy - rot @ cx), counts


def _tm_search(x, y, lref, cut2) -> tuple[TMResult, np.ndarray]:
    d0 = tm_d0(lref)
    d0_search = min(max(d0, _D0_SEARCH_MIN_A), _D0_SEARCH_MAX_A)
    score, transform, counts = _centred_search(x, y, _MODE_TM, d0, d0_search - 1.0, d0_search + 1.0,
                                               lref, cut2)
    return TMResult(float(score), transform, float(d0), len(x), lref), counts


def tm_score(model_xyz: np.ndarray, reference_xyz: np.ndarray, n_reference: int | None = None) -> TMResult:
    """TM-score of paired C-alpha coordinates (row i of the model pairs with row i of the reference).

    Parameters
    ----------
    model_xyz, reference_xyz : (L, 3) float, Å
        Paired coordinates, L >= 3.
    n_reference
        Normalisation length L_ref (all reference residues, paired or not); default L.

    Returns
    -------
    TMResult
        The highest TM-score found by the TMscore search (seeds of L, L/2, ... 4
        pairs at every start, iterative re-fit on pairs within d0_search -/+ 1 Å,
        d0_search = d0 clamped to [4.5, 8] Å), and the transform achieving it.
    """
    x, y, lref = _pair_arrays(model_xyz, reference_xyz, n_reference)
    return _tm_search(x, y, lref, np.zeros(0))[0]


def _gdt_counts(x, y, lref, cutoffs, extra_counts=None) -> np.ndarray:
    """Best count of pairs closer than each cutoff over the per-cutoff searches."""
    cut2 = np.asarray(cutoffs, np.float64) ** 2
    best = np.zeros(len(cutoffs), np.int64) if extra_counts is None else extra_counts.copy()
    for c in cutoffs:
        _, _, counts = _centred_search(x, y, _MODE_COUNT, float(c), float(c), float(c), lref, cut2)
        best = np.maximum(best, counts)
    return best


def _gdt_result(counts: np.ndarray, cutoffs: list[float], wanted, lref: int) -> dict:
    frac = {c: float(n) / lref for c, n in zip(cutoffs, counts)}
    out: dict = {f"fraction_within_{c:g}A": frac[float(c)] for c in wanted}
    out["gdt_ts"] = float(np.mean([frac[c] for c in GDT_TS_CUTOFFS_A]))
    out["gdt_ha"] = float(np.mean([frac[c] for c in GDT_HA_CUTOFFS_A]))
    out["n_reference"] = int(lref)
    return out


def _all_cutoffs(cutoffs_A) -> list[float]:
    cuts = [float(c) for c in cutoffs_A]
    if not all(np.isfinite(c) and c > 0 for c in cuts):
        raise ValueError(f"GDT cutoffs must be finite distances > 0 Å, got {cutoffs_A}")
    return sorted(set(cuts) | set(GDT_TS_CUTOFFS_A) | set(GDT_HA_CUTOFFS_A))


def gdt(model_xyz: np.ndarray, reference_xyz: np.ndarray, n_reference: int | None = None,
        cutoffs_A=GDT_TS_CUTOFFS_A) -> dict:
    """Global distance test of paired C-alpha coordinates.

    For each cutoff c, the largest fraction of reference residues whose paired model
    C-alpha lies closer than c (strictly) after one rigid superposition. The search
    is the TMscore one, fitting on the pairs closer than c; every superposition
    visited by these searches and by the TM-score search counts for every cutoff.

    Parameters
    ----------
    model_xyz, reference_xyz : (L, 3) float, Å
        Paired coordinates, L >= 3.
    n_reference
        Normalisation length (all reference residues); default L.
    cutoffs_A
        Cutoffs in Å reported as ``fraction_within_<c>A``.

    Returns
    -------
    dict
        ``fraction_within_<c>A`` per cutoff, ``gdt_ts`` (mean over 1, 2, 4, 8 Å),
        ``gdt_ha`` (mean over 0.5, 1, 2, 4 Å), ``n_reference``; fractions in [0, 1].
    """
    x, y, lref = _pair_arrays(model_xyz, reference_xyz, n_reference)
    cuts = _all_cutoffs(cutoffs_A)
    _, tm_counts = _tm_search(x, y, lref, np.asarray(cuts) ** 2)
    return _gdt_result(_gdt_counts(x, y, lref, cuts, tm_counts), cuts, cutoffs_A, lref)


def rmsd_after_superposition(model_xyz: np.ndarray, reference_xyz: np.ndarray) -> float:
    """C-alpha RMSD in Å after the least-squares (Kabsch) fit of all (L, 3) pairs, L >= 3."""
    x, y, _ = _pair_arrays(model_xyz, reference_xyz, None)
    return float(superpose(x, y)[1])


# -- superposition-free and order-free scores ---------------------------------------------------

#: lDDT distance-difference thresholds, Å (Mariani et al. 2013)
LDDT_THRESHOLDS_A = (0.5, 1.0, 2.0, 4.0)
#: lDDT inclusion radius in the reference, Å
LDDT_INCLUSION_RADIUS_A = 15.0


def lddt_ca(model_xyz: np.ndarray, reference_xyz: np.ndarray,
            inclusion_radius_A: float = LDDT_INCLUSION_RADIUS_A,
            thresholds=LDDT_THRESHOLDS_A) -> tuple[float, np.ndarray]:
    """C-alpha lDDT (Mariani et al. 2013, Bioinformatics 29:2722): superposition-free.

    Every pair of different residues (i, j) whose reference C-alpha atoms lie closer than
    ``inclusion_radius_A`` (strictly) is checked; the pair is preserved at threshold t
    when ``|d_model(i, j) - d_reference(i, j)| < t``. The score is the fraction of
    preserved pairs, averaged over the thresholds. With one atom per residue, pairs
    "within the same residue" cannot occur.

    Parameters
    ----------
    model_xyz, reference_xyz : (L, 3) float, Å
        Paired coordinates (row i of the model pairs with row i of the reference).
        A model row holding NaN is a residue missing from the model: its pairs count
        as not preserved (so missing residues are penalised). A reference row holding
        NaN is left out altogether.
    inclusion_radius_A : float
        R0, 15 Å in the paper.
    thresholds : sequence of float
        Distance-difference thresholds in Å; (0.5, 1, 2, 4) in the paper.

    Returns
    -------
    global_lddt : float
        Preserved fraction over all pairs (pooled), averaged over thresholds; NaN
        when no pair lies within the inclusion radius.
    per_residue : ndarray, shape (L,)
        The same restricted to the pairs involving each residue; NaN for residues
        with no such pair (or a NaN reference row).
    """
    x = np.asarray(model_xyz, dtype=np.float64)
    y = np.asarray(reference_xyz, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape != y.shape:
        raise ValueError(f"need two (L, 3) coordinate arrays of equal shape, got {x.shape} and {y.shape}")
    r0 = float(inclusion_radius_A)
    if not (np.isfinite(r0) and r0 > 0):
        raise ValueError(f"inclusion radius must be a finite distance > 0 Å, got {inclusion_radius_A!r}")
    thr = np.asarray(thresholds, dtype=np.float64).ravel()
    if len(thr) == 0 or not np.all(np.isfinite(thr) & (thr > 0)):
        raise ValueError(f"lDDT thresholds must be finite distances > 0 Å, got {thresholds!r}")
    n = len(y)
    per_residue = np.full(n, np.nan)
    ref_ok = np.flatnonzero(np.isfinite(y).all(axis=1))
    if len(ref_ok) < 2:
        return float("nan"), per_residue
    pairs = cKDTree(y[ref_ok]).query_pairs(r0, output_type="ndarray")
    if len(pairs) == 0:
        return float("nan"), per_residue
    i, j = ref_ok[pairs[:, 0]], ref_ok[pairs[:, 1]]
    d_ref = np.linalg.norm(y[i] - y[j], axis=1)
    keep = d_ref < r0                      # query_pairs includes the radius itself
    i, j, d_ref = i[keep], j[keep], d_ref[keep]
    d_mod = np.linalg.norm(x[i] - x[j], axis=1)
    with np.errstate(invalid="ignore"):
        diff = np.abs(d_mod - d_ref)       # NaN for a missing model residue -> never preserved
        score = (diff[:, None] < thr[None, :]).mean(axis=1)   # per pair, mean over thresholds
    total = float(score.mean()) if len(score) else float("nan")
    n_pairs = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    s_pairs = np.bincount(i, score, minlength=n) + np.bincount(j, score, minlength=n)
    has = n_pairs > 0
    per_residue[has] = s_pairs[has] / n_pairs[has]
    return total, per_residue


def placement_crmsd(placed_xyz: np.ndarray, reference_xyz: np.ndarray) -> float:
    """cRMSD of a placement (BENCHMARKS.md): how far a placed model is from its best placement.

    The placed model (L, 3) is superposed onto the paired reference (L, 3) by the
    least-squares (Kabsch) fit of all pairs, and the C-alpha RMSD between the placed
    coordinates and those superposed coordinates is returned (Å). It measures only the
    rigid-body placement error: a model differing from the target in conformation but
    placed exactly where its best fit lies scores 0.
    """
    x, y, _ = _pair_arrays(placed_xyz, reference_xyz, None)
    transform, _ = superpose(x, y)
    best = transform.apply(x)
    return float(np.sqrt(np.mean(np.sum((x - best) ** 2, axis=1))))


#: CRscore pairing: once the free atoms make at most this many pairs, take them all at once
_CRSCORE_DENSE_PAIRS = 250_000


@numba.njit(cache=True)
def _greedy_pairs(pi, qi, used_p, used_q, take):
    """Walk candidate pairs in the given (distance) order; take a pair when both ends are free."""
    for k in range(pi.shape[0]):
        a = pi[k]
        b = qi[k]
        if not used_p[a] and not used_q[b]:
            used_p[a] = True
            used_q[b] = True
            take[k] = True


def crscore(predicted_xyz: np.ndarray, native_xyz: np.ndarray, d0_A: float | None = None,
            max_pair_distance_A: float | None = None) -> dict:
    """CRscore of an unordered set of predicted C-alpha positions (paper 003, Eq. 1).

    ``CRscore = (1 / L) sum_(i,j) 1 / (1 + (d_ij / d0)^2)`` over the pairs (i, j) of a
    predicted atom i and a native atom j chosen greedily: all predicted-native
    distances are taken in increasing order and a pair is kept when neither atom is
    already paired ("nonredundant ij pairs of the shortest distance"). L is the number
    of native atoms (the target length) and ``d0 = 1.24 (L - 15)^(1/3) - 1.8`` Å, the
    TM-score scale (:func:`tm_d0`). Residue order and connectivity play no part. The
    main text of paper 003 states no distance limit for the pairing (its Supplementary
    Text 2 is not at hand), so by default every atom of the smaller set is paired;
    ``max_pair_distance_A`` leaves pairs longer than that unpaired.

    Ties in distance are broken by predicted index, then native index, so the result
    does not depend on anything but the coordinates and this order.

    Parameters
    ----------
    predicted_xyz : (P, 3) float, Å
    native_xyz : (Q, 3) float, Å
    d0_A : float, optional
        Distance scale; default ``tm_d0(Q)``.
    max_pair_distance_A : float, optional
        Longest distance a pair may have (default: no limit).

    Returns
    -------
    dict
        ``crscore``, ``d0_A``, ``n_pairs``, ``n_predicted``, ``n_native``,
        ``pair_rmsd_A`` (RMS distance of the pairs, NaN when none),
        ``fraction_native_within_3A`` (native atoms paired closer than 3 Å, over L),
        and the pairs as arrays ``predicted_index`` and ``native_index`` ((K,) int64,
        sorted by pair distance) with ``pair_distance_A`` (K,).
    """
    p = np.asarray(predicted_xyz, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(native_xyz, dtype=np.float64).reshape(-1, 3)
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise ValueError("coordinates must be finite")
    n_p, n_q = len(p), len(q)
    if n_q == 0:
        raise ValueError("the native set holds no atoms")
    d0 = tm_d0(n_q) if d0_A is None else float(d0_A)
    if not (np.isfinite(d0) and d0 > 0):
        raise ValueError(f"d0 must be a finite distance > 0 Å, got {d0_A!r}")
    limit = np.inf if max_pair_distance_A is None else float(max_pair_distance_A)
    if not limit > 0:
        raise ValueError(f"max_pair_distance_A must be > 0 Å, got {max_pair_distance_A!r}")
    used_p = np.zeros(n_p, bool)
    used_q = np.zeros(n_q, bool)
    got_p, got_q, got_d = [], [], []
    # Greedy over all pairs in distance order, done in rounds of growing radius: the pairs
    # shorter than r are decided exactly as the all-pairs greedy decides them (they come
    # first in its order), and atoms left free after a round have no free partner within r.
    radius = min(limit, 8.0)
    while n_p and n_q and not used_p.all() and not used_q.all():
        fp, fq = np.flatnonzero(~used_p), np.flatnonzero(~used_q)
        if np.isfinite(radius):
            sdm = cKDTree(p[fp]).sparse_distance_matrix(cKDTree(q[fq]), radius, output_type="ndarray")
            a, b, d = fp[sdm["i"]], fq[sdm["j"]], sdm["v"]
        else:
            a = np.repeat(fp, len(fq))
            b = np.tile(fq, len(fp))
            d = np.linalg.norm(p[a] - q[b], axis=1)
        if len(d):
            order = np.lexsort((b, a, d))
            a, b, d = a[order], b[order], d[order]
            take = np.zeros(len(d), bool)
            _greedy_pairs(a, b, used_p, used_q, take)
            got_p.append(a[take])
            got_q.append(b[take])
            got_d.append(d[take])
        if radius >= limit:
            break
        # next round: double, or all remaining pairs once the free sets are small
        free = (~used_p).sum() * (~used_q).sum()
        radius = limit if (free <= _CRSCORE_DENSE_PAIRS or radius > 1e4) else min(limit, 2.0 * radius)
    pi = np.concatenate(got_p) if got_p else np.zeros(0, np.int64)
    qi = np.concatenate(got_q) if got_q else np.zeros(0, np.int64)
    dist = np.concatenate(got_d) if got_d else np.zeros(0)
    order = np.lexsort((qi, pi, dist))
    pi, qi, dist = pi[order].astype(np.int64), qi[order].astype(np.int64), dist[order]
    score = float(np.sum(1.0 / (1.0 + (dist / d0) ** 2)) / n_q)
    return {
        "crscore": score,
        "d0_A": d0,
        "n_pairs": int(len(dist)),
        "n_predicted": int(n_p),
        "n_native": int(n_q),
        "pair_rmsd_A": float(np.sqrt(np.mean(dist ** 2))) if len(dist) else float("nan"),
        "fraction_native_within_3A": float(np.count_nonzero(dist < 3.0) / n_q),
        "predicted_index": pi,
        "native_index": qi,
        "pair_distance_A": dist,
    }


# -- models -------------------------------------------------------------------------------------

def compare_models(model: AtomModel, reference: AtomModel, correspondence: str = "auto") -> dict:
    """Compare ``model`` with ``reference`` on C-alpha atoms.

    Parameters
    ----------
    model, reference
        Atomic models.
    correspondence
        How residues are paired: ``"auto"``, ``"numbering"`` or ``"alignment"``
        (see :func:`residue_correspondence`).

    Returns
    -------
    dict
        JSON-ready: ``tm_score``, ``gdt_ts``, ``gdt_ha`` (normalised by the number of
        reference C-alpha atoms), ``rmsd_A`` (over all pairs after the least-squares
        fit), ``n_aligned`` (residue pairs), ``n_reference``, ``n_model``, ``d0_A``,
        ``sequence_identity`` of the pairs, ``correspondence`` (the method used),
        ``lddt_ca`` (:func:`lddt_ca` over all reference residues; those without a
        model partner count as not preserved; None when no pair is within 15 Å).

    Raises
    ------
    InputError
        If fewer than three residues can be paired.
    """
    corr = residue_correspondence(model, reference, correspondence)
    x = model.calpha().coords[corr.model_index]
    y = reference.calpha().coords[corr.reference_index]
    x, y, lref = _pair_arrays(x, y, corr.n_reference)
    cuts = _all_cutoffs(GDT_TS_CUTOFFS_A)
    tm, tm_counts = _tm_search(x, y, lref, np.asarray(cuts) ** 2)
    g = _gdt_result(_gdt_counts(x, y, lref, cuts, tm_counts), cuts, (), lref)
    # lDDT over every reference residue; those without a model partner count as not preserved
    ref_rows = _residues(reference).index
    ref_all = reference.calpha().coords[ref_rows]
    model_all = np.full_like(ref_all, np.nan)
    model_all[np.searchsorted(ref_rows, corr.reference_index)] = x
    lddt, _ = lddt_ca(model_all, ref_all)
    return {
        "tm_score": tm.tm_score,
        "rmsd_A": rmsd_after_superposition(x, y),
        "gdt_ts": g["gdt_ts"],
        "gdt_ha": g["gdt_ha"],
        "n_aligned": corr.n_pairs,
        "n_reference": corr.n_reference,
        "n_model": corr.n_model,
        "d0_A": tm.d0_A,
        "sequence_identity": corr.sequence_identity,
        "correspondence": corr.method,
        "lddt_ca": lddt if np.isfinite(lddt) else None,
    }
