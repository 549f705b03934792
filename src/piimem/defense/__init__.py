"""The defenses, and the training text each run sees: the train split after one defense.

One module per defense (`none`, `dedup`, `rmft`, `scrub`, `dp`), each a `Defense` (piimem.defense.base: its
flags, the options its variants' names show, the files its text reads, its config checks, its options and its
training text), registered in `DEFENSE_KINDS`. `none` is the split as is; `dedup` takes the deduplication
stage's output; `rmft` and `scrub` rewrite PII spans (see piimem.masking); `dp` trains on the split as is, with
DP-SGD (piimem.train.dp). RMFT that re-draws surrogates per epoch yields one text per epoch; every other defense
yields epoch 0 only, which the trainer reuses for every epoch.
"""

from __future__ import annotations

import logging

import polars as pl

from piimem.defense import dedup, dp, none, rmft, scrub
from piimem.defense.base import REPLACEMENT_SCHEMA, Defense, Rewrite, TrainingText

__all__ = ["DEFENSES", "DEFENSE_KINDS", "REPLACEMENT_SCHEMA", "Defense", "Rewrite", "TrainingText",
           "build_training_text", "defense_of", "nonmember_texts", "trained_view"]

log = logging.getLogger("piimem")

# The one list of defenses, in the order tables and figures show them. A new defense: a module beside these,
# and its line here (docs/development.md).
DEFENSE_KINDS: dict[str, Defense] = {d.name: d for d in (
    none.DEFENSE,
    dedup.DEFENSE,
    rmft.DEFENSE,
    scrub.DEFENSE,
    dp.DEFENSE,
)}
DEFENSES = tuple(DEFENSE_KINDS)


def defense_of(name: str) -> Defense:
    """The registered defense `name`; a ValueError naming the known ones otherwise."""
    if name not in DEFENSE_KINDS:
        raise ValueError(f"defenses: unknown defense {name!r} (expected one of {', '.join(DEFENSES)})")
    return DEFENSE_KINDS[name]


def _summary(defense: str, spans: pl.DataFrame | None, replacements: pl.DataFrame) -> pl.DataFrame:
    """Per type: occurrences before, distinct strings, how many were rewritten, most repeats left."""
    if spans is None or spans.is_empty():
        return pl.DataFrame(
            schema={"defense": pl.Utf8, "entity_type": pl.Utf8, "occurrences": pl.Int64,
                    "unique_strings": pl.Int64, "replaced": pl.Int64, "max_repeats_after": pl.Int64}
        )
    first_epoch = replacements.filter(pl.col("epoch") == 0)
    replaced = spans.join(first_epoch.select("doc_id", "start"), on=["doc_id", "start"], how="semi")
    remaining = spans.join(first_epoch.select("doc_id", "start"), on=["doc_id", "start"], how="anti")
    before = spans.group_by("entity_type").agg(
        occurrences=pl.len(), unique_strings=pl.col("normalized").n_unique()
    )
    after = (
        remaining.group_by("entity_type", "normalized").len()
        .group_by("entity_type").agg(max_repeats_after=pl.col("len").max())
    )
    n_replaced = replaced.group_by("entity_type").agg(replaced=pl.len())
    return (
        before.join(n_replaced, on="entity_type", how="left")
        .join(after, on="entity_type", how="left")
        .with_columns(
            pl.lit(defense).alias("defense"),
            pl.col("replaced").fill_null(0).cast(pl.Int64),
            pl.col("max_repeats_after").fill_null(0).cast(pl.Int64),
            pl.col("occurrences").cast(pl.Int64),
            pl.col("unique_strings").cast(pl.Int64),
        )
        .select("defense", "entity_type", "occurrences", "unique_strings", "replaced", "max_repeats_after")
        .sort("entity_type")
    )


def build_training_text(
    defense: str,
    train: pl.DataFrame,
    *,
    spans: pl.DataFrame | None = None,
    dedup_texts: pl.DataFrame | None = None,
    options: dict | None = None,
) -> TrainingText:
    """`train` holds (doc_id, text) of the train split; `options` is config[defense] (rmft: plus `epochs`)."""
    options = dict(options or {})
    rewrite = defense_of(defense).training_text(train, spans, dedup_texts, options)
    texts, replacements = rewrite.texts, rewrite.replacements
    summary = _summary(defense, rewrite.targeted, replacements)
    first = texts.filter(pl.col("epoch") == 0)
    log.info(
        "defense %s: %d documents, %d characters, %d PII occurrences rewritten",
        defense, first.height, first["text"].str.len_chars().sum(), replacements.filter(pl.col("epoch") == 0).height,
    )
    return TrainingText(texts=texts.sort("epoch", "doc_id"), replacements=replacements, summary=summary)


def nonmember_texts(
    defense: str,
    train: pl.DataFrame,
    test: pl.DataFrame,
    *,
    spans: pl.DataFrame | None = None,
    dedup_config: dict | None = None,
    options: dict | None = None,
) -> pl.DataFrame:
    """(doc_id, text) of the non-members `test` as the defense would have written them had they come after
    the training split `train` (both doc_id, text), for membership inference's trained-text view.

    The defense runs over train then test in one pass, and the test rows are kept: RMFT keeps the first
    occurrence of a PII string (so a string already seen in training is replaced in a test message, like
    every later occurrence in training), scrubbing tags the test message's spans, deduplication drops a
    test message that duplicates an earlier one and cuts substrings repeated from earlier text. Members
    and non-members then share one distribution. The training rows of that pass equal the defense's own
    training text (same order, same seeds). A non-member the defense drops is absent from the result.
    `dedup_config` is the `dedup` config section (with the variant's threshold); `options` as for
    `build_training_text`; RMFT that re-draws per epoch is taken at epoch 0.
    """
    kind = defense_of(defense)
    train, test = train.select("doc_id", "text").sort("doc_id"), test.select("doc_id", "text").sort("doc_id")
    # Positions as doc ids put every training message before every test message.
    original_ids = pl.concat([train["doc_id"], test["doc_id"]])
    combined = pl.concat([train, test]).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("doc_id"))
    new_id = dict(zip(original_ids.to_list(), range(len(original_ids))))
    rekeyed = None
    if spans is not None:
        rekeyed = spans.filter(pl.col("doc_id").is_in(list(new_id))).with_columns(
            pl.col("doc_id").replace_strict(new_id, return_dtype=pl.Int64))
    kept = kind.nonmember_text(combined, rekeyed, dedup_config, options)
    first_test = train.height
    return (kept.filter(pl.col("doc_id") >= first_test)
            .with_columns(pl.col("doc_id").replace_strict(dict(enumerate(original_ids.to_list())),
                                                          return_dtype=pl.Int64))
            .select("doc_id", "text").sort("doc_id"))


def trained_view(members: pl.DataFrame, member_texts: pl.DataFrame, nonmembers: pl.DataFrame) -> pl.DataFrame:
    """The member/non-member sample (`members`: doc_id, member, ...) with each text as the model saw it:
    members' from the defense's training text (`member_texts`: epoch, doc_id, text; epoch 0), non-members'
    from `nonmember_texts`. Same rows and order as `members`; text null where the defense dropped the
    message (deduplication), so those rows are left out of this view."""
    trained = member_texts.filter(pl.col("epoch") == 0).select("doc_id", "text")
    texts = pl.concat([trained.join(members.filter(pl.col("member")).select("doc_id"), on="doc_id", how="semi"),
                       nonmembers.join(members.filter(~pl.col("member")).select("doc_id"), on="doc_id",
                                       how="semi")])
    kept = ["doc_id", "member", *(["group"] if "group" in members.columns else [])]  # the bootstrap's groups
    return members.select(kept).join(texts, on="doc_id", how="left", maintain_order="left")
