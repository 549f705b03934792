from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from piimem.aggregate import collect_metrics
from piimem.io import write_table

metrics = collect_metrics(snakemake.input, corpus=snakemake.params.corpus, level=snakemake.params.level)
write_table(metrics, snakemake.output.metrics)
log.info("metrics.parquet: %d values of %d metrics from %d files", metrics.height, metrics["metric"].n_unique(),
         len(snakemake.input))
