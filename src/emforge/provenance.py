"""Provenance records: what produced a file, from what, with which settings."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import sys
from pathlib import Path

import emforge


def sha256sum(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_bytes), b""):
            h.update(block)
    return h.hexdigest()


def provenance_record(step: str, parameters: dict | None = None, inputs: dict | None = None,
                      seed: int | None = None, device: str = "cpu") -> dict:
    """A JSON-ready record of one step run: versions, seed, device, parameters, input checksums.

    ``inputs`` maps a role ("map", "model") to a path; missing paths are recorded as such.
    """
    import numpy

    checksums = {}
    for role, p in (inputs or {}).items():
        if p is None or p == "":
            continue
        path = Path(p)
        checksums[role] = {"path": os.fspath(path),
                           "sha256": sha256sum(path) if path.is_file() else None}
    return {
        "step": step,
        "emforge_version": emforge.__version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "device": device,
        "parameters": parameters or {},
        "inputs": checksums,
    }
