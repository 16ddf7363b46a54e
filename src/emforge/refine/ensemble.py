"""Ensembles from B-factors (paper 001, "Ensemble algorithm", Eq. 14-15).

Each member starts from the refined model with every heavy atom displaced by an isotropic Gaussian
whose width comes from the atom's mixture width: the paper's per-atom "B" (sqrt(2) sigma, a
length) shifted so that the smallest is 0.25 Å, used as the per-axis standard deviation
B' / sqrt(2). The member is then relaxed in AMBER14 + implicit solvent under

* the ensemble term of Eq. 14 per heavy atom, tying it to its sampled position x'::

      E_ens = k_ens / sqrt((2 pi)^3 B'^3) (1 - exp(-|x - x'|^2 / B'^3))

  (evaluated as Eq. 10 is in :mod:`emforge.refine.reff`: |x - x'| in nm, B' the number in Å),
* the density term ``-k_dens rho(x)`` per heavy atom, ``rho`` the map divided by its standard
  deviation over the model's mask, tricubic-interpolated (OpenMM ``Continuous3DFunction``),

by L-BFGS, ``md_steps`` Langevin steps of ``timestep_fs`` and L-BFGS again (the paper: 2000 steps
of 0.1 fs). Members are added until the CCC of the ensemble map (the mean of the members' maps
simulated with the resolution's global width) stops rising, or ``max_members``. RMSF per residue
(Eq. 15) is taken over the members' C-alpha atoms about their mean (no superposition: the members
share the map's frame).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.masks import model_mask
from emforge.models import AtomModel
from emforge.refine import gmm
from emforge.refine.reff import NONBONDED_CUTOFF_A, prepare_protein
from emforge.scores import default_mask_radius_A, pearson_cc
from emforge.simulate import GMM_SIGMA_PER_RESOLUTION, simulate_map

log = logging.getLogger(__name__)

#: paper 001: k_ens = 1000 for all examples
DEFAULT_K_ENS = 1000.0
#: paper 001: k_dens "typically needs to be optimised for each map (values used range between 5 and 200)"
DEFAULT_K_DENS = 50.0
MIN_SHIFTED_B_A = 0.25
DEFAULT_MD_STEPS = 2000
DEFAULT_TIMESTEP_FS = 0.1
DEFAULT_MAX_MEMBERS = 20
MIN_MEMBERS = 2
MINIMISE_ITERATIONS = 200
TEMPERATURE_K = 300.0


@dataclass
class EnsembleResult:
    """``members``: heavy-atom models (same atoms and order); ``map``: mean of their simulated maps
    on the input grid; ``rmsf``: per residue (chain_id, res_seq, ins_code, res_name, rmsf_A);
    ``curve``: ensemble-map CCC per number of members; ``summary``: JSON-ready numbers."""

    members: list[AtomModel]
    map: DensityMap
    rmsf: pd.DataFrame
    curve: pd.DataFrame
    summary: dict


def sampling_sigma_A(sigma_A: np.ndarray) -> np.ndarray:
    """Per-axis standard deviation of the member displacements: B' / sqrt(2), with the paper's
    B = sqrt(2) sigma shifted so that its minimum is 0.25 Å."""
    b = math.sqrt(2.0) * np.asarray(sigma_A, dtype=np.float64)
    return (b - b.min() + MIN_SHIFTED_B_A) / math.sqrt(2.0)


def rmsf_per_residue(members: list[AtomModel]) -> pd.DataFrame:
    """Eq. 15 over the C-alpha atoms of ``members`` (same atoms, same order): one row per residue."""
    ca = members[0].atom_name == "CA"
    xyz = np.stack([m.coords[ca] for m in members])  # (n, R, 3)
    rmsf = np.sqrt(np.mean(np.sum((xyz - xyz.mean(axis=0)) ** 2, axis=2), axis=0))
    m = members[0]
    return pd.DataFrame({"chain_id": m.chain_id[ca], "res_seq": m.res_seq[ca], "ins_code": m.ins_code[ca],
                         "res_name": m.res_name[ca], "rmsf_A": rmsf})


def generate_ensemble(model: AtomModel, density: DensityMap, resolution_A: float, *,
                      max_members: int = DEFAULT_MAX_MEMBERS, k_ens: float = DEFAULT_K_ENS,
                      k_dens: float = DEFAULT_K_DENS, md_steps: int = DEFAULT_MD_STEPS,
                      timestep_fs: float = DEFAULT_TIMESTEP_FS, n_bfactor_iterations: int = gmm.BFACTOR_ITERATIONS,
                      mask: np.ndarray | None = None, seed: int = 0, platform=None,
                      progress=None) -> EnsembleResult:
    """An ensemble of ``model`` in ``density`` (see module docstring).

    Parameters
    ----------
    model
        Refined protein model (Å); widths are refined from the map first (``n_bfactor_iterations``).
    density, resolution_A
        The map and its resolution (Å).
    max_members
        Upper bound on the ensemble size (at least 2 members are made).
    k_ens, k_dens
        Ensemble (Eq. 14) and density force constants (kJ/mol; the density in map standard deviations).
    md_steps, timestep_fs
        Langevin dynamics per member between the two minimisations (0: minimisation only).
    mask
        Voxels of the CCCs (boolean, the map's shape; default: within the resolution's mask radius
        of ``model``) and of the density term's standard deviation.
    seed
        Displacements, velocities and Langevin noise.
    progress
        Called as ``progress(n_members, max_members, ccc)``.
    """
    from emforge import md

    mm = md._openmm()
    unit = mm.unit
    gmm._check_args(resolution_A, n_bfactor_iterations, gmm.SIGMA_MIN_A, gmm.SIGMA_MAX_A)
    if int(max_members) < MIN_MEMBERS:
        raise InputError(f"an ensemble needs at least {MIN_MEMBERS} members, got max_members={max_members}")
    if not (k_ens >= 0 and k_dens >= 0 and int(md_steps) >= 0 and timestep_fs > 0):
        raise InputError("k_ens, k_dens and md_steps must be >= 0 and timestep_fs > 0")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != density.shape or not mask.any():
            raise InputError(f"mask must be a non-empty boolean array of the map's shape {density.shape}")
    t0 = time.perf_counter()
    sp = prepare_protein(model, seed=seed, platform=platform)
    prot, comp, heavy_top, heavy_model, platform = sp.prot, sp.comp, sp.heavy_top, sp.heavy_model, sp.platform
    widths = gmm.refine_bfactors(prot, density, resolution_A, n_iterations=n_bfactor_iterations)
    sigma = sp.topology_widths(gmm.b_to_sigma(widths.model.b_factor), GMM_SIGMA_PER_RESOLUTION * float(resolution_A))
    step_sd = sampling_sigma_A(sigma)
    b_shift = math.sqrt(2.0) * step_sd  # B' (Å)

    system = md.build_system(comp.topology, solvent="gbn2", nonbonded_cutoff_A=NONBONDED_CUTOFF_A)
    ens = mm.CustomExternalForce("a*(1-exp(-((x-x0)^2+(y-y0)^2+(z-z0)^2)/w))")
    for name in ("a", "x0", "y0", "z0", "w"):
        ens.addPerParticleParameter(name)
    amp = k_ens / np.sqrt((2.0 * math.pi) ** 3 * b_shift**3)
    for k, i in enumerate(heavy_top.tolist()):
        ens.addParticle(i, [float(amp[k]), *(comp.positions_A[i] * md.NM_PER_A).tolist(), float(b_shift[k] ** 3)])
    system.addForce(ens)
    if mask is None:
        mask = model_mask(heavy_model, density, default_mask_radius_A(float(resolution_A)))
    if k_dens > 0:
        system.addForce(_density_force(mm, density, mask, k_dens, heavy_top))
    integrator = mm.LangevinMiddleIntegrator(TEMPERATURE_K * unit.kelvin, 1.0 / unit.picosecond,
                                             float(timestep_fs) * 1e-3 * unit.picosecond)
    integrator.setRandomNumberSeed(int(seed) % md.OPENMM_SEED_MODULUS)
    context = mm.Context(system, integrator, platform)
    rng = np.random.default_rng(seed)
    global_sigma = GMM_SIGMA_PER_RESOLUTION * float(resolution_A)

    def sim_map(xyz: np.ndarray) -> np.ndarray:
        return simulate_map(heavy_model.with_coords(xyz), density, resolution_A, "gmm", sigma_A=global_sigma).data

    single_ccc = pearson_cc(sim_map(comp.positions_A[heavy_top]), density.data, mask)
    members_xyz, curve = [], []
    total = np.zeros(density.shape, np.float64)
    for n in range(1, int(max_members) + 1):
        base = comp.positions_A.copy()
        sampled = base[heavy_top] + rng.normal(size=(len(heavy_top), 3)) * step_sd[:, None]
        base[heavy_top] = sampled
        for k, i in enumerate(heavy_top.tolist()):
            ens.setParticleParameters(k, i, [float(amp[k]), *(sampled[k] * md.NM_PER_A).tolist(),
                                             float(b_shift[k] ** 3)])
        ens.updateParametersInContext(context)
        context.setPositions(base * md.NM_PER_A)
        mm.LocalEnergyMinimizer.minimize(context, 10.0, MINIMISE_ITERATIONS)
        if md_steps:
            context.setVelocitiesToTemperature(TEMPERATURE_K * unit.kelvin, int(seed + n) % md.OPENMM_SEED_MODULUS)
            integrator.step(int(md_steps))
            mm.LocalEnergyMinimizer.minimize(context, 10.0, MINIMISE_ITERATIONS)
        pos = np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
            unit.nanometer)) / md.NM_PER_A
        if not np.isfinite(pos).all():
            raise InputError("ensemble member diverged (non-finite positions); lower k_dens or the time step")
        members_xyz.append(pos)
        total += sim_map(pos[heavy_top])
        c = pearson_cc(total / n, density.data, mask)
        curve.append({"n_members": n, "ccc": c})
        if progress is not None:
            progress(n, int(max_members), c)
        if n > MIN_MEMBERS and c <= curve[-2]["ccc"]:
            members_xyz.pop()  # the last member did not help: the ensemble stops before it
            total -= sim_map(pos[heavy_top])
            break
    n_final = len(members_xyz)
    members = [md._output_model(prot, comp, xyz, keep_hydrogens=False) for xyz in members_xyz]
    b_rows = _input_rows(prot, members[0])
    members = [m.with_b_factors(widths.model.b_factor[b_rows]) for m in members]
    ens_map = DensityMap((total / n_final).astype(np.float32), density.voxel_size, density.origin)
    rmsf = rmsf_per_residue(members)
    curve_df = pd.DataFrame(curve, columns=["n_members", "ccc"])
    summary = {
        "n_members": n_final, "single_model_ccc": single_ccc, "first_member_ccc": float(curve_df["ccc"].iloc[0]),
        "ensemble_ccc": float(curve_df["ccc"].iloc[n_final - 1]),
        "k_ens": float(k_ens), "k_dens": float(k_dens), "md_steps": int(md_steps), "timestep_fs": float(timestep_fs),
        "mean_rmsf_A": float(rmsf["rmsf_A"].mean()), "max_rmsf_A": float(rmsf["rmsf_A"].max()),
        "mean_displacement_sd_A": float(step_sd.mean()), "platform": platform.getName(),
        "wall_time_s": time.perf_counter() - t0,
    }
    log.info("ensemble: %d members, CCC %.4f (single model %.4f), mean RMSF %.2f Å, %.0f s", n_final,
             summary["ensemble_ccc"], single_ccc, summary["mean_rmsf_A"], summary["wall_time_s"])
    return EnsembleResult(members, ens_map, rmsf, curve_df, summary)


def _input_rows(prot: AtomModel, out: AtomModel) -> np.ndarray:
    """For each atom of ``out`` the row of the same atom (residue, name) in ``prot``; atoms pdbfixer
    added take their residue's first atom."""
    left = pd.DataFrame({"r": out.residue_index, "a": out.atom_name})
    right = pd.DataFrame({"r": prot.residue_index, "a": prot.atom_name, "row": np.arange(len(prot))})
    rows = left.merge(right.drop_duplicates(["r", "a"]), on=["r", "a"], how="left")["row"].to_numpy(float).copy()
    first = pd.Series(np.arange(len(prot))).groupby(prot.residue_index).min()
    missing = np.isnan(rows)
    rows[missing] = first.reindex(out.residue_index[missing]).to_numpy()
    return rows.astype(np.int64)


def _density_force(mm, density: DensityMap, mask: np.ndarray, k_dens: float, heavy_top: np.ndarray):
    """-k_dens rho(x, y, z) per heavy atom, rho = map / its standard deviation in the mask."""
    from emforge import md

    data = density.data.astype(np.float64)
    sd = float(data[mask].std()) if mask.any() else float(data.std())
    rho = (data / (sd if sd > 0 else 1.0)).ravel()  # [z, y, x] C order: x fastest, as OpenMM wants
    nx, ny, nz = (int(v) for v in density.shape_xyz)
    lo, hi = density.extent_A * md.NM_PER_A
    func = mm.Continuous3DFunction(nx, ny, nz, rho.tolist(), lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
    # one-particle compound bonds: CustomExternalForce cannot hold tabulated functions
    force = mm.CustomCompoundBondForce(1, "-k_dens*rho(x1,y1,z1)")
    force.addGlobalParameter("k_dens", float(k_dens))
    force.addTabulatedFunction("rho", func)
    for i in heavy_top.tolist():
        force.addBond([i], [])
    return force


__all__ = ["EnsembleResult", "generate_ensemble", "rmsf_per_residue", "sampling_sigma_A"]
