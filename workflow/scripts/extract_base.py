# extract_base: the base model's continuations of every prompt set and the PII in them; every run's rates
# leave these finds out.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import rule_base_model, write_tables
from piimem.extraction.untargeted import ExtractionAttack

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
attack = ExtractionAttack.from_files(tokenizer, inputs.prompts, params.extraction, device=params.device,
                                     score_threshold=params.score_threshold, ignore=params.ignore)
write_tables(attack.base_tables(base), snakemake.output)
