# perplexity: the test (and validation) perplexity of every checkpoint of a run beside the base model's.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import evaluate_checkpoints, rule_base_model
from piimem.utility import Utility

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
utility = Utility.from_files(base, tokenizer, messages=inputs.messages, splits=inputs.splits, options=params.utility,
                             seed=params.seed, max_length=params.max_length, device=params.device)
measured = evaluate_checkpoints(inputs.manifest, snakemake.output, base, utility.tables)
utility.check_learnt(measured[-1])
