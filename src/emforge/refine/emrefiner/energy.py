"""EM-Refiner energy (paper 000 Eq. 2-9), computable in full and incrementally for a moved set.

``E = w1 E_cc + w2 E_LJ + w3 E_hb + w4 E_bond + w5 E_torsion + w6 E_restraint`` with the paper's
default weights (520, 1.0, 0.8, 1.0, 0.6, 10) over the protein heavy atoms of a model:

``E_cc``
    ``1 - CC`` (Eq. 3) between the target map and the map of the model simulated with Eq. 4
    (kernel ``"emrefiner"`` of :mod:`emforge.simulate`, cut at 3 sigma) on the target's grid,
    over the whole box.
``E_LJ``
    Eq. 5 with CHARMM19 united-atom radii and well depths (:mod:`.lj`) over atom pairs more than
    three bonds apart and closer than :data:`LJ_CUTOFF_A`. The repulsive wall is evaluated at
    ``max(d, 0.6 r_ij)`` so that a Monte Carlo trial through a deep overlap costs a large but
    finite energy (``~460 eps_ij`` per pair) instead of overflowing.
``E_hb``
    Main-chain hydrogen bonds between the C=O of residue i and the N-H of residue j,
    ``|i - j| >= 3``, from four features (paper 000 after QUARK): the O...H distance, the inner
    angles C-O...H and O...H-N, and the torsion C-O...H-N (helical pairs only). Each pair with
    O...H < :data:`HB_CUTOFF_A` contributes ``-exp(-sum_k (F_k - mean_k)^2 / (2 sd_k^2))``: a
    Gaussian well, -1 for an ideal hydrogen bond and 0 for a broken one. (Eq. 6 in the paper's
    text reads as the bare quadratic sum; that would make an ideal hydrogen bond no better than
    no hydrogen bond at all and a slightly imperfect one worse, which cannot be what QUARK's
    term does; the extracted text drops exponentials and radicals elsewhere, so we read the
    Gaussian-well form.) Means and standard deviations come from real structures
    (:class:`HBondParams`; table built by ``tools/build_emrefiner_tables.py``). The amide H is
    placed on the bisector of C(j-1)-N(j)-CA(j), 1.01 Å from N; N-terminal residues of a chain
    segment and prolines have none.
``E_bond``
    Eq. 7 over the covalent bonds of :func:`emforge.geometry.covalent.build_restraints`
    (Engh & Huber ideals, peptide links included) with ``kappa = k_B T / (2 sigma^2)``
    (kcal/mol/Å^2, T = 298 K, sigma the Engh & Huber standard deviation): the statistical force
    constant, within a factor of two of CHARMM's.
``E_torsion``
    Eq. 8, ``-log P(phi, psi | residue type, secondary structure)`` (bilinear on a periodic grid)
    for residues with both phi and psi (:class:`TorsionTable`).
``E_restraint``
    Eq. 9, ``sum |d_ij - d_ij(start)|`` over C-alpha pairs closer than 8 Å in the starting
    model with ``|i - j| > 1``.

Incremental evaluation: every term is a sum of contributions of atoms, residues or pairs;
:meth:`EMRefinerEnergy.delta` returns the change of each term when a set of atoms moves,
computed only from the contributions that involve a moved atom (and, for the map term, from the
voxels its Gaussians reach), so ``total(after) = total(before) + delta`` exactly up to rounding
(tested). :meth:`EMRefinerEnergy.accept` then commits the move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp

from emforge.errors import InputError
from emforge.geometry.covalent import build_restraints, residue_atom_index, residue_rows
from emforge.maps import DensityMap
from emforge.models import AtomModel
from emforge.simulate import add_gaussians, kernel_parameters

TERMS = ("cc", "lj", "hb", "bond", "torsion", "restraint")
LJ_CUTOFF_A = 8.0
LJ_MIN_RATIO = 0.6
LJ_CELL_A = 4.0  # cell-list cell edge; neighbours within ceil(cutoff / cell) cells
HB_CUTOFF_A = 3.0
HB_MIN_SEPARATION = 3
RESTRAINT_CUTOFF_A = 8.0
CUTOFF_SIGMA = 3.0
KT_KCAL = 0.5922  # k_B T at 298 K, kcal/mol
SS_CODES = "HEC"
AMINO_ACIDS = ("ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
               "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL")


@dataclass(frozen=True)
class Weights:
    """Paper 000's weights of Eq. 2."""

    cc: float = 520.0
    lj: float = 1.0
    hb: float = 0.8
    bond: float = 1.0
    torsion: float = 0.6
    restraint: float = 10.0

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, t) for t in TERMS])


@dataclass(frozen=True)
class HBondParams:
    """Means and standard deviations of the four H-bond features, per pair class.

    Row 0: helical pairs (donor and acceptor both in a helix); row 1: all other pairs. Columns:
    O...H distance (Å), C-O...H angle (deg), O...H-N angle (deg), C-O...H-N torsion (deg; row 1
    unused). The torsion is compared on the circle.
    """

    mean: np.ndarray  # (2, 4)
    sd: np.ndarray  # (2, 4)


@dataclass(frozen=True)
class TorsionTable:
    """``-log P(phi, psi | residue type, secondary structure)`` on a periodic grid.

    ``values[a, s, i, j]`` for amino acid ``a`` (:data:`AMINO_ACIDS` order, 20), secondary
    structure ``s`` (H, E, C), phi bin ``i`` and psi bin ``j``; bin centres at
    ``-180 + (k + 0.5) * 360 / n`` degrees.
    """

    values: np.ndarray  # (20, 3, n, n)


# -- numba kernels ------------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _lj_pair(d2, rr, eps):  # pragma: no cover - numba
    rmin = LJ_MIN_RATIO * rr
    if d2 < rmin * rmin:
        d2 = rmin * rmin
    s2 = rr * rr / d2
    s6 = s2 * s2 * s2
    return eps * (s6 * s6 - 2.0 * s6)


@numba.njit(cache=True, nogil=True)
def _excluded(i, j, ex_ptr, ex_idx):  # pragma: no cover - numba
    """Whether ``j`` is in the sorted exclusion row of ``i`` (O(1) for the usual far pair)."""
    a = ex_ptr[i]
    b = ex_ptr[i + 1]
    if a == b or j < ex_idx[a] or j > ex_idx[b - 1]:
        return False
    for k in range(a, b):
        if ex_idx[k] >= j:
            return ex_idx[k] == j
    return False


@numba.njit(cache=True, nogil=True)
def _cell_of(x, origin, size, ncell):  # pragma: no cover - numba
    c = np.empty(3, np.int64)
    for d in range(3):
        k = int(math.floor((x[d] - origin[d]) / size))
        c[d] = min(max(k, 0), ncell[d] - 1)
    return c


@numba.njit(cache=True, nogil=True)
def _lj_neighbours(xn, xo, i, X, moved_mask, head, nxt, origin, size, ncell, r_half, sq_eps, ex_ptr, ex_idx,
                   c2):  # pragma: no cover - numba
    """Change of the LJ energy of atom ``i`` with every non-moved atom when it goes from ``xo``
    to ``xn``: one pass over the cells within the cutoff of either position."""
    reach = int(math.ceil(math.sqrt(c2) / size))
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    for d in range(3):
        kn = int(math.floor((xn[d] - origin[d]) / size))
        ko = int(math.floor((xo[d] - origin[d]) / size))
        lo[d] = max(min(kn, ko) - reach, 0)
        hi[d] = min(max(kn, ko) + reach, ncell[d] - 1)
    total = 0.0
    for cz in range(lo[2], hi[2] + 1):
        for cy in range(lo[1], hi[1] + 1):
            for cx in range(lo[0], hi[0] + 1):
                j = head[(cz * ncell[1] + cy) * ncell[0] + cx]
                while j >= 0:
                    if not moved_mask[j]:
                        t0 = xn[0] - X[j, 0]
                        t1 = xn[1] - X[j, 1]
                        t2 = xn[2] - X[j, 2]
                        dn = t0 * t0 + t1 * t1 + t2 * t2
                        t0 = xo[0] - X[j, 0]
                        t1 = xo[1] - X[j, 1]
                        t2 = xo[2] - X[j, 2]
                        do = t0 * t0 + t1 * t1 + t2 * t2
                        if (dn < c2 or do < c2) and not _excluded(i, j, ex_ptr, ex_idx):
                            rr = r_half[i] + r_half[j]
                            ee = sq_eps[i] * sq_eps[j]
                            if dn < c2:
                                total += _lj_pair(dn, rr, ee)
                            if do < c2:
                                total -= _lj_pair(do, rr, ee)
                    j = nxt[j]
    return total


@numba.njit(cache=True, nogil=True)
def _lj_delta(X, moved, new_xyz, moved_mask, head, nxt, origin, size, ncell, r_half, sq_eps, ex_ptr, ex_idx,
              cutoff):  # pragma: no cover - numba
    """Change of the LJ energy when the atoms ``moved`` go from ``X[moved]`` to ``new_xyz``.

    Pairs with a non-moved partner come from the cell list (built for the current positions of
    the non-moved atoms); pairs inside ``moved`` are enumerated directly (pairs of two atoms that
    moved by the same rigid transform cancel to rounding). The pair update is written out here
    and in :func:`_lj_neighbours` on purpose: a shared numba helper doubled the time per move
    (2.0 -> 4.2 ms on 1AKE).
    """
    c2 = cutoff * cutoff
    total = 0.0
    m = moved.shape[0]
    for a in range(m):
        i = moved[a]
        total += _lj_neighbours(new_xyz[a], X[i], i, X, moved_mask, head, nxt, origin, size, ncell, r_half,
                                sq_eps, ex_ptr, ex_idx, c2)
        for b in range(a + 1, m):
            j = moved[b]
            t0 = new_xyz[a, 0] - new_xyz[b, 0]
            t1 = new_xyz[a, 1] - new_xyz[b, 1]
            t2 = new_xyz[a, 2] - new_xyz[b, 2]
            dn = t0 * t0 + t1 * t1 + t2 * t2
            t0 = X[i, 0] - X[j, 0]
            t1 = X[i, 1] - X[j, 1]
            t2 = X[i, 2] - X[j, 2]
            do = t0 * t0 + t1 * t1 + t2 * t2
            if abs(dn - do) < 1e-9 * do:
                continue  # rigid pair: unchanged
            if (dn < c2 or do < c2) and not _excluded(i, j, ex_ptr, ex_idx):
                rr = r_half[i] + r_half[j]
                ee = sq_eps[i] * sq_eps[j]
                if dn < c2:
                    total += _lj_pair(dn, rr, ee)
                if do < c2:
                    total -= _lj_pair(do, rr, ee)
    return total


@numba.njit(cache=True, nogil=True)
def _lj_total(X, r_half, eps, ex_ptr, ex_idx, cutoff):  # pragma: no cover - numba
    """LJ energy over all pairs (O(N^2) reference path, used for the full evaluation)."""
    c2 = cutoff * cutoff
    n = X.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d2 = 0.0
            for d in range(3):
                t = X[i, d] - X[j, d]
                d2 += t * t
            if d2 < c2 and not _excluded(i, j, ex_ptr, ex_idx):
                total += _lj_pair(d2, r_half[i] + r_half[j], math.sqrt(eps[i] * eps[j]))
    return total


@numba.njit(cache=True, nogil=True)
def _build_cells(X, origin, size, ncell, head, nxt):  # pragma: no cover - numba
    head[:] = -1
    for i in range(X.shape[0]):
        c = _cell_of(X[i], origin, size, ncell)
        k = (c[2] * ncell[1] + c[1]) * ncell[0] + c[0]
        nxt[i] = head[k]
        head[k] = i


@numba.njit(cache=True, nogil=True)
def _cell_remove(i, k, head, nxt):  # pragma: no cover - numba
    j = head[k]
    if j == i:
        head[k] = nxt[i]
        return
    while j >= 0:
        if nxt[j] == i:
            nxt[j] = nxt[i]
            return
        j = nxt[j]


@numba.njit(cache=True, nogil=True)
def _angle(a, b, c):  # pragma: no cover - numba
    """Inner angle at ``b`` (deg)."""
    u0 = a[0] - b[0]
    u1 = a[1] - b[1]
    u2 = a[2] - b[2]
    v0 = c[0] - b[0]
    v1 = c[1] - b[1]
    v2 = c[2] - b[2]
    nu = math.sqrt(u0 * u0 + u1 * u1 + u2 * u2)
    nv = math.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
    cs = (u0 * v0 + u1 * v1 + u2 * v2) / max(nu * nv, 1e-12)
    return math.degrees(math.acos(min(1.0, max(-1.0, cs))))


@numba.njit(cache=True, nogil=True)
def _dihedral(p0, p1, p2, p3):  # pragma: no cover - numba
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    nb1 = math.sqrt(b1[0] ** 2 + b1[1] ** 2 + b1[2] ** 2)
    b1 = b1 / max(nb1, 1e-12)
    v = b0 - (b0[0] * b1[0] + b0[1] * b1[1] + b0[2] * b1[2]) * b1
    w = b2 - (b2[0] * b1[0] + b2[1] * b1[1] + b2[2] * b1[2]) * b1
    x = v[0] * w[0] + v[1] * w[1] + v[2] * w[2]
    c0 = b1[1] * v[2] - b1[2] * v[1]
    c1 = b1[2] * v[0] - b1[0] * v[2]
    c2 = b1[0] * v[1] - b1[1] * v[0]
    y = c0 * w[0] + c1 * w[1] + c2 * w[2]
    return math.degrees(math.atan2(y, x))


@numba.njit(cache=True, nogil=True)
def _hb_pair(c, o, h, n, helical, mean, sd, cutoff):  # pragma: no cover - numba
    d2 = 0.0
    for k in range(3):
        t = o[k] - h[k]
        d2 += t * t
    if d2 >= cutoff * cutoff:
        return 0.0
    row = 0 if helical else 1
    q = (math.sqrt(d2) - mean[row, 0]) ** 2 / (2.0 * sd[row, 0] ** 2)
    q += (_angle(c, o, h) - mean[row, 1]) ** 2 / (2.0 * sd[row, 1] ** 2)
    q += (_angle(o, h, n) - mean[row, 2]) ** 2 / (2.0 * sd[row, 2] ** 2)
    if helical:
        dt = _dihedral(c, o, h, n) - mean[row, 3]
        dt = (dt + 180.0) % 360.0 - 180.0
        q += dt * dt / (2.0 * sd[row, 3] ** 2)
    return -math.exp(-q)


@numba.njit(cache=True, nogil=True)
def _amide_h(X, bb, j, out):  # pragma: no cover - numba
    """Bisector amide H of residue ``j`` (needs N, CA of j and C of j - 1) into ``out`` (3,)."""
    n = bb[j, 0]
    ca = bb[j, 1]
    cp = bb[j - 1, 2]
    ux = X[n, 0] - X[cp, 0]
    uy = X[n, 1] - X[cp, 1]
    uz = X[n, 2] - X[cp, 2]
    vx = X[n, 0] - X[ca, 0]
    vy = X[n, 1] - X[ca, 1]
    vz = X[n, 2] - X[ca, 2]
    nu = max(math.sqrt(ux * ux + uy * uy + uz * uz), 1e-12)
    nv = max(math.sqrt(vx * vx + vy * vy + vz * vz), 1e-12)
    wx = ux / nu + vx / nv
    wy = uy / nu + vy / nv
    wz = uz / nu + vz / nv
    nw = max(math.sqrt(wx * wx + wy * wy + wz * wz), 1e-12)
    out[0] = X[n, 0] + 1.01 * wx / nw
    out[1] = X[n, 1] + 1.01 * wy / nw
    out[2] = X[n, 2] + 1.01 * wz / nw


@numba.njit(cache=True, nogil=True)
def _hb_partial(X, bb, has_acc, has_don, chain, helix, affected, aff_mask, mean, sd, cutoff, min_sep):
    """H-bond energy of every pair with the acceptor or the donor residue in ``affected``, from atom
    coordinates ``X`` (the amide H is built only for candidate pairs)."""  # pragma: no cover
    n_res = bb.shape[0]
    c2 = cutoff * cutoff
    pre2 = (cutoff + 1.02) ** 2  # |O - H| < cutoff needs |O - N| < cutoff + |N - H|
    h = np.empty(3)
    c = np.empty(3)
    o = np.empty(3)
    nn = np.empty(3)
    total = 0.0
    for a in range(affected.shape[0]):
        r = affected[a]
        for s in range(n_res):
            if abs(r - s) < min_sep and chain[r] == chain[s]:
                continue
            for k in range(2):
                if k == 0:
                    acc, don = r, s
                else:
                    if aff_mask[s]:
                        continue  # counted when s is the affected acceptor
                    acc, don = s, r
                if not (has_acc[acc] and has_don[don]):
                    continue
                io = bb[acc, 3]
                i_n = bb[don, 0]
                dx = X[io, 0] - X[i_n, 0]
                dy = X[io, 1] - X[i_n, 1]
                dz = X[io, 2] - X[i_n, 2]
                if dx * dx + dy * dy + dz * dz >= pre2:
                    continue
                _amide_h(X, bb, don, h)
                dx = X[io, 0] - h[0]
                dy = X[io, 1] - h[1]
                dz = X[io, 2] - h[2]
                if dx * dx + dy * dy + dz * dz >= c2:
                    continue
                for d in range(3):
                    c[d] = X[bb[acc, 2], d]
                    o[d] = X[io, d]
                    nn[d] = X[i_n, d]
                total += _hb_pair(c, o, h, nn, helix[acc] and helix[don], mean, sd, cutoff)
    return total


@numba.njit(cache=True, nogil=True)
def _dihedral_idx(X, i0, i1, i2, i3):  # pragma: no cover - numba
    """Dihedral (deg) of atoms ``X[i0..i3]``, scalar arithmetic (no temporaries)."""
    b0x = X[i0, 0] - X[i1, 0]
    b0y = X[i0, 1] - X[i1, 1]
    b0z = X[i0, 2] - X[i1, 2]
    b1x = X[i2, 0] - X[i1, 0]
    b1y = X[i2, 1] - X[i1, 1]
    b1z = X[i2, 2] - X[i1, 2]
    b2x = X[i3, 0] - X[i2, 0]
    b2y = X[i3, 1] - X[i2, 1]
    b2z = X[i3, 2] - X[i2, 2]
    nb = math.sqrt(b1x * b1x + b1y * b1y + b1z * b1z)
    nb = max(nb, 1e-12)
    b1x /= nb
    b1y /= nb
    b1z /= nb
    p = b0x * b1x + b0y * b1y + b0z * b1z
    vx, vy, vz = b0x - p * b1x, b0y - p * b1y, b0z - p * b1z
    p = b2x * b1x + b2y * b1y + b2z * b1z
    wx, wy, wz = b2x - p * b1x, b2y - p * b1y, b2z - p * b1z
    x = vx * wx + vy * wy + vz * wz
    cx = b1y * vz - b1z * vy
    cy = b1z * vx - b1x * vz
    cz = b1x * vy - b1y * vx
    y = cx * wx + cy * wy + cz * wz
    return math.degrees(math.atan2(y, x))


@numba.njit(cache=True, nogil=True)
def _torsion_partial(X, bb, prev_linked, next_linked, aa, ss, residues, table):  # pragma: no cover - numba
    """Sum of the periodic-bilinear ``table[aa, ss](phi, psi)`` over ``residues`` that have both angles."""
    n_res = bb.shape[0]
    nb = table.shape[2]
    width = 360.0 / nb
    total = 0.0
    for a in range(residues.shape[0]):
        r = residues[a]
        if aa[r] < 0 or not prev_linked[r] or not next_linked[r] or r == 0 or r == n_res - 1:
            continue
        if bb[r, 0] < 0 or bb[r, 1] < 0 or bb[r, 2] < 0 or bb[r - 1, 2] < 0 or bb[r + 1, 0] < 0:
            continue
        phi = _dihedral_idx(X, bb[r - 1, 2], bb[r, 0], bb[r, 1], bb[r, 2])
        psi = _dihedral_idx(X, bb[r, 0], bb[r, 1], bb[r, 2], bb[r + 1, 0])
        u = (phi + 180.0) / width - 0.5
        v = (psi + 180.0) / width - 0.5
        i0 = int(math.floor(u))
        j0 = int(math.floor(v))
        fu = u - i0
        fv = v - j0
        i0 %= nb
        j0 %= nb
        i1 = (i0 + 1) % nb
        j1 = (j0 + 1) % nb
        g = table[aa[r], ss[r]]
        total += ((1 - fu) * (1 - fv) * g[i0, j0] + fu * (1 - fv) * g[i1, j0]
                  + (1 - fu) * fv * g[i0, j1] + fu * fv * g[i1, j1])
    return total


@numba.njit(cache=True, nogil=True)
def _dist(X, i, j):  # pragma: no cover - numba
    return math.sqrt((X[i, 0] - X[j, 0]) ** 2 + (X[i, 1] - X[j, 1]) ** 2 + (X[i, 2] - X[j, 2]) ** 2)


@numba.njit(cache=True, nogil=True)
def _bond_delta(X, T, bonds, ids, d0, kappa):  # pragma: no cover - numba
    """Change of sum kappa (d - d0)^2 over bonds ``ids`` from coordinates ``X`` to ``T``."""
    total = 0.0
    for k in range(ids.shape[0]):
        b = ids[k]
        dn = _dist(T, bonds[b, 0], bonds[b, 1])
        do = _dist(X, bonds[b, 0], bonds[b, 1])
        total += kappa[b] * ((dn - d0[b]) ** 2 - (do - d0[b]) ** 2)
    return total


@numba.njit(cache=True, nogil=True)
def _restraint_delta(X, T, ca, pairs, ids, d0):  # pragma: no cover - numba
    """Change of sum |d - d0| over C-alpha pairs ``ids`` from coordinates ``X`` to ``T``."""
    total = 0.0
    for k in range(ids.shape[0]):
        p = ids[k]
        dn = _dist(T, ca[pairs[p, 0]], ca[pairs[p, 1]])
        do = _dist(X, ca[pairs[p, 0]], ca[pairs[p, 1]])
        total += abs(dn - d0[p]) - abs(do - d0[p])
    return total


@numba.njit(cache=True, nogil=True)
def _box_sums(delta, rho, target, lo):  # pragma: no cover - numba
    """Changes of sum(rho), sum(rho^2), sum(rho * target) when ``delta`` is added at ``lo``."""
    nz, ny, nx = delta.shape
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                dv = delta[k, j, i]
                if dv != 0.0:
                    r = rho[lo[2] + k, lo[1] + j, lo[0] + i]
                    s1 += dv
                    s2 += dv * (2.0 * r + dv)
                    s3 += dv * target[lo[2] + k, lo[1] + j, lo[0] + i]
    return s1, s2, s3


@numba.njit(cache=True, nogil=True)
def _box_add(delta, rho, lo):  # pragma: no cover - numba
    nz, ny, nx = delta.shape
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                rho[lo[2] + k, lo[1] + j, lo[0] + i] += delta[k, j, i]


# -- the energy -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _MoveSet:
    mask: np.ndarray  # (N,) bool, moved atoms
    bond_ids: np.ndarray  # bonds with a moved atom
    torsion_res: np.ndarray  # residues whose phi or psi can change
    hb_res: np.ndarray  # residues whose acceptor or donor geometry can change
    pair_ids: np.ndarray  # restraint pairs with a moved C-alpha


@dataclass
class _Proposal:
    moved: np.ndarray
    new_xyz: np.ndarray
    terms: np.ndarray
    cc_box: tuple | None = None
    sums: np.ndarray | None = None


@dataclass
class EMRefinerEnergy:
    """The energy of Eq. 2 for one model in one map; see the module docstring.

    Build with :meth:`from_model`. ``coords`` (N, 3) Å are the current heavy-atom coordinates of
    ``model`` (protein heavy atoms only).
    """

    model: AtomModel
    coords: np.ndarray
    weights: Weights
    # per atom
    residue: np.ndarray  # (N,) residue row
    r_half: np.ndarray
    eps: np.ndarray
    sq_eps: np.ndarray  # sqrt(eps): eps_ij = sq_eps_i sq_eps_j
    ex_ptr: np.ndarray
    ex_idx: np.ndarray
    bonds: np.ndarray  # (B, 2)
    bond_d0: np.ndarray
    bond_kappa: np.ndarray
    atom_bonds: sp.csr_matrix  # (N, B) incidence
    # per residue
    bb: np.ndarray  # (R, 4) atom indices of N, CA, C, O (-1 missing)
    prev_linked: np.ndarray  # (R,) bool: peptide bond to residue r - 1
    next_linked: np.ndarray  # (R,) bool
    chain: np.ndarray  # (R,) int
    aa: np.ndarray  # (R,) index into AMINO_ACIDS, -1 other
    ss: np.ndarray  # (R,) index into "HEC"
    is_pro: np.ndarray
    hb: HBondParams
    torsion: TorsionTable
    # restraints
    pairs: np.ndarray  # (P, 2) residue rows
    pair_d0: np.ndarray  # (P,)
    res_pairs: sp.csr_matrix  # (R, P) incidence
    # density
    target: np.ndarray  # (z, y, x) float64
    origin: np.ndarray
    voxel: float
    amp: np.ndarray
    sig_vox: np.ndarray
    hb_roles: tuple = field(default=None)  # (R,) bool acceptor and donor flags
    rho: np.ndarray = field(repr=False, default=None)
    sums: np.ndarray = field(default=None)  # sum rho, sum rho^2, sum rho*t, sum t, sum t^2, n
    # LJ cell list
    cell_origin: np.ndarray = field(default=None)
    cell_n: np.ndarray = field(default=None)
    head: np.ndarray = field(default=None)
    nxt: np.ndarray = field(default=None)
    _pending: _Proposal | None = None
    _move_sets: dict = field(default_factory=dict, repr=False)

    # ---- construction ----
    @classmethod
    def from_model(cls, model: AtomModel, density_map: DensityMap, resolution_A: float, ss: str | np.ndarray,
                   *, start: AtomModel | None = None, weights: Weights | None = None,
                   hbond: HBondParams | None = None, torsion: TorsionTable | None = None) -> EMRefinerEnergy:
        """Set up the energy for ``model`` (protein heavy atoms are used) in ``density_map``.

        ``ss``: per-residue secondary structure (H, E or C; any other letter counts as C) in the
        residue order of the protein heavy-atom model. ``start``: the model whose C-alpha
        distances the restraint keeps (default: ``model`` itself).
        """
        from emforge.refine.emrefiner.lj import lj_parameters
        from emforge.refine.emrefiner.tables import default_hbond_params, default_torsion_table

        prot = model.protein().without_hydrogens()
        if len(prot) == 0:
            raise InputError("model has no protein heavy atoms")
        rows = residue_rows(prot)
        n_res = int(rows[-1]) + 1
        ss_arr = np.array(list(ss) if isinstance(ss, str) else ss, dtype="<U1")
        if len(ss_arr) != n_res:
            raise InputError(f"secondary structure has {len(ss_arr)} letters for {n_res} residues")
        ss_idx = np.array([SS_CODES.index(c) if c in "HE" else 2 for c in ss_arr], dtype=np.int64)

        r_half, eps = lj_parameters(prot)
        restr = build_restraints(prot)
        bonds = np.ascontiguousarray(restr.bond_atoms, dtype=np.int64)
        d0 = restr.bond_ideal_A
        kappa = KT_KCAL / (2.0 * restr.bond_sigma_A ** 2)
        n = len(prot)
        adj = sp.coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()
        adj = ((adj + adj.T) > 0).astype(np.int8)
        reach = adj.copy()
        step = adj.copy()
        for _ in range(2):  # pairs within three bonds
            step = ((step @ adj) > 0).astype(np.int8)
            reach = ((reach + step) > 0).astype(np.int8)
        reach = reach.tocsr()
        reach.sort_indices()
        atom_bonds = sp.csr_matrix((np.ones(2 * len(bonds)), (bonds.T.ravel(), np.tile(np.arange(len(bonds)), 2))),
                                   shape=(n, len(bonds)))

        bb = residue_atom_index(prot, ("N", "CA", "C", "O"), rows)
        starts = prot.residue_starts()
        res_names = prot.res_name[starts]
        chain_ids = prot.chain_id[starts]
        _, chain = np.unique(chain_ids, return_inverse=True)
        from emforge.geometry.covalent import peptide_links

        linked = peptide_links(prot, rows)
        prev_linked = np.zeros(n_res, bool)
        prev_linked[1:] = linked[:-1]
        aa_index = {a: i for i, a in enumerate(AMINO_ACIDS)}
        aa = np.array([aa_index.get("MET" if r == "MSE" else r, -1) for r in res_names], dtype=np.int64)

        ref = (start.protein().without_hydrogens() if start is not None else prot)
        ca_ref = residue_atom_index(ref, ("CA",), residue_rows(ref))[:, 0]
        if len(ca_ref) != n_res:
            raise InputError(f"start model has {len(ca_ref)} residues, the model {n_res}")
        ok = (ca_ref >= 0) & (bb[:, 1] >= 0)
        xyz = np.where(ok[:, None], ref.coords[np.maximum(ca_ref, 0)], np.nan)
        i, j = np.triu_indices(n_res, k=2)
        dd = np.linalg.norm(xyz[i] - xyz[j], axis=1)
        keep = np.isfinite(dd) & (dd < RESTRAINT_CUTOFF_A)
        pairs = np.ascontiguousarray(np.stack([i[keep], j[keep]], axis=1), dtype=np.int64)
        res_pairs = sp.csr_matrix((np.ones(2 * len(pairs)), (pairs.T.ravel(), np.tile(np.arange(len(pairs)), 2))),
                                  shape=(n_res, len(pairs)))

        from emforge.maps import resample

        if not np.allclose(density_map.voxel_size, density_map.voxel_size[0], rtol=1e-4):
            density_map = resample(density_map, float(density_map.voxel_size.max()), order=1)
        voxel = float(density_map.voxel_size[0])
        amp, sig_A = kernel_parameters(prot, resolution_A, "emrefiner")
        self = cls(model=prot, coords=prot.coords.astype(np.float64).copy(), weights=weights or Weights(),
                   residue=rows, r_half=r_half, eps=eps, sq_eps=np.sqrt(eps), ex_ptr=reach.indptr.astype(np.int64),
                   ex_idx=reach.indices.astype(np.int64), bonds=bonds, bond_d0=d0, bond_kappa=kappa,
                   atom_bonds=atom_bonds, bb=bb, prev_linked=prev_linked, next_linked=linked, chain=chain,
                   aa=aa, ss=ss_idx, is_pro=res_names == "PRO", hb=hbond or default_hbond_params(),
                   torsion=torsion or default_torsion_table(), pairs=pairs, pair_d0=dd[keep],
                   res_pairs=res_pairs, target=density_map.data.astype(np.float64),
                   origin=np.asarray(density_map.origin, np.float64), voxel=voxel,
                   amp=np.asarray(amp, np.float64), sig_vox=np.asarray(sig_A, np.float64) / voxel)
        have = bb >= 0
        self.hb_roles = (have[:, 2] & have[:, 3],  # acceptor: C and O; donor: N, CA, linked C(i-1), not Pro
                         have[:, 0] & have[:, 1] & prev_linked & np.roll(have[:, 2], 1) & ~self.is_pro)
        self._reset_density()
        self._reset_cells()
        return self

    # ---- density ----
    def _index(self, xyz: np.ndarray) -> np.ndarray:
        return (xyz - self.origin) / self.voxel

    def _reset_density(self) -> None:
        t = self.target
        self.rho = np.zeros_like(t)
        add_gaussians(np.ascontiguousarray(self._index(self.coords)), self.amp, self.sig_vox, CUTOFF_SIGMA, self.rho)
        self.sums = np.array([self.rho.sum(), (self.rho ** 2).sum(), (self.rho * t).sum(), t.sum(), (t ** 2).sum(),
                              float(t.size)])

    @staticmethod
    def _cc_from_sums(s: np.ndarray) -> float:
        s_c, s_cc, s_ce, s_e, s_ee, n = s
        num = n * s_ce - s_c * s_e
        den = (n * s_cc - s_c ** 2) * (n * s_ee - s_e ** 2)
        return float(num / math.sqrt(den)) if den > 0 else 0.0

    def _density_delta(self, moved: np.ndarray, new_xyz: np.ndarray):
        old_idx = self._index(self.coords[moved])
        new_idx = self._index(new_xyz)
        reach = CUTOFF_SIGMA * float(self.sig_vox[moved].max()) + 1.0
        both = np.vstack([old_idx, new_idx])
        shape_xyz = np.array(self.target.shape[::-1])
        lo = np.clip(np.floor(both.min(axis=0) - reach).astype(np.int64), 0, shape_xyz - 1)
        hi = np.clip(np.ceil(both.max(axis=0) + reach).astype(np.int64), 0, shape_xyz - 1)
        box = np.zeros(tuple((hi - lo + 1)[::-1]), np.float64)
        amp = self.amp[moved]
        sig = self.sig_vox[moved]
        add_gaussians(np.ascontiguousarray(new_idx - lo), amp, sig, CUTOFF_SIGMA, box)
        add_gaussians(np.ascontiguousarray(old_idx - lo), -amp, sig, CUTOFF_SIGMA, box)
        d1, d2, d3 = _box_sums(box, self.rho, self.target, lo)
        sums = self.sums.copy()
        sums[0] += d1
        sums[1] += d2
        sums[2] += d3
        return box, lo, sums

    # ---- LJ cells ----
    def _reset_cells(self) -> None:
        lo = self.coords.min(axis=0) - 10.0
        hi = self.coords.max(axis=0) + 10.0
        self.cell_origin = lo
        self.cell_n = np.maximum(np.ceil((hi - lo) / LJ_CELL_A).astype(np.int64), 1)
        self.head = np.empty(int(np.prod(self.cell_n)), np.int64)
        self.nxt = np.empty(len(self.coords), np.int64)
        _build_cells(self.coords, self.cell_origin, LJ_CELL_A, self.cell_n, self.head, self.nxt)

    def _cell_key(self, x: np.ndarray) -> int:
        c = np.clip(np.floor((x - self.cell_origin) / LJ_CELL_A).astype(np.int64), 0, self.cell_n - 1)
        return int((c[2] * self.cell_n[1] + c[1]) * self.cell_n[0] + c[0])

    # ---- per-term partial sums ----
    def _bond_partial(self, X: np.ndarray, bond_ids: np.ndarray) -> float:
        b = self.bonds[bond_ids]
        d = np.linalg.norm(X[b[:, 0]] - X[b[:, 1]], axis=1)
        return float(np.sum(self.bond_kappa[bond_ids] * (d - self.bond_d0[bond_ids]) ** 2))

    def _hb_partial(self, X: np.ndarray, residues: np.ndarray) -> float:
        has_acc, has_don = self.hb_roles
        mask = np.zeros(len(self.bb), np.bool_)
        mask[residues] = True
        return float(_hb_partial(X, self.bb, has_acc, has_don, self.chain, self.ss == 0,
                                   np.asarray(residues, np.int64), mask, self.hb.mean, self.hb.sd, HB_CUTOFF_A,
                                   HB_MIN_SEPARATION))

    def _torsion_partial(self, X: np.ndarray, residues: np.ndarray) -> float:
        return float(_torsion_partial(X, self.bb, self.prev_linked, self.next_linked, self.aa, self.ss,
                                      np.asarray(residues, np.int64), self.torsion.values))

    def _restraint_partial(self, X: np.ndarray, pair_ids: np.ndarray) -> float:
        p = self.pairs[pair_ids]
        ca = self.bb[:, 1]
        d = np.linalg.norm(X[ca[p[:, 0]]] - X[ca[p[:, 1]]], axis=1)
        return float(np.sum(np.abs(d - self.pair_d0[pair_ids])))

    # ---- public API ----
    def terms(self, X: np.ndarray | None = None) -> dict[str, float]:
        """Unweighted terms for coordinates ``X`` (default: the current ones), from scratch."""
        X = self.coords if X is None else np.asarray(X, np.float64)
        all_res = np.arange(len(self.bb))
        if X is self.coords:
            cc = self._cc_from_sums(self.sums)
        else:
            rho = np.zeros_like(self.target)
            add_gaussians(np.ascontiguousarray(self._index(X)), self.amp, self.sig_vox, CUTOFF_SIGMA, rho)
            t = self.target
            cc = self._cc_from_sums(np.array([rho.sum(), (rho ** 2).sum(), (rho * t).sum(), t.sum(), (t ** 2).sum(),
                                              float(t.size)]))
        return {
            "cc": 1.0 - cc,
            "lj": float(_lj_total(X, self.r_half, self.eps, self.ex_ptr, self.ex_idx, LJ_CUTOFF_A)),
            "hb": self._hb_partial(X, all_res),
            "bond": self._bond_partial(X, np.arange(len(self.bonds))),
            "torsion": self._torsion_partial(X, all_res),
            "restraint": self._restraint_partial(X, np.arange(len(self.pairs))),
        }

    def total(self, X: np.ndarray | None = None) -> float:
        t = self.terms(X)
        return float(sum(getattr(self.weights, k) * t[k] for k in TERMS))

    def cc(self) -> float:
        """Correlation coefficient (Eq. 3) of the current model map with the target."""
        return self._cc_from_sums(self.sums)

    def _move_set(self, moved: np.ndarray) -> _MoveSet:
        """Index sets touched when the atoms ``moved`` move; cached for contiguous atom ranges."""
        contiguous = len(moved) > 0 and int(moved[-1]) - int(moved[0]) + 1 == len(moved)
        key = (int(moved[0]), len(moved)) if contiguous else None
        if key is not None and key in self._move_sets:
            return self._move_sets[key]
        res = np.unique(self.residue[moved])
        n_res = len(self.bb)
        near = np.unique(np.concatenate([res - 1, res, res + 1]))
        hb_res = np.unique(np.concatenate([res, res + 1]))
        mask = np.zeros(len(self.coords), np.bool_)
        mask[moved] = True
        ca_moved = res[np.isin(self.bb[res, 1], moved)]
        ms = _MoveSet(mask=mask, bond_ids=np.unique(self.atom_bonds[moved].indices).astype(np.int64),
                      torsion_res=near[(near >= 0) & (near < n_res)].astype(np.int64),
                      hb_res=hb_res[hb_res < n_res].astype(np.int64),
                      pair_ids=np.unique(self.res_pairs[ca_moved].indices).astype(np.int64))
        if key is not None:
            if len(self._move_sets) > 4096:
                self._move_sets.clear()
            self._move_sets[key] = ms
        return ms

    def delta(self, moved: np.ndarray, new_xyz: np.ndarray) -> tuple[float, np.ndarray]:
        """Weighted energy change and the (6,) unweighted term changes (``TERMS`` order) if the atoms
        ``moved`` (M,) went to ``new_xyz`` (M, 3). Remembered for :meth:`accept`."""
        moved = np.asarray(moved, np.int64)
        new_xyz = np.ascontiguousarray(new_xyz, np.float64)
        ms = self._move_set(moved)
        trial = self.coords.copy()
        trial[moved] = new_xyz
        box, lo, sums = self._density_delta(moved, new_xyz)
        d = np.array([
            (1.0 - self._cc_from_sums(sums)) - (1.0 - self._cc_from_sums(self.sums)),
            _lj_delta(self.coords, moved, new_xyz, ms.mask, self.head, self.nxt, self.cell_origin, LJ_CELL_A,
                      self.cell_n, self.r_half, self.sq_eps, self.ex_ptr, self.ex_idx, LJ_CUTOFF_A),
            self._hb_partial(trial, ms.hb_res) - self._hb_partial(self.coords, ms.hb_res),
            _bond_delta(self.coords, trial, self.bonds, ms.bond_ids, self.bond_d0, self.bond_kappa),
            self._torsion_partial(trial, ms.torsion_res) - self._torsion_partial(self.coords, ms.torsion_res),
            _restraint_delta(self.coords, trial, self.bb[:, 1], self.pairs, ms.pair_ids, self.pair_d0),
        ])
        self._pending = _Proposal(moved, new_xyz, d, (box, lo), sums)
        return float(self.weights.as_array() @ d), d

    def accept(self) -> None:
        """Commit the move of the last :meth:`delta` call."""
        p = self._pending
        if p is None:
            raise RuntimeError("accept() without a pending delta()")
        box, lo = p.cc_box
        _box_add(box, self.rho, lo)
        self.sums = p.sums
        for a, x in zip(p.moved, p.new_xyz):
            old_key = self._cell_key(self.coords[a])
            new_key = self._cell_key(x)
            if old_key != new_key:
                _cell_remove(int(a), old_key, self.head, self.nxt)
                self.nxt[a] = self.head[new_key]
                self.head[new_key] = a
        self.coords[p.moved] = p.new_xyz
        self._pending = None

    def reject(self) -> None:
        self._pending = None

    def refresh(self) -> None:
        """Recompute the model map and its sums from scratch (removes accumulated rounding)."""
        self._reset_density()
        self._reset_cells()


def bisector_amide_hydrogens(n_xyz: np.ndarray, ca_xyz: np.ndarray, c_prev_xyz: np.ndarray) -> np.ndarray:
    """(R, 3) amide H positions: 1.01 Å from N on the bisector of C(i-1)-N(i)-CA(i), pointing away."""
    u = n_xyz - c_prev_xyz
    v = n_xyz - ca_xyz
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    w = u + v
    w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    return n_xyz + 1.01 * w


def hbond_features(c_xyz, o_xyz, h_xyz, n_xyz) -> np.ndarray:
    """(P, 4) features of acceptor/donor pairs given as (P, 3) arrays: O...H (Å), C-O...H (deg),
    O...H-N (deg), C-O...H-N (deg)."""
    def angle(a, b, c):
        u = a - b
        v = c - b
        cs = np.sum(u * v, axis=1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1), 1e-12)
        return np.degrees(np.arccos(np.clip(cs, -1.0, 1.0)))

    return np.stack([np.linalg.norm(o_xyz - h_xyz, axis=1), angle(c_xyz, o_xyz, h_xyz), angle(o_xyz, h_xyz, n_xyz),
                     _dihedrals(c_xyz, o_xyz, h_xyz, n_xyz)], axis=1)


def _dihedrals(p0, p1, p2, p3) -> np.ndarray:
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    b1 = b1 / np.maximum(np.linalg.norm(b1, axis=1, keepdims=True), 1e-12)
    v = b0 - np.sum(b0 * b1, axis=1, keepdims=True) * b1
    w = b2 - np.sum(b2 * b1, axis=1, keepdims=True) * b1
    x = np.sum(v * w, axis=1)
    y = np.sum(np.cross(b1, v) * w, axis=1)
    return np.degrees(np.arctan2(y, x))
