"""Structure comparison (emforge.compare) against independent references.

* TM-score: TM-align (Zhang lab C++ code, through tmtools). With TM-align's own output
  alignment held fixed, TM-align's final TM-score is the TMscore search over exactly those
  pairs, so ours must reproduce it; with our correspondence passed to TM-align as a fixed
  alignment (its ``-I`` mode) the same holds whenever TM-align keeps every pair.
* RMSD: gemmi.superpose_positions.
* Analytic cases: rigid copies, a block moved far away, an interleaved block moved 5 Å.
* Residue correspondence on real files: numbering, renumbered and gapped copies, chain names.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import gemmi
import numpy as np
import pytest

from emforge.compare import (
    compare_models,
    gdt,
    residue_correspondence,
    rmsd_after_superposition,
    tm_d0,
    tm_score,
)
from emforge.errors import InputError
from emforge.models import AtomModel, RigidTransform, read_model

tmtools = pytest.importorskip("tmtools", reason="tmtools (TM-align) is needed as the TM-score reference")

PAIRS = {  # model (chain 1) -> reference (chain 2), relative to the shared data folder
    "adk": ("pairs/adk/1ake.pdb", "pairs/adk/4akeA.pdb"),
    "mbp": ("pairs/mbp/1omp.pdb", "pairs/mbp/1anf.pdb"),
    "2FJG": ("pairs/antibody_antigen/2FJG_l_u.pdb", "pairs/antibody_antigen/2FJG_l_b.pdb"),
    "3V6Z": ("pairs/antibody_antigen/3V6Z_l_u.pdb", "pairs/antibody_antigen/3V6Z_l_b.pdb"),
    "6A0Z": ("pairs/antibody_antigen/6A0Z_l_u.pdb", "pairs/antibody_antigen/6A0Z_l_b.pdb"),
    "6AL0": ("pairs/antibody_antigen/6AL0_l_u.pdb", "pairs/antibody_antigen/6AL0_l_b.pdb"),
    "6EY6": ("pairs/antibody_antigen/6EY6_l_u.pdb", "pairs/antibody_antigen/6EY6_l_b.pdb"),
}


# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def load(shared_data):
    cache: dict[str, AtomModel] = {}

    def get(rel: str) -> AtomModel:
        if rel not in cache:
            path = shared_data / rel
            if not path.exists():
                pytest.skip(f"shared test data not available: {path}")
            cache[rel] = read_model(path)
        return cache[rel]
    return get


def _ca(model: AtomModel) -> tuple[np.ndarray, str]:
    ca = model.calpha()
    return ca.coords, "".join(ca.residue_table()["one_letter"])


def _aligned_pairs(seq_a: str, seq_b: str) -> tuple[np.ndarray, np.ndarray]:
    """Residue indices of the non-gap columns of two aligned strings."""
    ia, ib = [], []
    i = j = 0
    for a, b in zip(seq_a, seq_b):
        if a != "-" and b != "-":
            ia.append(i)
            ib.append(j)
        i += a != "-"
        j += b != "-"
    return np.asarray(ia), np.asarray(ib)


def _alignment_strings(sx: str, sy: str, ix, iy) -> list[str]:
    """Gapped strings (TM-align's fixed-alignment input) for monotonic index pairs."""
    ax, ay = [], []
    i = j = 0
    for a, b in zip(ix, iy):
        while i < a:
            ax.append(sx[i]), ay.append("-")
            i += 1
        while j < b:
            ax.append("-"), ay.append(sy[j])
            j += 1
        ax.append(sx[i]), ay.append(sy[j])
        i, j = i + 1, j + 1
    ax += list(sx[i:]) + ["-"] * (len(sy) - j)
    ay += ["-"] * (len(sx) - i) + list(sy[j:])
    return ["".join(ax), "".join(ay)]


def _tm_of(transform: RigidTransform, x, y, n_ref: int) -> float:
    d = np.linalg.norm(transform.apply(x) - y, axis=1)
    return float(np.sum(1.0 / (1.0 + (d / tm_d0(n_ref)) ** 2)) / n_ref)


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _perturbed_copy(xyz: np.ndarray, seed: int = 7) -> np.ndarray:
    """Rigidly moved copy with 1 Å noise and one 40-residue segment shifted by 6 Å."""
    rng = np.random.default_rng(seed)
    moved = xyz + rng.normal(0.0, 1.0, xyz.shape)
    moved[120:160] += (0.0, 6.0, 0.0)
    return moved @ _random_rotation(rng).T + rng.normal(0, 20, 3)


# -- TM-score against TM-align ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PAIRS) + ["adk_perturbed"])
def test_tm_score_matches_tmalign_on_its_alignment(name, load):
    if name == "adk_perturbed":
        y, sy = _ca(load(PAIRS["adk"][1]))
        x, sx = _perturbed_copy(y), sy
    else:
        (x, sx), (y, sy) = (_ca(load(p)) for p in PAIRS[name])
    ref = tmtools.tm_align(x, y, sx, sy)
    ix, iy = _aligned_pairs(ref.seqxA, ref.seqyA)
    assert len(ix) >= 50
    ours = tm_score(x[ix], y[iy], n_reference=len(y))
    assert ours.tm_score == pytest.approx(ref.tm_norm_chain2, abs=1e-3)
    assert ours.n_aligned == len(ix) and ours.n_reference == len(y)
    # normalised by chain 1 (other L, other d0) it must match TM-align's other score
    assert tm_score(x[ix], y[iy], n_reference=len(x)).tm_score == pytest.approx(ref.tm_norm_chain1, abs=1e-3)
    # the transform maps the model onto the reference and achieves the score
    assert _tm_of(ours.transform, x[ix], y[iy], len(y)) == pytest.approx(ours.tm_score, abs=1e-9)


@pytest.mark.parametrize("n", [12, 21, 22, 40])
def test_tm_score_short_chains_follow_tmalign_d0(n, load):
    """d0 = 0.5 Å up to L = 21, Zhang's formula above: checked through TM-align on short pieces."""
    y, seq = _ca(load(PAIRS["adk"][1]))
    x = _ca(load(PAIRS["adk"][0]))[0]
    x, y, seq = x[100:100 + n], y[100:100 + n] + np.random.default_rng(n).normal(0, 1.0, (n, 3)), seq[100:100 + n]
    ref = tmtools.tm_align(x, y, seq, seq, [seq, seq])
    ix, iy = _aligned_pairs(ref.seqxA, ref.seqyA)
    assert tm_score(x[ix], y[iy], n_reference=n).tm_score == pytest.approx(ref.tm_norm_chain2, abs=1e-3)


@pytest.mark.parametrize("name", list(PAIRS))
def test_compare_models_matches_tmalign_with_our_correspondence(name, load):
    """compare_models (sequence-based pairs) vs TM-align held to the same pairs (-I)."""
    model, reference = (load(p) for p in PAIRS[name])
    corr = residue_correspondence(model, reference)
    assert np.all(np.diff(corr.model_index) > 0), "single-order correspondence expected for these pairs"
    (x, sx), (y, sy) = _ca(model), _ca(reference)
    ref = tmtools.tm_align(x, y, sx, sy, _alignment_strings(sx, sy, corr.model_index, corr.reference_index))
    ix, iy = _aligned_pairs(ref.seqxA, ref.seqyA)
    # TM-align drops pairs farther than its d8 cutoff; the scores are comparable only if none was dropped
    assert np.array_equal(ix, corr.model_index) and np.array_equal(iy, corr.reference_index)
    result = compare_models(model, reference)
    assert result["tm_score"] == pytest.approx(ref.tm_norm_chain2, abs=1e-3)
    assert result["n_aligned"] == corr.n_pairs and result["n_reference"] == len(y)
    assert result["correspondence"] == corr.method
    # RMSD over all pairs (TM-align reports the RMSD over the same pairs after its own fit)
    assert result["rmsd_A"] <= ref.rmsd + 1e-6


# -- RMSD against gemmi -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["adk", "mbp", "6EY6"])
def test_rmsd_matches_gemmi(name, load):
    model, reference = (load(p) for p in PAIRS[name])
    corr = residue_correspondence(model, reference)
    x = model.calpha().coords[corr.model_index]
    y = reference.calpha().coords[corr.reference_index]
    sup = gemmi.superpose_positions([gemmi.Position(*p) for p in y], [gemmi.Position(*p) for p in x])
    assert rmsd_after_superposition(x, y) == pytest.approx(sup.rmsd, abs=1e-6)
    assert compare_models(model, reference)["rmsd_A"] == pytest.approx(sup.rmsd, abs=1e-6)


# -- analytic cases -----------------------------------------------------------------------------

def test_tm_d0_values():
    assert tm_d0(5) == tm_d0(15) == tm_d0(21) == 0.5
    assert tm_d0(22) == pytest.approx(1.24 * 7 ** (1 / 3) - 1.8)
    assert tm_d0(100) == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert tm_d0(300) == pytest.approx(1.24 * 285 ** (1 / 3) - 1.8)


def test_rigid_copy_scores_perfectly(load):
    y = _ca(load(PAIRS["mbp"][1]))[0]
    rng = np.random.default_rng(3)
    rot, shift = _random_rotation(rng), np.array([12.0, -40.0, 7.5])
    x = y @ rot.T + shift
    result = tm_score(x, y)
    assert result.tm_score == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(result.transform.apply(x), y, atol=1e-8)
    g = gdt(x, y, cutoffs_A=(0.5, 1, 2, 4, 8))
    assert g["gdt_ts"] == g["gdt_ha"] == 1.0
    assert all(g[f"fraction_within_{c:g}A"] == 1.0 for c in (0.5, 1, 2, 4, 8))
    assert rmsd_after_superposition(x, y) == pytest.approx(0.0, abs=1e-8)


def test_block_moved_far_away(load):
    """70% of the residues exact, the rest 1000 Å away: no superposition can catch both sets."""
    y = _ca(load(PAIRS["adk"][1]))[0]
    n, n_keep = len(y), 150
    x = y.copy()
    x[n_keep:] += (600.0, -800.0, 0.0)
    d0 = tm_d0(n)
    expected_tm = (n_keep + (n - n_keep) / (1 + (1000.0 / d0) ** 2)) / n
    result = tm_score(x, y)
    assert result.tm_score == pytest.approx(expected_tm, abs=1e-9)
    assert np.allclose(result.transform.apply(x[:n_keep]), y[:n_keep], atol=1e-8)
    g = gdt(x, y)
    for c in (1, 2, 4, 8):
        assert g[f"fraction_within_{c}A"] == pytest.approx(n_keep / n, abs=1e-12)
    assert g["gdt_ts"] == pytest.approx(n_keep / n) and g["gdt_ha"] == pytest.approx(n_keep / n)
    # normalised by a longer reference (missing residues count as misses)
    assert gdt(x, y, n_reference=2 * n)["gdt_ts"] == pytest.approx(n_keep / (2 * n))
    assert tm_score(x, y, n_reference=2 * n).d0_A == pytest.approx(tm_d0(2 * n))


def test_interleaved_block_moved_5A(load):
    """Every residue i with i % 5 in {0, 1} moved by 5 Å: neighbours 3.8 Å apart cannot be split by a
    rigid motion, so under 1 and 2 Å only the unmoved 60% can be caught (translating by half the
    shift puts everything at 2.5 Å, under 4 Å)."""
    y = _ca(load(PAIRS["adk"][1]))[0]
    n = len(y)
    moved = np.isin(np.arange(n) % 5, (0, 1))
    x = y.copy()
    x[moved] += (3.0, 4.0, 0.0)
    frac_fixed = float(np.mean(~moved))
    g = gdt(x, y, cutoffs_A=(0.5, 1, 2, 4, 8))
    assert g["fraction_within_0.5A"] == g["fraction_within_1A"] == g["fraction_within_2A"] == frac_fixed
    assert g["fraction_within_4A"] == g["fraction_within_8A"] == 1.0
    assert g["gdt_ts"] == pytest.approx((2 * frac_fixed + 2) / 4)
    assert g["gdt_ha"] == pytest.approx((3 * frac_fixed + 1) / 4)
    # TM-score: bounded by the unmoved superposition and the best pure translation, and equal to
    # TM-align's on the same (identity) alignment
    d0 = tm_d0(n)
    def f(d):
        return 1.0 / (1.0 + (d / d0) ** 2)

    s = np.linspace(0.0, 1.0, 10001)
    best_translation = np.max(frac_fixed * f(5 * s) + (1 - frac_fixed) * f(5 * (1 - s)))
    tm = tm_score(x, y).tm_score
    assert frac_fixed + (1 - frac_fixed) * f(5.0) <= tm <= best_translation + 1e-3
    seq = "A" * n
    assert tm == pytest.approx(tmtools.tm_align(x, y, seq, seq, [seq, seq]).tm_norm_chain2, abs=1e-3)


def test_gdt_fractions_are_monotonic_and_cover_the_tm_superposition(load):
    (x, _), (y, _) = (_ca(load(p)) for p in PAIRS["adk"])
    cuts = (0.5, 1, 2, 3, 4, 6, 8)
    g = gdt(x, y, cutoffs_A=cuts)
    fr = [g[f"fraction_within_{c:g}A"] for c in cuts]
    assert all(a <= b for a, b in itertools.pairwise(fr))
    d = np.linalg.norm(tm_score(x, y).transform.apply(x) - y, axis=1)
    for c, f in zip(cuts, fr):
        assert f >= np.mean(d < c) - 1e-12
    assert g["gdt_ts"] == pytest.approx(np.mean([fr[1], fr[2], fr[4], fr[6]]))


def test_bad_coordinate_input():
    x = np.zeros((5, 3))
    with pytest.raises(ValueError):
        tm_score(x, np.zeros((4, 3)))
    with pytest.raises(ValueError):
        tm_score(x[:2], x[:2])
    with pytest.raises(ValueError):
        tm_score(x, x, n_reference=3)
    with pytest.raises(ValueError):
        gdt(x, x, cutoffs_A=(1, -2))


# -- residue correspondence ---------------------------------------------------------------------

def test_numbering_pairs_adk_by_residue_number(load):
    model, reference = (load(p) for p in PAIRS["adk"])
    for method in ("numbering", "auto"):
        corr = residue_correspondence(model, reference, method)
        assert corr.method == "numbering"
        assert corr.n_pairs == 214 and corr.n_reference == 214
        assert np.array_equal(model.calpha().res_seq[corr.model_index],
                              reference.calpha().res_seq[corr.reference_index])
        assert corr.sequence_identity == 1.0


def test_renumbered_copy_falls_back_to_alignment(load):
    reference = load(PAIRS["adk"][1])
    model = dataclasses.replace(reference, res_seq=reference.res_seq + 100)
    by_number = residue_correspondence(model, reference, "numbering")   # pairs residue i with i + 100
    assert by_number.n_pairs == 114 and by_number.sequence_identity < 0.2
    with pytest.raises(InputError, match="residue pair"):
        far = dataclasses.replace(reference, res_seq=reference.res_seq + 1000)
        residue_correspondence(far, reference, "numbering")
    corr = residue_correspondence(model, reference, "auto")
    assert corr.method == "alignment"
    assert np.array_equal(corr.model_index, np.arange(214))
    assert np.array_equal(corr.reference_index, np.arange(214))
    result = compare_models(model, reference)
    assert result["tm_score"] == pytest.approx(1.0) and result["correspondence"] == "alignment"


def test_renamed_chain_pairs_by_alignment(load):
    reference = load(PAIRS["adk"][1])
    model = dataclasses.replace(reference, chain_id=np.full(len(reference), "Z", dtype="U4"))
    corr = residue_correspondence(model, reference)
    assert corr.method == "alignment" and corr.n_pairs == 214


def test_deletion_is_aligned_to_the_right_residues(load):
    reference = load(PAIRS["adk"][0])
    res_seq = reference.res_seq
    model = reference.select((res_seq < 60) | (res_seq > 71))      # 12 residues cut from the middle
    moved = model.with_coords(model.coords + (5.0, 0.0, -3.0))
    corr = residue_correspondence(moved, reference, "alignment")
    assert corr.n_pairs == 214 - 12 and corr.method == "alignment"
    assert np.array_equal(moved.calpha().res_seq[corr.model_index],
                          reference.calpha().res_seq[corr.reference_index])
    result = compare_models(moved, reference, "alignment")
    assert result["rmsd_A"] == pytest.approx(0.0, abs=1e-6)
    assert result["tm_score"] == pytest.approx(202 / 214, abs=1e-9)   # normalised by the reference
    assert result["gdt_ts"] == pytest.approx(202 / 214, abs=1e-9)


def test_shifted_numbering_loses_to_alignment(load):
    """6A0Z: the unbound file numbers a few loops differently; auto must align sequences."""
    model, reference = (load(p) for p in PAIRS["6A0Z"])
    by_number = residue_correspondence(model, reference, "numbering")
    assert by_number.sequence_identity < 1.0
    corr = residue_correspondence(model, reference)
    assert corr.method == "alignment" and corr.sequence_identity == 1.0
    assert corr.n_pairs > by_number.n_pairs


def test_chains_with_other_ids_pair_by_sequence(load):
    """2FJG: a homodimer named A, B in one file and V, W in the other."""
    model, reference = (load(p) for p in PAIRS["2FJG"])
    corr = residue_correspondence(model, reference)
    assert corr.method == "alignment" and corr.sequence_identity == 1.0
    m_chain = model.calpha().chain_id[corr.model_index]
    r_chain = reference.calpha().chain_id[corr.reference_index]
    assert set(zip(m_chain.tolist(), r_chain.tolist())) == {("A", "V"), ("B", "W")}


def test_too_few_pairs_is_an_input_error(load):
    reference = load(PAIRS["adk"][1])
    tiny = reference.select(reference.residue_index < 2)
    with pytest.raises(InputError, match="at least 3"):
        compare_models(tiny, reference)
    with pytest.raises(ValueError):
        residue_correspondence(reference, reference, "by-guess")


def test_compare_models_is_json_ready(load):
    model, reference = (load(p) for p in PAIRS["adk"])
    result = compare_models(model, reference)
    again = json.loads(json.dumps(result))
    assert again == result
    assert set(result) >= {"tm_score", "rmsd_A", "gdt_ts", "gdt_ha", "n_aligned", "n_reference", "d0_A",
                           "correspondence"}
    assert 0 < result["gdt_ha"] <= result["gdt_ts"] <= 1 and 0 < result["tm_score"] <= 1
    assert result["d0_A"] == pytest.approx(tm_d0(214))
