"""The blind baseline (piimem.blind): a model-free member classifier on seeded made-up text, real scikit-learn."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from made_up_text import made_up_docs
from piimem import schema
from piimem.blind import BlindConfig, blind_scores, scored_spans
from piimem.metrics import roc_auc
from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.scoring import example_statistics

# Letters of the shared words and of the words only one side or one group has: disjoint, so a "topic" or
# "group" word never turns up in the shared pool by chance.
POOL_LETTERS, TOPIC_A, TOPIC_B = "abcdefghij", "klmnop", "qrstuv"


def _words(rng: random.Random, n: int, letters: str) -> list[str]:
    words: list[str] = []
    while len(words) < n:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 7)))
        if word not in words:
            words.append(word)
    return words


def _texts(rng: random.Random, pool: list[str], n: int, extra: list[str] | None = None, k: int = 2) -> list[str]:
    """`n` texts of 15-40 pool words, each with `k` words of `extra` put in at random places."""
    texts = []
    for _ in range(n):
        words = [rng.choice(pool) for _ in range(rng.randint(15, 40))]
        for _ in range(k if extra else 0):
            words.insert(rng.randrange(len(words) + 1), rng.choice(extra))
        texts.append(" ".join(words))
    return texts


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return _words(random.Random(1), 200, POOL_LETTERS)


def _auc(texts, members, groups, seed, per_text=False) -> float:
    return roc_auc(blind_scores(texts, members, groups, BlindConfig(seed=seed), per_text=per_text), members)


# ------------------------------------------------------------------------------------------
# Settings


def test_config_defaults_are_the_schemas_and_bad_values_are_named():
    fields = {f.name: f.default for f in dataclasses.fields(BlindConfig)}
    keys = {name: f"mia.blind.{name}" for name in ("ngram_range", "folds", "C", "max_features")}
    assert fields == {**{name: schema.default(key) for name, key in keys.items()}, "seed": schema.default("mia.seed")}
    assert (fields["ngram_range"], fields["folds"], fields["C"], fields["max_features"]) == ((1, 2), 5, 1.0, None)
    assert schema.default("mia.blind.enabled") is True
    config = BlindConfig.from_config({"enabled": True, "ngram_range": [1, 3], "folds": 4}, seed=7)
    assert (config.ngram_range, config.folds, config.seed) == ((1, 3), 4, 7)
    with pytest.raises(ValueError, match=r"mia.blind.folds: expected an integer >= 2, got 1"):
        BlindConfig(folds=1)
    with pytest.raises(ValueError, match=r"mia.blind.C: expected a number > 0, got 0"):
        BlindConfig(C=0)
    with pytest.raises(ValueError, match=r"mia.blind.ngram_range: expected \[shortest, longest\] with shortest <= "
                                         r"longest, got \[2, 1\]"):
        BlindConfig(ngram_range=(2, 1))
    with pytest.raises(ValueError, match=r"mia.seed: expected an integer"):
        BlindConfig(seed=-1)


# ------------------------------------------------------------------------------------------
# What the baseline tells apart


def test_a_shifted_sample_is_flagged_with_text_and_with_group_folds(pool):
    # Members mention one topic's words, non-members another's: a shift, not memorisation.
    rng = random.Random(2)
    topic_a, topic_b = _words(rng, 10, TOPIC_A), _words(rng, 10, TOPIC_B)
    texts = _texts(rng, pool, 80, topic_a) + _texts(rng, pool, 80, topic_b)
    members = np.r_[np.ones(80, bool), np.zeros(80, bool)]
    groups = np.arange(160) // 2  # pairs of texts of one side: a topic is no group's own word
    per_text, by_group = _auc(texts, members, None, 0, per_text=True), _auc(texts, members, groups, 0)
    assert per_text > 0.9 and by_group > 0.9, (per_text, by_group)


@pytest.mark.parametrize("seed", range(5))
def test_an_unshifted_sample_gives_chance(pool, seed):
    rng = random.Random(100 + seed)
    texts = _texts(rng, pool, 400)
    members = np.zeros(400, bool)
    members[rng.sample(range(400), 200)] = True
    per_text, by_group = _auc(texts, members, None, seed, per_text=True), _auc(texts, members, np.arange(400), seed)
    assert abs(per_text - 0.5) < 0.12 and abs(by_group - 0.5) < 0.12, (per_text, by_group)


@pytest.mark.parametrize("seed", range(3))
def test_group_leakage_shows_with_per_text_folds_only(pool, seed):
    # 60 groups of 4 texts, each group all members or all non-members, its texts sharing a word of their own
    # (a thread's quoted text): per-text folds learn the group's word from its other texts.
    rng = random.Random(200 + seed)
    group_words = _words(rng, 60, TOPIC_A)
    texts, groups, members = [], [], []
    for group, word in enumerate(group_words):
        texts += _texts(rng, pool, 4, [word], k=3)
        groups += [group] * 4
        members += [group % 2 == 0] * 4
    members = np.array(members)
    per_text, by_group = _auc(texts, members, groups, seed, per_text=True), _auc(texts, members, groups, seed)
    assert per_text > 0.9, per_text
    assert abs(by_group - 0.5) < 0.12, by_group


def test_scores_are_probabilities_deterministic_for_a_seed(pool):
    rng = random.Random(3)
    texts = _texts(rng, pool, 40, _words(rng, 5, TOPIC_A)) + _texts(rng, pool, 40, _words(rng, 5, TOPIC_B))
    members, groups = [True] * 40 + [False] * 40, [i // 4 for i in range(80)]
    first = blind_scores(texts, members, groups, BlindConfig(seed=5))
    assert first.shape == (80,) and ((first > 0) & (first < 1)).all()
    assert np.array_equal(first, blind_scores(texts, members, groups, BlindConfig(seed=5)))
    assert not np.array_equal(first, blind_scores(texts, members, groups, BlindConfig(seed=6)))
    per_text = blind_scores(texts, np.array(members, dtype=int), groups, BlindConfig(seed=5), per_text=True)
    assert np.array_equal(per_text, blind_scores(texts, members, None, BlindConfig(seed=5), per_text=True))


# ------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(("members", "groups", "per_text", "message"), [
    ([True, False] * 4, [0] * 8, False, "group folds need at least 2 distinct groups, got 1"),
    ([True] * 8, list(range(8)), False, "the sample has no non-members"),
    ([False] * 8, list(range(8)), True, "the sample has no members"),
    ([True, False] * 3, list(range(8)), False, "members must be one label per text: 8 texts, 6 labels"),
    ([True, False] * 4, list(range(7)), False, "groups must be one group per text: 8 texts, 7 groups"),
    ([True, False] * 4, None, False, "groups are needed"),
    ([2, 0] * 4, list(range(8)), False, "members must be booleans"),
    ([True] * 4 + [False] * 4, [0] * 4 + [1] * 4, False, "training fold 0 of 2 holds only"),
    ([True] + [False] * 7, None, True, "per-text folds need at least 2 members and 2 non-members"),
])
def test_bad_input_is_named(pool, members, groups, per_text, message):
    texts = _texts(random.Random(4), pool, 8)
    with pytest.raises(ValueError, match=message):
        blind_scores(texts, members, groups, BlindConfig(seed=0), per_text=per_text)


def test_texts_must_be_strings(pool):
    with pytest.raises(ValueError, match="texts must be strings; item 1 is NoneType"):
        blind_scores(["one two", None, "three four", "five six"], [True, True, False, False], [0, 1, 2, 3],
                     BlindConfig(seed=0))


# ------------------------------------------------------------------------------------------
# The span an attack scores


def test_scored_spans_are_what_the_scoring_pass_scores():
    docs = made_up_docs(200, 11, letters="klmnopqrst", vocabulary=60, words=(3, 40))
    tok = train_tokenizer(docs, 300)
    model = init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=3)
    max_length = 16
    long = next(d for d in docs if len(tok(d)["input_ids"]) > 2 * max_length)
    short = next(d for d in docs if 4 <= len(tok(d)["input_ids"]) < max_length)
    spans = scored_spans([long, short], tok, max_length)
    stats = example_statistics(model, tok, [long, short], max_length=max_length, device="cpu", lowercase=False)
    # The scored tokens are positions 2..n of the encoded span (piimem.scoring): n_tokens + 1 tokens in all.
    span_tokens = [len(tok(s)["input_ids"]) for s in spans]
    assert span_tokens == [n + 1 for n in stats["n_tokens"]] == [max_length, len(tok(short)["input_ids"])]
    assert tok(spans[0])["input_ids"] == tok(long)["input_ids"][:max_length]
    assert long.startswith(spans[0]) and len(spans[0]) < len(long) and spans[1] == short
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        scored_spans([long], tok, 1)
