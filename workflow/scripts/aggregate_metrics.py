from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.aggregate import collect_metrics
from piimem.io import write_table
from piimem.report.select import RUN_KEYS
from piimem.report.sweeps import mark_selected
from piimem.runs import RunId

params = snakemake.params
metrics = mark_selected(collect_metrics(snakemake.input, corpus=params.corpus, level=params.level),
                        params.methods, params.select, params.finetuning_epoch)
write_table(metrics, snakemake.output.metrics)
log.info("metrics.parquet: %d values of %d metrics from %d files", metrics.height, metrics["metric"].n_unique(),
         len(snakemake.input))
swept_runs = metrics.filter(pl.col("tuning") != pl.col("method")).select(*RUN_KEYS, "selected").unique()
for *run, selected in swept_runs.sort(RUN_KEYS).rows():
    log.info("sweep: %s %s", RunId(*run), "selected" if selected else "not selected")
