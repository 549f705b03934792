"""Intervals (piimem.intervals and the report's bootstrap): exact where they claim to be, agreeing with
scipy, and covering a known truth at their nominal rate in seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from piimem.intervals import (
    chunk_sizes,
    clopper_pearson,
    draw_counts,
    percentile_interval,
    resample_counts,
    t_interval,
    trend_p_value,
)
from piimem.metrics import SortedScores, bootstrap_aucs, bootstrap_roc, reductions_vs_baseline, roc_auc, tpr_at_fpr

SIMULATIONS = 1000


def test_clopper_pearson_is_the_beta_quantile_interval():
    for k, n in ((0, 661), (1, 661), (5, 40), (40, 40)):
        low, high = clopper_pearson(k, n)
        assert low == pytest.approx(0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1), abs=1e-9)
        assert high == pytest.approx(1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k), abs=1e-9)
    assert clopper_pearson(0, 661)[1] == pytest.approx(1 - 0.025 ** (1 / 661))  # 0.56 %: the figure
    assert clopper_pearson(1, 661) == pytest.approx((0.0000383, 0.0084), abs=2e-6)
    assert all(math.isnan(b) for b in clopper_pearson(0, 0))
    with pytest.raises(ValueError, match="k must lie in 0..n"):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError, match="fraction in"):
        clopper_pearson(1, 2, level=95)


def test_clopper_pearson_covers_the_true_rate_at_least_at_its_level():
    rng = np.random.default_rng(1)
    p, n = 0.3, 120
    draws = rng.binomial(n, p, SIMULATIONS)
    bounds = {k: clopper_pearson(int(k), n) for k in np.unique(draws)}
    covered = np.mean([bounds[k][0] <= p <= bounds[k][1] for k in draws])
    assert 0.93 <= covered <= 0.985  # exact intervals are conservative: at least 95 % but not far above


def test_t_interval_across_seeds_covers_the_mean_at_its_level():
    rng = np.random.default_rng(2)
    covered = []
    for _ in range(SIMULATIONS):
        low, high = t_interval(rng.normal(10.0, 2.0, 3))
        covered.append(low <= 10.0 <= high)
    assert 0.93 <= np.mean(covered) <= 0.97
    assert all(math.isnan(b) for b in t_interval([1.0]))
    assert t_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)
    # NaN left out: two values 1 and 3, sd sqrt(2), t(0.975, 1 df) = 12.706
    assert t_interval([1.0, 3.0, math.nan]) == pytest.approx((2 - 12.706205, 2 + 12.706205))


def test_paired_bootstrap_of_a_ter_reduction_covers_the_truth():
    # Each string of a population is extracted by the baseline with p 0.2 and, independently, by the method
    # with p 0.05: the true reduction is 75 %. Per simulation 400 strings, 500 paired resamples.
    rng = np.random.default_rng(3)
    covered = []
    for _ in range(SIMULATIONS):
        base = rng.random(400) < 0.2
        method = rng.random(400) < 0.05
        weights = draw_counts(rng, 400, 500)
        rates = [100 * (weights @ x) / 400 for x in (method, base)]
        replicates = reductions_vs_baseline(rates[0][:, None], rates[1][:, None])
        low, high = percentile_interval(replicates)
        covered.append(low <= 75.0 <= high)
    assert 0.93 <= np.mean(covered) <= 0.97


def test_paired_bootstrap_of_an_auc_difference_covers_the_truth():
    # Two attacks score the same examples: member scores shifted by 1.0 and 0.5 (plus noise shared between the
    # attacks), so AUC = Phi(d / sqrt(2)) each and the true difference is known.
    rng = np.random.default_rng(4)
    truth = stats.norm.cdf(1.0 / math.sqrt(2)) - stats.norm.cdf(0.5 / math.sqrt(2))
    labels = np.arange(300) < 150
    covered = []
    for _ in range(SIMULATIONS // 2):
        shared, own = rng.normal(0, 1, 300), rng.normal(0, 1, 300)
        a = math.sqrt(0.5) * shared + math.sqrt(0.5) * own + 1.0 * labels
        b = math.sqrt(0.5) * shared + math.sqrt(0.5) * rng.normal(0, 1, 300) + 0.5 * labels
        others, members = draw_counts(rng, 150, 400), draw_counts(rng, 150, 400)
        difference = SortedScores(a, labels).aucs(members, others) - SortedScores(b, labels).aucs(members, others)
        low, high = percentile_interval(difference)
        covered.append(low <= truth <= high)
    assert 0.92 <= np.mean(covered) <= 0.975


def test_bootstrap_aucs_agree_with_scipys_stratified_bootstrap():
    rng = np.random.default_rng(5)
    labels = np.arange(200) < 100
    scores = rng.normal(0, 1, 200) + 0.6 * labels
    ours = percentile_interval(bootstrap_aucs(scores, labels, n=4000, seed=1))
    theirs = stats.bootstrap((scores[labels], scores[~labels]),
                             lambda m, o, axis=-1: np.mean(m[..., :, None] > o[..., None, :], axis=(-2, -1))
                             + 0.5 * np.mean(m[..., :, None] == o[..., None, :], axis=(-2, -1)),
                             n_resamples=4000, method="percentile", rng=np.random.default_rng(2), vectorized=True,
                             batch=200)
    assert ours == pytest.approx((theirs.confidence_interval.low, theirs.confidence_interval.high), abs=0.01)


def test_the_tpr_of_each_resample_is_the_tpr_of_the_resampled_examples():
    rng = np.random.default_rng(6)
    labels = np.arange(60) < 25
    scores = np.round(rng.normal(0, 1, 60) + labels, 1)  # rounded: ties between members and non-members
    _, tprs = bootstrap_roc(scores, labels, n=40, seed=3, fprs=(0.05, 0.2))
    draws = np.random.default_rng(3)
    others, members = draw_counts(draws, 35, 40), draw_counts(draws, 25, 40)
    for b in range(40):
        resampled = np.r_[np.repeat(scores[labels], members[b]), np.repeat(scores[~labels], others[b])]
        truth = np.r_[np.ones(25, bool), np.zeros(35, bool)]
        for fpr in (0.05, 0.2):
            assert tprs[fpr][b] == pytest.approx(tpr_at_fpr(resampled, truth, fpr))
        assert SortedScores(scores, labels).aucs(members[b:b + 1], others[b:b + 1])[0] == pytest.approx(
            roc_auc(resampled, truth))


def test_resample_counts_come_in_chunks_that_sum_to_the_items():
    chunks = list(resample_counts(np.random.default_rng(0), 7, 1000, chunk_cells=700))
    assert [len(c) for c in chunks] == [100] * 10 and chunk_sizes(1000, 7, 700) == [100] * 10
    assert all((c.sum(axis=1) == 7).all() for c in chunks)
    with pytest.raises(ValueError, match="at least one item"):
        draw_counts(np.random.default_rng(0), 0, 3)


def test_percentile_interval_ignores_undefined_replicates():
    assert percentile_interval(np.r_[np.arange(101.0), [np.nan] * 50]) == pytest.approx((2.5, 97.5))
    assert all(math.isnan(b) for b in percentile_interval([np.nan, np.inf]))


def test_trend_p_value_is_exact_over_the_orders():
    assert trend_p_value([1, 2, 3], [0.1, 0.2, 0.3]) == pytest.approx(1 / 6)
    assert trend_p_value([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1 / 120)
    assert trend_p_value([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0  # a falling trend is no evidence of a rising one
    assert trend_p_value([1, 2, 3, 4], [4, 3, 2, 1], alternative="less") == pytest.approx(1 / 24)
    assert math.isnan(trend_p_value([1, 2, 3], [1, 1, 1]))
    # Beyond 8 points: scipy's permutation test (the exact value for 10 increasing points is 1/10!).
    assert trend_p_value(range(10), range(10)) < 0.001


def test_mcnemar_p_is_the_exact_binomial_test_of_the_discordant_pairs():
    from piimem.intervals import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 1) == pytest.approx(14 / 64)  # 2 x P(X <= 1), X ~ Bin(6, 1/2)
    assert mcnemar_p(1, 5) == mcnemar_p(5, 1)
    assert mcnemar_p(30, 0) < 1e-8
