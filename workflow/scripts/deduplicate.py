from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.audit import with_canaries
from piimem.corpus.splits import TEXT_COLUMNS, split_texts
from piimem.dedup import DedupConfig, dedup_summary, deduplicate
from piimem.io import write_private_parquet, write_table

inputs = snakemake.input
train = split_texts(pl.read_parquet(inputs.messages, columns=TEXT_COLUMNS), pl.read_parquet(inputs.splits), "train")
if "audit_canaries" in inputs.keys():  # the included audit canaries are training messages too
    train, _ = with_canaries(train, pl.read_parquet(inputs.audit_canaries))
options = DedupConfig.from_config(snakemake.params.dedup)
result = deduplicate(train["doc_id"].to_list(), train["text"].to_list(), options)
write_table(result.clusters, snakemake.output.clusters)
write_private_parquet(result.texts, snakemake.output.texts)
write_table(dedup_summary(result), snakemake.output.summary)
