"""Restrained relaxation in OpenMM (emforge.md) on real chains, against independent references.

References: scipy cKDTree distances, emforge's clashscore on riding hydrogens, Engh & Huber bond
lengths typed in here, restraint energies summed by hand with numpy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial import cKDTree

pytest.importorskip("openmm")
pytest.importorskip("pdbfixer")

from emforge import md  # noqa: E402
from emforge.errors import InputError  # noqa: E402
from emforge.geometry.clashes import clashscore  # noqa: E402
from emforge.geometry.hydrogens import add_riding_hydrogens  # noqa: E402
from emforge.models import AtomModel, read_model, write_model  # noqa: E402

BACKBONE = ("N", "CA", "C", "O")
ENGH_HUBER_A = {("N", "CA"): 1.458, ("CA", "C"): 1.525, ("C", "O"): 1.229}
PEPTIDE_C_N_A = 1.336
CLOSE_A = 2.2


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


@pytest.fixture(scope="module")
def ubq(shared_data):
    return read_model(shared_data / "chains" / "1ubq_A.pdb.gz")


def _atom(m: AtomModel, res_seq: int, name: str) -> int:
    i = np.flatnonzero((m.res_seq == res_seq) & (m.atom_name == name))
    assert len(i) == 1, (res_seq, name)
    return int(i[0])


def _close_pairs(m: AtomModel, cutoff_A: float = CLOSE_A) -> np.ndarray:
    """Heavy-atom pairs from different residues closer than cutoff, without C(i)-N(i+1) and SG-SG bonds."""
    heavy = np.flatnonzero(~m.is_hydrogen())
    p = heavy[cKDTree(m.coords[heavy]).query_pairs(cutoff_A, output_type="ndarray")]
    if not len(p):
        return p.reshape(0, 2)
    a, b = m.atom_name[p[:, 0]], m.atom_name[p[:, 1]]
    ri, rj = m.residue_index[p[:, 0]], m.residue_index[p[:, 1]]
    peptide = ((a == "C") & (b == "N") & (rj == ri + 1)) | ((a == "N") & (b == "C") & (ri == rj + 1))
    disulfide = (a == "SG") & (b == "SG")
    return p[(ri != rj) & ~peptide & ~disulfide]


def _push_side_chain(m: AtomModel) -> tuple[AtomModel, np.ndarray]:
    """Shift one side chain (atoms beyond CB) rigidly into a neighbouring residue, 1.6 Å from it."""
    side = ~np.isin(m.atom_name, BACKBONE + ("CB",)) & ~m.is_hydrogen()
    tree = cKDTree(m.coords)
    best = None
    for i in np.flatnonzero(side):  # deterministic choice: the side-chain atom nearest to a non-neighbour
        d, j = tree.query(m.coords[i], k=12)
        far = np.abs(m.residue_index[j] - m.residue_index[i]) > 2
        if far.any() and 3.4 < d[far][0] < 4.5 and (best is None or d[far][0] < best[0]):
            best = (d[far][0], i, j[far][0])
    assert best is not None
    d, i, j = best
    moved = side & (m.residue_index == m.residue_index[i])
    shift = (m.coords[j] - m.coords[i]) * (d - 1.6) / d
    coords = m.coords.copy()
    coords[moved] += shift
    return m.with_coords(coords), moved


def _n_clashes(m: AtomModel) -> int:
    return clashscore(add_riding_hydrogens(m.without_hydrogens()))[0]["n_clashes"]


def test_relax_removes_pushed_side_chain(crambin):
    pushed, moved = _push_side_chain(crambin)
    assert len(_close_pairs(pushed)) > 0
    clashes_before = _n_clashes(pushed)
    relaxed, report = md.relax(pushed)
    # same atoms, same order: no atom was missing in crambin except possibly OXT
    inp = np.char.add(np.char.add(pushed.residue_index.astype(str), ":"), pushed.atom_name)
    out = np.char.add(np.char.add(relaxed.residue_index.astype(str), ":"), relaxed.atom_name)
    keep = np.isin(out, inp)
    assert np.array_equal(out[keep], inp)
    xyz = relaxed.coords[keep]
    assert len(_close_pairs(relaxed)) == 0
    clashes_after = _n_clashes(relaxed)
    assert clashes_before >= 5
    assert clashes_after <= 0.3 * clashes_before
    rms_untouched = np.sqrt(np.mean(np.sum((xyz[~moved] - pushed.coords[~moved]) ** 2, axis=1)))
    assert rms_untouched < 0.5
    assert report["energy_after_kj_per_mol"] < report["energy_before_kj_per_mol"]
    assert report["solvent"] == "obc2" and report["platform"]
    rmsd_all = np.sqrt(np.mean(np.sum((xyz - pushed.coords) ** 2, axis=1)))
    assert report["heavy_atom_rmsd_A"] == pytest.approx(rmsd_all, rel=1e-6)


def _far_pair(m: AtomModel, lo_A: float = 3.6, hi_A: float = 4.2) -> tuple[int, int, float]:
    """The first heavy-atom pair (cKDTree order) of residues > 2 apart at lo-hi Å."""
    heavy = np.flatnonzero(~m.is_hydrogen())
    pairs = heavy[cKDTree(m.coords[heavy]).query_pairs(hi_A, output_type="ndarray")]
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    d = np.linalg.norm(m.coords[pairs[:, 0]] - m.coords[pairs[:, 1]], axis=1)
    ok = (d > lo_A) & (np.abs(m.residue_index[pairs[:, 0]] - m.residue_index[pairs[:, 1]]) > 2)
    i, j = pairs[ok][0]
    return int(i), int(j), float(d[ok][0])


def test_min_distances_push_a_pair_apart(crambin):
    heavy = crambin.without_hydrogens()
    i, j, d0 = _far_pair(heavy)
    want = d0 + 0.6
    free, _ = md.relax(heavy)
    pushed, report = md.relax(heavy, min_distances=([i], [j], [want]))
    assert report["n_separation_pairs"] == 1
    # force balance of k_sep = 100 against two restraints of k = 10: short by ~0.03 Å
    d_pushed = np.linalg.norm(pushed.coords[i] - pushed.coords[j])
    d_free = np.linalg.norm(free.coords[i] - free.coords[j])
    assert d_pushed > want - 0.1, (d0, want, d_pushed)
    assert d_free < want - 0.3, (d0, want, d_free)
    # the rest of the model stays where it was (two minimisations agree to a few hundredths of an Å)
    far = np.linalg.norm(heavy.coords - heavy.coords[i], axis=1) > 10
    rms_far = np.sqrt(np.mean(np.sum((pushed.coords[far] - free.coords[far]) ** 2, axis=1)))
    assert rms_far < 0.2, rms_far


@pytest.mark.parametrize("bad, problem", [(([0, 1], [5], [4.0]), "entries"), (([0], [5], [-1.0]), "positive"),
                                          (([0], [10**6], [4.0]), "indices")])
def test_min_distances_bad_input(crambin, bad, problem):
    with pytest.raises(InputError, match=problem):
        md.relax(crambin.without_hydrogens(), min_distances=bad)


def test_clash_heavy_pairs_maps_hydrogens_to_parents(crambin):
    pushed, _ = _push_side_chain(crambin.without_hydrogens())
    pairs = md.clash_heavy_pairs(pushed)
    independent = clashscore(add_riding_hydrogens(pushed), overlap_A=md.CLASH_CHECK_OVERLAP_A)[0]["n_clashes"]
    assert len(pairs) == independent > 0
    labels = np.array([f"{c}:{r}{s}{i}" for c, r, s, i in zip(pushed.chain_id, pushed.res_name, pushed.res_seq,
                                                               pushed.ins_code)])
    for col, lab in (("i", "label_1"), ("j", "label_2")):
        residue_of_parent = labels[pairs[col].to_numpy(int)]
        residue_of_clash = np.array([s.rsplit(":", 1)[0] for s in pairs[lab]])
        assert np.array_equal(residue_of_parent, residue_of_clash)
    # a hydrogen's parent is its bonded heavy atom: within 1.2 Å of where riding H are placed
    with_h = add_riding_hydrogens(pushed)
    h = np.flatnonzero(with_h.is_hydrogen())
    d, _ = cKDTree(pushed.coords).query(with_h.coords[h])
    assert d.max() < 1.2


def test_remove_clashes_leaves_none(ubq):
    # minimisation alone leaves Pro37 HA - Pro38 HD2 overlapping by ~0.38 Å (riding H), which
    # the force field accepts: remove_clashes pushes the pair apart in a second round
    pushed, _ = _push_side_chain(ubq.without_hydrogens())
    out, rounds = md.remove_clashes(pushed)
    assert rounds[-1]["serious_clashes"] == 0
    assert clashscore(add_riding_hydrogens(out), overlap_A=md.CLASH_CHECK_OVERLAP_A)[0]["n_clashes"] == 0
    assert len(_close_pairs(out)) == 0
    assert all(r["restraint_k_kj_per_mol_A2"] == md.DEFAULT_RESTRAINT_K_KJ_PER_MOL_A2 for r in rounds)


GAP = (20, 21, 22, 24)  # leaves residue 23 isolated between two breaks


@pytest.fixture(scope="module")
def ubq_truncated_lys(ubq):
    """Ubiquitin without the CD, CE, NZ atoms of Lys48, without residues 20-22 and 24 (chain breaks,
    residue 23 isolated) and with Met1 as selenomethionine, relaxed with hydrogens kept."""
    drop = (ubq.res_seq == 48) & np.isin(ubq.atom_name, ("CD", "CE", "NZ"))
    assert drop.sum() == 3 and (ubq.res_name[drop] == "LYS").all()
    model = ubq.select(~drop & ~np.isin(ubq.res_seq, GAP))
    met1 = model.res_seq == 1
    assert (model.res_name[met1] == "MET").all()
    sd = met1 & (model.atom_name == "SD")
    model = dataclasses.replace(model, res_name=np.where(met1, "MSE", model.res_name),
                                atom_name=np.where(sd, "SE", model.atom_name),
                                element=np.where(sd, "Se", model.element.astype("U2")))
    relaxed, report = md.relax(model, keep_hydrogens=True)
    return model, relaxed, report


def test_output_keeps_input_atoms_and_adds_missing(ubq_truncated_lys, tmp_path):
    model, relaxed, report = ubq_truncated_lys
    heavy = relaxed.select(~relaxed.is_hydrogen())
    # input atoms first in every residue, in input order, with input names/numbering/B-factors
    inp_keys = [f"{c}:{s}{i}:{a}" for c, s, i, a in zip(model.chain_id, model.res_seq, model.ins_code,
                                                         model.atom_name)]
    out_keys = [f"{c}:{s}{i}:{a}" for c, s, i, a in zip(heavy.chain_id, heavy.res_seq, heavy.ins_code,
                                                         heavy.atom_name)]
    is_input = np.isin(out_keys, inp_keys)
    assert [k for k, f in zip(out_keys, is_input) if f] == inp_keys
    assert np.array_equal(heavy.b_factor[is_input], model.b_factor)
    added = [k for k, f in zip(out_keys, is_input) if not f]
    # the three Lys atoms and the C-terminal OXT of the segment before the break, nothing else
    # (ubiquitin's Gly76 has its OXT; MSE's SE is kept, not rebuilt as SD)
    assert sorted(added) == ["A:19:OXT", "A:48:CD", "A:48:CE", "A:48:NZ"]
    res19 = model.res_name[_atom(model, 19, "CA")]
    assert sorted(report["heavy_added"]) == sorted(["A:LYS48:CD", "A:LYS48:CE", "A:LYS48:NZ", f"A:{res19}19:OXT"])
    assert report["n_heavy_added"] == 4
    se_in, se_out = _atom(model, 1, "SE"), _atom(heavy, 1, "SE")
    assert heavy.element[se_out] == "Se" and heavy.res_name[se_out] == "MSE"
    assert np.linalg.norm(heavy.coords[se_out] - model.coords[se_in]) < 0.5
    # the chain break stays open: C19-N25 keeps its length within 0.5 Å
    gap_in = np.linalg.norm(model.coords[_atom(model, 19, "C")] - model.coords[_atom(model, 25, "N")])
    gap_out = np.linalg.norm(heavy.coords[_atom(heavy, 19, "C")] - heavy.coords[_atom(heavy, 25, "N")])
    assert gap_in > 5 and abs(gap_out - gap_in) < 0.5
    # the isolated residue 23 (no AMBER template for a free amino acid) is left where it was
    assert np.array_equal(heavy.coords[heavy.res_seq == 23], model.coords[model.res_seq == 23])
    # rebuilt Lys side chain: Engh & Huber CG-CD 1.520, CD-CE 1.520, CE-NZ 1.489 Å
    for a, b, ideal in (("CG", "CD", 1.520), ("CD", "CE", 1.520), ("CE", "NZ", 1.489)):
        d = np.linalg.norm(heavy.coords[_atom(heavy, 48, a)] - heavy.coords[_atom(heavy, 48, b)])
        assert abs(d - ideal) < 0.06, (a, b, d)
    # hydrogens follow their residue and the model writes and reads back
    h = relaxed.select(relaxed.is_hydrogen())
    assert len(h) > len(heavy) * 0.8
    path = write_model(tmp_path / "relaxed.pdb", relaxed)
    back = read_model(path)
    assert len(back) == len(relaxed)
    assert np.allclose(back.coords, relaxed.coords, atol=1e-3)
    assert back.n_residues == model.n_residues


def test_backbone_geometry_after_relaxation(ubq_truncated_lys):
    _, relaxed, report = ubq_truncated_lys
    m = relaxed.select(~relaxed.is_hydrogen())
    res = np.unique(m.res_seq)
    for (a, b), ideal in ENGH_HUBER_A.items():
        d = [np.linalg.norm(m.coords[_atom(m, r, a)] - m.coords[_atom(m, r, b)]) for r in res]
        assert abs(np.mean(d) - ideal) < 0.05, (a, b, np.mean(d))
    d = [np.linalg.norm(m.coords[_atom(m, r, "C")] - m.coords[_atom(m, r + 1, "N")]) for r in res if r + 1 in res]
    assert abs(np.mean(d) - PEPTIDE_C_N_A) < 0.05
    assert report["energy_after_kj_per_mol"] < report["energy_before_kj_per_mol"]
    assert report["heavy_atom_rmsd_A"] < 0.5


def test_restraint_energy_matches_hand_computation(crambin):
    import openmm as mm

    comp = md.complete_model(crambin)
    system = md.build_system(comp.topology, solvent="vacuum", nonbonded_cutoff_A=None)
    rng = np.random.default_rng(7)
    n = comp.topology.getNumAtoms()
    idx = np.sort(rng.choice(n, size=100, replace=False))
    targets = comp.positions_A + rng.normal(scale=0.6, size=(n, 3))
    k = 12.5
    force = md.add_position_restraints(system, targets, idx, k, force_group=3)
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(comp.positions_A * 0.1)

    def openmm_energy():
        state = context.getState(getEnergy=True, groups={3})
        return state.getPotentialEnergy().value_in_unit(mm.unit.kilojoule_per_mole)

    by_hand = k * np.sum((comp.positions_A[idx] - targets[idx]) ** 2)
    assert openmm_energy() == pytest.approx(by_hand, rel=1e-4)
    new_targets = comp.positions_A[idx] + rng.normal(scale=1.0, size=(len(idx), 3))
    md.update_restraint_targets(context, force, new_targets, idx)
    by_hand = k * np.sum((comp.positions_A[idx] - new_targets) ** 2)
    assert openmm_energy() == pytest.approx(by_hand, rel=1e-4)


def test_native_obc2_equals_openmm_custom_gb(crambin):
    import openmm as mm

    comp = md.complete_model(crambin)
    platform = mm.Platform.getPlatformByName("Reference")
    energies = []
    for native in (False, True):
        system = md.build_system(comp.topology, solvent="obc2", nonbonded_cutoff_A=None, native_obc=native)
        context = mm.Context(system, mm.VerletIntegrator(0.001), platform)
        context.setPositions(comp.positions_A * 0.1)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(mm.unit.kilojoule_per_mole))
    assert energies[1] == pytest.approx(energies[0], rel=1e-5)


def test_implicit_solvent_lowers_the_energy_and_platforms(crambin):
    import openmm as mm

    comp = md.complete_model(crambin)
    platform = mm.Platform.getPlatformByName("Reference")
    energy = {}
    for solvent in ("vacuum", "obc2", "gbn2"):
        system = md.build_system(comp.topology, solvent=solvent)
        kinds = {type(f).__name__ for f in system.getForces()}
        assert ("GBSAOBCForce" in kinds) == (solvent == "obc2")
        assert ("CustomGBForce" in kinds) == (solvent == "gbn2")
        context = mm.Context(system, mm.VerletIntegrator(0.001), platform)
        context.setPositions(comp.positions_A * 0.1)
        energy[solvent] = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
            mm.unit.kilojoule_per_mole)
    # a protein's polar solvation free energy is large and negative (order -1e3 kJ/mol here)
    assert energy["obc2"] - energy["vacuum"] < -500
    assert energy["gbn2"] - energy["vacuum"] < -500
    names = [mm.Platform.getPlatform(i).getName() for i in range(mm.Platform.getNumPlatforms())]
    assert md.select_platform().getName() in names
    assert md.select_platform("Reference").getName() == "Reference"
    with pytest.raises(InputError, match="platform"):
        md.select_platform("NoSuchPlatform")


def _non_protein_model(res_name: str, atom_names: list[str], elements: list[str]) -> AtomModel:
    n = len(atom_names)
    return AtomModel(np.arange(3 * n, dtype=float).reshape(n, 3), np.array(elements), np.array(atom_names),
                     np.full(n, res_name), np.arange(1, n + 1), np.full(n, ""), np.full(n, "A"), np.zeros(n),
                     np.ones(n), np.ones(n, bool), np.arange(n))


def test_non_protein_models_are_rejected(crambin):
    water = _non_protein_model("HOH", ["O", "O", "O"], ["O", "O", "O"])
    with pytest.raises(InputError, match="no amino-acid residues"):
        md.relax(water)
    ligand = _non_protein_model("ATP", ["PG", "O1G", "C1'"], ["P", "O", "C"])
    with pytest.raises(InputError, match="no amino-acid residues"):
        md.complete_model(ligand)
    with pytest.raises(InputError, match="solvent"):
        md.build_system(None, solvent="water")
    with pytest.raises(InputError, match="fewer than 3 heavy atoms"):
        md.complete_model(crambin.calpha())


def test_seeds_beyond_32_bits_are_accepted(ubq_truncated_lys):
    """emforge seeds are any non-negative integers, OpenMM's 32-bit: placing missing atoms with a
    seed >= 2^31 works (pdbfixer's integrator would raise OverflowError)."""
    from emforge.md import complete_model

    model, _, _ = ubq_truncated_lys
    comp = complete_model(model, seed=2**40 + 5)
    assert len(comp.added) > 0
