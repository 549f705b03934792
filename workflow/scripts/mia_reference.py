# mia_reference, mia_trained_reference: the base model's statistics of a member sample, the Ref attack's
# reference.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import rule_base_model, write_tables
from piimem.mia import member_sample, scoring_statistics

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
statistics = scoring_statistics(base, tokenizer, member_sample(inputs.members), params.mia,
                                max_length=params.max_length, device=params.device)
write_tables({"statistics": statistics}, snakemake.output)
