"""TEMPy-ReFF Gaussian mixture (emforge.refine.gmm) on analytic maps and maps with known widths.

References: Gaussians written out with numpy on the grid (centre, width, amplitude, background
known exactly), and maps simulated from a real chain with per-residue widths chosen here.
"""

from __future__ import annotations

import numpy as np
import pytest

from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.models import read_model
from emforge.refine import gmm
from emforge.simulate import simulate_map

VOXEL_A = 0.8
N_VOX = 40


def _grid():
    g = np.arange(N_VOX) * VOXEL_A
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return x, y, z


def _blob_map(centres, sigmas, intensities, background):
    """Normalised Gaussians, each integrating to its intensity, on a constant background."""
    x, y, z = _grid()
    data = np.full(x.shape, background, dtype=np.float64)
    for c, s, a in zip(centres, sigmas, intensities):
        data += a * (2 * np.pi * s**2) ** -1.5 * np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
                                                         / (2 * s**2))
    return DensityMap(data.astype(np.float32), np.full(3, VOXEL_A), np.zeros(3))


def _iterate(mix, density, n, move=True):
    for _ in range(n):
        step = gmm.em_step(mix, density)
        if move:
            mix.coords_A = step.targets_A
        mix.sigma_A, mix.background, mix.scale = step.sigma_A, step.background, step.scale
    return step


def test_single_blob_recovers_centre_and_width():
    centre, sigma = np.array([15.3, 16.1, 14.7]), 1.4
    density = _blob_map([centre], [sigma], [60.0], 0.001)
    mix = gmm.Mixture(np.array([[14.0, 17.0, 15.5]]), np.array([0.8]), np.array([6.0]), np.array([0]))
    mix.scale, mix.background = gmm.initial_scale_background(mix, density)
    _iterate(mix, density, 60)
    assert np.linalg.norm(mix.coords_A[0] - centre) < 0.01
    assert mix.sigma_A[0] == pytest.approx(sigma, rel=0.02)
    assert mix.scale == pytest.approx(60.0 / 6.0, rel=0.02)
    assert mix.background == pytest.approx(0.001, rel=0.3)


def test_width_about_present_position_adds_the_offset():
    """Eq. 7 as printed: an atom held d Å off an isolated blob of width s gets sigma^2 = s^2 + d^2 / 3,
    the blob's spread about the atom's position (the textbook M step, about the new mean, recovers s
    when positions move too: test_single_blob_recovers_centre_and_width)."""
    centre, sigma = np.array([16.0, 16.0, 16.0]), 1.2
    density = _blob_map([centre], [sigma], [60.0], 1e-6)
    off = centre + np.array([0.9, -0.6, 0.3])
    d2 = float(np.sum((off - centre) ** 2))
    mix = gmm.Mixture(off[None, :].copy(), np.array([1.0]), np.array([6.0]), np.array([0]))
    mix.scale, mix.background = gmm.initial_scale_background(mix, density)
    for _ in range(80):  # positions held: only widths, scale and background move
        step = gmm.em_step(mix, density, width_about="position")
        mix.sigma_A, mix.background, mix.scale = step.sigma_A, step.background, step.scale
    assert mix.sigma_A[0] == pytest.approx(np.sqrt(sigma**2 + d2 / 3), rel=0.02)
    with pytest.raises(InputError, match="width_about"):
        gmm.em_step(mix, density, width_about="mean")


def test_two_overlapping_blobs_split_responsibility_by_amplitude():
    c1, c2 = np.array([15.0, 16.0, 16.0]), np.array([16.5, 16.0, 16.0])  # 1.5 Å apart, sigma 1 Å
    density = _blob_map([c1, c2], [1.0, 1.0], [12.0, 16.0], 0.0001)
    mix = gmm.Mixture(np.array([c1, c2]), np.array([1.0, 1.0]), np.array([6.0, 8.0]), np.array([0, 1]),
                      scale=2.0, background=0.0001)
    step = gmm.em_step(mix, density)
    # each atom's share of the intensity is its amplitude's share (equal widths)
    assert step.weight[0] / step.weight[1] == pytest.approx(6.0 / 8.0, rel=0.005)
    # the true mixture is a fixed point: targets stay, widths stay (4-sigma truncation: < 0.5 %)
    assert np.abs(step.targets_A - np.array([c1, c2])).max() < 0.005
    assert step.sigma_A == pytest.approx([1.0, 1.0], rel=0.005)
    assert step.scale == pytest.approx(2.0, rel=0.005)
    assert step.background == pytest.approx(0.0001, rel=0.05)


def test_residue_average_pools_widths():
    c1, c2 = np.array([15.0, 16.0, 16.0]), np.array([19.0, 16.0, 16.0])
    density = _blob_map([c1, c2], [0.8, 1.6], [6.0, 6.0], 0.0001)
    same = gmm.Mixture(np.array([c1, c2]), np.array([0.8, 1.6]), np.array([6.0, 6.0]), np.array([0, 0]),
                       background=0.0001)
    step = gmm.em_step(same, density)
    assert step.sigma_A[0] == pytest.approx(step.sigma_A[1])
    assert step.sigma_A[0] ** 2 == pytest.approx((step.raw_sigma_A**2).mean(), rel=1e-9)
    apart = gmm.Mixture(same.coords_A, same.sigma_A, same.z, np.array([0, 1]), background=0.0001)
    step = gmm.em_step(apart, density)
    assert step.sigma_A == pytest.approx([0.8, 1.6], rel=0.03)


def test_widths_are_capped():
    density = _blob_map([np.array([16.0, 16.0, 16.0])], [2.4], [6.0], 0.0001)
    mix = gmm.Mixture(np.array([[16.0, 16.0, 16.0]]), np.array([2.4]), np.array([6.0]), np.array([0]),
                      background=0.0001)
    step = gmm.em_step(mix, density, sigma_max_A=1.5)
    assert step.sigma_A[0] == pytest.approx(1.5)
    step = gmm.em_step(mix, density, sigma_min_A=3.0, sigma_max_A=4.0)
    assert step.sigma_A[0] == pytest.approx(3.0)


@pytest.fixture(scope="module")
def crambin(shared_data):
    return read_model(shared_data / "chains" / "1crn_A.pdb.gz")


def test_refine_bfactors_recovers_per_residue_widths(crambin):
    """Map simulated with one width for residues 1-23 and another for 24-46: the refined B follow.

    The "emrefiner" kernel with given widths is a normalised Gaussian per atom carrying its mass,
    and mass / Z = 2 for C, N, O and S: the mixture's own model with scale 2."""
    resolution_A = 3.0
    first_half = crambin.res_seq <= 23
    sigma_true = np.where(first_half, 0.9, 1.5)
    density = simulate_map(crambin, None, resolution_A, "emrefiner", voxel_size_A=1.0, margin_A=8.0,
                           sigma_A=sigma_true, cutoff_sigma=5.0)
    density = density.with_data(density.data + np.float32(0.02 * density.data.max()))
    result = gmm.refine_bfactors(crambin, density, resolution_A)
    b = result.model.b_factor
    sigma_fit = gmm.b_to_sigma(b)
    assert np.allclose(b, gmm.sigma_to_b(result.mixture.sigma_A))
    # interior residues (neighbours of the other half blur the boundary)
    core_a = crambin.res_seq <= 20
    core_b = crambin.res_seq >= 27
    assert np.median(sigma_fit[core_a]) == pytest.approx(0.9, rel=0.1)
    assert np.median(sigma_fit[core_b]) == pytest.approx(1.5, rel=0.1)
    assert result.history["cc"].iloc[-1] > result.history["cc"].iloc[0]
    assert result.history["cc"].iloc[-1] > 0.99
    assert result.mixture.scale == pytest.approx(2.0, rel=0.05)
    # the coordinates do not move in B-factor refinement
    assert np.array_equal(result.model.coords, crambin.coords)


def test_refine_bfactors_bad_input(crambin):
    density = simulate_map(crambin, None, 3.0, "gmm", voxel_size_A=1.0)
    with pytest.raises(InputError, match="resolution"):
        gmm.refine_bfactors(crambin, density, -1.0)
    with pytest.raises(InputError, match="width caps"):
        gmm.refine_bfactors(crambin, density, 3.0, sigma_min_A=2.0, sigma_max_A=1.0)
    far = crambin.with_coords(crambin.coords + 1000.0)
    with pytest.raises(InputError, match="outside the map"):
        gmm.refine_bfactors(far, density, 3.0)


def test_b_sigma_conversion():
    assert gmm.sigma_to_b(1.0) == pytest.approx(8 * np.pi**2)
    assert gmm.b_to_sigma(gmm.sigma_to_b(np.array([0.5, 1.2]))) == pytest.approx([0.5, 1.2])


def test_refine_gmm_moves_a_noisy_model_towards_the_truth(crambin):
    """Crambin with 0.4 Å coordinate noise in a map simulated from the deposited coordinates:
    refinement raises the CCC, moves atoms towards the deposited ones and adds no clashes."""
    pytest.importorskip("openmm")
    pytest.importorskip("pdbfixer")
    from emforge.geometry.clashes import clashscore
    from emforge.geometry.hydrogens import add_riding_hydrogens
    from emforge.refine.reff import refine_gmm

    truth = crambin.without_hydrogens()
    density = simulate_map(truth, None, 3.0, "gmm", voxel_size_A=1.0, margin_A=6.0)
    rng = np.random.default_rng(7)
    noisy = truth.with_coords(truth.coords + rng.normal(scale=0.4 / np.sqrt(3), size=truth.coords.shape))
    result = refine_gmm(noisy, density, 3.0, protocol="fast", max_iterations=4, seed=0)
    out = result.model
    key_in = [f"{r}:{a}" for r, a in zip(truth.residue_index, truth.atom_name)]
    pos = {k: i for i, k in enumerate(f"{r}:{a}" for r, a in zip(out.residue_index, out.atom_name))}
    idx = np.array([pos[k] for k in key_in])
    rmsd_before = np.sqrt(np.mean(np.sum((noisy.coords - truth.coords) ** 2, axis=1)))
    rmsd_after = np.sqrt(np.mean(np.sum((out.coords[idx] - truth.coords) ** 2, axis=1)))
    assert rmsd_after < 0.8 * rmsd_before
    s = result.summary
    assert s["ccc_final"] > s["ccc_start"] + 0.02
    assert len(result.trajectory) >= 1 and result.trajectory["ccc"].max() == pytest.approx(s["ccc_final"])
    assert np.all(out.b_factor > 0) and np.all(out.b_factor <= gmm.sigma_to_b(gmm.SIGMA_MAX_A) + 1e-9)

    def n_clashes(m):
        return clashscore(add_riding_hydrogens(m.without_hydrogens()))[0]["n_clashes"]

    assert n_clashes(out) <= n_clashes(noisy)


def test_cli_bfactors_and_refine_gmm(crambin, tmp_path):
    pytest.importorskip("openmm")
    from emforge.cli import main
    from emforge.maps import write_map
    from emforge.models import write_model

    truth = crambin.without_hydrogens()
    density = simulate_map(truth, None, 3.0, "emrefiner", voxel_size_A=1.0, margin_A=6.0,
                           sigma_A=np.where(truth.res_seq <= 23, 0.9, 1.5))
    write_map(tmp_path / "map.mrc", density)
    write_model(tmp_path / "model.pdb", truth)
    m, f = str(tmp_path / "model.pdb"), str(tmp_path / "map.mrc")
    assert main(["bfactors", m, f, "-r", "3", "-o", str(tmp_path / "b.cif"), "-q"]) == 0
    b = read_model(tmp_path / "b.cif").b_factor
    assert np.median(b[truth.res_seq <= 20]) < np.median(b[truth.res_seq >= 27])
    out = tmp_path / "gmm.cif"
    assert main(["refine", m, f, "-r", "3", "--method", "gmm", "--max-iterations", "2", "-o", str(out),
                 "--trajectory", str(tmp_path / "t.tsv"), "--summary", str(tmp_path / "s.json"), "-q"]) == 0
    assert read_model(out).n_residues == truth.n_residues
    assert (tmp_path / "t.tsv").read_text().startswith("iteration\tccc")
    # options of the other method are refused with one clear error and no output
    bad = tmp_path / "bad.cif"
    assert main(["refine", m, f, "-r", "3", "--method", "gmm", "--no-relax", "-o", str(bad), "-q"]) == 2
    assert not bad.exists()
    assert main(["bfactors", m, str(tmp_path / "missing.mrc"), "-r", "3", "-o", str(bad), "-q"]) == 2
    assert not bad.exists()
