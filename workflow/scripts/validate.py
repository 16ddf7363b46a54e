"""Rule validate: fit, geometry and reference metrics of one model, written into its folder."""

from pathlib import Path

from emforge.validate import ValidationSettings, validate_model, write_validation
from emforge.workflow_support import rule_log, write_provenance

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = ValidationSettings.from_mapping({**smk.params.validate, "seed": int(smk.params.seed)})
resolution_A = float(smk.params.resolution_A)
reference = smk.input.reference[0] if len(smk.input.reference) else None

with rule_log(smk.log[0], "validate", smk.threads) as log:
    result = validate_model(smk.input.model, smk.input.map, resolution_A, reference_path=reference,
                            settings=settings, progress=lambda what: log.info("%s done", what))
    result.summary = {"dataset": smk.wildcards.dataset, "step": smk.wildcards.step, **result.summary}
    written = write_validation(result, Path(smk.output.scores).parent)
    Path(smk.output.plots).mkdir(parents=True, exist_ok=True)
    fit, geometry = result.summary.get("map_fit", {}), result.summary.get("geometry", {})
    log.info("cc %s, cc_mask %s, MolProbity score %s", fit.get("cc"), fit.get("cc_mask"),
             geometry.get("molprobity_score"))
    log.info("wrote %s", ", ".join(str(p) for p in written.values()))
    write_provenance(smk.output.provenance, "validate", parameters={**vars(settings), "resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map, "reference": reference},
                     seed=settings.seed)
