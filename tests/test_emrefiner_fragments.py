"""EM-Refiner Step 2 fragments: definition, extension by low local CC, hinged moves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from emforge.errors import InputError
from emforge.refine.emrefiner.fragments import define_fragments, hinge_weights, hinged_move

#           0         1         2
#           0123456789012345678901234
SS = np.array(list("CCHHHHHHCCCCEEEECCCCHHHHC"))
CHAIN = np.zeros(len(SS), int)


def test_fragments_are_the_sse_runs_with_hinge_loops():
    frags = define_fragments(SS, CHAIN, np.ones(len(SS)))
    assert [(f.first, f.last, f.kind) for f in frags] == [(2, 7, "H"), (12, 15, "E"), (20, 23, "H")]
    f0, f1, f2 = frags
    assert (f0.left, f0.right, f0.left_anchored, f0.right_anchored) == (0, 11, False, True)
    assert (f1.left, f1.right, f1.left_anchored, f1.right_anchored) == (8, 19, True, True)
    assert (f2.left, f2.right, f2.left_anchored, f2.right_anchored) == (16, 24, True, False)


def test_low_cc_neighbours_extend_a_fragment_but_never_into_another():
    cc = np.ones(len(SS))
    cc[[8, 9, 10, 11, 16]] = 0.01  # the loop between the helix and the strand, one residue after it
    frags = define_fragments(SS, CHAIN, cc)
    # the helix grabs the whole low-CC loop up to the strand; the strand then grabs residue 16
    assert (frags[0].first, frags[0].last) == (2, 11)
    assert (frags[1].first, frags[1].last) == (12, 16)
    assert (frags[0].core_first, frags[0].core_last) == (2, 7)
    with pytest.raises(InputError):
        define_fragments(SS, CHAIN, np.ones(3))


def test_chain_boundaries_end_fragments_and_loops():
    chain = np.array([0] * 10 + [1] * 15)
    frags = define_fragments(SS, chain, np.zeros(len(SS)))
    f0 = frags[0]
    assert f0.right <= 9 and not f0.right_anchored  # the helix of chain 0 is alone in its chain


def test_hinge_weights_ramp_down_to_the_anchors():
    f = define_fragments(SS, CHAIN, np.ones(len(SS)))[1]  # strand 12-15, loops 8-11 and 16-19
    rows, w = hinge_weights(f)
    np.testing.assert_array_equal(rows, np.arange(8, 20))
    np.testing.assert_allclose(w, [0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])


def test_hinged_move_is_rigid_on_the_fragment_and_fixes_the_rest():
    rng = np.random.default_rng(0)
    res = np.repeat(np.arange(len(SS)), 4)
    xyz = rng.normal(scale=10.0, size=(len(res), 3))
    f = define_fragments(SS, CHAIN, np.ones(len(SS)))[1]
    rv, pivot, t = np.array([0.1, -0.2, 0.3]), xyz[res == 12][0], np.array([1.0, 2.0, -0.5])
    atoms, new = hinged_move(xyz, res, f, rv, pivot, t)
    assert set(np.unique(res[atoms])) == set(range(8, 20))
    core = np.isin(res[atoms], range(12, 16))
    expect = (xyz[atoms[core]] - pivot) @ Rotation.from_rotvec(rv).as_matrix().T + pivot + t
    np.testing.assert_allclose(new[core], expect, atol=1e-12)
    # distances inside the fragment are unchanged (rigid)
    d0 = np.linalg.norm(xyz[atoms[core]][:, None] - xyz[atoms[core]][None], axis=-1)
    d1 = np.linalg.norm(new[core][:, None] - new[core][None], axis=-1)
    np.testing.assert_allclose(d0, d1, atol=1e-9)
    # half-way loop residue 10 gets 60% of the translation when the rotation is zero
    atoms2, new2 = hinged_move(xyz, res, f, np.zeros(3), pivot, t)
    k = res[atoms2] == 10
    np.testing.assert_allclose(new2[k] - xyz[atoms2[k]], np.tile(0.6 * t, (k.sum(), 1)), atol=1e-12)


# -- Step 2 SAMC on a real protein --------------------------------------------------------------------

def test_fragment_samc_puts_a_displaced_helix_back(shared_data):
    """Ubiquitin's helix (residues 23-34) moved 2.5 Å and turned 8° off its density: a short
    fragment SAMC in the map of the native brings it most of the way back (helix C-alpha RMSD to
    the native drops by more than 30%, against the pull of the restraints to the displaced start),
    lowering the energy and raising the CC."""
    from emforge.models import read_model
    from emforge.refine.emrefiner.energy import EMRefinerEnergy
    from emforge.refine.emrefiner.samc import AnnealingSchedule, fragment_samc
    from emforge.simulate import simulate_map
    from emforge.sse import assign_secondary_structure, backbone_arrays

    native = read_model(shared_data / "chains" / "1ubq_A.pdb.gz").protein().without_hydrogens()
    target = simulate_map(native, None, 6.0, voxel_size_A=2.0, margin_A=8.0)
    bb = backbone_arrays(native)
    ss = assign_secondary_structure(bb, states=3)
    frags = define_fragments(ss, bb.chain_index, np.ones(len(ss)))
    helix = next(f for f in frags if f.kind == "H" and f.last - f.first >= 8)
    res = np.repeat(np.arange(native.n_residues), np.diff(np.append(native.residue_starts(), len(native))))
    ca = np.flatnonzero(native.atom_name == "CA")
    pivot = native.coords[ca[helix.first]]
    atoms, new = hinged_move(native.coords, res, helix, np.radians(8.0) * np.array([0.0, 0.6, 0.8]), pivot,
                             np.array([2.5, 0.0, 0.0]))
    start_xyz = native.coords.copy()
    start_xyz[atoms] = new
    start = native.with_coords(start_xyz)
    e = EMRefinerEnergy.from_model(start, target, 6.0, ss, start=start)
    cc0 = e.cc()
    e0 = e.total()
    hca = ca[helix.first:helix.last + 1]

    def helix_rmsd(xyz):
        return float(np.sqrt(np.mean(np.sum((xyz[hca] - native.coords[hca]) ** 2, axis=1))))

    r0 = helix_rmsd(start_xyz)
    decoys, traj = fragment_samc(e, frags, AnnealingSchedule(n_repeats=2, n_temperatures=6, n_moves=120, t_max=2.0),
                                 seed=3)
    best = decoys[0]
    assert best.energy < e0 - 1.0
    assert helix_rmsd(best.coords) < 0.7 * r0  # 1.9 -> 1.0-1.15 Å over seeds 0-3
    assert e.cc() > cc0
    assert abs(e.total() - best.energy) < 1e-6 * max(1.0, abs(best.energy))  # bookkeeping = recomputation
    assert len(traj.rows) == 1 + 2 * 6
