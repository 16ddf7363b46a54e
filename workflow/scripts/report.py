"""Rule report: one self-contained HTML page per dataset."""

from emforge.maps import read_map
from emforge.report import read_per_residue, render_dataset_report
from emforge.workflow_support import read_json, rule_log

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.report)
scores_path = getattr(smk.input, "scores", None)
per_residue_path = getattr(smk.input, "per_residue", None)

with rule_log(smk.log[0], "report", smk.threads) as log:
    scores = read_json(scores_path) if scores_path else None
    per_residue = read_per_residue(per_residue_path) if per_residue_path else None
    if scores is None:
        log.info("dataset has no model: the report shows the map only")
    render_dataset_report(
        smk.wildcards.dataset, scores, per_residue, read_json(smk.input.map_stats), smk.output.html,
        density_map=read_map(smk.input.map), histogram_bins=settings["histogram_bins"],
        n_worst_residues=settings["n_worst_residues"])
    log.info("wrote %s", smk.output.html)
