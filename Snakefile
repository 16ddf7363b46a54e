# emforge: build and refine atomic protein models in cryo-EM maps.
# Layout and conventions: DESIGN.md (config holds science only; execution settings live in profiles/).

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, schema="config/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/gmm.smk"
include: "workflow/rules/cnn.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    input:
        all_reports(),
        "results/summary.html",
    default_target: True
