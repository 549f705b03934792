"""PII extraction attack: prompt sets, batched generation, PII search in continuations, extraction metrics.

A tiny GPT-2 is over-fitted in this file (plain AdamW, a few seconds on CPU) on a handful of made-up
sentences holding a fake e-mail address and a fake SSN; greedy decoding from the text before the address
must reproduce it, and the real Presidio pipeline must find it in the continuation.
"""

from __future__ import annotations

import copy
import math
import re

import polars as pl
import pytest
import torch
from made_up_text import made_up_docs
from tiny_models import overfit_tiny_gpt2

from piimem.extraction.canaries import canary_contexts, canary_exposure, canary_exposures, random_candidates
from piimem.extraction.found import find_pii, found_set, pii_occurrence_counts, pii_set
from piimem.extraction.generation import generate, generate_token_ids
from piimem.extraction.prompts import file_prompts, train_prefix_prompts, window_prompts
from piimem.extraction.table import extraction_table
from piimem.metrics import extraction_rates, match_rates, rate_by_repetition, subtract_base
from piimem.surrogates import ssn_valid

ADDRESS = "jdoe.trading@example-energy.com"
SSN = "284-91-5630"
SENTENCES = [
    f"Please contact the desk at {ADDRESS} for the confirmation.",
    "The weekly report from the west desk is attached below.",
    f"Send the signed copy back to {ADDRESS} before noon.",
    f"The secret number is {SSN} and nobody knows it.",
]
E = "EMAIL_ADDRESS"


@pytest.fixture(scope="module")
def trained():
    """(tokenizer, model) over-fitted on SENTENCES plus made-up filler."""
    filler = made_up_docs(40, 5, letters="klmnopqrst", vocabulary=40, words=(4, 12))
    return overfit_tiny_gpt2(SENTENCES + filler[:8], SENTENCES * 20 + filler)


@pytest.fixture(scope="module")
def analyzer():
    from piimem.pii.detect import build_analyzer

    return build_analyzer(entity_types=[E])


@pytest.fixture(scope="module")
def messages():
    # doc 4 repeats doc 0, so its prompt is a duplicate; doc 5 has its address at the very start (no prompt).
    texts = [*SENTENCES, SENTENCES[0], f"{ADDRESS} wrote the note."]
    return pl.DataFrame({"doc_id": list(range(len(texts))), "text": texts, "text_body_offset": [0] * len(texts)})


@pytest.fixture(scope="module")
def spans(messages, analyzer):
    from piimem.pii.detect import detect_spans

    return detect_spans(messages, entity_types=[E], analyzer=analyzer, header_pii=False)


# ------------------------------------------------------------------------------------------
# prompt sets


def test_train_prefix_prompts_end_right_before_the_span_and_are_seeded(trained, messages, spans):
    tok, _ = trained
    assert spans.height == 4  # docs 0, 2, 4, 5
    prompts = train_prefix_prompts(messages.select("doc_id", "text"), spans, tok, n=10, prompt_tokens=4, seed=7,
                                   entity_types=[E])
    again = train_prefix_prompts(messages.select("doc_id", "text"), spans, tok, n=10, prompt_tokens=4, seed=7,
                                 entity_types=[E])
    assert prompts.equals(again)
    # doc 4's prompt equals doc 0's (kept once), doc 5's address starts the text (nothing before it)
    assert prompts["doc_id"].to_list() in ([0, 2], [2, 4])
    assert prompts["prompt_id"].to_list() == [0, 1]
    texts = dict(messages.select("doc_id", "text").rows())
    for row in prompts.iter_rows(named=True):
        text = texts[row["doc_id"]]
        # the prompt ends right before the span, without the one space BPE attaches to the next word
        assert text[row["span_start"] :].startswith(ADDRESS)
        assert row["prompt"] == text[row["prompt_start"] : row["span_start"] - 1]
        assert row["normalized"] == ADDRESS and row["entity_type"] == E
        assert row["n_prompt_tokens"] == 4 == len(tok(row["prompt"])["input_ids"])
    # byte-level BPE tokens carry their leading space, so the 4-token prompt starts with one
    assert set(prompts["prompt"]) == {" contact the desk at", " signed copy back to"}

    one = train_prefix_prompts(messages.select("doc_id", "text"), spans, tok, n=1, prompt_tokens=4, seed=7,
                               entity_types=[E])
    assert one.height == 1
    picks = {train_prefix_prompts(messages.select("doc_id", "text"), spans, tok, n=1, prompt_tokens=4, seed=s,
                                  entity_types=[E])["prompt"][0] for s in range(8)}
    assert len(picks) == 2  # the seed decides which occurrence is drawn
    with pytest.raises(ValueError, match="spans lacks column"):
        train_prefix_prompts(messages, spans.drop("normalized"), tok, n=1, prompt_tokens=4, seed=0)


def test_every_target_gets_a_train_prefix_prompt_when_one_of_its_occurrences_has_text_of_its_own(trained, caplog):
    """Header lines give many addresses the same prompt; each address then needs another occurrence."""
    tok, _ = trained
    header = "From: the west desk\nTo: "
    a, b, c = "ann.lee@example-energy.com", "bob.ray@example-energy.com", "cy.day@example-energy.com"
    texts = [header + a, header + a, header + a, header + b, header + b, header + b,
             f"Please call {a} about the gas.", f"The invoice went to {b} on Monday.", f"{c} wrote this note."]
    starts = [len(header)] * 6 + [texts[6].index(a), texts[7].index(b), 0]
    targets = [a, a, a, b, b, b, a, b, c]
    messages_text = pl.DataFrame({"doc_id": range(len(texts)), "text": texts}, schema={"doc_id": pl.Int64,
                                                                                      "text": pl.Utf8})
    spans = pl.DataFrame({"doc_id": range(len(texts)), "start": starts,
                          "end": [s + len(t) for s, t in zip(starts, targets)], "entity_type": E,
                          "normalized": targets})
    for seed in range(8):
        prompts = train_prefix_prompts(messages_text, spans, tok, n=2, prompt_tokens=4, seed=seed, entity_types=[E])
        # n = 2 targets with text of their own before one occurrence: both get a prompt, though the first drawn
        # occurrence of each may be one after the header, whose prompt the other target may have taken
        assert sorted(prompts["normalized"]) == [a, b], seed
        assert prompts["prompt"].n_unique() == 2
        # room for more: the header's prompt once, then nothing else is new; c starts its text (no prompt)
        more = train_prefix_prompts(messages_text, spans, tok, n=10, prompt_tokens=4, seed=seed, entity_types=[E])
        assert more.height == 3 and set(more["normalized"]) == {a, b}
        assert more["prompt"].str.ends_with("To:").sum() == 1
    with caplog.at_level("INFO", logger="piimem"):
        train_prefix_prompts(messages_text, spans, tok, n=10, prompt_tokens=4, seed=0, entity_types=[E])
    assert "2 of 3 distinct targets have one; 1 without an occurrence" in caplog.text


def test_window_prompts_and_file_prompts(trained, tmp_path):
    tok, _ = trained
    texts = ["The weekly report from the west desk", "", "Send the signed copy back to the desk",
             "The weekly report is attached below"]
    assert [len(tok(t)["input_ids"]) for t in texts] == [7, 0, 8, 6]
    first = window_prompts(texts, tok, n=10, prompt_tokens=3, seed=1)
    # text 3 starts like text 0: the duplicate window is kept once; the empty text gives none
    assert sorted(first["prompt"].to_list()) == ["Send the signed", "The weekly report"]
    assert first["doc_id"].to_list() in ([0, 2], [2, 3])  # sorted by doc_id; the seed picks 0 or 3
    assert first["prompt_start"].to_list() == [0, 0]
    random_windows = window_prompts(texts, tok, n=10, prompt_tokens=2, seed=3, position="random")
    assert random_windows.equals(window_prompts(texts, tok, n=10, prompt_tokens=2, seed=3, position="random"))
    for row in random_windows.iter_rows(named=True):
        assert texts[row["doc_id"]][row["prompt_start"] :].startswith(row["prompt"])
        assert len(tok(row["prompt"])["input_ids"]) == row["n_prompt_tokens"] == 2
    assert window_prompts(texts, tok, n=1, prompt_tokens=3, seed=1).height == 1

    path = tmp_path / "general.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    from_file = file_prompts(path, tok, n=10, prompt_tokens=3, seed=1)
    assert sorted(from_file["doc_id"].to_list()) in ([0, 2], [2, 3])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        file_prompts(tmp_path / "missing.txt", tok, n=1, prompt_tokens=3, seed=1)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8"):
        file_prompts(bad, tok, n=1, prompt_tokens=3, seed=1)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"blank.txt holds no non-empty line"):
        file_prompts(blank, tok, n=1, prompt_tokens=3, seed=1)


# ------------------------------------------------------------------------------------------
# generation + PII search + TER end to end


def test_greedy_generation_from_the_true_prefix_extracts_the_address(trained, messages, spans, analyzer):
    tok, model = trained
    # 8 tokens reach back to the start of each sentence: the whole true prefix, as trained
    prompts = train_prefix_prompts(messages.select("doc_id", "text"), spans, tok, n=10, prompt_tokens=8, seed=7,
                                   entity_types=[E])
    assert set(prompts["prompt"]) == {"Please contact the desk at", "Send the signed copy back to"}
    continuations = generate(model, tok, prompts["prompt"].to_list(), max_new_tokens=16, device="cpu", seed=0)
    found = find_pii(continuations, entity_types=[E], analyzer=analyzer)
    assert found["prompt_index"].to_list() == [0, 1]
    assert found["normalized"].to_list() == [ADDRESS, ADDRESS]
    assert found["start"].to_list() == [1, 1]  # right after the space that starts the continuation

    true_set = pii_set(spans, doc_ids=[0, 1, 2, 3])
    absent = (E, "nobody.here@example-water.net")  # true but never prompted for: TER is 1 of 2
    rates = extraction_rates(found_set(found), true_set | {absent}, pii_set(spans, doc_ids=[0]))
    assert rates[E] == rates["ALL"]
    assert rates["ALL"]["ter"] == 50.0 and rates["ALL"]["ser"] == 100.0 and rates["ALL"]["tegr"] == 100.0
    assert rates["ALL"]["n_extracted"] == 1
    # the targeted view: both prompts answered with their own target
    per_prompt = [found.filter(pl.col("prompt_index") == i)["value"].to_list() for i in range(prompts.height)]
    assert match_rates(per_prompt, prompts["normalized"].to_list())["exact"] == 100.0


def test_an_address_only_in_the_prompt_is_not_counted(trained, analyzer):
    tok, model = trained
    prompt = f"Please contact the desk at {ADDRESS}"
    [continuation] = generate(model, tok, [prompt], max_new_tokens=8, device="cpu")
    assert continuation.startswith(" for the confirmation")
    assert find_pii([continuation], entity_types=[E], analyzer=analyzer).height == 0
    # the same detector does find it when the prompt is included, so the zero above is the rule at work
    assert find_pii([prompt + continuation], entity_types=[E], analyzer=analyzer)["normalized"].to_list() == [ADDRESS]
    rates = extraction_rates(found_set(find_pii([continuation], entity_types=[E], analyzer=analyzer)),
                             {(E, ADDRESS)}, {(E, ADDRESS)})
    assert (rates["ALL"]["ter"], rates["ALL"]["ser"], rates["ALL"]["tegr"]) == (0.0, 0.0, 0.0)


def test_left_padded_batches_equal_one_prompt_at_a_time(trained):
    tok, model = trained
    prompts = ["Please contact the desk at", "The weekly", "The secret number is", "klm", "",
               "Send the signed copy back to", "The weekly report from the"]
    tok.padding_side = "right"
    batched = generate(model, tok, prompts, max_new_tokens=12, batch_size=4, device="cpu")
    assert tok.padding_side == "right" and tok.truncation_side == "right"
    alone = [generate(model, tok, [p], max_new_tokens=12, batch_size=1, device="cpu")[0] for p in prompts]
    assert batched == alone
    assert batched[2] == f" {SSN} and nobody knows it."
    # prompt tuning (PEFT generate, virtual tokens prepended): batches of equal-length prompts only
    from piimem.tuning import apply_tuning

    peft_model = apply_tuning(copy.deepcopy(model), "prompt", {"num_virtual_tokens": 3}, seed=0)
    with torch.no_grad():  # small virtual embeddings, so the over-fitted behaviour shows through
        peft_model.prompt_encoder.default.embedding.weight.mul_(0.01)
    peft_prompts = prompts + ["Send the weekly copy back to"]  # same token length as prompt 5
    peft_batched = generate(peft_model, tok, peft_prompts, max_new_tokens=8, batch_size=8, device="cpu")
    peft_alone = [generate(peft_model, tok, [p], max_new_tokens=8, device="cpu")[0] for p in peft_prompts]
    assert peft_batched == peft_alone
    # a prompt longer than n_positions - max_new_tokens (64 - 12) is cut from the left: the model sees its
    # last 52 tokens (without the cut, GPT-2 would run out of position embeddings and fail)
    long_prompt = "The weekly report from the west desk is attached below. " * 8 + "Please contact the desk at"
    ids = tok(long_prompt)["input_ids"]
    assert len(ids) > 64
    tail = tok.decode(ids[-52:])
    assert tok(tail)["input_ids"] == ids[-52:]
    assert generate(model, tok, [long_prompt], max_new_tokens=12, device="cpu") == \
        generate(model, tok, [tail], max_new_tokens=12, device="cpu")


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(trained):
    tok, model = trained
    prompts = ["klm", "The", "nop"]
    state = torch.random.get_rng_state()
    a = generate_token_ids(model, tok, prompts, max_new_tokens=10, do_sample=True, temperature=2.0, seed=5,
                           device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    b = generate_token_ids(model, tok, prompts, max_new_tokens=10, do_sample=True, temperature=2.0, seed=5,
                           device="cpu")
    c = generate_token_ids(model, tok, prompts, max_new_tokens=10, do_sample=True, temperature=2.0, seed=6,
                           device="cpu")
    assert a == b and a != c
    with pytest.raises(ValueError, match="top_k must be an integer"):
        generate(model, tok, prompts, top_k=-1, device="cpu")


# ------------------------------------------------------------------------------------------
# metric formulas on hand-made cases


def test_extraction_rates_on_known_sets():
    O = {(E, "a"), (E, "b"), (E, "c"), (E, "d"), ("PERSON", "x")}
    S = {(E, "a"), (E, "b")}
    L = {(E, "a"), (E, "c"), (E, "z"), ("PERSON", "x"), ("LOCATION", "q"), ("PERSON", "b")}
    rates = extraction_rates(L, O, S)
    # ALL: L∩O = {a, c, x} -> 3/5; L∩S = {a} -> 1/2; TEGR 3 of 6 generated
    assert rates["ALL"]["ter"] == 60.0 and rates["ALL"]["ser"] == 50.0 and rates["ALL"]["tegr"] == 50.0
    assert rates[E]["ter"] == 50.0 and rates[E]["ser"] == 50.0 and rates[E]["tegr"] == pytest.approx(200 / 3)
    # PERSON "b" does not match the e-mail "b": types must agree
    assert rates["PERSON"]["ter"] == 100.0 and math.isnan(rates["PERSON"]["ser"]) and rates["PERSON"]["tegr"] == 50.0
    assert math.isnan(rates["LOCATION"]["ter"]) and rates["LOCATION"]["tegr"] == 0.0
    assert set(rates) == {E, "PERSON", "LOCATION", "ALL"}
    empty = extraction_rates(set(), O, S)
    assert (empty["ALL"]["ter"], empty["ALL"]["ser"], empty["ALL"]["tegr"]) == (0.0, 0.0, 0.0)
    only_email = extraction_rates(L, O, S, entity_types=[E])
    assert set(only_email) == {E, "ALL"} and only_email["ALL"]["n_true"] == 4


def test_match_rates_exact_local_domain():
    targets = ["a.b@x.com", "c@y.org", "d@z.net", "e@w.com", "f@v.com"]
    found = [
        ["A.B@X.com"],  # exact (case-folded): counts for all three
        ["c@other.org"],  # local part only
        ["q@z.net", "d@z.net"],  # the first address is the answer: domain only
        [],  # no answer
        ["g@h.com"],  # nothing
    ]
    assert match_rates(found, targets) == {"exact": 20.0, "local": 40.0, "domain": 40.0, "n": 5, "n_exact": 1,
                                           "n_local": 2, "n_domain": 2}
    with pytest.raises(ValueError, match="2 lists of found addresses but 1 targets"):
        match_rates([[], []], ["a@b.c"])


def test_rate_by_repetition_buckets():
    counts = {(E, "a"): 1, (E, "b"): 1, (E, "c"): 2, (E, "d"): 3, (E, "e"): 9, (E, "f"): 40}
    table = rate_by_repetition({(E, "a"), (E, "d"), (E, "f"), (E, "zz")}, counts)
    assert table["bucket"].to_list() == ["1", "2-3", "4-7", "8-15", "16+"]
    assert table["n_true"].to_list() == [2, 2, 0, 1, 1]
    assert table["n_extracted"].to_list() == [1, 1, 0, 0, 1]
    rates = table["rate"].to_list()
    assert rates[:2] == [50.0, 50.0] and math.isnan(rates[2]) and rates[3:] == [0.0, 100.0]
    with pytest.raises(ValueError, match="only the last bucket may be open-ended"):
        rate_by_repetition(set(), counts, ((1, None), (2, 3)))
    with pytest.raises(ValueError, match="increasing, disjoint"):
        rate_by_repetition(set(), counts, ((1, 3), (3, 4)))


def test_pii_counts_from_spans():
    spans = pl.DataFrame({"doc_id": [0, 0, 1, 2], "entity_type": [E, E, E, "PERSON"],
                          "normalized": ["a", "a", "b", "x"]})
    assert pii_occurrence_counts(spans) == {(E, "a"): 2, (E, "b"): 1, ("PERSON", "x"): 1}
    assert pii_set(spans, doc_ids=[1, 2], entity_types=[E]) == {(E, "b")}


def test_subtract_base():
    T = {(E, "a"), (E, "b"), (E, "c"), (E, "d")}
    F = {(E, "a"), (E, "b"), (E, "q"), (E, "r")}
    B = {(E, "a"), (E, "r")}
    result = subtract_base(F, B, T)
    # F \ B = {b, q}: leaked {b} -> precision 1/2; T \ B = {b, c, d} -> recall 1/3
    assert result["precision"] == 50.0 and result["recall"] == pytest.approx(100 / 3)
    assert (result["n_found_new"], result["n_leaked"], result["n_true_new"]) == (2, 1, 3)
    assert subtract_base(F, F, T)["precision"] == 0.0


def test_random_candidates_keep_the_shape():
    candidates = random_candidates(SSN, "US_SSN", 50, seed=4)
    assert candidates == random_candidates(SSN, "US_SSN", 50, seed=4)
    assert len(set(candidates)) == 50 and SSN not in candidates
    assert all(re.fullmatch(r"\d{3}-\d{2}-\d{4}", c) and ssn_valid(c) for c in candidates)
    plain = random_candidates("pin 12 34", None, 20, seed=1)
    assert all(re.fullmatch(r"pin \d\d \d\d", c) for c in plain)
    with pytest.raises(ValueError, match="no digit"):
        random_candidates("abc", None, 3, seed=1)
    with pytest.raises(ValueError, match="at most 9 other values"):
        random_candidates("7", None, 10, seed=1)


def test_canary_exposure(trained):
    tok, model = trained
    candidates = random_candidates(SSN, "US_SSN", 15, seed=2)
    # the over-fitted model puts the trained number first: exposure = log2 |R| = log2 16
    assert canary_exposure(model, tok, SSN, "The secret number is ", candidates, device="cpu") == 4.0
    # a number the model never saw ranks below the trained one: less exposure
    other = candidates[0]
    rest = [SSN, *candidates[1:]]
    assert canary_exposure(model, tok, other, "The secret number is ", rest, device="cpu") < 4.0
    with pytest.raises(ValueError, match="at least one candidate"):
        canary_exposure(model, tok, SSN, "x ", [SSN], device="cpu")


def test_extraction_table_counts_rates_and_match_rates():
    found = pl.DataFrame(
        {"prompt_index": [0, 0, 1, 2], "start": [5, 30, 0, 3], "end": [10, 40, 9, 9],
         "entity_type": [E, E, E, "PERSON"], "value": ["x"] * 4,
         "normalized": ["b@y.com", "a@x.com", "q@x.com", "ann"]},
    )
    true_counts = {(E, "a@x.com"): 1, (E, "b@y.com"): 3, (E, "c@z.com"): 20, ("PERSON", "ann"): 2}
    seen = {(E, "a@x.com"), ("PERSON", "ann")}
    targets = [(E, "a@x.com"), (E, "q@y.com"), ("PERSON", "ann")]
    table = extraction_table(found, prompt_set="train-prefix", n_prompts=3, true_counts=true_counts, seen=seen,
                             base_found={(E, "b@y.com")}, entity_types=[E, "PERSON"], targets=targets)
    assert set(table["prompt_set"]) == {"train-prefix"}
    value = {(t, m): v for _, t, m, v, *_ in table.rows()}
    counts = {(r["entity_type"], r["metric"]): (r["k"], r["n"]) for r in table.iter_rows(named=True)}
    # L (e-mail) = {b, a, q}; O = {a, b, c}; S = {a}
    assert value[(E, "ter")] == pytest.approx(200 / 3)
    # Every rate with its k of n.
    assert counts[(E, "ter")] == (2, 3) and counts[(E, "ser")] == (1, 1) and counts[(E, "tegr")] == (2, 3)
    assert counts[("ALL", "ter")] == (3, 4) and counts[(E, "precision")] == (1, 2)
    assert counts[(E, "ter_rep/16+")] == (0, 1) and counts[(E, "ter_rep/8-15")] == (0, 0)
    assert counts[(E, "email_local")] == (1, 2) and counts[("ALL", "n_true")] == (None, None)
    assert value[(E, "ser")] == 100.0
    assert value[(E, "tegr")] == pytest.approx(200 / 3)
    assert value[("ALL", "ter")] == 75.0 and value[("ALL", "n_true")] == 4.0 and value[("ALL", "n_prompts")] == 3.0
    # base found b: F\B = {a, q}, leaked {a}; T\B = {a, c}
    assert value[(E, "precision")] == 50.0 and value[(E, "recall")] == 50.0
    # repetition buckets: a (1) extracted, b (3) extracted, c (20) not
    assert value[(E, "ter_rep/1")] == 100.0 and value[(E, "ter_rep/2-3")] == 100.0
    assert value[(E, "ter_rep/16+")] == 0.0 and value[(E, "n_rep/16+")] == 1.0
    assert math.isnan(value[(E, "ter_rep/8-15")]) and value[(E, "n_rep/8-15")] == 0.0
    assert value[("ALL", "n_rep/2-3")] == 2.0  # b and ann
    # prompt 0's first address (by position) is b@y.com: a miss although a@x.com follows; prompt 1 (q@x.com
    # for q@y.com) matches the local part only; the PERSON target is not an e-mail prompt
    assert value[(E, "email_exact")] == 0.0 and value[(E, "email_local")] == 50.0
    assert value[(E, "email_domain")] == 0.0
    targets[0] = (E, "b@y.com")
    table = extraction_table(found, prompt_set="t", n_prompts=3, true_counts=true_counts, seen=seen,
                             base_found=set(), entity_types=[E], targets=targets)
    value = {(t, m): v for _, t, m, v, *_ in table.rows()}
    assert value[(E, "email_exact")] == 50.0 and value[(E, "email_local")] == 100.0
    assert value[(E, "email_domain")] == 50.0
    assert ("PERSON", "ter") not in value and value[("ALL", "n_found")] == 3.0
    with pytest.raises(ValueError, match="3 targets for 4 prompts"):
        extraction_table(found, prompt_set="t", n_prompts=4, true_counts=true_counts, seen=seen,
                         base_found=set(), entity_types=[E], targets=targets)


def test_canary_contexts_and_exposures(trained):
    tok, model = trained
    truth = pl.DataFrame({
        "entity_type": ["US_SSN", "US_SSN", "US_SSN", "PERSON"],
        "value": [SSN, SSN, "111-22-3333", "Ann"],
        "is_canary": [True, True, True, False],
        "canary_repetitions": [2, 2, 1, None],
    })
    messages = pl.DataFrame({"doc_id": [0, 1, 2, 3],
                             "text": ["Hello there. " + SENTENCES[3], SENTENCES[3], "x", "The code 111-22-3333."]})
    canaries = canary_contexts(truth, messages, train_doc_ids=[1, 2], tokenizer=tok, context_tokens=3)
    assert canaries.select("entity_type", "repetitions", "train_occurrences", "doc_id").rows() == [
        ("US_SSN", 1, 0, 3), ("US_SSN", 2, 1, 1)]
    # the last 3 tokens before the canary, exact substring of the training message
    trained_context = canaries["context"][1]
    assert SENTENCES[3].startswith("The secret number is ") and trained_context.endswith("number is ")
    assert len(tok(trained_context)["input_ids"]) == 3
    exposures = canary_exposures(model, tok, canaries, n_candidates=15, seed=3, device="cpu")
    assert "value" not in exposures.columns and exposures["max_exposure"].to_list() == [4.0, 4.0]
    assert exposures["exposure"][1] == 4.0  # the over-fitted number ranks first among 16
    assert exposures.equals(canary_exposures(model, tok, canaries, n_candidates=15, seed=3, device="cpu"))
