"""Paper tables from the tidy metrics table and the comparison table (`piimem.report.comparisons`).

Each table function returns a polars table with human-readable column headers, or None when the values it
needs are absent (a config without extraction, say); `formats.write_tables` skips None. Every number has
its interval or its counts beside it, as companion columns (`piimem.report.formats`): "<X> CI low/high"
(the within-run interval), "<X> seeds CI low/high" (the t interval across seeds, with two or more seeds),
"<X> k/n" (a rate's counts). Headers say which checkpoint a number is from ("mean over checkpoints",
"last checkpoint", "epoch 5").

Sources: numbers over checkpoints, and every comparison between runs, come from the comparison table
(item resampling); numbers at one checkpoint come from metrics.parquet: extraction rates with their exact
binomial interval and counts, AUCs and TPRs with their bootstrap interval (pooled counts, and no item
interval, with several seeds: intervals of different seeds do not average into one; the seeds' t
interval stands there instead).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import polars as pl

from piimem.intervals import LEVEL, t_interval
from piimem.metric_names import (
    ALL,
    AUDIT,
    BASE,
    DP_EPSILON,
    FINE_TUNING_ONLY,
    HEADLINE_ATTACK,
    LOSS_AUC,
    LOSS_TPR_AT_1PCT_FPR,
    MIA_AUC,
    MIA_N_GROUPS,
    MIA_N_MEMBERS,
    MIA_N_NONMEMBERS,
    PII_INFERENCE_ACC,
    PII_INFERENCE_CANDIDATES,
    PII_INFERENCE_EXPOSURE,
    PPL,
    PPL_BASE,
    REPETITION,
    SER,
    TARGETED_ACCURACY,
    TEGR,
    TER,
    TER_FT,
    TRAIN_LOSS,
    VAL_PPL,
    VAL_PPL_BASE,
    per,
)
from piimem.mia import BLIND_LABEL, attack_label
from piimem.report import papers
from piimem.report.claims import ClaimSettings, claims_notes, claims_table
from piimem.report.comparisons import DROP, GAIN, quantity_of
from piimem.report.formats import CI, COUNTS, SEEDS_CI, frame, write_tables
from piimem.report.select import (
    BASELINE,
    PAPER_ENTITY_TYPE,
    RUN_KEYS,
    Identity,
    at_checkpoint,
    attack_rank,
    bucket_rank,
    defense_rank,
    mean,
    original_view,
    prompt_set_rank,
    select_metrics,
    ser_equals_ter,
    tuning_rank,
    where,
)
from piimem.report.sweeps import swept_value

TABLE_STEMS = ("rmft", "finetuning", "extraction_by_type", "extraction_by_repetition", "targeted", "claims",
               "tuning_sweep", "audit")
# Each table's title on its HTML page (the report shows it above the table).
TITLES = {"rmft": "The RMFT study: extraction and perplexity by defense",
          "finetuning": "The fine-tuning-methods study: membership inference by tuning method",
          "extraction_by_type": "Extraction by PII type, last checkpoint",
          "extraction_by_repetition": "Extraction by how often a string occurs in training, last checkpoint",
          "targeted": "Targeted attacks: PII inference, reconstruction, association",
          "claims": "Claims of the two studies, with their verdicts",
          "tuning_sweep": "Tuning sweeps: every run, by validation perplexity",
          "audit": "Privacy audit: an ε lower bound for every run, the accounted ε beside it"}
# Human headers of the key columns, shared by every table.
HEADERS = {"base_model": "base model", "tuning": "tuning", "defense": "defense", "prompt_set": "prompt set",
           "entity_type": "entity type"}
OVER_CHECKPOINTS, LAST = "mean over checkpoints", "last checkpoint"
SER_EQUALS_TER = ("SER is left out where it equals TER by construction: every checkpoint comes after the first "
                  "epoch, when the model has consumed every training example, so S_c = O and |L∩S_c|/|S_c| = TER.")


# ------------------------------------------------------------------------------------------
# Cells: a number with its companions


def comparison_cells(row: dict | None, name: str) -> dict:
    """{name: value, name CI low/high, and with two or more seeds name seeds CI low/high} of one row of
    the comparison table (empty cells when the row is missing)."""
    row = row or {}
    cells = {name: row.get("value"), name + CI[0]: row.get("ci_low"), name + CI[1]: row.get("ci_high")}
    if (row.get("seeds") or 0) > 1:
        cells.update({name + SEEDS_CI[0]: row.get("seed_ci_low"), name + SEEDS_CI[1]: row.get("seed_ci_high")})
    return cells


def metric_cells(rows: Sequence[dict], name: str, counts: bool = False, level: float = LEVEL) -> dict:
    """{name: mean over seeds, its interval, its counts} of one metric's rows at one checkpoint, one row per
    seed: with one seed the row's own interval (ci_low/ci_high) and counts; with several the seeds' t
    interval, no item interval, and counts pooled over the seeds."""
    values = [r["value"] for r in rows]
    cells = {name: mean(values)}
    if len(rows) == 1:
        cells.update({name + CI[0]: rows[0].get("ci_low"), name + CI[1]: rows[0].get("ci_high")})
    elif len(rows) > 1:
        low, high = t_interval([math.nan if v is None else v for v in values], level)
        cells.update({name + SEEDS_CI[0]: None if math.isnan(low) else low,
                      name + SEEDS_CI[1]: None if math.isnan(high) else high})
    if counts:
        ks, ns = [r.get("k") for r in rows], [r.get("n") for r in rows]
        known = rows and None not in ks and None not in ns
        label = name.split(" (")[0]
        cells.update({label + COUNTS[0]: sum(ks) if known else None, label + COUNTS[1]: sum(ns) if known else None})
    return cells


class Key(NamedTuple):
    """The columns that tell the comparison rows of one quantity apart (`_lookup`)."""

    base_model: str | None
    tuning: str | None
    prompt_set: str | None
    entity_type: str | None
    defense: str | None
    versus: str | None
    checkpoint: str | None


def _lookup(comparisons: pl.DataFrame | None, **equal) -> dict[Key, dict]:
    """{Key: row} of the comparison rows matching `equal`."""
    if comparisons is None or comparisons.height == 0:
        return {}
    return {Key(*(r[k] for k in Key._fields)): r for r in where(comparisons, **equal).iter_rows(named=True)}


def _by_run(rows: pl.DataFrame, keys: Sequence[str]) -> dict[tuple, dict[str, list[dict]]]:
    """{key values: {metric: [one row per seed]}}."""
    out: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows.sort("seed").iter_rows(named=True):
        out.setdefault(tuple(r[k] for k in keys), {}).setdefault(r["metric"], []).append(r)
    return out


# ------------------------------------------------------------------------------------------
# Tables


def rmft_table(metrics: pl.DataFrame, comparisons: pl.DataFrame, paper: bool = True,
               identity: Identity | None = None) -> pl.DataFrame | None:
    """The RMFT comparison (docs/outputs.md, `rmft`): one row per base model, tuning, prompt set, PII scope (entity
    type: e-mail addresses, the paper's, and all types when measured) and defense, every number over the
    checkpoints with its paired interval from the comparison table.

    Columns: strings of O extracted at any checkpoint (k of |O|); TER, SER (%) and PPL, means over
    checkpoints; TER and SER reduction and PPL increase vs none (%); the smallest per-checkpoint PPL increase;
    AURC (%) of the MaxTER curve vs none over the τ where it is defined, and that coverage. With `paper`, the
    RMFT paper's figures (GPT-2, Enron, e-mail addresses) beside the paper-scope RMFT rows of e-mail
    addresses, labelled with their model and data (`identity`: who each run is, by default read from the
    names). SER columns are left out when SER equals TER by construction (`ser_equals_ter`; `rmft_notes` says
    so). None when there is no TER comparison.
    """
    if comparisons is None or comparisons.filter(pl.col("quantity") == TER).height == 0:
        return None
    identity = identity or Identity.of_frames(metrics, comparisons)
    same = ser_equals_ter(metrics)
    quantity = {q: _lookup(comparisons, quantity=q) for q in
                (TER, SER, "ter_reduction", "ser_reduction", "aurc", "min_ppl_increase")}
    ppl = {(k.base_model, k.tuning, k.defense): r
           for k, r in _lookup(comparisons, quantity=PPL, checkpoint=None).items()}
    increase = {(k.base_model, k.tuning, k.defense): r
                for k, r in _lookup(comparisons, quantity="ppl_increase").items()}
    rows = []
    for key, ter in quantity[TER].items():
        base_model, tuning, prompt_set, entity_type, defense, _, _ = key
        versus = key._replace(versus=BASELINE, checkpoint=None)
        # SER of a run whose S_c = O, and its reduction against a baseline with S_c = O too, is TER's again.
        ser_is_ter = {(base_model, d, tuning, prompt_set, entity_type) for d in (defense, BASELINE)} <= same
        row = {HEADERS["base_model"]: base_model, HEADERS["tuning"]: tuning, HEADERS["prompt_set"]: prompt_set,
               HEADERS["entity_type"]: entity_type, HEADERS["defense"]: defense,
               "strings extracted k": ter["k"], "strings extracted n": ter["n"],
               **comparison_cells(ter, f"TER (%), {OVER_CHECKPOINTS}")}
        row.update(comparison_cells(None if ser_is_ter else quantity[SER].get(key), f"SER (%), {OVER_CHECKPOINTS}"))
        row.update(comparison_cells(ppl.get((base_model, tuning, defense)), f"PPL, {OVER_CHECKPOINTS}"))
        row.update(comparison_cells(quantity["ter_reduction"].get(versus), "TER reduction (%)"))
        row.update(comparison_cells(None if ser_is_ter else quantity["ser_reduction"].get(versus), "SER reduction (%)"))
        row.update(comparison_cells(increase.get((base_model, tuning, defense)), "PPL increase (%)"))
        row.update(comparison_cells(quantity["min_ppl_increase"].get(versus), "min PPL increase (%)"))
        aurc = quantity["aurc"].get(versus)
        row.update(comparison_cells(aurc, "AURC (%)"))
        row["AURC coverage (%)"] = None if aurc is None else aurc["coverage"]
        if paper:
            shown = identity.is_paper(defense, "rmft") and entity_type == PAPER_ENTITY_TYPE
            figures = (papers.RMFT_TER_REDUCTION, papers.RMFT_SER_REDUCTION, papers.RMFT_PPL_INCREASE)
            row.update({"TER reduction, paper (%)": figures[0].value if shown else None,
                        "SER reduction, paper (%)": figures[1].value if shown else None,
                        "PPL increase, paper (%)": figures[2].value if shown else None,
                        "paper: model, data": figures[0].label if shown else None})
        rows.append(row)
    rows.sort(key=lambda r: (*_context_rank(r)[:3], r["entity type"] != PAPER_ENTITY_TYPE, _context_rank(r)[3]))
    return _drop_empty_ser(frame(rows, text_columns=[*HEADERS.values(), "paper: model, data"]))


def _drop_empty_ser(table: pl.DataFrame) -> pl.DataFrame:
    """The table without its SER columns when every row's SER equals its TER (all left empty)."""
    ser = [c for c in table.columns if c.startswith("SER") and "paper" not in c]
    if ser and all(table[c].null_count() == table.height for c in ser):
        return table.drop([c for c in table.columns if c.startswith("SER")])
    return table


def rmft_notes(metrics: pl.DataFrame, table: pl.DataFrame | None, level: float = LEVEL,
               scored_tokens: int | None = None) -> list[str]:
    """What the RMFT table's brackets are, what PPL scores, and when SER is left out because it equals TER."""
    if table is None:
        return []
    notes = [f"[low, high]: TER and SER, the mean over checkpoints of each checkpoint's exact (Clopper-Pearson) "
             f"interval at the Bonferroni level {100 * level:g} % / checkpoints, so that all hold at once; "
             f"reductions, PPL and AURC, the {100 * level:g} % bootstrap interval over the true PII strings "
             f"(reductions), the test messages (PPL) or both (AURC), paired between runs; \"seeds\": t interval "
             f"across seeds. No interval where the number is undefined in more than {100 * (1 - level):g} % of "
             f"the resamples (a reduction against a baseline that extracted a handful of strings)."]
    if scored_tokens:
        notes.append(scored_span_note(scored_tokens))
    if ser_equals_ter(metrics):
        notes.append(SER_EQUALS_TER)
    return notes


def scored_span_note(scored_tokens: int) -> str:
    """What a perplexity or an attack score reads: the first `train.block_size` tokens of each message."""
    return (f"PPL and every membership-inference score read the first {scored_tokens} tokens of each message "
            f"(train.block_size, as the model trained on them), not the whole message.")


def _context_rank(row: dict) -> tuple:
    """Sort key of a table row by the experiment it comes from: base model, tuning, prompt set, defense."""
    return (row["base model"], tuning_rank(row["tuning"]), prompt_set_rank(row["prompt set"]),
            defense_rank(row["defense"]))


def _at(epoch: float | None, checkpoint: str | None) -> str:
    return f"checkpoint {checkpoint}" if checkpoint else LAST if epoch is None else f"epoch {epoch:g}"


def finetuning_table(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None, epoch: float | None = None,
                     checkpoint: str | None = None, level: float = LEVEL) -> pl.DataFrame | None:
    """Membership inference by tuning method, the layout of Hou et al.'s Table 2: one row per base model,
    defense and tuning method, at one checkpoint per run (`at_checkpoint`: by id, nearest `epoch` (the
    config's report.finetuning_epoch), or the last), averaged over seeds.

    Columns: epoch, seeds; the members and non-members attacked; LOSS AUC and LOSS TPR@1%FPR (fraction)
    with their bootstrap intervals; the AUC of every other attack with its interval, all on the members'
    original text; for defended runs, the LOSS AUC on the text the model trained on ("LOSS AUC, trained
    text"); PPL (ppl_mean on the test messages, its interval over the messages from the comparison table
    when given) and the base model's PPL on the same text; the paper's LOSS AUC where the paper measured the
    same model (`piimem.report.papers.finetuning_figure`), with its model and data in the next column.
    None when there is no mia_auc metric.
    """
    keys = ("base_model", "defense", "tuning")
    chosen, attacks, trained = _finetuning_metrics(metrics, checkpoint, epoch)
    if not attacks:
        return None
    ppl_at = {(k.base_model, k.tuning, k.defense, k.checkpoint): r
              for k, r in _lookup(comparisons, quantity=PPL).items() if k.checkpoint is not None}
    ppl_base = {(k.base_model, k.tuning): r for k, r in _lookup(comparisons, quantity=PPL_BASE).items()}
    at = _at(epoch, checkpoint)
    rows = []
    runs = _by_run(chosen, keys)
    for key in sorted(runs, key=lambda k: (k[0], defense_rank(k[1]), tuning_rank(k[2]))):
        base_model, defense, tuning = key
        values = runs[key]
        first = next(iter(values.values()))
        row = {HEADERS["base_model"]: base_model, HEADERS["defense"]: defense, HEADERS["tuning"]: tuning,
               "epoch": mean(r["epoch"] for r in first), "seeds": max(len(v) for v in values.values())}
        row.update({label: None if size is None else round(size) for label, size in
                    ((label, values.get(name, [{}])[0].get("value")) for label, name in SAMPLE_SIZES.items())})
        row.update(_attack_cells(values, attacks, at, trained, level))
        row.update(_ppl_cells(values, ppl_at.get((base_model, tuning, defense, first[0]["checkpoint"])),
                              ppl_base.get((base_model, tuning)), level))
        if "tuning_run" in first[0]:  # a sweep's selected run: which value won
            won = sorted({swept_value(r["tuning_run"], tuning) or "" for r in first} - {""})
            row["chosen"] = ", ".join(won) or None
        figure = papers.finetuning_figure(base_model, tuning)
        row["LOSS AUC, paper"] = None if figure is None else figure.text()
        row["paper: model, data"] = None if figure is None else figure.label
        rows.append(row)
    table = frame(rows, text_columns=[*(HEADERS[k] for k in keys), "LOSS AUC, paper", "paper: model, data", "chosen"],
                  int_columns=["seeds", *SAMPLE_SIZES])
    return table.drop([c for c in ("chosen", "link groups") if c in table.columns and table[c].is_null().all()])


# The fine-tuning table's sample columns: the members, non-members and link groups the headline attack scored.
SAMPLE_SIZES = {"members": per(MIA_N_MEMBERS, HEADLINE_ATTACK), "non-members": per(MIA_N_NONMEMBERS, HEADLINE_ATTACK),
                "link groups": per(MIA_N_GROUPS, HEADLINE_ATTACK)}
# The table's name for the LOSS AUC on the text a defended run trained on (member_text "trained").
TRAINED_LOSS_AUC = f"trained/{LOSS_AUC}"


def _finetuning_metrics(metrics: pl.DataFrame, checkpoint: str | None,
                        epoch: float | None) -> tuple[pl.DataFrame, list[str], bool]:
    """The rows the fine-tuning table reads at its checkpoint of each run (every attack's AUC on the original
    text, LOSS's TPR and sample sizes, the perplexities, the LOSS AUC on the trained text as TRAINED_LOSS_AUC),
    the attacks in display order (none: no mia_auc metric) and whether any run has a trained-text AUC."""
    auc_names = [m for m in metrics["metric"].unique().to_list() if m.startswith(per(MIA_AUC, ""))]
    auc = select_metrics(original_view(metrics), auc_names)
    if auc.height == 0:
        return auc, [], False
    extra = [LOSS_TPR_AT_1PCT_FPR, *SAMPLE_SIZES.values(), PPL, PPL_BASE, VAL_PPL]
    trained = select_metrics(metrics.filter(pl.col("member_text") == "trained") if "member_text" in metrics.columns
                             else metrics.clear(), [LOSS_AUC]).with_columns(metric=pl.lit(TRAINED_LOSS_AUC))
    chosen = at_checkpoint(pl.concat([auc, select_metrics(original_view(metrics), extra), trained]),
                           checkpoint=checkpoint, epoch=epoch)
    attacks = sorted({m.split("/", 1)[1] for m in auc["metric"].unique().to_list()}, key=attack_rank)
    return chosen, attacks, trained.height > 0


def _attack_cells(values: dict[str, list[dict]], attacks: Sequence[str], at: str, trained: bool,
                  level: float) -> dict:
    """One run's membership-inference cells: LOSS AUC and TPR@1%FPR, every other attack's AUC, and with
    `trained` the LOSS AUC on the trained text."""
    cells = {}
    if HEADLINE_ATTACK in attacks:
        cells.update(metric_cells(values.get(LOSS_AUC, []), f"LOSS AUC, {at}", level=level))
        cells.update(metric_cells(values.get(LOSS_TPR_AT_1PCT_FPR, []), "LOSS TPR@1%FPR", level=level))
    for attack in attacks:
        if attack != HEADLINE_ATTACK:
            cells.update(metric_cells(values.get(per(MIA_AUC, attack), []), f"{attack_label(attack)} AUC",
                                      level=level))
    if trained:
        cells.update(metric_cells(values.get(TRAINED_LOSS_AUC, []), "LOSS AUC, trained text", level=level))
    return cells


def _ppl_cells(values: dict[str, list[dict]], from_items: dict | None, base: dict | None, level: float) -> dict:
    """One run's perplexity cells: PPL and the base model's, with the comparison table's intervals over the
    test messages where given (`from_items`, `base`), else the metrics' own; the validation PPL where known."""
    cells = (comparison_cells(from_items, "PPL") if from_items is not None
             else metric_cells(values.get(PPL, []), "PPL", level=level))
    cells.update(comparison_cells(base, "PPL base") if base is not None
                 else {"PPL base": mean(r["value"] for r in values.get(PPL_BASE, []))})
    if VAL_PPL in values:
        cells["val PPL"] = mean(r["value"] for r in values[VAL_PPL])
    return cells


def tuning_sweep_table(metrics: pl.DataFrame, epoch: float | None = None, level: float = LEVEL) -> pl.DataFrame | None:
    """Every run of every tuning sweep (metrics with `method` and `selected`, `piimem.report.sweeps`), one row
    per base model, defense, method, swept value and seed, at the checkpoint nearest `epoch` (the tables'):
    validation PPL (what tuning.select compares), test PPL, the base model's validation PPL, the last
    epoch's train loss, LOSS AUC with its bootstrap interval, and whether the run is the one the other
    tables report. None when no method is swept."""
    if "method" not in metrics.columns:
        return None
    swept = metrics.filter(pl.col("tuning") != pl.col("method"))
    if swept.height == 0:
        return None
    names = [VAL_PPL, PPL, VAL_PPL_BASE, TRAIN_LOSS, LOSS_AUC]
    chosen = at_checkpoint(select_metrics(original_view(swept), names), epoch=epoch)
    rows = []
    for key, values in _by_run(chosen, (*RUN_KEYS, "method", "selected")).items():
        base_model, defense, tuning, seed, method, selected = key
        first = next(iter(values.values()))[0]
        row = {HEADERS["base_model"]: base_model, HEADERS["defense"]: defense, HEADERS["tuning"]: method,
               "value": swept_value(tuning, method), "seed": seed, "epoch": first["epoch"]}
        row.update({label: mean(r["value"] for r in values.get(name, []))
                    for name, label in ((VAL_PPL, "val PPL"), (PPL, "PPL"),
                                        (VAL_PPL_BASE, "val PPL base"), (TRAIN_LOSS, "train loss"))})
        row.update(metric_cells(values.get(LOSS_AUC, []), "LOSS AUC", level=level))
        row["selected"] = "yes" if selected else ""
        rows.append(row)
    rows.sort(key=lambda r: (r["base model"], defense_rank(r["defense"]), tuning_rank(r["tuning"]), r["seed"],
                             r["val PPL"] if r["val PPL"] is not None else math.inf))
    return frame(rows, text_columns=[HEADERS["base_model"], HEADERS["defense"], HEADERS["tuning"], "value", "selected"],
                 int_columns=["seed"])


def tuning_sweep_notes(table: pl.DataFrame | None, select: str = "val_ppl") -> list[str]:
    if table is None or table.height == 0:
        return []
    rule = ("the other tables report, per base model, defense, method and seed, the run with the lowest validation "
            "PPL (tuning.select val_ppl)" if select == "val_ppl" else
            "tuning.select none: the other tables report every run under its own name")
    return [f"Every run of each tuning sweep, lowest validation PPL first: {rule}. Validation PPL is ppl_mean on "
            "the validation split, which is never a member, a non-member, a prompt or test text; no attack's "
            "result enters the choice. [low, high]: bootstrap interval over members and non-members."]


def finetuning_notes(table: pl.DataFrame | None, level: float = LEVEL, scored_tokens: int | None = None) -> list[str]:
    """Footnotes of the fine-tuning table: the intervals; the sample; which text the AUCs score; the blind
    baseline; runs whose perplexity is no lower than the base model's have not learnt the data, so their AUC
    near 0.5 says nothing about privacy."""
    if table is None or table.height == 0:
        return []
    notes = [f"[low, high]: {100 * level:g} % bootstrap interval over the link groups (threads) of members and "
             f"non-members (AUC, TPR; the threshold chosen anew in each resample) or over the test messages (PPL); "
             f"\"seeds\": t interval across seeds.",
             "Members and non-members are distinct texts (one per body; members whose body the training split "
             "holds more than once are left out), length-matched; texts of one link group are resampled together.",
             "AUCs score the members' original text (the privacy question); \"LOSS AUC, trained text\" scores "
             "what a defended run trained on, against non-members put through the same defense."]
    if any(c.startswith(BLIND_LABEL) for c in table.columns):
        notes.append(f"{BLIND_LABEL}: a word n-gram classifier that never sees a model (piimem.blind, link groups "
                     f"kept in one cross-validation fold); an AUC interval above chance means members and "
                     f"non-members differ in their text alone, and no MIA number on this sample measures the model.")
    if scored_tokens:
        notes.append(scored_span_note(scored_tokens))
    stalled = table.filter(pl.col("PPL base").is_not_null() & (pl.col("PPL") >= pl.col("PPL base")))
    for row in stalled.iter_rows(named=True):
        notes.append(f"Not learnt: {row['base model']} {row['defense']}-{row['tuning']} ends at PPL "
                     f"{row['PPL']:.2f} on the test messages, no lower than its base model's {row['PPL base']:.2f}: "
                     f"it has not learnt text like them, so an AUC near 0.5 need not mean privacy.")
    return notes


def extraction_by_type(metrics: pl.DataFrame, checkpoint: str | None = None,
                       level: float = LEVEL) -> pl.DataFrame | None:
    """TER, SER, TEGR (%) with their exact intervals and counts (TER: |L∩O| of |O|, SER: |L∩S| of |S|,
    TEGR: |L∩O| of |L|) per entity type ("ALL" last), per base model, tuning, prompt set and defense, at
    the last checkpoint of each run (or `checkpoint`), averaged over seeds, and TER over O_ft (the strings
    of O not in the base model's pre-training data) where known. SER is left out when it equals TER by
    construction (`ser_equals_ter`). None when there is no TER."""
    keys = ("base_model", "tuning", "prompt_set", "defense", "entity_type")
    rows = at_checkpoint(select_metrics(metrics, [TER, SER, TEGR, TER_FT]), checkpoint=checkpoint)
    if rows.filter(pl.col("metric") == TER).height == 0:
        return None
    same = ser_equals_ter(rows)
    at = f"checkpoint {checkpoint}" if checkpoint else LAST
    out = []
    for key, values in _by_run(rows, keys).items():
        row = {HEADERS[k]: v for k, v in zip(keys, key)}
        row.update(metric_cells(values.get(TER, []), f"TER (%), {at}", counts=True, level=level))
        ser_is_ter = (key[0], key[3], key[1], key[2], key[4]) in same
        row.update(metric_cells([] if ser_is_ter else values.get(SER, []), f"SER (%), {at}", counts=True,
                                level=level))
        row.update(metric_cells(values.get(TEGR, []), f"TEGR (%), {at}", counts=True, level=level))
        if TER_FT in values:
            row.update(metric_cells(values[TER_FT], f"TER over O_ft (%), {at}", counts=True, level=level))
        out.append(row)
    out.sort(key=lambda r: (*_context_rank(r), r["entity type"] == ALL, r["entity type"]))
    return _drop_empty_ser(frame(out, text_columns=[HEADERS[k] for k in keys]))


def extraction_notes(metrics: pl.DataFrame, table: pl.DataFrame | None, level: float = LEVEL) -> list[str]:
    if table is None:
        return []
    notes = [f"[low, high]: exact (Clopper-Pearson) {100 * level:g} % interval of the rate; k of n: its counts "
             f"(summed over seeds when there are several, with the seeds' t interval instead)."]
    if ser_equals_ter(at_checkpoint(select_metrics(metrics, [TER, SER]))):
        notes.append(SER_EQUALS_TER)
    return notes


def extraction_by_repetition(metrics: pl.DataFrame, checkpoint: str | None = None, entity_type: str = ALL,
                             level: float = LEVEL) -> pl.DataFrame | None:
    """Share of true PII extracted by how often it occurs in training (ter_rep/<bucket>, %, with its exact
    interval and k of n: extracted of the true PII in the bucket), per base model, tuning, prompt set,
    defense and bucket, at the last checkpoint of each run (or `checkpoint`), averaged over seeds. Long
    form, buckets in increasing order. None when there is no ter_rep metric."""
    names = [m for m in metrics["metric"].unique().to_list() if m.startswith(per(REPETITION["ter"], ""))]
    rows = at_checkpoint(select_metrics(metrics, names, entity_type=entity_type), checkpoint=checkpoint)
    if rows.height == 0:
        return None
    rows = rows.with_columns(bucket=pl.col("metric").str.split("/").list.get(1))
    keys = ("base_model", "tuning", "prompt_set", "defense", "bucket")
    at = f"checkpoint {checkpoint}" if checkpoint else LAST
    out = []
    for key, values in _by_run(rows, keys).items():
        row = {**{HEADERS.get(k, "repetitions"): v for k, v in zip(keys, key)}}
        row.update(metric_cells(next(iter(values.values())), f"TER (%), {at}", counts=True, level=level))
        out.append(row)
    out.sort(key=lambda r: (*_context_rank(r), bucket_rank(r["repetitions"])))
    return frame(out, text_columns=[*(HEADERS[k] for k in keys[:-1]), "repetitions"])


def targeted_table(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None,
                   level: float = LEVEL) -> pl.DataFrame | None:
    """The targeted attacks by defense: one row per base model, tuning, attack (association: per prompt set),
    entity type and defense, at the last checkpoint scored, averaged over seeds.

    Columns: the attack's accuracy (%: inference and reconstruction, the true string ranked first;
    association, the first address written is the owner's) with its exact interval and k of n; the same over
    O_ft (targets not in the base model's pre-training data, where known); the base model's accuracy on the
    same targets; the drop vs none (with the exact McNemar p of its discordant targets) and the gain over the
    base model (points, paired over targets, from the comparison table); for inference also the mean
    exposure (bits) and its drop. None without these metrics.
    """
    names = [*TARGETED_ACCURACY, *(f"{m}{s}" for m in TARGETED_ACCURACY for s in (FINE_TUNING_ONLY, BASE)),
             PII_INFERENCE_EXPOSURE, PII_INFERENCE_EXPOSURE + BASE, PII_INFERENCE_CANDIDATES]
    rows = at_checkpoint(select_metrics(metrics, names))
    if rows.filter(pl.col("metric").is_in(list(TARGETED_ACCURACY))).height == 0:
        return None
    keys = ("base_model", "tuning", "prompt_set", "entity_type", "defense")
    lookups = {q: {(k.base_model, k.tuning, k.prompt_set, k.entity_type, k.defense, k.checkpoint): r
                   for k, r in _lookup(comparisons, quantity=q).items()}
               for q in (quantity_of(m + s, d) for m in [*TARGETED_ACCURACY, PII_INFERENCE_EXPOSURE]
                         for s in ("", FINE_TUNING_ONLY) for d in (DROP, GAIN))}
    out = []
    for key, values in _by_run(rows, keys).items():
        base_model, tuning, prompt_set, entity_type, defense = key
        checkpoint = next(iter(values.values()))[0]["checkpoint"]
        for metric, label in TARGETED_ACCURACY.items():
            if metric not in values:
                continue
            row = {HEADERS["base_model"]: base_model, HEADERS["tuning"]: tuning,
                   "attack": label if prompt_set is None else f"{label}: {prompt_set}",
                   HEADERS["entity_type"]: entity_type, HEADERS["defense"]: defense, "checkpoint": checkpoint}
            at = (base_model, tuning, prompt_set, entity_type, defense, checkpoint)
            row.update(metric_cells(values[metric], "accuracy (%)", counts=True, level=level))
            row.update(metric_cells(values.get(metric + FINE_TUNING_ONLY, []), "accuracy over O_ft (%)", counts=True,
                                    level=level))
            row.update(metric_cells(values.get(metric + BASE, []), "base model (%)", counts=True, level=level))
            drop = lookups[quantity_of(metric, DROP)].get(at)
            row.update(comparison_cells(drop, "drop vs none (points)"))
            row["drop p (McNemar)"] = None if drop is None else drop.get("p_value")
            row.update(comparison_cells(lookups[quantity_of(metric + FINE_TUNING_ONLY, DROP)].get(at),
                                        "O_ft drop vs none (points)"))
            row.update(comparison_cells(lookups[quantity_of(metric, GAIN)].get(at), "gain over base model (points)"))
            exposure = metric == PII_INFERENCE_ACC
            row["candidates K"] = mean(r["value"] for r in values.get(PII_INFERENCE_CANDIDATES, [])) \
                if exposure else None
            row["exposure (bits)"] = mean(r["value"] for r in values.get(PII_INFERENCE_EXPOSURE, [])) \
                if exposure else None
            row["exposure, base model (bits)"] = mean(r["value"] for r in values.get(PII_INFERENCE_EXPOSURE + BASE,
                                                                                    [])) if exposure else None
            exposure_drop = lookups[quantity_of(PII_INFERENCE_EXPOSURE, DROP)].get(at) if exposure else None
            row.update(comparison_cells(exposure_drop, "exposure drop vs none (bits)"))
            row["exposure drop p (Wilcoxon)"] = None if exposure_drop is None else exposure_drop.get("p_value")
            out.append(row)
    order = list(TARGETED_ACCURACY.values())
    out.sort(key=lambda r: (r["base model"], tuning_rank(r["tuning"]), order.index(r["attack"].split(":")[0]),
                            r["attack"], r["entity type"] == ALL, r["entity type"], defense_rank(r["defense"])))
    table = frame(out, text_columns=[*(HEADERS[k] for k in keys if k != "prompt_set"), "attack", "checkpoint"])
    return table.drop([c for c in table.columns if table[c].null_count() == table.height])


def fold_targeted(table: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The targeted table as shown: the O_ft columns only where O_ft differs from O somewhere (where no target
    is in the pre-training data they repeat the main ones), and the attacks that no run and not the base model
    got right on a single target folded into one note."""
    notes = []
    ft = [c for c in table.columns if "O_ft" in c]
    # O_ft is a subset of the targets: the same number of targets in every row means the same targets.
    if ft and "accuracy over O_ft n" in table.columns and table["accuracy over O_ft n"].equals(table["accuracy n"]):
        table = table.drop(ft)
        notes.append("O_ft (the targets not in the base model's pre-training data) holds every target here: its "
                     "columns equal the main ones and are left out (the csv keeps them).")
    counts = [c for c in ("accuracy k", "base model k") if c in table.columns]
    if counts and "attack" in table.columns:
        zero = (table.group_by("attack").agg([pl.col(c).fill_null(0).max().alias(c) for c in counts])
                .filter(pl.sum_horizontal(counts) == 0)["attack"].sort().to_list())
        if zero:
            n = table.filter(pl.col("attack").is_in(zero))["accuracy n"].max()
            table = table.filter(~pl.col("attack").is_in(zero))
            notes.append(f"Left out, 0 right everywhere (every run and the base model, of up to {n} targets): "
                         f"{', '.join(zero)} (the csv keeps their rows).")
    return table, notes


def fold_claims(table: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The claims table as shown: the verdict and our number first, then why and what would decide it, then
    what was compared and the paper's figure (the csv keeps the registry's column order)."""
    first = ["claim", "verdict", "ours", "CI low", "CI high", "p", "why", "would need", "measured on"]
    return table.select([c for c in first if c in table.columns] + [c for c in table.columns if c not in first]), []


def fold_rmft(table: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """The RMFT table as shown: the paper's figures as a row of their own after the rows they stand beside
    (defense "paper: ...", in the reduction and increase columns), not as four mostly empty columns."""
    paper = {"TER reduction, paper (%)": "TER reduction (%)", "SER reduction, paper (%)": "SER reduction (%)",
             "PPL increase, paper (%)": "PPL increase (%)"}
    if "paper: model, data" not in table.columns:
        return table, []
    rows = []
    for row in table.iter_rows(named=True):
        rows.append({k: v for k, v in row.items() if k not in paper and k != "paper: model, data"})
        if row["paper: model, data"] is not None:
            figures = {shown: row[column] for column, shown in paper.items() if column in row}
            rows.append({HEADERS["base_model"]: row[HEADERS["base_model"]], HEADERS["tuning"]: row[HEADERS["tuning"]],
                         HEADERS["prompt_set"]: row[HEADERS["prompt_set"]],
                         HEADERS["entity_type"]: row[HEADERS["entity_type"]],
                         HEADERS["defense"]: f"paper: {row['paper: model, data']}", **figures})
    kept = [c for c in table.columns if c not in paper and c != "paper: model, data"]
    return pl.DataFrame(rows, schema={c: table.schema[c] for c in kept}), []


def targeted_notes(table: pl.DataFrame | None, level: float = LEVEL) -> list[str]:
    if table is None:
        return []
    return [(f"accuracy [low, high]: exact (Clopper-Pearson) {100 * level:g} % interval, k of n its counts; drops "
             f"and gains: {100 * level:g} % bootstrap interval over the attack's targets, paired (every run and the "
             f"base model score the same targets); p: exact McNemar test of the targets only one of the two runs "
             f"gets right, or for exposure the Wilcoxon signed-rank test of the per-target differences. O_ft: the "
             f"targets whose string is not in the base model's pre-training data."),
            ("Inference ranks the true string among K candidates of its type by the perplexity of the filled-in "
             "window (chance: 100/K %); reconstruction ranks what the model writes when sampled from the text "
             "before the mask; association prompts with the owner's name and takes the first address written.")]


def audit_table(metrics: pl.DataFrame, comparisons: pl.DataFrame | None = None) -> pl.DataFrame | None:
    """One row per audited run (first seed): the accounted ε of a DP run (at its own δ and at the audit's), the
    audited ε lower bound, the guesses it rests on, the drop vs none with its interval (audit canaries
    resampled), the canaries a bound of 0 would need, and a flag where the bound exceeds the accounted ε."""
    rows = metrics.filter(pl.col("metric").is_in([*AUDIT.values(), DP_EPSILON]))
    audited = rows.filter(pl.col("metric") == AUDIT["epsilon"])
    if audited.height == 0:
        return None
    drops = _lookup(comparisons, quantity=quantity_of(AUDIT["epsilon"], DROP))
    out = []
    for (base_model, defense, tuning, seed, checkpoint), run in sorted(
            _by_run(rows.join(audited.select(*RUN_KEYS, "checkpoint"), on=[*RUN_KEYS, "checkpoint"], how="semi"),
                    (*RUN_KEYS, "checkpoint")).items(),
            key=lambda item: (item[0][0], defense_rank(item[0][1]), tuning_rank(item[0][2]), item[0][3])):
        value = {metric: found[0]["value"] for metric, found in run.items()}
        bound, accounted = value[AUDIT["epsilon"]], value.get(AUDIT["accounted"])
        drop = next((r for k, r in drops.items()
                     if (k.base_model, k.tuning, k.defense, k.checkpoint) == (base_model, tuning, defense, checkpoint)),
                    None)
        needed = value.get(AUDIT["needed"])
        out.append({"base model": base_model, "tuning": tuning, "defense": defense, "seed": seed,
                    "checkpoint": checkpoint,
                    "accounted ε (own δ)": value.get(DP_EPSILON), "accounted ε (audit δ)": accounted,
                    "audited ε ≥": bound, "δ": value[AUDIT["delta"]],
                    "correct k": _count(value.get(AUDIT["correct"])), "guesses n": _count(value.get(AUDIT["guesses"])),
                    "canaries": _count(value.get(AUDIT["canaries"])),
                    "included": _count(value.get(AUDIT["included"])),
                    **comparison_cells(drop, "drop vs none"),
                    "canaries needed": _count(needed),
                    "flag": ("DP guarantee violated" if accounted is not None and bound > accounted else
                             "no power: bound 0" if bound == 0 else "")})
    table = frame(out, text_columns=("base model", "tuning", "defense", "checkpoint", "flag"),
                  int_columns=("seed", "canaries", "included", "canaries needed"))
    return table


def _count(value: float | None) -> int | None:
    return None if value is None or not math.isfinite(value) else int(value)


def audit_notes(table: pl.DataFrame | None, confidence: float) -> list[str]:
    if table is None:
        return []
    return [f"audited ε ≥: a lower bound at {100 * confidence:g} % confidence from one training run (Steinke, Nasr & "
            f"Jagielski 2023; docs/audit.md): the run is at least this leaky for (ε, δ)-DP at the δ shown, and may "
            f"be leakier; 0 means the audit rejected no ε > 0. correct k of guesses n: the guesses of the share of "
            f"canaries that gave the bound. A DP run's accounted ε is the accountant's, at the run's own δ and at "
            f"the audit's; a bound above it means the DP implementation does not keep its promise.",
            "drop vs none: none's bound minus this run's, the audit canaries resampled (the same draws for both). "
            "canaries needed: for a bound of 0, the audit canaries that would give one above 0 at the accuracy the "
            "guesses reached (empty: none better than chance)."]


def build_tables(metrics: pl.DataFrame, comparisons: pl.DataFrame, folder: str | os.PathLike, *,
                 finetuning_epoch: float | None = None, level: float = LEVEL,
                 claims_settings=None, sweep: pl.DataFrame | None = None, select: str = "val_ppl",
                 scored_tokens: int | None = None) -> list[Path]:
    """Every table that has data, written under `folder` with the stems of `TABLE_STEMS`; the paths.

    rmft: `rmft_table`; finetuning: `finetuning_table` at `finetuning_epoch` (None: the last checkpoint)
    with `finetuning_notes`; extraction_by_type, extraction_by_repetition: at the last checkpoint; targeted:
    `targeted_table`; claims:
    `piimem.report.claims.claims_table` with `claims_settings` (its defaults when None); tuning_sweep:
    `tuning_sweep_table` of `sweep` (every run, marked by `piimem.report.sweeps.mark_selected`; `metrics`
    is then its reported view). `scored_tokens` (train.block_size): the span every perplexity and score reads,
    said in the notes. Key columns with one value are left out of md/tex.
    """
    folder = Path(folder)
    settings = claims_settings or ClaimSettings(level=level)
    # Columns that only say which experiment the rows come from (not what the rows compare).
    context = {"rmft": ("base model", "tuning", "prompt set"),
               "extraction_by_type": ("base model", "tuning", "prompt set"),
               "extraction_by_repetition": ("base model", "tuning", "prompt set"),
               "targeted": ("base model", "tuning", "checkpoint"), "claims": (),
               "finetuning": ("base model", "defense", "epoch", "seeds"),
               "tuning_sweep": ("base model", "defense", "seed", "epoch"),
               "audit": ("base model", "seed", "checkpoint", "canaries", "included", "δ")}
    rmft = rmft_table(metrics, comparisons, identity=settings.identity)
    finetuning = finetuning_table(metrics, comparisons, epoch=finetuning_epoch, level=level)
    by_type = extraction_by_type(metrics, level=level)
    claims = claims_table(metrics, comparisons, settings)
    targeted = targeted_table(metrics, comparisons, level=level)
    sweep_table = None if sweep is None else tuning_sweep_table(sweep, epoch=finetuning_epoch, level=level)
    tables = {
        "rmft": (rmft, rmft_notes(metrics, rmft, level, scored_tokens)),
        "finetuning": (finetuning, finetuning_notes(finetuning, level, scored_tokens)),
        "extraction_by_type": (by_type, extraction_notes(metrics, by_type, level)),
        "extraction_by_repetition": (extraction_by_repetition(metrics, level=level),
                                     extraction_notes(metrics, by_type, level)[:1]),
        "targeted": (targeted, targeted_notes(targeted, level)),
        "claims": (claims, claims_notes(claims, settings)),
        "tuning_sweep": (sweep_table, tuning_sweep_notes(sweep_table, select)),
        "audit": (audit := audit_table(metrics, comparisons), audit_notes(audit, settings.audit_confidence)),
    }
    paths: list[Path] = []
    for stem, (table, notes) in tables.items():
        paths += write_tables(table, folder / stem, drop_constant=context[stem], notes=notes, title=TITLES[stem],
                              fold={"rmft": fold_rmft, "targeted": fold_targeted, "claims": fold_claims}.get(stem))
    return paths
