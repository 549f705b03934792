"""Membership inference: per-token math, the statistics pass, attack formulas, ROC metrics, sampling."""

from __future__ import annotations

import copy
import logging
import math
import zlib

import numpy as np
import polars as pl
import pytest
import torch

from made_up_text import made_up_docs
from piimem.metrics import bootstrap_auc_ci, bootstrap_aucs, roc_auc, roc_curve, tpr_at_fpr
from piimem.mia import attack_scores, evaluate_attacks, sample_members, split_candidates
from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.scoring import (example_statistics, lowest_count, lowest_fraction_mean, min_k_pp_token_scores,
                            scored_text, token_log_prob_statistics, token_nll)

LN2 = math.log(2)


def _docs(n: int, seed: int) -> list[str]:
    return made_up_docs(n, seed, letters="klmnopqrst", vocabulary=60, words=(3, 40))


@pytest.fixture(scope="module")
def tok():
    # Capitalised copies in the training texts give upper-case tokens, so lower-casing changes tokens.
    docs = _docs(200, seed=21)
    return train_tokenizer(docs + [d.title() for d in docs[:50]], 300)


@pytest.fixture(scope="module")
def model(tok):
    return init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=5)


# ------------------------------------------------------------------------------------------
# Per-token math on hand-made logits (3-token vocabulary)


def test_min_k_pp_moments_on_a_three_token_vocabulary():
    ids = torch.tensor([[0, 1, 0, 2]])
    mask = torch.tensor([[1, 1, 1, 0]])  # the last position is padding
    logits = torch.tensor([[
        [math.log(0.5), math.log(0.25), math.log(0.25)],  # predicts id 1: p = 1/4
        [0.0, 0.0, 0.0],                                   # predicts id 0: uniform, sigma = 0
        [5.0, 1.0, 2.0],                                   # predicts the padding: ignored
        [0.0, 0.0, 0.0],
    ]])
    log_prob, mu, sigma, valid = token_log_prob_statistics(logits, ids, mask)
    assert valid.tolist() == [[True, True, False]]
    # p = (1/2, 1/4, 1/4): mu = -(1/2 ln2 + 1/4 2ln2 + 1/4 2ln2) = -1.5 ln2;
    # var = 1/2 (0.5 ln2)^2 + 2 * 1/4 (0.5 ln2)^2 = 0.25 ln2^2, sigma = 0.5 ln2
    assert log_prob[0, :2].tolist() == pytest.approx([-2 * LN2, -math.log(3)], rel=1e-6)
    assert mu[0, :2].tolist() == pytest.approx([-1.5 * LN2, -math.log(3)], rel=1e-6)
    assert sigma[0, 0].item() == pytest.approx(0.5 * LN2, rel=1e-5)
    assert sigma[0, 1].item() < 1e-6
    assert log_prob[0, 2].item() == 0.0 and mu[0, 2].item() == 0.0  # padding zeroed
    z = min_k_pp_token_scores(log_prob, mu, sigma)
    # (-2 ln2 + 1.5 ln2) / (0.5 ln2) = -1; the flat (uniform) position scores 0 instead of 0/0
    assert z[0, :2].tolist() == pytest.approx([-1.0, 0.0], abs=1e-5)

    # Predicting the likely token instead: (-ln2 + 1.5 ln2) / (0.5 ln2) = +1
    log_prob, mu, sigma, _ = token_log_prob_statistics(logits[:, :2], torch.tensor([[1, 0]]),
                                                       torch.ones(1, 2, dtype=torch.long))
    assert log_prob[0, 0].item() == pytest.approx(-LN2, rel=1e-6)
    assert min_k_pp_token_scores(log_prob, mu, sigma)[0, 0].item() == pytest.approx(1.0, rel=1e-5)


def test_virtual_token_logits_are_dropped_by_the_statistics():
    ids = torch.tensor([[2, 1]])
    hand = [math.log(0.5), math.log(0.25), math.log(0.25)]
    junk = [9.0, -3.0, 0.0]
    logits = torch.tensor([[junk, junk, hand, junk]])  # 2 virtual positions before the 2 inputs
    log_prob, mu, _, _ = token_log_prob_statistics(logits, ids, torch.ones(1, 2, dtype=torch.long))
    assert log_prob[0].tolist() == pytest.approx([-2 * LN2], rel=1e-6)
    assert mu[0].tolist() == pytest.approx([-1.5 * LN2], rel=1e-6)


def test_lowest_fraction_mean_and_count():
    values = torch.tensor([[3.0, 1.0, 2.0, 5.0, 4.0, -9.0], [7.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True] * 5 + [False], [False] * 6])
    assert lowest_fraction_mean(values, valid, 0.4)[0].item() == pytest.approx(1.5)  # floor(2) -> 1, 2
    assert lowest_fraction_mean(values, valid, 0.2)[0].item() == pytest.approx(1.0)
    assert lowest_fraction_mean(values, valid, 0.1)[0].item() == pytest.approx(1.0)  # floor 0 -> at least 1
    assert lowest_fraction_mean(values, valid, 1.0)[0].item() == pytest.approx(3.0)  # the padding -9 ignored
    assert math.isnan(lowest_fraction_mean(values, valid, 0.2)[1].item())
    assert [lowest_count(n, f) for n, f in [(100, 0.29), (10, 0.7), (4, 0.2), (0, 0.5), (7, 1.0)]] == \
        [29, 7, 1, 0, 7]


# ------------------------------------------------------------------------------------------
# The statistics pass on a tiny GPT-2 against a manual log_softmax loop


def _manual(model, ids: list[int], fraction: float, drop: int = 0) -> dict[str, float]:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, drop:].double()
    logp = torch.log_softmax(logits, dim=-1)
    lp, z = [], []
    for t in range(len(ids) - 1):
        row = logp[t]
        p = row.exp()
        mu = (p * row).sum().item()
        sigma = math.sqrt((p * (row - mu) ** 2).sum().item())
        lp.append(row[ids[t + 1]].item())
        z.append((lp[-1] - mu) / sigma)
    k = max(1, math.floor(fraction * len(lp)))
    return {"nll_mean": -sum(lp) / len(lp), "min_k": sum(sorted(lp)[:k]) / k, "min_k_pp": sum(sorted(z)[:k]) / k}


def test_statistics_match_a_manual_log_softmax_loop(tok, model):
    model.eval()
    texts = _docs(6, seed=22)
    texts[1] = texts[1].title()  # changes under lower-casing
    texts += ["", "o"]  # nothing to score
    stats = example_statistics(model, tok, texts, max_length=64, batch_size=3, device="cpu",
                               min_k_fractions=(0.2, 0.5))
    assert stats.columns == ["index", "n_tokens", "nll_mean", "nll_lower_mean", "zlib_bytes",
                             "min_k_20", "min_k_50", "min_k_pp_20", "min_k_pp_50"]
    for i in (0, 1):
        ids = tok(texts[i], truncation=True, max_length=64)["input_ids"]
        assert stats["n_tokens"][i] == len(ids) - 1
        for fraction, label in ((0.2, "20"), (0.5, "50")):
            manual = _manual(model, ids, fraction)
            assert stats["nll_mean"][i] == pytest.approx(manual["nll_mean"], rel=1e-5)
            assert stats[f"min_k_{label}"][i] == pytest.approx(manual["min_k"], rel=1e-5)
            assert stats[f"min_k_pp_{label}"][i] == pytest.approx(manual["min_k_pp"], rel=1e-4)
    spans = scored_text(tok, texts, max_length=64)
    lower_ids = tok(spans[1].lower())["input_ids"]
    assert lower_ids != tok(texts[1], truncation=True, max_length=64)["input_ids"]
    assert stats["nll_lower_mean"][1] == pytest.approx(_manual(model, lower_ids, 0.2)["nll_mean"], rel=1e-5)
    assert stats["nll_lower_mean"][1] != pytest.approx(stats["nll_mean"][1], rel=1e-4)
    assert stats["nll_lower_mean"][0] == stats["nll_mean"][0]  # already lower case: reused
    assert stats["zlib_bytes"].to_list() == [len(zlib.compress(t.encode("utf-8"))) for t in spans]
    assert stats["n_tokens"][-2:].to_list() == [0, 0]
    assert stats["nll_mean"][-2:].to_list() == [None, None]
    assert stats["min_k_pp_20"][-2:].to_list() == [None, None]

    # Same numbers whatever the batching, and the same NLL as token_nll
    one = example_statistics(model, tok, texts, max_length=64, batch_size=1, device="cpu",
                             min_k_fractions=(0.2, 0.5), lowercase=False)
    assert "nll_lower_mean" not in one.columns
    for column in ("nll_mean", "min_k_20", "min_k_pp_50"):
        assert one[column][:6].to_list() == pytest.approx(stats[column][:6].to_list(), rel=1e-5)
    nll = token_nll(model, tok, texts, max_length=64, device="cpu")
    assert stats["n_tokens"].to_list() == nll["n_tokens"].to_list()
    assert stats["nll_mean"][:6].to_list() == pytest.approx((nll["nll_sum"] / nll["n_tokens"])[:6].to_list(),
                                                            rel=1e-5)


def test_zlib_and_lowercase_read_the_truncated_span_that_the_loss_scores(tok, model):
    model.eval()
    # Upper case splits into many tokens, so a lower-cased span needs fewer tokens than its original.
    texts = [" ".join(_docs(8, seed=24)).upper(), _docs(1, seed=25)[0][:60].title()]
    max_length = 16
    ids = tok(texts[0])["input_ids"]
    assert len(ids) > 3 * max_length  # truncated: the loss reads the first 16 tokens only
    # By hand: the characters of the first 16 tokens (byte-level BPE decodes a prefix to the text's prefix).
    span = tok.decode(ids[:max_length])
    assert texts[0].startswith(span) and len(span) < len(texts[0]) // 3
    stats = example_statistics(model, tok, texts, max_length=max_length, device="cpu")
    assert stats["zlib_bytes"][0] == len(zlib.compress(span.encode("utf-8")))
    assert stats["zlib_bytes"][0] < len(zlib.compress(texts[0].encode("utf-8")))
    lower_ids = tok(span.lower())["input_ids"]
    # Lower-casing the whole text and cutting it at 16 of its own tokens would read other characters.
    assert lower_ids != tok(texts[0].lower(), truncation=True, max_length=max_length)["input_ids"]
    assert stats["nll_lower_mean"][0] == pytest.approx(_manual(model, lower_ids, 0.2)["nll_mean"], rel=1e-5)
    # A text that fits is read whole, as before.
    assert len(tok(texts[1])["input_ids"]) <= 64
    fits = example_statistics(model, tok, texts[1:], max_length=64, device="cpu")
    assert fits["zlib_bytes"][0] == len(zlib.compress(texts[1].encode("utf-8")))
    lower_ids = tok(texts[1].lower())["input_ids"]
    assert fits["nll_lower_mean"][0] == pytest.approx(_manual(model, lower_ids, 0.2)["nll_mean"], rel=1e-5)


def test_statistics_under_prompt_tuning_drop_virtual_tokens(tok, model):
    from peft import PromptTuningConfig, get_peft_model

    prompted = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    prompted.eval()
    text = _docs(1, seed=23)[0]
    stats = example_statistics(prompted, tok, [text], max_length=32, device="cpu", lowercase=False)
    manual = _manual(prompted, tok(text, truncation=True, max_length=32)["input_ids"], 0.2, drop=4)
    assert stats["nll_mean"][0] == pytest.approx(manual["nll_mean"], rel=1e-5)
    assert stats["min_k_pp_20"][0] == pytest.approx(manual["min_k_pp"], rel=1e-4)


def test_statistics_argument_errors(tok, model):
    with pytest.raises(ValueError, match=r"example_statistics: min_k_fractions must be numbers in \(0, 1\]"):
        example_statistics(model, tok, ["a"], max_length=8, min_k_fractions=(20,))
    with pytest.raises(ValueError, match="example_statistics: max_length must be an integer >= 2"):
        example_statistics(model, tok, ["a"], max_length=1)


# ------------------------------------------------------------------------------------------
# Attack formulas on a hand-made statistics table


def _stats(nll, lower, zbytes, mink, minkpp) -> pl.DataFrame:
    return pl.DataFrame({"index": list(range(len(nll))), "n_tokens": [5] * len(nll), "nll_mean": nll,
                         "nll_lower_mean": lower, "zlib_bytes": zbytes, "min_k_20": mink, "min_k_pp_20": minkpp},
                        schema_overrides={"nll_mean": pl.Float64, "nll_lower_mean": pl.Float64})


def test_attack_formulas_by_hand():
    target = _stats([2.0, 4.0, None], [3.0, 4.0, None], [10, 40, 8], [-5.0, -7.0, None], [-0.5, -1.5, None])
    reference = _stats([3.0, 3.5, None], [0.0, 0.0, None], [10, 40, 8], [0.0, 0.0, None], [0.0, 0.0, None])
    scores = attack_scores(target, reference, k=0.2, reference="base/tiny-gpt2")
    assert scores.columns == ["index", "attack", "score", "reference"]
    by = {a: g.sort("index")["score"].to_list() for (a,), g in scores.group_by(["attack"])}
    assert by["loss"] == [-2.0, -4.0, None]
    assert by["ref"] == [1.0, -0.5, None]           # -(2 - 3), -(4 - 3.5)
    assert by["zlib"] == [-0.2, -0.1, None]         # -2/10, -4/40
    assert by["lowercase"] == [1.5, 1.0, None]      # 3/2, 4/4
    assert by["min_k_20"] == [-5.0, -7.0, None]
    assert by["min_k_pp_20"] == [-0.5, -1.5, None]
    refs = scores.filter(pl.col("attack") == "ref")["reference"].unique().to_list()
    assert refs == ["base/tiny-gpt2"]
    assert scores.filter(pl.col("attack") != "ref")["reference"].null_count() == 15

    only = attack_scores(target, None, ["loss", "min_k"], k=0.2)
    assert only["attack"].unique(maintain_order=True).to_list() == ["loss", "min_k_20"]


def test_attack_errors():
    target = _stats([2.0], [2.0], [10], [-1.0], [-1.0])
    with pytest.raises(ValueError, match="needs `reference`, the name of the reference model"):
        attack_scores(target, target, ["ref"])
    with pytest.raises(ValueError, match="needs reference_stats"):
        attack_scores(target, None, ["ref"], reference="base")
    with pytest.raises(ValueError, match="needs column 'min_k_10'.*min_k_fractions"):
        attack_scores(target, None, ["min_k"], k=0.1)
    with pytest.raises(ValueError, match="unknown or no attacks"):
        attack_scores(target, None, ["gradnorm"])
    with pytest.raises(ValueError, match="cover exactly the target's indexes"):
        attack_scores(target, target.with_columns(pl.col("index") + 1), ["ref"], reference="base")


# ------------------------------------------------------------------------------------------
# ROC metrics


def test_auc_and_roc_curve_with_ties_by_hand():
    assert roc_auc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    # member 2 beats both; member 1 ties one non-member (1/2) and beats the other: 3.5 / 4
    scores, labels = [2.0, 1.0, 1.0, 0.0], [True, True, False, False]
    assert roc_auc(scores, labels) == pytest.approx(0.875)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert thresholds.tolist() == [math.inf, 2.0, 1.0, 0.0]
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.875)
    assert roc_auc([3.0] * 6, [1, 0, 1, 0, 1, 0]) == 0.5
    assert roc_auc([1.0, 2.0], [1, 0]) == 0.0  # orientation: larger = member


def test_auc_matches_pairwise_count_and_curve_area_on_random_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=300), 1)
    labels = rng.random(300) < 0.4
    scores[labels] += 0.4
    pairs = scores[labels][:, None] - scores[~labels][None, :]
    expected = ((pairs > 0) + 0.5 * (pairs == 0)).mean()
    assert roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, _ = roc_curve(scores, labels)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)


def test_tpr_at_fpr_takes_the_largest_tpr_at_or_below_the_target():
    members, others = [10, 9, 8, 3], [7, 6, 2, 1]
    scores, labels = members + others, [1] * 4 + [0] * 4
    assert tpr_at_fpr(scores, labels, 0.0) == 0.75
    assert tpr_at_fpr(scores, labels, 0.49) == 0.75
    assert tpr_at_fpr(scores, labels, 0.5) == 1.0
    # a tie at the top cannot be split: no threshold has FPR 0 and TPR > 0
    assert tpr_at_fpr([5, 5, 1, 0], [1, 0, 1, 0], 0.1) == 0.0
    assert tpr_at_fpr([5, 5, 1, 0], [1, 0, 1, 0], 0.5) == 1.0  # threshold 1: both members, one non-member


def test_metric_errors():
    with pytest.raises(ValueError, match="need both members and non-members, got 2 members and 0"):
        roc_auc([1, 2], [1, 1])
    with pytest.raises(ValueError, match="scores contain 1 NaN"):
        roc_auc([1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        roc_curve([1, 2, 3], [1, 0])


def test_bootstrap_ci_is_seeded_contains_the_auc_and_narrows_with_data():
    rng = np.random.default_rng(2)

    def sample(n):
        labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        return rng.normal(size=2 * n) + 0.5 * labels, labels

    scores, labels = sample(100)
    auc = roc_auc(scores, labels)
    low, high = bootstrap_auc_ci(scores, labels, n=500, seed=7)
    assert low < auc < high
    assert bootstrap_auc_ci(scores, labels, n=500, seed=7) == (low, high)
    assert bootstrap_auc_ci(scores, labels, n=500, seed=8) != (low, high)
    big_low, big_high = bootstrap_auc_ci(*sample(1600), n=500, seed=7)
    assert big_high - big_low < 0.5 * (high - low)  # 16x the data: about 1/4 the width
    assert bootstrap_auc_ci([3, 2, 1, 0], [1, 1, 0, 0], n=50, seed=0) == (1.0, 1.0)
    assert bootstrap_auc_ci([1, 1, 1, 1], [1, 0, 1, 0], n=50, seed=0) == (0.5, 0.5)
    narrow_low, narrow_high = bootstrap_auc_ci(scores, labels, n=500, seed=7, level=0.5)
    assert low < narrow_low < narrow_high < high


def test_bootstrap_replicates_equal_the_auc_of_the_drawn_resamples():
    scores = np.array([0.3, 0.9, 0.5, 0.5, 0.1, 0.7, 0.5, 0.2])
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    aucs = bootstrap_aucs(scores, labels, n=20, seed=4)
    # Reproduce the draws (documented order: non-member indices, then member indices, per chunk)
    rng = np.random.default_rng(4)
    other_draws = rng.integers(0, 4, size=(20, 4))
    member_draws = rng.integers(0, 4, size=(20, 4))
    for b in range(20):
        expected = roc_auc(np.r_[scores[labels][member_draws[b]], scores[~labels][other_draws[b]]],
                           np.r_[np.ones(4, bool), np.zeros(4, bool)])
        assert aucs[b] == pytest.approx(expected, abs=1e-12)


def test_evaluate_attacks_table():
    rng = np.random.default_rng(3)
    n = 200
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    strong = rng.normal(size=2 * n) + 2.0 * member
    scores = pl.DataFrame({"index": list(range(2 * n)) * 2, "attack": ["a"] * (2 * n) + ["b"] * (2 * n),
                           "score": np.r_[strong, np.zeros(2 * n)], "reference": [None] * (4 * n)},
                          schema_overrides={"reference": pl.Utf8})
    scores = scores.with_columns(pl.when((pl.col("index") == 0) & (pl.col("attack") == "a")).then(None)
                                 .otherwise(pl.col("score")).alias("score"))
    labels = pl.DataFrame({"index": list(range(2 * n)), "member": member})
    table = evaluate_attacks(scores, labels, bootstrap=200, seed=1)
    assert table["attack"].to_list() == ["a", "b"]
    assert table.columns[-6:] == [f"tpr_at_{pct}pct_fpr{end}" for pct in ("1", "0_1") for end in ("", "_low", "_high")]
    a, b = table.row(0, named=True), table.row(1, named=True)
    assert (a["n_members"], a["n_nonmembers"], a["n_unscored"]) == (n - 1, n, 1)
    assert a["auc"] > 0.9 and a["auc_low"] < a["auc"] < a["auc_high"]
    assert b["auc"] == 0.5 and b["tpr_at_1pct_fpr"] == 0.0
    # The TPR's bootstrap interval (the threshold chosen anew in each resample) holds the point estimate.
    assert a["tpr_at_1pct_fpr_low"] <= a["tpr_at_1pct_fpr"] <= a["tpr_at_1pct_fpr_high"]
    assert a["tpr_at_1pct_fpr_high"] - a["tpr_at_1pct_fpr_low"] > 0.05


# ------------------------------------------------------------------------------------------
# Member / non-member sampling


def _split_tables(seed: int):
    rng = np.random.default_rng(seed)
    # train skews long, test skews short: an unmatched sample would differ in length
    train_lengths = rng.integers(5, 400, size=300) // np.where(rng.random(300) < 0.3, 4, 1)
    test_lengths = rng.integers(5, 400, size=200) // np.where(rng.random(200) < 0.7, 4, 1)
    # Distinct texts (the sample keeps one text per body): the doc id leads each one.
    train = pl.DataFrame({"doc_id": np.arange(300), "text": [f"{i}:" + "x" * int(k) for i, k in
                                                            enumerate(train_lengths)]})
    test = pl.DataFrame({"doc_id": np.arange(1000, 1200), "text": [f"{1000 + i}:" + "y" * int(k) for i, k in
                                                                  enumerate(test_lengths)]})
    return train, test


def test_sampling_is_balanced_matched_seeded_and_disjoint():
    train, test = _split_tables(0)
    sample = sample_members(train, test, n=60, seed=1, length_bins=5)
    assert sample.columns == ["doc_id", "text", "member", "length", "length_bin", "group"]
    assert sample["group"].to_list() == sample["doc_id"].to_list()  # without groups each text is its own
    members, others = sample.filter(pl.col("member")), sample.filter(~pl.col("member"))
    assert members.height == others.height == 60
    assert set(members["doc_id"]) <= set(train["doc_id"]) and set(others["doc_id"]) <= set(test["doc_id"])
    assert sample["doc_id"].n_unique() == 120
    histogram = lambda df: df["length_bin"].value_counts().sort("length_bin").rows()  # noqa: E731
    assert histogram(members) == histogram(others)
    assert len(histogram(members)) == 5
    assert abs(members["length"].mean() - others["length"].mean()) < \
        abs(train["text"].str.len_chars().mean() - test["text"].str.len_chars().mean()) / 2
    assert sample.equals(sample_members(train.sample(fraction=1.0, shuffle=True, seed=9), test, n=60, seed=1,
                                        length_bins=5))  # input row order does not matter
    assert not sample.equals(sample_members(train, test, n=60, seed=2, length_bins=5))


def test_sampling_caps_n_and_logs(caplog):
    train, test = _split_tables(0)
    everything = sample_members(train, test, n=None, seed=1, length_bins=5)
    available = everything.height // 2
    assert available < 200
    with caplog.at_level(logging.WARNING, logger="piimem"):
        capped = sample_members(train, test, n=10_000, seed=1, length_bins=5)
    assert capped.height == 2 * available
    assert f"only {available} length-matched pairs" in caplog.text


def test_sampling_keeps_one_text_per_body_and_leaves_out_bodies_trained_on_twice(caplog):
    # train: bodies a (twice: a folder copy), b, c (b and c in one thread), d; test: e (twice), f, g
    train = pl.DataFrame({"doc_id": [0, 1, 2, 3, 4], "text": ["a text", "a text", "b text", "c text", "d text"],
                          "body_hash": ["a", "a", "b", "c", "d"], "group": [0, 0, 2, 2, 4]})
    test = pl.DataFrame({"doc_id": [10, 11, 12, 13], "text": ["e text", "e text", "f text", "g text"],
                         "body_hash": ["e", "e", "f", "g"], "group": [10, 10, 12, 12]})
    with caplog.at_level(logging.INFO, logger="piimem"):
        sample = sample_members(train, test, n=None, seed=0, length_bins=1)
    members, others = sample.filter(pl.col("member")), sample.filter(~pl.col("member"))
    assert members["doc_id"].to_list() == [2, 3, 4]  # a was trained on twice: left out
    assert others["doc_id"].to_list() == [10, 12, 13]  # one of e's two copies
    assert sample["text"].n_unique() == sample.height
    assert members["group"].to_list() == [2, 2, 4] and others["group"].to_list() == [10, 12, 12]
    assert "1 training bodies occur more than once in training (2 messages)" in caplog.text


def test_split_candidates_carry_the_link_group():
    messages = pl.DataFrame({"doc_id": [0, 1, 2], "text": ["x", "y", "z"], "body_hash": ["h0", "h1", "h2"]})
    splits = pl.DataFrame({"doc_id": [0, 1, 2], "split": ["train", "test", "train"], "group": [0, 1, 0]})
    train = split_candidates(messages, splits, "train")
    assert train.rows() == [(0, "x", "h0", 0), (2, "z", "h2", 0)]
    # a splits table without groups (written before link groups were kept): each message its own group
    assert split_candidates(messages, splits.drop("group"), "train")["group"].to_list() == [0, 2]


def test_sampling_by_tokens_and_errors(tok):
    docs = _docs(40, seed=24)
    train = pl.DataFrame({"doc_id": range(20), "text": docs[:20] + [""] * 0})
    test = pl.DataFrame({"doc_id": range(20, 41), "text": docs[20:] + ["o"]})
    sample = sample_members(train, test, n=8, seed=0, length_bins=2, tokenizer=tok)
    assert sample.filter(pl.col("member")).height == 8
    assert sample["length"].to_list() == [len(tok(t)["input_ids"]) for t in sample["text"]]
    assert "o" not in sample["text"].to_list()  # one token: nothing to score
    with pytest.raises(ValueError, match="1 doc_id.s. are in both train and test"):
        sample_members(train, test.with_columns(pl.col("doc_id") - 1), n=5, seed=0)
    with pytest.raises(ValueError, match="train table lacks column.s. \\['text'\\]"):
        sample_members(train.drop("text"), test, n=5, seed=0)


def test_statistics_do_not_depend_on_the_vocabulary_block_size(tok, model, monkeypatch):
    import piimem.scoring as scoring

    texts = _docs(4, seed=25)
    whole = example_statistics(model, tok, texts, max_length=64, batch_size=4, device="cpu", lowercase=False)
    # 3 positions per block: rows split into many blocks, with a partial block at each row's end
    monkeypatch.setitem(scoring._VOCAB_BLOCK_ELEMENTS, "cpu", 3 * len(tok))
    blocked = example_statistics(model, tok, texts, max_length=64, batch_size=4, device="cpu", lowercase=False)
    for column in ("nll_mean", "min_k_20", "min_k_pp_20"):
        assert blocked[column].to_list() == pytest.approx(whole[column].to_list(), rel=1e-6)


def test_the_blind_baseline_scores_like_an_attack_and_skips_texts_a_view_left_out(tok):
    from piimem.blind import BlindConfig
    from piimem.metrics import roc_auc
    from piimem.mia import blind_baseline

    rng = np.random.default_rng(8)
    words = {True: ["gas", "pipeline", "tariff", "meter"], False: ["golf", "dinner", "party", "tickets"]}
    texts = [" ".join(rng.choice(words[i < 40], 12)) + f" note {i}" for i in range(80)]
    sample = pl.DataFrame({"index": np.arange(80), "member": np.arange(80) < 40, "text": texts,
                           "group": np.arange(80) // 2})
    sample = sample.with_columns(pl.when(pl.col("index") == 5).then(None).otherwise(pl.col("text")).alias("text"))
    scores = blind_baseline(sample, tok, 64, BlindConfig(seed=1))
    assert scores.columns == ["index", "attack", "score", "reference"] and set(scores["attack"]) == {"blind"}
    assert 5 not in scores["index"].to_list() and scores.height == 79
    joined = scores.join(sample, on="index")
    assert roc_auc(joined["score"], joined["member"]) > 0.9  # topics tell members apart without any model
    table = evaluate_attacks(scores, sample.select("index", "member", "group"), bootstrap=50)
    assert table["attack"].to_list() == ["blind"] and table["n_groups"].to_list() == [40]
