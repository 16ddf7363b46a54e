"""Glue for the workflow's rule scripts: rule logs, clean exits on bad input, JSON/TSV outputs.

A rule script (``workflow/scripts/*.py``) is argument plumbing around one library
call::

    with rule_log(snakemake.log[0], "prepare_map", snakemake.threads) as log:
        density_map, stats = prepare_map(...)
        write_map(snakemake.output.map, density_map)
        write_json(snakemake.output.stats, stats)

:func:`rule_log` sends every library log record to the rule's log file, and turns
an :class:`~emforge.errors.InputError` into one clear line (in the log and on
stderr) and exit code :data:`EXIT_BAD_INPUT`, without a traceback. All writers
here are atomic, so a failed job leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import emforge
from emforge import jsonio
from emforge.atomic import atomic_path, write_text_atomic
from emforge.errors import InputError
from emforge.provenance import provenance_record

EXIT_BAD_INPUT = 2
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def set_threads(threads: int) -> int:
    """Limit numba (and torch, if loaded) to ``threads`` threads; returns the number used."""
    n = max(1, int(threads or 1))
    try:
        import numba

        n = min(n, int(numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(n)
    except ImportError:  # pragma: no cover - numba is a hard dependency
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


@contextlib.contextmanager
def rule_log(log_path: str | os.PathLike | None, step: str, threads: int = 1,
             level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Route logging into the rule's log file for the duration of a step.

    Parameters
    ----------
    log_path
        The rule's log file (``snakemake.log[0]``); ``None`` logs to stderr.
    step
        Step name used in messages ("prepare_map").
    threads
        Threads the step may use (``snakemake.threads``).

    Yields
    ------
    logging.Logger
        Logger for the script's own messages.

    On :class:`InputError` one line ``<step>: bad input: <file>: <problem>`` goes
    to the log and to stderr and the process exits with :data:`EXIT_BAD_INPUT`.
    Any other exception is logged with its traceback and re-raised.
    """
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    log = logging.getLogger(f"emforge.workflow.{step}")
    n_threads = set_threads(threads)
    log.info("emforge %s: %s with %d thread(s)", emforge.__version__, step, n_threads)
    start = time.perf_counter()
    try:
        yield log
    except InputError as exc:
        log.error("bad input: %s", exc)
        print(f"emforge {step}: bad input: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except BaseException as exc:
        if not isinstance(exc, SystemExit):
            log.exception("%s failed (internal error; please report it with this log)", step)
        raise
    else:
        log.info("%s finished in %.1f s", step, time.perf_counter() - start)
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


# -- outputs --------------------------------------------------------------------------------------

def write_json(path: str | os.PathLike, record: Mapping) -> Path:
    """Write ``record`` as indented strict JSON (NaN/inf become null), atomically."""
    write_text_atomic(path, jsonio.dumps(record))
    return Path(path)


def read_json(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_table(path: str | os.PathLike, table) -> Path:
    """Write a pandas DataFrame as TSV (missing values as ``NaN``), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
    return Path(path)


def write_provenance(path: str | os.PathLike, step: str, parameters: Mapping | None = None,
                     inputs: Mapping | None = None, seed: int | None = None, device: str = "cpu") -> Path:
    """Write the step's provenance record (:func:`emforge.provenance.provenance_record`) as JSON."""
    record = provenance_record(step, dict(parameters or {}), dict(inputs or {}), seed=seed, device=device)
    return write_json(path, record)
