from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.splits import split_texts
from piimem.io import write_private_parquet
from piimem.mia import sample_members

messages, splits = pl.read_parquet(snakemake.input.messages), pl.read_parquet(snakemake.input.splits)
members = sample_members(
    split_texts(messages, splits, "train"),
    split_texts(messages, splits, "test"),
    n=snakemake.params.n,
    seed=snakemake.params.seed,
    length_bins=snakemake.params.length_bins,
)
write_private_parquet(members, snakemake.output.members)
log.info("membership inference: %d members, %d non-members", members["member"].sum(), (~members["member"]).sum())
