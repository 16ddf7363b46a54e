"""TEMPy-ReFF positional refinement (paper 001): Gaussian-mixture targets pull atoms in OpenMM.

Each iteration runs one E+M step of the mixture (:mod:`emforge.refine.gmm`) at the current
positions, which gives every heavy atom a target x' and a width sigma, and then moves the system
under AMBER14 (ff14SB) + GBn2 implicit solvent plus the biasing term of Eq. 10 per heavy atom::

    E_gmm = k_gmm (1 - exp(-|x - x'|^2 / (2 B^3)))

where B is the paper's per-atom width (its Eq. 1 Gaussian is exp(-r^2 / B^2), so B = sqrt(2) sigma).
The expression is not dimensionally homogeneous; emforge evaluates it the way an OpenMM
CustomExternalForce does: |x - x'| in nm, 2 B^3 the number from B in Å, k_gmm in kJ/mol
(paper: 1e5). Read in Å, that well has a width sqrt(100 B^3) of 12-25 Å: over the sub-Å target
shifts of one iteration it acts as a spring of about k_gmm / (2 B^3) kJ/mol/nm^2 per atom. (Read
with |x - x'| in Å instead, k_gmm = 1e5 overrides the force field: on EMD-5925 the CCC of the
deposited chain rose 0.72 -> 0.93 while Ramachandran outliers went 1 % -> 16 % and clashes
40 -> 1049; read in nm, k_gmm = 1e5 still took Ramachandran outliers to 8 % and clashes to 92,
while k_gmm = 1e4 raised the CCC to 0.75 with 1 % outliers and 4 clashes: emforge's default.)

Before any positional step the widths are refined for :data:`~emforge.refine.gmm.BFACTOR_ITERATIONS`
iterations with positions fixed. After each iteration the model-map CCC is measured with one global
width for the resolution (sigma = 0.225 R, as the paper's "global B-factor equivalent to the
resolution") over the voxels within the resolution-dependent mask radius of the starting model;
the run stops when it has not improved (by more than :data:`CCC_MIN_GAIN`) for ``patience``
iterations, and the best-CCC model is kept. The force field's nonbonded and GBn2 terms are cut at
:data:`NONBONDED_CUTOFF_A` (12 Å) by default.

Protocols (:data:`PROTOCOLS`):

``paper``
    Langevin dynamics, 0.1 fs steps, 2000 steps per iteration, no constraints, 300 K, stop after 5
    iterations without CCC gain, at most 300 iterations (paper 001 Methods).
``fast``
    emforge's: per iteration a short L-BFGS minimisation of the same energy (force field + Eq. 10)
    instead of 0.2 ps of dynamics, stop after 3 iterations without gain, at most 60. See
    benchmarks/refine_gmm.py for the measured speed and CCC against ``paper``.

Units: Å and kJ/mol in the API; OpenMM's nm at the boundary.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.masks import model_mask
from emforge.models import AtomModel
from emforge.refine import gmm
from emforge.scores import default_mask_radius_A, pearson_cc
from emforge.simulate import GMM_SIGMA_PER_RESOLUTION, simulate_map

log = logging.getLogger(__name__)

GMM_FORCE_GROUP = 3
#: kJ/mol per heavy atom; paper 001 used 1e5 "for all refinements", which distorts geometry here (module doc)
DEFAULT_K_GMM_KJ_PER_MOL = 1e4
TEMPERATURE_K = 300.0
FRICTION_PER_PS = 1.0
#: Non-periodic cutoff (Å) of the nonbonded and GBn2 terms (reaction field beyond). GBn2 exists only
#: as a CustomGBForce, whose exact O(N^2) evaluation dominates: on the 385-residue EMD-2513 chain
#: (5958 atoms, 2 cores) 30 L-BFGS iterations took 365 s without a cutoff, 134 s at 20 Å, 34 s at 12 Å.
NONBONDED_CUTOFF_A = 12.0
#: An iteration counts as progress (resets the patience) only when it raises the best CCC by more
#: than this; smaller rises still update the kept model. Without it EMD-2513 ran 28 fast iterations
#: whose last 12 added 3e-5 to the CCC.
CCC_MIN_GAIN = 1e-4


@dataclass(frozen=True)
class Protocol:
    """How the system moves in each iteration.

    mode "md": ``steps`` Langevin steps of ``timestep_fs`` with ``constraints``; mode "minimise":
    L-BFGS for at most ``steps`` iterations.
    """

    name: str
    mode: str
    steps: int
    timestep_fs: float = 0.0
    constraints: str | None = None
    patience: int = 5
    max_iterations: int = 300


PROTOCOLS = {
    "paper": Protocol("paper", "md", 2000, timestep_fs=0.1, constraints=None, patience=5, max_iterations=300),
    "fast": Protocol("fast", "minimise", 100, patience=3, max_iterations=60),
}


@dataclass
class GMMRefineResult:
    """``model``: refined protein heavy atoms with B = 8 pi^2 sigma^2 (Å^2) of the mixture;
    ``trajectory``: one row per iteration; ``summary``: JSON-ready numbers."""

    model: AtomModel
    trajectory: pd.DataFrame
    summary: dict


def paper_width_term(sigma_A: np.ndarray) -> np.ndarray:
    """2 B^3 of Eq. 10 with the paper's B = sqrt(2) sigma, the number from B in Å (used with nm^2)."""
    return 2.0 * (math.sqrt(2.0) * np.asarray(sigma_A, dtype=np.float64)) ** 3


def refine_gmm(model: AtomModel, density: DensityMap, resolution_A: float, *, protocol: str | Protocol = "fast",
               k_gmm_kj_per_mol: float = DEFAULT_K_GMM_KJ_PER_MOL,
               n_bfactor_iterations: int = gmm.BFACTOR_ITERATIONS, sigma_max_A: float = gmm.SIGMA_MAX_A,
               max_iterations: int | None = None, width_about: str = gmm.WIDTH_ABOUT,
               nonbonded_cutoff_A: float | None = NONBONDED_CUTOFF_A, seed: int = 0, platform=None,
               progress=None) -> GMMRefineResult:
    """Refine ``model`` into ``density`` with TEMPy-ReFF (B-factors first, then positions).

    Parameters
    ----------
    model
        Protein model (Å); hydrogens, waters and ligands are dropped, missing side-chain atoms and
        hydrogens added by pdbfixer for the force field.
    density
        Experimental map.
    resolution_A
        Map resolution (Å): starting widths and the CCC's global width.
    protocol
        "fast", "paper" or a :class:`Protocol`.
    k_gmm_kj_per_mol
        Depth of the Eq. 10 well per heavy atom (kJ/mol).
    n_bfactor_iterations
        Width-only iterations before positional refinement.
    sigma_max_A
        Width cap (Å).
    max_iterations
        Overrides the protocol's iteration cap.
    width_about
        Eq. 7's spread about the atom's "position" (paper) or its new "target" (:func:`gmm.em_step`).
    nonbonded_cutoff_A
        Cutoff of the force field's nonbonded and GBn2 terms (Å); None: exact (slow beyond ~100 residues).
    seed
        Velocities and Langevin noise ("md"), pdbfixer's placement of added atoms.
    platform
        OpenMM platform or its name (default CUDA > OpenCL > CPU, logged).
    progress
        Called as ``progress(iteration, max_iterations, ccc)`` after each iteration.
    """
    from emforge import md

    mm = md._openmm()
    unit = mm.unit
    proto = PROTOCOLS[protocol] if isinstance(protocol, str) and protocol in PROTOCOLS else protocol
    if not isinstance(proto, Protocol):
        raise InputError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    gmm._check_args(resolution_A, n_bfactor_iterations, gmm.SIGMA_MIN_A, sigma_max_A)
    if not k_gmm_kj_per_mol > 0:
        raise InputError(f"k_gmm must be > 0 kJ/mol, got {k_gmm_kj_per_mol!r}")
    n_max = proto.max_iterations if max_iterations is None else int(max_iterations)
    t0 = time.perf_counter()
    sp = prepare_protein(model, seed=seed, platform=platform)
    prot, comp, heavy_top, heavy_model = sp.prot, sp.comp, sp.heavy_top, sp.heavy_model
    b_in = np.nan_to_num(prot.b_factor, nan=0.0)
    start_sigma = np.sqrt((GMM_SIGMA_PER_RESOLUTION * float(resolution_A)) ** 2 + gmm.b_to_sigma(b_in) ** 2)
    mix = gmm.Mixture(comp.positions_A[heavy_top].copy(),
                      sp.topology_widths(start_sigma, GMM_SIGMA_PER_RESOLUTION * float(resolution_A)), sp.z,
                      comp.residue_row[heavy_top].astype(np.int64))
    t_b = time.perf_counter()
    b_history = gmm.refine_widths(mix, density, n_bfactor_iterations, sigma_max_A=sigma_max_A, width_about=width_about)
    t_b = time.perf_counter() - t_b

    system = md.build_system(comp.topology, solvent="gbn2", constraints=proto.constraints,
                             nonbonded_cutoff_A=nonbonded_cutoff_A)
    force = mm.CustomExternalForce("k_gmm*(1-exp(-((x-x0)^2+(y-y0)^2+(z-z0)^2)/w))")
    force.addGlobalParameter("k_gmm", float(k_gmm_kj_per_mol))
    for name in ("x0", "y0", "z0", "w"):
        force.addPerParticleParameter(name)
    w_nm2 = paper_width_term(mix.sigma_A)
    for k, i in enumerate(heavy_top.tolist()):
        force.addParticle(i, [*(mix.coords_A[k] * md.NM_PER_A).tolist(), float(w_nm2[k])])
    force.setForceGroup(GMM_FORCE_GROUP)
    system.addForce(force)
    if proto.mode == "md":
        integrator = mm.LangevinMiddleIntegrator(TEMPERATURE_K * unit.kelvin, FRICTION_PER_PS / unit.picosecond,
                                                 proto.timestep_fs * 1e-3 * unit.picosecond)
        integrator.setRandomNumberSeed(int(seed) % md.OPENMM_SEED_MODULUS)
    else:
        integrator = mm.VerletIntegrator(0.001)
    context = mm.Context(system, integrator, sp.platform)
    context.setPositions(comp.positions_A * md.NM_PER_A)
    if proto.mode == "md":
        context.setVelocitiesToTemperature(TEMPERATURE_K * unit.kelvin, int(seed) % md.OPENMM_SEED_MODULUS)

    mask = model_mask(heavy_model, density, default_mask_radius_A(float(resolution_A)))
    global_sigma = GMM_SIGMA_PER_RESOLUTION * float(resolution_A)

    def ccc(xyz_A: np.ndarray) -> float:
        sim = simulate_map(heavy_model.with_coords(xyz_A), density, resolution_A, "gmm", sigma_A=global_sigma)
        return pearson_cc(sim.data, density.data, mask)

    pos = comp.positions_A.copy()
    ccc_start = ccc(pos[heavy_top])
    best = (ccc_start, pos.copy(), mix.sigma_A.copy(), 0)
    rows = []
    stall = 0
    for it in range(1, n_max + 1):
        t_it = time.perf_counter()
        mix.coords_A = pos[heavy_top]
        step = gmm.em_step(mix, density, sigma_max_A=sigma_max_A, width_about=width_about)
        mix.sigma_A, mix.background, mix.scale = step.sigma_A, step.background, step.scale
        w_nm2 = paper_width_term(mix.sigma_A)
        for k, i in enumerate(heavy_top.tolist()):
            force.setParticleParameters(k, i, [*(step.targets_A[k] * md.NM_PER_A).tolist(), float(w_nm2[k])])
        force.updateParametersInContext(context)
        if proto.mode == "md":
            integrator.step(proto.steps)
        else:
            mm.LocalEnergyMinimizer.minimize(context, 10.0, proto.steps)
        state = context.getState(getPositions=True)
        pos = np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)) / md.NM_PER_A
        if not np.isfinite(pos).all():
            raise InputError("refinement diverged (non-finite positions); lower k_gmm")
        c = ccc(pos[heavy_top])
        shift = float(np.sqrt(np.mean(np.sum((pos[heavy_top] - best[1][heavy_top]) ** 2, axis=1))))
        rows.append({"iteration": it, "ccc": c, "gmm_cc": step.cc, "background": step.background,
                     "mean_sigma_A": float(mix.sigma_A.mean()),
                     "mean_target_shift_A": float(np.mean(np.linalg.norm(step.targets_A - mix.coords_A, axis=1))),
                     "rmsd_to_best_A": shift, "seconds": time.perf_counter() - t_it})
        gained = c > best[0] + CCC_MIN_GAIN
        if c > best[0]:
            best = (c, pos.copy(), mix.sigma_A.copy(), it)
        stall = 0 if gained else stall + 1
        if progress is not None:
            progress(it, n_max, c)
        if stall >= proto.patience:
            break
    ccc_best, pos_best, sigma_best, it_best = best
    out = md._output_model(prot, comp, pos_best, keep_hydrogens=False)
    b_top = gmm.sigma_to_b(sigma_best)
    _, nearest = cKDTree(pos_best[heavy_top]).query(out.coords)
    out = out.with_b_factors(b_top[nearest])
    trajectory = pd.DataFrame(rows, columns=["iteration", "ccc", "gmm_cc", "background", "mean_sigma_A",
                                             "mean_target_shift_A", "rmsd_to_best_A", "seconds"])
    moved = pos_best[heavy_top] - comp.positions_A[heavy_top]
    summary = {
        "protocol": proto.name, "mode": proto.mode, "steps_per_iteration": proto.steps,
        "timestep_fs": proto.timestep_fs, "k_gmm_kj_per_mol": float(k_gmm_kj_per_mol),
        "nonbonded_cutoff_A": nonbonded_cutoff_A,
        "ccc_start": ccc_start, "ccc_final": ccc_best, "best_iteration": it_best, "n_iterations": len(rows),
        "bfactor_iterations": int(n_bfactor_iterations),
        "bfactor_cc_start": float(b_history["cc"].iloc[0]) if len(b_history) else None,
        "bfactor_cc_end": float(b_history["cc"].iloc[-1]) if len(b_history) else None,
        "mean_b_A2": float(b_top.mean()),
        "heavy_atom_rmsd_A": float(np.sqrt(np.mean(np.sum(moved**2, axis=1)))),
        "n_atoms_simulated": comp.topology.getNumAtoms(), "platform": sp.platform.getName(),
        "timings_s": {"bfactors": t_b, "total": time.perf_counter() - t0},
    }
    log.info("TEMPy-ReFF %s: CCC %.4f -> %.4f (best at iteration %d of %d), %.0f s", proto.name, ccc_start,
             ccc_best, it_best, len(rows), summary["timings_s"]["total"])
    return GMMRefineResult(out, trajectory, summary)


@dataclass
class SimulatedProtein:
    """A protein as the force field sees it: ``prot`` the input's protein heavy atoms, ``comp`` the
    pdbfixer-completed topology with hydrogens (:func:`emforge.md.complete_model`), ``heavy_top``
    the topology indices of its heavy atoms, ``heavy_model`` those atoms in topology order (for map
    simulation), ``z`` their atomic numbers, ``platform`` the OpenMM platform."""

    prot: AtomModel
    comp: object
    heavy_top: np.ndarray
    heavy_model: AtomModel
    z: np.ndarray
    platform: object

    def topology_widths(self, sigma_in_A: np.ndarray, fallback_A: float) -> np.ndarray:
        """Per heavy topology atom the width of its input atom (``sigma_in_A``: (N,) per atom of
        ``prot``), the mean of its residue's for atoms pdbfixer added, ``fallback_A`` if none."""
        comp = self.comp
        sig_top = np.full(comp.topology.getNumAtoms(), np.nan)
        mapped = comp.input_index >= 0
        sig_top[comp.input_index[mapped]] = np.asarray(sigma_in_A, dtype=np.float64)[mapped]
        heavy = sig_top[self.heavy_top]
        res_mean = pd.Series(heavy).groupby(comp.residue_row[self.heavy_top]).transform("mean").to_numpy()
        sigma = np.where(np.isfinite(heavy), heavy, res_mean)
        return np.where(np.isfinite(sigma), sigma, float(fallback_A))


def prepare_protein(model: AtomModel, *, seed: int = 0, platform=None) -> SimulatedProtein:
    """Protein heavy atoms of ``model`` completed for AMBER14 (pdbfixer; ``seed`` places added atoms)
    on ``platform`` (an OpenMM platform, its name, or None for CUDA > OpenCL > CPU)."""
    from emforge import md

    if isinstance(platform, str) or platform is None:
        platform = md.select_platform(platform)
    prot = model.protein().without_hydrogens()
    if len(prot) == 0:
        raise InputError("model holds no protein atoms")
    comp = md.complete_model(prot, seed=seed, platform=platform)
    atoms = list(comp.topology.atoms())
    heavy_top = np.array([i for i, a in enumerate(atoms) if a.element is not None and a.element.symbol != "H"],
                         dtype=np.int64)
    z = np.array([float(atoms[i].element.atomic_number) for i in heavy_top])
    return SimulatedProtein(prot, comp, heavy_top, _heavy_model(prot, comp, heavy_top), z, platform)


def _heavy_model(prot: AtomModel, comp, heavy_top: np.ndarray) -> AtomModel:
    """An AtomModel of the topology's heavy atoms in topology order (for map simulation only)."""
    atoms = list(comp.topology.atoms())
    elem = np.array([atoms[i].element.symbol for i in heavy_top])
    rows = comp.residue_row[heavy_top]
    starts = prot.residue_starts()
    first = starts[rows]
    return AtomModel(coords=comp.positions_A[heavy_top].copy(), element=elem,
                     atom_name=np.array([atoms[i].name for i in heavy_top]), res_name=prot.res_name[first],
                     res_seq=prot.res_seq[first], ins_code=prot.ins_code[first], chain_id=prot.chain_id[first],
                     b_factor=np.zeros(len(heavy_top)), occupancy=np.ones(len(heavy_top)),
                     is_het=prot.is_het[first], residue_index=prot.residue_index[first])


__all__ = ["Protocol", "PROTOCOLS", "GMMRefineResult", "SimulatedProtein", "prepare_protein", "refine_gmm",
           "paper_width_term"]
