from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.io import write_private_parquet
from piimem.mia import sample_members, split_candidates
from piimem.models import load_base_model, workflow_model_source

inputs, params = snakemake.input, snakemake.params
# Lengths are matched in the tokens of the model that will be attacked.
_, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                               models_dir=Path("results/models"))
messages = pl.read_parquet(inputs.messages, columns=["doc_id", "text", "body_hash"])
splits = pl.read_parquet(inputs.splits)
members = sample_members(
    split_candidates(messages, splits, "train"),
    split_candidates(messages, splits, "test"),
    n=params.n,
    seed=params.seed,
    length_bins=params.length_bins,
    tokenizer=tokenizer,
)
write_private_parquet(members, snakemake.output.members)
log.info("membership inference: %d members, %d non-members, %d link groups", members["member"].sum(),
         (~members["member"]).sum(), members["group"].n_unique())
