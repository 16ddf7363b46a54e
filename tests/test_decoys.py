"""Normal-mode decoys (emforge.decoys) against independent references.

* ANM: analytic properties of the Hessian (symmetry, translation invariance, exactly six
  zero modes from a full LAPACK eigendecomposition) and of the returned modes
  (orthonormal, orthogonal to the rigid-body translations and rotations built here).
* deform: a rigid-body C-alpha field must move every atom by that rigid transform.
* decoys: TM-score checked against TM-align (tmtools), RMSD against gemmi, bond lengths,
  C-alpha contacts and peptide bonds with numpy/scipy distances.
"""

from __future__ import annotations

import dataclasses

import gemmi
import numpy as np
import pytest
from scipy.spatial.distance import pdist

from emforge import decoys
from emforge.compare import tm_score
from emforge.decoys import anm_hessian, anm_modes, decoy_set, deform, normal_mode_decoy
from emforge.errors import InputError
from emforge.models import AtomModel, read_model

tmtools = pytest.importorskip("tmtools", reason="tmtools (TM-align) is needed as the TM-score reference")

CHAIN = "chains/1a7g_E.pdb.gz"  # 82 residues


@pytest.fixture(scope="module")
def native(shared_data):
    path = shared_data / CHAIN
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    return read_model(path)


@pytest.fixture(scope="module")
def made(native):
    """Decoys by target TM-score, made once for the module."""
    return {t: normal_mode_decoy(native, t, seed=11) for t in (0.5, 0.7, 0.85)}


def _rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _rigid_basis(ca: np.ndarray) -> np.ndarray:
    """(6, 3N) orthonormal basis of the three translations and three infinitesimal rotations."""
    n = len(ca)
    c = ca - ca.mean(axis=0)
    vecs = [np.tile(np.eye(3)[k], n) for k in range(3)]
    vecs += [np.cross(np.eye(3)[k], c).ravel() for k in range(3)]
    q, _ = np.linalg.qr(np.array(vecs).T)
    return q.T


def _ca_and_seq(model):
    ca = model.calpha()
    return ca.coords, "".join(model.residue_table()["one_letter"])


# -- anisotropic network model ------------------------------------------------------------------

def test_anm_hessian_analytic_properties(native):
    ca = native.calpha().coords
    n = len(ca)
    h = anm_hessian(ca, cutoff_A=15.0)
    assert h.shape == (3 * n, 3 * n)
    np.testing.assert_allclose(h, h.T, atol=1e-12)
    # translation invariance: every 3x3 row-block sum vanishes
    np.testing.assert_allclose(h.reshape(n, 3, n, 3).sum(axis=2), 0.0, atol=1e-10)
    w = np.linalg.eigvalsh(h)
    scale = w.max()
    assert np.count_nonzero(np.abs(w) < 1e-9 * scale) == 6
    assert w[6] > 1e-4 * scale and w.min() > -1e-9 * scale
    # the sparse form is the same matrix
    np.testing.assert_allclose(anm_hessian(ca, sparse=True).toarray(), h, atol=1e-12)


def test_anm_modes_orthonormal_and_free_of_rigid_motions(native):
    ca = native.calpha().coords
    n = len(ca)
    eig, modes = anm_modes(ca, n_modes=20)
    assert eig.shape == (20,) and modes.shape == (20, n, 3)
    v = modes.reshape(20, -1)
    np.testing.assert_allclose(v @ v.T, np.eye(20), atol=1e-8)
    np.testing.assert_allclose(v @ _rigid_basis(ca).T, 0.0, atol=1e-7)
    # eigenvalues are the 7th..26th of the full decomposition, and the modes its eigenvectors
    h = anm_hessian(ca)
    np.testing.assert_allclose(eig, np.linalg.eigvalsh(h)[6:26], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.einsum("ki,ij,kj->k", v, h, v), eig, rtol=1e-8)


def test_anm_modes_sparse_solver_matches_dense(native, monkeypatch):
    ca = native.calpha().coords
    eig, modes = anm_modes(ca, n_modes=8)
    monkeypatch.setattr(decoys, "DENSE_MAX_RESIDUES", 10)
    eig_s, modes_s = anm_modes(ca, n_modes=8)
    np.testing.assert_allclose(eig_s, eig, rtol=1e-6)
    # same subspace (individual vectors may mix where eigenvalues are close)
    a, b = modes.reshape(8, -1), modes_s.reshape(8, -1)
    np.testing.assert_allclose(np.linalg.svd(a @ b.T, compute_uv=False), 1.0, atol=1e-5)


# -- deform -------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop_ca", [False, True])
def test_deform_rigid_field_moves_every_atom_rigidly(native, drop_ca):
    model = native
    if drop_ca:  # residues 0 and 40 without a C-alpha move with a neighbour's transform
        starts = native.residue_starts()
        lost = np.isin(native.residue_index, native.residue_index[starts[[0, 40]]]) & (native.atom_name == "CA")
        model = native.select(~lost)
    rng = np.random.default_rng(3)
    rot, t = _rotation(rng), rng.normal(0.0, 10.0, 3)
    ca = model.calpha().coords
    moved = deform(model, ca @ rot.T + t - ca)
    np.testing.assert_allclose(moved.coords, model.coords @ rot.T + t, atol=1e-6)
    assert list(moved.atom_name) == list(model.atom_name)


def test_non_protein_atoms_are_dropped(native):
    extra = {f.name: getattr(native, f.name)[-1:].copy() for f in dataclasses.fields(native)}
    extra.update(coords=native.coords[-1:] + 30.0, res_name=np.array(["HOH"]), atom_name=np.array(["O"]),
                 element=np.array(["O"]), is_het=np.array([True]), residue_index=extra["residue_index"] + 1)
    with_water = AtomModel(**{k: np.concatenate([getattr(native, k), v]) for k, v in extra.items()})
    ca = native.calpha().coords
    moved = deform(with_water, np.ones_like(ca))
    assert len(moved) == len(native) and "HOH" not in set(moved.res_name)
    np.testing.assert_allclose(moved.coords, native.coords + 1.0, atol=1e-9)


def test_deform_rejects_wrong_shape(native):
    with pytest.raises(InputError, match="displacement_ca"):
        deform(native, np.zeros((5, 3)))


# -- decoys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [0.5, 0.7, 0.85])
def test_decoy_reaches_target_tm_score(native, made, target):
    decoy, info = made[target]
    x, seq = _ca_and_seq(decoy)
    y, seq_native = _ca_and_seq(native)
    assert seq == seq_native
    ours = tm_score(x, y).tm_score
    assert abs(ours - target) <= 0.01 and info["tm_score"] == pytest.approx(ours, abs=1e-9)
    ref = tmtools.tm_align(x, y, seq, seq)
    assert ours - 0.02 <= ref.tm_norm_chain2 <= 1.0
    # RMSD after superposition, against gemmi
    gref = gemmi.superpose_positions([gemmi.Position(*p) for p in y], [gemmi.Position(*p) for p in x])
    assert info["rmsd_A"] == pytest.approx(gref.rmsd, abs=1e-6)
    assert info["seed"] == 11 and info["n_modes"] == 20


@pytest.mark.parametrize("target", [0.5, 0.85])
def test_decoy_keeps_residues_and_local_geometry(native, made, target):
    decoy, _ = made[target]
    assert decoy.n_residues == native.n_residues
    assert list(decoy.atom_name) == list(native.atom_name) and list(decoy.res_name) == list(native.res_name)
    # intra-residue bond lengths (atoms < 2 Å apart in the native) unchanged: residues are rigid
    res = native.residue_index
    i, j = np.triu_indices(len(native), 1)
    same = (res[i] == res[j]) & (np.linalg.norm(native.coords[i] - native.coords[j], axis=1) < 2.0)
    i, j = i[same], j[same]
    assert len(i) > 5 * native.n_residues
    np.testing.assert_allclose(np.linalg.norm(decoy.coords[i] - decoy.coords[j], axis=1),
                               np.linalg.norm(native.coords[i] - native.coords[j], axis=1), atol=1e-6)
    # no new C-alpha pair closer than 3 Å
    x, y = decoy.calpha().coords, native.calpha().coords
    assert not np.any((pdist(x) < 3.0) & (pdist(y) >= 3.0))
    # peptide bonds C(i)-N(i+1) stay near their native length (the stepwise default)
    c = np.flatnonzero(native.atom_name == "C")[:-1]
    nn = np.flatnonzero(native.atom_name == "N")[1:]
    d0 = np.linalg.norm(native.coords[c] - native.coords[nn], axis=1)
    d = np.linalg.norm(decoy.coords[c] - decoy.coords[nn], axis=1)
    assert np.mean(np.abs(d - d0)[d0 < 2.0]) < 0.5


def test_decoy_is_reproducible_per_seed(native, made):
    decoy, info = made[0.85]
    again, info2 = normal_mode_decoy(native, 0.85, seed=11)
    np.testing.assert_array_equal(again.coords, decoy.coords)
    other, _ = normal_mode_decoy(native, 0.85, seed=12)
    assert np.abs(other.coords - decoy.coords).max() > 0.5


def test_linear_method_reaches_target(native):
    decoy, info = normal_mode_decoy(native, 0.8, seed=5, method="linear")
    x, y = decoy.calpha().coords, native.calpha().coords
    assert abs(tm_score(x, y).tm_score - 0.8) <= 0.01 and info["method"] == "linear"


def test_decoy_set_is_independent_of_n(native):
    two = decoy_set(native, 2, tm_range=(0.7, 0.85), seed=4)
    four = decoy_set(native, 4, tm_range=(0.7, 0.85), seed=4)
    assert len(two) == 2 and len(four) == 4
    for (a, ia), (b, ib) in zip(two, four):
        np.testing.assert_array_equal(a.coords, b.coords)
        assert ia["tm_target"] == ib["tm_target"]
    y = native.calpha().coords
    targets = [info["tm_target"] for _, info in four]
    assert len(set(targets)) == 4 and all(0.7 <= t <= 0.85 for t in targets)
    for decoy, info in four:
        assert abs(tm_score(decoy.calpha().coords, y).tm_score - info["tm_target"]) <= 0.01


def test_bad_input_raises(native):
    first9 = np.isin(native.residue_index, np.unique(native.residue_index)[:9])
    with pytest.raises(InputError, match="at least 10 C-alpha"):
        normal_mode_decoy(native.select(first9), 0.7, seed=0)
    with pytest.raises(InputError, match="tm_target"):
        normal_mode_decoy(native, 1.2, seed=0)
    with pytest.raises(InputError, match="method"):
        normal_mode_decoy(native, 0.7, seed=0, method="nonlinear")
    with pytest.raises(InputError, match="tm_range"):
        decoy_set(native, 2, tm_range=(0.9, 0.5), seed=0)


def test_chain_with_gaps_stays_one_network(shared_data):
    """1fak_A falls into three parts at 15 Å (missing segments): plain ANM refuses it, decoys join chain neighbours."""
    path = shared_data / "chains/1fak_A.pdb.gz"
    if not path.exists():
        pytest.skip(f"shared test data not available: {path}")
    model = read_model(path)
    y = model.calpha().coords
    with pytest.raises(InputError, match="disconnected"):
        anm_modes(y)
    decoy, info = normal_mode_decoy(model, 0.8, seed=1)
    assert abs(tm_score(decoy.calpha().coords, y).tm_score - 0.8) <= 0.01
