from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.splits import split_texts
from piimem.defense import nonmember_texts, trained_view
from piimem.io import write_private_parquet

inputs, params = snakemake.input, snakemake.params
members = pl.read_parquet(inputs.members)
messages, splits = pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits)
nonmembers = nonmember_texts(
    params.defense,
    split_texts(messages, splits, "train"),
    split_texts(messages, splits, "test"),
    spans=pl.read_parquet(inputs.spans) if "spans" in inputs.keys() else None,
    dedup_config=params.dedup or None,
    options=params.options,
)
view = trained_view(members, pl.read_parquet(inputs.texts), nonmembers)
write_private_parquet(view, snakemake.output.texts)
dropped = view.filter(pl.col("text").is_null()).group_by("member").len()
log.info("trained-text view of %s: %d members, %d non-members; dropped by the defense: %s", params.defense,
         view.filter(pl.col("member") & pl.col("text").is_not_null()).height,
         view.filter(~pl.col("member") & pl.col("text").is_not_null()).height,
         dict(dropped.iter_rows()) or "none")
