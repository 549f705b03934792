"""Scoring pass (token NLLs) and the perplexity formulas, on a tiny GPT-2 and PEFT prompt methods."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from piimem.metrics import perplexity
from made_up_text import made_up_docs
from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.scoring import token_nll


def _made_up_docs(n: int, seed: int) -> list[str]:
    return made_up_docs(n, seed, letters="klmnopqrst", vocabulary=60, words=(3, 40))


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(_made_up_docs(200, seed=11), 300)


@pytest.fixture(scope="module")
def model(tok):
    return init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=3)


def _three_token_text(tok) -> str:
    for doc in _made_up_docs(50, seed=12):
        for n_words in range(1, 4):
            text = " ".join(doc.split()[:n_words])
            if len(tok(text)["input_ids"]) == 3:
                return text
    raise AssertionError("no 3-token text among the candidates")


# ------------------------------------------------------------------------------------------
# metrics.perplexity


def test_perplexity_mean_and_corpus_formulas():
    result = perplexity([2.0, 9.0, 5.0, 1.0], [1, 3, 0, None])  # the last two have no scored token
    assert result["ppl_mean"] == pytest.approx((math.exp(2.0) + math.exp(3.0)) / 2)
    assert result["ppl_corpus"] == pytest.approx(math.exp(11.0 / 4))
    assert set(result) == {"ppl_mean", "ppl_corpus"}
    assert perplexity([1e6], [1])["ppl_mean"] == math.inf


def test_perplexity_errors():
    with pytest.raises(ValueError, match="no example has a scored token"):
        perplexity([1.0, 0.0], [0, 0])
    with pytest.raises(ValueError, match="nll_sum has 2 values but n_tokens has 1"):
        perplexity([1.0, 2.0], [3])


# ------------------------------------------------------------------------------------------
# token_nll


def test_three_token_text_matches_a_hand_computed_log_softmax(tok, model):
    text = _three_token_text(tok)
    ids = tok(text)["input_ids"]
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double().tolist()
    # tokens 2 and 3 are scored, each from the logits at the previous position
    expected = 0.0
    for position in (0, 1):
        row = logits[position]
        log_normaliser = math.log(sum(math.exp(v) for v in row))
        expected += log_normaliser - row[ids[position + 1]]

    scores = token_nll(model, tok, [text], max_length=16, device="cpu")
    assert scores.columns == ["index", "nll_sum", "n_tokens"]
    assert scores["n_tokens"].to_list() == [2]
    assert scores["nll_sum"][0] == pytest.approx(expected, rel=1e-5)
    ppl = perplexity(scores["nll_sum"], scores["n_tokens"])
    assert ppl["ppl_mean"] == pytest.approx(math.exp(expected / 2), rel=1e-5)
    assert ppl["ppl_corpus"] == pytest.approx(ppl["ppl_mean"])


def test_batching_padding_and_order_do_not_change_scores(tok, model):
    texts = _made_up_docs(9, seed=13) + ["", "o"]
    one = token_nll(model, tok, texts, max_length=64, batch_size=1, device="cpu")
    batched = token_nll(model, tok, texts, max_length=64, batch_size=4, device="cpu", per_token=True)
    assert batched["index"].to_list() == list(range(len(texts)))
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    assert batched["n_tokens"].to_list() == [max(min(n, 64) - 1, 0) for n in lengths]
    assert batched["n_tokens"][-2] == 0 and batched["nll_sum"][-2] == 0.0
    assert batched["nll_sum"].to_list() == pytest.approx(one["nll_sum"].to_list(), rel=1e-5)
    per_token = batched["token_nll"].to_list()
    assert [len(x) for x in per_token] == batched["n_tokens"].to_list()
    assert [sum(x) for x in per_token] == pytest.approx(batched["nll_sum"].to_list(), rel=1e-6)


def test_truncation_keeps_the_beginning_and_mode_is_restored(tok, model):
    text = " ".join(_made_up_docs(5, seed=14))
    ids = tok(text)["input_ids"]
    assert len(ids) > 10
    model.train()
    cut = token_nll(model, tok, [text], max_length=10, device="cpu")
    assert model.training
    prefix = tok.decode(ids[:10])
    assert tok(prefix)["input_ids"] == ids[:10]
    assert cut["n_tokens"].to_list() == [9]
    whole_prefix = token_nll(model, tok, [prefix], max_length=64, device="cpu")
    assert cut["nll_sum"][0] == pytest.approx(whole_prefix["nll_sum"][0], rel=1e-5)


def test_argument_errors(tok, model):
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        token_nll(model, tok, ["a"], max_length=1)
    with pytest.raises(ValueError, match="item 1 is NoneType"):
        token_nll(model, tok, ["a", None], max_length=8)


def _manual_nll(peft_model, ids: list[int], drop: int) -> float:
    with torch.no_grad():
        mask = torch.ones(1, len(ids), dtype=torch.long)
        logits = peft_model(input_ids=torch.tensor([ids]), attention_mask=mask).logits
    assert logits.shape[1] == len(ids) + drop
    logp = torch.log_softmax(logits[0, drop:].double(), dim=-1)
    return -sum(logp[t, ids[t + 1]].item() for t in range(len(ids) - 1))


def test_prompt_tuning_virtual_token_logits_are_dropped(tok, model):
    from peft import PromptTuningConfig, get_peft_model

    n_virtual = 5
    prompted = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM",
                                                                       num_virtual_tokens=n_virtual))
    prompted.eval()
    texts = _made_up_docs(3, seed=15)
    scores = token_nll(prompted, tok, texts, max_length=32, batch_size=2, device="cpu")
    for i, text in enumerate(texts):
        ids = tok(text, truncation=True, max_length=32)["input_ids"]
        assert scores["n_tokens"][i] == len(ids) - 1
        assert scores["nll_sum"][i] == pytest.approx(_manual_nll(prompted, ids, drop=n_virtual), rel=1e-5)
    plain = token_nll(model, tok, texts, max_length=32, device="cpu")
    # the prompt matters, so dropping the wrong positions could not go unnoticed
    assert scores["nll_sum"].to_list() != pytest.approx(plain["nll_sum"].to_list(), rel=1e-3)


def test_prefix_tuning_keeps_every_position(tok, model):
    from peft import PrefixTuningConfig, get_peft_model

    prefixed = get_peft_model(copy.deepcopy(model),
                              PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    prefixed.eval()
    texts = _made_up_docs(3, seed=16)
    scores = token_nll(prefixed, tok, texts, max_length=32, batch_size=3, device="cpu")
    for i, text in enumerate(texts):
        ids = tok(text, truncation=True, max_length=32)["input_ids"]
        assert scores["n_tokens"][i] == len(ids) - 1
        assert scores["nll_sum"][i] == pytest.approx(_manual_nll(prefixed, ids, drop=0), rel=1e-5)
