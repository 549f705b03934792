"""Tuning sweeps: which run of a sweep the report shows, and the table of every run.

A tuning option given as a list trains one run per value (`piimem.plan.tuning_variants`: lora_lr0.0002,
lora_lr0.002, ...). The tidy metrics table keeps every run under its own tuning name and says, per run,
which `method` it trains and whether it is `selected`: with `tuning.select: val_ppl`, the run with the
lowest validation perplexity (`val_ppl_mean`, seed by seed) at the tables' checkpoint among the runs of
one base model, defense, method and seed; every run of a method without a sweep is selected. Selection
never looks at an attack's result. `reported` is the view the tables, claims, comparisons and figures
start from: the selected runs, each under its method's name. `tuning.select: none` reports every run
under its own name instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from piimem.metric_names import VAL_PPL
from piimem.report.select import RUN_KEYS, at_checkpoint, select_metrics

SELECT_BY = ("val_ppl", "none")
SELECTION_METRIC = VAL_PPL


def mark_selected(metrics: pl.DataFrame, methods: Mapping[str, str], select: str = "val_ppl",
                  epoch: float | None = None) -> pl.DataFrame:
    """`metrics` with the columns `method` (the method of each run's tuning name, by `methods`) and
    `selected`. A sweep (a method with several tuning names) without validation perplexity is a ValueError:
    nothing could pick its run."""
    if select not in SELECT_BY:
        raise ValueError(f"tuning.select: expected one of {SELECT_BY}, got {select!r}")
    unknown = sorted(set(metrics["tuning"].unique().to_list()) - set(methods))
    if unknown:
        raise ValueError(f"metrics: tuning name(s) {unknown} are not runs of this config's tuning_methods")
    marked = metrics.with_columns(method=pl.col("tuning").replace_strict(dict(methods), return_dtype=pl.Utf8))
    runs = marked.select(*RUN_KEYS, "method").unique()
    groups = ["base_model", "defense", "method", "seed"]
    sizes = runs.group_by(groups).len()
    if select == "none" or sizes["len"].max() == 1:
        return marked.with_columns(selected=pl.lit(True))
    scores = at_checkpoint(select_metrics(marked, [SELECTION_METRIC]), epoch=epoch).select(*RUN_KEYS, "value")
    ranked = runs.join(sizes, on=groups).join(scores, on=list(RUN_KEYS), how="left")
    unscored = ranked.filter((pl.col("len") > 1) & pl.col("value").is_null())
    if unscored.height:
        raise ValueError(f"tuning.select: {SELECTION_METRIC} is missing for the swept run(s) "
                         f"{sorted(unscored['tuning'].unique().to_list())}; a sweep needs a validation split "
                         f"(corpus.split.fractions.validation above 0)")
    best = (ranked.sort([*groups, "value", "tuning"], nulls_last=True).group_by(groups, maintain_order=True).first()
            .select(*RUN_KEYS).with_columns(selected=pl.lit(True)))
    return (marked.join(best, on=list(RUN_KEYS), how="left")
            .with_columns(pl.col("selected").fill_null(False)))


def selection(metrics: pl.DataFrame) -> pl.DataFrame:
    """(base_model, defense, tuning, seed, method) of the selected runs of a marked metrics table."""
    if "selected" not in metrics.columns:  # a table written before sweeps: every run is its own method
        return metrics.select(*RUN_KEYS).unique().with_columns(method=pl.col("tuning"))
    return metrics.filter(pl.col("selected")).select(*RUN_KEYS, "method").unique()


def reported(frame: pl.DataFrame, chosen: pl.DataFrame, keep_name: bool = False) -> pl.DataFrame:
    """The rows of `frame` (metrics, or per-item records with the run columns) of the runs in `chosen`
    (`selection`), each under its method's name when the method has one run reported per base model,
    defense and seed (tuning.select val_ppl), under its own name otherwise (select none). `keep_name`
    adds the run's own tuning name as `tuning_run` (lora_lr0.002 where tuning says lora)."""
    if frame.height == 0:
        return frame
    renamed = chosen.with_columns(
        name=pl.when(pl.len().over("base_model", "defense", "method", "seed") == 1)
        .then(pl.col("method")).otherwise(pl.col("tuning")))
    columns = [*frame.columns, *(["tuning_run"] if keep_name else [])]
    return (frame.join(renamed.select(*RUN_KEYS, "name"), on=list(RUN_KEYS), how="inner")
            .with_columns(tuning_run=pl.col("tuning"), tuning=pl.col("name")).select(columns))


def swept_value(tuning_run: str, method: str) -> str | None:
    """What a sweep's run name adds to its method's: "lr0.002" of lora_lr0.002; None for the method itself."""
    return tuning_run[len(method) + 1:] if tuning_run != method and tuning_run.startswith(f"{method}_") else None
