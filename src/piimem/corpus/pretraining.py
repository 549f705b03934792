"""The embedded tiny GPT-2's pre-training text: mail of people outside the fine-tuning population.

A base model that barely knows language cannot be fine-tuned fairly by small adapters, and one that has
seen a training address before fine-tuning makes its "memorisation" a pre-training effect. On a real corpus
the tiny GPT-2 pre-trains on the public split: its people write to the training split's people, so the base
model knows some of their names and addresses, as a web-trained model may (docs/fine-tuning.md, "Base models"). On the
synthetic corpus piimem controls both: `outsider_corpus` generates a second synthetic world (its own seed,
people, companies and mailboxes; no canaries) and `without_strings` drops every message holding a PII
string of the training split (`training_strings`): every e-mail address, phone number, SSN and card number
and every person name of at least `person_min_words` words. Left in: places (a fixed list of cities the whole
world shares) and first names, which the attacks do not count.

The strings of the pre-training data (`pii_of`, the attacks' O_ft = O less them) are the ground truth's
strings in the text the base model trains on: bodies and corpus.text_headers, not the header fields the text
leaves out (a training address in an outsider's Cc line was never seen). `without_strings` matches
substrings, so it also drops a message where a training string is part of a longer word or address ("Ann
Lee" in "Ann Leeds"): the model would still see the string's characters and most of its tokens, and the
cost is a few messages (2 of the default's 720).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl

from piimem.corpus.maildir import parse_maildir
from piimem.corpus.splits import split_texts
from piimem.corpus.synthetic import SyntheticConfig, generate_maildir
from piimem.pii.normalize import normalize

UNCOUNTED_TYPES = ("LOCATION",)  # shared by everyone in the synthetic world; not evidence of memorisation


def training_strings(truth: pl.DataFrame, messages: pl.DataFrame, splits: pl.DataFrame,
                     person_min_words: int = 2) -> list[str]:
    """The distinct PII values the ground truth `truth` records in the training split's files (path, as in
    `messages`), less places and person names under `person_min_words` words; sorted."""
    paths = messages.join(split_texts(messages, splits, "train").select("doc_id"), on="doc_id", how="semi")["path"]
    words = pl.col("value").str.strip_chars().str.split(" ").list.len()
    rows = truth.filter(pl.col("path").is_in(paths.implode()) & ~pl.col("entity_type").is_in(UNCOUNTED_TYPES)
                        & ((pl.col("entity_type") != "PERSON") | (words >= person_min_words)))
    return rows["value"].unique().sort().to_list()


def without_strings(texts: pl.DataFrame, values: Sequence[str]) -> pl.DataFrame:
    """`texts` (doc_id, text) less every message that holds one of `values` (ASCII case ignored)."""
    if not values:
        return texts
    return texts.filter(~pl.col("text").str.contains_any(list(values), ascii_case_insensitive=True))


def outsider_corpus(options: Mapping, *, text_headers: Sequence[str],
                    max_file_bytes: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(messages, ground truth) of a second synthetic world: corpus.synthetic's settings, with
    `pretrain.n_mailboxes` mailboxes, `pretrain.seed` and no canaries, parsed as the main corpus is."""
    pretrain = options["pretrain"]
    cfg = replace(SyntheticConfig.from_config(options), seed=pretrain["seed"], n_mailboxes=pretrain["n_mailboxes"],
                  canary_types=())
    with tempfile.TemporaryDirectory(prefix="piimem-pretrain-") as folder:
        truth = generate_maildir(Path(folder) / "maildir", cfg)
        parsed = parse_maildir(str(Path(folder) / "maildir"), text_headers=tuple(text_headers),
                               max_file_bytes=max_file_bytes, mailboxes=None)
    return parsed.messages, truth


def pii_of(truth: pl.DataFrame, messages: pl.DataFrame, text_headers: Sequence[str]) -> pl.DataFrame:
    """(entity_type, normalized) of the PII the ground truth records in the text of `messages`' files, distinct:
    in their bodies and in the header fields the text holds (`text_headers`, corpus.text_headers). The other
    header fields (Cc, X-From, X-To, X-cc by default) are in the files, not in the text a model trains on:
    a name or address only there is no string of the pre-training data."""
    missing = [c for c in ("path", "field", "entity_type", "value") if c not in truth.columns]
    if missing:
        raise ValueError(f"pii_of: the ground truth lacks column(s) {missing}")
    fields = ["body", *(name.lower() for name in text_headers)]
    rows = truth.join(messages.select("path"), on="path", how="semi").filter(
        pl.col("field").str.to_lowercase().is_in(fields))
    normalized = [normalize(t, v) for t, v in zip(rows["entity_type"], rows["value"])]
    return (pl.DataFrame({"entity_type": rows["entity_type"], "normalized": normalized},
                         schema={"entity_type": pl.Utf8, "normalized": pl.Utf8}).unique().sort(pl.all()))
