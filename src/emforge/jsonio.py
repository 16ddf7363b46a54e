"""Strict JSON for emforge records: numpy values, paths and non-finite floats handled in one place."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import numpy as np


def to_jsonable(value):
    """Convert numpy scalars/arrays, paths and non-finite floats (to ``None``), recursively."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dumps(record: Mapping) -> str:
    """Indented strict JSON text of ``record`` (no NaN/Infinity), with a final newline."""
    return json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n"
