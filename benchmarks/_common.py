"""Helpers shared by the benchmark scripts in this folder (report header lines, timing, paths).

Standard library only at import time: some peers (cctbx) must be imported before numpy or gemmi,
and the scripts import this module before them; numpy and emforge are imported inside the helpers
that need them.

Use from a script::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import DATA, REPO, machine, versions, ...
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

#: the repository root (this file is ``benchmarks/_common.py``)
REPO = Path(__file__).resolve().parents[1]
#: the shared test data, ../shared/data (``$EMFORGE_TEST_DATA`` overrides), as in tests/conftest.py
DATA = Path(os.environ.get("EMFORGE_TEST_DATA", "/work/shared/data"))


# -- report header ------------------------------------------------------------------------------

def versions(names: Iterable[str], *, skip_missing: bool = False) -> str:
    """``"name version, ..."`` for the installed distributions ``names``, in that order.

    A distribution that is not installed reads ``"name (not installed)"``, or is left out when
    ``skip_missing`` is true.
    """
    out = []
    for n in names:
        try:
            out.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            if not skip_missing:
                out.append(f"{n} (not installed)")
    return ", ".join(out)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` or "unknown CPU" without it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(extra: str = "") -> str:
    """``"N cores (CPU), no GPU used, Python X.Y.Z"`` followed by ``extra``."""
    return f"{os.cpu_count()} cores ({cpu_name()}), no GPU used, Python {platform.python_version()}{extra}"


def git_commit(paths: Sequence[str], note: str) -> str:
    """HEAD's commit hash, followed by ``note`` when ``paths`` (relative to the repository) have
    uncommitted changes (``git status --porcelain``); "unknown" when git cannot tell."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.strip()
        return head + (note if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> float:
    """The 1-minute load average now."""
    return os.getloadavg()[0]


def load_line(start: float, end: float | None = None, note: str = "") -> str:
    """The report line ``- load average (1 min) at start / end: S / E`` (E: now when ``end`` is None),
    followed by `` note`` when ``note`` is given."""
    end = load_average() if end is None else end
    return f"- load average (1 min) at start / end: {start:.2f} / {end:.2f}" + (f" {note}" if note else "")


def write_markdown(path: str | os.PathLike, text: str) -> None:
    """Write a report atomically (temporary file beside it, then rename; the folder is created)."""
    from emforge.atomic import write_text_atomic

    write_text_atomic(path, text)


# -- numbers --------------------------------------------------------------------------------------

def geomean(xs) -> float:
    """Geometric mean of the finite, positive values of ``xs`` (NaN when there are none)."""
    import numpy as np

    x = np.array([math.nan if v is None else v for v in xs], dtype=float).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.mean(np.log(x)))) if len(x) else math.nan


# -- timing ---------------------------------------------------------------------------------------

def best_time(repeats: int, fn: Callable, *args, **kwargs) -> tuple[float, Any, float]:
    """Call ``fn(*args, **kwargs)`` ``repeats`` times (at least once).

    Returns (best wall-clock seconds, the last call's result, CPU seconds of the fastest call: all
    threads of this process).
    """
    t_best, cpu_best, out = math.inf, math.nan, None
    for _ in range(max(repeats, 1)):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        t = time.perf_counter() - t0
        if t < t_best:
            t_best, cpu_best = t, time.process_time() - c0
    return t_best, out, cpu_best


def best_s(repeats: int, fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    """(best wall-clock seconds, last result) over ``repeats`` calls of ``fn(*args, **kwargs)``."""
    t, out, _ = best_time(repeats, fn, *args, **kwargs)
    return t, out


def best_ms(repeats: int, fn: Callable, *args, warmup: bool = False, **kwargs) -> tuple[float, Any]:
    """(best wall-clock milliseconds, last result) over ``repeats`` calls of ``fn(*args, **kwargs)``,
    after one untimed call first when ``warmup`` is true (compile / cache load out of the figure)."""
    if warmup:
        fn(*args, **kwargs)
    t, out, _ = best_time(repeats, fn, *args, **kwargs)
    return 1000.0 * t, out


# -- peers ----------------------------------------------------------------------------------------

def tempy_structure(model):
    """TEMPy ``Structure`` of an emforge ``AtomModel`` (written as PDB, read with TEMPy's parser,
    hetero atoms and waters kept); raises if TEMPy reads a different number of atoms."""
    import tempfile

    from TEMPy.protein.structure_parser import PDBParser

    from emforge.models import write_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pdb"
        write_model(path, model)
        s = PDBParser.read_PDB_file("bench", str(path), hetatm=True, water=True)
    if len(s.atomList) != len(model):
        raise RuntimeError(f"TEMPy read {len(s.atomList)} atoms, expected {len(model)}")
    return s
