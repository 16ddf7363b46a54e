"""Rule composite: merge a dataset's aligned component maps by mixture responsibilities."""

from emforge.composite import composite_map
from emforge.maps import read_map, write_map
from emforge.models import read_model
from emforge.workflow_support import rule_log, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
settings = dict(smk.params.composite)
resolution_A = float(smk.params.resolution_A)

with rule_log(smk.log[0], "composite", smk.threads) as log:
    maps = [read_map(path) for path in smk.input.maps]
    result = composite_map(maps, read_model(smk.input.model), resolution_A=resolution_A,
                           n_iterations=settings["iterations"])
    table = result.components.assign(map=list(smk.input.maps))
    for row in table.itertuples(index=False):
        log.info("component %d (%s): %d atoms inside, %d taken (sharpest here), mean B %.1f Å^2",
                 row.component, row.map, row.n_atoms, row.n_kept, row.mean_b_A2)
    write_map(smk.output.map, result.map)
    write_table(smk.output.components, table)
    write_provenance(smk.output.provenance, "composite", parameters={**settings, "resolution_A": resolution_A},
                     inputs={**{f"map_{k}": path for k, path in enumerate(smk.input.maps, start=1)},
                             "model": smk.input.model})
