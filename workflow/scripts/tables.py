from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.tables import build_tables

params = snakemake.params
written = build_tables(pl.read_parquet(snakemake.input.metrics), Path(snakemake.output.csv[0]).parent,
                       finetuning_epoch=params.finetuning_epoch, taus=params.taus)
missing = sorted(set(map(str, snakemake.output)) - set(map(str, written)))
if missing:
    raise ValueError(f"tables: no data for {missing}; metrics.parquet lacks the values they are built from")
log.info("tables: %d files", len(written))
