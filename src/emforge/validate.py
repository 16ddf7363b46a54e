"""Validation of a model: fit to a map, geometry, and agreement with a reference.

One entry point shared by the CLI (``emforge validate``), the workflow's
``validate`` rule and the tests. Three metric families, each optional:

* **map fit** (with a map and its resolution): global CCC variants, MOC and the
  model-map FSC (:mod:`emforge.global_fit`, :mod:`emforge.fsc`), and per residue
  the local CC (8 Å, paper 000), SMOC/SMOCf and LoQFit (:mod:`emforge.local_fit`),
  Q-score (:mod:`emforge.qscore`) and the decoupled local PCC of paper 003
  (:mod:`emforge.local_pcc`);
* **geometry** (always): bond/angle RMSZ, Ramachandran, rotamers, C-beta
  deviations, cis/twisted peptides, clashscore on riding hydrogens and the
  MolProbity score (:mod:`emforge.geometry`);
* **reference** (with a reference model): TM-score, RMSD, GDT-TS/HA, C-alpha
  lDDT, placement cRMSD and CRscore (:mod:`emforge.compare`).

Outputs (:func:`write_validation`): ``scores.json`` (global numbers, keys carry
units), ``per_residue.csv`` (one row per residue: every local score and flag),
``fsc.csv`` and PNG plots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from emforge import jsonio
from emforge.atomic import atomic_path, write_text_atomic
from emforge.errors import InputError, require_positive
from emforge.maps import DensityMap, read_map
from emforge.models import AtomModel, read_model

log = logging.getLogger(__name__)

KEY_COLUMNS = ["chain_id", "res_seq", "ins_code", "res_name"]
FLAG_COLUMNS = ["rama_outlier", "rotamer_outlier", "cbeta_outlier", "has_clash", "geometry_outlier",
                "peptide_flag"]


@dataclass(frozen=True)
class ValidationSettings:
    """Scientific settings of a validation run (the workflow's ``validate:`` config section)."""

    kernel: str = "emrefiner"           #: density kernel for CC/FSC model maps
    mask_radius_A: float | None = None  #: radius around atoms for cc_mask (None: max(3, R/2))
    local_radius_A: float = 8.0         #: radius around a residue for its local CC (paper 000)
    fsc_mask_radius_A: float | None = None  #: soft mask radius for the model-map FSC (None: whole box)
    qscore_sigma_A: float = 0.6         #: width of Q-score's reference Gaussian (Pintilie 2020)
    #: SMOC/SMOCf voxel frame and model map: "emforge" (voxel centres at origin + i * voxel, exact
    #: Gaussians) or "tempy" (TEMPy 2.1.2's half-voxel placement and snapped-atom model map: TEMPy's numbers)
    smoc_convention: str = "emforge"
    seed: int = 0                       #: for any stochastic part (recorded in the output)
    families: tuple[str, ...] = ("map_fit", "local_fit", "qscore", "geometry", "reference")

    @classmethod
    def from_mapping(cls, values: dict | None) -> ValidationSettings:
        values = dict(values or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown validation setting(s): {', '.join(unknown)}")
        if "families" in values:
            values["families"] = tuple(values["families"])
        settings = cls(**values)
        if settings.smoc_convention not in ("emforge", "tempy"):
            raise InputError(f"smoc_convention must be 'emforge' or 'tempy', got {settings.smoc_convention!r}")
        return settings


@dataclass
class ValidationResult:
    """Everything one validation run found."""

    summary: dict
    per_residue: pd.DataFrame
    fsc_curve: pd.DataFrame | None = None
    plots: dict[str, bytes] = field(default_factory=dict)


def _merge(base: pd.DataFrame, table: pd.DataFrame, skip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Append ``table``'s metric columns to ``base`` (same residues, same order)."""
    if len(table) != len(base):
        raise ValueError(f"per-residue table has {len(table)} rows, expected {len(base)}")
    if not (table["res_seq"].to_numpy() == base["res_seq"].to_numpy()).all():
        raise ValueError("per-residue tables disagree on residue order")
    extra = [c for c in table.columns if c not in KEY_COLUMNS and c not in base.columns and c not in skip]
    out = base.copy()
    for c in extra:
        out[c] = table[c].to_numpy()
    return out


def _map_fit(model: AtomModel, density_map: DensityMap, resolution_A: float, s: ValidationSettings,
             per_residue: pd.DataFrame, step: Callable[[str], None], map_path, model_path):
    from emforge.fsc import model_map_fsc
    from emforge.global_fit import global_fit
    from emforge.masks import model_mask
    from emforge.scores import check_overlap, default_mask_radius_A, local_cc_per_residue, pearson_cc
    from emforge.simulate import simulate_map

    if np.std(density_map.data, dtype=np.float64) == 0:
        raise InputError("map has zero variance (every voxel has the same value)", map_path)
    check_overlap(model, density_map, map_path, model_path)
    summary: dict = {}
    curve = None
    simulated = simulate_map(model, density_map, resolution_A, kernel=s.kernel)
    if "map_fit" in s.families:
        # cc / cc_mask: Pearson over the grid with emforge's kernel (paper 000 Eq. 3-4), as `emforge score`
        mask_radius = default_mask_radius_A(resolution_A) if s.mask_radius_A is None else s.mask_radius_A
        summary["cc"] = pearson_cc(simulated.data, density_map.data)
        summary["cc_mask"] = pearson_cc(simulated.data, density_map.data,
                                        model_mask(model, density_map, mask_radius))
        fit = global_fit(model, density_map, resolution_A, kernel=s.kernel, mask_radius_A=s.mask_radius_A,
                         fsc_mask_radius_A=s.fsc_mask_radius_A, map_path=map_path, model_path=model_path)
        fsc = model_map_fsc(model, density_map, resolution_A, kernel=s.kernel, mask_radius_A=s.fsc_mask_radius_A,
                            sim_map=simulated)
        curve = pd.DataFrame(fsc["curve"])
        summary.update({k: v for k, v in fit.items() if k != "curve"})
        summary["resolution_fsc05_A"] = fsc["resolution_fsc05_A"]
        step("global fit and FSC")
    local = local_cc_per_residue(model, density_map, simulated, s.local_radius_A)
    per_residue = _merge(per_residue, local.rename(columns={"n_points": "local_cc_n_points"}))
    summary["local_cc_radius_A"] = s.local_radius_A
    if "local_fit" in s.families:
        from emforge.local_fit import loqfit, smoc, tempy_classic_model_map

        if s.smoc_convention == "tempy":
            smoc_kw = {"sim_map": tempy_classic_model_map(model, density_map, resolution_A), "grid_offset_vox": 0.5}
        else:
            smoc_kw = {}
        for fragment in (False, True):
            per_residue = _merge(per_residue, smoc(model, density_map, resolution_A, fragment=fragment, **smoc_kw),
                                 skip=("n_voxels",))
        per_residue = _merge(per_residue, loqfit(model, density_map, resolution_A))
        from emforge.local_pcc import local_pcc_decoupled

        per_residue = _merge(per_residue, local_pcc_decoupled(model, density_map, resolution_A),
                             skip=("n_points",))
        step("local fit (SMOC, SMOCf, LoQFit, local PCC)")
    if "qscore" in s.families:
        from emforge.qscore import qscore

        _, q_residue, q_summary = qscore(model, density_map, sigma_A=s.qscore_sigma_A, seed=s.seed)
        per_residue = _merge(per_residue, q_residue, skip=("n_atoms",))
        summary.update({k if k.startswith("qscore") else f"qscore_{k}": v for k, v in q_summary.items()})
        step("Q-score")
    for column in ("local_cc", "smoc", "smocf", "loqfit_A", "qscore", "local_pcc_decoupled"):
        if column in per_residue:
            values = pd.to_numeric(per_residue[column], errors="coerce").to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            summary[f"{column}_mean"] = float(finite.mean()) if finite.size else None
            summary[f"{column}_median"] = float(np.median(finite)) if finite.size else None
    return summary, per_residue, curve


def _geometry(model: AtomModel, per_residue: pd.DataFrame, step: Callable[[str], None]):
    from emforge.geometry import cbeta_deviations, peptide_bonds, ramachandran, rotamers
    from emforge.geometry.clashes import clashscore
    from emforge.geometry.covalent import covalent_geometry
    from emforge.geometry.hydrogens import add_riding_hydrogens
    from emforge.geometry.molprobity import molprobity_score

    summary: dict = {}
    for validator in (covalent_geometry, ramachandran, rotamers, cbeta_deviations, peptide_bonds):
        part, table = validator(model)
        summary.update(part)
        per_residue = _merge(per_residue, table)
    with_h = add_riding_hydrogens(model)
    part, table = clashscore(with_h)
    summary.update(part)
    per_residue = _merge(per_residue, table)
    if None not in (summary.get("clashscore"), summary.get("rotamer_outlier_pct"), summary.get("rama_favoured_pct")):
        summary["molprobity_score"] = molprobity_score(summary["clashscore"], summary["rotamer_outlier_pct"],
                                                       summary["rama_favoured_pct"])
    else:
        summary["molprobity_score"] = None
    step("geometry")
    return summary, per_residue


def _reference(model: AtomModel, reference: AtomModel, per_residue: pd.DataFrame):
    from emforge.compare import compare_models, crscore, lddt_ca, placement_crmsd, residue_correspondence

    summary = compare_models(model, reference)
    corr = residue_correspondence(model, reference)
    model_ca, ref_ca = model.calpha(), reference.calpha()
    paired_model = model_ca.coords[corr.model_index]
    paired_ref = ref_ca.coords[corr.reference_index]
    summary["placement_crmsd_A"] = placement_crmsd(paired_model, paired_ref)
    for key, value in crscore(model_ca.coords, ref_ca.coords).items():
        if np.ndim(value) == 0:  # the pairing itself (index arrays) stays out of the summary
            summary[key if key.startswith("crscore") else f"crscore_{key}"] = value
    _, per_pair = lddt_ca(paired_model, paired_ref)
    rows = np.searchsorted(np.unique(model.residue_index), model_ca.residue_index[corr.model_index])
    lddt = np.full(len(per_residue), np.nan)
    lddt[rows] = per_pair
    per_residue = per_residue.copy()
    per_residue["lddt_ca"] = lddt
    return summary, per_residue


def _flags(per_residue: pd.DataFrame) -> pd.DataFrame:
    """Boolean flag columns and one ``flags`` text column ("rama_outlier;clash")."""
    t = per_residue.copy()

    def col(name, default=np.nan):
        return t[name] if name in t else pd.Series(default, index=t.index)

    t["rama_outlier"] = col("rama_category", "").astype(str).eq("outlier")
    t["rotamer_outlier"] = col("rotamer_category", "").astype(str).eq("outlier")
    # object column (True/False/None): only a real True is an outlier
    t["cbeta_outlier"] = t["cbeta_outlier"].eq(True) if "cbeta_outlier" in t else False
    t["has_clash"] = pd.to_numeric(col("n_clashes", 0), errors="coerce").fillna(0) > 0
    geom = pd.to_numeric(col("n_bond_outliers", 0), errors="coerce").fillna(0) + \
        pd.to_numeric(col("n_angle_outliers", 0), errors="coerce").fillna(0)
    t["geometry_outlier"] = geom > 0
    peptide = col("peptide", "").astype(str)
    cis_nonpro = peptide.eq("cis") & ~t["res_name"].astype(str).eq("PRO")
    t["peptide_flag"] = cis_nonpro | peptide.eq("twisted")
    labels = {"rama_outlier": "rama", "rotamer_outlier": "rotamer", "cbeta_outlier": "cbeta",
              "has_clash": "clash", "geometry_outlier": "bond_angle", "peptide_flag": "peptide"}
    flags = pd.Series("", index=t.index)
    for c in FLAG_COLUMNS:
        flags = flags.where(~t[c].to_numpy(dtype=bool), flags + labels[c] + ";")
    t["flags"] = flags.str.rstrip(";")
    return t


def validate_structure(model: AtomModel, density_map: DensityMap | None = None, resolution_A: float | None = None,
                       reference: AtomModel | None = None, settings: ValidationSettings | None = None,
                       progress: Callable[[str], None] | None = None, map_path=None, model_path=None,
                       reference_path=None) -> ValidationResult:
    """Validate an in-memory model; see the module docstring for the metrics.

    Parameters
    ----------
    model
        The model (heavy atoms; hydrogens, if any, are rebuilt for the clash check).
    density_map, resolution_A
        The map and its resolution in Å; both or neither.
    reference
        Reference structure for TM-score, RMSD, GDT, lDDT, cRMSD and CRscore.
    progress
        Called with a short description after each metric family.
    """
    s = settings or ValidationSettings()
    step = progress or (lambda what: log.info("validate: %s done", what))
    if len(model) == 0:
        raise InputError("model holds no atoms", model_path)
    if (density_map is None) != (resolution_A is None):
        raise InputError("a map needs its resolution and a resolution needs a map")
    table = model.residue_table()
    per_residue = pd.DataFrame({c: table[c] for c in KEY_COLUMNS})
    summary: dict = {
        "model": {"path": None if model_path is None else os.fspath(model_path), "n_atoms": len(model),
                  "n_residues": model.n_residues, "chains": model.chain_ids,
                  "sequence_lengths": {c: len(q) for c, q in model.sequences().items()}},
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()},
    }
    curve = None
    map_families = {"map_fit", "local_fit", "qscore"} & set(s.families)
    if density_map is not None and map_families:
        resolution = require_positive(resolution_A, "resolution (Å)")
        fit, per_residue, curve = _map_fit(model, density_map, resolution, s, per_residue, step,
                                           map_path, model_path)
        summary["map_fit"] = {"map": None if map_path is None else os.fspath(map_path),
                              "resolution_A": resolution, **fit}
    if "geometry" in s.families:
        geometry, per_residue = _geometry(model, per_residue, step)
        summary["geometry"] = geometry
    if reference is not None and "reference" in s.families:
        ref_summary, per_residue = _reference(model, reference, per_residue)
        summary["reference"] = {"path": None if reference_path is None else os.fspath(reference_path),
                                **ref_summary}
        step("comparison with the reference")
    per_residue = _flags(per_residue)
    summary["flags"] = {c: int(per_residue[c].sum()) for c in FLAG_COLUMNS}
    return ValidationResult(summary=summary, per_residue=per_residue, fsc_curve=curve)


def validate_model(model_path: str | os.PathLike, map_path: str | os.PathLike | None = None,
                   resolution_A: float | None = None, reference_path: str | os.PathLike | None = None,
                   settings: ValidationSettings | None = None,
                   progress: Callable[[str], None] | None = None) -> ValidationResult:
    """Read the files and run :func:`validate_structure`."""
    model = read_model(model_path)
    density_map = read_map(map_path) if map_path else None
    reference = read_model(reference_path) if reference_path else None
    return validate_structure(model, density_map, resolution_A, reference, settings, progress,
                              map_path=map_path, model_path=model_path, reference_path=reference_path)


def render_plots(result: ValidationResult) -> dict[str, bytes]:
    """PNG plots of a result: per_residue, fsc (with a map), ramachandran (with geometry)."""
    from emforge import plots

    out: dict[str, bytes] = {}
    tracks = plots.per_residue_tracks(result.per_residue)
    if tracks:
        out["per_residue"] = tracks
    if result.fsc_curve is not None and len(result.fsc_curve):
        fit = result.summary.get("map_fit", {})
        out["fsc"] = plots.fsc_plot(result.fsc_curve["freq_invA"].to_numpy(), result.fsc_curve["fsc"].to_numpy(),
                                    fit.get("resolution_A"), fit.get("resolution_fsc05_A"))
    rama = plots.ramachandran_plot(result.per_residue, background=_rama_background())
    if rama:
        out["ramachandran"] = rama
    return out


def _rama_background() -> dict | None:
    """Top8000 general-case Ramachandran percentiles on their grid, for plot contours."""
    try:
        from emforge.geometry._tables import grid

        g = grid("rama_general")
    except (KeyError, ImportError, FileNotFoundError, ValueError) as exc:
        log.debug("no Ramachandran background: %s", exc)
        return None
    axis = np.arange(-179.0, 180.0, 2.0)
    phi, psi = np.meshgrid(axis, axis, indexing="xy")
    percentile = g(np.stack([phi.ravel(), psi.ravel()], axis=1)).reshape(phi.shape)
    return {"phi_deg": phi, "psi_deg": psi, "percentile": percentile}


def summary_json(summary: dict) -> str:
    """Strict JSON text of a validation summary (NaN -> null)."""
    return jsonio.dumps(summary)


def write_validation(result: ValidationResult, out_dir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
    """Write scores.json, per_residue.csv, fsc.csv (with a map) and plots/*.png into ``out_dir``.

    Every file is written atomically; the returned dict maps a role to its path. Everything that can
    fail on the data (plots, JSON serialisation) is done before the folder is created or touched.
    """
    out = Path(out_dir)
    if plots:
        result.plots = render_plots(result)
    scores_text = summary_json(result.summary)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if plots:
        for name, png in result.plots.items():
            path = out / "plots" / f"{name}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(png)
            written[f"plot_{name}"] = path
    if result.fsc_curve is not None:
        path = out / "fsc.csv"
        with atomic_path(path) as tmp:
            result.fsc_curve.to_csv(tmp, index=False, float_format="%.6g")
        written["fsc"] = path
    path = out / "per_residue.csv"
    with atomic_path(path) as tmp:
        result.per_residue.to_csv(tmp, index=False, float_format="%.5g")
    written["per_residue"] = path
    path = out / "scores.json"
    write_text_atomic(path, scores_text)
    written["scores"] = path
    return written
