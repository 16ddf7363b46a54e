"""Rule summary: headline numbers of every validated model across datasets (TSV + HTML)."""

from pathlib import Path

from emforge.report import render_summary_report, summary_table
from emforge.workflow_support import read_json, rule_log

smk = snakemake  # noqa: F821 - injected by Snakemake's script directive

with rule_log(smk.log[0], "summary", smk.threads) as log:
    # results/{dataset}/validate/{step}/scores.json
    entries = [(Path(p).parents[2].name, Path(p).parent.name, read_json(p)) for p in smk.input.scores]
    table = summary_table(entries)
    render_summary_report(table, smk.output.html, smk.output.tsv)
    log.info("summary of %d model(s) in %d dataset(s)", len(table), table["dataset"].nunique())
