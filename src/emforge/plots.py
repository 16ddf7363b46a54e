"""Validation plots as PNG bytes (matplotlib, Agg backend): no display, no network.

Each function takes plain tables (the per-residue DataFrame of
:mod:`emforge.validate`, an FSC curve) and returns PNG bytes, so the same plot
serves the CLI (files in ``--out-dir``), the workflow and the HTML report.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: per-residue score tracks drawn along the sequence, in order: (column, axis label, "higher is better")
SCORE_TRACKS: tuple[tuple[str, str, bool], ...] = (
    ("local_cc", "local CC", True),
    ("smoc", "SMOC", True),
    ("smocf", "SMOCf", True),
    ("qscore", "Q-score", True),
    ("loqfit_A", "LoQFit (Å)", False),
    ("local_pcc_decoupled", "local PCC (Eq. 10-11)", True),
    ("lddt_ca", "C-alpha lDDT", True),
)

#: per-residue flags marked under the tracks: (column, label, colour)
FLAG_TRACKS: tuple[tuple[str, str, str], ...] = (
    ("rama_outlier", "Rama outlier", "#c0392b"),
    ("rotamer_outlier", "rotamer outlier", "#8e44ad"),
    ("cbeta_outlier", "C-beta dev.", "#d35400"),
    ("has_clash", "clash", "#2c3e50"),
    ("geometry_outlier", "bond/angle", "#16a085"),
    ("peptide_flag", "cis/twisted", "#7f8c8d"),
)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _chains(per_residue: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(per_residue["chain_id"].astype(str)))


def per_residue_tracks(per_residue: pd.DataFrame, tracks: Sequence[tuple[str, str, bool]] = SCORE_TRACKS,
                       flags: Sequence[tuple[str, str, str]] = FLAG_TRACKS, max_chains: int = 12) -> bytes | None:
    """Per-residue scores along the sequence, one panel per score, one column per chain.

    Geometry flags are drawn as ticks in a last panel. Returns None when the
    table has none of the score columns and no flags.
    """
    present = [t for t in tracks if t[0] in per_residue and per_residue[t[0]].notna().any()]
    present_flags = [f for f in flags if f[0] in per_residue and per_residue[f[0]].fillna(False).astype(bool).any()]
    if not present and not present_flags:
        return None
    chains = _chains(per_residue)[:max_chains]
    n_rows = len(present) + (1 if present_flags else 0)
    widths = [max(1.0, (per_residue["chain_id"] == c).sum() / 100.0) for c in chains]
    fig, axes = plt.subplots(n_rows, len(chains), figsize=(min(16.0, 3.0 + 5.5 * sum(widths)), 1.6 * n_rows + 0.6),
                             squeeze=False, sharex="col", gridspec_kw={"width_ratios": widths})
    for col, chain in enumerate(chains):
        sub = per_residue[per_residue["chain_id"].astype(str) == chain]
        x = sub["res_seq"].to_numpy()
        for row, (column, label, _) in enumerate(present):
            ax = axes[row, col]
            y = pd.to_numeric(sub[column], errors="coerce").to_numpy(dtype=float)
            ax.plot(x, y, lw=1.0, color="#2c6fad")
            ax.scatter(x, y, s=4, color="#2c6fad")
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            if row == 0:
                ax.set_title(f"chain {chain}", fontsize=9)
        if present_flags:
            ax = axes[-1, col]
            for k, (column, _label, colour) in enumerate(present_flags):
                hit = sub[column].fillna(False).astype(bool).to_numpy()
                ax.scatter(x[hit], np.full(hit.sum(), k), marker="|", s=60, color=colour)
            ax.set_yticks(range(len(present_flags)))
            ax.set_yticklabels([f[1] for f in present_flags] if col == 0 else [], fontsize=7)
            ax.set_ylim(-0.7, len(present_flags) - 0.3)
            ax.grid(alpha=0.3, axis="x")
        axes[-1, col].set_xlabel("residue number", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def fsc_plot(freq_invA: np.ndarray, fsc: np.ndarray, resolution_A: float | None = None,
             crossing_A: float | None = None) -> bytes:
    """Model-map FSC against spatial frequency, with the 0.5 threshold and its crossing."""
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.plot(freq_invA, fsc, color="#2c6fad", lw=1.5, label="model-map FSC")
    ax.axhline(0.5, color="#7f8c8d", lw=0.8, ls="--", label="0.5")
    if crossing_A:
        ax.axvline(1.0 / crossing_A, color="#c0392b", lw=0.8, label=f"FSC = 0.5 at {crossing_A:.2f} Å")
    if resolution_A:
        ax.axvline(1.0 / resolution_A, color="#27ae60", lw=0.8, ls=":", label=f"map resolution {resolution_A:g} Å")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(min(-0.1, float(np.nanmin(fsc)) - 0.05) if len(fsc) else -0.1, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def ramachandran_plot(per_residue: pd.DataFrame, background: Mapping[str, np.ndarray] | None = None) -> bytes | None:
    """phi/psi scatter with outliers marked; ``background`` = {"phi_deg", "psi_deg", "percentile"}
    grid (e.g. the Top8000 general-case contours) drawn at the favoured/allowed levels."""
    if "phi_deg" not in per_residue or "psi_deg" not in per_residue:
        return None
    table = per_residue.dropna(subset=["phi_deg", "psi_deg"])
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    if background is not None:
        ax.contourf(background["phi_deg"], background["psi_deg"], background["percentile"],
                    levels=[0.0005, 0.02, 1.0], colors=["#dde8f3", "#a9c6e3"], zorder=0)
    category = table.get("rama_category", pd.Series(["unknown"] * len(table), index=table.index)).astype(str)
    styles = {"favoured": ("#2c6fad", 6, "favoured"), "allowed": ("#e0a100", 10, "allowed"),
              "outlier": ("#c0392b", 22, "outlier")}
    for name, (colour, size, label) in styles.items():
        sel = category == name
        if sel.any():
            ax.scatter(table.loc[sel, "phi_deg"], table.loc[sel, "psi_deg"], s=size, color=colour,
                       label=f"{label} ({int(sel.sum())})", zorder=2)
    other = ~category.isin(list(styles))
    if other.any():
        ax.scatter(table.loc[other, "phi_deg"], table.loc[other, "psi_deg"], s=5, color="#95a5a6", zorder=1)
    outliers = table[category == "outlier"]
    for _, row in outliers.head(20).iterrows():
        ax.annotate(f"{row['chain_id']}{row['res_seq']}", (row["phi_deg"], row["psi_deg"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points", color="#c0392b")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks(range(-180, 181, 90))
    ax.set_yticks(range(-180, 181, 90))
    ax.set_xlabel("phi (deg)")
    ax.set_ylabel("psi (deg)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", frameon=True)
    fig.tight_layout()
    return _png(fig)


def refinement_trajectory_plot(trajectory: pd.DataFrame) -> bytes | None:
    """Energy (Eq. 2) and map CC at the end of every annealing temperature, Step 2 then each Step-3
    run side by side along the x axis; ``trajectory`` as written by the EM-Refiner step."""
    if trajectory is None or trajectory.empty or not {"stage", "run", "energy", "cc"} <= set(trajectory.columns):
        return None
    fig, (ax_e, ax_c) = plt.subplots(2, 1, figsize=(7.0, 4.6), sharex=True)
    x0 = 0
    colours = {"step2": "#2c6fad"}
    step3 = ("#c0392b", "#d35400", "#8e44ad", "#16a085", "#7f8c8d")
    for (stage, run), part in trajectory.groupby(["stage", "run"], sort=False):
        x = x0 + np.arange(len(part))
        colour = colours.get(stage, step3[int(run) % len(step3)])
        label = "Step 2 (fragments)" if stage == "step2" else f"Step 3 run {int(run) + 1}"
        ax_e.plot(x, part["energy"], color=colour, lw=1.2, label=label)
        ax_c.plot(x, part["cc"], color=colour, lw=1.2)
        x0 += len(part)
    ax_e.set_ylabel("energy (Eq. 2)")
    ax_c.set_ylabel("CC")
    ax_c.set_xlabel("annealing temperature (end of each; repeats one after another)")
    for ax in (ax_e, ax_c):
        ax.grid(alpha=0.3)
    ax_e.legend(fontsize=7, frameon=False, ncol=3)
    fig.tight_layout()
    return _png(fig)


def gmm_convergence_plot(trajectory: pd.DataFrame, curve: pd.DataFrame | None = None) -> bytes | None:
    """TEMPy-ReFF convergence: model-map CCC per iteration (and the mixture's CC), plus the
    ensemble-map CCC per number of members when ``curve`` is given."""
    if trajectory is None or trajectory.empty or not {"iteration", "ccc"} <= set(trajectory.columns):
        return None
    with_curve = curve is not None and not curve.empty
    fig, axes = plt.subplots(1, 2 if with_curve else 1, figsize=(7.0 if with_curve else 4.6, 3.0), squeeze=False)
    ax = axes[0, 0]
    ax.plot(trajectory["iteration"], trajectory["ccc"], "o-", color="#2c6fad", ms=3, lw=1.2, label="model CCC")
    if "gmm_cc" in trajectory:
        ax.plot(trajectory["iteration"], trajectory["gmm_cc"], "s--", color="#7f8c8d", ms=2.5, lw=1.0,
                label="mixture CC")
    best = int(trajectory["ccc"].idxmax())
    ax.axvline(trajectory["iteration"].iloc[best], color="#c0392b", lw=0.8, ls=":", label="kept")
    ax.set_xlabel("iteration")
    ax.set_ylabel("CCC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    if with_curve:
        ax = axes[0, 1]
        ax.plot(curve["n_members"], curve["ccc"], "o-", color="#16a085", ms=3, lw=1.2)
        ax.set_xlabel("ensemble members")
        ax.set_ylabel("ensemble-map CCC")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def b_factor_rmsf_plot(b_per_residue: pd.DataFrame, rmsf: pd.DataFrame | None = None) -> bytes | None:
    """Per-residue mean B (Å^2) of the refined model along the sequence, and the ensemble's C-alpha
    RMSF (Å) on a second axis; tables with chain_id, res_seq and b_A2 / rmsf_A."""
    if b_per_residue is None or b_per_residue.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 2.8))
    x = np.arange(len(b_per_residue))
    ax.plot(x, b_per_residue["b_A2"], color="#2c6fad", lw=1.2, label="B (Å²)")
    ax.set_ylabel("mean B (Å²)", color="#2c6fad")
    ax.set_xlabel("residue (in model order)")
    ax.grid(alpha=0.3)
    if rmsf is not None and not rmsf.empty:
        key = ["chain_id", "res_seq"]
        merged = b_per_residue[key].merge(rmsf[key + ["rmsf_A"]], on=key, how="left")
        ax2 = ax.twinx()
        ax2.plot(x, merged["rmsf_A"], color="#c0392b", lw=1.0, label="RMSF (Å)")
        ax2.set_ylabel("ensemble RMSF (Å)", color="#c0392b")
    fig.tight_layout()
    return _png(fig)


def cnn_training_plot(log_table: pd.DataFrame) -> bytes | None:
    """C-alpha network training: losses (log scale) and validation CRscore per resolution band
    against the epoch; ``log_table`` as written by :func:`emforge.cnn.train.train`."""
    if log_table is None or log_table.empty or not {"epoch", "train_loss", "val_loss"} <= set(log_table.columns):
        return None
    fig, (ax_loss, ax_cr) = plt.subplots(1, 2, figsize=(8.0, 3.0))
    ax_loss.plot(log_table["epoch"], log_table["train_loss"], "o-", color="#2c6fad", ms=3, lw=1.2, label="training")
    ax_loss.plot(log_table["epoch"], log_table["val_loss"], "s-", color="#c0392b", ms=3, lw=1.2, label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("weighted cross-entropy")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=7, frameon=False)
    for column in (c for c in log_table.columns if c.startswith("crscore_")):
        lo, hi = column[len("crscore_"):].rstrip("A").split("_")
        ax_cr.plot(log_table["epoch"], log_table[column], "o-", ms=3, lw=1.2, label=f"{lo}-{hi} Å")
    ax_cr.set_xlabel("epoch")
    ax_cr.set_ylabel("validation CRscore")
    ax_cr.set_ylim(0, 1)
    ax_cr.grid(alpha=0.3)
    ax_cr.legend(fontsize=7, frameon=False, title="resolution", title_fontsize=7)
    fig.tight_layout()
    return _png(fig)


def calpha_slices_plot(density, probability, peaks_xyz_A: np.ndarray, reference_xyz_A: np.ndarray | None = None,
                       slab_A: float = 1.5) -> bytes:
    """Map and predicted C-alpha probability on the three central planes through the peaks' centroid.

    ``density`` and ``probability`` are DensityMaps on the same grid; peaks (and reference
    C-alphas, when given) within ``slab_A`` of a plane are marked on it. Returns PNG bytes.
    """
    xyz = np.asarray(peaks_xyz_A, dtype=np.float64).reshape(-1, 3)
    centre = xyz.mean(axis=0) if len(xyz) else density.index_to_world(np.array(density.shape[::-1]) / 2.0)
    ijk = np.clip(np.rint(density.world_to_index(centre)).astype(int), 0, np.array(density.shape[::-1]) - 1)
    fig, axes = plt.subplots(2, 3, figsize=(8.4, 5.6))
    vs = np.asarray(density.voxel_size, dtype=np.float64)  # (x, y, z) Å
    # (plane name, axis of the plane normal in x/y/z, slicer on the (z, y, x) array, the x/y axes shown)
    planes = (("xy", 2, (ijk[2], slice(None), slice(None)), (0, 1)),
              ("xz", 1, (slice(None), ijk[1], slice(None)), (0, 2)),
              ("yz", 0, (slice(None), slice(None), ijk[0]), (1, 2)))
    for col, (name, normal, sl, (a, b)) in enumerate(planes):
        extent = None
        for row, (grid, cmap, label) in enumerate(((density, "gray", "map"),
                                                   (probability, "magma", "C-alpha probability"))):
            ax = axes[row, col]
            plane = np.asarray(grid.data[sl], dtype=np.float64)
            lo_a = density.origin[a] - 0.5 * vs[a]
            lo_b = density.origin[b] - 0.5 * vs[b]
            extent = (lo_a, lo_a + plane.shape[1] * vs[a], lo_b, lo_b + plane.shape[0] * vs[b])
            vmin, vmax = (0.0, 1.0) if row else np.percentile(plane, [1, 99.5])
            ax.imshow(plane, origin="lower", cmap=cmap, extent=extent, vmin=vmin, vmax=vmax, interpolation="nearest")
            plane_pos = density.origin[normal] + ijk[normal] * vs[normal]
            near = np.abs(xyz[:, normal] - plane_pos) <= slab_A
            ax.plot(xyz[near, a], xyz[near, b], "o", mfc="none", mec="#2ecc71", ms=5, mew=1.0,
                    label="picked C-alpha")
            if reference_xyz_A is not None:
                ref = np.asarray(reference_xyz_A, dtype=np.float64).reshape(-1, 3)
                ref_near = np.abs(ref[:, normal] - plane_pos) <= slab_A
                ax.plot(ref[ref_near, a], ref[ref_near, b], "+", color="#3498db", ms=5, mew=1.0,
                        label="reference C-alpha")
            ax.set_title(f"{label}, {name} plane", fontsize=8)
            ax.set_xlabel(f"{'xyz'[a]} (Å)", fontsize=7)
            ax.set_ylabel(f"{'xyz'[b]} (Å)", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[1, 0].legend(fontsize=6, frameon=True, loc="upper right")
    fig.tight_layout()
    return _png(fig)
