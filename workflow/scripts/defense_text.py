from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.audit import with_canaries
from piimem.corpus.splits import TEXT_COLUMNS, split_texts
from piimem.defense import build_training_text
from piimem.io import write_private_parquet, write_table

inputs = snakemake.input
train = split_texts(pl.read_parquet(inputs.messages, columns=TEXT_COLUMNS), pl.read_parquet(inputs.splits), "train")

def read(name: str) -> pl.DataFrame | None:
    return pl.read_parquet(inputs[name]) if name in inputs.keys() else None


# The included audit canaries, where the config audits the runs, are training messages too.
train, spans = with_canaries(train, read("audit_canaries"), read("spans"), read("audit_spans"))
result = build_training_text(
    snakemake.params.defense,
    train,
    spans=spans,
    dedup_texts=read("dedup"),
    options=snakemake.params.options,
)
write_private_parquet(result.texts, snakemake.output.texts)
write_private_parquet(result.replacements, snakemake.output.replacements)
write_table(result.summary, snakemake.output.summary)
