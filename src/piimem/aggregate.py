"""Collect the per-checkpoint result files of every run into one tidy metrics table.

Inputs are the files the workflow writes per run and checkpoint,
`results/runs/{base}/{defense}-{tuning}-s{seed}/{kind}/{checkpoint}.tsv`, with kind one of utility, mia,
extraction, canaries, targeted; the run, kind and checkpoint come from the path (`piimem.runs.ResultFile`).

The tidy table (`METRICS_SCHEMA`, the output contract of docs/outputs.md): one row per measured value, columns
corpus, base_model, defense, tuning, seed, checkpoint, epoch, prompt_set, entity_type, member_text, metric,
value, ci_low, ci_high. prompt_set and entity_type are null where they do not apply; member_text is
`original` or `trained` on membership-inference rows (which text of the members was scored) and null
elsewhere; ci_low/ci_high are null where no interval is measured; value is null where the metric is
undefined at that checkpoint (the file says NaN: a rate over an empty set). A rate counted over a set
(TER, SER, TEGR, precision, recall, ter_rep/<bucket>, email_*) carries its numerator `k` and denominator
`n` (TER: |L∩O| of |O|) and the exact binomial (Clopper-Pearson) interval at `level` in ci_low/ci_high, in
the rate's unit (%); k and n are null for every other value.

Metric names, by input kind:
- utility:    ppl_mean, ppl_corpus, ppl_base (the base model's ppl_mean on the same texts), train_loss,
              and the counts n_examples, n_tokens of the perplexity set (every metric of the file).
- mia:        mia_auc/<attack> (ci_low/ci_high = the bootstrap interval auc_low/auc_high),
              mia_tpr@1%fpr/<attack>, mia_tpr@0.1%fpr/<attack> (fractions 0..1, like the AUC; one per
              tpr_at_<x>pct_fpr column), and the counts mia_n_members/<attack>, mia_n_nonmembers/<attack>,
              mia_n_unscored/<attack>.
- extraction: every metric of the file as named there (ter, ser, tegr, precision, recall, email_*,
              ter_rep/<bucket>, n_rep/<bucket>, n_found, ...), with prompt_set and entity_type.
- targeted:   as extraction (the same columns): pii_inference_acc, pii_inference_exposure,
              pii_inference_rank, pii_inference_candidates, pii_reconstruction_acc, pii_reconstruction_found,
              pii_reconstruction_candidates (prompt_set null) and association_exact / _local / _domain (prompt_set:
              the template); with `_ft` over O_ft and `_base` for the base model (piimem.extraction.table).
- canaries:   per entity_type and planted repetition count r, over the canaries of that type and count:
              canary_exposure/<r> (mean rank exposure, bits), canary_exposure_extrapolated/<r> (mean
              extrapolated exposure, bits), both with the t interval over the cell's canaries in
              ci_low/ci_high, canary_max_exposure/<r> (mean of the rank exposure's ceiling log2 |R|),
              canary_train_occurrences/<r> (mean training-split messages holding the canary, original text),
              canary_n/<r> (number of canaries). Per canary: `{checkpoint}.canaries.parquet` beside the file.
- audit:      at the last checkpoint, metric_names.AUDIT: audit_epsilon (the ε lower bound), audit_canaries,
              audit_included, audit_guesses, audit_correct, audit_delta, audit_canaries_needed (null unless the
              bound is 0). Per canary: `{checkpoint}.audit.parquet` (piimem.audit.SCORE_SCHEMA).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from piimem.intervals import LEVEL, clopper_pearson, t_interval
from piimem.metric_names import (
    CANARY,
    MIA_AUC,
    MIA_N_GROUPS,
    MIA_N_MEMBERS,
    MIA_N_NONMEMBERS,
    MIA_N_UNSCORED,
    mia_tpr_at,
    per,
)
from piimem.runs import RESULT_KINDS, ResultFile

METRICS_SCHEMA = {
    "corpus": pl.Utf8, "base_model": pl.Utf8, "defense": pl.Utf8, "tuning": pl.Utf8, "seed": pl.Int64,
    "checkpoint": pl.Utf8, "epoch": pl.Float64, "prompt_set": pl.Utf8, "entity_type": pl.Utf8,
    "member_text": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    "k": pl.Int64, "n": pl.Int64,
}
# Row order of the table: every column that names a value, nulls first.
SORT_KEYS = ("corpus", "base_model", "defense", "tuning", "seed", "checkpoint", "prompt_set", "entity_type",
             "member_text", "metric")
KINDS = RESULT_KINDS

_TPR_COLUMN = re.compile(r"tpr_at_(?P<pct>\d+(?:_\d+)?)pct_fpr")  # its interval: the same name + _low, _high
# Columns that hold names: read as text even when a name looks like a number (a prompt set "2024").
_NAME_COLUMNS = {c: pl.Utf8 for c in ("checkpoint", "prompt_set", "entity_type", "attack", "metric",
                                      "member_text")}


def parse_run_path(path: str | os.PathLike) -> ResultFile:
    """Run, kind and checkpoint of a result file's path (`piimem.runs.ResultFile.parse`)."""
    return ResultFile.parse(path)


def _read(run: ResultFile, required: Iterable[str]) -> pl.DataFrame:
    try:
        table = pl.read_csv(run.path, separator="\t", infer_schema_length=None,
                            schema_overrides=_NAME_COLUMNS)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise ValueError(f"{run.path}: cannot read the {run.kind} table: {error}") from error
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{run.path}: {run.kind} table lacks column(s) {missing}; it has {table.columns}")
    checkpoints = set(table["checkpoint"].to_list())
    if checkpoints - {run.checkpoint}:
        # The file is named after its checkpoint; another id inside means a misplaced or stale file.
        raise ValueError(f"{run.path}: holds checkpoint(s) {sorted(checkpoints)} but is named for "
                         f"{run.checkpoint!r}")
    return table


def _tidy(run: ResultFile, rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` (epoch, metric, value and optional prompt_set, entity_type, ci_low, ci_high) with the run's
    columns added, in METRICS_SCHEMA's order and types; NaN values become null (undefined)."""
    for column in ("prompt_set", "entity_type", "member_text"):
        if column not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=pl.Utf8).alias(column))
    for column, dtype in (("ci_low", pl.Float64), ("ci_high", pl.Float64), ("k", pl.Int64), ("n", pl.Int64)):
        if column not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=dtype).alias(column))
    rows = rows.with_columns(
        corpus=pl.lit(None, dtype=pl.Utf8), base_model=pl.lit(run.run.base), defense=pl.lit(run.run.defense),
        tuning=pl.lit(run.run.tuning), seed=pl.lit(run.run.seed, dtype=pl.Int64), checkpoint=pl.lit(run.checkpoint),
    )
    try:
        rows = rows.select([pl.col(name).cast(dtype) for name, dtype in METRICS_SCHEMA.items()])
    except pl.exceptions.PolarsError as error:  # e.g. text in the value column
        raise ValueError(f"{run.path}: a {run.kind} column has values of the wrong type: {error}") from error
    return rows.with_columns([pl.col(c).fill_nan(None) for c in ("value", "ci_low", "ci_high")])


def read_utility(run: ResultFile) -> pl.DataFrame:
    """Tidy rows of a utility file (checkpoint, epoch, metric, value): every metric as named."""
    table = _read(run, ("checkpoint", "epoch", "metric", "value"))
    return _tidy(run, table.select("epoch", "metric", "value"))


def read_mia(run: ResultFile) -> pl.DataFrame:
    """Tidy rows of a membership-inference file (one row per attack): AUC with its CI, TPR at low FPR and
    the counts."""
    table = _read(run, ("attack", "n_members", "n_nonmembers", "n_unscored", "auc", "auc_low", "auc_high",
                        "checkpoint", "epoch"))
    if "member_text" not in table.columns:
        table = table.with_columns(member_text=pl.lit("original"))
    parts = [table.select("epoch", "member_text", metric=per(MIA_AUC, "") + pl.col("attack"), value="auc",
                          ci_low="auc_low", ci_high="auc_high")]
    for column in table.columns:
        match = _TPR_COLUMN.fullmatch(column)
        if match:  # tpr_at_0_1pct_fpr -> mia_tpr@0.1%fpr
            label = per(mia_tpr_at(match["pct"].replace("_", ".")), "")
            interval = ({"ci_low": f"{column}_low", "ci_high": f"{column}_high"}
                        if f"{column}_low" in table.columns else {})
            parts.append(table.select("epoch", "member_text", metric=label + pl.col("attack"), value=column,
                                      **interval))
    for count, family in (("n_members", MIA_N_MEMBERS), ("n_nonmembers", MIA_N_NONMEMBERS),
                          ("n_groups", MIA_N_GROUPS), ("n_unscored", MIA_N_UNSCORED)):
        if count not in table.columns:  # n_groups: files written before members came in link groups
            continue
        parts.append(table.select("epoch", "member_text", metric=per(family, "") + pl.col("attack"), value=count))
    parts = [p.with_columns(pl.col("value").cast(pl.Float64)) for p in parts]
    return _tidy(run, pl.concat(parts, how="diagonal"))


def read_extraction(run: ResultFile) -> pl.DataFrame:
    """Tidy rows of an extraction file: every metric as named, per prompt set and entity type, with the
    counts k and n of each rate."""
    table = _read(run, ("prompt_set", "entity_type", "metric", "value", "k", "n", "checkpoint", "epoch"))
    return _tidy(run, table.select("epoch", "prompt_set", "entity_type", "metric", "value", "k", "n"))


def read_canaries(run: ResultFile, level: float = LEVEL) -> pl.DataFrame:
    """Tidy rows of a canary file (one row per canary), summarised per entity type and planted count: the
    mean rank and extrapolated exposures with the t interval at `level` over the cell's canaries
    (`piimem.intervals.t_interval`; none with a single canary), the mean ceiling and training occurrences,
    and the number of canaries."""
    table = _read(run, ("entity_type", "repetitions", "train_occurrences", "exposure", "exposure_extrapolated",
                        "max_exposure", "checkpoint", "epoch"))
    rows = []
    cells = table.group_by("entity_type", "repetitions").agg(
        pl.col("epoch").first(), pl.col("exposure"), pl.col("exposure_extrapolated"),
        pl.col("max_exposure").mean(), pl.col("train_occurrences").cast(pl.Float64).mean(), pl.len())
    for cell in cells.iter_rows(named=True):
        where = (cell["epoch"], cell["entity_type"])
        for name, column in ((CANARY["exposure"], "exposure"),
                             (CANARY["exposure_extrapolated"], "exposure_extrapolated")):
            values = [v for v in cell[column] if v is not None]
            mean = sum(values) / len(values) if values else None
            rows.append((*where, f"{name}/{cell['repetitions']}", mean, *t_interval(values, level)))
        for name, value in ((CANARY["max_exposure"], cell["max_exposure"]),
                            (CANARY["train_occurrences"], cell["train_occurrences"]), (CANARY["n"], cell["len"])):
            rows.append((*where, f"{name}/{cell['repetitions']}", float(value), None, None))
    long = pl.DataFrame(rows, schema={"epoch": pl.Float64, "entity_type": pl.Utf8, "metric": pl.Utf8,
                                      "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64},
                        orient="row")
    return _tidy(run, long)


_READERS = {"utility": read_utility, "mia": read_mia, "extraction": read_extraction,
            "canaries": read_canaries, "targeted": read_extraction, "audit": read_utility}


def with_exact_intervals(metrics: pl.DataFrame, level: float = LEVEL) -> pl.DataFrame:
    """`metrics` with the Clopper-Pearson interval (%) of every rate that has counts (k of n, n > 0) in
    ci_low/ci_high. Each distinct (k, n) is computed once."""
    pairs = metrics.filter(pl.col("n").is_not_null() & (pl.col("n") > 0)).select("k", "n").unique()
    if pairs.height == 0:
        return metrics
    bounds = [clopper_pearson(k, n, level) for k, n in pairs.rows()]
    pairs = pairs.with_columns(cp_low=pl.Series([100 * b[0] for b in bounds]),
                               cp_high=pl.Series([100 * b[1] for b in bounds]))
    joined = metrics.join(pairs, on=["k", "n"], how="left", maintain_order="left")
    return joined.with_columns(ci_low=pl.coalesce("ci_low", "cp_low"),
                               ci_high=pl.coalesce("ci_high", "cp_high")).drop("cp_low", "cp_high")


def collect_metrics(files: Iterable[str | os.PathLike], corpus: str, level: float = LEVEL) -> pl.DataFrame:
    """The tidy metrics table (`METRICS_SCHEMA`) of the given result files, with `corpus` in every row and
    the exact interval at `level` of every counted rate (`with_exact_intervals`).

    Every file is read by the reader of its kind (from the path); rows are sorted by `SORT_KEYS`. Raises
    ValueError naming the file for a path outside the layout, a missing column, a checkpoint id that
    differs from the file name, a value given twice in one file, or two files for the same run, kind and
    checkpoint.
    """
    seen: dict[tuple, Path] = {}
    parts = []
    for run in map(parse_run_path, files):
        key = (run.run, run.kind, run.checkpoint)
        if key in seen:
            raise ValueError(f"{run.path}: the same run, kind and checkpoint as {seen[key]}")
        seen[key] = run.path
        part = read_canaries(run, level) if run.kind == "canaries" else _READERS[run.kind](run)
        if part.select(SORT_KEYS[1:]).is_duplicated().any():
            raise ValueError(f"{run.path}: a metric appears more than once for the same prompt set and "
                             f"entity type")
        parts.append(part)
    if not parts:
        return pl.DataFrame(schema=METRICS_SCHEMA)
    table = pl.concat(parts).with_columns(corpus=pl.lit(corpus, dtype=pl.Utf8))
    return with_exact_intervals(table, level).sort(SORT_KEYS, nulls_last=False)


RUN_SCHEMA = {"base_model": pl.Utf8, "defense": pl.Utf8, "defense_kind": pl.Utf8, "at_paper_setting": pl.Boolean,
              "defense_options": pl.Utf8, "tuning": pl.Utf8, "method": pl.Utf8, "swept": pl.Utf8, "seed": pl.Int64}


def run_identity(rows: list[dict]) -> pl.DataFrame:
    """results/runs.parquet: one row per run (`piimem.plan.Plan.identity`), RUN_SCHEMA, sorted by run."""
    return pl.DataFrame(rows, schema=RUN_SCHEMA).sort("base_model", "defense", "tuning", "seed")

