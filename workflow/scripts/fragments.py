"""Rule fragments: EM-Refiner Step-2 fragments of the fitted model in the prepared map."""

from emforge.maps import read_map
from emforge.models import read_model
from emforge.refine.emrefiner.pipeline import find_fragments
from emforge.workflow_support import rule_log, write_provenance, write_table

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive
resolution_A = float(smk.params.resolution_A)

with rule_log(smk.log[0], "fragments", smk.threads) as log:
    found = find_fragments(read_model(smk.input.model), read_map(smk.input.map), resolution_A)
    table = found.table()
    log.info("%d fragments over %d residues (%d helix, %d strand residues)", len(table), len(found.ss),
             (found.ss == "H").sum(), (found.ss == "E").sum())
    write_table(smk.output.table, table)
    write_provenance(smk.output.provenance, "fragments", parameters={"resolution_A": resolution_A},
                     inputs={"model": smk.input.model, "map": smk.input.map})
