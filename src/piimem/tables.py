"""Paper tables from the tidy metrics table (`piimem.aggregate.METRICS_SCHEMA`).

Each table function takes the metrics frame and returns a polars table with human-readable column
headers (the headers of the paper table), or None when the metrics it needs are absent (a config without
extraction, say); `write_tables` skips None. Formulas come from `piimem.metrics`.

Averaging: a value "over checkpoints" is the mean over checkpoints of the mean over seeds at each
checkpoint; a value "at the last checkpoint" is taken, per run, at the run's checkpoint with the largest
epoch, then averaged over seeds. Undefined values (null: a rate over an empty set) are left out of means.

`write_tables(table, stem)` writes stem.csv (every column, full precision: the machine-readable copy),
stem.md (a GitHub pipe table) and stem.tex (a booktabs tabular); md and tex format numbers to a fixed
number of decimals (3 for AUC and TPR columns, 2 otherwise) and show a missing value as a dash.
`build_tables(metrics, folder)` writes every table that has data under the stems of `TABLE_STEMS`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from piimem import papers
from piimem.metrics import TAU_GRID, aurc, maxter_curve, maxter_points, reduction_vs_baseline

BASELINE = "none"
# Display order of defenses and tuning methods; names not listed follow, alphabetically. Every tuning name
# that starts with "lora" (lora_attention, lora_mlp, ...) sorts with "lora".
DEFENSE_ORDER = ("none", "dedup", "rmft", "scrub")
TUNING_ORDER = ("full", "head", "lora", "prefix", "prompt", "ptuning")
ATTACK_ORDER = ("loss", "ref", "zlib", "min_k", "min_k_pp", "lowercase")
# Prompt sets: the paper's main one (prefixes of training PII) first, user-given sets after, alphabetically.
PROMPT_SET_ORDER = ("train-prefix", "test", "public")
# The RMFT paper's TER and SER count e-mail addresses only: its figures stand beside our e-mail rows.
PAPER_ENTITY_TYPE = "EMAIL_ADDRESS"
TABLE_STEMS = ("rmft", "finetuning", "extraction_by_type", "extraction_by_repetition", "claims")

RUN_KEYS = ("base_model", "defense", "tuning", "seed")
# Human headers of the key columns, shared by every table.
HEADERS = {"base_model": "base model", "tuning": "tuning", "defense": "defense", "prompt_set": "prompt set",
           "entity_type": "entity type"}


# ------------------------------------------------------------------------------------------
# Ordering and selection helpers


def _rank(value: str | None, order: Sequence[str]) -> tuple[int, str]:
    value = "" if value is None else value
    for i, name in enumerate(order):
        if value == name or (name == "lora" and value.startswith("lora")):
            return i, value
    return len(order), value


def defense_rank(defense: str | None) -> tuple[int, str]:
    """Sort key of a defense name: DEFENSE_ORDER first, then the others alphabetically."""
    return _rank(defense, DEFENSE_ORDER)


def tuning_rank(tuning: str | None) -> tuple[int, str]:
    """Sort key of a tuning name: TUNING_ORDER (lora* with lora), then the others alphabetically."""
    return _rank(tuning, TUNING_ORDER)


def prompt_set_rank(prompt_set: str | None) -> tuple[int, str]:
    """Sort key of a prompt set name: PROMPT_SET_ORDER first, then the others alphabetically."""
    return _rank(prompt_set, PROMPT_SET_ORDER)


def attack_rank(attack: str) -> tuple[int, str]:
    """Sort key of an attack name; min_k_<K> and min_k_pp_<K> sort by their family."""
    family = attack
    for prefix in ("min_k_pp", "min_k"):
        if attack.startswith(prefix):
            family = prefix
            break
    return _rank(family, ATTACK_ORDER)[0], attack


def attack_label(attack: str) -> str:
    """Display name of an attack: LOSS, Ref, Zlib, Min-20%, Min-20%++, Lowercase."""
    if attack.startswith("min_k_pp_"):
        return f"Min-{attack.removeprefix('min_k_pp_')}%++"
    if attack.startswith("min_k_"):
        return f"Min-{attack.removeprefix('min_k_')}%"
    return {"loss": "LOSS", "ref": "Ref", "zlib": "Zlib", "lowercase": "Lowercase"}.get(attack, attack)


def bucket_rank(bucket: str) -> int:
    """Sort key of a repetition bucket label ("1", "2-3", "16+"): its lower bound."""
    return int(bucket.split("-")[0].rstrip("+"))


def _sort_rows(rows: list[dict], keys: Sequence[str]) -> list[dict]:
    """`rows` sorted by `keys`: defense and tuning in display order, other columns alphabetically."""
    rankers = {"defense": defense_rank, "tuning": tuning_rank, "prompt_set": prompt_set_rank}
    return sorted(rows, key=lambda r: [rankers[k](r[k]) if k in rankers else _rank(r[k], ()) for k in keys])


def defense_kind(defense: str) -> str:
    """The defense a variant name belongs to: "rmft_all_p0.5" -> "rmft" (piimem.config.defense_variants)."""
    return defense.split("_", 1)[0]


def is_paper_rmft(defense: str) -> bool:
    """An RMFT variant of the paper's scope (e-mail addresses): any rmft variant but the `all` scope."""
    return defense_kind(defense) == "rmft" and "all" not in defense.split("_")[1:]


def original_view(metrics: pl.DataFrame) -> pl.DataFrame:
    """The rows that score the members' original text (membership inference's headline view), and every
    row without a view (not membership inference)."""
    if "member_text" not in metrics.columns:
        return metrics
    return metrics.filter(pl.col("member_text").is_null() | (pl.col("member_text") == "original"))


def _finite(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _mean(values: Iterable[float | None]) -> float | None:
    kept = _finite(values)
    return math.fsum(kept) / len(kept) if kept else None


def select_metrics(metrics: pl.DataFrame, metric_names: Iterable[str], **equal) -> pl.DataFrame:
    """Rows of the given metrics whose columns equal the given values (None matches null)."""
    rows = metrics.filter(pl.col("metric").is_in(list(metric_names)))
    for column, value in equal.items():
        rows = rows.filter(pl.col(column).is_null() if value is None else pl.col(column) == value)
    return rows.with_columns(pl.col("value").fill_nan(None))


def seed_means(rows: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Mean over seeds of value (and ci, epoch) per `keys` + checkpoint + metric, with the number of seeds."""
    group = [*keys, "checkpoint", "metric"]
    return rows.group_by(group).agg(
        pl.col("epoch").mean(), pl.col("value").mean(), pl.col("ci_low").mean(), pl.col("ci_high").mean(),
        pl.col("seed").n_unique().alias("seeds"),
    ).sort(group, nulls_last=False)


def at_checkpoint(rows: pl.DataFrame, checkpoint: str | None = None,
                  epoch: float | None = None) -> pl.DataFrame:
    """The rows of one checkpoint per run: `checkpoint` by id; else the checkpoint whose epoch is nearest to
    `epoch` (ties: the earlier); else (both None) the run's last checkpoint (largest epoch)."""
    if rows.height == 0:
        return rows
    if checkpoint is not None:
        return rows.filter(pl.col("checkpoint") == checkpoint)
    run_epochs = rows.select(*RUN_KEYS, "checkpoint", "epoch").unique()
    distance = -pl.col("epoch") if epoch is None else (pl.col("epoch") - epoch).abs()
    ranked = run_epochs.with_columns(distance=distance).sort([*RUN_KEYS, "distance", "epoch", "checkpoint"],
                                                             nulls_last=True)
    chosen = ranked.group_by(RUN_KEYS, maintain_order=True).first().select(*RUN_KEYS, "checkpoint")
    return rows.join(chosen, on=[*RUN_KEYS, "checkpoint"], how="semi", nulls_equal=True)


def by_checkpoint(rows: pl.DataFrame, keys: Sequence[str],
                   metric: str) -> dict[tuple, dict[str, float | None]]:
    """{key values: {checkpoint: seed-mean value}} of one metric."""
    out: dict[tuple, dict[str, float | None]] = {}
    for row in seed_means(rows.filter(pl.col("metric") == metric), keys).iter_rows(named=True):
        out.setdefault(tuple(row[k] for k in keys), {})[row["checkpoint"]] = row["value"]
    return out


# ------------------------------------------------------------------------------------------
# MaxTER curves (shared with the figures)


def _aligned(series: dict[str, float | None], checkpoints: Sequence[str]) -> list[float]:
    return [math.nan if series[c] is None else series[c] for c in checkpoints]


def maxter_curves(metrics: pl.DataFrame, baseline: str = BASELINE, entity_type: str = "ALL",
                  taus: Sequence[float] = TAU_GRID) -> pl.DataFrame | None:
    """MaxTER(τ) of every defense against `baseline`, per base model, tuning and prompt set.

    TER of `entity_type` and ppl_mean, each the mean over seeds per checkpoint, compared on the checkpoints
    both runs have (`piimem.metrics.maxter_curve`, conventions there). Long table: base_model, tuning,
    prompt_set, defense, tau, maxter (null where no checkpoint qualifies: undefined), and per curve
    aurc (null when no τ qualifies) with its coverage (`piimem.metrics.aurc`) and min_ppl_increase, the
    smallest ΔPPL_c any of its checkpoints reaches (%): where coverage is 0 it says how far the cheapest
    checkpoint is from the grid. None when there is no TER, no ppl_mean, or no defense beside the baseline.
    """
    ter = by_checkpoint(select_metrics(metrics, ["ter"], entity_type=entity_type),
                         ("base_model", "tuning", "prompt_set", "defense"), "ter")
    ppl = by_checkpoint(select_metrics(metrics, ["ppl_mean"]), ("base_model", "tuning", "defense"), "ppl_mean")
    rows = []
    for (base_model, tuning, prompt_set, defense), method_ter in ter.items():
        base_ter = ter.get((base_model, tuning, prompt_set, baseline))
        method_ppl = ppl.get((base_model, tuning, defense))
        base_ppl = ppl.get((base_model, tuning, baseline))
        if defense == baseline or base_ter is None or method_ppl is None or base_ppl is None:
            continue
        shared = sorted(set(method_ter) & set(base_ter) & set(method_ppl) & set(base_ppl))
        if not shared:
            continue
        aligned = [_aligned(series, shared) for series in (method_ter, base_ter, method_ppl, base_ppl)]
        curve = maxter_curve(*aligned, taus)
        area, coverage = aurc(taus, curve)
        costs = [cost for cost, _ in maxter_points(*aligned)]
        rows += [{"base_model": base_model, "tuning": tuning, "prompt_set": prompt_set, "defense": defense,
                  "tau": float(tau), "maxter": None if math.isnan(v) else v,
                  "aurc": None if math.isnan(area) else area, "coverage": coverage,
                  "min_ppl_increase": min(costs) if costs else None}
                 for tau, v in zip(taus, curve)]
    if not rows:
        return None
    rows = _sort_rows(rows, ("base_model", "tuning", "prompt_set", "defense"))
    return pl.DataFrame(rows, schema={"base_model": pl.Utf8, "tuning": pl.Utf8, "prompt_set": pl.Utf8,
                                      "defense": pl.Utf8, "tau": pl.Float64, "maxter": pl.Float64,
                                      "aurc": pl.Float64, "coverage": pl.Float64,
                                      "min_ppl_increase": pl.Float64})


# ------------------------------------------------------------------------------------------
# Tables


def extraction_entity_types(metrics: pl.DataFrame) -> list[str]:
    """The PII scopes the RMFT table shows: e-mail addresses (the paper's) when measured, and all types
    together when other types were measured as well."""
    measured = set(select_metrics(metrics, ["ter"])["entity_type"].drop_nulls().to_list())
    shown = [PAPER_ENTITY_TYPE] if PAPER_ENTITY_TYPE in measured else []
    if "ALL" in measured and (not shown or measured - {PAPER_ENTITY_TYPE, "ALL"}):
        shown.append("ALL")
    return shown


def rmft_table(metrics: pl.DataFrame, prompt_sets: Sequence[str] | None = None,
               entity_types: Sequence[str] | None = None, baseline: str = BASELINE,
               taus: Sequence[float] = TAU_GRID, paper: bool = True) -> pl.DataFrame | None:
    """The RMFT comparison (papers.md §1): one row per base model, tuning, prompt set, PII scope (entity
    type) and defense.

    Columns: TER, SER, TEGR (%) and PPL (ppl_mean), each averaged over checkpoints; TER and SER reduction
    vs `baseline` and PPL increase (%, `piimem.metrics.reduction_vs_baseline` on the per-checkpoint seed
    means; PPL increase is minus the PPL reduction); the smallest per-checkpoint PPL increase; AURC (%) of
    the MaxTER curve vs the baseline over the τ where it is defined, and that coverage (`maxter_curves`).
    With `paper`, the RMFT paper's figures (GPT-2, Enron, e-mail addresses) beside the paper-scope RMFT
    rows of e-mail addresses, labelled with their model and data. Comparison columns are empty on the
    baseline's rows and where the baseline was not run. None when there is no TER. `prompt_sets`: the sets
    to show (default all); `entity_types`: the scopes (default `extraction_entity_types`).
    """
    keys = ("base_model", "tuning", "prompt_set", "entity_type", "defense")
    entity_types = list(entity_types) if entity_types is not None else extraction_entity_types(metrics)
    rates = select_metrics(metrics, ["ter", "ser", "tegr"]).filter(pl.col("entity_type").is_in(entity_types))
    if prompt_sets is not None:
        rates = rates.filter(pl.col("prompt_set").is_in(list(prompt_sets)))
    if rates.filter(pl.col("metric") == "ter").height == 0:
        return None
    series = {m: by_checkpoint(rates, keys, m) for m in ("ter", "ser", "tegr")}
    ppl = by_checkpoint(select_metrics(metrics, ["ppl_mean"]), ("base_model", "tuning", "defense"), "ppl_mean")
    curves = {}
    for entity_type in entity_types:
        table = maxter_curves(metrics, baseline=baseline, entity_type=entity_type, taus=taus)
        for r in ([] if table is None else table.unique(["base_model", "tuning", "prompt_set", "defense"])
                  .iter_rows(named=True)):
            curves[(r["base_model"], r["tuning"], r["prompt_set"], entity_type, r["defense"])] = r

    rows = []
    for key in series["ter"]:
        base_model, tuning, prompt_set, entity_type, defense = key
        base_key = (base_model, tuning, prompt_set, entity_type, baseline)
        ppl_values = ppl.get((base_model, tuning, defense), {})
        ppl_base = ppl.get((base_model, tuning, baseline))
        compared = defense != baseline and base_key in series["ter"]
        curve = curves.get(key, {}) if compared else {}

        reductions = {m: series_reduction(series[m].get(key), series[m].get(base_key)) if compared else None
                      for m in ("ter", "ser")}
        ppl_reduction = series_reduction(ppl_values, ppl_base) if defense != baseline else None
        row = {
            HEADERS["base_model"]: base_model, HEADERS["tuning"]: tuning, HEADERS["prompt_set"]: prompt_set,
            HEADERS["entity_type"]: entity_type, HEADERS["defense"]: defense,
            "TER (%)": _mean(series["ter"].get(key, {}).values()),
            "SER (%)": _mean(series["ser"].get(key, {}).values()),
            "TEGR (%)": _mean(series["tegr"].get(key, {}).values()),
            "PPL": _mean(ppl_values.values()),
            "TER reduction (%)": reductions["ter"],
            "SER reduction (%)": reductions["ser"],
            "PPL increase (%)": None if ppl_reduction is None else -ppl_reduction,
            "min PPL increase (%)": curve.get("min_ppl_increase"),
            "AURC (%)": curve.get("aurc"),
            "AURC coverage (%)": curve.get("coverage"),
        }
        if paper:
            shown = is_paper_rmft(defense) and entity_type == PAPER_ENTITY_TYPE
            figures = (papers.RMFT_TER_REDUCTION, papers.RMFT_SER_REDUCTION, papers.RMFT_PPL_INCREASE)
            label = figures[0].label
            row.update({"TER reduction, paper (%)": figures[0].value if shown else None,
                        "SER reduction, paper (%)": figures[1].value if shown else None,
                        "PPL increase, paper (%)": figures[2].value if shown else None,
                        "paper: model, data": label if shown else None})
        rows.append(row)
    rows = sorted(rows, key=lambda r: (*_context_rank(r)[:3], r["entity type"] != PAPER_ENTITY_TYPE,
                                       _context_rank(r)[3]))
    return _frame(rows, text_columns=[*(HEADERS[k] for k in keys), "paper: model, data"])


def _context_rank(row: dict) -> tuple:
    """Sort key of a table row by the experiment it comes from: base model, tuning, prompt set, defense."""
    return (row["base model"], tuning_rank(row["tuning"]), prompt_set_rank(row["prompt set"]),
            defense_rank(row["defense"]))


def series_reduction(method: dict[str, float | None] | None, base: dict[str, float | None] | None) -> float | None:
    """`reduction_vs_baseline` of two per-checkpoint series; None where it is undefined."""
    if not method or not base:
        return None
    value = reduction_vs_baseline(list(method.values()), list(base.values()))
    return None if math.isnan(value) else value


def finetuning_table(metrics: pl.DataFrame, epoch: float | None = None,
                     checkpoint: str | None = None) -> pl.DataFrame | None:
    """Membership inference by tuning method, the layout of Hou et al.'s Table 2: one row per base model,
    defense and tuning method, at one checkpoint per run (`at_checkpoint`: by id, nearest `epoch` (the
    config's report.finetuning_epoch), or the last), averaged over seeds.

    Columns: epoch, seeds; LOSS AUC with its bootstrap CI (only with one seed: intervals of different
    seeds do not average into one) and LOSS TPR@1%FPR (fraction); the AUC of every other attack, all on
    the members' original text; for defended runs, the LOSS AUC on the text the model trained on ("LOSS
    AUC, trained text"); PPL (ppl_mean, validation perplexity) and the base model's PPL on the same text;
    the paper's LOSS AUC where the paper measured the same model (`piimem.papers.finetuning_figure`:
    Table 3 for GPT-2 sizes, Table 2 for Llama-2-7B), with its model and data in the next column. None
    when there is no mia_auc metric.
    """
    keys = ("base_model", "defense", "tuning")
    auc_names = [m for m in metrics["metric"].unique().to_list() if m.startswith("mia_auc/")]
    auc = select_metrics(original_view(metrics), auc_names)
    if auc.height == 0:
        return None
    extra = ["mia_tpr@1%fpr/loss", "ppl_mean", "ppl_base"]
    trained = select_metrics(metrics.filter(pl.col("member_text") == "trained") if "member_text" in metrics.columns
                      else metrics.clear(), ["mia_auc/loss"]).with_columns(metric=pl.lit("trained/mia_auc/loss"))
    chosen = at_checkpoint(pl.concat([auc, select_metrics(original_view(metrics), extra), trained]),
                           checkpoint=checkpoint, epoch=epoch)
    means = chosen.group_by([*keys, "metric"]).agg(
        pl.col("epoch").mean(), pl.col("value").mean(), pl.col("ci_low").mean(), pl.col("ci_high").mean(),
        pl.col("seed").n_unique().alias("seeds"))
    attacks = sorted({m.split("/", 1)[1] for m in auc["metric"].unique().to_list()}, key=attack_rank)
    rows = []
    for key in sorted(set(means.select(keys).iter_rows()),
                      key=lambda k: (k[0], defense_rank(k[1]), tuning_rank(k[2]))):
        values = {r["metric"]: r for r in means.filter(
            (pl.col("base_model") == key[0]) & (pl.col("defense") == key[1]) & (pl.col("tuning") == key[2])
        ).iter_rows(named=True)}
        loss = values.get("mia_auc/loss", {})
        seeds = max(r["seeds"] for r in values.values())
        row = {HEADERS["base_model"]: key[0], HEADERS["defense"]: key[1], HEADERS["tuning"]: key[2],
               "epoch": _mean(r["epoch"] for r in values.values()), "seeds": seeds}
        if "loss" in attacks:
            row.update({
                "LOSS AUC": loss.get("value"),
                "LOSS AUC CI low": loss.get("ci_low") if seeds == 1 else None,
                "LOSS AUC CI high": loss.get("ci_high") if seeds == 1 else None,
                "LOSS TPR@1%FPR": values.get("mia_tpr@1%fpr/loss", {}).get("value"),
            })
        for attack in attacks:
            if attack != "loss":
                row[f"{attack_label(attack)} AUC"] = values.get(f"mia_auc/{attack}", {}).get("value")
        if trained.height:
            row["LOSS AUC, trained text"] = values.get("trained/mia_auc/loss", {}).get("value")
        row["PPL"] = values.get("ppl_mean", {}).get("value")
        row["PPL base"] = values.get("ppl_base", {}).get("value")
        figure = papers.finetuning_figure(key[0], key[2])
        row["LOSS AUC, paper"] = None if figure is None else figure.text()
        row["paper: model, data"] = None if figure is None else figure.label
        rows.append(row)
    return _frame(rows, text_columns=[*(HEADERS[k] for k in keys), "LOSS AUC, paper", "paper: model, data"],
                  int_columns=["seeds"])


def finetuning_notes(table: pl.DataFrame | None) -> list[str]:
    """Footnotes of the fine-tuning table: runs whose perplexity is no lower than the base model's have not
    learnt the data, so their AUC near 0.5 says nothing about privacy; and which text the AUCs score."""
    if table is None or table.height == 0:
        return []
    notes = ["AUCs score the members' original text (the privacy question); \"LOSS AUC, trained text\" scores "
             "what a defended run trained on, against non-members put through the same defense."]
    stalled = table.filter(pl.col("PPL base").is_not_null() & (pl.col("PPL") >= pl.col("PPL base")))
    for row in stalled.iter_rows(named=True):
        notes.append(f"Not learnt: {row['base model']} {row['defense']}-{row['tuning']} ends at PPL "
                     f"{row['PPL']:.2f} on the test messages, no lower than its base model's {row['PPL base']:.2f}: "
                     f"it has not learnt text like them, so an AUC near 0.5 need not mean privacy.")
    return notes


def extraction_by_type(metrics: pl.DataFrame, checkpoint: str | None = None) -> pl.DataFrame | None:
    """TER, SER, TEGR (%) and the number of true PII per entity type ("ALL" last), per base model, tuning,
    prompt set and defense, at the last checkpoint of each run (or `checkpoint`), averaged over seeds.
    None when there is no TER."""
    keys = ("base_model", "tuning", "prompt_set", "defense", "entity_type")
    rows = at_checkpoint(select_metrics(metrics, ["ter", "ser", "tegr", "n_true"]), checkpoint=checkpoint)
    if rows.filter(pl.col("metric") == "ter").height == 0:
        return None
    wide = _seed_mean_wide(rows, keys)
    out = [{**{HEADERS[k]: r[k] for k in keys}, "TER (%)": r.get("ter"), "SER (%)": r.get("ser"),
            "TEGR (%)": r.get("tegr"), "true PII": _count(r.get("n_true"))} for r in wide]
    out = sorted(out, key=lambda r: (*_context_rank(r), r["entity type"] == "ALL", r["entity type"]))
    return _frame(out, text_columns=[HEADERS[k] for k in keys], int_columns=["true PII"])


def extraction_by_repetition(metrics: pl.DataFrame, checkpoint: str | None = None,
                             entity_type: str = "ALL") -> pl.DataFrame | None:
    """Share of true PII extracted by how often it occurs in training (ter_rep/<bucket>, %), with the
    number of true PII in the bucket (n_rep/<bucket>), per base model, tuning, prompt set, defense and
    bucket, at the last checkpoint of each run (or `checkpoint`), averaged over seeds. Long form, buckets
    in increasing order. None when there is no ter_rep metric."""
    names = [m for m in metrics["metric"].unique().to_list() if m.startswith(("ter_rep/", "n_rep/"))]
    rows = at_checkpoint(select_metrics(metrics, names, entity_type=entity_type), checkpoint=checkpoint)
    if not any(m.startswith("ter_rep/") for m in names) or rows.height == 0:
        return None
    rows = rows.with_columns(bucket=pl.col("metric").str.split("/").list.get(1),
                             metric=pl.col("metric").str.split("/").list.get(0))
    keys = ("base_model", "tuning", "prompt_set", "defense", "bucket")
    out = [{**{HEADERS.get(k, "repetitions"): r[k] for k in keys}, "true PII": _count(r.get("n_rep")),
            "TER (%)": r.get("ter_rep")} for r in _seed_mean_wide(rows, keys)]
    out = sorted(out, key=lambda r: (*_context_rank(r), bucket_rank(r["repetitions"])))
    text_columns = [*(HEADERS[k] for k in keys[:-1]), "repetitions"]
    return _frame(out, text_columns=text_columns, int_columns=["true PII"])


def _seed_mean_wide(rows: pl.DataFrame, keys: Sequence[str]) -> list[dict]:
    """One dict per `keys` with the seed mean of each metric under its name."""
    means = rows.group_by([*keys, "metric"]).agg(pl.col("value").mean())
    out: dict[tuple, dict] = {}
    for r in means.iter_rows(named=True):
        out.setdefault(tuple(r[k] for k in keys), {k: r[k] for k in keys})[r["metric"]] = r["value"]
    return list(out.values())


def _count(value: float | None) -> int | None:
    return None if value is None or math.isnan(value) else round(value)


def _frame(rows: list[dict], text_columns: Sequence[str], int_columns: Sequence[str] = ()) -> pl.DataFrame:
    """A table of `rows` (dicts in column order): text columns Utf8, counts Int64, the rest Float64."""
    columns = list(rows[0])
    schema = {c: pl.Utf8 if c in text_columns else pl.Int64 if c in int_columns else pl.Float64
              for c in columns}
    return pl.DataFrame([[r.get(c) for c in columns] for r in rows], schema=schema, orient="row")


# ------------------------------------------------------------------------------------------
# Writing: csv, markdown, LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped, for text mode."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def decimals_for(column: str) -> int:
    """Decimals shown for a column in md and tex: 3 for AUC and TPR (values near 0.5 or 0), else 2."""
    return 3 if "AUC" in column or "TPR" in column else 2


def _cell(value, column: str, dtype: pl.DataType, missing: str, infinity: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if dtype == pl.Float64:
        if math.isinf(value):
            return infinity if value > 0 else "-" + infinity
        text = f"{value:.{decimals_for(column)}f}"
        return text.lstrip("-") if float(text) == 0 else text  # no "-0.00"
    return str(value)


def _visible(table: pl.DataFrame, drop_constant: Sequence[str]) -> pl.DataFrame:
    drop = [c for c in drop_constant if c in table.columns and table[c].n_unique() <= 1]
    return table.drop(drop) if len(drop) < table.width else table


def to_markdown(table: pl.DataFrame, notes: Sequence[str] = ()) -> str:
    """A GitHub pipe table; numbers right-aligned, a missing value as "–"; each note a line below it."""
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"

    numeric = [dtype.is_numeric() for dtype in table.dtypes]
    out = [line(table.columns), line("---:" if n else "---" for n in numeric)]
    for row in table.iter_rows():
        out.append(line(_cell(v, c, d, "–", "inf") for v, c, d in zip(row, table.columns, table.dtypes)))
    if notes:
        out += ["", *(f"Note: {note}" for note in notes)]
    return "\n".join(out) + "\n"


def to_latex(table: pl.DataFrame, notes: Sequence[str] = ()) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); text escaped, numbers right-aligned, a missing
    value as "--"; each note a full-width row below the rule."""
    spec = "".join("r" if d.is_numeric() else "l" for d in table.dtypes)
    latex_ready = ("--", r"$\infty$", r"-$\infty$")  # the missing and infinite marks are LaTeX already
    header = " & ".join(map(latex_escape, table.columns)) + r" \\"
    out = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", header, r"\midrule"]
    for row in table.iter_rows():
        cells = (_cell(v, c, d, "--", r"$\infty$") for v, c, d in zip(row, table.columns, table.dtypes))
        out.append(" & ".join(c if c in latex_ready else latex_escape(c) for c in cells) + r" \\")
    out.append(r"\bottomrule")
    out += [rf"\multicolumn{{{table.width}}}{{l}}{{\footnotesize Note: {latex_escape(n)}}} \\" for n in notes]
    out.append(r"\end{tabular}")
    return "\n".join(out) + "\n"


def write_tables(table: pl.DataFrame | None, stem: str | os.PathLike,
                 drop_constant: Sequence[str] = (), notes: Sequence[str] = ()) -> list[Path]:
    """Write `table` as stem.csv (all columns, full precision), stem.md and stem.tex; return the paths.

    Columns named in `drop_constant` are left out of md and tex when they hold a single value (the base
    model of a one-model config, say); csv keeps them. `notes` go below the md and tex tables. A None or
    empty table writes nothing and returns [].
    """
    if table is None or table.height == 0:
        return []
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + suffix) for suffix in (".csv", ".md", ".tex")]
    table.write_csv(paths[0])
    shown = _visible(table, drop_constant)
    paths[1].write_text(to_markdown(shown, notes), encoding="utf-8")
    paths[2].write_text(to_latex(shown, notes), encoding="utf-8")
    return paths


def build_tables(metrics: pl.DataFrame, folder: str | os.PathLike, *, finetuning_epoch: float | None = None,
                 taus: Sequence[float] = TAU_GRID) -> list[Path]:
    """Every table that has data, written under `folder` with the stems of `TABLE_STEMS`; the paths.

    rmft: `rmft_table` over the τ grid `taus`; finetuning: `finetuning_table` at `finetuning_epoch` (None:
    the last checkpoint) with `finetuning_notes`; extraction_by_type, extraction_by_repetition: at the last
    checkpoint; claims: `piimem.claims.claims_table`. Key columns with one value are left out of md/tex.
    """
    from piimem.claims import claims_table

    folder = Path(folder)
    # Columns that only say which experiment the rows come from (not what the rows compare).
    context = {"rmft": ("base model", "tuning", "prompt set"), "finetuning": ("base model", "defense"),
               "extraction_by_type": ("base model", "tuning", "prompt set"),
               "extraction_by_repetition": ("base model", "tuning", "prompt set"), "claims": ()}
    finetuning = finetuning_table(metrics, epoch=finetuning_epoch)
    tables = {
        "rmft": (rmft_table(metrics, taus=taus), []),
        "finetuning": (finetuning, finetuning_notes(finetuning)),
        "extraction_by_type": (extraction_by_type(metrics), []),
        "extraction_by_repetition": (extraction_by_repetition(metrics), []),
        "claims": (claims_table(metrics, finetuning_epoch=finetuning_epoch, taus=taus), []),
    }
    paths: list[Path] = []
    for stem, (table, notes) in tables.items():
        paths += write_tables(table, folder / stem, drop_constant=context[stem], notes=notes)
    return paths
