"""Rule ensemble: TEMPy-ReFF ensemble of the refined model, its ensemble map and RMSF."""

from emforge.maps import read_map, write_map
from emforge.models import read_model, write_models
from emforge.refine.ensemble import generate_ensemble
from emforge.workflow_support import rule_log, write_json, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.ensemble)
resolution_A = float(smk.params.resolution_A)
seed = int(smk.params.seed)

with rule_log(smk.log[0], "ensemble", smk.threads) as log:

    def progress(n, total, ccc):
        log.info("%d members (at most %d): ensemble-map CCC %.4f", n, total, ccc)

    result = generate_ensemble(read_model(smk.input.model), read_map(smk.input.map), resolution_A,
                               max_members=settings["max_members"], k_ens=settings["k_ens"],
                               k_dens=settings["k_dens"], md_steps=settings["md_steps"], seed=seed,
                               progress=progress)
    write_models(smk.output.models, result.members)
    write_map(smk.output.map, result.map)
    write_table(smk.output.rmsf, result.rmsf)
    write_table(smk.output.curve, result.curve)
    write_json(smk.output.summary, {"dataset": smk.wildcards.dataset, **result.summary})
    write_provenance(smk.output.provenance, "ensemble", parameters={**settings, "resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map}, seed=seed)
