"""File-type recognition by name: one rule for maps, models and anything added later."""

from __future__ import annotations

import os
from pathlib import Path

from emforge.errors import InputError


def format_suffix(path: str | os.PathLike) -> str:
    """The lower-case format suffix of a file name, looking through a final ``.gz`` (``a.MRC.gz`` -> ``.mrc``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def check_file_type(path: str | os.PathLike, allowed: tuple[str, ...], kind: str) -> str:
    """Return the format suffix of ``path`` or raise :class:`InputError` if it is not in ``allowed``."""
    suffix = format_suffix(path)
    if suffix not in allowed:
        shown = "".join(Path(path).suffixes) or "(none)"
        raise InputError(f"unknown {kind} file type {shown}; expected one of {', '.join(allowed)} "
                         "(optionally .gz)", path)
    return suffix
