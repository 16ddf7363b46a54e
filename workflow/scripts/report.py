"""Rule report: one self-contained HTML page per dataset, with every validated model."""

from pathlib import Path

from emforge.maps import read_map
from emforge.report import read_per_residue, render_dataset_report
from emforge.workflow_support import read_json, rule_log

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.report)

with rule_log(smk.log[0], "report", smk.threads) as log:
    models = {}
    for step in smk.params.steps:
        plots = Path(smk.input[f"{step}__plots"])
        models[step] = {"scores": read_json(smk.input[f"{step}__scores"]),
                        "per_residue": read_per_residue(smk.input[f"{step}__per_residue"]),
                        "plots": {p.stem: p for p in sorted(plots.glob("*.png"))}}
    if "fit" in models and "fit_summary" in smk.input.keys():
        import pandas as pd

        models["fit"]["fit"] = {"summary": read_json(smk.input.fit_summary),
                                "poses": pd.read_csv(smk.input.fit_poses, sep="\t")}
    if "refine_emrefiner" in models and "refine_emrefiner_summary" in smk.input.keys():
        import pandas as pd

        models["refine_emrefiner"]["refine"] = {
            "summary": read_json(smk.input.refine_emrefiner_summary),
            "trajectory": pd.read_csv(smk.input.refine_emrefiner_trajectory, sep="\t")}
    if "refine_gmm" in models and "refine_gmm_summary" in smk.input.keys():
        import pandas as pd

        from emforge.models import read_model
        from emforge.report import b_factors_per_residue

        entry = {"summary": read_json(smk.input.refine_gmm_summary),
                 "trajectory": pd.read_csv(smk.input.refine_gmm_trajectory, sep="\t"),
                 "b_per_residue": b_factors_per_residue(read_model(smk.input["refine_gmm__model"]))}
        if "ensemble_summary" in smk.input.keys():
            entry["ensemble"] = {"summary": read_json(smk.input.ensemble_summary),
                                 "rmsf": pd.read_csv(smk.input.ensemble_rmsf, sep="\t"),
                                 "curve": pd.read_csv(smk.input.ensemble_curve, sep="\t")}
        models["refine_gmm"]["gmm"] = entry
    composite = None
    if "composite_components" in smk.input.keys():
        import pandas as pd

        composite = pd.read_csv(smk.input.composite_components, sep="\t")
    cnn = None
    if "cnn_summary" in smk.input.keys():
        cnn = {"summary": read_json(smk.input.cnn_summary), "slices": smk.input.cnn_slices}
    if not models:
        log.info("dataset has no model: the report shows the map only")
    render_dataset_report(
        smk.wildcards.dataset, models, read_json(smk.input.map_stats), smk.output.html,
        density_map=read_map(smk.input.map), histogram_bins=settings["histogram_bins"],
        n_worst_residues=settings["n_worst_residues"], composite=composite, cnn=cnn)
    log.info("wrote %s with %d model(s)", smk.output.html, len(models))
