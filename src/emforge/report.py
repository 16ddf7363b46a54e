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
import urllib.parse
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
    ("cc", "CC, whole map (emforge kernel)"),
    ("cc_mask", "CC, mask around atoms"),
    ("ccc", "CCC, whole map (TEMPy-compatible)"),
    ("ccc_mask", "CCC, mask around atoms"),
    ("ccc_envelope", "CCC, model envelope"),
    ("ccc_contour", "CCC, above both contours"),
    ("moc", "Manders overlap (MOC)"),
    ("resolution_fsc05_A", "model-map FSC = 0.5 at (Å)"),
    ("local_cc_mean", "local CC (8 Å), mean"),
    ("local_cc_median", "local CC (8 Å), median"),
    ("smoc_mean", "SMOC, mean"),
    ("smocf_mean", "SMOCf, mean"),
    ("loqfit_A_median", "LoQFit, median (Å)"),
    ("qscore_mean", "Q-score, mean"),
    ("local_pcc_decoupled_mean", "local PCC (paper 003 Eq. 10-11), mean"),
    ("mask_radius_A", "mask radius (Å)"),
    ("overlap_fraction", "model atoms inside the map envelope"),
    ("resolution_A", "resolution (Å)"),
    ("kernel", "density kernel"),
)
GEOMETRY_ROWS = (
    ("molprobity_score", "MolProbity score"),
    ("clashscore", "clashscore (per 1000 atoms)"),
    ("rama_favoured_pct", "Ramachandran favoured (%)"),
    ("rama_allowed_pct", "Ramachandran allowed (%)"),
    ("rama_outlier_pct", "Ramachandran outliers (%)"),
    ("rotamer_favoured_pct", "rotamers favoured (%)"),
    ("rotamer_outlier_pct", "rotamer outliers (%)"),
    ("cbeta_outliers", "C-beta deviations > 0.25 Å"),
    ("n_cis_nonpro", "cis non-Pro peptides"),
    ("n_twisted_nonpro", "twisted non-Pro peptides"),
    ("n_cis_pro", "cis Pro peptides"),
    ("bond_rmsz", "bond-length RMSZ"),
    ("angle_rmsz", "bond-angle RMSZ"),
    ("bond_rmsd_A", "bond-length RMSD (Å)"),
    ("angle_rmsd_deg", "bond-angle RMSD (deg)"),
    ("bond_outliers", "bond outliers (|Z| > 4)"),
    ("angle_outliers", "angle outliers (|Z| > 4)"),
)
REFERENCE_ROWS = (
    ("tm_score", "TM-score"),
    ("rmsd_A", "C-alpha RMSD (Å)"),
    ("gdt_ts", "GDT-TS"),
    ("gdt_ha", "GDT-HA"),
    ("lddt_ca", "C-alpha lDDT"),
    ("placement_crmsd_A", "placement cRMSD (Å)"),
    ("crscore", "CRscore"),
    ("n_aligned", "residues aligned"),
    ("n_reference", "residues in reference"),
    ("sequence_identity", "sequence identity of the pairs"),
    ("correspondence", "residue correspondence"),
)
PLACEMENT_ROWS = (
    ("method", "method"),
    ("cc", "CC of the best pose"),
    ("z_score", "z-score of the best pose over the search"),
    ("rotation_deg", "rotation applied (deg)"),
)
#: rows of the EM-Refiner refinement table: (key in the step's summary.json, label)
REFINEMENT_ROWS = (
    ("preset", "preset"),
    ("n_fragments", "Step-2 fragments"),
    ("cc_start", "CC of the fitted model (refinement box)"),
    ("cc_step2", "CC after Step 2 (fragment SAMC)"),
    ("cc_step3", "CC after Step 3 (atomic SAMC)"),
    ("cc_final", "CC after the OpenMM finish"),
    ("energy_start", "energy (Eq. 2) at the start"),
    ("energy_step3", "energy (Eq. 2) after Step 3"),
    ("total_s", "wall time (s)"),
)
#: rows of the TEMPy-ReFF refinement table: (key in the step's summary.json, label)
GMM_ROWS = (
    ("protocol", "protocol"),
    ("k_gmm_kj_per_mol", "k_gmm (kJ/mol per atom, Eq. 10)"),
    ("bfactor_iterations", "B-factor iterations before positions"),
    ("mean_b_A2", "mean B of the refined model (Å²)"),
    ("ccc_start", "CCC of the fitted model"),
    ("ccc_final", "CCC of the refined model (best iteration)"),
    ("best_iteration", "best iteration"),
    ("n_iterations", "iterations run"),
    ("heavy_atom_rmsd_A", "heavy-atom shift from the fitted model (Å, rms)"),
    ("platform", "OpenMM platform"),
    ("total_s", "wall time (s)"),
)
#: rows of the ensemble table
ENSEMBLE_ROWS = (
    ("n_members", "members"),
    ("single_model_ccc", "CCC of the refined model alone"),
    ("first_member_ccc", "CCC of one member"),
    ("ensemble_ccc", "CCC of the ensemble map"),
    ("mean_rmsf_A", "mean C-alpha RMSF (Å)"),
    ("max_rmsf_A", "largest C-alpha RMSF (Å)"),
    ("wall_time_s", "wall time (s)"),
)
#: rows of the C-alpha prediction table: (key in the cnn step's flattened summary.json, label)
CNN_ROWS = (
    ("n_peaks", "C-alpha peaks picked"),
    ("n_residues", "residues in the sequence (L)"),
    ("n_above_threshold", "peaks above the probability threshold"),
    ("probability_median", "median peak probability"),
    ("reference_crscore", "CRscore against the reference (paper 003, Eq. 1)"),
    ("reference_n_reference", "reference C-alphas"),
    ("reference_matched_fraction", "reference C-alphas matched within 3 Å"),
    ("reference_matched_rmsd_A", "RMSD of those pairs (Å)"),
    ("device", "device"),
    ("total_s", "wall time (s)"),
)
#: columns of the cross-dataset summary table: (section, key, label)
SUMMARY_COLUMNS = (
    ("map_fit", "cc", "CC"), ("map_fit", "cc_mask", "CC mask"), ("map_fit", "ccc", "CCC"),
    ("map_fit", "resolution_fsc05_A", "FSC 0.5 (Å)"), ("map_fit", "smoc_mean", "SMOC"),
    ("map_fit", "qscore_mean", "Q-score"),
    ("geometry", "molprobity_score", "MolProbity"), ("geometry", "clashscore", "clashscore"),
    ("geometry", "rama_outlier_pct", "Rama out. %"), ("geometry", "rotamer_outlier_pct", "rot. out. %"),
    ("reference", "tm_score", "TM-score"), ("reference", "rmsd_A", "RMSD (Å)"),
    ("reference", "gdt_ts", "GDT-TS"), ("reference", "lddt_ca", "lDDT"),
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
    """Read a per-residue table written by the validate step (CSV; TSV for older outputs).

    Chain ids, insertion codes and residue names stay text ("NA" is a chain id, not a gap).
    """
    sep = "\t" if str(path).endswith(".tsv") else ","
    table = pd.read_csv(path, sep=sep, dtype={"chain_id": str, "ins_code": str, "res_name": str, "flags": str},
                        keep_default_na=False, na_values=["", "NaN", "nan"])
    for column in ("chain_id", "ins_code", "res_name", "flags"):
        if column in table:
            table[column] = table[column].fillna("").astype(str)
    return table


def b_factors_per_residue(model) -> pd.DataFrame:
    """Mean B (Å^2) per residue of an AtomModel: chain_id, res_seq, res_name, b_A2 (model order)."""
    rows = np.repeat(np.arange(model.n_residues), np.diff(np.r_[model.residue_starts(), len(model)]))
    b = np.bincount(rows, weights=model.b_factor) / np.bincount(rows)
    starts = model.residue_starts()
    return pd.DataFrame({"chain_id": model.chain_id[starts], "res_seq": model.res_seq[starts],
                         "res_name": model.res_name[starts], "b_A2": b})


def local_cc_summary(per_residue: pd.DataFrame) -> dict:
    """Statistics of the per-residue local CC column (NaN rows counted separately)."""
    cc = pd.to_numeric(per_residue["local_cc"], errors="coerce").to_numpy(dtype=float)
    ok = cc[np.isfinite(cc)]
    out: dict = {"n_residues": len(cc), "n_scored": int(ok.size)}
    if ok.size:
        out.update({"min": float(ok.min()), "p10": float(np.percentile(ok, 10)),
                    "median": float(np.median(ok)), "mean": float(ok.mean()), "max": float(ok.max()),
                    f"fraction_below_{LOW_LOCAL_CC}": float(np.mean(ok < LOW_LOCAL_CC))})
    return out


def _residue_label(r) -> str:
    return f"{r.res_seq}{r.ins_code or ''}"


def _worst_residues_table(per_residue: pd.DataFrame, n: int, section: str) -> str:
    """The ``n`` residues with the lowest local CC, with their other local scores and flags."""
    if "local_cc" not in per_residue:
        return ""
    cc = pd.to_numeric(per_residue["local_cc"], errors="coerce")
    rows = per_residue[np.isfinite(cc.to_numpy(dtype=float))].copy()
    rows["local_cc"] = pd.to_numeric(rows["local_cc"])
    rows = rows.sort_values("local_cc", kind="stable").head(max(n, 0))
    if rows.empty:
        return ""
    extra = [(c, label) for c, label in (("smoc", "SMOC"), ("qscore", "Q-score"), ("loqfit_A", "LoQFit (Å)"))
             if c in rows]
    header = ("<tr><th>chain</th><th>residue</th><th>number</th><th>local CC</th>"
              + "".join(f"<th>{_esc(label)}</th>" for _, label in extra) + "<th>flags</th></tr>")
    lines = []
    for r in rows.itertuples(index=False):
        number = _residue_label(r)
        cells = "".join(_value_cell(f"{section}.worst.{r.chain_id}:{number}.{c}", getattr(r, c)) for c, _ in extra)
        lines.append(f"<tr><td>{_esc(r.chain_id)}</td><td>{_esc(r.res_name)}</td>"
                     f'<td class="num">{_esc(number)}</td>'
                     f"{_value_cell(f'{section}.worst.{r.chain_id}:{number}', float(r.local_cc))}{cells}"
                     f"<td>{_esc(getattr(r, 'flags', ''))}</td></tr>")
    return f'<h4>Lowest local CC</h4>\n<table class="worst">{header}\n' + "\n".join(lines) + "\n</table>"


def _flagged_residues_table(per_residue: pd.DataFrame, n: int) -> str:
    """Residues carrying any geometry flag (first ``n``, in sequence order)."""
    if "flags" not in per_residue:
        return ""
    flagged = per_residue[per_residue["flags"].astype(str) != ""]
    if flagged.empty:
        return '<p class="note">No residue carries a geometry flag.</p>'
    lines = [f"<tr><td>{_esc(r.chain_id)}</td><td>{_esc(r.res_name)}</td>"
             f'<td class="num">{_esc(_residue_label(r))}</td><td>{_esc(r.flags)}</td></tr>'
             for r in flagged.head(n).itertuples(index=False)]
    more = f'<p class="note">... and {len(flagged) - n} more (see per_residue.csv)</p>' if len(flagged) > n else ""
    return (f"<h4>Flagged residues ({len(flagged)})</h4>\n<table class=\"flags\"><tr><th>chain</th><th>residue</th>"
            "<th>number</th><th>flags</th></tr>\n" + "\n".join(lines) + "\n</table>" + more)


def _png_b64(png: bytes | str | os.PathLike) -> str:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return base64.b64encode(data).decode("ascii")


def _details(section: str, record: Mapping, title: str) -> str:
    """A collapsed table with every scalar number of a section."""
    scalars = {k: v for k, v in record.items() if isinstance(v, int | float | str | np.number) or v is None}
    rows = tuple((k, k) for k in scalars)
    return (f"<details><summary>{_esc(title)}</summary>\n"
            f"{_key_value_table(section + '.all', scalars, rows, extra=False)}\n</details>")


def _poses_table(poses: pd.DataFrame | None, step: str, n: int = 10) -> str:
    """The top ``n`` rows of a fit's ranked pose table."""
    if poses is None or poses.empty:
        return ""
    if "rotation_deg" not in poses and "q_w" in poses:  # angle of the rotation from its quaternion
        poses = poses.assign(rotation_deg=np.degrees(2.0 * np.arccos(np.clip(poses["q_w"].abs(), 0.0, 1.0))))
    columns = [c for c in ("rank", "cc", "z_score", "rotation_deg", "translation_x_A", "translation_y_A",
                           "translation_z_A", "method") if c in poses]
    header = "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in columns) + "</tr>"
    lines = []
    for i, row in enumerate(poses.head(n).to_dict("records")):
        cells = "".join(_value_cell(f"{step}.poses.{i}.{c}", row[c]) for c in columns)
        lines.append(f"<tr>{cells}</tr>")
    return f'<h4>Ranked poses</h4>\n<table class="poses">{header}\n' + "\n".join(lines) + "\n</table>"


def _model_section(step: str, scores: Mapping, per_residue: pd.DataFrame | None,
                   plots: Mapping[str, bytes | str | os.PathLike], n_worst: int,
                   entry_fit: Mapping | None = None, entry_refine: Mapping | None = None,
                   entry_gmm: Mapping | None = None) -> list[str]:
    """HTML parts of one validated model (a step's output); ``entry_fit`` = {"summary", "poses"} of a fit,
    ``entry_refine`` = {"summary", "trajectory"} of an EM-Refiner refinement, ``entry_gmm`` =
    {"summary", "trajectory", "b_per_residue", "ensemble": {"summary", "rmsf", "curve"}} of TEMPy-ReFF."""
    fit = dict(scores.get("map_fit") or {})
    geometry = dict(scores.get("geometry") or {})
    reference = dict(scores.get("reference") or {})
    model = scores.get("model") or {}
    parts = [f'<h2 id="model-{_esc(step)}">Model: {_esc(step)}</h2>']
    path = model.get("path") if isinstance(model, Mapping) else model
    if path:
        parts.append(f'<p class="meta">model <code>{_esc(path)}</code>'
                     + (f' in map <code>{_esc(fit["map"])}</code>' if fit.get("map") else "") + "</p>")
    cards = [_card(f"{step}.card.{key}", label, src[key]) for src, key, label in (
        (fit, "cc", "CC"), (fit, "cc_mask", "CC mask"), (fit, "qscore_mean", "Q-score"),
        (geometry, "molprobity_score", "MolProbity"), (geometry, "clashscore", "clashscore"),
        (reference, "tm_score", "TM-score"), (reference, "rmsd_A", "RMSD (Å)")) if src.get(key) is not None]
    parts.append(f'<div class="cards">{"".join(cards)}</div>')
    placement = entry_fit or {}
    if placement:
        parts.append("<h3>Placement in the map</h3>")
        parts.append(_key_value_table(f"{step}.placement", placement.get("summary", {}), PLACEMENT_ROWS,
                                      extra=False))
        parts.append(_poses_table(placement.get("poses"), step))
    refinement = entry_refine or {}
    if refinement:
        summary = dict(refinement.get("summary") or {})
        summary["total_s"] = (summary.get("timings_s") or {}).get("total_s")
        parts.append("<h3>Refinement (EM-Refiner)</h3>")
        parts.append(_key_value_table(f"{step}.refinement", summary, REFINEMENT_ROWS, extra=False))
        from emforge.plots import refinement_trajectory_plot

        png = refinement_trajectory_plot(refinement.get("trajectory"))
        if png is not None:
            parts.append(_img(_png_b64(png), "EM-Refiner energy and CC per annealing temperature",
                              f"plot-{step}-trajectory"))
    if entry_gmm:
        parts += _gmm_parts(step, entry_gmm)
    if fit:
        parts.append("<h3>Fit to the map</h3>")
        parts.append(_key_value_table(f"{step}.map_fit", fit, MAP_FIT_ROWS, extra=False))
        if "fsc" in plots:
            parts.append(_img(_png_b64(plots["fsc"]), "model-map FSC", f"plot-{step}-fsc"))
    if per_residue is not None and len(per_residue):
        if "per_residue" in plots:
            parts.append("<h3>Per-residue scores along the sequence</h3>")
            parts.append(_img(_png_b64(plots["per_residue"]), "per-residue scores along the sequence",
                              f"plot-{step}-per-residue"))
        if fit:  # lowest local CC is a map-fit finding: shown with or without the plot
            parts.append(_worst_residues_table(per_residue, n_worst, step))
    if geometry:
        parts.append("<h3>Geometry</h3>")
        parts.append(_key_value_table(f"{step}.geometry", geometry, GEOMETRY_ROWS, extra=False))
        if "ramachandran" in plots:
            parts.append(_img(_png_b64(plots["ramachandran"]), "Ramachandran plot", f"plot-{step}-ramachandran"))
        if per_residue is not None:
            parts.append(_flagged_residues_table(per_residue, 3 * n_worst))
    if reference:
        parts.append("<h3>Agreement with the reference</h3>")
        if reference.get("path"):
            parts.append(f'<p class="meta">reference <code>{_esc(reference["path"])}</code></p>')
        parts.append(_key_value_table(f"{step}.reference", reference, REFERENCE_ROWS, extra=False))
    for name, record in (("map fit", fit), ("geometry", geometry), ("reference", reference)):
        if record:
            parts.append(_details(f"{step}.{name.replace(' ', '_')}", record, f"all {name} numbers"))
    return parts


def _gmm_parts(step: str, entry: Mapping) -> list[str]:
    """TEMPy-ReFF refinement table, convergence plot, per-residue B / RMSF plot and ensemble table."""
    from emforge.plots import b_factor_rmsf_plot, gmm_convergence_plot

    summary = dict(entry.get("summary") or {})
    summary["total_s"] = (summary.get("timings_s") or {}).get("total")
    ens = entry.get("ensemble") or {}
    parts = ["<h3>Refinement (TEMPy-ReFF)</h3>",
             _key_value_table(f"{step}.gmm", summary, GMM_ROWS, extra=False)]
    png = gmm_convergence_plot(entry.get("trajectory"), ens.get("curve"))
    if png is not None:
        parts.append(_img(_png_b64(png), "TEMPy-ReFF CCC per iteration and ensemble-map CCC per member",
                          f"plot-{step}-gmm-convergence"))
    png = b_factor_rmsf_plot(entry.get("b_per_residue"), ens.get("rmsf"))
    if png is not None:
        parts.append(_img(_png_b64(png), "per-residue B-factor and ensemble RMSF", f"plot-{step}-b-rmsf"))
    if ens:
        parts.append("<h4>Ensemble</h4>")
        parts.append(_key_value_table(f"{step}.ensemble", ens.get("summary") or {}, ENSEMBLE_ROWS, extra=False))
    return parts


def _cnn_parts(cnn: Mapping) -> list[str]:
    """C-alpha prediction table (with CRscore when a reference exists) and the slice view."""
    summary = dict(cnn.get("summary") or {})
    summary["total_s"] = (summary.get("timings_s") or {}).get("total")
    for key, value in (summary.pop("reference", None) or {}).items():
        summary[f"reference_{key}"] = value
    parts = ["<h2 id=\"cnn\">C-alpha prediction (CNN, paper 003)</h2>",
             '<p class="meta">3D residual CNN probability of a C-alpha per voxel, peaks picked greedily with a '
             f"{_esc(format_value(summary.get('exclusion_A')))} Å exclusion</p>",
             _key_value_table("cnn", summary, CNN_ROWS, extra=False)]
    if cnn.get("slices"):
        parts.append(_img(_png_b64(cnn["slices"]), "map and predicted C-alpha probability on three planes",
                          "plot-cnn-slices"))
    return parts


def _page(heading: str, parts: Iterable[str]) -> str:
    body = "\n".join(p for p in parts if p)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(heading)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _meta_line(label: str, value: str) -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    code = f'<code data-key="{_esc(label)}" data-value="{_esc(value)}">{_esc(value)}</code>'
    return f'<p class="meta">{_esc(label)} {code} · emforge {_esc(emforge.__version__)} · {_esc(now)}</p>'


def build_dataset_report(dataset_id: str, models: Mapping[str, Mapping], map_stats: Mapping, *,
                         density_map: DensityMap | None = None, histogram_bins: int = 80,
                         n_worst_residues: int = 10, title: str | None = None,
                         composite: pd.DataFrame | None = None, cnn: Mapping | None = None) -> str:
    """The HTML text of a dataset's report (see :func:`render_dataset_report`)."""
    heading = title or f"emforge report: {dataset_id}"
    models = models or {}
    parts = [f"<h1>{_esc(heading)}</h1>", _meta_line("dataset", dataset_id)]
    if models:
        links = " · ".join(f'<a href="#model-{_esc(step)}">{_esc(step)}</a>' for step in models)
        parts.append(f'<p class="meta">validated models: {links}</p>')
    else:
        parts.append('<p class="note">No model was given for this dataset: validation was skipped.</p>')
    for step, entry in models.items():
        parts += _model_section(step, entry["scores"], entry.get("per_residue"), entry.get("plots") or {},
                                n_worst_residues, entry.get("fit"), entry.get("refine"), entry.get("gmm"))
    if cnn:
        parts += _cnn_parts(cnn)

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
    if composite is not None and len(composite):
        parts.append("<h2>Composite map</h2>")
        parts.append('<p class="meta">component maps merged by mixture responsibilities (paper 001, Eq. 11-13): '
                     "each atom counts in the component that resolves it best</p>")
        parts.append(_composite_table(composite))
    return _page(heading, parts)


def _composite_table(table: pd.DataFrame) -> str:
    columns = [c for c in ("component", "map", "n_atoms", "n_kept", "scale", "background", "mean_b_A2")
               if c in table.columns]
    header = "<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in columns) + "</tr>"
    lines = []
    for i, row in enumerate(table.to_dict("records")):
        cells = "".join(f"<td>{_esc(row[c])}</td>" if c == "map" else _value_cell(f"composite.{i}.{c}", row[c])
                        for c in columns)
        lines.append(f"<tr>{cells}</tr>")
    return f'<table class="poses">{header}\n' + "\n".join(lines) + "\n</table>"


def render_dataset_report(dataset_id: str, models: Mapping[str, Mapping], map_stats: Mapping,
                          out_html: str | os.PathLike, *, density_map: DensityMap | None = None,
                          histogram_bins: int = 80, n_worst_residues: int = 10, title: str | None = None,
                          composite: pd.DataFrame | None = None, cnn: Mapping | None = None) -> Path:
    """Write a self-contained HTML report for one dataset, atomically.

    Parameters
    ----------
    dataset_id
        Dataset name shown in the title.
    models
        One entry per validated model, keyed by the step that produced it ("input", "fit", ...):
        ``{"scores": <scores.json dict>, "per_residue": DataFrame or None,
        "plots": {"per_residue" | "fsc" | "ramachandran": PNG bytes or path}}``. Empty when the
        dataset has no model.
    map_stats
        The prepare step's statistics record (resolution_A, voxel_size_A, shape_zyx, ...).
    out_html
        Output path.
    density_map
        The prepared map, for the histogram of map values (skipped when ``None``).
    histogram_bins, n_worst_residues
        Histogram bins; rows of the lowest-local-CC table.
    composite
        The composite step's component table (datasets with component maps).
    cnn
        The cnn_predict step: ``{"summary": <summary.json dict>, "slices": PNG bytes or path}``.
    """
    text = build_dataset_report(dataset_id, models, map_stats, density_map=density_map,
                                histogram_bins=histogram_bins, n_worst_residues=n_worst_residues, title=title,
                                composite=composite, cnn=cnn)
    write_text_atomic(out_html, text)
    log.info("report for %s written to %s", dataset_id, out_html)
    return Path(out_html)


# -- across datasets ------------------------------------------------------------------------------

def summary_table(entries: Iterable[tuple[str, str, Mapping]]) -> pd.DataFrame:
    """One row per (dataset, step, scores) with the headline numbers of :data:`SUMMARY_COLUMNS`."""
    rows = []
    for dataset_id, step, scores in entries:
        row = {"dataset": dataset_id, "step": step}
        for section, key, _ in SUMMARY_COLUMNS:
            value = (scores.get(section) or {}).get(key)
            row[f"{section}.{key}"] = value if isinstance(value, int | float) else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["dataset", "step"] + [f"{s}.{k}" for s, k, _ in SUMMARY_COLUMNS])


def build_summary_report(table: pd.DataFrame, title: str = "emforge summary") -> str:
    """HTML page with the cross-dataset summary table (links to each dataset's report)."""
    columns = [(f"{s}.{k}", label) for s, k, label in SUMMARY_COLUMNS if table[f"{s}.{k}"].notna().any()]
    header = "<tr><th>dataset</th><th>model</th>" + "".join(f"<th>{_esc(label)}</th>" for _, label in columns) + "</tr>"
    lines = []
    for row in table.itertuples(index=False):
        values = dict(zip(table.columns, row))
        cells = "".join(_value_cell(f"summary.{values['dataset']}.{values['step']}.{c}", values[c]) for c, _ in columns)
        href = urllib.parse.quote(str(values["dataset"]))
        lines.append(f'<tr><td><a href="{_esc(href)}/report.html">{_esc(values["dataset"])}</a></td>'
                     f"<td>{_esc(values['step'])}</td>{cells}</tr>")
    parts = [f"<h1>{_esc(title)}</h1>", _meta_line("datasets", str(table["dataset"].nunique())),
             f'<table class="summary">\n{header}\n' + "\n".join(lines) + "\n</table>"]
    return _page(title, parts)


def render_summary_report(table: pd.DataFrame, out_html: str | os.PathLike, out_tsv: str | os.PathLike) -> None:
    """Write the summary table as TSV and as an HTML page, atomically."""
    from emforge.atomic import atomic_path

    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    write_text_atomic(out_html, build_summary_report(table))
