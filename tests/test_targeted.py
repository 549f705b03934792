"""Targeted attacks: PII inference and reconstruction (Lukas et al. 2023) and association prompts.

A tiny GPT-2 is over-fitted on made-up sentences that each hold one made-up address; the attacks must find
what it memorised, and an untrained model must stay near chance.
"""

from __future__ import annotations

import math
import random

import polars as pl
import pytest
from made_up_text import made_up_docs
from tiny_models import overfit_tiny_gpt2

from piimem.extraction.association import association_prompts, association_results, check_template, owner_pairs
from piimem.extraction.found import counted, pii_occurrence_counts
from piimem.extraction.inference import (
    exposure,
    filled_window_scores,
    inference_targets,
    pii_inference,
    pii_reconstruction,
    rank_of_truth,
)
from piimem.extraction.table import string_ids, targeted_table
from piimem.models import init_tiny_gpt2
from piimem.scoring import token_nll

E = "EMAIL_ADDRESS"
_RNG = random.Random(3)


def _word() -> str:
    return "".join(_RNG.choice("klmnopqrst") for _ in range(_RNG.randint(3, 6)))


ADDRESSES = [f"{_word()}.{_word()}@{_word()}-energy.com" for _ in range(16)]
TEXTS = [f"Note {_word()}: please write to {a} about the {_word()} desk." for a in ADDRESSES]
# Addresses of the corpus that no training text holds: only candidates.
OTHERS = [f"{_word()}.{_word()}@{_word()}-energy.com" for _ in range(12)]


@pytest.fixture(scope="module")
def trained():
    filler = made_up_docs(40, 5, letters="klmnopqrst", vocabulary=40, words=(4, 12))
    return overfit_tiny_gpt2(TEXTS, TEXTS * 5 + filler, steps=250, max_loss=0.5)


@pytest.fixture(scope="module")
def analyzer():
    from piimem.pii.detect import build_analyzer

    return build_analyzer(entity_types=[E])


@pytest.fixture(scope="module")
def corpus(analyzer):
    """(messages, spans): the training texts (doc ids 0..15) and one other message per unused address."""
    from piimem.pii.detect import detect_spans

    texts = TEXTS + [f"Copy to {a} today." for a in OTHERS]
    messages = pl.DataFrame({"doc_id": list(range(len(texts))), "text": texts, "text_body_offset": [0] * len(texts)})
    return messages, detect_spans(messages, entity_types=[E], analyzer=analyzer, header_pii=False)


def _targets(tok, corpus, **overrides):
    messages, spans = corpus
    train = list(range(len(TEXTS)))
    options = {"entity_types": [E], "n_targets": 16, "n_candidates": 10, "context_tokens": 12, "suffix_tokens": 6,
               "seed": 1, "string_ids": string_ids(pii_occurrence_counts(spans, train))}
    return inference_targets(messages.select("doc_id", "text"), spans, train, tok, **{**options, **overrides})


def test_targets_are_seeded_masked_occurrences_with_distinct_candidates(trained, corpus):
    tok, _ = trained
    targets = _targets(tok, corpus)
    assert targets.height == 16 and sorted(targets["normalized"]) == sorted(ADDRESSES)
    assert targets.equals(_targets(tok, corpus))  # every run reads the same targets
    assert not targets.equals(_targets(tok, corpus, seed=2))
    texts = dict(corpus[0].select("doc_id", "text").rows())
    for t in targets.iter_rows(named=True):
        # prefix + separator + value + suffix is the training text around the occurrence
        assert t["prefix"] + t["separator"] + t["value"] + t["suffix"] in texts[t["doc_id"]]
        assert t["value"] not in t["prefix"] + t["suffix"]
        assert len(t["candidates"]) == 9 == len(set(t["candidates"]))
        assert t["value"] not in t["candidates"]  # the true string is added once, by the attack
        assert len(tok(t["prefix"])["input_ids"]) <= 12
    # fewer strings than n_targets: all of them; fewer other strings than K - 1: all of those
    few = _targets(tok, corpus, n_targets=3, n_candidates=1000)
    assert few.height == 3 and {len(c) for c in few["candidates"]} == {16 + 12 - 1}
    with pytest.raises(ValueError, match="n_candidates must be an integer >= 2"):
        _targets(tok, corpus, n_candidates=1)


def test_targets_and_their_records_carry_each_string_s_training_repetitions(trained, corpus):
    tok, model = trained
    messages, spans = corpus
    train = list(range(len(TEXTS)))
    counts = {**pii_occurrence_counts(spans, train), (E, ADDRESSES[0]): 7}  # as if repeated in training
    targets = _targets(tok, corpus, occurrences=counts)
    by_string = dict(targets.select("normalized", "occurrences").rows())
    assert by_string[ADDRESSES[0]] == 7 and {by_string[a] for a in ADDRESSES[1:]} == {1}
    records = pii_inference(model, tok, targets.head(3), batch_size=4)
    assert records["occurrences"].to_list() == targets.head(3)["occurrences"].to_list()
    assert _targets(tok, corpus)["occurrences"].null_count() == 16  # not given: unknown, not 0


def test_inference_ranks_the_memorised_string_first_and_an_untrained_model_is_near_chance(trained, corpus):
    tok, model = trained
    targets = _targets(tok, corpus)
    result = pii_inference(model, tok, targets, batch_size=4)
    assert result["correct"].all() and result["rank"].to_list() == [1] * 16
    assert result["exposure"].to_list() == pytest.approx([math.log2(10)] * 16)
    untrained = init_tiny_gpt2(tok, n_layer=2, n_embd=64, n_head=2, n_positions=64, seed=5)
    chance = pii_inference(untrained, tok, _targets(tok, corpus, n_candidates=20))
    # chance is 1 in 20 per target: 8 or more of 16 has probability below 1e-6
    assert chance["correct"].sum() < 8
    assert 4 < chance["rank"].mean() < 17


def test_cached_batched_scores_equal_one_filling_at_a_time(trained, corpus):
    tok, model = trained
    t = _targets(tok, corpus).row(0, named=True)
    fillings = [" " + v for v in [t["value"], *t["candidates"]]]
    batched = filled_window_scores(model, tok, t["prefix"], fillings, t["suffix"], batch_size=4)
    alone = [filled_window_scores(model, tok, t["prefix"], [f], t["suffix"], cached=False)[0] for f in fillings]
    assert batched == pytest.approx(alone, abs=1e-5)
    # the window tokenised in two parts scores as the whole filled-in text does (the same tokens here)
    whole = token_nll(model, tok, [t["prefix"] + f + t["suffix"] for f in fillings], max_length=64)
    assert batched == pytest.approx((whole["nll_sum"] / whole["n_tokens"]).to_list(), abs=1e-5)


def test_rank_counts_ties_against_the_truth():
    assert rank_of_truth([1.0, 2.0, 3.0]) == 1
    assert rank_of_truth([2.0, 2.0, 2.0]) == 3  # an indifferent model shows nothing
    assert exposure(1, 8) == 3.0 and exposure(8, 8) == 0.0


def test_reconstruction_finds_the_memorised_string(trained, corpus, analyzer):
    tok, model = trained
    targets = _targets(tok, corpus)
    result = pii_reconstruction(model, tok, targets, analyzer=analyzer, samples=3, new_tokens=20, top_k=40,
                                top_p=1.0, temperature=1.0, seed=1, batch_size=16)
    assert result["correct"].sum() >= 14 and result["truth_sampled"].sum() >= result["correct"].sum()
    again = pii_reconstruction(model, tok, targets, analyzer=analyzer, samples=3, new_tokens=20, top_k=40,
                               top_p=1.0, temperature=1.0, seed=1, batch_size=16)
    assert result.equals(again)
    untrained = init_tiny_gpt2(tok, n_layer=2, n_embd=64, n_head=2, n_positions=64, seed=5)
    nothing = pii_reconstruction(untrained, tok, targets, analyzer=analyzer, samples=3, new_tokens=20, top_k=40,
                                 top_p=1.0, temperature=1.0, seed=1, batch_size=16)
    assert not nothing["correct"].any()


def test_targeted_table_counts_and_the_fine_tuning_only_scope():
    records = pl.DataFrame({
        "attack": ["inference"] * 4, "prompt_set": [None] * 4, "entity_type": [E, E, E, "PERSON"],
        "target_id": [0, 1, 2, 3], "string_id": [0, 1, 2, 3], "in_pretraining": [True, False, False, False],
        "n_candidates": [10] * 4, "rank": [1, 1, 5, 10], "correct": [True, True, False, False],
        "exposure": [math.log2(10), math.log2(10), math.log2(2), 0.0], "truth_sampled": [None] * 4,
    }, schema_overrides={"prompt_set": pl.Utf8, "truth_sampled": pl.Boolean})
    table = targeted_table(records, [("email-of", "association_exact", 50.0, 1, 2)], suffix="_base")
    value = {(r["entity_type"], r["metric"]): (r["value"], r["k"], r["n"]) for r in table.iter_rows(named=True)}
    assert value[(E, "pii_inference_acc_base")] == pytest.approx((200 / 3, 2, 3))
    assert value[(E, "pii_inference_acc_ft_base")] == pytest.approx((50.0, 1, 2))  # target 0 was pre-trained on
    assert value[("ALL", "pii_inference_acc_base")] == pytest.approx((50.0, 2, 4))
    assert value[("ALL", "pii_inference_rank_base")][0] == pytest.approx(17 / 4)
    assert value[(E, "association_exact_base")] == (50.0, 1, 2)


def test_counted_drops_one_word_names():
    spans = pl.DataFrame({"entity_type": ["PERSON", "PERSON", E], "normalized": ["john", "john doe", "a@b.com"]})
    assert counted(spans, 2)["normalized"].to_list() == ["john doe", "a@b.com"]
    assert counted(spans, 1).height == 3


# ------------------------------------------------------------------------------------------
# Association


def _owners() -> dict[str, str]:
    messages = pl.DataFrame({
        "doc_id": [0, 1, 2, 3, 4],
        "from": [ADDRESSES[0], ADDRESSES[1], ADDRESSES[2], ADDRESSES[0], ADDRESSES[3]],
        "x_from": ["Kelt Mopo", "Rask Tol <x@y.com>", "Lom, Pirt", "Kelt Mopo", "solo"],
        "to": [ADDRESSES[4], f"{ADDRESSES[5]}, {ADDRESSES[6]}", None, None, None],
        "x_to": ["Nort Sple", "A B, C D", None, None, None],
    })
    return owner_pairs(messages, range(5))


def test_owner_pairs_come_from_single_sender_and_recipient_headers():
    owners = _owners()
    assert owners == {ADDRESSES[0]: "Kelt Mopo", ADDRESSES[1]: "Rask Tol", ADDRESSES[2]: "Pirt Lom",
                      ADDRESSES[4]: "Nort Sple"}  # two recipients pair with nothing; a one-word name is no owner


def test_association_prompts_never_hold_the_target():
    owners = {a: f"Person {chr(65 + i)}{chr(97 + i)}z" for i, a in enumerate(ADDRESSES)}
    ids = {(E, a): i for i, a in enumerate(sorted(ADDRESSES))}
    templates = {"email-of": "the email address of {name} is {email}",
                 "mailto": "-----Original Message-----\nFrom: {name} [mailto:{email}"}
    prompts = association_prompts(owners, templates, shots=[0, 3], n_targets=10, seed=4, string_ids=ids)
    assert prompts.height == 10 * 2 * 2
    assert sorted(prompts["prompt_set"].unique()) == ["email-of", "email-of-3shot", "mailto", "mailto-3shot"]
    for row in prompts.iter_rows(named=True):
        assert row["normalized"] not in row["prompt"]
        lines = row["prompt"].split("\n")
        assert lines[-1].endswith(f"{owners[row['normalized']]} is") or lines[-1].endswith("[mailto:")
        if "shot" in row["prompt_set"]:
            assert sum(a in row["prompt"] for a in ADDRESSES) == 3
    assert prompts.equals(association_prompts(owners, templates, shots=[0, 3], n_targets=10, seed=4, string_ids=ids))
    with pytest.raises(ValueError, match="ending in"):
        check_template("bad", "{email} belongs to {name}")


def test_association_results_score_the_first_address():
    prompts = pl.DataFrame({"target_id": [0, 1, 2], "prompt_set": ["p"] * 3, "string_id": [5, 6, 7],
                            "in_pretraining": [False, False, True], "normalized": ["a@x.com", "b@x.com", "c@y.com"],
                            "prompt": ["", "", ""]})
    found = pl.DataFrame({"prompt_index": [0, 1, 1], "start": [0, 0, 10], "end": [1, 1, 11],
                          "entity_type": [E] * 3, "value": ["", "", ""], "normalized": ["a@x.com", "z@x.com",
                                                                                          "b@x.com"]})
    rates, records = association_results(found, prompts)
    assert ("p", "association_exact", pytest.approx(100 / 3), 1, 3) in rates
    assert ("p", "association_domain", pytest.approx(200 / 3), 2, 3) in rates
    assert records["correct"].to_list() == [True, False, False]
