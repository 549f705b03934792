"""The protocol every defense implements, and the frames its training text is made of.

A defense is one module of this package holding one `Defense`: a subclass that overrides what it does
differently from training on the train split as is (the defaults here), registered in
`piimem.defense.DEFENSE_KINDS`. What the workflow, the config checks and the report ask of a defense they ask
of that object: its flags, the options its variants' names show, the files its training text reads, its config
checks, the options and DP-SGD settings a variant runs with, and its training text.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from piimem.plan import NamedOption

REPLACEMENT_SCHEMA = {
    "epoch": pl.Int64,
    "doc_id": pl.Int64,
    "start": pl.Int64,
    "end": pl.Int64,
    "entity_type": pl.Utf8,
    "original": pl.Utf8,
    "replacement": pl.Utf8,
}


@dataclass
class TrainingText:
    texts: pl.DataFrame  # epoch, doc_id, text
    replacements: pl.DataFrame  # REPLACEMENT_SCHEMA: what was rewritten where (raw PII: private)
    summary: pl.DataFrame  # public: counts per entity type


@dataclass
class Rewrite:
    """A defense's training text before its summary: what `Defense.training_text` returns."""

    texts: pl.DataFrame  # epoch, doc_id, text
    replacements: pl.DataFrame  # REPLACEMENT_SCHEMA
    targeted: pl.DataFrame | None = None  # the PII spans it set out to rewrite (the summary's "before"); None: none


def epoch0() -> pl.Expr:
    return pl.lit(0, dtype=pl.Int64).alias("epoch")


def no_replacements() -> pl.DataFrame:
    return pl.DataFrame(schema=REPLACEMENT_SCHEMA)


def spans_of(texts: pl.DataFrame, spans: pl.DataFrame, entity_types) -> pl.DataFrame:
    """The spans of `entity_types` in the documents of `texts`."""
    return spans.join(texts.select("doc_id"), on="doc_id", how="semi").filter(
        pl.col("entity_type").is_in(list(entity_types))
    )


@dataclass(frozen=True)
class Defense:
    """What a defense (a `defenses` entry) does to a run. The defaults are a defense that trains on the train
    split as is and has no options: a module overrides what its defense does otherwise."""

    name: str  # as in the schema's `defenses` enum; its options are the config section of that name
    rewrites_text: bool  # trains on text other than the train split (and its members have a trained-text view)
    reads_spans: bool = False  # rewrites the PII the PII stage found: its text reads the PII spans
    private_training: bool = False  # trains with DP-SGD (the `dp` config block)
    # The options of its config section its variants' names show, in the order of the name's parts
    # (piimem.plan.defense_variants); the paper options among them name `at_paper_setting`.
    named_options: tuple[NamedOption, ...] = ()
    # Its text's input already holds the audit canaries (the deduplication stage adds them), so the training
    # text adds none (piimem.audit.with_canaries).
    canaries_upstream: bool = False
    # The defenses its runs are compared with head to head in the report, beside the baseline `none`
    # (piimem.report.select.head_to_head): RMFT with deduplication, as the RMFT paper compares them.
    compared_with: tuple[str, ...] = ()

    def inputs(self, variant: dict) -> dict[str, str]:
        """The files its training text reads besides the train split, the PII spans (`reads_spans`) and the
        audit canaries: {input name: path}, for the variant `variant` (piimem.plan.defense_variants's value;
        a text shared by variants, `rewrites_text` false, gets {"defense": name})."""
        return {}

    def check(self, config: dict) -> None:
        """Raise piimem.config.ConfigError where the config breaks a rule of this defense that joins keys
        (the schema has checked each key alone); called when `defenses` lists it."""

    def options(self, config: dict, variant: dict) -> dict:
        """The `options` its training text takes for a variant (piimem.plan.variant_options): only the keys
        it reads, so that editing another defense's options reruns none of its jobs."""
        return {}

    def nonmember_config(self, config: dict, variant: dict) -> dict:
        """What its non-members' pass (`nonmember_text`) reads besides `options`, for a variant."""
        return {}

    def dp_options(self, config: dict, variant: dict) -> dict | None:
        """The DP-SGD settings a variant's runs train with (piimem.plan.dp_options); None: no DP-SGD."""
        return None

    def training_text(self, train: pl.DataFrame, spans: pl.DataFrame | None, dedup_texts: pl.DataFrame | None,
                      options: dict) -> Rewrite:
        """Its training text from the train split `train` (doc_id, text), the PII `spans` (where it reads
        them), the deduplication stage's texts and its `options`; by default the split as is, epoch 0."""
        return Rewrite(train.select(epoch0(), "doc_id", "text"), no_replacements())

    def nonmember_text(self, combined: pl.DataFrame, spans: pl.DataFrame | None, dedup_config: dict | None,
                       options: dict | None) -> pl.DataFrame:
        """(doc_id, text) it keeps of `combined`, the train split then the non-members in one pass
        (piimem.defense.nonmember_texts); by default its training text of them, epoch 0."""
        from piimem.defense import build_training_text

        return build_training_text(self.name, combined, spans=spans, options=options).texts.filter(
            pl.col("epoch") == 0)
