from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.corpus.splits import split_texts
from piimem.extraction.canaries import canary_contexts
from piimem.io import write_private_parquet
from piimem.models import load_base_model, workflow_model_source

inputs = snakemake.input
_, tokenizer = load_base_model(workflow_model_source(snakemake.params.base_model, inputs.get("base_model")),
                               models_dir=Path("results/models"))
messages, splits = pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits)
canaries = canary_contexts(pl.read_parquet(inputs.truth), messages, split_texts(messages, splits, "train")["doc_id"],
                           tokenizer, context_tokens=snakemake.params.context_tokens)
write_private_parquet(canaries, snakemake.output.canaries)
log.info("canaries: %d, %d of them in the training split", canaries.height, (canaries["train_occurrences"] > 0).sum())
