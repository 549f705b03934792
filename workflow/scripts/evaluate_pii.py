from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.io import write_table
from piimem.pii.evaluate import evaluate_detection

evaluation = evaluate_detection(
    pl.read_parquet(snakemake.input.spans),
    pl.read_parquet(snakemake.input.messages),
    pl.read_parquet(snakemake.input.truth),
)
write_table(evaluation, snakemake.output.evaluation)
for row in evaluation.iter_rows(named=True):
    log.info("%s: precision %.3f recall %.3f F2 %.3f", row["entity_type"], row["precision"], row["recall"], row["f2"])
