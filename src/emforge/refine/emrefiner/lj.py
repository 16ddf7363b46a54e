"""CHARMM19 united-atom Lennard-Jones parameters for protein heavy atoms (paper 000 Eq. 5).

Paper 000 takes the well depths and radii of its Lennard-Jones term from CHARMM19 (Neria,
Fischer & Karplus 1996, ``param19``): a united-atom force field, so a carbon carries its
hydrogens (``CH1E``, ``CH2E``, ``CH3E``, aromatic ``CR1E``). The values below are param19's
``Rmin/2`` (Å) and ``|epsilon|`` (kcal/mol); pairs combine as ``r_ij = Rmin/2_i + Rmin/2_j`` and
``eps_ij = sqrt(eps_i eps_j)`` (the Lorentz-Berthelot rules of CHARMM).
"""

from __future__ import annotations

import numpy as np

from emforge.models import AtomModel

#: type -> (Rmin/2 in Å, well depth in kcal/mol), CHARMM19 param19
LJ_TYPES: dict[str, tuple[float, float]] = {
    "C": (2.100, 0.1200),  # carbonyl / carboxyl / aromatic carbon without H
    "CR1E": (2.100, 0.1200),  # aromatic CH
    "CH1E": (2.365, 0.0486),
    "CH2E": (2.235, 0.1142),
    "CH3E": (2.165, 0.1811),
    "N": (1.600, 0.2384),  # nitrogen without H (Pro N, His ring N)
    "NH1": (1.600, 0.2384),
    "NH2": (1.600, 0.2384),
    "NH3": (1.600, 0.2384),
    "NC2": (1.600, 0.2384),  # guanidinium N
    "O": (1.600, 0.1591),  # carbonyl O
    "OC": (1.600, 0.6469),  # carboxylate O
    "OH1": (1.600, 0.1591),  # hydroxyl O
    "S": (1.890, 0.0430),
    "SE": (1.890, 0.0430),  # selenium as sulphur (MSE)
}

_BACKBONE = {"N": "NH1", "CA": "CH1E", "C": "C", "O": "O", "OXT": "OC"}
#: side-chain atom types per residue (param19 / toph19 assignments)
_SIDE: dict[str, dict[str, str]] = {
    "ALA": {"CB": "CH3E"},
    "ARG": {"CB": "CH2E", "CG": "CH2E", "CD": "CH2E", "NE": "NH1", "CZ": "C", "NH1": "NC2", "NH2": "NC2"},
    "ASN": {"CB": "CH2E", "CG": "C", "OD1": "O", "ND2": "NH2"},
    "ASP": {"CB": "CH2E", "CG": "C", "OD1": "OC", "OD2": "OC"},
    "CYS": {"CB": "CH2E", "SG": "S"},
    "GLN": {"CB": "CH2E", "CG": "CH2E", "CD": "C", "OE1": "O", "NE2": "NH2"},
    "GLU": {"CB": "CH2E", "CG": "CH2E", "CD": "C", "OE1": "OC", "OE2": "OC"},
    "GLY": {},
    "HIS": {"CB": "CH2E", "CG": "C", "ND1": "NH1", "CD2": "CR1E", "CE1": "CR1E", "NE2": "N"},
    "ILE": {"CB": "CH1E", "CG1": "CH2E", "CG2": "CH3E", "CD1": "CH3E"},
    "LEU": {"CB": "CH2E", "CG": "CH1E", "CD1": "CH3E", "CD2": "CH3E"},
    "LYS": {"CB": "CH2E", "CG": "CH2E", "CD": "CH2E", "CE": "CH2E", "NZ": "NH3"},
    "MET": {"CB": "CH2E", "CG": "CH2E", "SD": "S", "CE": "CH3E"},
    "MSE": {"CB": "CH2E", "CG": "CH2E", "SE": "SE", "CE": "CH3E"},
    "PHE": {"CB": "CH2E", "CG": "C", "CD1": "CR1E", "CD2": "CR1E", "CE1": "CR1E", "CE2": "CR1E", "CZ": "CR1E"},
    "PRO": {"CB": "CH2E", "CG": "CH2E", "CD": "CH2E"},
    "SER": {"CB": "CH2E", "OG": "OH1"},
    "THR": {"CB": "CH1E", "OG1": "OH1", "CG2": "CH3E"},
    "TRP": {"CB": "CH2E", "CG": "C", "CD1": "CR1E", "CD2": "C", "NE1": "NH1", "CE2": "C", "CE3": "CR1E",
            "CZ2": "CR1E", "CZ3": "CR1E", "CH2": "CR1E"},
    "TYR": {"CB": "CH2E", "CG": "C", "CD1": "CR1E", "CD2": "CR1E", "CE1": "CR1E", "CE2": "CR1E", "CZ": "C",
            "OH": "OH1"},
    "VAL": {"CB": "CH1E", "CG1": "CH3E", "CG2": "CH3E"},
}
#: fallback by element for atoms not in the residue tables
_BY_ELEMENT = {"C": "CH2E", "N": "NH1", "O": "O", "S": "S", "SE": "SE"}


def lj_types(model: AtomModel) -> np.ndarray:
    """(N,) CHARMM19 type names of the atoms of ``model`` (heavy atoms expected)."""
    out = np.empty(len(model), dtype=object)
    for k, (res, name, el) in enumerate(zip(model.res_name, model.atom_name, model.element)):
        if name in _BACKBONE:
            t = _BACKBONE[name]
            if name == "N" and res == "PRO":
                t = "N"
            elif name == "CA" and res == "GLY":
                t = "CH2E"
        else:
            t = _SIDE.get(res, {}).get(name) or _BY_ELEMENT.get(str(el).upper(), "CH2E")
        out[k] = t
    return out


def lj_parameters(model: AtomModel) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom ``Rmin/2`` (Å) and well depth (kcal/mol), (N,) float64 each."""
    types = lj_types(model)
    table = {t: i for i, t in enumerate(LJ_TYPES)}
    params = np.array(list(LJ_TYPES.values()))
    idx = np.array([table[t] for t in types], dtype=np.int64)
    return params[idx, 0].copy(), params[idx, 1].copy()
