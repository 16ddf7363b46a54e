"""Errors raised for bad user input.

Every problem with a user-supplied file or parameter is reported as one
:class:`InputError` naming the file (when there is one) and the problem, so the
CLI and the workflow scripts can print a single clear line instead of a traceback.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """A user-supplied file or parameter cannot be used.

    Parameters
    ----------
    problem
        What is wrong, phrased for a structural biologist ("map has zero variance").
    path
        The offending file, if the problem belongs to one.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def require_positive(value: float, name: str) -> float:
    """Return ``float(value)`` or raise :class:`InputError` if it is not a finite number > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return v
