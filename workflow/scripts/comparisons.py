from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import time
from dataclasses import fields

import polars as pl

from piimem.io import write_table
from piimem.report.comparisons import Items, Settings, compare, read_items
from piimem.report.select import Identity
from piimem.report.sweeps import reported, selection

params, inputs = snakemake.params, snakemake.input
started = time.perf_counter()
settings = Settings(level=params.ci["level"], resamples=params.ci["resamples"], seed=params.ci["seed"],
                    taus=tuple(params.taus), finetuning_epoch=params.finetuning_epoch,
                    model_sizes=dict(params.model_sizes), audit_confidence=params.audit_confidence,
                    identity=Identity.of(pl.read_parquet(inputs.runs)))
# The selected run of each sweep under its method's name (piimem.report.sweeps), items and metrics alike.
metrics = pl.read_parquet(inputs.metrics)
chosen = selection(metrics)
items = read_items(inputs.records)
items = Items(**{part.name: reported(getattr(items, part.name), chosen) for part in fields(Items)})
table = compare(reported(metrics, chosen), items, settings)
write_table(table, snakemake.output.comparisons)
log.info("comparisons: %d rows of %d quantities, %d resamples each, in %.1f s", table.height,
         table["quantity"].n_unique(), settings.resamples, time.perf_counter() - started)
