# piimem: how much personal data does a fine-tuned language model leak, and what stops it?
# Entry point: `snakemake --cores all` runs the embedded default (config/config.yaml).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/pii.smk"
include: "workflow/rules/dedup.smk"
include: "workflow/rules/defense.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/mia.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
