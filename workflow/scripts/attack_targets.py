# The targets of the targeted attacks, once per base model (its tokenizer cuts the windows): masked training
# occurrences with their candidate sets (inference, reconstruction) and name-based prompts (association).
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.corpus.splits import split_texts
from piimem.extraction.association import association_prompts, owner_pairs
from piimem.extraction.found import counted, pii_occurrence_counts, pretraining_pii
from piimem.extraction.inference import inference_targets
from piimem.extraction.table import string_ids
from piimem.io import write_private_parquet
from piimem.models import load_base_model, workflow_model_source

params, inputs = snakemake.params, snakemake.input
options = params.options
_, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                               models_dir=Path("results/models"))
messages, splits = pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits)
spans = counted(pl.read_parquet(inputs.spans), options["person_min_words"])
train_ids = split_texts(messages, splits, "train")["doc_id"].to_list()
counts = pii_occurrence_counts(spans, train_ids, options["entity_types"])
ids = string_ids(counts)
pretraining = pretraining_pii(spans, messages, splits, params.base_model,
                              pl.read_parquet(inputs.pretraining_pii) if "pretraining_pii" in inputs.keys() else None)

inference = options["inference"]
targets = inference_targets(
    messages.select("doc_id", "text"), spans, train_ids, tokenizer,
    entity_types=inference["entity_types"] or options["entity_types"], n_targets=inference["n_targets"],
    n_candidates=inference["candidates"], context_tokens=inference["context_tokens"],
    suffix_tokens=inference["suffix_tokens"], seed=options["seed"], string_ids=ids, pretraining=pretraining,
    occurrences=counts,
)
write_private_parquet(targets, snakemake.output.targets)

association = options["association"]
prompts = association_prompts(
    owner_pairs(messages, train_ids), association["templates"], shots=association["shots"],
    n_targets=association["n_targets"], seed=options["seed"], string_ids=ids, pretraining=pretraining,
)
write_private_parquet(prompts, snakemake.output.association)
log.info("targets: %d masked occurrences, %d association prompts (%d addresses)", targets.height, prompts.height,
         prompts["target_id"].n_unique())
