# canary_exposure: the exposure of every planted canary at every checkpoint of a run.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.evaluate import evaluate_checkpoints, rule_base_model
from piimem.extraction.canaries import CanaryExposure

params, inputs = snakemake.params, snakemake.input
base, tokenizer = rule_base_model(params.base_model, inputs.get("base_model"), threads=snakemake.threads)
exposure = CanaryExposure.from_file(tokenizer, inputs.canaries, n_candidates=params.n_candidates, seed=params.seed,
                                    batch_size=params.batch_size, device=params.device)
evaluate_checkpoints(inputs.manifest, snakemake.output, base, exposure.tables)
