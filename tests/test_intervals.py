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


def test_group_draws_bring_whole_groups():
    from piimem.intervals import draw_group_counts, group_index

    groups = group_index(["t7", "t7", "t3", "t9", "t3", "t3"])
    assert groups.tolist() == [0, 0, 1, 2, 1, 1]  # numbered in order of first appearance
    counts = draw_group_counts(np.random.default_rng(0), groups, 500)
    assert counts.shape == (500, 6)
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 2] == counts[:, 4]).all()
    group_draws = counts[:, [0, 2, 3]]  # one column per group: the groups drawn sum to their number
    assert (group_draws.sum(axis=1) == 3).all()
    assert set(np.unique(counts.sum(axis=1))) > {6}  # an item total that varies: groups differ in size
    with pytest.raises(ValueError, match="every group holding an item"):
        draw_group_counts(np.random.default_rng(0), np.array([0, 2]), 3)


def _threads(rng, n_groups: int, size: int, shift: float):
    """Members and non-members in threads of `size` texts that share a thread effect (sd 1, own noise sd 0.5):
    member threads' scores shifted by `shift`, half the threads each."""
    labels = np.repeat(np.arange(n_groups) < n_groups // 2, size)
    groups = np.repeat(np.arange(n_groups), size)
    scores = rng.normal(0, 1, n_groups)[groups] + rng.normal(0, 0.5, n_groups * size) + shift * labels
    return scores, labels, groups


def test_a_group_bootstrap_covers_the_auc_of_clustered_texts_where_an_item_bootstrap_does_not():
    # Texts of a thread share its effect, so they are not independent: the AUC's sampling variance comes from
    # the threads. The true AUC of a member vs a non-member of different threads: Phi(shift / sqrt(2 * 1.25)).
    rng = np.random.default_rng(11)
    truth = stats.norm.cdf(0.5 / math.sqrt(2.5))
    covered = {"items": [], "groups": []}
    for i in range(300):
        scores, labels, groups = _threads(rng, 40, 4, 0.5)
        for name, by in (("items", None), ("groups", groups)):
            low, high = percentile_interval(bootstrap_aucs_grouped(scores, labels, by, seed=i))
            covered[name].append(low <= truth <= high)
    assert 0.92 <= np.mean(covered["groups"]) <= 0.985
    assert np.mean(covered["items"]) < 0.85  # too narrow: four texts of a thread counted as four samples


def bootstrap_aucs_grouped(scores, labels, groups, seed):
    return bootstrap_roc(scores, labels, n=300, seed=seed, groups=groups)[0]


def test_a_group_bootstrap_of_singleton_groups_is_the_item_bootstrap():
    rng = np.random.default_rng(12)
    labels = np.arange(80) < 40
    scores = rng.normal(0, 1, 80) + labels
    items = bootstrap_roc(scores, labels, n=200, seed=5, fprs=(0.1,))
    singletons = bootstrap_roc(scores, labels, n=200, seed=5, fprs=(0.1,), groups=np.arange(80))
    assert np.array_equal(items[0], singletons[0]) and np.array_equal(items[1][0.1], singletons[1][0.1])


def test_the_auc_and_tpr_of_a_group_resample_are_those_of_its_texts():
    rng = np.random.default_rng(13)
    scores, labels, groups = _threads(rng, 10, 3, 0.8)
    scores = np.round(scores, 1)
    from piimem.metrics import class_group_draws

    others, members = class_group_draws(labels, groups)(np.random.default_rng(2), 30)
    sorted_scores = SortedScores(scores, labels)
    aucs = sorted_scores.aucs(members, others)
    tprs = sorted_scores.tprs_at_fpr(members, others, 0.2)
    for b in range(30):
        resampled = np.r_[np.repeat(scores[labels], members[b]), np.repeat(scores[~labels], others[b])]
        truth = np.r_[np.ones(members[b].sum(), bool), np.zeros(others[b].sum(), bool)]
        assert aucs[b] == pytest.approx(roc_auc(resampled, truth))
        assert tprs[b] == pytest.approx(tpr_at_fpr(resampled, truth, 0.2))


def test_wilcoxon_p_is_scipys_signed_rank_test():
    from piimem.intervals import wilcoxon_p

    differences = [0.5, -0.2, 1.1, 0.0, 0.7, 0.3, -0.1, 0.9]
    assert wilcoxon_p(differences) == pytest.approx(stats.wilcoxon([d for d in differences if d]).pvalue)
    assert wilcoxon_p([0.0, 0.0]) == 1.0 and math.isnan(wilcoxon_p([]))
    rng = np.random.default_rng(14)
    assert wilcoxon_p(rng.normal(0.12, 0.6, 300)) < 0.01  # the size of effect on 300 targets


def test_min_trend_points_is_where_one_order_reaches_the_level():
    from piimem.intervals import min_trend_points

    assert min_trend_points(0.05) == 4 and min_trend_points(0.2) == 3 and min_trend_points(0.001) == 7
    assert trend_p_value(range(4), range(4)) <= 0.05 < trend_p_value(range(3), range(3))


def test_items_needed_gives_the_power_it_promises_at_the_observed_effect():
    # A mean difference of 0.1 with sd 1 on 100 items: its 95 % interval contains 0. items_needed says how
    # many items give an interval that excludes 0 in 80 % of samples when the true effect is 0.1; simulate it.
    from piimem.intervals import POWER, items_needed

    rng = np.random.default_rng(15)
    sample = rng.normal(0.1, 1.0, 100)
    mean, se = sample.mean(), sample.std(ddof=1) / 10
    low, high = mean - 1.96 * se, mean + 1.96 * se
    assert low < 0 < high
    needed = items_needed(mean, low, high, 0.0, 100)
    assert needed == pytest.approx(100 * (1.96 * se / mean) ** 2 * ((1.96 + 0.8416) / 1.96) ** 2, rel=1e-3)
    n = int(round(items_needed(0.1, 0.1 - 1.96 * 0.1, 0.1 + 1.96 * 0.1, 0.0, 100)))  # at the true effect
    assert 750 <= n <= 830  # (1.96 + 0.84)^2 / 0.1^2
    excluded = []
    for _ in range(2000):
        draw = rng.normal(0.1, 1.0, n)
        excluded.append(draw.mean() - 1.96 * draw.std(ddof=1) / math.sqrt(n) > 0)
    assert abs(np.mean(excluded) - POWER) < 0.03
    assert items_needed(0.3, 0.1, 0.5, 0.3, 50) == math.inf and math.isnan(items_needed(0.3, math.nan, 0.5, 0.0, 50))
    assert items_needed(-1.4e-14, -1.42, 100.0, 0.0, 756) == math.inf  # a difference of 0 up to float rounding
