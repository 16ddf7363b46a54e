"""Restrained all-atom relaxation in OpenMM (AMBER14 ff14SB + implicit solvent).

EM-Refiner's last step removes clashes with fragment-guided MD (paper 000); emforge replaces it by
restrained energy minimisation: the model is completed with pdbfixer (missing side-chain atoms,
hydrogens), every input heavy atom is held to its input position by a harmonic restraint, and
OpenMM's L-BFGS minimiser (:class:`openmm.LocalEnergyMinimizer`) relaxes the rest. The OpenMM
system builder (:func:`build_system`, :func:`add_position_restraints`) is shared with the
TEMPy-ReFF refinement.

Force field: ``amber14/protein.ff14SB.xml`` (the protein part of OpenMM's ``amber14-all.xml``)
with OpenMM 8.6's generic implicit-solvent files ``implicit/obc2.xml`` (GB-OBC II, Amber igb=5,
mbondi2 radii, ACE surface term) or ``implicit/gbn2.xml`` (GB-neck2, Amber igb=8); both read their
radii from the topology and load together with ff14SB. OpenMM implements these as a
``CustomGBForce``, which is slow on CPUs; for "obc2" emforge swaps it for the equivalent native
:class:`openmm.GBSAOBCForce` (same charges, mbondi2 radii, OBC II scale factors, dielectrics 1 and
78.5, ACE surface energy 2.25936 kJ/mol/nm^2; energies agree to < 1e-5 relative), faster on CPU:
one energy + force evaluation of 3161 atoms with a 10 Å cutoff takes 48 ms instead of 126 ms (2
cores; 1231 atoms without cutoff 79 ms instead of 567 ms). GBn2 has no native force and stays
custom (153 ms for the 3161 atoms; vacuum 7 ms).

Units: Å, kJ/mol and kJ/mol/Å^2 in the public API; OpenMM works in nm, converted at the boundary.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from functools import cache

import gemmi
import numpy as np
import pandas as pd

from emforge.errors import InputError
from emforge.geometry.covalent import peptide_links, residue_rows
from emforge.models import AtomModel, to_gemmi

log = logging.getLogger(__name__)

PROTEIN_FORCEFIELD = "amber14/protein.ff14SB.xml"
SOLVENT_FILES = {"obc2": "implicit/obc2.xml", "gbn2": "implicit/gbn2.xml", "vacuum": None}
PLATFORM_ORDER = ("CUDA", "OpenCL", "CPU")
DEFAULT_CPU_THREADS = 2
NM_PER_A = 0.1
OBC_SURFACE_ENERGY_KJ_PER_MOL_NM2 = 2.25936
#: heavy-atom restraint k in E = k d^2 (see :func:`relax` for how it was chosen)
DEFAULT_RESTRAINT_K_KJ_PER_MOL_A2 = 10.0
DEFAULT_MAX_ITERATIONS = 2000
DEFAULT_TOLERANCE_KJ_PER_MOL_NM = 10.0
RESTRAINT_FORCE_GROUP = 1
SEPARATION_FORCE_GROUP = 2
#: flat-bottom repulsion E = k (d_min - r)^2 (r < d_min) between atom pairs that must separate
SEPARATION_K_KJ_PER_MOL_A2 = 100.0
#: :func:`remove_clashes`: contacts from this van der Waals overlap (riding H) count as clashes;
#: below MolProbity's 0.4 Å so that pairs just under the limit, which the 3-decimal coordinates of
#: a written file can tip over it, count too
CLASH_CHECK_OVERLAP_A = 0.35
#: :func:`remove_clashes`: each clashing pair is pushed to this much below the clash overlap
CLASH_MARGIN_A = 0.15
CLASH_MAX_ROUNDS = 5
#: pdbfixer places missing atoms by superposing a template on the present ones: it needs 3
MIN_HEAVY_ATOMS_PER_RESIDUE = 3
#: OpenMM integrators take 32-bit signed seeds; larger emforge seeds are reduced modulo this
OPENMM_SEED_MODULUS = 2**31
# residue names the force field knows directly (pdbfixer substitutes other modified amino acids)
_AMBER_PROTEIN_NAMES = frozenset(
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "ASH GLH HID HIE HIP HSD HSE HSP CYX CYM LYN ACE NME NMA".split())
_CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _openmm():
    try:
        import openmm
        import openmm.app
    except ImportError as exc:  # pragma: no cover - openmm is a dependency
        raise InputError(f"OpenMM is not installed ({exc}); install openmm==8.6.1 and pdbfixer==1.12.0") from None
    return openmm


# -- completion (pdbfixer) ---------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Completed:
    """A model completed by pdbfixer: OpenMM topology and positions, with the map back to the input.

    Attributes
    ----------
    topology : openmm.app.Topology, T atoms, hydrogens included; one chain per chain segment
        (chains are split at breaks) with internal ids and residues numbered 1..n: map back to the
        input through ``residue_row``
    positions_A : (T, 3) float64, Å
    input_index : (N,) int64, for each atom of the input model its topology index; -1 for atoms
        with no counterpart (input hydrogens, non-protein atoms, atoms of residues pdbfixer replaced
        under other names)
    residue_row : (T,) int64, for each topology atom the row of its residue in the input's
        ``residue_table()``
    added : list of (chain_id, residue label, atom name) of the heavy atoms pdbfixer added, in
        topology order, labelled with the input's chain id and residue ("A:LYS12")
    added_index : (A,) int64, topology indices of those added heavy atoms
    """

    topology: object
    positions_A: np.ndarray
    input_index: np.ndarray
    residue_row: np.ndarray
    added: list
    added_index: np.ndarray

    @property
    def positions(self) -> np.ndarray:
        """Alias of ``positions_A`` (Å)."""
        return self.positions_A


def _segments(model: AtomModel) -> tuple[np.ndarray, np.ndarray]:
    """Split the protein residues at chain breaks: (R,) segment id and (R,) number in segment (1-based)."""
    starts = model.residue_starts()
    chain = model.chain_id[starts]
    linked = peptide_links(model)
    new = np.ones(len(starts), bool)
    new[1:] = ~linked[:-1] | (chain[1:] != chain[:-1])
    seg = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    number = np.arange(len(starts)) - first[seg] + 1
    return seg, number


def _check_residue_names(model: AtomModel) -> None:
    from pdbfixer.pdbfixer import substitutions

    starts = model.residue_starts()
    names = model.res_name[starts]
    bad = ~np.isin(names, list(_AMBER_PROTEIN_NAMES | set(substitutions)))
    if bad.any():
        label = model.residue_labels()[int(np.flatnonzero(bad)[0])]
        raise InputError(f"residue {label} has no AMBER14 template and no standard replacement in pdbfixer "
                         f"({int(bad.sum())} such residue(s)); remove or rename it before relaxing")


def complete_model(model: AtomModel, *, ph: float = 7.0, seed: int = 0, platform=None) -> Completed:
    """Complete the protein part of ``model`` with pdbfixer for an all-atom force field.

    Every amino-acid residue needs at least 3 heavy atoms (C-alpha traces are rejected with
    :class:`InputError`); residues isolated between two chain breaks (AMBER has no template for a
    free amino acid) are left out with a warning (``input_index`` -1: they keep their positions).
    Only amino-acid residues are passed on: ligands, ions and waters are dropped (pdbfixer's
    ``removeHeterogens(keepWater=False)`` is applied as well), input hydrogens are discarded and
    rebuilt. Chains are split at breaks (no C-N link < 2 Å): each segment gets its own termini, and
    missing residues are never built (``findMissingResidues`` then cleared). Modified amino acids
    pdbfixer knows are replaced by their standard parents (MSE's SE is passed on as MET's SD and
    maps back to the input SE; atoms of other modified residues without a counterpart in the parent
    get ``input_index`` -1), missing heavy atoms are added
    (``addMissingAtoms``, seeded), then hydrogens at ``ph`` (``addMissingHydrogens``). Everything
    happens in memory; no file is written.

    Parameters
    ----------
    model
        Input model (N atoms, Å).
    ph
        pH for protonation states.
    seed
        Seed of pdbfixer's short MD that places added heavy atoms and of the random start
        positions OpenMM's Modeller gives new hydrogens.
    platform
        openmm.Platform for pdbfixer's own minimisation (default: its choice).

    Returns
    -------
    Completed
    """
    _openmm()
    from pdbfixer import PDBFixer

    if len(model) == 0:
        raise InputError("model holds no atoms")
    protein = model.is_protein() & ~model.is_hydrogen()
    if not protein.any():
        raise InputError("model holds no amino-acid residues: nothing for the protein force field to relax")
    sub_index = np.flatnonzero(protein)
    sub = model.select(sub_index)
    _check_residue_names(sub)
    rows_sub = residue_rows(sub)
    sparse = np.bincount(rows_sub) < MIN_HEAVY_ATOMS_PER_RESIDUE
    if sparse.any():
        label = sub.residue_labels()[int(np.flatnonzero(sparse)[0])]
        raise InputError(f"{int(sparse.sum())} residue(s) have fewer than {MIN_HEAVY_ATOMS_PER_RESIDUE} heavy atoms "
                         f"(first: {label}); relaxation needs all-atom residues (rebuild C-alpha traces first)")
    seg, number = _segments(sub)
    lone = np.bincount(seg)[seg] == 1  # per residue: a segment of one residue (no AMBER template)
    if lone.all():
        raise InputError("every protein residue is isolated by chain breaks: nothing the force field can build")
    if lone.any():
        log.warning("%d isolated residue(s) (single-residue chain segments, e.g. %s) are left out of the "
                    "relaxation and keep their input positions", int(lone.sum()),
                    sub.residue_labels()[int(np.flatnonzero(lone)[0])])
        keep = ~lone[rows_sub]
        sub_index, sub = sub_index[keep], sub.select(keep)
        rows_sub = residue_rows(sub)
        seg, number = _segments(sub)
    # input residue rows of the protein residues (sub residues are a subset of the input residues)
    rows_in = residue_rows(model)[sub_index][sub.residue_starts()]
    # PDB text with one chain per segment (ids cycled; TER separates chains) and residues numbered 1..n
    seg_atoms = seg[rows_sub]
    # selenomethionine: pdbfixer turns MSE into MET and would delete SE and rebuild SD; pass SE as SD
    mse_se = (sub.res_name == "MSE") & (sub.atom_name == "SE")
    names = np.where(mse_se, "SD", sub.atom_name)
    renamed = AtomModel(sub.coords, np.where(mse_se, "S", sub.element), names, sub.res_name, number[rows_sub],
                        np.full(len(sub), "", dtype="U1"),
                        np.array(list(_CHAIN_IDS), dtype="U1")[seg_atoms % len(_CHAIN_IDS)],
                        sub.b_factor, np.ones(len(sub)), np.zeros(len(sub), bool), sub.residue_index)
    st = to_gemmi(renamed)
    pdb_text = st.make_pdb_string(gemmi.PdbWriteOptions(minimal=True))
    # no CRYST1: gemmi writes a dummy 1 Å cell that OpenMM would read as a periodic box
    pdb_text = "".join(line for line in pdb_text.splitlines(keepends=True) if not line.startswith("CRYST1"))
    # OpenMM's Modeller places new hydrogens at random with Python's global ``random`` before it
    # minimises them: seed it for reproducible output and restore the caller's state afterwards
    state = random.getstate()
    random.seed(seed)
    try:
        fixer = PDBFixer(pdbfile=io.StringIO(pdb_text), platform=platform)
        fixer.findMissingResidues()
        fixer.missingResidues = {}
        fixer.findNonstandardResidues()
        fixer.replaceNonstandardResidues()
        fixer.removeHeterogens(keepWater=False)
        fixer.findMissingAtoms()
        fixer.addMissingAtoms(seed=seed % OPENMM_SEED_MODULUS)
        fixer.addMissingHydrogens(ph)
    except (ValueError, KeyError, IndexError) as exc:
        raise InputError(f"pdbfixer cannot complete the model ({exc})") from None
    finally:
        random.setstate(state)
    top = fixer.topology
    pos = np.asarray(fixer.positions.value_in_unit(_openmm().unit.nanometer), dtype=np.float64) / NM_PER_A
    chains = list(top.chains())
    n_seg = int(seg.max()) + 1
    if len(chains) != n_seg:
        raise InputError(f"pdbfixer returned {len(chains)} chains for {n_seg} protein segments")
    # residue row (of the protein sub-model) for each topology residue
    seg_first = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    top_row = np.empty(top.getNumAtoms(), np.int64)
    name_of = {}
    for k, chain in enumerate(chains):
        for res in chain.residues():
            r = seg_first[k] + int(res.id) - 1
            for atom in res.atoms():
                top_row[atom.index] = r
                name_of[(r, atom.name)] = atom.index
    sub_map = np.array([name_of.get((int(r), str(a)), -1) for r, a in zip(rows_sub, names)],
                       dtype=np.int64)
    input_index = np.full(len(model), -1, np.int64)
    input_index[sub_index] = sub_map
    # added heavy atoms: topology heavy atoms no input atom maps to
    is_h = np.array([a.element is not None and a.element.symbol == "H" for a in top.atoms()])
    mapped = np.zeros(top.getNumAtoms(), bool)
    mapped[sub_map[sub_map >= 0]] = True
    added_index = np.flatnonzero(~mapped & ~is_h)
    labels = sub.residue_labels()
    sub_chain = sub.chain_id[sub.residue_starts()]
    atoms = list(top.atoms())
    added = [(str(sub_chain[top_row[i]]), labels[top_row[i]], atoms[i].name) for i in added_index]
    if added:
        log.info("pdbfixer added %d heavy atoms: %s", len(added), ", ".join(f"{lab}:{a}" for _, lab, a in added[:10]))
    return Completed(top, pos, input_index, rows_in[top_row], added, added_index)


# -- force field and system --------------------------------------------------------------------

@cache
def _forcefield(solvent: str):
    app = _openmm().app
    files = [PROTEIN_FORCEFIELD] + ([SOLVENT_FILES[solvent]] if SOLVENT_FILES[solvent] else [])
    return app.ForceField(*files)


def _constraints(constraints):
    app = _openmm().app
    table = {None: None, "none": None, "hbonds": app.HBonds, "allbonds": app.AllBonds, "hangles": app.HAngles}
    if isinstance(constraints, str) or constraints is None:
        key = constraints.lower() if isinstance(constraints, str) else None
        if key not in table:
            raise InputError(f"constraints must be None, 'hbonds', 'allbonds' or 'hangles', got {constraints!r}")
        return table[key]
    return constraints


def _native_obc2(system, topology, cutoff_nm: float | None) -> None:
    """Replace OpenMM's CustomGBForce OBC II by the equivalent (faster) native GBSAOBCForce, in place."""
    mm = _openmm()
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    custom = [i for i, f in enumerate(system.getForces()) if isinstance(f, mm.CustomGBForce)]
    nonbonded = [f for f in system.getForces() if isinstance(f, mm.NonbondedForce)][0]
    if len(custom) != 1:
        return
    params = GBSAOBC2Force.getStandardParameters(topology)  # (T, 2): radius nm, scale
    gb = mm.GBSAOBCForce()
    gb.setSoluteDielectric(1.0)
    gb.setSolventDielectric(78.5)
    gb.setSurfaceAreaEnergy(OBC_SURFACE_ENERGY_KJ_PER_MOL_NM2)
    for i in range(system.getNumParticles()):
        charge = nonbonded.getParticleParameters(i)[0]
        gb.addParticle(charge, float(params[i][0]), float(params[i][1]))
    if cutoff_nm is None:
        gb.setNonbondedMethod(mm.GBSAOBCForce.NoCutoff)
    else:
        gb.setNonbondedMethod(mm.GBSAOBCForce.CutoffNonPeriodic)
        gb.setCutoffDistance(cutoff_nm)
    gb.setForceGroup(system.getForce(custom[0]).getForceGroup())
    system.removeForce(custom[0])
    system.addForce(gb)


def build_system(topology, *, solvent: str = "obc2", nonbonded_cutoff_A: float | None = 10.0,
                 constraints=None, native_obc: bool = True):
    """An OpenMM System for a completed protein topology: AMBER14 ff14SB + implicit solvent.

    Parameters
    ----------
    topology
        openmm.app.Topology with all hydrogens (e.g. :attr:`Completed.topology`).
    solvent
        "obc2" (GB-OBC II), "gbn2" (GB-neck2) or "vacuum" (no solvent term, dielectric 1).
    nonbonded_cutoff_A
        Non-periodic cutoff of the nonbonded and GB terms in Å (reaction field outside); None: no
        cutoff (exact, slow on large models).
    constraints
        None (default, all bonds flexible: right for minimisation), "hbonds", "allbonds", "hangles".
    native_obc
        For "obc2", use the native GBSAOBCForce instead of OpenMM's CustomGBForce (same energy).

    Returns
    -------
    openmm.System
        All force-field forces in force group 0.
    """
    app = _openmm().app
    if solvent not in SOLVENT_FILES:
        raise InputError(f"solvent must be one of {sorted(SOLVENT_FILES)}, got {solvent!r}")
    if nonbonded_cutoff_A is None:
        kwargs = {"nonbondedMethod": app.NoCutoff}
        cutoff_nm = None
    else:
        if not float(nonbonded_cutoff_A) > 0:
            raise InputError(f"nonbonded_cutoff_A must be > 0 or None, got {nonbonded_cutoff_A!r}")
        cutoff_nm = float(nonbonded_cutoff_A) * NM_PER_A
        kwargs = {"nonbondedMethod": app.CutoffNonPeriodic, "nonbondedCutoff": cutoff_nm * _openmm().unit.nanometer}
    try:
        system = _forcefield(solvent).createSystem(topology, constraints=_constraints(constraints),
                                                   rigidWater=False, **kwargs)
    except ValueError as exc:  # "No template found for residue 12 (XYZ). ..."
        raise InputError(f"the AMBER14 force field cannot build the model: {str(exc).splitlines()[0]}") from None
    if solvent == "obc2" and native_obc:
        _native_obc2(system, topology, cutoff_nm)
    for force in system.getForces():
        force.setForceGroup(0)
    return system


def select_platform(preferred: str | None = None):
    """The fastest available OpenMM platform: CUDA > OpenCL > CPU (or ``preferred`` by name).

    CPU threads come from ``OPENMM_CPU_THREADS`` when set, else 2.
    """
    mm = _openmm()
    available = [mm.Platform.getPlatform(i).getName() for i in range(mm.Platform.getNumPlatforms())]
    if preferred is not None:
        if preferred not in available:
            raise InputError(f"OpenMM platform {preferred!r} is not available (have: {', '.join(available)})")
        name = preferred
    else:
        name = next((p for p in PLATFORM_ORDER if p in available), "Reference")
    platform = mm.Platform.getPlatformByName(name)
    if name == "CPU":
        threads = os.environ.get("OPENMM_CPU_THREADS", str(DEFAULT_CPU_THREADS))
        platform.setPropertyDefaultValue("Threads", threads)
        log.info("OpenMM platform CPU with %s threads", threads)
    else:
        log.info("OpenMM platform %s", name)
    return platform


# -- position restraints -----------------------------------------------------------------------

def add_position_restraints(system, positions_A: np.ndarray, atom_indices: np.ndarray, k_kj_per_mol_A2: float,
                            force_group: int = RESTRAINT_FORCE_GROUP, k_parameter: str = "restraint_k"):
    """Add harmonic position restraints E = k ((x-x0)^2 + (y-y0)^2 + (z-z0)^2) to ``system``.

    Parameters
    ----------
    system
        openmm.System, modified in place.
    positions_A
        (T, 3) Å, targets for every particle (only ``atom_indices`` rows are used) or (M, 3) Å,
        one per restrained atom.
    atom_indices
        (M,) int particle indices to restrain.
    k_kj_per_mol_A2
        Force constant in kJ/mol/Å^2 (no factor 1/2); a global context parameter ``k_parameter``
        (stored in kJ/mol/nm^2), changeable with ``context.setParameter``.
    force_group
        Force group of the restraint (to read its energy separately).

    Returns
    -------
    openmm.CustomExternalForce
    """
    mm = _openmm()
    idx, targets = _targets(positions_A, atom_indices, system.getNumParticles())
    force = mm.CustomExternalForce(f"{k_parameter}*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    force.addGlobalParameter(k_parameter, float(k_kj_per_mol_A2) / NM_PER_A**2)
    for name in ("x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for i, t in zip(idx.tolist(), (targets * NM_PER_A).tolist()):
        force.addParticle(i, t)
    force.setForceGroup(int(force_group))
    system.addForce(force)
    return force


def update_restraint_targets(context, force, positions_A: np.ndarray, atom_indices: np.ndarray) -> None:
    """Move the targets of the restrained ``atom_indices`` (same order as when added) to ``positions_A``.

    ``positions_A`` is (T, 3) Å for all particles or (M, 3) Å, one row per index.
    """
    idx, targets = _targets(positions_A, atom_indices, context.getSystem().getNumParticles())
    if len(idx) != force.getNumParticles():
        raise InputError(f"{len(idx)} restraint targets given for a force restraining {force.getNumParticles()} atoms")
    for k, (i, t) in enumerate(zip(idx.tolist(), (targets * NM_PER_A).tolist())):
        force.setParticleParameters(k, i, t)
    force.updateParametersInContext(context)


def _targets(positions_A, atom_indices, n_particles: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.asarray(atom_indices, dtype=np.int64).ravel()
    pos = np.asarray(positions_A, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise InputError(f"restraint positions must be (N, 3) in Å, got shape {pos.shape}")
    if len(idx) and (idx.min() < 0 or idx.max() >= n_particles):
        raise InputError(f"restraint atom indices must lie in [0, {n_particles}), got {idx.min()}..{idx.max()}")
    if len(pos) == n_particles:
        return idx, pos[idx]
    if len(pos) == len(idx):
        return idx, pos
    raise InputError(f"restraint positions have {len(pos)} rows; need {n_particles} (all atoms) or {len(idx)}")


# -- relaxation --------------------------------------------------------------------------------

def _energy_kj(context, groups) -> float:
    unit = _openmm().unit
    return float(context.getState(getEnergy=True, groups=groups).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole))


def relax(model: AtomModel, *, restraint_k_kj_per_mol_A2: float = DEFAULT_RESTRAINT_K_KJ_PER_MOL_A2,
          solvent: str = "obc2", nonbonded_cutoff_A: float | None = 10.0,
          max_iterations: int = DEFAULT_MAX_ITERATIONS,
          tolerance_kj_per_mol_nm: float = DEFAULT_TOLERANCE_KJ_PER_MOL_NM, keep_hydrogens: bool = False,
          ph: float = 7.0, platform=None, seed: int = 0,
          min_distances: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[AtomModel, dict]:
    """Restrained energy minimisation of the protein in AMBER14 + implicit solvent (clash removal).

    Heavy atoms of the input are restrained to their input positions with E = k d^2; added atoms
    and hydrogens are free. The default k = 10 kJ/mol/Å^2 was measured on real chains of the shared
    data (crambin, ubiquitin, 4aqa_A, 2isk_A, 1avx_A; as deposited and with one side chain pushed
    1.6 Å into a neighbour), obc2: heavy atoms move 0.12-0.23 Å rms (max 0.4-1.5 Å, the pushed
    atoms), every heavy-atom pair between residues ends > 2.2 Å apart and serious clashes drop
    from 4-83 per chain to 0-2. k = 5 moves atoms 0.14-0.26 Å for the same result; k = 50 left a
    heavy-atom pair < 2.2 Å in ubiquitin; k = 10 sits between, close to the AlphaFold relax value
    (10 kcal/mol/Å^2 with E = k d^2 / 2, i.e. 21 kJ/mol/Å^2 here). The multi-threaded CPU platform
    is not bit-reproducible: repeated runs differ by a few hundredths of an Å.

    Parameters
    ----------
    model
        Input model (N atoms, Å). Only amino-acid residues are relaxed.
    restraint_k_kj_per_mol_A2
        Heavy-atom restraint constant (kJ/mol/Å^2); 0 minimises without restraints.
    solvent, nonbonded_cutoff_A
        See :func:`build_system`.
    max_iterations
        Minimiser iterations (0: until converged).
    tolerance_kj_per_mol_nm
        Convergence: root-mean-square force (kJ/mol/nm).
    keep_hydrogens
        Also return the force-field hydrogens (PDB names), appended to their residues.
    ph
        pH for protonation states (:func:`complete_model`).
    platform
        openmm.Platform or its name; default :func:`select_platform`.
    seed
        Seed for pdbfixer's placement of added atoms.
    min_distances
        Optional (i, j, d_min_A): (P,) input atom indices (protein heavy atoms) and (P,) Å; each
        pair is pushed apart by E = k (d_min - r)^2 while r < d_min, with
        k = :data:`SEPARATION_K_KJ_PER_MOL_A2` (see :func:`remove_clashes`). Or a DataFrame with
        columns i, j, d_min_A and, optionally, name_i, name_j, d_min_named_A: atoms of those
        names in the residues of i and j (e.g. hydrogens, which the input lacks) take the pair's
        place, at d_min_named_A, where the force field has them. Pairs with an atom the force
        field does not model (ligands, replaced residues) are ignored, with a warning.

    Returns
    -------
    relaxed
        The input's heavy atoms in input order with their names, numbering, B-factors and
        occupancies, moved; atoms the force field did not take (ligands, waters, ions, atoms of
        replaced modified residues) unchanged; input hydrogens dropped. Heavy atoms pdbfixer added
        (missing side-chain atoms, OXT) and, with ``keep_hydrogens``, hydrogens follow the input
        atoms of their residue, carrying its chain, number, name and mean B-factor, occupancy 1.
    report
        energy_before_kj_per_mol, energy_after_kj_per_mol (force field only, restraints excluded),
        restraint_energy_after_kj_per_mol, heavy_atom_rmsd_A (input heavy atoms, relaxed vs input),
        max_heavy_atom_shift_A, n_heavy_added, n_atoms_relaxed (with H), n_iterations, solvent,
        restraint_k_kj_per_mol_A2, n_separation_pairs, platform, wall_time_s.
    """
    mm = _openmm()
    unit = mm.unit
    t0 = time.perf_counter()
    k = float(restraint_k_kj_per_mol_A2)
    if not k >= 0:
        raise InputError(f"restraint_k_kj_per_mol_A2 must be >= 0, got {restraint_k_kj_per_mol_A2!r}")
    if int(max_iterations) < 0:
        raise InputError(f"max_iterations must be >= 0, got {max_iterations!r}")
    if isinstance(platform, str) or platform is None:
        platform = select_platform(platform)
    comp = complete_model(model, ph=ph, seed=seed, platform=platform)
    try:
        system = build_system(comp.topology, solvent=solvent, nonbonded_cutoff_A=nonbonded_cutoff_A)
    except InputError as exc:  # name the input residue instead of OpenMM's internal residue index
        found = re.search(r"residue (\d+) \((\w+)\)", exc.problem)
        if found is None:
            raise
        atom = next(list(comp.topology.residues())[int(found.group(1))].atoms()).index
        label = model.residue_labels()[int(comp.residue_row[atom])]
        raise InputError(f"residue {label}: {exc.problem}") from None
    kept = np.flatnonzero(comp.input_index >= 0)
    top_idx = comp.input_index[kept]
    if k > 0:
        add_position_restraints(system, comp.positions_A, top_idx, k, force_group=RESTRAINT_FORCE_GROUP)
    n_sep = 0
    if min_distances is not None:
        n_sep = _add_separations(system, comp, model, min_distances)
    integrator = mm.VerletIntegrator(0.001)
    context = mm.Context(system, integrator, platform)
    context.setPositions(comp.positions_A * NM_PER_A)
    ff_groups = {0}
    e_before = _energy_kj(context, ff_groups)
    counter = _IterationCounter(mm)
    mm.LocalEnergyMinimizer.minimize(context, float(tolerance_kj_per_mol_nm), int(max_iterations), counter)
    state = context.getState(getPositions=True, getEnergy=True)
    e_after = _energy_kj(context, ff_groups)
    e_restraint = _energy_kj(context, {RESTRAINT_FORCE_GROUP}) if k > 0 else 0.0
    pos_A = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) / NM_PER_A
    if not np.isfinite(pos_A).all() or not np.isfinite(e_after):
        raise InputError("energy minimisation diverged (non-finite positions or energy)")
    relaxed = _output_model(model, comp, pos_A, keep_hydrogens)
    moved = pos_A[top_idx] - model.coords[kept]
    d = np.linalg.norm(moved, axis=1)
    report = {
        "energy_before_kj_per_mol": e_before,
        "energy_after_kj_per_mol": e_after,
        "restraint_energy_after_kj_per_mol": e_restraint,
        "heavy_atom_rmsd_A": float(np.sqrt(np.mean(d**2))) if len(d) else 0.0,
        "max_heavy_atom_shift_A": float(d.max()) if len(d) else 0.0,
        "n_heavy_added": len(comp.added),
        "heavy_added": [f"{lab}:{name}" for _, lab, name in comp.added],
        "n_atoms_relaxed": int(comp.topology.getNumAtoms()),
        "n_iterations": counter.n,
        "solvent": solvent,
        "restraint_k_kj_per_mol_A2": k,
        "n_separation_pairs": n_sep,
        "platform": platform.getName(),
        "wall_time_s": time.perf_counter() - t0,
    }
    log.info("relax (%s, %s): E %.1f -> %.1f kJ/mol, heavy-atom RMSD %.3f Å, %d iterations, %.1f s",
             solvent, report["platform"], e_before, e_after, report["heavy_atom_rmsd_A"], counter.n,
             report["wall_time_s"])
    return relaxed, report


def _add_separations(system, comp: Completed, model: AtomModel, spec) -> int:
    """Add the flat-bottom pair repulsions of :func:`relax` to ``system``; returns the pairs added."""
    mm = _openmm()
    n_input = len(model)
    if isinstance(spec, pd.DataFrame):
        table = spec
    else:
        i, j, d = (np.asarray(v).ravel() for v in spec)
        if not len(i) == len(j) == len(d):
            raise InputError(f"min_distances: {len(i)}, {len(j)} and {len(d)} entries; "
                             "need one i, j and d_min per pair")
        table = pd.DataFrame({"i": i, "j": j, "d_min_A": d})
    i = table["i"].to_numpy(np.int64)
    j = table["j"].to_numpy(np.int64)
    d = table["d_min_A"].to_numpy(np.float64)
    if len(i) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n_input):
        raise InputError(f"min_distances: atom indices must lie in [0, {n_input})")
    if not np.isfinite(d).all() or (d <= 0).any():
        raise InputError("min_distances: every d_min must be a positive distance in Å")
    ti, tj = comp.input_index[i].copy(), comp.input_index[j].copy()
    if {"name_i", "name_j", "d_min_named_A"} <= set(table.columns):
        # named atoms of the parents' residues (hydrogens the force field carries): use them when present
        rows = residue_rows(model)
        where = {(int(comp.residue_row[t]), a.name): t for t, a in enumerate(comp.topology.atoms())}
        ni = np.array([where.get((int(rows[a]), str(n)), -1) for a, n in zip(i, table["name_i"])], dtype=np.int64)
        nj = np.array([where.get((int(rows[b]), str(n)), -1) for b, n in zip(j, table["name_j"])], dtype=np.int64)
        named = (ni >= 0) & (nj >= 0)
        ti[named], tj[named] = ni[named], nj[named]
        d = np.where(named, table["d_min_named_A"].to_numpy(np.float64), d)
    modelled = (ti >= 0) & (tj >= 0) & (ti != tj)
    if not modelled.all():
        log.warning("min_distances: %d pair(s) involve atoms the force field does not model (hydrogens, "
                    "ligands, replaced residues) and are ignored", int((~modelled).sum()))
    ti, tj, d = ti[modelled], tj[modelled], d[modelled]
    force = mm.CustomBondForce("k_sep*step(d_min-r)*(d_min-r)^2")
    force.addGlobalParameter("k_sep", SEPARATION_K_KJ_PER_MOL_A2 / NM_PER_A**2)
    force.addPerBondParameter("d_min")
    for a, b, dm in zip(ti.tolist(), tj.tolist(), (d * NM_PER_A).tolist()):
        force.addBond(a, b, [dm])
    force.setForceGroup(SEPARATION_FORCE_GROUP)
    system.addForce(force)
    return len(ti)


def clash_heavy_pairs(model: AtomModel, overlap_A: float = CLASH_CHECK_OVERLAP_A,
                      hydrogens: AtomModel | None = None) -> pd.DataFrame:
    """The serious clashes of ``model`` (riding hydrogens, as MolProbity) mapped to heavy atoms.

    Returns one row per clash: i, j (indices into ``model.without_hydrogens()``; a hydrogen is
    replaced by its parent, the nearest heavy atom), name_i, name_j, d_A, overlap_A, label_1,
    label_2. With ``hydrogens`` (the same model carrying the force field's hydrogens, as
    :func:`relax` returns with ``keep_hydrogens``), a clashing riding hydrogen is named after the
    force-field hydrogen of its residue nearest to it (within 0.6 Å; names of prochiral pairs such
    as HA2/HA3 need not agree between conventions), name "" when there is none, and d_A is the
    distance of the two named atoms there; without, names are the riding hydrogens' own.
    """
    from scipy.spatial import cKDTree

    from emforge.geometry.clashes import clash_pairs
    from emforge.geometry.hydrogens import add_riding_hydrogens

    with_h = add_riding_hydrogens(model.without_hydrogens())
    pairs = clash_pairs(with_h, overlap_A=overlap_A)
    heavy = np.flatnonzero(~with_h.is_hydrogen())
    rank = np.full(len(with_h), -1)
    rank[heavy] = np.arange(len(heavy))
    _, near = cKDTree(with_h.coords[heavy]).query(with_h.coords)
    parent = np.where(rank >= 0, rank, near)
    a, b = pairs["atom_1"].to_numpy(int), pairs["atom_2"].to_numpy(int)
    names = with_h.atom_name.astype(object).copy()
    xyz = with_h.coords.copy()
    if hydrogens is not None and len(pairs):
        ff_h = np.flatnonzero(hydrogens.is_hydrogen())
        is_h = with_h.is_hydrogen()
        if len(ff_h):
            dist, k = cKDTree(hydrogens.coords[ff_h]).query(with_h.coords[is_h])
            hit = ff_h[k]
            same = ((hydrogens.chain_id[hit] == with_h.chain_id[is_h])
                    & (hydrogens.res_seq[hit] == with_h.res_seq[is_h])
                    & (hydrogens.ins_code[hit] == with_h.ins_code[is_h]) & (dist < 0.6))
            names[is_h] = np.where(same, hydrogens.atom_name[hit], "")
            xyz[np.flatnonzero(is_h)[same]] = hydrogens.coords[hit[same]]
        else:
            names[with_h.is_hydrogen()] = ""
    return pd.DataFrame({"i": parent[a], "j": parent[b], "name_i": names[a], "name_j": names[b],
                         "d_A": np.linalg.norm(xyz[a] - xyz[b], axis=1),
                         "overlap_A": pairs["overlap_A"].to_numpy(float),
                         "label_1": pairs["label_1"], "label_2": pairs["label_2"]})


def remove_clashes(model: AtomModel, *, restraint_k_kj_per_mol_A2: float = DEFAULT_RESTRAINT_K_KJ_PER_MOL_A2,
                   overlap_A: float = CLASH_CHECK_OVERLAP_A, max_rounds: int = CLASH_MAX_ROUNDS,
                   seed: int = 0, **relax_kwargs) -> tuple[AtomModel, list[dict]]:
    """:func:`relax`, then push the contacts MolProbity would still call clashes apart.

    The force field accepts some contacts that all-atom contact analysis (Probe radii, riding
    hydrogens) calls clashes: e.g. an aromatic CE1 0.43 Å into a glycine HA2 stays after
    minimisation with restraints of k = 10, 2 or 0.5 kJ/mol/Å^2. So after the first minimisation
    each remaining clash (overlap >= ``overlap_A``) becomes a flat-bottom repulsion between the two
    atoms involved, asking for their present distance (riding hydrogens) plus the overlap beyond
    ``overlap_A`` - :data:`CLASH_MARGIN_A`; a hydrogen is the force field's hydrogen of that name in
    its residue, or its parent heavy atom when the force field has no such hydrogen (e.g. another
    histidine tautomer). Pushing parents alone cannot separate, say, the HA of residue i from a HA2
    of residue i+1 (their C-alpha distance is fixed by the peptide). The model is minimised again,
    restrained to its positions; up to ``max_rounds`` such rounds, keeping earlier pairs.

    Returns the model (heavy atoms, as :func:`relax`) and one :func:`relax` report per round, each
    with ``serious_clashes`` (count after the round) and ``clashes`` (labels and overlaps).
    """
    relax_kwargs = {**relax_kwargs, "keep_hydrogens": True}
    out, report = relax(model, restraint_k_kj_per_mol_A2=restraint_k_kj_per_mol_A2, seed=seed, **relax_kwargs)
    rounds = [report]
    wanted: dict[tuple, tuple[float, float]] = {}  # (i, name_i, j, name_j) -> (d_min parents, d_min named atoms)
    for r in range(int(max_rounds) + 1):
        heavy = out.without_hydrogens()
        clashes = clash_heavy_pairs(heavy, overlap_A, hydrogens=out)
        report["serious_clashes"] = len(clashes)
        report["clashes"] = [f"{a} - {b} {ov:.2f} Å" for a, b, ov in
                             zip(clashes["label_1"], clashes["label_2"], clashes["overlap_A"])]
        if not len(clashes) or r == max_rounds:
            break
        ii, jj = clashes["i"].to_numpy(int), clashes["j"].to_numpy(int)
        d_parent = np.linalg.norm(heavy.coords[ii] - heavy.coords[jj], axis=1)
        push = clashes["overlap_A"].to_numpy(float) - (overlap_A - CLASH_MARGIN_A)
        for a, na, b, nb, dp, dn, p in zip(ii.tolist(), clashes["name_i"], jj.tolist(), clashes["name_j"],
                                          d_parent.tolist(), clashes["d_A"].tolist(), push.tolist()):
            if a == b:
                continue
            key = (a, str(na), b, str(nb)) if a < b else (b, str(nb), a, str(na))
            old = wanted.get(key, (0.0, 0.0))
            wanted[key] = (max(old[0], dp + p), max(old[1], dn + p))
        log.info("%d clashes after minimisation round %d: pushing %d atom pairs apart", len(clashes), r + 1,
                 len(wanted))
        keys = list(wanted)
        table = pd.DataFrame({"i": [k[0] for k in keys], "name_i": [k[1] for k in keys], "j": [k[2] for k in keys],
                              "name_j": [k[3] for k in keys], "d_min_A": [wanted[k][0] for k in keys],
                              "d_min_named_A": [wanted[k][1] for k in keys]})
        out, report = relax(heavy, restraint_k_kj_per_mol_A2=restraint_k_kj_per_mol_A2, seed=seed,
                            min_distances=table, **relax_kwargs)
        rounds.append(report)
    return out.without_hydrogens(), rounds


def _IterationCounter(mm):
    """A minimisation reporter counting L-BFGS iterations (OpenMM >= 8.1) in its attribute ``n``."""

    class Counter(mm.MinimizationReporter):
        n = 0

        def report(self, iteration, x, grad, args):
            self.n = int(iteration) + 1
            return False

    return Counter()


def _output_model(model: AtomModel, comp: Completed, pos_A: np.ndarray, keep_hydrogens: bool) -> AtomModel:
    """Input heavy atoms (moved where mapped) followed, per residue, by the atoms pdbfixer added."""
    heavy = np.flatnonzero(~model.is_hydrogen())
    coords = model.coords[heavy].copy()
    ti = comp.input_index[heavy]
    coords[ti >= 0] = pos_A[ti[ti >= 0]]
    extra = comp.added_index
    if keep_hydrogens:
        is_h = np.array([a.element is not None and a.element.symbol == "H" for a in comp.topology.atoms()])
        extra = np.sort(np.concatenate([extra, np.flatnonzero(is_h)]))
    rows_all = residue_rows(model)
    rows = np.concatenate([rows_all[heavy], comp.residue_row[extra]])
    order = np.lexsort((np.r_[np.zeros(len(heavy)), np.ones(len(extra))], rows))  # stable within groups
    starts = model.residue_starts()
    first = starts[comp.residue_row[extra]]  # first input atom of the residue, for residue fields
    b_mean = np.bincount(rows_all, weights=model.b_factor) / np.bincount(rows_all)
    atoms = list(comp.topology.atoms())
    new_names = np.array([atoms[i].name for i in extra], dtype=str) if len(extra) else np.zeros(0, "U1")
    new_elem = np.array([atoms[i].element.symbol for i in extra], dtype=str) if len(extra) else np.zeros(0, "U1")

    def cat(a, b):
        return np.concatenate([a, b])[order]

    return AtomModel(
        coords=np.concatenate([coords, pos_A[extra]])[order],
        element=cat(model.element[heavy], new_elem),
        atom_name=cat(model.atom_name[heavy], new_names),
        res_name=cat(model.res_name[heavy], model.res_name[first]),
        res_seq=cat(model.res_seq[heavy], model.res_seq[first]),
        ins_code=cat(model.ins_code[heavy], model.ins_code[first]),
        chain_id=cat(model.chain_id[heavy], model.chain_id[first]),
        b_factor=cat(model.b_factor[heavy], b_mean[comp.residue_row[extra]]),
        occupancy=cat(model.occupancy[heavy], np.ones(len(extra))),
        is_het=cat(model.is_het[heavy], model.is_het[first]),
        residue_index=cat(model.residue_index[heavy], model.residue_index[first]),
    )


__all__ = ["Completed", "complete_model", "build_system", "select_platform", "add_position_restraints",
           "update_restraint_targets", "relax", "clash_heavy_pairs", "remove_clashes"]
