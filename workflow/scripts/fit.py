"""Rule fit: place the starting model in the prepared map; write the fitted model, poses and a summary."""

from emforge.fit import fit_model
from emforge.maps import read_map
from emforge.models import read_model, write_model
from emforge.workflow_support import rule_log, write_json, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.fit)
resolution_A = float(smk.params.resolution_A)
seed = int(smk.params.seed)

with rule_log(smk.log[0], "fit", smk.threads) as log:
    result = fit_model(read_model(smk.input.model), read_map(smk.input.map), resolution_A,
                       method=settings["method"], angular_step_deg=settings["angular_step_deg"],
                       n_poses=settings["n_poses"], seed=seed)
    best = result.poses.iloc[0]
    log.info("best pose: CC %.4f, z-score %.1f, rotation %.1f deg", result.cc, float(best["z_score"]),
             result.transform.rotation_deg)
    write_model(smk.output.model, result.model)
    write_table(smk.output.poses, result.poses)
    write_json(smk.output.summary, {
        "dataset": smk.wildcards.dataset, "method": settings["method"], "cc": result.cc,
        "z_score": float(best["z_score"]), "rotation_deg": result.transform.rotation_deg,
        "rotation": result.transform.rotation, "translation_A": result.transform.translation,
        "timings_s": result.timings_s})
    write_provenance(smk.output.provenance, "fit", parameters={**settings, "resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map}, seed=seed)
