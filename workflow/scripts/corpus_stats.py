from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.corpus.stats import corpus_statistics
from piimem.io import write_table

inputs, stats = snakemake.input, snakemake.params.stats
table = corpus_statistics(pl.read_parquet(inputs.messages), pl.read_parquet(inputs.spans),
                          pl.read_parquet(inputs.splits), sample_size=stats["sample_size"], seed=stats["seed"])
write_table(table, snakemake.output.stats)
log.info("corpus statistics: %d rows on %d sampled messages", table.height,
         int(table.filter(pl.col("statistic") == "messages_sampled")["value"][0]))
