from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import polars as pl

from piimem.io import write_table
from piimem.pii.evaluate import evaluate_detection

evaluation = evaluate_detection(
    spans=pl.read_parquet(snakemake.input.spans),
    ground_truth=pl.read_parquet(snakemake.input.truth),
    messages=pl.read_parquet(snakemake.input.messages),
    entity_types=snakemake.params.entity_types,
)
write_table(evaluation, snakemake.output.evaluation)
