"""The tiny GPT-2's pre-training strings (piimem.corpus.pretraining.pii_of) and O_ft (O without them,
piimem.extraction.found.pretraining_pii): a training string is "in pre-training" only when the same
(type, normal form) is in the text the base model trains on."""

from __future__ import annotations

import polars as pl

from piimem.corpus.pretraining import outsider_corpus, pii_of, without_strings
from piimem.extraction.found import pii_set, pretraining_pii
from piimem.models import TINY_GPT2

TEXT_HEADERS = ("From", "To", "Subject")


def test_o_ft_keeps_a_training_address_that_is_only_in_a_header_the_text_leaves_out():
    # One outsider's message: its text holds "rsmith@brightwater.com"; its Cc line (in the file, not in the
    # text) holds the training address "rsmith@msn.com", whose local part the text also holds.
    outsiders = pl.DataFrame({"path": ["o/1."], "text": ["From: kim@brightwater.com\nTo: rsmith@brightwater.com\n"
                                                         "Subject: gas\n\nCall Kim Ray in Houston."]})
    truth = pl.DataFrame({
        "path": ["o/1."] * 6,
        "field": ["From", "To", "Cc", "X-To", "body", "body"],
        "entity_type": ["EMAIL_ADDRESS", "EMAIL_ADDRESS", "EMAIL_ADDRESS", "PERSON", "PERSON", "LOCATION"],
        "value": ["kim@brightwater.com", "rsmith@brightwater.com", "rsmith@msn.com", "Rob Smith", "Kim Ray",
                  "Houston"],
    })
    pretraining = pii_of(truth, outsiders, TEXT_HEADERS)
    assert pretraining.rows() == [("EMAIL_ADDRESS", "kim@brightwater.com"),
                                  ("EMAIL_ADDRESS", "rsmith@brightwater.com"), ("LOCATION", "houston"),
                                  ("PERSON", "kim ray")]
    # header names are matched as corpus.text_headers spells them, in any case
    assert pii_of(truth, outsiders, ("from", "to", "CC")).height == 5

    # O_ft: the training split's strings less those of the pre-training text, compared as whole strings
    messages = pl.DataFrame({"doc_id": [0], "text": ["To: rsmith@msn.com\n\nRob Smith, Kim Ray"]})
    splits = pl.DataFrame({"doc_id": [0], "split": ["train"]})
    spans = pl.DataFrame({"doc_id": [0] * 3, "entity_type": ["EMAIL_ADDRESS", "PERSON", "PERSON"],
                          "normalized": ["rsmith@msn.com", "rob smith", "kim ray"]})
    known = pretraining_pii(spans, messages, splits, TINY_GPT2, pretraining)
    o_ft = pii_set(spans, [0]) - known
    assert o_ft == {("EMAIL_ADDRESS", "rsmith@msn.com"), ("PERSON", "rob smith")}
    assert pretraining_pii(spans, messages, splits, "gpt2", pretraining) is None  # unknown pre-training data


def test_without_strings_drops_a_training_string_inside_a_longer_word():
    # Conservative on purpose: "Ann Lee" inside "Ann Leeds" still puts the string's characters in the text.
    outsiders = pl.DataFrame({"doc_id": [0, 1, 2], "text": ["Dear Ann Leeds,", "Dear ANN LEE,", "Dear Ann,"]})
    assert without_strings(outsiders, ["Ann Lee"])["doc_id"].to_list() == [2]


def test_every_pretraining_string_of_a_generated_outsiders_world_is_in_its_text():
    options = {"n_mailboxes": 2, "messages_per_mailbox": 12, "pretrain": {"n_mailboxes": 3, "seed": 7}}
    messages, truth = outsider_corpus(options, text_headers=TEXT_HEADERS, max_file_bytes=1_000_000)
    pretraining = pii_of(truth, messages, TEXT_HEADERS)
    text = "\n".join(messages["text"].to_list()).lower()
    words = pretraining.filter(pl.col("entity_type").is_in(["EMAIL_ADDRESS", "PERSON"]))
    assert words.height > 50
    assert [v for v in words["normalized"].to_list() if v not in text] == []
    # the files' other header fields (X-From, X-To, Cc ...) hold strings the text does not: the old set had them
    everything = pii_of(truth, messages, ("From", "To", "Subject", "Cc", "X-From", "X-To", "X-cc"))
    assert everything.height > pretraining.height
