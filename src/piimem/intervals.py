"""Uncertainty, in one place: exact binomial intervals, bootstrap resampling, intervals across seeds, trend
tests. The report's comparisons (`piimem.report.comparisons`) and the attacks' own intervals use these.

- `clopper_pearson(k, n)`: the exact binomial interval of a rate k of n (scipy's `binomtest`).
- `resample_counts(rng, n, resamples)`: bootstrap resamples as draw counts per item, in chunks of
  replicates (a resample of n items is a length-n vector of how often each item was drawn); a statistic
  that is a weighted sum over items (a rate, a mean) is then one matrix product per chunk.
- `percentile_interval(replicates)`: the percentile bootstrap interval over the finite replicates.
- `t_interval(values)`: Student's t interval of a mean, for values measured once per seed.
- `trend_p_value(x, y)`: the exact permutation p-value of a positive Spearman trend (all n! orders).
- `mcnemar_p(b, c)`: the exact two-sided McNemar p-value of paired yes/no outcomes.
- `wilcoxon_p(differences)`: the two-sided Wilcoxon signed-rank p-value of paired graded outcomes.
- `draw_group_counts(rng, groups, b)`: a cluster bootstrap: whole groups (threads) drawn with replacement.
- `min_trend_points(alpha)`: the fewest points whose exact permutation test can reach `alpha`.
- `items_needed(...)`: how many items would make an interval exclude a bound at the observed effect.

Levels are fractions (0.95); rates are what the caller gives (fractions or percentages).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import permutations

import numpy as np

from piimem.checks import is_int, is_number
from piimem.schema import default

LEVEL = default("report.ci.level")
RESAMPLES = default("report.ci.resamples")
# Draw counts held at once: a chunk of replicates x items stays near 16 MB of int64.
_CHUNK_CELLS = 2_000_000


def check_level(level: float) -> float:
    if not is_number(level) or not 0 < level < 1:
        raise ValueError(f"interval level must be a fraction in (0, 1) such as 0.95, got {level!r}")
    return float(level)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of the proportion k / n, as fractions; (nan, nan) when n is 0.

    Never shorter than the nominal level: it inverts the two one-sided binomial tests, so 0 of n gives
    (0, 1 - ((1 - level) / 2) ** (1 / n)), e.g. 0 of 661 -> (0, 0.56 %)."""
    from scipy.stats import binomtest

    level = check_level(level)
    if n == 0:
        return math.nan, math.nan
    if not 0 <= k <= n:
        raise ValueError(f"clopper_pearson: k must lie in 0..n, got {k} of {n}")
    interval = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def rng_for(seed: int, *scope: object) -> np.random.Generator:
    """A generator seeded by the config's seed and a scope (names, numbers): each comparison draws its
    own stream, so adding a run or a table to a config leaves every other interval unchanged."""
    import zlib

    key = zlib.crc32("\x1f".join(map(str, scope)).encode())
    return np.random.default_rng([int(seed), key])


def chunk_sizes(resamples: int, cells_per_resample: int, chunk_cells: int = _CHUNK_CELLS) -> list[int]:
    """How many replicates each chunk holds so that a chunk's draw counts stay near `chunk_cells` cells."""
    if not is_int(resamples) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    chunk = max(1, chunk_cells // max(1, cells_per_resample))
    return [min(chunk, resamples - low) for low in range(0, resamples, chunk)]


def draw_counts(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """b bootstrap resamples of n items as a (b, n) int64 array of draw counts (rows sum to n): uniform
    draws with replacement."""
    if n < 1:
        raise ValueError(f"a bootstrap resample needs at least one item, got {n}")
    offsets = (np.arange(b) * n)[:, None]
    return np.bincount((rng.integers(0, n, size=(b, n)) + offsets).ravel(), minlength=b * n).reshape(b, n)


def draw_group_counts(rng: np.random.Generator, groups: np.ndarray, b: int) -> np.ndarray:
    """b cluster-bootstrap resamples of items that come in groups, as a (b, n) int64 array of draw counts per
    item: the G groups (`groups`: each item's group index 0..G-1, every index used) are drawn with replacement
    and each drawn group brings all its items. Items of one thread are not independent (a reply quotes its
    parent), so resampling them one by one would understate the variance; a resample's item total varies."""
    groups = np.asarray(groups, dtype=np.int64)
    if groups.ndim != 1 or groups.size == 0:
        raise ValueError(f"a group bootstrap needs a 1-D array of group indexes, got shape {groups.shape}")
    n_groups = int(groups.max()) + 1
    if groups.min() < 0 or np.bincount(groups, minlength=n_groups).min() == 0:
        raise ValueError("group indexes must be 0..G-1 with every group holding an item")
    return draw_counts(rng, n_groups, b)[:, groups]


def group_index(labels: Sequence) -> np.ndarray:
    """Each item's group as an index 0..G-1 (groups numbered in order of first appearance)."""
    _, first, inverse = np.unique(np.asarray(labels), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


def resample_counts(rng: np.random.Generator, n: int, resamples: int = RESAMPLES,
                    chunk_cells: int = _CHUNK_CELLS) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n items in chunks (`draw_counts`), whose sizes b add up to `resamples`."""
    for b in chunk_sizes(resamples, n, chunk_cells):
        yield draw_counts(rng, n, b)


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(low, high) percentile interval of bootstrap replicates, over the finite ones (a replicate where
    the statistic is undefined, e.g. a reduction against a baseline mean of 0, carries no value);
    (nan, nan) when none is finite."""
    level = check_level(level)
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student's t interval of the mean of `values` (one per seed), NaN ignored; (nan, nan) with fewer
    than two values. Identical values give a zero-width interval."""
    from scipy.stats import t

    level = check_level(level)
    kept = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if kept.size < 2:
        return math.nan, math.nan
    mean, sd = float(kept.mean()), float(kept.std(ddof=1))
    half = float(t.ppf(1 - (1 - level) / 2, kept.size - 1)) * sd / math.sqrt(kept.size)
    return mean - half, mean + half


def trend_p_value(x: Sequence[float], y: Sequence[float], alternative: str = "greater") -> float:
    """One-sided exact permutation p-value of Spearman's rho(x, y) > 0 (`alternative` "less": < 0): the
    share of the n! orders of y whose rho is at least as extreme as the observed one. With n points the
    smallest possible p is 1 / n!: three points can never reach 0.05 (1/6), which is why a trend of three
    points is never called significant here. NaN with fewer than two points or a constant side; n above 8
    uses scipy's permutation_test (20,000 random orders, seeded)."""
    from piimem.metrics import spearman

    if alternative not in ("greater", "less"):
        raise ValueError(f"trend_p_value: alternative must be 'greater' or 'less', got {alternative!r}")
    sign = 1.0 if alternative == "greater" else -1.0
    x, y = list(map(float, x)), list(map(float, y))
    observed = spearman(x, y)
    if math.isnan(observed):
        return math.nan
    if len(y) > 8:
        from scipy.stats import permutation_test

        result = permutation_test((np.asarray(y),), lambda v: spearman(x, v), permutation_type="pairings",
                                  alternative=alternative, n_resamples=20_000, rng=0)
        return float(result.pvalue)
    rhos = [spearman(x, list(order)) for order in permutations(y)]
    return sum(sign * r >= sign * observed - 1e-12 for r in rhos) / len(rhos)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of paired binary outcomes: b items right in the first run only, c in
    the second only; under no difference each discordant item is a fair coin (binomial test of b of b + c).
    1.0 with no discordant item. A paired bootstrap interval of a handful of discordant items can exclude 0
    where this test cannot (5 against 1: p = 0.22), so verdicts on paired rates need both."""
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(int(b), int(b + c), 0.5).pvalue)


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value that paired differences (one run's graded outcome minus
    another's on the same items, e.g. the exposure of each target) are centred on 0 (scipy's `wilcoxon`:
    zero differences dropped, exact for small samples without ties, the normal approximation otherwise).
    1.0 when every difference is 0; NaN with none."""
    from scipy.stats import wilcoxon

    values = np.asarray([d for d in differences if d is not None and math.isfinite(d)], dtype=np.float64)
    if values.size == 0:
        return math.nan
    if not values.any():
        return 1.0
    return float(wilcoxon(values, zero_method="wilcox", alternative="two-sided").pvalue)


def min_trend_points(alpha: float) -> int:
    """The fewest points n whose exact one-sided permutation test of a trend can reach p <= alpha: its
    smallest p is 1 / n! (one order of n), so three points never get below 1/6."""
    if not is_number(alpha) or not 0 < alpha < 1:
        raise ValueError(f"min_trend_points: alpha must be in (0, 1), got {alpha!r}")
    n = 2
    while 1 / math.factorial(n) > alpha + 1e-12:
        n += 1
    return n


# The power a sample-size estimate aims at: an interval at the observed effect excludes its bound in this
# share of repeated samples (the usual 80 %).
POWER = 0.8


def items_needed(value: float, low: float, high: float, bound: float, n: int, level: float = LEVEL,
                 power: float = POWER) -> float:
    """How many items (of the kind the interval resamples) an interval [low, high] around `value`, measured
    on `n` items, would need to exclude `bound` in `power` of repeated samples, were the effect what was
    observed. The interval's half-width on the bound's side, h, shrinks as 1 / sqrt(n) (h = z se), so at
    n' items the edge clears the bound with probability `power` when |value - bound| = (z + z_power) se':

        n' = n (h / |value - bound|)^2 ((z + z_power) / z)^2,   z = z_{1 - (1 - level) / 2}.

    inf when the effect is exactly at the bound (no sample shows a difference that is not there); nan
    without a finite interval. Checked against simulated samples in tests/test_intervals.py."""
    from scipy.stats import norm

    level = check_level(level)
    if not all(map(math.isfinite, (value, low, high, bound))) or n < 1:
        return math.nan
    gap = abs(value - bound)
    half = (value - low) if value > bound else (high - value)
    if gap <= 1e-9 * max(1.0, abs(half), abs(bound)):  # at the bound, up to float rounding
        return math.inf
    if half <= 0:
        return float(n)
    z = float(norm.ppf(1 - (1 - level) / 2))
    return n * (half / gap) ** 2 * ((z + float(norm.ppf(power))) / z) ** 2
