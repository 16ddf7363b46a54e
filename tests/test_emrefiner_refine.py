"""EM-Refiner Step 3 moves (M1-M6), the refinement pipeline, its fragment table and the CLI verbs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emforge.errors import InputError
from emforge.models import read_model
from emforge.refine.emrefiner.atomic import MOVES, AtomicMover, AtomicMoves
from emforge.refine.emrefiner.energy import EMRefinerEnergy
from emforge.simulate import simulate_map
from emforge.sse import assign_secondary_structure, backbone_arrays

RESOLUTION_A = 6.0


@pytest.fixture(scope="module")
def ubiquitin(shared_data):
    return read_model(shared_data / "chains" / "1ubq_A.pdb.gz").protein().without_hydrogens()


@pytest.fixture(scope="module")
def energy_factory(ubiquitin):
    target = simulate_map(ubiquitin, None, RESOLUTION_A, voxel_size_A=2.0, margin_A=8.0)
    ss = assign_secondary_structure(backbone_arrays(ubiquitin), states=3)

    def make():
        return EMRefinerEnergy.from_model(ubiquitin, target, RESOLUTION_A, ss)

    return make


def _peptide_bonds(e: EMRefinerEnergy, xyz: np.ndarray) -> np.ndarray:
    c = e.bb[:-1, 2]
    n = e.bb[1:, 0]
    return np.linalg.norm(xyz[c] - xyz[n], axis=1)


# -- moves --------------------------------------------------------------------------------------------

def test_every_move_is_local_and_keeps_the_chain_together(energy_factory):
    """Each of M1-M6 touches one contiguous stretch of residues, leaves every other atom in place,
    keeps every atom pair inside a residue at its distance (residues move rigidly); the flank ramp bends
    the chain instead of breaking it: no peptide bond changes by more than 0.7 x the largest atom
    displacement (M2 slides four residues as one and stretches its end bonds by up to ~1 Å)."""
    e = energy_factory()
    mover = AtomicMover(e)
    rng = np.random.default_rng(0)
    xyz0 = e.coords.copy()
    pep0 = _peptide_bonds(e, xyz0)
    for _ in range(300):
        before = dict(mover.counts)
        atoms, new = mover(rng, 1.0)
        kind = next(k for k in MOVES if mover.counts[k] != before[k])
        assert np.all(np.diff(atoms) == 1)
        trial = xyz0.copy()
        trial[atoms] = new
        moved_res = np.unique(e.residue[atoms])
        for r in moved_res[:: max(1, len(moved_res) // 3)]:
            sel = np.flatnonzero(e.residue == r)
            d0 = np.linalg.norm(xyz0[sel, None] - xyz0[None, sel], axis=2)
            d1 = np.linalg.norm(trial[sel, None] - trial[None, sel], axis=2)
            np.testing.assert_allclose(d1, d0, atol=1e-9)
        stretch = np.abs(_peptide_bonds(e, trial) - pep0).max()
        if kind == "M2":
            assert stretch < 1.0
        else:
            assert stretch <= 0.7 * np.linalg.norm(new - xyz0[atoms], axis=1).max() + 1e-9, kind
    assert set(mover.counts) == set(MOVES) and min(mover.counts.values()) > 25


def test_full_register_shift_puts_the_backbone_on_the_neighbours(energy_factory):
    """M2 at fraction 1: the N, CA, C of residues 10-13 land on those of 11-14 (direction +1) and of 9-12
    (direction -1), to the small differences between residues' backbone geometry."""
    e = energy_factory()
    mover = AtomicMover(e)
    frame = e.bb[:, :3]
    for direction in (1, -1):
        atoms, new = mover.register_shift(10, direction, 1.0)
        trial = e.coords.copy()
        trial[atoms] = new
        got = trial[frame[10:14]]
        want = e.coords[frame[10 + direction:14 + direction]]
        assert np.sqrt(np.mean(np.sum((got - want) ** 2, axis=-1))) < 0.1
        # half a shift: C-alphas move about half of a C-alpha step (3.8 Å)
        atoms, new = mover.register_shift(10, direction, 0.5)
        trial[atoms] = new
        step = np.linalg.norm(trial[frame[10:14, 1]] - e.coords[frame[10:14, 1]], axis=1)
        assert np.all((step > 1.2) & (step < 2.6))


def test_moves_shrink_with_the_temperature_scale(energy_factory):
    e = energy_factory()
    rng_hot, rng_cold = np.random.default_rng(5), np.random.default_rng(5)
    mover = AtomicMover(e, AtomicMoves())

    def rms(rng, scale):
        out = []
        for _ in range(200):
            atoms, new = mover(rng, scale)
            out.append(np.sqrt(np.mean(np.sum((new - e.coords[atoms]) ** 2, axis=1))))
        return np.median(out)

    assert rms(rng_cold, 0.25) < 0.5 * rms(rng_hot, 1.0)


# -- pipeline -----------------------------------------------------------------------------------------

def _displaced_helix(native):
    """Ubiquitin with its helix (residues 23-34) turned 8° and moved 2.5 Å off the native."""
    from emforge.refine.emrefiner.fragments import define_fragments, hinged_move

    bb = backbone_arrays(native)
    ss = assign_secondary_structure(bb, states=3)
    frags = define_fragments(ss, bb.chain_index, np.ones(len(ss)))
    helix = next(f for f in frags if f.kind == "H" and f.last - f.first >= 8)
    res = np.repeat(np.arange(native.n_residues), np.diff(np.append(native.residue_starts(), len(native))))
    ca = np.flatnonzero(native.atom_name == "CA")
    atoms, new = hinged_move(native.coords, res, helix, np.radians(8.0) * np.array([0.0, 0.6, 0.8]),
                             native.coords[ca[helix.first]], np.array([2.5, 0.0, 0.0]))
    xyz = native.coords.copy()
    xyz[atoms] = new
    return native.with_coords(xyz), ca[helix.first:helix.last + 1]


def test_refinement_brings_a_displaced_helix_back(ubiquitin, monkeypatch):
    """A short run of the pipeline (fast-preset energy, shortened annealing) moves the displaced helix
    most of the way back to the native and raises the CC; without the OpenMM finish for speed."""
    from emforge.refine.emrefiner import pipeline
    from emforge.refine.emrefiner.samc import AnnealingSchedule

    start, helix_ca = _displaced_helix(ubiquitin)
    target = simulate_map(ubiquitin, None, RESOLUTION_A, voxel_size_A=2.0, margin_A=8.0)
    short = pipeline.Preset(AnnealingSchedule(3, 6, 150, 2.0, 0.01), AnnealingSchedule(1, 6, 150, 1.0, 0.001), 1,
                            pipeline.DENSITY_WEIGHTS)
    monkeypatch.setitem(pipeline.PRESETS, "short", short)
    res = pipeline.refine_emrefiner(start, target, RESOLUTION_A, preset="short", seed=1, relax=False)

    def helix_rmsd(model):
        return float(np.sqrt(np.mean(np.sum((model.coords[helix_ca] - ubiquitin.coords[helix_ca]) ** 2, axis=1))))

    assert helix_rmsd(res.model) < 0.6 * helix_rmsd(start)
    s = res.summary
    assert s["cc_step3"] > s["cc_start"] + 0.01 and s["energy_step3"] < s["energy_start"]
    assert list(res.trajectory["stage"].unique()) == ["step2", "step3"]
    assert len(res.trajectory) == (1 + 3 * 6) + (1 + 1 * 6)
    np.testing.assert_array_equal(res.model.atom_name, start.atom_name)  # same atoms, same order


def test_step3_runs_in_parallel_threads_give_the_same_model(ubiquitin, monkeypatch):
    """The Step-3 runs are independent: two threads return exactly what one does."""
    from emforge.refine.emrefiner import pipeline
    from emforge.refine.emrefiner.samc import AnnealingSchedule

    start, _ = _displaced_helix(ubiquitin)
    target = simulate_map(ubiquitin, None, RESOLUTION_A, voxel_size_A=2.0, margin_A=8.0)
    tiny = pipeline.Preset(AnnealingSchedule(1, 3, 40, 2.0, 0.01), AnnealingSchedule(1, 3, 40, 1.0, 0.001), 2,
                           pipeline.DENSITY_WEIGHTS)
    monkeypatch.setitem(pipeline.PRESETS, "tiny", tiny)
    one = pipeline.refine_emrefiner(start, target, RESOLUTION_A, preset="tiny", seed=4, relax=False, n_jobs=1)
    two = pipeline.refine_emrefiner(start, target, RESOLUTION_A, preset="tiny", seed=4, relax=False, n_jobs=2)
    np.testing.assert_array_equal(one.model.coords, two.model.coords)
    pd.testing.assert_frame_equal(one.trajectory, two.trajectory)


def test_fragment_table_round_trip(ubiquitin):
    from emforge.refine.emrefiner.pipeline import find_fragments, fragments_from_table

    target = simulate_map(ubiquitin, None, RESOLUTION_A, voxel_size_A=2.0, margin_A=8.0)
    found = find_fragments(ubiquitin, target, RESOLUTION_A)
    table = found.table()
    assert list(table["fragment"]) == list(range(1, len(found.fragments) + 1))
    assert fragments_from_table(table, ubiquitin.n_residues) == found.fragments
    assert table.loc[0, "first_residue"].startswith("A:")
    with pytest.raises(InputError, match="does not fit"):
        fragments_from_table(table, 10, "f.tsv")
    with pytest.raises(InputError, match="lacks column"):
        fragments_from_table(table.drop(columns="kind"), ubiquitin.n_residues, "f.tsv")


def test_bad_inputs(ubiquitin):
    from emforge.maps import DensityMap
    from emforge.refine.emrefiner.pipeline import refine_emrefiner

    target = simulate_map(ubiquitin, None, RESOLUTION_A, voxel_size_A=2.0, margin_A=8.0)
    with pytest.raises(InputError, match="preset"):
        refine_emrefiner(ubiquitin, target, RESOLUTION_A, preset="slow")
    with pytest.raises(InputError, match="resolution"):
        refine_emrefiner(ubiquitin, target, 0.0)
    flat = DensityMap(np.zeros_like(target.data), target.voxel_size, target.origin)
    with pytest.raises(InputError, match="zero variance"):
        refine_emrefiner(ubiquitin, flat, RESOLUTION_A)
    water = ubiquitin.select(np.zeros(len(ubiquitin), bool))
    with pytest.raises(InputError, match="no protein"):
        refine_emrefiner(water, target, RESOLUTION_A)


def test_cli_fragments_and_refine(ubiquitin, tmp_path, monkeypatch):
    """`emforge fragments` then `emforge refine --fragments` (annealing shortened, OpenMM finish on):
    outputs written, a bad fragment table is one clear error naming the file, no model written then."""
    from emforge.cli import main
    from emforge.maps import write_map
    from emforge.models import write_model
    from emforge.refine.emrefiner import pipeline
    from emforge.refine.emrefiner.samc import AnnealingSchedule

    start, _ = _displaced_helix(ubiquitin)
    write_model(tmp_path / "start.cif", start)
    write_map(tmp_path / "map.mrc", simulate_map(ubiquitin, None, RESOLUTION_A, voxel_size_A=2.0, margin_A=8.0))
    tiny = pipeline.Preset(AnnealingSchedule(1, 3, 50, 2.0, 0.01), AnnealingSchedule(1, 3, 50, 1.0, 0.001), 1,
                           pipeline.DENSITY_WEIGHTS)
    monkeypatch.setitem(pipeline.PRESETS, "fast", tiny)
    m, f = str(tmp_path / "start.cif"), str(tmp_path / "map.mrc")
    assert main(["fragments", m, f, "-r", "6", "-o", str(tmp_path / "frag.tsv"), "-q"]) == 0
    frag = pd.read_csv(tmp_path / "frag.tsv", sep="\t")
    assert len(frag) >= 4
    out = tmp_path / "refined.cif"
    assert main(["refine", m, f, "-r", "6", "-o", str(out), "--fragments", str(tmp_path / "frag.tsv"),
                 "--trajectory", str(tmp_path / "traj.tsv"), "--summary", str(tmp_path / "s.json"), "-q"]) == 0
    refined = read_model(out)
    assert refined.n_residues == start.n_residues
    assert (tmp_path / "traj.tsv").stat().st_size > 0 and (tmp_path / "s.json").stat().st_size > 0
    frag.loc[0, "last"] = 10_000
    frag.to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    out2 = tmp_path / "never.cif"
    assert main(["refine", m, f, "-r", "6", "-o", str(out2), "--fragments", str(tmp_path / "bad.tsv"), "-q"]) == 2
    assert not out2.exists()
