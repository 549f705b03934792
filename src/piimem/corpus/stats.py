"""Statistics of a corpus that decide how a model memorises its PII: counts and rates only, no strings.

Every statistic is measured on a seeded sample of `sample_size` distinct messages (one per body_hash;
all of them when the corpus has fewer), because distinct counts grow with size: two corpora compare at
the same sample size. Words are whitespace tokens of the training text (`text`: rendered headers and
body), the text a model is trained on; PII comes from the PII stage's spans of those texts.

Rows of `corpus_statistics` (statistic, value):

  messages, distinct_bodies      of the whole corpus; messages_sampled: the sample's size
  exact_duplicate_share          share of the corpus's messages whose body repeats an earlier one's
  near_duplicate_share           share of the sample in a near-duplicate cluster with another sampled
                                 message (the dedup stage's MinHash-LSH at Jaccard 0.8)
  quoted_share                   share of the sample that quotes or forwards a message (`quotes_a_message`)
  words_p10 .. words_p90, words_iqr   words per message (10th, 25th, 50th, 75th, 90th percentile)
  pii_per_1k_words/<TYPE>, /ALL  PII spans per 1,000 words
  pii_char_share                 share of the characters inside a PII span
  distinct_per_1k_messages/<TYPE>, /ALL   distinct PII strings (normal forms) per 1,000 sampled messages
  mean_occurrences/<TYPE>, /ALL  spans per distinct string
  occurrences/<bucket>           share of distinct strings occurring 1, 2-3, 4-7, 8-15, 16+ times
  train_strings_in_test          share of the train split's distinct PII strings that also occur in the
                                 test split (whole corpus, not the sample)
  type_token_ratio               distinct / all lower-cased word tokens of the first `ttr_words` (50,000)
                                 words of the sample, in its seeded order; ttr_words_counted says how
                                 many there were (fewer when the sample is smaller)
"""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl

from piimem.metric_names import ALL
from piimem.metrics import REPETITION_BUCKETS, bucket_label
from piimem.pii.normalize import ENTITY_TYPES

SAMPLE_SIZE = 700
TTR_WORDS = 50_000
_WORD = re.compile(r"[a-z0-9]+(?:['.-][a-z0-9]+)*")


def sample_distinct(messages: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """One message per body_hash (the lowest doc_id), then a seeded sample of n of them (all when fewer),
    in the sample's seeded order."""
    distinct = messages.sort("doc_id").unique("body_hash", keep="first", maintain_order=True)
    order = np.random.default_rng(seed).permutation(distinct.height)[:n]
    return distinct[order.tolist()]


def corpus_statistics(messages: pl.DataFrame, spans: pl.DataFrame, splits: pl.DataFrame, *,
                      sample_size: int = SAMPLE_SIZE, seed: int = 42, ttr_words: int = TTR_WORDS) -> pl.DataFrame:
    """(statistic, value) rows of the module docstring. `messages`: doc_id, text, body, body_hash;
    `spans`: doc_id, start, end, entity_type, normalized; `splits`: doc_id, split."""
    from piimem.corpus.splits import quotes_a_message
    from piimem.dedup import DedupConfig, find_duplicate_clusters

    if messages.is_empty():
        raise ValueError("corpus statistics: the corpus has no message")
    sample = sample_distinct(messages, sample_size, seed)
    texts = sample["text"].to_list()
    words = [len(t.split()) for t in texts]
    n_words = sum(words)
    rows: list[tuple[str, float]] = [
        ("messages", messages.height), ("distinct_bodies", messages["body_hash"].n_unique()),
        ("messages_sampled", sample.height),
        ("exact_duplicate_share", 1 - messages["body_hash"].n_unique() / messages.height),
    ]
    clusters, _ = find_duplicate_clusters(sample["doc_id"].to_list(), texts, DedupConfig(substring_enabled=False))
    rows.append(("near_duplicate_share", clusters.filter(pl.col("cluster_size") > 1).height / sample.height))
    rows.append(("quoted_share", sum(map(quotes_a_message, sample["body"].to_list())) / sample.height))
    quantiles = np.percentile(words, [10, 25, 50, 75, 90])
    rows += [(f"words_p{p}", float(q)) for p, q in zip((10, 25, 50, 75, 90), quantiles)]
    rows.append(("words_iqr", float(quantiles[3] - quantiles[1])))

    sampled = spans.join(sample.select("doc_id"), on="doc_id", how="semi")
    types = [t for t in ENTITY_TYPES if t in set(sampled["entity_type"].to_list())]
    for entity_type in [*types, ALL]:
        part = sampled if entity_type == ALL else sampled.filter(pl.col("entity_type") == entity_type)
        distinct = part.select("entity_type", "normalized").n_unique() if part.height else 0
        rows += [(f"pii_per_1k_words/{entity_type}", 1000 * part.height / max(n_words, 1)),
                 (f"distinct_per_1k_messages/{entity_type}", 1000 * distinct / sample.height),
                 (f"mean_occurrences/{entity_type}", part.height / distinct if distinct else math.nan)]
    covered = sampled.select((pl.col("end") - pl.col("start")).sum()).item() or 0
    rows.append(("pii_char_share", covered / max(sum(len(t) for t in texts), 1)))
    counts = sampled.group_by("entity_type", "normalized").len()["len"].to_list()
    for low, high in REPETITION_BUCKETS:
        n = sum(low <= c and (high is None or c <= high) for c in counts)
        rows.append((f"occurrences/{bucket_label(low, high)}", n / max(len(counts), 1)))

    by_split = spans.join(splits, on="doc_id").select("split", "entity_type", "normalized").unique()
    train = by_split.filter(pl.col("split") == "train").drop("split")
    test = by_split.filter(pl.col("split") == "test").drop("split")
    shared = train.join(test, on=["entity_type", "normalized"], how="semi").height
    rows.append(("train_strings_in_test", shared / train.height if train.height else math.nan))

    tokens: list[str] = []
    for text in texts:
        tokens += _WORD.findall(text.lower())
        if len(tokens) >= ttr_words:
            break
    tokens = tokens[:ttr_words]
    rows += [("type_token_ratio", len(set(tokens)) / len(tokens) if tokens else math.nan),
             ("ttr_words_counted", len(tokens))]
    return pl.DataFrame(rows, schema={"statistic": pl.Utf8, "value": pl.Float64}, orient="row")
