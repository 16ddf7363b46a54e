"""Ideal backbone builder for tests: NeRF placement with Engh & Huber bond lengths and angles."""

from __future__ import annotations

import numpy as np

from emforge.models import AtomModel

N_CA, CA_C, C_N, C_O = 1.458, 1.525, 1.329, 1.231
ANG_N_CA_C, ANG_CA_C_N, ANG_C_N_CA, ANG_CA_C_O = 111.2, 116.2, 121.7, 120.5


def _place(a, b, c, bond, angle_deg, torsion_deg):
    """Atom d with |cd| = bond, angle bcd and dihedral abcd (Parsons et al. 2005)."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    t, p = np.radians(angle_deg), np.radians(torsion_deg)
    d = np.array([-bond * np.cos(t), bond * np.sin(t) * np.cos(p), bond * np.sin(t) * np.sin(p)])
    return c + d[0] * bc + d[1] * m + d[2] * n


def build_backbone(phi, psi):
    """(R, 4, 3) N, CA, C, O of a chain with the given phi/psi (degrees), omega 180, O in the peptide plane."""
    n_res = len(phi)
    a = np.radians(ANG_N_CA_C)
    n, ca, c, o = [np.zeros(3)], [np.array([N_CA, 0.0, 0.0])], [], []
    c.append(ca[0] + CA_C * np.array([-np.cos(a), np.sin(a), 0.0]))
    for i in range(n_res - 1):
        n.append(_place(n[i], ca[i], c[i], C_N, ANG_CA_C_N, psi[i]))
        o.append(_place(n[i + 1], ca[i], c[i], C_O, ANG_CA_C_O, 180.0))
        ca.append(_place(ca[i], c[i], n[i + 1], N_CA, ANG_C_N_CA, 180.0))
        c.append(_place(c[i], n[i + 1], ca[i + 1], CA_C, ANG_N_CA_C, phi[i + 1]))
    o.append(_place(n[-1], ca[-1], c[-1], C_O, ANG_CA_C_O, psi[-1] + 180.0))
    return np.stack([np.array(n), np.array(ca), np.array(c), np.array(o)], axis=1)


def make_model(chains: dict[str, np.ndarray], res_names: dict[tuple[str, int], str] | None = None,
               drop: tuple[tuple[str, int, str], ...] = ()) -> AtomModel:
    """AtomModel of backbone chains {chain id: (R, 4, 3)}; ``drop``: (chain, residue, atom) to leave out."""
    res_names = res_names or {}
    rows = []
    r = 0
    for cid, bb in chains.items():
        for i, res in enumerate(bb):
            for name, xyz in zip(("N", "CA", "C", "O"), res):
                if (cid, i, name) not in drop:
                    rows.append((xyz, name, res_names.get((cid, i), "ALA"), i + 1, cid, r))
            r += 1
    n = len(rows)
    names = np.array([row[1] for row in rows])
    return AtomModel(np.array([row[0] for row in rows]), np.array([s[0] for s in names]), names,
                     np.array([row[2] for row in rows]), np.array([row[3] for row in rows]), np.full(n, ""),
                     np.array([row[4] for row in rows]), np.zeros(n), np.ones(n), np.zeros(n, bool),
                     np.array([row[5] for row in rows]))
