from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.splits import split_texts
from piimem.defense import build_training_text
from piimem.io import write_private_parquet, write_table

inputs = snakemake.input
train = split_texts(pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits), "train")
result = build_training_text(
    snakemake.params.defense,
    train,
    spans=pl.read_parquet(inputs.spans) if "spans" in inputs.keys() else None,
    dedup_texts=pl.read_parquet(inputs.dedup) if "dedup" in inputs.keys() else None,
    options=snakemake.params.options,
)
write_private_parquet(result.texts, snakemake.output.texts)
write_private_parquet(result.replacements, snakemake.output.replacements)
write_table(result.summary, snakemake.output.summary)
