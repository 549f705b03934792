from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.report.figures import build_figures
from piimem.report.select import RUN_KEYS
from piimem.report.sweeps import reported, selection
from piimem.runs import RunId

inputs = snakemake.input
metrics = pl.read_parquet(inputs.metrics)
chosen = selection(metrics)  # a sweep's selected runs (piimem.report.sweeps)
shown = {RunId(*run).path for run in chosen.select(*RUN_KEYS).rows()}
# results/runs/{base}/{run name}/mia/{checkpoint}.scores.parquet; the members' original text only.
runs = {path: "/".join(Path(path).parts[-4:-2]) for path in inputs.scores}
scores = {RunId.parse(run).name: pl.read_parquet(path).filter(pl.col("member_text") == "original")
          for path, run in runs.items() if run in shown}
first = next(iter(scores.values()))
# The base model's statistics carry no member label: the runs' score files do, by the same index.
loss_models = {"pre-trained": pl.read_parquet(inputs.reference).join(first.select("index", "member"), on="index")}
loss_models.update({f"{run} (last checkpoint)": table for run, table in scores.items()})
written = build_figures(reported(metrics, chosen), pl.read_parquet(inputs.comparisons),
                        Path(snakemake.output.png[0]).parent, roc_scores=first, loss_models=loss_models)
missing = sorted(set(map(str, snakemake.output)) - set(map(str, written)))
if missing:
    raise ValueError(f"figures: no data for {missing}; metrics.parquet lacks the values they are drawn from")
log.info("figures: %d files", len(written))
