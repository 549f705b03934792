"""Result formulas of piimem.metrics: reduction vs baseline, MaxTER, AURC, Pareto front (docs/outputs.md)."""

from __future__ import annotations

import itertools
import math

import pytest

from piimem.metrics import TAU_GRID, aurc, maxter_curve, pareto_front, percent_change, reduction_vs_baseline, tau_grid

# Four checkpoints: c2 has TER_base 0 (drop undefined, skipped although its PPL cost is 0).
TER_BASE = [4.0, 0.0, 2.0, 5.0]
TER_METHOD = [1.0, 0.0, 1.0, 6.0]
PPL_BASE = [100.0, 100.0, 100.0, 100.0]
PPL_METHOD = [105.0, 100.0, 101.0, 98.0]
# drop_c = 75, (skip), 50, -20; ΔPPL_c = 5, (0), 1, -2


def test_maxter_takes_the_best_drop_within_the_perplexity_budget():
    curve = maxter_curve(TER_METHOD, TER_BASE, PPL_METHOD, PPL_BASE, taus=[-5.0, 0.0, 1.0, 4.9, 5.0, 10.0])
    assert math.isnan(curve[0])  # no checkpoint costs <= -5 %
    assert curve[1:] == [-20.0, 50.0, 50.0, 75.0, 75.0]


def test_maxter_skips_checkpoints_without_a_baseline_extraction():
    # Only c2 (TER_base 0) would qualify at τ = 0.5 with a cost of 0: it is skipped, so -20 (cost -2) is the max.
    assert maxter_curve(TER_METHOD, TER_BASE, PPL_METHOD, PPL_BASE, taus=[0.5]) == [-20.0]
    assert math.isnan(maxter_curve([0.0], [0.0], [1.0], [1.0], taus=[100.0])[0])


def test_maxter_needs_one_value_per_checkpoint_in_each_sequence():
    with pytest.raises(ValueError, match="lengths"):
        maxter_curve([1.0, 2.0], [1.0], [1.0, 1.0], [1.0, 1.0])


def test_aurc_is_the_trapezoid_area_over_the_grid_span():
    taus = [0.0, 1.0, 5.0, 10.0]
    curve = maxter_curve(TER_METHOD, TER_BASE, PPL_METHOD, PPL_BASE, taus)
    assert curve == [-20.0, 50.0, 75.0, 75.0]
    # 1 * (-20 + 50) / 2 + 4 * (50 + 75) / 2 + 5 * 75 = 15 + 250 + 375 = 640, over 10; every τ defined
    assert aurc(taus, curve) == pytest.approx((64.0, 100.0))


def test_aurc_averages_only_where_a_checkpoint_qualifies_and_reports_that_coverage():
    # Defined from τ = 2: the area (10 + 10) / 2 * 2 = 20 over the width 2 it spans; 2 of 3 points covered.
    value, coverage = aurc([0.0, 2.0, 4.0], [math.nan, 10.0, 10.0])
    assert value == pytest.approx(10.0) and coverage == pytest.approx(200 / 3)
    value, coverage = aurc([0.0, 1.0, 2.0, 3.0], [math.nan, math.nan, math.nan, 30.0])  # one point: its value
    assert (value, coverage) == (30.0, 25.0)
    value, coverage = aurc([0.0, 1.0], [math.nan, math.nan])  # nothing qualifies: undefined, not 0
    assert math.isnan(value) and coverage == 0.0


def test_tau_grid_follows_its_configured_maximum_and_step():
    assert tau_grid(2.0, 0.5) == (0.0, 0.5, 1.0, 1.5, 2.0)
    assert tau_grid(1.0, 0.3) == (0.0, 0.3, 0.6, 0.9)
    with pytest.raises(ValueError, match="report.tau_max"):
        tau_grid(0.1, 0.5)


def test_aurc_refuses_a_grid_that_does_not_increase():
    with pytest.raises(ValueError, match="increasing"):
        aurc([0.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="τ values"):
        aurc([0.0, 1.0], [1.0])


def test_default_tau_grid_is_0_to_20_percent_in_half_percent_steps():
    assert TAU_GRID[0] == 0.0 and TAU_GRID[-1] == 20.0 and len(TAU_GRID) == 41
    assert all(b - a == 0.5 for a, b in itertools.pairwise(TAU_GRID))


def test_reduction_vs_baseline_compares_means_over_checkpoints():
    assert reduction_vs_baseline([1.0, 1.0], [2.0, 2.0]) == 50.0
    assert reduction_vs_baseline([1.0, math.nan, None], [3.0, 1.0]) == 50.0  # undefined checkpoints left out
    assert reduction_vs_baseline([10.5], [10.0]) == -5.0  # a perplexity increase of 5 %
    assert math.isnan(reduction_vs_baseline([1.0], [0.0]))
    assert math.isnan(reduction_vs_baseline([], [1.0]))


def test_percent_change():
    assert percent_change(5.0, 4.0) == 25.0
    assert math.isnan(percent_change(1.0, 0.0))


def test_pareto_front_keeps_the_non_dominated_points_sorted_by_x():
    points = [(1.0, 5.0), (2.0, 2.0), (3.0, 3.0), (2.0, 2.0), (0.5, 10.0), (math.nan, 0.0), (4.0, 1.0), (4.0, 2.0)]
    # (3, 3) is dominated by (2, 2); (4, 2) by (4, 1); the two (2, 2) tie and both stay; NaN is left out.
    assert pareto_front(points) == [4, 0, 1, 3, 6]
    assert pareto_front([]) == []
