from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.report.figures import build_figures, pretrained_scores, shown_score_files
from piimem.report.sweeps import reported, selection

inputs, claims = snakemake.input, snakemake.params.claims
metrics = pl.read_parquet(inputs.metrics)
chosen = selection(metrics)  # a sweep's selected runs (piimem.report.sweeps)
# The last checkpoint's MIA scores of every run shown (first seed): ROC curves and loss distributions.
scores = shown_score_files(inputs.scores, chosen)
written = build_figures(reported(metrics, chosen), pl.read_parquet(inputs.comparisons),
                        Path(snakemake.output.png[0]).parent, scores=scores,
                        base_scores=pretrained_scores(inputs.reference, scores),
                        min_strings=claims["min_strings"], chance_margin=claims["chance_margin"])
missing = sorted(set(map(str, snakemake.output)) - set(map(str, written)))
if missing:
    raise ValueError(f"figures: no data for {missing}; metrics.parquet lacks the values they are drawn from")
log.info("figures: %d files", len(written))
