"""Rule refine_emrefiner: EM-Refiner Steps 2-3 and the OpenMM finish on the fitted model."""

import pandas as pd

from emforge.maps import read_map
from emforge.models import read_model, write_model
from emforge.refine.emrefiner.pipeline import fragments_from_table, refine_emrefiner
from emforge.workflow_support import rule_log, write_json, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.refine)
resolution_A = float(smk.params.resolution_A)
seed = int(smk.params.seed)

with rule_log(smk.log[0], "refine_emrefiner", smk.threads) as log:
    model = read_model(smk.input.model)
    n_res = model.without_hydrogens().protein().n_residues
    fragments = fragments_from_table(pd.read_csv(smk.input.fragments, sep="\t"), n_res, smk.input.fragments)
    last = {}

    def progress(stage, done, total):
        if last.get(stage) is None or done == total or done - last[stage] >= max(1, total // 10):
            log.info("%s: %d/%d temperatures", stage, done, total)
            last[stage] = done

    result = refine_emrefiner(model, read_map(smk.input.map), resolution_A, preset=settings["preset"], seed=seed,
                              fragments=fragments, relax=settings["relax"], n_jobs=smk.threads,
                              progress=progress)
    s = result.summary
    log.info("CC %.4f -> %.4f (Step 2 %.4f, Step 3 %.4f) in %.0f s", s["cc_start"], s["cc_final"], s["cc_step2"],
             s["cc_step3"], s["timings_s"]["total_s"])
    write_model(smk.output.model, result.model)
    write_table(smk.output.trajectory, result.trajectory)
    write_json(smk.output.summary, {"dataset": smk.wildcards.dataset, **s})
    write_provenance(smk.output.provenance, "refine_emrefiner",
                     parameters={**settings, "resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map, "fragments": smk.input.fragments},
                     seed=seed)
