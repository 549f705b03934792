"""`scrub`: scrubbing (piimem.masking.apply_scrub): every PII span of `scrub.entity_types` replaced by its
type's tag, "<EMAIL_ADDRESS>"."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from piimem.config import ConfigError
from piimem.defense.base import REPLACEMENT_SCHEMA, Defense, Rewrite, epoch0, spans_of
from piimem.masking import apply_scrub


@dataclass(frozen=True)
class Scrub(Defense):
    def check(self, config: dict) -> None:
        """It can only rewrite PII the PII stage detects."""
        detected = config["pii"]["entity_types"]
        missing = [t for t in config["scrub"]["entity_types"] if t not in detected]
        if missing:
            raise ConfigError(f"scrub.entity_types: {missing} not in pii.entity_types {detected}")

    def options(self, config: dict, variant: dict) -> dict:
        """The scrub section."""
        return dict(config["scrub"])

    def training_text(self, train: pl.DataFrame, spans: pl.DataFrame | None, dedup_texts: pl.DataFrame | None,
                      options: dict) -> Rewrite:
        targeted = spans_of(train, spans, options["entity_types"])
        texts = apply_scrub(train.select("doc_id", "text"), targeted, options["entity_types"]).select(
            epoch0(), "doc_id", "text"
        )
        replacements = targeted.select(
            epoch0(), "doc_id", "start", "end", "entity_type", pl.col("value").alias("original"),
            pl.format("<{}>", "entity_type").alias("replacement"),
        ).cast(REPLACEMENT_SCHEMA)
        return Rewrite(texts, replacements, targeted)


DEFENSE = Scrub("scrub", rewrites_text=True, reads_spans=True)
