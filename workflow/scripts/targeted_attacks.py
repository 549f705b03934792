# targeted_attacks: the targeted attacks on every checkpoint of a run, beside the base model's numbers
# (targeted_base's).
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import evaluate_checkpoints, rule_base_model
from piimem.extraction.targeted import TargetedAttacks, TargetedBaseline

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
attacks = TargetedAttacks.from_files(tokenizer, inputs.targets, inputs.association, params.options,
                                     score_threshold=params.score_threshold, ignore=params.ignore, device=params.device)
baseline = TargetedBaseline.from_files(attacks, results=inputs.base_results, records=inputs.base_records)
evaluate_checkpoints(inputs.manifest, snakemake.output, base, baseline.tables)
