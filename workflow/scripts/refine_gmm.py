"""Rule refine_gmm: TEMPy-ReFF B-factors and positional refinement of the fitted model."""

from emforge.maps import read_map
from emforge.models import read_model, write_model
from emforge.refine.reff import refine_gmm
from emforge.workflow_support import rule_log, write_json, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.refine)
resolution_A = float(smk.params.resolution_A)
seed = int(smk.params.seed)

with rule_log(smk.log[0], "refine_gmm", smk.threads) as log:

    def progress(iteration, total, ccc):
        log.info("iteration %d (at most %d): CCC %.4f", iteration, total, ccc)

    result = refine_gmm(read_model(smk.input.model), read_map(smk.input.map), resolution_A,
                        protocol=settings["protocol"], k_gmm_kj_per_mol=settings["k_gmm_kj_per_mol"],
                        max_iterations=settings["max_iterations"], seed=seed, progress=progress)
    write_model(smk.output.model, result.model)
    write_table(smk.output.trajectory, result.trajectory)
    write_json(smk.output.summary, {"dataset": smk.wildcards.dataset, **result.summary})
    write_provenance(smk.output.provenance, "refine_gmm", parameters={**settings, "resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map}, seed=seed)
