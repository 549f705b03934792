"""`dedup`: the deduplication stage's text (piimem.dedup: near-duplicate messages dropped, repeated substrings
cut), at the variant's Jaccard threshold."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from piimem.defense.base import Defense, Rewrite, epoch0, no_replacements
from piimem.plan import NamedOption


@dataclass(frozen=True)
class Deduplication(Defense):
    def inputs(self, variant: dict) -> dict[str, str]:
        """The deduplication stage's text at the variant's threshold (workflow/rules/dedup.smk)."""
        return {"dedup": f"results/private/dedup/t{variant['threshold']:g}/train.parquet"}

    def nonmember_config(self, config: dict, variant: dict) -> dict:
        """The dedup section with the variant's threshold: its non-members are deduplicated as its training
        text was."""
        return {**config["dedup"], "threshold": variant["threshold"]}

    def training_text(self, train: pl.DataFrame, spans: pl.DataFrame | None, dedup_texts: pl.DataFrame | None,
                      options: dict) -> Rewrite:
        if dedup_texts is None:
            raise ValueError("defense 'dedup' needs the deduplication stage's texts")
        return Rewrite(dedup_texts.select(epoch0(), "doc_id", "text"), no_replacements())

    def nonmember_text(self, combined: pl.DataFrame, spans: pl.DataFrame | None, dedup_config: dict | None,
                       options: dict | None) -> pl.DataFrame:
        """The messages of `combined` that deduplicating it in one pass keeps, with repeats cut."""
        from piimem.dedup import DedupConfig, deduplicate

        if dedup_config is None:
            raise ValueError("nonmember_texts: defense 'dedup' needs the dedup config")
        return deduplicate(combined["doc_id"].to_list(), combined["text"].to_list(),
                           DedupConfig.from_config(dedup_config)).texts


DEFENSE = Deduplication(
    "dedup", rewrites_text=True, canaries_upstream=True,
    # Lee et al.'s settings, which the RMFT paper compares with (docs/corpus.md, "Deduplication")
    named_options=(NamedOption("threshold", lambda v: f"t{v:g}", sweepable=True, paper=True),
                   NamedOption("num_perm", lambda v: f"perm{v}", paper=True),
                   NamedOption("shingle_words", lambda v: f"shingle{v}", paper=True),
                   NamedOption("lowercase", lambda v: "lowercase" if v else "cased", paper=True),
                   NamedOption("substring.enabled", lambda v: "substring" if v else "nosubstring", paper=True),
                   NamedOption("substring.min_bytes", lambda v: f"minbytes{v}", paper=True,
                               needs="substring.enabled")),
)
