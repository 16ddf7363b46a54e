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
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import gemmi
import numba
import numpy as np

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
        ``sequence_identity`` of the pairs, ``correspondence`` (the method used).

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
    }
