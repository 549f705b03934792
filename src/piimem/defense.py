"""The defenses, and the training text each run sees: the train split after one defense.

`none` is the split as is; `dedup` takes the deduplication stage's output; `rmft` and `scrub`
rewrite PII spans (see piimem.masking); `dp` trains on the split as is, with DP-SGD (piimem.train.dp).
RMFT that re-draws surrogates per epoch yields one text per epoch; every other defense yields epoch 0
only, which the trainer reuses for every epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import polars as pl

from piimem.masking import RmftConfig, apply_rmft, apply_scrub

log = logging.getLogger("piimem")


@dataclass(frozen=True)
class Defense:
    """What a defense (a `defenses` entry) does to a run."""

    name: str
    rewrites_text: bool  # trains on text other than the train split (and its members have a trained-text view)
    reads_spans: bool = False  # rewrites the PII the PII stage found
    private_training: bool = False  # trains with DP-SGD (the `dp` config block)


# The one list of defenses, in the order tables and figures show them.
DEFENSE_KINDS = {d.name: d for d in (
    Defense("none", rewrites_text=False),
    Defense("dedup", rewrites_text=True),
    Defense("rmft", rewrites_text=True, reads_spans=True),
    Defense("scrub", rewrites_text=True, reads_spans=True),
    Defense("dp", rewrites_text=False, private_training=True),
)}
DEFENSES = tuple(DEFENSE_KINDS)

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


def _spans_of(texts: pl.DataFrame, spans: pl.DataFrame, entity_types) -> pl.DataFrame:
    return spans.join(texts.select("doc_id"), on="doc_id", how="semi").filter(
        pl.col("entity_type").is_in(list(entity_types))
    )


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
    no_replacements = pl.DataFrame(schema=REPLACEMENT_SCHEMA)
    epoch0 = pl.lit(0, dtype=pl.Int64).alias("epoch")
    if defense in DEFENSE_KINDS and not DEFENSE_KINDS[defense].rewrites_text:
        texts, replacements, targeted = train.select(epoch0, "doc_id", "text"), no_replacements, None
    elif defense == "dedup":
        if dedup_texts is None:
            raise ValueError("defense 'dedup' needs the deduplication stage's texts")
        texts, replacements, targeted = dedup_texts.select(epoch0, "doc_id", "text"), no_replacements, None
    elif defense == "rmft":
        epochs = options.pop("epochs", 1)
        cfg = RmftConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
        targeted = _spans_of(train, spans, cfg.entity_types)
        texts_by_epoch, maps = [], []
        for epoch in range(epochs if cfg.redraw_per_epoch else 1):
            masked, mapping = apply_rmft(train.select("doc_id", "text"), targeted, cfg, epoch=epoch)
            texts_by_epoch.append(masked.select(pl.lit(epoch, dtype=pl.Int64).alias("epoch"), "doc_id", "text"))
            maps.append(
                mapping.select(
                    pl.lit(epoch, dtype=pl.Int64).alias("epoch"), "doc_id", "start", "end", "entity_type",
                    "original", pl.col("surrogate").alias("replacement"),
                )
            )
        texts = pl.concat(texts_by_epoch)
        replacements = pl.concat(maps).cast(REPLACEMENT_SCHEMA)
    elif defense == "scrub":
        targeted = _spans_of(train, spans, options["entity_types"])
        texts = apply_scrub(train.select("doc_id", "text"), targeted, options["entity_types"]).select(
            epoch0, "doc_id", "text"
        )
        replacements = targeted.select(
            epoch0, "doc_id", "start", "end", "entity_type", pl.col("value").alias("original"),
            pl.format("<{}>", "entity_type").alias("replacement"),
        ).cast(REPLACEMENT_SCHEMA)
    else:
        raise ValueError(f"defenses: unknown defense {defense!r} (expected one of {', '.join(DEFENSES)})")
    summary = _summary(defense, targeted, replacements)
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
    train, test = train.select("doc_id", "text").sort("doc_id"), test.select("doc_id", "text").sort("doc_id")
    # Positions as doc ids put every training message before every test message.
    original_ids = pl.concat([train["doc_id"], test["doc_id"]])
    combined = pl.concat([train, test]).with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("doc_id"))
    new_id = dict(zip(original_ids.to_list(), range(len(original_ids))))
    if defense == "dedup":
        from piimem.dedup import DedupConfig, deduplicate

        if dedup_config is None:
            raise ValueError("nonmember_texts: defense 'dedup' needs the dedup config")
        kept = deduplicate(combined["doc_id"].to_list(), combined["text"].to_list(),
                           DedupConfig.from_config(dedup_config)).texts
    else:
        rekeyed = None
        if spans is not None:
            rekeyed = spans.filter(pl.col("doc_id").is_in(list(new_id))).with_columns(
                pl.col("doc_id").replace_strict(new_id, return_dtype=pl.Int64))
        kept = build_training_text(defense, combined, spans=rekeyed, options=options).texts.filter(
            pl.col("epoch") == 0)
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
