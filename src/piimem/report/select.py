"""Selecting and ranking rows of the tidy metrics table (`piimem.aggregate.METRICS_SCHEMA`).

Names the report sorts by (defenses, tuning methods, attacks, prompt sets, repetition buckets) and the
row selections every table, claim and figure starts from: one metric of one experiment, one checkpoint per
run, the members' original text, per-checkpoint seed means.

Averaging: a value "over checkpoints" is the mean over checkpoints of the mean over seeds at each
checkpoint; a value "at the last checkpoint" is taken, per run, at the run's checkpoint with the largest
epoch, then averaged over seeds. Undefined values (null: a rate over an empty set) are left out of means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from piimem.config import BUILT_IN_PROMPT_SETS
from piimem.defense import DEFENSE_KINDS, DEFENSES
from piimem.metric_names import ALL, PPL, PPL_BASE, SER, TER
from piimem.mia import ATTACKS, attack_of
from piimem.plan import at_paper_setting
from piimem.runs import parse_variant
from piimem.tuning import LORA_VARIANTS, PARAMETER_BASED, PROMPT_BASED, TUNING_METHODS

BASELINE = "none"
# Display order: the registries' (defenses, tuning methods, attacks, built-in prompt sets); names not listed
# follow, alphabetically. A name that extends a listed one after "_" (lora_attention, lora_lr0.002, rmft_p0.5)
# sorts with it, so LoRA's target variants are left out of the tuning order.
TUNING_ORDER = tuple(m for m in TUNING_METHODS if m not in LORA_VARIANTS)
# The RMFT paper's TER and SER count e-mail addresses only: its figures stand beside our e-mail rows.
PAPER_ENTITY_TYPE = "EMAIL_ADDRESS"
RUN_KEYS = ("base_model", "defense", "tuning", "seed")


def _rank(value: str | None, order: Sequence[str]) -> tuple[int, str]:
    value = "" if value is None else value
    base, _ = parse_variant(value, order)  # a variant (lora_mlp, lora_lr0.002, rmft_p0.5) sorts with its base
    return (order.index(base) if base in order else len(order)), value


def defense_rank(defense: str | None) -> tuple[int, str]:
    """Sort key of a defense name: DEFENSES' order first, then the others alphabetically."""
    return _rank(defense, DEFENSES)


def tuning_rank(tuning: str | None) -> tuple[int, str]:
    """Sort key of a tuning name: TUNING_ORDER (lora* with lora), then the others alphabetically."""
    return _rank(tuning, TUNING_ORDER)


def prompt_set_rank(prompt_set: str | None) -> tuple[int, str]:
    """Sort key of a prompt set name: the built-in sets first (the paper's main one, prefixes of training
    PII, leading), then the others alphabetically."""
    return _rank(prompt_set, BUILT_IN_PROMPT_SETS)


def attack_rank(attack: str) -> tuple[int, str]:
    """Sort key of a score's name: its attack in registry order (min_k_20 with min_k), then the name."""
    found = attack_of(attack)
    return (len(ATTACKS) if found is None else ATTACKS.index(found[0].name)), attack


def bucket_rank(bucket: str) -> int:
    """Sort key of a repetition bucket label ("1", "2-3", "16+"): its lower bound."""
    return int(bucket.split("-")[0].rstrip("+"))


def _family(method: str) -> str | None:
    return "parameter" if method in PARAMETER_BASED else "prompt" if method in PROMPT_BASED else None


@dataclass(frozen=True)
class Identity:
    """Who each run is, as results/runs.parquet says (`piimem.plan.Plan.identity`, written beside
    metrics.parquet): each defense variant's kind and whether it runs at every setting the papers fix, each
    tuning variant's method. The report asks this instead of reading kinds and settings out of run names.
    `of_names` builds the same from names alone, for frames without a runs table (tests, older results)."""

    defenses: Mapping[str, tuple[str, bool]]  # defense variant -> (its defense, at the papers' settings)
    methods: Mapping[str, str]  # tuning variant -> the method it trains

    @classmethod
    def of(cls, runs: pl.DataFrame) -> Identity:
        defenses = runs.select("defense", "defense_kind", "at_paper_setting").unique()
        return cls({d: (k, bool(p)) for d, k, p in defenses.iter_rows()},
                   dict(runs.select("tuning", "method").unique().iter_rows()))

    @classmethod
    def of_names(cls, defenses: Iterable[str], tunings: Iterable[str] = ()) -> Identity:
        return cls({d: (parse_variant(d, DEFENSES)[0], at_paper_setting(d)) for d in defenses if d is not None},
                   {t: parse_variant(t, TUNING_METHODS)[0] for t in tunings if t is not None})

    @classmethod
    def of_frames(cls, *frames: pl.DataFrame) -> Identity:
        """`of_names` over every defense, versus and tuning name in `frames`."""
        names = {column: {v for f in frames if column in f.columns for v in f[column].unique().to_list()}
                 for column in ("defense", "versus", "tuning")}
        return cls.of_names(names["defense"] | names["versus"], names["tuning"])

    def kind(self, defense: str | None) -> str | None:
        """The defense a variant belongs to ("rmft_all_p0.5" -> "rmft"); None for no defense or an unknown one."""
        return self.defenses.get(defense, (None, False))[0]

    def is_paper(self, defense: str | None, kind: str) -> bool:
        """Whether `defense` is a variant of `kind` at every setting the papers fix: RMFT with e-mail scope, the
        first occurrence kept, p = 1, masked once (rmft, rmft_email, rmft_p1; not rmft_all, rmft_p0.5, ...);
        deduplication at Lee et al.'s MinHash Jaccard 0.8 and 100-byte substrings. Only these stand beside the
        paper's figures and feed its claims (docs/papers.md)."""
        return self.defenses.get(defense, (None, False)) == (kind, True)

    def head_to_head(self, defense: str, defenses: Iterable[str]) -> list[str]:
        """Those of `defenses` (variant names, in their order) that `defense` is compared with head to head:
        its defense's `compared_with` (piimem.defense; an RMFT variant with every deduplication variant)."""
        kind = DEFENSE_KINDS.get(self.kind(defense))
        wanted = kind.compared_with if kind is not None else ()
        return [other for other in defenses if self.kind(other) in wanted]

    def family(self, tuning: str) -> str | None:
        """"parameter" (full, head, lora*), "prompt" (prefix, prompt, ptuning) or None: Hou et al.'s two kinds
        (piimem.tuning) of the method a tuning name trains (a sweep's run, lora_lr0.002, is its method's)."""
        return _family(self.methods.get(tuning, tuning))


def original_view(metrics: pl.DataFrame) -> pl.DataFrame:
    """The rows that score the members' original text (membership inference's headline view), and every
    row without a view (not membership inference)."""
    if "member_text" not in metrics.columns:
        return metrics
    return metrics.filter(pl.col("member_text").is_null() | (pl.col("member_text") == "original"))


def finite(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def mean(values: Iterable[float | None]) -> float | None:
    kept = finite(values)
    return math.fsum(kept) / len(kept) if kept else None


def where(frame: pl.DataFrame, **equal) -> pl.DataFrame:
    """The rows of `frame` (metrics or comparisons) whose columns equal the given values (None matches null)."""
    for column, value in equal.items():
        frame = frame.filter(pl.col(column).is_null() if value is None else pl.col(column) == value)
    return frame


def select_metrics(metrics: pl.DataFrame, metric_names: Iterable[str], **equal) -> pl.DataFrame:
    """Rows of the given metrics whose columns equal the given values (`where`)."""
    rows = where(metrics.filter(pl.col("metric").is_in(list(metric_names))), **equal)
    return rows.with_columns(pl.col("value").fill_nan(None))


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


def extraction_entity_types(metrics: pl.DataFrame) -> list[str]:
    """The PII scopes the RMFT table, claims and MaxTER figure show: e-mail addresses (the paper's) when
    measured, and all types together when other types were measured as well."""
    measured = set(select_metrics(metrics, [TER])["entity_type"].drop_nulls().to_list())
    shown = [PAPER_ENTITY_TYPE] if PAPER_ENTITY_TYPE in measured else []
    if ALL in measured and (not shown or measured - {PAPER_ENTITY_TYPE, ALL}):
        shown.append(ALL)
    return shown


def paper_scope(entity_types: Iterable[str | None]) -> str:
    """The one PII scope a claim or figure reads: e-mail addresses (the RMFT paper's type) where the rows
    measure them, else all types together (ALL)."""
    return PAPER_ENTITY_TYPE if PAPER_ENTITY_TYPE in set(entity_types) else ALL


def learnt_runs(metrics: pl.DataFrame, epoch: float | None = None) -> dict[tuple[str, str, str], bool]:
    """{(base model, defense, tuning): whether the run's ppl_mean (seed mean, at the checkpoint nearest
    `epoch`, or the last) is below its base model's}. A run that ends no lower has not learnt text like
    the test messages, so its attack results say nothing about privacy. Runs without ppl_base count as
    learnt."""
    rows = at_checkpoint(select_metrics(metrics, [PPL, PPL_BASE]), epoch=epoch)
    means = rows.group_by("base_model", "defense", "tuning", "metric").agg(pl.col("value").mean())
    values: dict[tuple, dict[str, float]] = {}
    for base_model, defense, tuning, metric, value in means.rows():
        values.setdefault((base_model, defense, tuning), {})[metric] = value
    return {key: v.get(PPL_BASE) is None or v.get(PPL) is None or v[PPL] < v[PPL_BASE]
            for key, v in values.items()}


def ser_equals_ter(metrics: pl.DataFrame) -> set[tuple[str, str, str, str, str]]:
    """The (base model, defense, tuning, prompt set, entity type) whose SER is TER by construction: S_c = O
    (|S_c| = |O|) at every checkpoint of every seed given, as after the first epoch, when the model has
    consumed every training example. A deduplicated run's S_c lacks the removed messages' PII, so its SER
    can differ."""
    rows = select_metrics(metrics, [TER, SER])
    if rows.height == 0:
        return set()
    keys = ["base_model", "defense", "tuning", "prompt_set", "entity_type"]
    wide = rows.pivot("metric", index=[*keys, "seed", "checkpoint"], values="n")
    if SER not in wide.columns or TER not in wide.columns:
        return set()
    equal = wide.group_by(keys).agg((pl.col(SER) == pl.col(TER)).all().alias("equal"))
    return {tuple(r[:-1]) for r in equal.rows() if r[-1]}
