# extract_pii: every checkpoint of a run prompted with every prompt set, its finds scored against the
# training PII (less the base model's finds, extract_base's).
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import evaluate_checkpoints, rule_base_model
from piimem.extraction.untargeted import ExtractionAttack, ExtractionScoring

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
attack = ExtractionAttack.from_files(tokenizer, inputs.prompts, params.extraction, device=params.device,
                                     score_threshold=params.score_threshold, ignore=params.ignore)
scoring = ExtractionScoring.from_files(attack, messages=inputs.messages, splits=inputs.splits, spans=inputs.spans,
                                       base_found=inputs.base_found, base_model=params.base_model,
                                       pretraining_pii=inputs.get("pretraining_pii"))
evaluate_checkpoints(inputs.manifest, snakemake.output, base, scoring.tables)
