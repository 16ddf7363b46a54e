"""Per-dataset HTML reports: one self-contained page (inline CSS, plots as base64 PNG).

:func:`render_dataset_report` turns the outputs of the ``prepare`` and ``validate``
steps into a page with the numbers (map statistics, global and masked CC, local CC
statistics, agreement with a reference) and plots (per-residue local CC along the
sequence per chain, histogram of map values with the contour estimates). The page
needs no network: no scripts, fonts or images are fetched. All text is escaped.

Every number cell carries its key and full-precision value as ``data-key`` and
``data-value`` attributes (``data-key="map_fit.cc"``), so tools and tests can read
the page without parsing formatted text.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

import emforge
from emforge.atomic import write_text_atomic
from emforge.maps import DensityMap

log = logging.getLogger(__name__)

# (key, label) rows of the summary tables; keys not present are skipped.
MAP_FIT_ROWS = (
    ("cc", "CC (whole map)"),
    ("cc_mask", "CC (mask around atoms)"),
    ("mask_radius_A", "mask radius (Å)"),
    ("n_mask_voxels", "voxels in mask"),
    ("local_cc_mean", "local CC, mean"),
    ("local_cc_median", "local CC, median"),
    ("local_cc_radius_A", "local CC radius (Å)"),
    ("overlap_fraction", "atoms inside the map box"),
    ("n_atoms", "atoms"),
    ("n_residues", "residues"),
    ("resolution_A", "resolution (Å)"),
    ("kernel", "density kernel"),
)
REFERENCE_ROWS = (
    ("tm_score", "TM-score"),
    ("rmsd_A", "RMSD (Å)"),
    ("gdt_ts", "GDT-TS"),
    ("gdt_ha", "GDT-HA"),
    ("n_aligned", "residues aligned"),
    ("n_reference", "residues in reference"),
)
MAP_ROWS = (
    ("resolution_A", "resolution (Å)"),
    ("nyquist_A", "Nyquist limit (Å)"),
    ("voxel_size_A", "voxel size x, y, z (Å)"),
    ("shape_zyx", "grid z, y, x (voxels)"),
    ("box_size_A", "box x, y, z (Å)"),
    ("origin_A", "origin x, y, z (Å)"),
    ("min", "minimum"),
    ("max", "maximum"),
    ("mean", "mean"),
    ("std", "standard deviation"),
    ("rms", "rms"),
    ("contour_mean_plus_3std", "contour: mean + 3 std"),
    ("fraction_above_3std", "fraction of voxels above mean + 3 std"),
    ("expected_mass_Da", "expected mass (Da)"),
    ("contour_for_expected_volume", "contour enclosing the expected volume"),
)
LOW_LOCAL_CC = 0.5

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 64em; padding: 0 1em; color: #1d2330; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #d0d5de; padding-bottom: 0.2em; }
.meta { color: #5a6372; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1em 0; }
.card { border: 1px solid #d0d5de; border-radius: 6px; padding: 0.5em 1em; min-width: 8em; background: #f7f8fa; }
.card .label { font-size: 0.8em; color: #5a6372; } .card .value { font-size: 1.5em; font-weight: 600; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #e3e6ec; padding: 0.25em 0.9em 0.25em 0.3em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, monospace; }
th { background: #f0f2f5; } .note { color: #5a6372; font-style: italic; }
img { max-width: 100%; height: auto; border: 1px solid #e3e6ec; margin: 0.5em 0; }
code { font-size: 0.9em; background: #f0f2f5; padding: 0 0.2em; }
"""


# -- formatting -----------------------------------------------------------------------------------

def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def format_value(value) -> str:
    """Human-readable text of a number, sequence or string (``"n/a"`` for missing values)."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}".replace(",", "\u2009")
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "n/a"
        if v == 0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return f"{v:.3e}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return " \u00d7 ".join(format_value(v) for v in value) if len(value) else "n/a"
    return str(value)


def _data_value(value) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ",".join(_data_value(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if math.isfinite(float(value)) else "nan"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "" if value is None else str(value)


def _value_cell(key: str, value) -> str:
    cls = "num" if isinstance(value, (int, float, np.number, list, tuple)) else "text"
    return (f'<td class="{cls}" data-key="{_esc(key)}" data-value="{_esc(_data_value(value))}">'
            f"{_esc(format_value(value))}</td>")


def _key_value_table(section: str, record: Mapping, rows: Iterable[tuple[str, str]],
                     extra: bool = True) -> str:
    """Two-column table of the ``rows`` present in ``record`` (plus other scalar keys if ``extra``)."""
    known = dict(rows)
    keys = [k for k in known if k in record]
    if extra:
        keys += [k for k, v in record.items()
                 if k not in known and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)]
    if not keys:
        return '<p class="note">no values</p>'
    body = "\n".join(f"<tr><th>{_esc(known.get(k, k))}</th>{_value_cell(f'{section}.{k}', record[k])}</tr>"
                     for k in keys)
    return f'<table class="kv">\n{body}\n</table>'


def _card(key: str, label: str, value) -> str:
    return (f'<div class="card"><div class="label">{_esc(label)}</div>'
            f'<div class="value" data-key="{_esc(key)}" data-value="{_esc(_data_value(value))}">'
            f"{_esc(format_value(value))}</div></div>")


# -- plots ----------------------------------------------------------------------------------------

def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(png_b64: str, alt: str, plot_id: str) -> str:
    return f'<img id="{_esc(plot_id)}" alt="{_esc(alt)}" src="data:image/png;base64,{png_b64}">'


def plot_local_cc(per_residue: pd.DataFrame, local_cc_mean: float | None = None) -> str:
    """Per-residue local CC along the sequence, one panel per chain; base64 PNG."""
    from matplotlib.figure import Figure

    chains = list(dict.fromkeys(per_residue["chain_id"].astype(str)))
    fig = Figure(figsize=(9.0, 1.0 + 2.1 * len(chains)))
    axes = fig.subplots(len(chains), 1, squeeze=False, sharey=True)[:, 0]
    cc_all = per_residue["local_cc"].to_numpy(dtype=float)
    finite = cc_all[np.isfinite(cc_all)]
    y_low = min(0.0, float(finite.min()) - 0.05) if finite.size else 0.0
    for ax, chain in zip(axes, chains):
        rows = per_residue[per_residue["chain_id"].astype(str) == chain]
        x = rows["res_seq"].to_numpy(dtype=float)
        y = rows["local_cc"].to_numpy(dtype=float)
        ax.plot(x, y, color="#2b6cb0", lw=1.2)
        low = np.isfinite(y) & (y < LOW_LOCAL_CC)
        ax.scatter(x[~low], y[~low], s=6, color="#2b6cb0", zorder=3)
        ax.scatter(x[low], y[low], s=12, color="#c53030", zorder=3, label=f"local CC < {LOW_LOCAL_CC}")
        if local_cc_mean is not None and math.isfinite(local_cc_mean):
            ax.axhline(local_cc_mean, color="#718096", lw=0.8, ls="--", label=f"mean {local_cc_mean:.3f}")
        if len(x):
            ax.set_xlim(np.nanmin(x) - 1, np.nanmax(x) + 1)
        ax.set_ylim(y_low, 1.02)
        ax.set_ylabel(f"chain {chain}\nlocal CC")
        ax.grid(alpha=0.3)
        if low.any() or local_cc_mean is not None:
            ax.legend(loc="lower right", fontsize=8, frameon=False)
    axes[-1].set_xlabel("residue number")
    return _figure_png(fig)


def plot_map_histogram(values: np.ndarray, contours: Mapping[str, float], bins: int = 80) -> str:
    """Histogram of map values (log counts) with vertical lines at the contour estimates; base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.2))
    ax = fig.subplots()
    v = np.asarray(values, dtype=np.float64).ravel()
    ax.hist(v, bins=bins, color="#4a5568", log=True)
    colors = ("#c53030", "#2f855a", "#b7791f", "#6b46c1")
    for (label, level), color in zip(contours.items(), colors):
        if level is not None and math.isfinite(level):
            ax.axvline(level, color=color, lw=1.5, label=f"{label}: {level:.4g}")
    ax.set_xlabel("map value")
    ax.set_ylabel("voxels")
    ax.grid(alpha=0.3)
    if contours:
        ax.legend(fontsize=8, frameon=False)
    return _figure_png(fig)


# -- the page -------------------------------------------------------------------------------------

def read_per_residue(path: str | os.PathLike) -> pd.DataFrame:
    """Read a per-residue table written by the validate step (chain ids and insertion codes as text)."""
    table = pd.read_csv(path, sep="\t", dtype={"chain_id": str, "ins_code": str, "res_name": str},
                        keep_default_na=False, na_values={"local_cc": ["NaN", "nan", ""]})
    table["local_cc"] = pd.to_numeric(table["local_cc"], errors="coerce")
    return table


def local_cc_summary(per_residue: pd.DataFrame) -> dict:
    """Statistics of the per-residue local CC column (NaN rows counted separately)."""
    cc = per_residue["local_cc"].to_numpy(dtype=float)
    ok = cc[np.isfinite(cc)]
    out: dict = {"n_residues": len(cc), "n_scored": int(ok.size)}
    if ok.size:
        out.update({"min": float(ok.min()), "p10": float(np.percentile(ok, 10)),
                    "median": float(np.median(ok)), "mean": float(ok.mean()), "max": float(ok.max()),
                    f"fraction_below_{LOW_LOCAL_CC}": float(np.mean(ok < LOW_LOCAL_CC))})
    return out


def _worst_residues_table(per_residue: pd.DataFrame, n: int) -> str:
    rows = per_residue[np.isfinite(per_residue["local_cc"].to_numpy(dtype=float))]
    rows = rows.sort_values("local_cc", kind="stable").head(max(n, 0))
    if rows.empty:
        return ""
    lines = []
    for r in rows.itertuples(index=False):
        number = f"{r.res_seq}{r.ins_code or ''}"
        lines.append(f"<tr><td>{_esc(r.chain_id)}</td><td>{_esc(r.res_name)}</td>"
                     f'<td class="num">{_esc(number)}</td>'
                     f"{_value_cell(f'worst.{r.chain_id}:{number}', float(r.local_cc))}"
                     f'<td class="num">{_esc(r.n_points)}</td></tr>')
    header = ("<tr><th>chain</th><th>residue</th><th>number</th><th>local CC</th>"
              "<th>grid points</th></tr>")
    return f'<h3>Lowest local CC</h3>\n<table class="worst">{header}\n' + "\n".join(lines) + "\n</table>"


def build_dataset_report(dataset_id: str, scores: Mapping | None, per_residue: pd.DataFrame | None,
                         map_stats: Mapping, *, density_map: DensityMap | None = None,
                         histogram_bins: int = 80, n_worst_residues: int = 10,
                         title: str | None = None) -> str:
    """The HTML text of a dataset's report (see :func:`render_dataset_report`)."""
    fit = dict((scores or {}).get("map_fit") or {})
    reference = (scores or {}).get("reference")
    parts: list[str] = []
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = title or f"emforge report: {dataset_id}"
    parts.append(f"<h1>{_esc(heading)}</h1>")
    dataset_code = f'<code data-key="dataset" data-value="{_esc(dataset_id)}">{_esc(dataset_id)}</code>'
    parts.append(f'<p class="meta">dataset {dataset_code} · '
                 f"emforge {_esc(emforge.__version__)} · {_esc(now)}</p>")

    cards = []
    if "cc" in fit:
        cards.append(_card("card.cc", "CC", fit["cc"]))
    if "cc_mask" in fit:
        cards.append(_card("card.cc_mask", "CC mask", fit["cc_mask"]))
    if fit.get("local_cc_median") is not None:
        cards.append(_card("card.local_cc_median", "local CC median", fit["local_cc_median"]))
    if reference:
        for key, label in (("tm_score", "TM-score"), ("rmsd_A", "RMSD (Å)"), ("gdt_ts", "GDT-TS")):
            if key in reference:
                cards.append(_card(f"card.{key}", label, reference[key]))
    if "resolution_A" in map_stats:
        cards.append(_card("card.resolution_A", "resolution (Å)", map_stats["resolution_A"]))
    parts.append(f'<div class="cards">{"".join(cards)}</div>')

    parts.append("<h2>Model fit to the map</h2>")
    if scores is None:
        parts.append('<p class="note">No model was given for this dataset: validation was skipped.</p>')
    else:
        if scores.get("model"):
            parts.append(f'<p class="meta">model <code>{_esc(scores["model"])}</code> in map '
                         f'<code>{_esc(scores.get("map", ""))}</code></p>')
        parts.append(_key_value_table("map_fit", fit, MAP_FIT_ROWS))
        if per_residue is not None and len(per_residue):
            summary = local_cc_summary(per_residue)
            parts.append("<h3>Per-residue local CC</h3>")
            parts.append(_key_value_table("local_cc", summary, (
                ("n_residues", "residues"), ("n_scored", "residues scored"), ("min", "minimum"),
                ("p10", "10th percentile"), ("median", "median"), ("mean", "mean"), ("max", "maximum"),
                (f"fraction_below_{LOW_LOCAL_CC}", f"fraction below {LOW_LOCAL_CC}"))))
            if summary["n_scored"]:
                png = plot_local_cc(per_residue, fit.get("local_cc_mean"))
                parts.append(_img(png, "per-residue local CC along the sequence", "plot-local-cc"))
                parts.append(_worst_residues_table(per_residue, n_worst_residues))

    if reference:
        parts.append("<h2>Agreement with the reference</h2>")
        if reference.get("path"):
            parts.append(f'<p class="meta">reference <code>{_esc(reference["path"])}</code></p>')
        parts.append(_key_value_table("reference", reference, REFERENCE_ROWS))

    parts.append("<h2>Map</h2>")
    if map_stats.get("source"):
        parts.append(f'<p class="meta">source <code>{_esc(map_stats["source"])}</code></p>')
    parts.append(_key_value_table("map", map_stats, MAP_ROWS))
    if density_map is not None:
        contours = {label: float(map_stats[key]) for key, label in (
            ("contour_mean_plus_3std", "mean + 3 std"),
            ("contour_for_expected_volume", "expected volume"),
        ) if map_stats.get(key) is not None}
        png = plot_map_histogram(density_map.data, contours, histogram_bins)
        parts.append(_img(png, "histogram of map values with contour estimates", "plot-map-histogram"))

    body = "\n".join(p for p in parts if p)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(heading)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def render_dataset_report(dataset_id: str, scores: Mapping | None, per_residue: pd.DataFrame | None,
                          map_stats: Mapping, out_html: str | os.PathLike, *,
                          density_map: DensityMap | None = None, histogram_bins: int = 80,
                          n_worst_residues: int = 10, title: str | None = None) -> Path:
    """Write a self-contained HTML report for one dataset, atomically.

    Parameters
    ----------
    dataset_id
        Dataset name shown in the title.
    scores
        The validate step's summary (``map_fit`` and optional ``reference`` sections), or
        ``None`` when the dataset has no model.
    per_residue
        Per-residue table with columns chain_id, res_seq, ins_code, res_name, local_cc,
        n_points (or ``None``).
    map_stats
        The prepare step's statistics record (resolution_A, voxel_size_A, shape_zyx, ...).
    out_html
        Output path.
    density_map
        The prepared map, for the histogram of map values (skipped when ``None``).
    histogram_bins, n_worst_residues
        Histogram bins; rows of the lowest-local-CC table.

    Returns
    -------
    Path
        ``out_html``.
    """
    text = build_dataset_report(dataset_id, scores, per_residue, map_stats, density_map=density_map,
                                histogram_bins=histogram_bins, n_worst_residues=n_worst_residues,
                                title=title)
    write_text_atomic(out_html, text)
    log.info("report for %s written to %s", dataset_id, out_html)
    return Path(out_html)
