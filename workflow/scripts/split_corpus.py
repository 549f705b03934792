from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.splits import assign_splits, corpus_summary
from piimem.io import write_table

messages = pl.read_parquet(snakemake.input.messages)
split = snakemake.params.split
splits = assign_splits(messages, fractions=split["fractions"], by=split["by"], seed=split["seed"])
write_table(splits, snakemake.output.splits)
summary = corpus_summary(messages, splits, pl.read_csv(snakemake.input.quarantine, separator="\t"))
write_table(summary, snakemake.output.summary)
log.info("splits: %s", dict(splits.group_by("split").len().iter_rows()))
