"""Rule validate: the model's fit to the prepared map and, when given, agreement with the reference."""

from emforge.validate import validate_model
from emforge.workflow_support import rule_log, write_json, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.validate)
resolution_A = float(smk.params.resolution_A)
reference = smk.input.reference[0] if len(smk.input.reference) else None

with rule_log(smk.log[0], "validate", smk.threads) as log:
    summary, per_residue = validate_model(
        smk.input.model, smk.input.map, resolution_A, reference_path=reference,
        kernel=settings["kernel"], mask_radius_A=settings["mask_radius_A"],
        local_radius_A=settings["local_radius_A"])
    fit = summary["map_fit"]
    log.info("cc %.4f, cc_mask %.4f, local CC median %s", fit["cc"], fit["cc_mask"], fit.get("local_cc_median"))
    if "reference" in summary:
        log.info("vs reference: TM-score %.4f, RMSD %.3f Å", summary["reference"]["tm_score"],
                 summary["reference"]["rmsd_A"])
    summary = {"dataset": smk.wildcards.dataset, **summary}
    write_table(smk.output.per_residue, per_residue)
    write_json(smk.output.scores, summary)
    write_provenance(smk.output.provenance, "validate", parameters={**settings, "resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map, "reference": reference})
