"""Sequence files for C-alpha picking: the sequence length L sets how many peaks to pick."""

from __future__ import annotations

import os
import re
from pathlib import Path

from emforge.errors import InputError

_RESIDUES = re.compile(r"^[A-Za-z]+$")


def read_fasta(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(name, sequence) records of a FASTA file, in file order, sequences upper case.

    Lines starting with ``>`` open a record; a file without any header is one unnamed record.
    Whitespace and a trailing ``*`` (stop) are ignored; any other non-letter is an error.

    Raises
    ------
    InputError
        Missing or unreadable file, a character that is no residue letter, or no residues at all.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("sequence file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the sequence file ({exc})", path) from None
    records: list[tuple[str, list[str]]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
            continue
        if not records:
            records.append(("", []))
        chunk = "".join(line.split()).rstrip("*")
        if chunk and not _RESIDUES.match(chunk):
            raise InputError(f"line {n} holds characters that are not residue letters: {line[:40]!r}", path)
        records[-1][1].append(chunk.upper())
    out = [(name, "".join(parts)) for name, parts in records]
    if not any(seq for _, seq in out):
        raise InputError("sequence file holds no residues", path)
    return out


def sequence_length(path: str | os.PathLike) -> int:
    """Total number of residues over all records of a FASTA file (all chains of the map)."""
    return sum(len(seq) for _, seq in read_fasta(path))
