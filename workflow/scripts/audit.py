# audit: the privacy audit of a run at its last checkpoint (piimem.audit).
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.audit.scores import RunAudit
from piimem.evaluate import evaluate_checkpoints, rule_base_model

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
audit = RunAudit.from_files(base, tokenizer, inputs.canaries, inputs.manifest, params.audit,
                            batch_size=params.batch_size, device=params.device)
evaluate_checkpoints(inputs.manifest, snakemake.output, base, audit.tables)
