"""Riding hydrogens for the 20 standard amino acids, placed from ideal geometry.

:func:`add_riding_hydrogens` takes a model (hydrogens, if any, are removed first) and returns a
new model with hydrogens on every standard amino-acid residue whose parent atoms are present.
Non-standard residues, ligands and water get no hydrogens. The placement follows the plans of
Reduce (Word et al. 1999, J Mol Biol 285:1735; ``StdResH.cpp`` of rlabduke/reduce); Reduce's
hydrogen-bond network search and its Asn/Gln/His flips are not reproduced (rotatable groups get
a simpler optimisation, below):

=================  =========================================================================
group              placement
=================  =========================================================================
CH (3 heavy nbrs)  along -(u1 + u2 + u3), the u being unit vectors to the three neighbours (HA,
                   Val/Ile/Thr HB, Leu HG)
CH2 / NH2+ (sp3)   the two H in the plane bisecting the two neighbours, H-X-H = 109.5 degrees;
                   names follow the PDB/CCD convention (checked against the CCP4 monomer
                   library): with neighbours (a, b) in chain order, the H with
                   (H - X) . ((a - X) x (b - X)) > 0 is HB3 (HG3, HD3, HE3, HA3 of Gly; HG12 of
                   Ile), the other HB2 (...)
CH3, NH3+          staggered: X-H at 109.5 degrees from the bond to the heavy neighbour a,
                   dihedrals H1 = 180, H2 = -60, H3 = +60 degrees to the atom bonded to a that
                   Reduce uses (Ala HB* to N; Val/Ile/Thr CG2 to CA; Ile CD1 and Leu CD* to CB;
                   Met HE* to CG; Lys HZ* to CD; N-terminal H3, H2, H to C)
planar CH / NH     in the plane of the two neighbours, along -(u1 + u2) (aromatic CH, backbone H
                   bisecting CA-N-C(i-1), Arg HE, His HD1/HE2, Trp HE1)
planar NH2         X-H at 120 degrees in the plane: Asn HD21/Gln HE21 cis to OD1/OE1, HD22/HE22
                   trans (as gemmi, Phenix and Reduce's Asn; Reduce's Gln is the other way round);
                   Arg HH11/HH21 cis to NE, HH12/HH22 trans
OH, SH             X-H at 109.5 degrees, dihedral 180 degrees to Reduce's reference atom (Ser HG
                   anti to CA, Thr HG1 anti to CA, Cys HG anti to CA, Tyr HH anti to CE1, i.e. in
                   the ring plane): the starting orientation before rotor optimisation
=================  =========================================================================

Special cases: proline has no backbone H; the first residue of a chain gets NH3+ (named H, H2,
H3 as in the CCD and the CCP4 monomer library; N-terminal proline gets H, H2); a residue after a
chain break (no peptide link to the previous residue) gets one H on N, placed like H3 (Reduce's
"break-amide"); disulfide-bonded cysteines (SG-SG < 2.5 Å) get no HG; the C-terminus stays a
carboxylate (no H on OXT); Asp, Glu are deprotonated, Lys and Arg protonated; histidine gets
HE2 only by default (the neutral N-epsilon tautomer, the most common in proteins),
``his_protonation="HD1"`` or ``"both"`` change that.

Rotatable groups (CH3, NH3+, OH, SH) are then turned about their axis to avoid van der Waals
overlaps and make hydrogen bonds (:func:`optimize_rotors`, on by default), a greedy stand-in for
Reduce's optimisation; Asn/Gln/His flips are never made.

X-H distances: MolProbity/Reduce offers electron-cloud and nuclear positions. MolProbity's
default, which its web service describes as "ideal for most cases, especially X-ray crystal
structures" (nuclear: "ideal for NMR, neutron diffraction"), and the default of cctbx's
clashscore (``nuclear=False``) and of servalcat (``value_dist``), is the electron-cloud set; we
use it by default so that clashscores are comparable with those MolProbity reports for
deposited cryo-EM models. ``nuclear=True`` selects nuclear positions. Values (Reduce
``StdResH.cpp``; Deis et al. 2013 Comput Crystallogr Newsl 4:9):

=============================  ================  ============
bond                           electron cloud Å  nuclear Å
=============================  ================  ============
C-H aliphatic (CH, CH2, CH3)   0.97              1.09
C-H aromatic                   0.93              1.08
N-H (amide, planar, NH2, NH2+) 0.86              1.02
N-H in NH3+ (Lys, N-terminus)  0.89              1.04
O-H                            0.84              0.98
S-H                            1.20              1.30
=============================  ================  ============
"""

from __future__ import annotations

import logging
from dataclasses import fields

import numpy as np

from emforge.geometry.covalent import STANDARD_AMINO_ACIDS, peptide_links, residue_atom_index, residue_rows
from emforge.models import AtomModel

log = logging.getLogger(__name__)

TETRAHEDRAL_DEG = 109.5
DISULFIDE_MAX_A = 2.5

XH_DISTANCES_A = {
    # class: (electron cloud, nuclear)
    "CH": (0.97, 1.09),
    "CHar": (0.93, 1.08),
    "NH": (0.86, 1.02),
    "NH3": (0.89, 1.04),
    "OH": (0.84, 0.98),
    "SH": (1.20, 1.30),
}

# Plans per residue type: (kind, names, atoms, distance class).
#   tet1   : X(a, b, c)          -> one H
#   tet2   : X(a, b)             -> names (plus, minus) by the sign rule in the module docstring
#   methyl : X(a, ref)           -> names at dihedrals (180, -60, +60) to ref
#   sp2    : X(a, b)             -> one H in the plane, bisecting outside
#   nh2    : X(a, ref)           -> names (cis to ref, trans to ref), 120 degrees
#   rot1   : X(a, ref)           -> one H at 109.5 degrees, dihedral 180 to ref
_CB2 = ("tet2", ("HB3", "HB2"), ("CB", "CA", "CG"), "CH")
_RING6 = [
    ("sp2", ("HD1",), ("CD1", "CG", "CE1"), "CHar"),
    ("sp2", ("HD2",), ("CD2", "CG", "CE2"), "CHar"),
    ("sp2", ("HE1",), ("CE1", "CD1", "CZ"), "CHar"),
    ("sp2", ("HE2",), ("CE2", "CD2", "CZ"), "CHar"),
]
SIDE_CHAIN_PLANS: dict[str, list[tuple]] = {
    "ALA": [("methyl", ("HB1", "HB2", "HB3"), ("CB", "CA", "N"), "CH")],
    "ARG": [_CB2,
            ("tet2", ("HG3", "HG2"), ("CG", "CB", "CD"), "CH"),
            ("tet2", ("HD3", "HD2"), ("CD", "CG", "NE"), "CH"),
            ("sp2", ("HE",), ("NE", "CD", "CZ"), "NH"),
            ("nh2", ("HH11", "HH12"), ("NH1", "CZ", "NE"), "NH"),
            ("nh2", ("HH21", "HH22"), ("NH2", "CZ", "NE"), "NH")],
    "ASN": [_CB2, ("nh2", ("HD21", "HD22"), ("ND2", "CG", "OD1"), "NH")],
    "ASP": [_CB2],
    "CYS": [("tet2", ("HB3", "HB2"), ("CB", "CA", "SG"), "CH"),
            ("rot1", ("HG",), ("SG", "CB", "CA"), "SH")],
    "GLN": [_CB2,
            ("tet2", ("HG3", "HG2"), ("CG", "CB", "CD"), "CH"),
            ("nh2", ("HE21", "HE22"), ("NE2", "CD", "OE1"), "NH")],
    "GLU": [_CB2, ("tet2", ("HG3", "HG2"), ("CG", "CB", "CD"), "CH")],
    "GLY": [],
    "HIS": [_CB2,
            ("sp2", ("HD1",), ("ND1", "CG", "CE1"), "NH"),
            ("sp2", ("HD2",), ("CD2", "CG", "NE2"), "CHar"),
            ("sp2", ("HE1",), ("CE1", "ND1", "NE2"), "CHar"),
            ("sp2", ("HE2",), ("NE2", "CE1", "CD2"), "NH")],
    "ILE": [("tet1", ("HB",), ("CB", "CA", "CG1", "CG2"), "CH"),
            ("tet2", ("HG12", "HG13"), ("CG1", "CB", "CD1"), "CH"),
            ("methyl", ("HG21", "HG22", "HG23"), ("CG2", "CB", "CA"), "CH"),
            ("methyl", ("HD11", "HD12", "HD13"), ("CD1", "CG1", "CB"), "CH")],
    "LEU": [_CB2,
            ("tet1", ("HG",), ("CG", "CB", "CD1", "CD2"), "CH"),
            ("methyl", ("HD11", "HD12", "HD13"), ("CD1", "CG", "CB"), "CH"),
            ("methyl", ("HD21", "HD22", "HD23"), ("CD2", "CG", "CB"), "CH")],
    "LYS": [_CB2,
            ("tet2", ("HG3", "HG2"), ("CG", "CB", "CD"), "CH"),
            ("tet2", ("HD3", "HD2"), ("CD", "CG", "CE"), "CH"),
            ("tet2", ("HE3", "HE2"), ("CE", "CD", "NZ"), "CH"),
            ("methyl", ("HZ1", "HZ2", "HZ3"), ("NZ", "CE", "CD"), "NH3")],
    "MET": [_CB2,
            ("tet2", ("HG3", "HG2"), ("CG", "CB", "SD"), "CH"),
            ("methyl", ("HE1", "HE2", "HE3"), ("CE", "SD", "CG"), "CH")],
    "PHE": [_CB2, *_RING6, ("sp2", ("HZ",), ("CZ", "CE1", "CE2"), "CHar")],
    "PRO": [_CB2,
            ("tet2", ("HG3", "HG2"), ("CG", "CB", "CD"), "CH"),
            ("tet2", ("HD3", "HD2"), ("CD", "N", "CG"), "CH")],
    "SER": [("tet2", ("HB3", "HB2"), ("CB", "CA", "OG"), "CH"),
            ("rot1", ("HG",), ("OG", "CB", "CA"), "OH")],
    "THR": [("tet1", ("HB",), ("CB", "CA", "OG1", "CG2"), "CH"),
            ("rot1", ("HG1",), ("OG1", "CB", "CA"), "OH"),
            ("methyl", ("HG21", "HG22", "HG23"), ("CG2", "CB", "CA"), "CH")],
    "TRP": [_CB2,
            ("sp2", ("HD1",), ("CD1", "CG", "NE1"), "CHar"),
            ("sp2", ("HE1",), ("NE1", "CD1", "CE2"), "NH"),
            ("sp2", ("HE3",), ("CE3", "CD2", "CZ3"), "CHar"),
            ("sp2", ("HZ2",), ("CZ2", "CE2", "CH2"), "CHar"),
            ("sp2", ("HZ3",), ("CZ3", "CE3", "CH2"), "CHar"),
            ("sp2", ("HH2",), ("CH2", "CZ2", "CZ3"), "CHar")],
    "TYR": [_CB2, *_RING6, ("rot1", ("HH",), ("OH", "CZ", "CE1"), "OH")],
    "VAL": [("tet1", ("HB",), ("CB", "CA", "CG1", "CG2"), "CH"),
            ("methyl", ("HG11", "HG12", "HG13"), ("CG1", "CB", "CA"), "CH"),
            ("methyl", ("HG21", "HG22", "HG23"), ("CG2", "CB", "CA"), "CH")],
}
HA_PLAN = ("tet1", ("HA",), ("CA", "N", "C", "CB"), "CH")
GLY_HA_PLAN = ("tet2", ("HA3", "HA2"), ("CA", "N", "C"), "CH")
NTERM_PLAN = ("methyl", ("H3", "H2", "H"), ("N", "CA", "C"), "NH3")
NTERM_PRO_PLAN = ("tet2", ("H2", "H"), ("N", "CA", "CD"), "NH")
BREAK_PLAN = ("rot1", ("H",), ("N", "CA", "C"), "NH")
HIS_PROTONATION = ("HE2", "HD1", "both")


# -- vectorised placement geometry ------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def place_by_internal(x: np.ndarray, a: np.ndarray, ref: np.ndarray, d: float, angle_deg: float,
                      dihedral_deg: float) -> np.ndarray:
    """(n, 3) points H with |X-H| = d, angle a-X-H = ``angle_deg`` and dihedral H-X-a-ref = ``dihedral_deg``.

    ``x``, ``a``, ``ref`` are (n, 3) coordinates in Å (natural extension reference frame).
    """
    bc = _unit(x - a)
    n = _unit(np.cross(a - ref, bc))
    m = np.cross(n, bc)
    th, ph = np.radians(angle_deg), np.radians(dihedral_deg)
    return x + d * (-np.cos(th) * bc + np.sin(th) * np.cos(ph) * m + np.sin(th) * np.sin(ph) * n)


def _tet1(x, a, b, c, d):
    return [x + d * _unit(-(_unit(a - x) + _unit(b - x) + _unit(c - x)))]


def _tet2(x, a, b, d):
    ua, ub = _unit(a - x), _unit(b - x)
    bis = _unit(-(ua + ub))
    nrm = _unit(np.cross(ua, ub))
    half = np.radians(TETRAHEDRAL_DEG) / 2.0
    return [x + d * (np.cos(half) * bis + np.sin(half) * nrm),   # (H - X) . (ua x ub) > 0
            x + d * (np.cos(half) * bis - np.sin(half) * nrm)]


def _sp2(x, a, b, d):
    return [x + d * _unit(-(_unit(a - x) + _unit(b - x)))]


def _methyl(x, a, ref, d):
    return [place_by_internal(x, a, ref, d, TETRAHEDRAL_DEG, phi) for phi in (180.0, -60.0, 60.0)]


def _nh2(x, a, ref, d):
    return [place_by_internal(x, a, ref, d, 120.0, phi) for phi in (0.0, 180.0)]


def _rot1(x, a, ref, d):
    return [place_by_internal(x, a, ref, d, TETRAHEDRAL_DEG, 180.0)]


_PLACERS = {"tet1": _tet1, "tet2": _tet2, "sp2": _sp2, "methyl": _methyl, "nh2": _nh2, "rot1": _rot1}


def _plan_atom_names() -> list[str]:
    names = {"N", "CA", "C", "CB", "CD", "SG"}
    for plans in SIDE_CHAIN_PLANS.values():
        for _, _, atoms, _ in plans:
            names.update(atoms)
    return sorted(names)


# -- public API --------------------------------------------------------------------------------

def add_riding_hydrogens(model: AtomModel, nuclear: bool = False, his_protonation: str = "HE2",
                         optimize_rotatable: bool = True) -> AtomModel:
    """A copy of ``model`` with riding hydrogens on its standard amino acids (see module docstring).

    Parameters
    ----------
    model
        Any model; existing H/D atoms are removed first and not reused.
    nuclear
        Place H at nuclear X-H distances (default: electron-cloud distances, as MolProbity).
    his_protonation
        "HE2" (default, neutral N-epsilon-H tautomer), "HD1" (N-delta-H) or "both" (charged).
    optimize_rotatable
        Turn rotatable groups (CH3, NH3+, OH, SH) about their axis to the orientation with the
        fewest van der Waals overlaps and the best hydrogen bonds (see :func:`optimize_rotors`);
        with False they keep the default orientations of the table above.

    Returns
    -------
    AtomModel
        Heavy atoms in their original order, each residue's new hydrogens following its heavy
        atoms; H atoms carry the B-factor, occupancy, HETATM flag and residue fields of their
        parent atom, element "H".
    """
    if his_protonation not in HIS_PROTONATION:
        raise ValueError(f"his_protonation must be one of {HIS_PROTONATION}, got {his_protonation!r}")
    heavy = model.without_hydrogens()
    n = len(heavy)
    if n == 0:
        return heavy
    col_names = _plan_atom_names()
    col = {nm: k for k, nm in enumerate(col_names)}
    rows = residue_rows(heavy)
    idx = residue_atom_index(heavy, col_names, rows)
    starts = heavy.residue_starts()
    res_names = heavy.res_name[starts]
    n_res = len(starts)
    x = heavy.coords
    k_dist = 1 if nuclear else 0

    new_xyz: list[np.ndarray] = []
    new_names: list[np.ndarray] = []
    new_parent: list[np.ndarray] = []
    new_order: list[np.ndarray] = []
    plan_counter = [0]
    n_new = [0]
    rotors: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]] = []  # (X, a, (g, k) H, period)

    def run(plan, res_rows, extra_idx=None):
        kind, names, atoms, dclass = plan
        if not len(res_rows):
            return
        if extra_idx is None:
            ii = idx[res_rows][:, [col[a] for a in atoms]]
        else:
            ii = extra_idx
        ok = (ii >= 0).all(axis=1)
        if not ok.any():
            return
        ii = ii[ok]
        d = XH_DISTANCES_A[dclass][k_dist]
        pts = _PLACERS[kind](*(x[ii[:, j]] for j in range(ii.shape[1])), d)
        members = []
        for name, p in zip(names, pts):
            new_xyz.append(p)
            new_names.append(np.full(len(p), name))
            new_parent.append(ii[:, 0])
            new_order.append(np.full(len(p), plan_counter[0]))
            plan_counter[0] += 1
            members.append(n + n_new[0] + np.arange(len(p)))
            n_new[0] += len(p)
        if kind in ("methyl", "rot1"):
            rotors.append((ii[:, 0], ii[:, 1], np.stack(members, axis=1), 120.0 if kind == "methyl" else 360.0))

    standard = np.isin(res_names, STANDARD_AMINO_ACIDS)
    linked = peptide_links(heavy, rows)
    prev_linked = np.zeros(n_res, bool)
    prev_linked[1:] = linked[:-1]
    chain = heavy.chain_id[starts]
    # N-terminus: first residue of its chain, or the residue before it is no amino acid
    is_aa = heavy.is_protein()[starts]
    first_in_chain = np.ones(n_res, bool)
    first_in_chain[1:] = (chain[1:] != chain[:-1]) | ~is_aa[:-1]

    # backbone amide H (bisecting CA-N-C(i-1)); N-terminal NH3+ / NH2+; chain-break H
    r = np.flatnonzero(standard & prev_linked & (res_names != "PRO"))
    run(("sp2", ("H",), None, "NH"), r, np.stack([idx[r, col["N"]], idx[r, col["CA"]], idx[r - 1, col["C"]]], 1)
        if len(r) else None)
    nterm = standard & ~prev_linked & first_in_chain
    run(NTERM_PLAN, np.flatnonzero(nterm & (res_names != "PRO")))
    run(NTERM_PRO_PLAN, np.flatnonzero(nterm & (res_names == "PRO")))
    run(BREAK_PLAN, np.flatnonzero(standard & ~prev_linked & ~first_in_chain & (res_names != "PRO")))
    # alpha H
    run(HA_PLAN, np.flatnonzero(standard & (res_names != "GLY")))
    run(GLY_HA_PLAN, np.flatnonzero(res_names == "GLY"))

    # disulfide-bonded cysteines get no HG
    cys = np.flatnonzero(res_names == "CYS")
    sg = idx[cys, col["SG"]]
    bridged = np.zeros(len(cys), bool)
    have = sg >= 0
    if have.sum() > 1:
        p = x[sg[have]]
        dd = np.linalg.norm(p[:, None, :] - p[None, :, :], axis=-1) if have.sum() <= 2000 else None
        if dd is None:  # many cysteines: neighbour search instead of the full matrix
            from scipy.spatial import cKDTree
            pairs = cKDTree(p).query_pairs(DISULFIDE_MAX_A, output_type="ndarray")
            near = np.zeros(len(p), bool)
            near[pairs.ravel()] = True
        else:
            np.fill_diagonal(dd, np.inf)
            near = (dd < DISULFIDE_MAX_A).any(axis=1)
        bridged[np.flatnonzero(have)[near]] = True

    for res, plans in SIDE_CHAIN_PLANS.items():
        rr = np.flatnonzero(res_names == res)
        for plan in plans:
            names = plan[1]
            use = rr
            if res == "CYS" and names == ("HG",):
                use = cys[~bridged]
            if res == "HIS" and names == ("HD1",) and his_protonation == "HE2":
                continue
            if res == "HIS" and names == ("HE2",) and his_protonation == "HD1":
                continue
            run(plan, use)

    if not new_xyz:
        return heavy
    h_xyz = np.concatenate(new_xyz)
    h_name = np.concatenate(new_names)
    h_parent = np.concatenate(new_parent)
    h_order = np.concatenate(new_order)
    n_h = len(h_xyz)

    values = {}
    for f in fields(heavy):
        arr = getattr(heavy, f.name)
        if f.name == "coords":
            values[f.name] = np.concatenate([arr, h_xyz])
        elif f.name == "atom_name":
            values[f.name] = np.concatenate([arr, h_name])
        elif f.name == "element":
            values[f.name] = np.concatenate([arr, np.full(n_h, "H")])
        else:
            values[f.name] = np.concatenate([arr, arr[h_parent]])
    # order: residue by residue, heavy atoms first (original order), then H in plan order
    atom_rows = np.concatenate([rows, rows[h_parent]])
    group = np.concatenate([np.zeros(n, np.int64), np.ones(n_h, np.int64)])
    within = np.concatenate([np.arange(n), h_order])
    order = np.lexsort((within, group, atom_rows))
    out = AtomModel(**{k: v[order] for k, v in values.items()})
    if optimize_rotatable and rotors:
        final = np.empty_like(order)
        final[order] = np.arange(len(order))
        groups = [(final[xi], final[ai], final[mem], period) for xi, ai, mem, period in rotors]
        out = out.with_coords(optimize_rotors(out, groups, nuclear=nuclear))
    log.debug("placed %d riding hydrogens on %d residues", n_h, int(standard.sum()))
    return out


# -- rotatable groups ---------------------------------------------------------------------------

ROTOR_STEP_DEG = 10.0
ROTOR_REACH_A = 4.6
HBOND_REWARD = 4.0
BUMP_WEIGHT = 10.0


def optimize_rotors(model: AtomModel, groups, nuclear: bool = False, n_pass: int = 2) -> np.ndarray:
    """Coordinates with rotatable hydrogens turned to their best orientation.

    Each group is (X, a, H, period): parent atoms X (g,), axis atoms a (g,), member hydrogens
    H (g, k) and the symmetry period in degrees (120 for CH3/NH3+, 360 for OH/SH). Every group is
    tried at rotations 0, 10, ... degrees about the a-X axis (angles and bond lengths are kept)
    and scored against all atoms more than 3 bonds from X (more than 4 from its hydrogens):
    ``10 o^2`` for a van der Waals overlap o > 0 of a non-H-bond pair, ``-4 min(o, 0.6)`` (and
    ``10 (o - 1.0)^2`` beyond 1.0 Å) for a polar H against an acceptor, with the radii of
    :mod:`emforge.geometry.clashes`. A tiny preference for the starting orientation keeps it when
    nothing is gained, like Reduce's rotate-on-demand for methyls. All groups move at once
    against the others' current positions; ``n_pass`` rounds. This is a greedy simplification
    of Reduce's hydrogen-bond network search (no flips, no cliques).

    Returns
    -------
    (N, 3) float64 coordinates in Å.
    """
    from emforge.geometry.clashes import _bond_graph, _reach, _within_bonds, atom_radii, hbond_roles

    x = model.coords.copy()
    if not groups:
        return x
    rows = residue_rows(model)
    element = np.char.upper(model.element.astype(str))
    is_h = np.isin(element, ("H", "D"))
    radius = atom_radii(model, nuclear=nuclear)
    donor, acceptor = hbond_roles(model)
    adj = _bond_graph(model, rows, is_h, element)
    reach = _reach(adj)
    from scipy.spatial import cKDTree

    for _ in range(n_pass):
        tree = cKDTree(x)
        for xi, ai, mem, period in groups:
            if not len(xi):
                continue
            nbl = tree.query_ball_point(x[xi], r=ROTOR_REACH_A)
            g = np.repeat(np.arange(len(xi)), [len(v) for v in nbl])
            nb = np.concatenate([np.asarray(v, np.int64) for v in nbl])
            own = (nb[:, None] == mem[g]).any(axis=1) | (nb == xi[g])
            g, nb = g[~own], nb[~own]
            far = ~_within_bonds(adj, xi[g], nb, 3, reach)
            g, nb = g[far], nb[far]
            thetas = np.radians(np.arange(0.0, period, ROTOR_STEP_DEG))
            axis = _unit(x[xi] - x[ai])                                    # (G, 3)
            rel = x[mem] - x[xi][:, None, :]                                # (G, k, 3)
            # Rodrigues: v cos t + (u x v) sin t + u (u . v)(1 - cos t)
            uxv = np.cross(axis[:, None, :], rel)
            udv = np.einsum("gj,gkj->gk", axis, rel)[..., None] * axis[:, None, :]
            c, s_ = np.cos(thetas)[:, None, None, None], np.sin(thetas)[:, None, None, None]
            cand = x[xi][None, :, None, :] + rel[None] * c + uxv[None] * s_ + udv[None] * (1 - c)  # (T, G, k, 3)
            if len(g):
                d = np.linalg.norm(cand[:, g] - x[nb][None, :, None, :], axis=-1)  # (T, P, k)
                o = radius[mem[g]][None] + radius[nb][None, :, None] - d
                hb = (donor[mem[g]] & acceptor[nb][:, None])[None]
                hb_score = -HBOND_REWARD * np.clip(o, 0.0, 0.6) + BUMP_WEIGHT * np.clip(o - 1.0, 0.0, None) ** 2
                pen = np.where(hb, hb_score, BUMP_WEIGHT * np.clip(o, 0.0, None) ** 2).sum(axis=2)  # (T, P)
                score = np.zeros((len(thetas), len(xi)))
                for t in range(len(thetas)):
                    score[t] = np.bincount(g, weights=pen[t], minlength=len(xi))
            else:
                score = np.zeros((len(thetas), len(xi)))
            score += 1e-3 * (1.0 - np.cos(thetas))[:, None]
            best = np.argmin(score, axis=0)
            x[mem] = cand[best, np.arange(len(xi))]
    return x
