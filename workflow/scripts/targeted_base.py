# targeted_base: the targeted attacks (PII inference, reconstruction, association) on the base model, whose
# numbers every run's table sets beside its own.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import rule_base_model, write_tables
from piimem.extraction.targeted import TargetedAttacks

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
attacks = TargetedAttacks.from_files(tokenizer, inputs.targets, inputs.association, params.options,
                                     score_threshold=params.score_threshold, ignore=params.ignore, device=params.device)
write_tables(attacks.base_tables(base), snakemake.output)
