from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.aggregate import collect_metrics, run_identity
from piimem.io import write_table
from piimem.report.select import RUN_KEYS, Identity
from piimem.report.sweeps import mark_selected
from piimem.runs import RunId

params = snakemake.params
runs = run_identity(params.identity)
metrics = mark_selected(collect_metrics(snakemake.input, corpus=params.corpus, level=params.level),
                        Identity.of(runs).methods, params.select, params.finetuning_epoch)
write_table(metrics, snakemake.output.metrics)
write_table(runs, snakemake.output.runs)
log.info("metrics.parquet: %d values of %d metrics from %d files", metrics.height, metrics["metric"].n_unique(),
         len(snakemake.input))
swept_runs = metrics.filter(pl.col("tuning") != pl.col("method")).select(*RUN_KEYS, "selected").unique()
for *run, selected in swept_runs.sort(RUN_KEYS).rows():
    log.info("sweep: %s %s", RunId(*run), "selected" if selected else "not selected")
