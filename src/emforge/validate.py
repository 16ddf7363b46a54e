"""Validation of a model: fit to its map and, when given, agreement with a reference.

One entry point shared by the CLI (``emforge validate``), the workflow's
``validate`` rule and the tests. More metric families (geometry, SMOC, Q-score,
FSC) join this record as they land; keys are stable and carry units.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from emforge.compare import compare_models
from emforge.maps import read_map
from emforge.models import read_model
from emforge.scores import LOCAL_CC_RADIUS_A, score_model_map

log = logging.getLogger(__name__)


def validate_model(model_path: str | os.PathLike, map_path: str | os.PathLike, resolution_A: float,
                   reference_path: str | os.PathLike | None = None, kernel: str = "emrefiner",
                   mask_radius_A: float | None = None, local_radius_A: float = LOCAL_CC_RADIUS_A
                   ) -> tuple[dict, pd.DataFrame]:
    """Score ``model_path`` against ``map_path`` (and ``reference_path`` if given).

    Returns
    -------
    summary
        JSON-ready dict with a ``map_fit`` section (:func:`score_model_map`) and,
        with a reference, a ``reference`` section (:func:`compare_models`).
    per_residue
        Per-residue local CC table.
    """
    model = read_model(model_path)
    density_map = read_map(map_path)
    fit, per_residue = score_model_map(model, density_map, resolution_A, kernel=kernel,
                                       mask_radius_A=mask_radius_A, local_radius_A=local_radius_A,
                                       map_path=map_path, model_path=model_path)
    summary: dict = {"model": os.fspath(model_path), "map": os.fspath(map_path), "map_fit": fit}
    if reference_path:
        reference = read_model(reference_path)
        summary["reference"] = {"path": os.fspath(reference_path), **compare_models(model, reference)}
    return summary, per_residue
