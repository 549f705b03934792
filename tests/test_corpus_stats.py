"""Corpus statistics (piimem.corpus.stats) on hand-made tables, by hand."""

from __future__ import annotations

import polars as pl
import pytest

from piimem.corpus.stats import corpus_statistics, sample_distinct


def tables():
    # Four messages, two with the same body; PII: alice@x.org three times, Bob once.
    texts = ["From: alice@x.org\n\nhi Bob, see you", "From: alice@x.org\n\nhi Bob, see you",
             "From: alice@x.org\n\nplain words only here", "note\n\n-----Original Message-----\nFrom: c\n\nold text"]
    messages = pl.DataFrame({"doc_id": [0, 1, 2, 3], "text": texts, "body": [t.split("\n\n", 1)[1] for t in texts],
                             "body_hash": ["a", "a", "b", "c"]})
    spans = pl.DataFrame({"doc_id": [0, 0, 1, 1, 2], "start": [6, 23, 6, 23, 6], "end": [17, 26, 17, 26, 17],
                          "entity_type": ["EMAIL_ADDRESS", "PERSON", "EMAIL_ADDRESS", "PERSON", "EMAIL_ADDRESS"],
                          "normalized": ["alice@x.org", "bob", "alice@x.org", "bob", "alice@x.org"]})
    splits = pl.DataFrame({"doc_id": [0, 1, 2, 3], "split": ["train", "train", "test", "test"]})
    return messages, spans, splits


def test_statistics_by_hand():
    stats = dict(corpus_statistics(*tables(), sample_size=10).iter_rows())
    assert stats["messages"] == 4 and stats["distinct_bodies"] == 3 and stats["messages_sampled"] == 3
    assert stats["exact_duplicate_share"] == pytest.approx(0.25)
    assert stats["quoted_share"] == pytest.approx(1 / 3)
    # Sampled: doc 0 (6 words), 2 (6 words), 3 (7 words); PII in the sample: alice twice, Bob once.
    assert stats["words_p50"] == 6.0
    assert stats["pii_per_1k_words/ALL"] == pytest.approx(1000 * 3 / 19)
    assert stats["pii_per_1k_words/EMAIL_ADDRESS"] == pytest.approx(1000 * 2 / 19)
    assert stats["distinct_per_1k_messages/ALL"] == pytest.approx(1000 * 2 / 3)
    assert stats["mean_occurrences/EMAIL_ADDRESS"] == 2.0 and stats["mean_occurrences/PERSON"] == 1.0
    assert stats["occurrences/1"] == 0.5 and stats["occurrences/2-3"] == 0.5 and stats["occurrences/16+"] == 0
    texts = tables()[0]["text"].to_list()
    assert stats["pii_char_share"] == pytest.approx((11 + 3 + 11) / sum(len(texts[i]) for i in (0, 2, 3)))
    # Train holds alice and Bob; the test split holds alice: half the training strings occur in test.
    assert stats["train_strings_in_test"] == 0.5
    assert stats["ttr_words_counted"] > 0 and 0 < stats["type_token_ratio"] <= 1


def test_the_sample_is_seeded_and_takes_one_message_per_body():
    messages = tables()[0]
    first, second = sample_distinct(messages, 2, seed=1), sample_distinct(messages, 2, seed=1)
    assert first["doc_id"].to_list() == second["doc_id"].to_list() and first["body_hash"].n_unique() == 2
    assert set(sample_distinct(messages, 10, seed=1)["doc_id"]) == {0, 2, 3}
