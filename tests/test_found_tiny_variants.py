"""O_ft for every tiny GPT-2 (piimem.extraction.found.pretraining_pii): a sized one such as tiny-gpt2-4x256 is
pre-trained on the same outsiders' mail as tiny-gpt2, so its pre-training strings are known too and are left out
of O (workflow/rules/common.smk wires outsiders.pii.parquet to every model `is_tiny_gpt2` accepts)."""

from __future__ import annotations

import polars as pl
import pytest

from piimem.extraction.found import pii_set, pretraining_pii

# One training message and one public one; the outsiders' mail shares one address with the training message.
MESSAGES = pl.DataFrame({"doc_id": [0, 1], "text": ["To: ann@a.com, bob@b.com", "From: cy@c.com"]})
SPLITS = pl.DataFrame({"doc_id": [0, 1], "split": ["train", "public"]})
SPANS = pl.DataFrame({"doc_id": [0, 0, 1], "entity_type": ["EMAIL_ADDRESS"] * 3,
                      "normalized": ["ann@a.com", "bob@b.com", "cy@c.com"]})
OUTSIDERS = pl.DataFrame({"entity_type": ["EMAIL_ADDRESS", "PERSON"], "normalized": ["bob@b.com", "dee lo"]})


@pytest.mark.parametrize("base_model", ["tiny-gpt2", "tiny-gpt2-4x256", "tiny-gpt2-1x8"])
def test_every_tiny_gpt2_leaves_the_outsiders_pii_out_of_o_ft(base_model):
    known = pretraining_pii(SPANS, MESSAGES, SPLITS, base_model, OUTSIDERS)
    assert known == {("EMAIL_ADDRESS", "bob@b.com"), ("PERSON", "dee lo")}
    assert pii_set(SPANS, [0]) - known == {("EMAIL_ADDRESS", "ann@a.com")}


@pytest.mark.parametrize("base_model", ["tiny-gpt2", "tiny-gpt2-4x256"])
def test_without_outsiders_a_tiny_gpt2_uses_the_public_split(base_model):
    assert pretraining_pii(SPANS, MESSAGES, SPLITS, base_model) == {("EMAIL_ADDRESS", "cy@c.com")}


@pytest.mark.parametrize("base_model", ["gpt2", "tiny-gpt2-4", "tiny-gpt2-0x8"])
def test_other_base_models_have_no_known_pretraining_pii(base_model):
    assert pretraining_pii(SPANS, MESSAGES, SPLITS, base_model, OUTSIDERS) is None
