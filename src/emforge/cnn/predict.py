"""C-alpha prediction end to end: probability map, greedy peaks, C-alpha model and its scores.

One call (:func:`predict_calpha`) serves the CLI (``emforge cnn predict``) and the workflow rule
``cnn_predict``; :func:`score_against_reference` adds CRscore (paper 003, Eq. 1) and the C-alpha
RMSD of the matched pairs when a reference model is known.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from emforge.cnn import TILE_VOX
from emforge.cnn.infer import predict_probability, resolve_device
from emforge.cnn.network import CAlphaNet
from emforge.cnn.peaks import EXCLUSION_A, THRESHOLD, Peaks, peaks_to_model, pick_peaks
from emforge.compare import crscore
from emforge.errors import InputError
from emforge.maps import DensityMap
from emforge.models import AtomModel

log = logging.getLogger(__name__)

#: Matched pairs farther apart than this (Å) do not count in the C-alpha RMSD of the summary.
MATCH_DISTANCE_A = 3.0


@dataclass(frozen=True, eq=False)
class CAlphaPrediction:
    """Result of :func:`predict_calpha`.

    Attributes
    ----------
    probability : DensityMap, C-alpha probability (0..1) on the input map's grid
    peaks : Peaks, picked C-alphas (descending probability)
    model : AtomModel, one CA atom per peak, probability in the B-factor column
    summary : dict, counts, probability range, device, timings (s)
    """

    probability: DensityMap
    peaks: Peaks
    model: AtomModel
    summary: dict


def predict_calpha(density: DensityMap, net: CAlphaNet, *, n_residues: int | None = None,
                   threshold: float = THRESHOLD, exclusion_A: float = EXCLUSION_A, tile_vox: int | None = TILE_VOX,
                   device: str = "auto", batch_size: int = 1) -> CAlphaPrediction:
    """Predict the C-alpha probability of ``density`` and pick its peaks (paper 003).

    Parameters
    ----------
    density : DensityMap
        The map, any grid (resampled internally to the network's voxel size).
    net : CAlphaNet
        Trained network (:func:`emforge.cnn.train.load_weights`).
    n_residues : int, optional
        Sequence length L: at least L peaks, up to 1.2 L while the probability exceeds ``threshold``.
        Without it, every peak above ``threshold``.
    threshold, exclusion_A : peak probability threshold and minimum peak distance (Å).
    tile_vox, device, batch_size : inference tiling (1.5 Å voxels), torch device, tiles per pass.

    Raises
    ------
    InputError
        The map is constant, or no voxel exceeds ``threshold`` and no ``n_residues`` was given.
    """
    if not float(np.std(density.data)) > 0:
        raise InputError("map has zero variance (every voxel has the same value)")
    if n_residues is not None and n_residues < 1:
        raise InputError(f"sequence length must be >= 1, got {n_residues}")
    dev = resolve_device(device)
    t0 = time.perf_counter()
    prob = predict_probability(density, net, tile_vox=tile_vox, device=dev, batch_size=batch_size)
    t_prob = time.perf_counter() - t0
    peaks = pick_peaks(prob, n_min=n_residues, threshold=threshold, exclusion_A=exclusion_A)
    if len(peaks) == 0:
        raise InputError(f"no voxel of the predicted C-alpha probability exceeds {threshold:g}; "
                         "give the sequence to pick one peak per residue whatever the probability")
    p = peaks.probability
    summary = {
        "n_peaks": len(peaks), "n_residues": n_residues, "n_above_threshold": int((p > threshold).sum()),
        "threshold": float(threshold), "exclusion_A": float(exclusion_A), "probability_min": float(p.min()),
        "probability_median": float(np.median(p)), "probability_max": float(p.max()), "device": str(dev),
        "tile_vox": tile_vox,
        "timings_s": {"probability": t_prob, "total": time.perf_counter() - t0},
    }
    log.info("%d C-alpha peaks (%s residues expected), probability %.2f-%.2f, %.1f s on %s", len(peaks),
             n_residues if n_residues is not None else "no", peaks.probability.min(), peaks.probability.max(),
             summary["timings_s"]["total"], dev)
    return CAlphaPrediction(prob, peaks, peaks_to_model(peaks.xyz_A, peaks.probability), summary)


def reference_calphas(reference: AtomModel) -> np.ndarray:
    """(N, 3) Å C-alpha positions of a reference model's protein residues."""
    ca = reference.coords[(reference.atom_name == "CA") & (reference.element == "C")]
    if len(ca) == 0:
        raise InputError("reference model has no C-alpha atoms")
    return ca


def calpha_scores(predicted_xyz_A: np.ndarray, native_xyz_A: np.ndarray,
                  match_distance_A: float = MATCH_DISTANCE_A) -> dict:
    """CRscore (paper 003, Eq. 1) of predicted C-alphas against native ones, plus matched-pair numbers.

    Both are (N, 3) Å arrays, unordered. Returns ``crscore``, ``n_reference``, ``n_matched`` (pairs
    within ``match_distance_A``), ``matched_fraction`` (of the native C-alphas), ``matched_rmsd_A``
    (RMS distance of those pairs, NaN when none) and ``match_distance_A``.
    """
    pred = np.asarray(predicted_xyz_A, dtype=np.float64).reshape(-1, 3)
    native = np.asarray(native_xyz_A, dtype=np.float64).reshape(-1, 3)
    close = crscore(pred, native, max_pair_distance_A=match_distance_A)
    return {"crscore": float(crscore(pred, native)["crscore"]), "n_reference": int(len(native)),
            "n_matched": int(close["n_pairs"]), "matched_fraction": float(close["n_pairs"] / len(native)),
            "matched_rmsd_A": float(close["pair_rmsd_A"]), "match_distance_A": float(match_distance_A)}


def score_against_reference(xyz_A: np.ndarray, reference: AtomModel,
                            match_distance_A: float = MATCH_DISTANCE_A) -> dict:
    """:func:`calpha_scores` of predicted C-alphas against a reference model's C-alphas."""
    return calpha_scores(xyz_A, reference_calphas(reference), match_distance_A)
