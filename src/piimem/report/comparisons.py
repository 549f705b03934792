"""Every number that needs resampling, with its interval, computed once from the per-item records.

The runs write one row per item beside their per-checkpoint results (no text, ids only): per true PII
string whether a checkpoint extracted it (`extraction/{c}.strings.parquet`), per test message its NLL
(`utility/{c}.messages.parquet`), per MIA example its attack scores (`mia/{c}.scores.parquet`). `compare`
turns them into one long table (COMPARISON_SCHEMA, `results/comparisons.parquet`) that the tables, the
claims and the figures read, so that a number and its interval are computed in one place.

How each interval is made (`QUANTITIES` says it per quantity):
- Extraction: a bootstrap over the strings of O. A resample draws |O| strings with replacement; every run
  of the experiment (same base model, tuning, prompt set, PII scope) is re-scored on the same resample,
  from which strings each of its checkpoints extracted, so comparisons between runs are paired. A single
  run's mean rate has an exact interval instead (`_mean_rate`), which a bootstrap cannot give at 0.
- Perplexity: a bootstrap over the test messages, every run re-scored on the same resample (paired).
- MaxTER and AURC: strings and messages resampled together (resample i of both).
- Membership inference: a stratified bootstrap over the link groups (threads) of members and non-members
  (each class's groups to their own number; a thread's texts are not independent), shared by every run of
  the base model, so AUC differences and trends are paired.
Each comparison draws its own seeded stream (`piimem.intervals.rng_for`: the config's `report.ci.seed`
and the experiment's names). Intervals are percentile intervals at `report.ci.level` over the resamples
where the quantity is defined; `defined` is that share, and below `level` no interval is given.

Seeds: a quantity is computed per seed (runs compared seed with seed) and averaged; the item interval is
the percentile interval of that seed mean over resamples (item noise only), and with two or more seeds
`seed_ci_low`/`seed_ci_high` is Student's t interval of the per-seed values (training noise too).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from piimem.intervals import (
    chunk_sizes,
    clopper_pearson,
    draw_counts,
    mcnemar_p,
    percentile_interval,
    rng_for,
    t_interval,
    trend_p_value,
    wilcoxon_p,
)
from piimem.metric_names import (
    ALL,
    ASSOCIATION,
    ASSOCIATION_EXACT,
    AUDIT,
    BLIND,
    FINE_TUNING_ONLY,
    HEADLINE_ATTACK,
    INFERENCE,
    PII_INFERENCE_ACC,
    PII_INFERENCE_EXPOSURE,
    PII_RECONSTRUCTION_ACC,
    PPL,
    PPL_BASE,
    RECONSTRUCTION,
    SER,
    TER,
)
from piimem.metrics import (
    REPETITION_BUCKETS,
    TAU_GRID,
    SortedScores,
    aurcs,
    class_group_draws,
    maxter_curves_of,
    maxter_point_arrays,
    reductions_vs_baseline,
    spearman,
    spearman_pairs,
    spearman_rows,
)
from piimem.report import papers
from piimem.report.select import (
    BASELINE,
    Identity,
    defense_rank,
    extraction_entity_types,
    learnt_runs,
    tuning_rank,
)
from piimem.runs import ResultFile
from piimem.schema import default

COMPARISON_SCHEMA = {
    "quantity": pl.Utf8, "base_model": pl.Utf8, "tuning": pl.Utf8, "defense": pl.Utf8, "versus": pl.Utf8,
    "prompt_set": pl.Utf8, "entity_type": pl.Utf8, "checkpoint": pl.Utf8, "epoch": pl.Float64, "tau": pl.Float64,
    "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "defined": pl.Float64, "seeds": pl.Int64,
    "seed_ci_low": pl.Float64, "seed_ci_high": pl.Float64, "p_value": pl.Float64, "k": pl.Int64, "n": pl.Int64,
    "groups": pl.Int64, "points": pl.Int64,
    "baseline_strings": pl.Int64, "coverage": pl.Float64, "resampled": pl.Utf8,
}
# What each quantity is (docs/statistics.md prints this). "over checkpoints": the mean over checkpoints;
# `versus` names the run compared with (a defense, or a tuning method for the AUC comparisons).
QUANTITIES = {
    TER: "TER (%) of one run, mean over checkpoints, with the mean of the checkpoints' exact intervals at the "
           "Bonferroni level; k = strings of O it extracted at any checkpoint (and seed), n = |O|",
    SER: "SER (%) of one run, mean over checkpoints, interval as ter; k = strings extracted while in S_c, n = "
           "|S| at the last checkpoint",
    "ter_reduction": "TER reduction (%) vs `versus` (none), the paper's definition on the means over "
                     "checkpoints; baseline_strings = strings the baseline extracted; paired over strings",
    "ser_reduction": "SER reduction (%) vs none, as ter_reduction",
    "ter_reduction_difference": "TER reduction of `defense` minus that of `versus` (RMFT vs dedup, points), "
                                "both against none; paired over strings",
    "maxter": "MaxTER(tau) (%) vs none at one tau; strings and messages resampled",
    "aurc": "AURC (%) of the MaxTER curve vs none (mean height where defined; `coverage` = % of the tau grid "
            "defined at the point estimate); strings and messages resampled",
    "aurc_difference": "AURC of `defense` minus that of `versus` (points), resamples where both are defined",
    "min_ppl_increase": "smallest per-checkpoint perplexity increase (%) vs none among checkpoints with a "
                        "defined TER drop; resamples messages",
    "repetition_trend": "Spearman rho of repetition bucket and TER at the last checkpoint (non-empty "
                        "buckets); p_value = exact permutation p of a trend in rho's direction; resamples strings",
    PPL: "ppl_mean (mean over test messages of exp(mean NLL)) of one run: over checkpoints "
                "(checkpoint null) or at one checkpoint; n = messages; resamples messages",
    "ppl_increase": "perplexity increase (%) vs none, on the means over checkpoints; paired over messages",
    PPL_BASE: "ppl_mean of the base model (before fine-tuning) on the same test messages; resamples messages",
    "loss_auc": "LOSS AUC of one run at the table epoch (report.finetuning_epoch); n = members + non-members; "
                "resamples members and non-members",
    "auc_difference": "LOSS AUC of `tuning` minus that of `versus` at the table epoch; paired over members "
                      "and non-members",
    "auc_drop": "LOSS AUC of `versus` (none) minus that of `defense`, same tuning method, at the table epoch, on "
                "the members' original text; paired over members and non-members",
    "auc_family_gap": "lowest LOSS AUC of the parameter-based runs (`tuning`) minus the highest of the "
                      "prompt-based runs that learnt (`versus`) at the table epoch; paired",
    "auc_trend": "Spearman rho of epoch and LOSS AUC over a run's checkpoints; p_value = exact permutation p in "
                 "rho's direction; paired over members and non-members",
    "blind_auc": "AUC of the blind baseline (piimem.blind: a word n-gram classifier that never sees a model, "
                 "cross-validated with each link group in one fold) on a base model's members and non-members, "
                 "their original text cut to the span the attacks score; resamples link groups",
    "size_trend": "Spearman rho of model size (parameters) and full fine-tuning's LOSS AUC at the table epoch, "
                  "over three or more sizes; each base model's sample resampled on its own",
    "size_difference": "full fine-tuning's LOSS AUC on the larger of two model sizes minus that on the smaller, "
                       "at the table epoch; each base model's sample resampled on its own",
}
# The comparisons of a targeted metric (and of the audit's ε bound), each a quantity named
# `<metric>_<comparison>`: quantity_of(PII_INFERENCE_ACC, DROP) is "pii_inference_acc_drop".
DROP, GAIN, DIFFERENCE, REPETITION_TREND = "drop", "gain", "difference", "repetition_trend"


def quantity_of(metric: str, comparison: str) -> str:
    return f"{metric}_{comparison}"


# Targeted attacks: metric -> (attack, record column, unit); each also over O_ft (`_ft`, rates only).
TARGETED = {PII_INFERENCE_ACC: (INFERENCE, "correct", "points"),
            PII_INFERENCE_EXPOSURE: (INFERENCE, "exposure", "bits"),
            PII_RECONSTRUCTION_ACC: (RECONSTRUCTION, "correct", "points"),
            ASSOCIATION_EXACT: (ASSOCIATION, "correct", "points")}
for _metric, (_attack, _column, _unit) in TARGETED.items():
    _test = ("; p_value = exact McNemar p of the discordant targets" if _column == "correct"
             else "; p_value = Wilcoxon signed-rank p of the per-target differences")
    for _scope, _over in (("", "its targets"),
                          (FINE_TUNING_ONLY, "its targets in O_ft (not in the pre-training data)")):
        if _scope and _column != "correct":
            continue
        QUANTITIES[quantity_of(_metric + _scope, DROP)] = (
            f"{_metric} of `versus` (none) minus that of `defense` ({_unit}) at one checkpoint, over {_over}: "
            f"positive when the defense leaks less; paired over targets{_test}")
        QUANTITIES[quantity_of(_metric + _scope, GAIN)] = (
            f"{_metric} of `defense` minus the base model's on the same targets ({_unit}) at one checkpoint, over "
            f"{_over}: what fine-tuning taught; paired over targets{_test}")
        QUANTITIES[quantity_of(_metric + _scope, DIFFERENCE)] = (
            f"{_metric} of `versus` (a deduplication run) minus that of `defense` (an RMFT run) ({_unit}) at one "
            f"checkpoint, over {_over}: positive when RMFT leaks less than deduplication; paired over targets{_test}")
    if _column == "exposure":
        QUANTITIES[quantity_of(_metric, REPETITION_TREND)] = (
            f"Spearman rho of a target string's occurrences in the training split and its {_metric} under none "
            f"at the last checkpoint scored, over the targets; p_value = permutation p in rho's direction; "
            f"resamples targets")
# What a membership comparison resamples: whole link groups (threads), members' and non-members' apart.
MIA_RESAMPLED = "link groups of members and non-members"
PARTS = {"extraction": "strings", "utility": "messages", "mia": "scores", "targeted": "targets",
         "canaries": "canaries", "audit": "audit"}
# The canary exposure the comparisons read: Carlini et al.'s extrapolation, which does not saturate at log2 |R|.
CANARY_EXPOSURE = "exposure_extrapolated"
QUANTITIES.update({
    "canary_exposure_trend": "Spearman rho of a canary's occurrences in the training split and its extrapolated "
                             "exposure under none at the last checkpoint, over the canaries (those with no "
                             "training occurrence included); p_value = permutation p in rho's direction; "
                             "resamples canaries",
    "canary_exposure_drop": "extrapolated canary exposure of `versus` (none) minus that of `defense` (bits) at the "
                            "last checkpoint, over the canaries of `entity_type` (ALL: every type) with two or more "
                            "training occurrences: positive when the defense leaks less; paired over canaries; "
                            "p_value = Wilcoxon signed-rank p of the per-canary differences",
    quantity_of(AUDIT["epsilon"], DROP): "audited ε lower bound (piimem.audit) of `versus` (none) minus that of "
                                         "`defense`, same tuning method, last checkpoint: positive when the defense "
                                         "leaks less; the audit canaries resampled (the same draws for both runs, "
                                         "each bound recomputed on each)",
})


@dataclass(frozen=True)
class Settings:
    """`report.ci` (level, resamples, seed), the tau grid and the table epoch of the config."""

    level: float = default("report.ci.level")
    resamples: int = default("report.ci.resamples")
    seed: int = default("report.ci.seed")
    taus: tuple[float, ...] = TAU_GRID
    finetuning_epoch: float | None = default("report.finetuning_epoch")
    # base model -> parameters, for models whose size the report cannot know by name (the tiny GPT-2s)
    model_sizes: dict[str, int] = field(default_factory=dict)
    audit_confidence: float = default("audit.confidence")  # the audit's bounds, recomputed on resamples
    # Who each run is (results/runs.parquet); None: read from the names in the metrics (`Identity.of_frames`).
    identity: Identity | None = None


# ------------------------------------------------------------------------------------------
# Per-item records


@dataclass
class Items:
    """The per-item records of every run, with the run's columns (RUN_KEYS) and checkpoint:
    strings (prompt_set, entity_type, string_id, occurrences, seen, extracted), messages (doc_id, n_tokens,
    nll_sum, base_nll_sum: the base model's on the same message), scores (index, member, group, loss: the
    LOSS score of the members' original text, blind: the blind baseline's), targets (attack, prompt_set,
    entity_type, target_id, in_pretraining, correct, exposure, base_correct, base_exposure, occurrences: the
    targeted attacks' records), canaries (canary_id, entity_type, train_occurrences, exposure,
    exposure_extrapolated: the canary records), audit (canary_id, included, score: the audit canaries')."""

    strings: pl.DataFrame = field(default_factory=pl.DataFrame)
    messages: pl.DataFrame = field(default_factory=pl.DataFrame)
    scores: pl.DataFrame = field(default_factory=pl.DataFrame)
    targets: pl.DataFrame = field(default_factory=pl.DataFrame)
    canaries: pl.DataFrame = field(default_factory=pl.DataFrame)
    audit: pl.DataFrame = field(default_factory=pl.DataFrame)


def item_files(results: Iterable[str]) -> list[str]:
    """The per-item record beside each per-checkpoint result file (`{kind}/{checkpoint}.{part}.parquet`)."""
    out = []
    for path in map(str, results):
        kind = ResultFile.parse(path).kind
        if kind in PARTS:
            out.append(path.removesuffix(".tsv") + f".{PARTS[kind]}.parquet")
    return out


def read_items(paths: Iterable[str | os.PathLike]) -> Items:
    """Items from per-item record files (`item_files`); ValueError naming a file that lacks a column."""
    need = {"strings": ("prompt_set", "entity_type", "string_id", "occurrences", "seen", "extracted"),
            "messages": ("doc_id", "n_tokens", "nll_sum", "base_nll_sum"),
            "scores": ("index", "member", "group", HEADLINE_ATTACK, BLIND),
            "targets": ("attack", "prompt_set", "entity_type", "target_id", "in_pretraining", "correct", "exposure",
                        "base_correct", "base_exposure", "occurrences"),
            "canaries": ("canary_id", "entity_type", "train_occurrences", "exposure", CANARY_EXPOSURE),
            "audit": ("canary_id", "included", "score")}
    parts: dict[str, list[pl.DataFrame]] = {name: [] for name in need}
    for path in paths:
        record = ResultFile.parse(path, part=True)
        if record.part not in need:
            raise ValueError(f"{path}: unknown per-item record {record.part!r} (expected one of {list(need)})")
        table = pl.read_parquet(record.path)
        if record.part == "scores" and "member_text" in table.columns:
            table = table.filter(pl.col("member_text") == "original")
        if record.part == "targets" and "occurrences" not in table.columns:  # written before repetitions were kept
            table = table.with_columns(occurrences=pl.lit(None, dtype=pl.Int64))
        if record.part == "scores" and "group" not in table.columns:  # written before members had link groups
            table = table.with_columns(group=pl.col("index"))
        if record.part == "scores":  # the blind baseline's score, where it ran (piimem.blind)
            table = table.with_columns(pl.col(BLIND) if BLIND in table.columns else pl.lit(None, pl.Float64)
                                       .alias(BLIND))
        missing = [c for c in need[record.part] if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: per-item record lacks column(s) {missing}; it has {table.columns}")
        run = record.run
        parts[record.part].append(table.select(
            pl.lit(run.base).alias("base_model"), pl.lit(run.defense).alias("defense"),
            pl.lit(run.tuning).alias("tuning"), pl.lit(run.seed, dtype=pl.Int64).alias("seed"),
            pl.lit(record.checkpoint).alias("checkpoint"), *need[record.part]))
    return Items(**{name: pl.concat(frames) if frames else pl.DataFrame() for name, frames in parts.items()})


# ------------------------------------------------------------------------------------------
# Estimates: a quantity per seed, at the point and in every resample


@dataclass
class Estimate:
    """A quantity per seed: `point` (S, ...) on the items as measured, `boot` (B, S, ...) on each resample."""

    seeds: tuple[int, ...]
    point: np.ndarray
    boot: np.ndarray

    def on(self, seeds: Sequence[int]) -> Estimate:
        index = [self.seeds.index(s) for s in seeds]
        return Estimate(tuple(seeds), self.point[index], self.boot[:, index])

    def at(self, index) -> Estimate:
        """The estimate at one position of its last axis (a checkpoint, a tau)."""
        return Estimate(self.seeds, self.point[..., index], self.boot[..., index])


def combine(function: Callable, *estimates: Estimate) -> Estimate:
    """`function` of estimates on the seeds they share, applied alike to the points and the resamples (it
    must work on the trailing axes, e.g. checkpoints)."""
    seeds = sorted(set.intersection(*(set(e.seeds) for e in estimates)))
    picked = [e.on(seeds) for e in estimates]
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return Estimate(tuple(seeds), function(*(e.point for e in picked)), function(*(e.boot for e in picked)))


def _nanmean(values: np.ndarray, axis) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no value is NaN, as intended
        return np.nanmean(values, axis=axis)


def summary(estimate: Estimate, level: float) -> dict:
    """value (mean over seeds), its item interval, the share of resamples where it is defined, and with two
    or more seeds the t interval across seeds. A scalar estimate per seed: point (S,), boot (B, S).

    No item interval where the quantity is undefined in more than 1 - level of the resamples (a reduction
    against a baseline that extracted one string is undefined whenever a resample misses that string):
    percentiles of the remaining resamples would describe a selected subset, not the estimate."""
    if not estimate.seeds:
        return {"value": None}
    value = float(_nanmean(estimate.point, 0))
    replicates = _nanmean(estimate.boot, 1)
    defined = float(np.isfinite(replicates).mean())
    low, high = (percentile_interval(replicates, level) if math.isfinite(value) and defined >= level - 1e-12
                 else (math.nan, math.nan))
    seed_low, seed_high = t_interval(list(estimate.point), level) if len(estimate.seeds) > 1 else (math.nan,) * 2
    return {"value": value, "ci_low": low, "ci_high": high, "defined": defined,
            "seeds": len(estimate.seeds), "seed_ci_low": seed_low, "seed_ci_high": seed_high}


# ------------------------------------------------------------------------------------------
# Aligning a run's records into arrays (seed, checkpoint, item)


def _checkpoints(frame: pl.DataFrame, metrics: pl.DataFrame) -> list[str]:
    """A run group's checkpoints in epoch order (epochs from metrics.parquet)."""
    ids = set(frame["checkpoint"].unique().to_list())
    epochs = dict(metrics.filter(pl.col("checkpoint").is_in(list(ids))).select("checkpoint", "epoch").unique().rows())
    return sorted(ids, key=lambda c: (epochs.get(c, math.inf), c))


def _arrays(frame: pl.DataFrame, item: str, columns: Sequence[str], checkpoints: Sequence[str],
            items: np.ndarray, what: str) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
    """(seeds, {column: (S, C, N) array}) of one run's records, items in the order of `items`."""
    seeds = tuple(sorted(frame["seed"].unique().to_list()))
    order = pl.DataFrame({"checkpoint": list(checkpoints), "_c": list(range(len(checkpoints)))})
    ranked = (frame.join(order, on="checkpoint").join(pl.DataFrame({item: items, "_i": np.arange(len(items))}),
                                                      on=item).sort("seed", "_c", "_i"))
    expected = len(seeds) * len(checkpoints) * len(items)
    if ranked.height != expected or frame.height != expected:
        raise ValueError(f"{what}: the per-item records do not cover every item at every checkpoint of every seed "
                         f"({frame.height} rows, expected {len(seeds)} seeds x {len(checkpoints)} checkpoints x "
                         f"{len(items)} items); rerun the attack of that run")
    shape = (len(seeds), len(checkpoints), len(items))
    return seeds, {c: ranked[c].to_numpy().reshape(shape) for c in columns}


def _resampled(seeds, arrays: dict[str, np.ndarray], statistic: Callable, weight_chunks: list[np.ndarray]) -> Estimate:
    """`statistic(weights (b, N), arrays) -> (b, S, C)` at the point (all weights 1) and on every resample."""
    n = next(iter(arrays.values())).shape[-1]
    point = statistic(np.ones((1, n)), arrays)[0]
    boot = np.concatenate([statistic(w, arrays) for w in weight_chunks]) if weight_chunks else point[None]
    return Estimate(seeds, point, boot)


def _weight_chunks(rng: np.random.Generator, n: int, resamples: int) -> list[np.ndarray]:
    return [draw_counts(rng, n, b) for b in chunk_sizes(resamples, n)]


def _weighted_sum(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum over items of draw counts x values: (b, N) and (S, C, N) -> (b, S, C), one matrix product."""
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    return (weights.astype(np.float64) @ flat.T).reshape((len(weights), *values.shape[:-1]))


def _weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weighted mean over items: (b, N) x (S, C, N) -> (b, S, C)."""
    return _weighted_sum(weights, values) / weights.sum(axis=1)[:, None, None]


def _weighted_rate(weights: np.ndarray, hits: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """100 x weighted share of `hits` among the items (or among those marked in `among`), NaN over none."""
    if among is None:
        return 100.0 * _weighted_mean(weights, hits)
    numerator, denominator = _weighted_sum(weights, hits & among), _weighted_sum(weights, among)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 100.0 * numerator / denominator, np.nan)


# ------------------------------------------------------------------------------------------
# The comparisons


def _row(quantity: str, values: dict, **keys) -> dict:
    return {"quantity": quantity, **keys, **values}


def _perplexity(messages: pl.DataFrame, metrics: pl.DataFrame, settings: Settings) -> tuple[list[dict], dict]:
    """ppl_mean (over checkpoints and per checkpoint) of every run and ppl_increase vs none, paired over the
    test messages; also {(base, tuning, defense): (Estimate (S, C), checkpoints)} for the MaxTER curves."""
    rows, estimates = [], {}
    if messages.height == 0:
        return rows, estimates
    scored = messages.filter(pl.col("n_tokens") > 0).with_columns(
        ppl=(pl.col("nll_sum") / pl.col("n_tokens")).exp(),
        ppl_base=(pl.col("base_nll_sum") / pl.col("n_tokens")).exp())
    for (base_model, tuning), group in sorted(scored.group_by("base_model", "tuning"),
                                              key=lambda g: (g[0][0], tuning_rank(g[0][1]))):
        docs = np.sort(group["doc_id"].unique().to_numpy())
        checkpoints = _checkpoints(group, metrics)
        rng = rng_for(settings.seed, "messages", base_model, tuning)
        chunks = _weight_chunks(rng, len(docs), settings.resamples)
        first = group.filter((pl.col("defense") == group["defense"][0]) & (pl.col("seed") == group["seed"][0])
                             & (pl.col("checkpoint") == checkpoints[0]))
        seeds, arrays = _arrays(first, "doc_id", [PPL_BASE], checkpoints[:1], docs, f"{base_model} base model")
        base_model_ppl = _resampled(seeds, arrays, lambda w, a: _weighted_mean(w, a[PPL_BASE]), chunks)
        rows.append(_row(PPL_BASE, summary(combine(lambda p: p[..., 0], base_model_ppl), settings.level),
                         base_model=base_model, tuning=tuning, n=len(docs), resampled="messages"))
        for (defense,), run in sorted(group.group_by("defense"), key=lambda g: defense_rank(g[0][0])):
            seeds, arrays = _arrays(run, "doc_id", ["ppl"], checkpoints, docs,
                                    f"{base_model}/{defense}-{tuning} test messages")
            estimate = _resampled(seeds, arrays, lambda w, a: _weighted_mean(w, a["ppl"]), chunks)
            estimates[(base_model, tuning, defense)] = (estimate, checkpoints)
            keys = dict(base_model=base_model, tuning=tuning, defense=defense, n=len(docs), resampled="messages")
            rows.append(_row(PPL, summary(combine(lambda p: _nanmean(p, -1), estimate), settings.level),
                             **keys))
            epochs = _epochs(metrics, base_model, defense, tuning)
            for i, checkpoint in enumerate(checkpoints):
                rows.append(_row(PPL, summary(estimate.at(i), settings.level), checkpoint=checkpoint,
                                 epoch=epochs.get(checkpoint), **keys))
        base = estimates.get((base_model, tuning, BASELINE))
        defended = [d for d in group["defense"].unique().to_list() if d != BASELINE] if base else []
        for defense in sorted(defended, key=defense_rank):
            increase = combine(lambda m, r: -reductions_vs_baseline(m, r), estimates[(base_model, tuning, defense)][0],
                               base[0])
            rows.append(_row("ppl_increase", summary(increase, settings.level), base_model=base_model, tuning=tuning,
                             defense=defense, versus=BASELINE, n=len(docs), resampled="messages"))
    return rows, estimates


def _epochs(metrics: pl.DataFrame, base_model: str, defense: str, tuning: str) -> dict[str, float]:
    rows = metrics.filter((pl.col("base_model") == base_model) & (pl.col("defense") == defense)
                          & (pl.col("tuning") == tuning))
    return dict(rows.select("checkpoint", "epoch").unique().rows())


def _extraction(strings: pl.DataFrame, metrics: pl.DataFrame, perplexity: dict, settings: Settings) -> list[dict]:
    """ter, ser per run; reductions, MaxTER, AURC vs none; RMFT vs dedup; the repetition trend of none."""
    rows: list[dict] = []
    if strings.height == 0:
        return rows
    for entity_type in extraction_entity_types(metrics) or [ALL]:
        scoped = strings if entity_type == ALL else strings.filter(pl.col("entity_type") == entity_type)
        for (base_model, tuning, prompt_set), group in sorted(
                scoped.group_by("base_model", "tuning", "prompt_set"),
                key=lambda g: (g[0][0], tuning_rank(g[0][1]), g[0][2])):
            rows += _extraction_experiment(group, metrics, perplexity, settings, base_model=base_model,
                                           tuning=tuning, prompt_set=prompt_set, entity_type=entity_type)
    return rows


@dataclass
class _StringRun:
    """One defense's strings in an extraction experiment: the per-string arrays (S, C, N: extracted, seen,
    occurrences), its TER and SER on every resample, and the distinct strings of O it extracted anywhere."""

    seeds: tuple[int, ...]
    arrays: dict[str, np.ndarray]
    rates: dict[str, Estimate]
    strings: int


def _extraction_experiment(group: pl.DataFrame, metrics: pl.DataFrame, perplexity: dict, settings: Settings,
                           **keys) -> list[dict]:
    """The extraction quantities of one experiment (base model, tuning, prompt set, PII scope), each from its
    own step: every run's ter and ser; each defense's ter_reduction and ser_reduction, and its maxter, aurc and
    min_ppl_increase, vs none; RMFT vs deduplication; none's repetition_trend. Every run and comparison draws
    the same resamples of the strings (paired)."""
    level, n = settings.level, group["string_id"].n_unique()
    checkpoints = _checkpoints(group, metrics)
    chunks = _weight_chunks(rng_for(settings.seed, "strings", *keys.values()), n, settings.resamples)
    runs = _string_runs(group, checkpoints, chunks, keys)
    rows = [row for defense, run in runs.items() for row in _rate_rows(run, level, n, dict(keys, defense=defense))]
    if BASELINE not in runs:
        return rows
    baseline = runs[BASELINE]
    reductions, areas = {}, {}
    ppl_base = perplexity.get((keys["base_model"], keys["tuning"], BASELINE))
    for defense, run in runs.items():
        if defense == BASELINE:
            continue
        compared = dict(keys, defense=defense, versus=BASELINE, baseline_strings=baseline.strings, n=n)
        reductions[defense] = {metric: combine(reductions_vs_baseline, run.rates[metric], baseline.rates[metric])
                               for metric in (TER, SER)}
        rows += [_row(f"{metric}_reduction", summary(reduction, level), resampled="strings", **compared)
                 for metric, reduction in reductions[defense].items()]
        ppl = perplexity.get((keys["base_model"], keys["tuning"], defense))
        if ppl is not None and ppl_base is not None and ppl[1] == checkpoints:
            cost_rows, areas[defense] = _cost_rows(run, baseline, ppl[0], ppl_base[0], settings, compared)
            rows += cost_rows
    rows += _rmft_vs_dedup_rows(runs, {d: r[TER] for d, r in reductions.items()}, areas, level,
                                dict(keys, baseline_strings=baseline.strings, n=n), settings.identity)
    rows.append(_repetition_trend(baseline, chunks, level, keys, baseline.strings, n))
    return rows


def _string_runs(group: pl.DataFrame, checkpoints: list[str], chunks: list[np.ndarray],
                 keys: dict) -> dict[str, _StringRun]:
    """Each defense's `_StringRun` of an experiment's strings, in display order."""
    ids = np.sort(group["string_id"].unique().to_numpy())
    runs = {}
    for (defense,), run in sorted(group.group_by("defense"), key=lambda g: defense_rank(g[0][0])):
        what = f"{keys['base_model']}/{defense}-{keys['tuning']} strings, prompts {keys['prompt_set']}"
        seeds, arrays = _arrays(run, "string_id", ["extracted", "seen", "occurrences"], checkpoints, ids, what)
        rates = {TER: _resampled(seeds, arrays, lambda w, a: _weighted_rate(w, a["extracted"]), chunks),
                 SER: _resampled(seeds, arrays, lambda w, a: _weighted_rate(w, a["extracted"], a["seen"]), chunks)}
        runs[defense] = _StringRun(seeds, arrays, rates, int(arrays["extracted"].any(axis=(0, 1)).sum()))
    return runs


def _rate_rows(run: _StringRun, level: float, n: int, keys: dict) -> list[dict]:
    """ter and ser of one run, means over checkpoints with their exact intervals (`_mean_rate`)."""
    extracted, seen = run.arrays["extracted"], run.arrays["seen"]
    keys = dict(keys, resampled="checkpoints (exact)")
    return [_row(TER, _mean_rate(extracted.sum(-1), np.full(extracted.shape[:2], n), level), k=run.strings, n=n,
                 **keys),
            _row(SER, _mean_rate((extracted & seen).sum(-1), seen.sum(-1), level),
                 k=int((extracted & seen).any(axis=(0, 1)).sum()), n=int(seen[:, -1].any(axis=0).sum()), **keys)]


def _cost_rows(run: _StringRun, baseline: _StringRun, ppl: Estimate, ppl_base: Estimate, settings: Settings,
               compared: dict) -> tuple[list[dict], Estimate]:
    """aurc, maxter at every tau and min_ppl_increase of a defense vs none, strings and messages resampled
    together; also its AURC estimate (for the RMFT vs dedup difference)."""
    level, taus = settings.level, np.asarray(settings.taus, dtype=np.float64)
    cost_drop = combine(lambda tm, tb, pm, pb: np.stack(maxter_point_arrays(tm, tb, pm, pb), axis=-2),
                        run.rates[TER], baseline.rates[TER], ppl, ppl_base)
    # stacked: (S, 2, C) at the point, (B, S, 2, C) resampled; [..., 0, :] is the cost, [..., 1, :] the drop
    curves = combine(lambda cd: maxter_curves_of(cd[..., 0, :], cd[..., 1, :], taus), cost_drop)
    area_coverage = combine(lambda c: np.stack(aurcs(taus, c), axis=-1), curves)
    area = area_coverage.at(0)
    both = dict(compared, resampled="strings+messages")
    rows = [_row("aurc", summary(area, level), coverage=float(_nanmean(area_coverage.at(1).point, 0)), **both)]
    rows += [_row("maxter", summary(curves.at(i), level), tau=float(tau), **both) for i, tau in enumerate(taus)]
    cheapest = combine(lambda cd: np.where(np.isfinite(cd[..., 0, :]).any(-1),
                                           np.nanmin(np.where(np.isfinite(cd[..., 0, :]), cd[..., 0, :], np.inf),
                                                     axis=-1), np.nan), cost_drop)
    rows.append(_row("min_ppl_increase", summary(cheapest, level), **both))
    return rows, area


def _rmft_vs_dedup_rows(runs: dict[str, _StringRun], reductions: dict[str, Estimate], areas: dict[str, Estimate],
                        level: float, keys: dict, identity: Identity) -> list[dict]:
    """ter_reduction_difference and aurc_difference of every RMFT run vs every deduplication run."""
    rows = []
    for rmft in runs:
        for dedup in identity.head_to_head(rmft, runs):
            vs = dict(keys, defense=rmft, versus=dedup)
            rows.append(_row("ter_reduction_difference",
                             summary(combine(np.subtract, reductions[rmft], reductions[dedup]), level),
                             resampled="strings", **vs))
            if rmft in areas and dedup in areas:
                rows.append(_row("aurc_difference", summary(combine(np.subtract, areas[rmft], areas[dedup]), level),
                                 resampled="strings+messages", **vs))
    return rows


def _mean_rate(k: np.ndarray, n: np.ndarray, level: float) -> dict:
    """A rate's mean over checkpoints (and seeds), in %, from its counts k of n (seeds x checkpoints), with
    an exact interval: the mean of the Clopper-Pearson bounds of each of the m rates at level
    1 - (1 - level) / m. All m intervals hold at once with probability >= level (Bonferroni), so their mean
    holds the mean rate at least as often. (A bootstrap over strings cannot do this where nothing was
    extracted: every resample extracts nothing too, [0, 0]; the exact interval says how much a run could
    still extract.) With several seeds, also the t interval of the per-seed means."""
    kept = n > 0
    if not kept.any():
        return {"value": None}
    each = 1 - (1 - level) / kept.sum()
    bounds = np.asarray([clopper_pearson(int(a), int(b), each) for a, b in zip(k[kept], n[kept])])
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = _nanmean(np.where(kept, 100 * k / np.where(kept, n, 1), np.nan), 1)
    seed_low, seed_high = t_interval(list(per_seed), level) if len(per_seed) > 1 else (math.nan, math.nan)
    return {"value": float(np.mean(100 * k[kept] / n[kept])), "ci_low": float(100 * bounds[:, 0].mean()),
            "ci_high": float(100 * bounds[:, 1].mean()), "defined": 1.0, "seeds": len(per_seed),
            "seed_ci_low": seed_low, "seed_ci_high": seed_high}


def _repetition_trend(run: _StringRun, chunks: list[np.ndarray], level: float, keys: dict, evidence: int,
                      n: int) -> dict:
    """Spearman rho of repetition bucket (lower bound) and TER at the last checkpoint over the buckets that
    hold true PII; a resample whose rates are all equal has no trend (rho 0)."""
    occurrences = run.arrays["occurrences"][0, 0]
    masks = [(occurrences >= low) & (occurrences <= (high if high is not None else np.inf))
             for low, high in REPETITION_BUCKETS]
    kept = [i for i, mask in enumerate(masks) if mask.any()]
    lows = np.asarray([REPETITION_BUCKETS[i][0] for i in kept], dtype=np.float64)
    extracted = run.arrays["extracted"][:, -1].astype(np.float64)  # (S, N), the last checkpoint

    def rates(weights: np.ndarray, _arrays) -> np.ndarray:  # (b, S, buckets)
        out = []
        for i in kept:
            w = weights * masks[i]
            total = w.sum(axis=1)[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(total > 0, 100.0 * (w @ extracted.T) / total, np.nan))
        return np.stack(out, axis=-1)

    by_bucket = _resampled(run.seeds, run.arrays, rates, chunks)
    row = dict(keys, defense=BASELINE, checkpoint=None, baseline_strings=evidence, n=n, resampled="strings",
               points=len(kept))
    if len(kept) < 2:
        return _row("repetition_trend", {"value": None}, **row)

    def trend(r: np.ndarray) -> np.ndarray:
        rho = spearman_rows(lows, r)
        return np.where(np.isnan(rho) & ~np.isnan(r).all(-1), 0.0, rho)

    rho = combine(trend, by_bucket)
    values = summary(rho, level)
    values["p_value"] = _trend_p(lows, _nanmean(by_bucket.point, 0), values["value"])
    return _row("repetition_trend", values, **row)


def _membership(scores: pl.DataFrame, metrics: pl.DataFrame, settings: Settings) -> list[dict]:
    """LOSS AUC of every undefended run at the table epoch, AUC differences and trends, and each defense's
    AUC drop, paired over the members and non-members of each base model."""
    rows: list[dict] = []
    if scores.height == 0:
        return rows
    if "group" not in scores.columns:  # no link groups: every example is its own
        scores = scores.with_columns(group=pl.col("index"))
    learnt = learnt_runs(metrics, settings.finetuning_epoch)
    at_epoch: dict[str, dict[str, Estimate]] = {}
    for (base_model,), every in sorted(scores.group_by("base_model")):
        rows += _blind(every, settings, base_model)
        every = _scored_everywhere(every)  # one set of examples for every run, so that defenses pair with none
        group = every.filter(pl.col("defense") == BASELINE)
        if group.height == 0:
            continue
        aucs = _aucs(group, metrics, settings, base_model)
        chosen = {}
        for tuning, (estimate, run_epochs) in aucs.items():
            index = _nearest(run_epochs, settings.finetuning_epoch)
            chosen[tuning] = estimate.at(index)
            sample = group.filter(pl.col("tuning") == tuning).unique("index")
            n, groups = sample.height, sample["group"].n_unique()
            rows.append(_row("loss_auc", summary(chosen[tuning], settings.level), base_model=base_model,
                             tuning=tuning, defense=BASELINE, epoch=run_epochs[index], n=n, groups=groups,
                             resampled=MIA_RESAMPLED))
            if settings.identity.family(tuning) == "parameter" and len(run_epochs) >= 2:
                rho = combine(lambda a: spearman_rows(np.asarray(run_epochs), a), estimate)
                values = summary(rho, settings.level)
                values["p_value"] = _trend_p(run_epochs, _nanmean(estimate.point, 0), values["value"])
                rows.append(_row("auc_trend", values, base_model=base_model, tuning=tuning, defense=BASELINE, n=n,
                                 groups=groups, points=len(set(run_epochs)), resampled=MIA_RESAMPLED))
        at_epoch[base_model] = chosen
        sample = group.unique("index")  # every run of the base model scores the same examples
        keys = dict(base_model=base_model, defense=BASELINE, resampled=MIA_RESAMPLED, n=sample.height,
                    groups=sample["group"].n_unique())
        family = settings.identity.family
        parameter = [t for t in chosen if family(t) == "parameter"]
        prompt = [t for t in chosen if family(t) == "prompt" and learnt.get((base_model, BASELINE, t), True)]
        if parameter and prompt:
            gap = combine(lambda *a: np.min(np.stack(a[:len(parameter)]), axis=0)
                          - np.max(np.stack(a[len(parameter):]), axis=0),
                          *(chosen[t] for t in parameter), *(chosen[t] for t in prompt))
            rows.append(_row("auc_family_gap", summary(gap, settings.level), tuning=",".join(parameter),
                             versus=",".join(prompt), **keys))
        if "lora_mlp" in chosen and "lora_attention" in chosen:
            rows.append(_row("auc_difference", summary(combine(np.subtract, chosen["lora_mlp"],
                                                               chosen["lora_attention"]), settings.level),
                             tuning="lora_mlp", versus="lora_attention", **keys))
        for defense in sorted(set(every["defense"].to_list()) - {BASELINE}, key=defense_rank):
            defended = _aucs(every.filter(pl.col("defense") == defense), metrics, settings, base_model, defense)
            for tuning, (estimate, run_epochs) in defended.items():
                if tuning in chosen:
                    index = _nearest(run_epochs, settings.finetuning_epoch)
                    rows.append(_row("auc_drop", summary(combine(np.subtract, chosen[tuning], estimate.at(index)),
                                                         settings.level),
                                     tuning=tuning, versus=BASELINE, epoch=run_epochs[index],
                                     **dict(keys, defense=defense)))
    sizes = {b: papers.model_size(b, settings.model_sizes) for b in at_epoch}
    sized = sorted((sizes[b], b) for b, chosen in at_epoch.items() if "full" in chosen and sizes[b] is not None)
    # Each base model has its own sample: seed means per model, resampled independently, side by side.
    per_model = [_seed_mean(at_epoch[b]["full"]) for _, b in sized]
    keys = dict(tuning="full", defense=BASELINE, versus=",".join(b for _, b in sized), resampled=MIA_RESAMPLED)
    if len(sized) == 2:
        # Two points make no trend (rho is +-1, its permutation p 1/2): the claim reads their difference.
        difference = combine(lambda small, large: (large - small)[..., 0], *per_model)
        rows.append(_row("size_difference", summary(difference, settings.level), **keys))
    elif len(sized) > 2:
        stacked = Estimate((0,), np.concatenate([e.point for e in per_model], axis=-1),
                           np.concatenate([e.boot for e in per_model], axis=-1))
        ranks = np.asarray([r for r, _ in sized], dtype=np.float64)
        values = summary(combine(lambda a: spearman_rows(ranks, a), stacked), settings.level)
        values["p_value"] = _trend_p(ranks, stacked.point[0], values["value"])
        rows.append(_row("size_trend", values, points=len(sized), **keys))
    return rows


def _blind(scores: pl.DataFrame, settings: Settings, base_model: str) -> list[dict]:
    """The blind baseline's AUC on a base model's member sample (the members' original text), with the
    interval of its link groups: it never saw a model, so every run holds the same scores."""
    if BLIND not in scores.columns:
        return []
    examples = scores.filter(pl.col(BLIND).is_not_null()).unique("index").sort("index")
    labels = examples["member"].to_numpy().astype(bool)
    if examples.height == 0 or labels.all() or not labels.any():
        return []
    if "group" not in examples.columns:
        examples = examples.with_columns(group=pl.col("index"))
    sorted_scores = SortedScores(examples[BLIND].to_numpy(), labels)
    draw = class_group_draws(labels, examples["group"].to_numpy())
    rng = rng_for(settings.seed, "blind", base_model)
    boot = np.concatenate([sorted_scores.aucs(m, o) for o, m in
                           (draw(rng, b) for b in chunk_sizes(settings.resamples, examples.height))])
    ones = (np.ones((1, int(labels.sum())), dtype=np.int64), np.ones((1, int((~labels).sum())), dtype=np.int64))
    estimate = Estimate((0,), sorted_scores.aucs(*ones), boot[:, None])
    return [_row("blind_auc", summary(estimate, settings.level), base_model=base_model, n=examples.height,
                 groups=examples["group"].n_unique(), resampled=MIA_RESAMPLED)]


def _trend_p(x, y, rho: float | None) -> float:
    """The exact permutation p-value of a trend in the direction of the observed rho (`trend_p_value`)."""
    if rho is None or not math.isfinite(rho):
        return math.nan
    return trend_p_value(x, y, alternative="less" if rho < 0 else "greater")


def _seed_mean(estimate: Estimate) -> Estimate:
    """An estimate (S,) as one value per resample: (1, 1) at the point, (B, 1, 1) resampled."""
    return Estimate((0,), _nanmean(estimate.point, 0)[None, None], _nanmean(estimate.boot, 1)[:, None, None])


def _nearest(epochs: Sequence[float], epoch: float | None) -> int:
    """Index of the checkpoint nearest `epoch` (ties: the earlier), the last when None (as `at_checkpoint`)."""
    if epoch is None:
        return len(epochs) - 1
    return min(range(len(epochs)), key=lambda i: (abs(epochs[i] - epoch), epochs[i]))


def _scored_everywhere(group: pl.DataFrame) -> pl.DataFrame:
    """The examples every run scored (an example of fewer than 2 tokens has no score anywhere), so that
    every run is compared on the same members and non-members."""
    unscored = group.filter(pl.col(HEADLINE_ATTACK).is_null() | pl.col(HEADLINE_ATTACK).is_nan())["index"].unique()
    return group.filter(~pl.col("index").is_in(unscored.to_list()))


def _aucs(group: pl.DataFrame, metrics: pl.DataFrame, settings: Settings, base_model: str,
          defense: str = BASELINE) -> dict[str, tuple[Estimate, list[float]]]:
    """{tuning: (LOSS AUC Estimate (S, C), the checkpoints' epochs)} of one base model's runs of `defense`;
    every defense of a base model draws the same resamples (paired)."""
    examples = group.select("index", "member", "group").unique("index").sort("index")
    indexes, labels = examples["index"].to_numpy(), examples["member"].to_numpy().astype(bool)
    members, others = np.flatnonzero(labels), np.flatnonzero(~labels)
    rng = rng_for(settings.seed, "members", base_model)
    draw = class_group_draws(labels, examples["group"].to_numpy())  # whole threads, each class to its count
    draws = [draw(rng, b) for b in chunk_sizes(settings.resamples, len(indexes))]
    out = {}
    for (tuning,), run in sorted(group.group_by("tuning"), key=lambda g: tuning_rank(g[0][0])):
        checkpoints = _checkpoints(run, metrics)
        seeds, arrays = _arrays(run, "index", [HEADLINE_ATTACK], checkpoints, indexes,
                                f"{base_model}/{defense}-{tuning} MIA scores")
        point = np.empty((len(seeds), len(checkpoints)))
        boot = np.empty((settings.resamples, len(seeds), len(checkpoints)))
        ones = (np.ones((1, len(members)), dtype=np.int64), np.ones((1, len(others)), dtype=np.int64))
        for s in range(len(seeds)):
            for c in range(len(checkpoints)):
                sorted_scores = SortedScores(arrays[HEADLINE_ATTACK][s, c], labels)
                point[s, c] = sorted_scores.aucs(*ones)[0]
                boot[:, s, c] = np.concatenate([sorted_scores.aucs(m, o) for o, m in draws])
        epochs = _epochs(metrics, base_model, defense, tuning)
        out[tuning] = (Estimate(seeds, point, boot), [epochs.get(c, math.nan) for c in checkpoints])
    return out


def _targeted(targets: pl.DataFrame, metrics: pl.DataFrame, settings: Settings) -> list[dict]:
    """Per targeted metric (TARGETED), entity type (and ALL) and prompt set: each defense's drop vs none and
    each run's gain over the base model, at every checkpoint scored, paired over the attack's targets."""
    rows: list[dict] = []
    if targets.height == 0:
        return rows
    for metric, (attack, column, _) in TARGETED.items():
        of_attack = targets.filter(pl.col("attack") == attack)
        if of_attack.height == 0:
            continue
        types = sorted(set(of_attack["entity_type"].to_list()))
        for entity_type in [*types, ALL] if len(types) > 1 else types:
            scoped = of_attack if entity_type == ALL else of_attack.filter(pl.col("entity_type") == entity_type)
            for (base_model, tuning, prompt_set), group in sorted(
                    scoped.group_by("base_model", "tuning", "prompt_set"),
                    key=lambda g: (g[0][0], tuning_rank(g[0][1]), g[0][2] or "")):
                for scope in ("", FINE_TUNING_ONLY) if column == "correct" else ("",):
                    picked = group.filter(pl.col("in_pretraining").is_not_null() & ~pl.col("in_pretraining")) \
                        if scope else group
                    if picked.height:
                        rows += _targeted_experiment(picked, metrics, settings, f"{metric}{scope}", column,
                                                     base_model=base_model, tuning=tuning, prompt_set=prompt_set,
                                                     entity_type=entity_type)
    return rows


def _targeted_experiment(group: pl.DataFrame, metrics: pl.DataFrame, settings: Settings, metric: str, column: str,
                         **keys) -> list[dict]:
    ids = np.sort(group["target_id"].unique().to_numpy())
    checkpoints = _checkpoints(group, metrics)
    rng = rng_for(settings.seed, "targets", metric, *map(str, keys.values()))
    chunks = _weight_chunks(rng, len(ids), settings.resamples)
    scale = 100.0 if column == "correct" else 1.0
    runs, outcomes, base = {}, {}, None
    for (defense,), run in sorted(group.group_by("defense"), key=lambda g: defense_rank(g[0][0])):
        what = f"{keys['base_model']}/{defense}-{keys['tuning']} {metric} targets"
        seeds, arrays = _arrays(run.with_columns(pl.col(column, f"base_{column}").cast(pl.Float64)), "target_id",
                                [column, f"base_{column}"], checkpoints, ids, what)
        outcomes[defense] = {"seeds": list(seeds), "arrays": arrays}
        runs[defense] = _resampled(seeds, arrays, lambda w, a: scale * _weighted_mean(w, a[column]), chunks)
        if base is None:
            base = _resampled(seeds, arrays, lambda w, a: scale * _weighted_mean(w, a[f"base_{column}"]), chunks)
    rows = []
    for defense, estimate in runs.items():
        gain = combine(np.subtract, estimate, base)
        epochs = _epochs(metrics, keys["base_model"], defense, keys["tuning"])
        for i, checkpoint in enumerate(checkpoints):
            at = dict(keys, defense=defense, versus="base model", checkpoint=checkpoint, epoch=epochs.get(checkpoint),
                      n=len(ids), resampled="targets")
            values = summary(gain.at(i), settings.level)
            rows.append(_row(quantity_of(metric, GAIN),
                             _with_paired_test(values, outcomes[defense], outcomes[defense], i, column,
                                               baseline=f"base_{column}"), **at))
            if defense != BASELINE and BASELINE in runs:
                drop = summary(combine(np.subtract, runs[BASELINE], estimate).at(i), settings.level)
                rows.append(_row(quantity_of(metric, DROP),
                                 _with_paired_test(drop, outcomes[BASELINE], outcomes[defense], i, column),
                                 **dict(at, versus=BASELINE)))
    # RMFT against deduplication, both trained on the same split: positive when RMFT leaks less.
    for rmft in runs:
        for dedup in settings.identity.head_to_head(rmft, runs):
            epochs = _epochs(metrics, keys["base_model"], rmft, keys["tuning"])
            for i, checkpoint in enumerate(checkpoints):
                difference = summary(combine(np.subtract, runs[dedup], runs[rmft]).at(i), settings.level)
                rows.append(_row(quantity_of(metric, DIFFERENCE),
                                 _with_paired_test(difference, outcomes[dedup], outcomes[rmft], i, column),
                                 **dict(keys, defense=rmft, versus=dedup, checkpoint=checkpoint,
                                        epoch=epochs.get(checkpoint), n=len(ids), resampled="targets")))
    if column == "exposure" and BASELINE in runs and "occurrences" in group.columns:
        rows.append(_repetition_exposure_trend(group.filter(pl.col("defense") == BASELINE), checkpoints,
                                               outcomes[BASELINE], ids, settings, metric, keys))
    return rows


def _with_paired_test(values: dict, first: dict, second: dict, checkpoint: int, column: str,
                      baseline: str | None = None) -> dict:
    """`values` with the p-value (`p_value`) of a difference of paired outcomes at one checkpoint, first[column]
    (or its `baseline` column) against second[column]: for yes/no outcomes the exact McNemar p of the
    discordant targets pooled over the seeds the two share; for a graded outcome (exposure) the Wilcoxon
    signed-rank p of the per-target differences (each target's mean over those seeds)."""
    seeds = sorted(set(first["seeds"]) & set(second["seeds"]))
    a = first["arrays"][baseline or column][[first["seeds"].index(s) for s in seeds], checkpoint]
    b = second["arrays"][column][[second["seeds"].index(s) for s in seeds], checkpoint]
    if column == "correct":
        a, b = a.astype(bool), b.astype(bool)
        return dict(values, p_value=mcnemar_p(int((a & ~b).sum()), int((b & ~a).sum())))
    return dict(values, p_value=wilcoxon_p((a - b).mean(axis=0)))


def _repetition_exposure_trend(run: pl.DataFrame, checkpoints: list[str], outcome: dict, ids: np.ndarray,
                               settings: Settings, metric: str, keys: dict) -> dict:
    """Spearman rho of a target string's repetition count in the training split and its exposure (seed mean)
    at the last checkpoint scored, over the targets of the undefended run; the interval resamples targets, the
    p-value is the permutation p in rho's direction (`trend_p_value`)."""
    counts = run.select("target_id", "occurrences").unique("target_id")
    occurrences = counts.join(pl.DataFrame({"target_id": ids}), on="target_id", how="right")["occurrences"]
    row = dict(keys, defense=BASELINE, checkpoint=checkpoints[-1], n=len(ids), resampled="targets",
               points=occurrences.n_unique())
    if occurrences.null_count():
        return _row(quantity_of(metric, REPETITION_TREND), {"value": None}, **row)
    x = occurrences.to_numpy().astype(np.float64)
    y = outcome["arrays"]["exposure"][:, -1].mean(axis=0)
    rng = rng_for(settings.seed, "targets", metric, "repetition", *map(str, keys.values()))
    draws = rng.integers(0, len(ids), size=(settings.resamples, len(ids)))
    replicates = spearman_pairs(x[draws], y[draws])
    value = spearman(x, y)
    low, high = percentile_interval(replicates, settings.level) if math.isfinite(value) else (math.nan, math.nan)
    return _row(quantity_of(metric, REPETITION_TREND),
                {"value": value, "ci_low": low, "ci_high": high, "defined": float(np.isfinite(replicates).mean()),
                 "seeds": len(outcome["seeds"]), "p_value": _trend_p(x, y, value)}, **row)


def _canaries(canaries: pl.DataFrame, metrics: pl.DataFrame, settings: Settings) -> list[dict]:
    """Per base model and tuning method, at the last checkpoint: the undefended run's exposure against its
    canaries' training repetitions, and every defense's exposure drop vs none on the repeated canaries of each
    type (and of all types), paired per canary (the canaries and their contexts are the base model's: every
    run scores the same ones)."""
    rows: list[dict] = []
    if canaries.height == 0:
        return rows
    for (base_model, tuning), group in sorted(canaries.group_by("base_model", "tuning"),
                                              key=lambda g: (g[0][0], tuning_rank(g[0][1]))):
        last = _checkpoints(group, metrics)[-1:]
        ids = np.sort(group["canary_id"].unique().to_numpy())
        info = group.select("canary_id", "entity_type", "train_occurrences").unique("canary_id").sort("canary_id")
        outcomes = {}
        for (defense,), run in sorted(group.group_by("defense"), key=lambda g: defense_rank(g[0][0])):
            seeds, arrays = _arrays(run.filter(pl.col("checkpoint").is_in(last)), "canary_id", [CANARY_EXPOSURE],
                                    last, ids, f"{base_model}/{defense}-{tuning} canaries")
            outcomes[defense] = {"seeds": list(seeds), "arrays": {"exposure": arrays[CANARY_EXPOSURE]}}
        if BASELINE not in outcomes:
            continue
        keys = dict(base_model=base_model, tuning=tuning, checkpoint=last[0],
                    epoch=_epochs(metrics, base_model, BASELINE, tuning).get(last[0]), resampled="canaries")
        occurrences = info["train_occurrences"].to_numpy().astype(np.float64)
        exposure = outcomes[BASELINE]["arrays"]["exposure"][:, 0].mean(axis=0)
        rng = rng_for(settings.seed, "canaries", base_model, tuning, "trend")
        draws = rng.integers(0, len(ids), size=(settings.resamples, len(ids)))
        value = spearman(occurrences, exposure)
        low, high = (percentile_interval(spearman_pairs(occurrences[draws], exposure[draws]), settings.level)
                     if math.isfinite(value) else (math.nan, math.nan))
        rows.append(_row("canary_exposure_trend", {"value": value, "ci_low": low, "ci_high": high,
                                                   "seeds": len(outcomes[BASELINE]["seeds"]),
                                                   "p_value": _trend_p(occurrences, exposure, value)},
                         defense=BASELINE, n=len(ids), points=len(np.unique(occurrences)), **keys))
        repeated = occurrences >= 2
        types = sorted(set(info["entity_type"].to_list()))
        for entity_type in [*types, ALL] if len(types) > 1 else types:
            chosen = repeated & ((info["entity_type"] == entity_type).to_numpy() if entity_type != ALL else True)
            if not chosen.any():
                continue
            picked = {d: {"seeds": o["seeds"], "arrays": {"exposure": o["arrays"]["exposure"][..., chosen]}}
                      for d, o in outcomes.items()}
            rng = rng_for(settings.seed, "canaries", base_model, tuning, entity_type)
            chunks = _weight_chunks(rng, int(chosen.sum()), settings.resamples)
            means = {d: _resampled(o["seeds"], o["arrays"], lambda w, a: _weighted_mean(w, a["exposure"]), chunks)
                     for d, o in picked.items()}
            for defense in (d for d in picked if d != BASELINE):
                drop = summary(combine(np.subtract, means[BASELINE], means[defense]).at(0), settings.level)
                rows.append(_row("canary_exposure_drop",
                                 _with_paired_test(drop, picked[BASELINE], picked[defense], 0, "exposure"),
                                 defense=defense, versus=BASELINE, entity_type=entity_type, n=int(chosen.sum()),
                                 **keys))
    return rows


def _audits(audit: pl.DataFrame, metrics: pl.DataFrame, settings: Settings) -> list[dict]:
    """Per base model and tuning method: every defense's audited ε drop vs none, at the runs' last checkpoint,
    with a bootstrap over the audit canaries (the same draws for both runs; the first seed of each)."""
    from piimem.audit.bound import audit as audited

    rows: list[dict] = []
    if audit.height == 0:
        return rows
    deltas = dict(metrics.filter(pl.col("metric") == AUDIT["delta"])
                  .select(pl.concat_str("base_model", "defense", "tuning", separator="/"), "value").rows())
    confidence = settings.audit_confidence
    for (base_model, tuning), group in sorted(audit.group_by("base_model", "tuning"),
                                              key=lambda g: (g[0][0], tuning_rank(g[0][1]))):
        seed = min(group["seed"].to_list())
        runs = {d: r.filter(pl.col("seed") == seed).sort("canary_id")
                for (d,), r in group.group_by("defense") if r.filter(pl.col("seed") == seed).height}
        if BASELINE not in runs:
            continue
        ids = runs[BASELINE]["canary_id"].to_numpy()
        included = runs[BASELINE]["included"].to_numpy()
        rng = rng_for(settings.seed, "audit", base_model, tuning)
        draws = rng.integers(0, len(ids), size=(settings.resamples, len(ids)))

        def bounds(defense: str) -> tuple[float, np.ndarray]:
            run = runs[defense]
            if not np.array_equal(run["canary_id"].to_numpy(), ids):
                raise ValueError(f"{base_model}/{defense}-{tuning}: audited other canaries than {BASELINE}")
            scores, delta = run["score"].to_numpy(), deltas[f"{base_model}/{defense}/{tuning}"]
            point = audited(scores, included, delta=delta, confidence=confidence, needed=False).epsilon
            boot = np.array([audited(scores[d], included[d], delta=delta, confidence=confidence,
                                     needed=False).epsilon for d in draws])
            return point, boot

        baseline = bounds(BASELINE)
        checkpoint = runs[BASELINE]["checkpoint"][0]
        for defense in sorted((d for d in runs if d != BASELINE), key=defense_rank):
            other = bounds(defense)
            replicates = baseline[1] - other[1]
            low, high = percentile_interval(replicates, settings.level)
            rows.append(_row(quantity_of(AUDIT["epsilon"], DROP),
                             {"value": baseline[0] - other[0], "ci_low": low, "ci_high": high, "defined": 1.0,
                              "seeds": 1},
                             base_model=base_model, tuning=tuning, defense=defense, versus=BASELINE,
                             checkpoint=checkpoint,
                             epoch=_epochs(metrics, base_model, BASELINE, tuning).get(checkpoint),
                             n=len(ids), resampled="canaries"))
    return rows


# ------------------------------------------------------------------------------------------


def compare(metrics: pl.DataFrame, items: Items, settings: Settings = Settings()) -> pl.DataFrame:
    """The comparison table (COMPARISON_SCHEMA; module docstring) of a metrics table and its runs' items."""
    if settings.identity is None:
        settings = replace(settings, identity=Identity.of_frames(metrics))
    rows, perplexity = _perplexity(items.messages, metrics, settings)
    rows += _extraction(items.strings, metrics, perplexity, settings)
    rows += _membership(items.scores, metrics, settings)
    rows += _targeted(items.targets, metrics, settings)
    rows += _canaries(items.canaries, metrics, settings)
    rows += _audits(items.audit, metrics, settings)
    clean = [{c: (None if isinstance(r.get(c), float) and math.isnan(r[c]) else r.get(c)) for c in COMPARISON_SCHEMA}
             for r in rows]
    return pl.DataFrame(clean, schema=COMPARISON_SCHEMA, orient="row") if clean else pl.DataFrame(
        schema=COMPARISON_SCHEMA)
