"""The audit's bound (piimem.audit, step 4; Steinke, Nasr & Jagielski 2023): guesses from the canaries' scores
and the largest ε that their count rejects for (ε, δ)-DP at confidence 1 - β, Bonferroni over the shares guessed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Shares of the canaries guessed, half "included" (highest scores), half "held out" (lowest). The bound is the
# largest over the grid, each tested at β / len(grid) (Bonferroni), so choosing the best share costs nothing
# in confidence. Few guesses give a high bound when the top scores are all members; all guesses, when the
# signal is spread thin.
GUESS_SHARES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least v of r guesses correct] for an (ε, δ)-DP run audited with m canaries each included with
    probability 1/2 (Steinke et al. 2023, Theorem 5.2): the binomial tail at the accuracy of ε-randomised
    response, q = e^ε / (1 + e^ε), plus δ's share, 2 m δ times the largest mean of the binomial's mass just
    below v, max_i P[v - i <= B < v] / i."""
    from scipy.stats import binom

    if not 0 <= v <= r <= m:
        raise ValueError(f"audit: expected 0 <= correct ({v}) <= guesses ({r}) <= canaries ({m})")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"audit: expected ε >= 0 and 0 <= δ <= 1, got {epsilon}, {delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(v - 1, r, q))
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    i = np.arange(1, v + 1)
    below = binom.sf(v - i - 1, r, q) - tail  # P[v - i <= B < v]
    return min(tail + 2 * m * delta * float(np.max(below / i)), 1.0)

@lru_cache(maxsize=65536)
def epsilon_lower_bound(m: int, r: int, v: int, delta: float, beta: float) -> float:
    """The largest ε whose p-value for v of r correct guesses is at most β (0 when even ε = 0 is not
    rejected): the (ε, δ) claims below it are rejected at confidence 1 - β. Cached: a bootstrap of the audit
    asks for the same few (r, v) many times."""
    from scipy.optimize import brentq

    if p_value(m, r, v, 0.0, delta) > beta:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, high, delta) <= beta:
        low, high = high, 2 * high
        if high > 1e4:  # every guess right with a δ of 0: no finite ε explains it
            return math.inf
    return float(brentq(lambda eps: p_value(m, r, v, eps, delta) - beta, low, high, xtol=1e-6))

@dataclass(frozen=True)
class AuditResult:
    epsilon: float  # the lower bound (0: no ε > 0 rejected)
    canaries: int  # m
    included: int
    guesses: int  # r = 2k of the share that gave the bound (all guesses' share when the bound is 0)
    correct: int
    share: float  # the share of the canaries guessed
    delta: float
    confidence: float
    needed: float | None  # bound 0: canaries that would give a bound > 0 at the best accuracy seen (inf: none)

def correct_guesses(scores, included, ks) -> list[int]:
    """For each k of `ks`, the correct guesses among "included" for the k highest scores and "held out" for the
    k lowest (ties by position, so a run that scores every canary alike guesses by canary id, at chance)."""
    included = np.asarray(included, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    members = np.concatenate([[0], np.cumsum(included[order])])  # members among the first j
    m = len(order)
    return [int(members[k] + k - (members[m] - members[m - k])) for k in ks]

def _ks(m: int, shares: tuple[float, ...]) -> list[int]:
    """Canaries guessed each way at each share: at least one, at most half."""
    return [max(1, min(m // 2, round(share * m / 2))) for share in shares]

def audit(scores, included, *, delta: float, confidence: float = 0.95,
          shares: tuple[float, ...] = GUESS_SHARES, needed: bool = True) -> AuditResult:
    """The ε lower bound of one run from its canaries' scores (module docstring, step 4); `needed`: with a
    bound of 0, also how many canaries would give one (`canaries_needed`)."""
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    m = len(scores)
    if m != len(included) or m < 2:
        raise ValueError(f"audit: needs two or more canaries with a score each (got {m} and {len(included)})")
    if not np.isfinite(scores).all():
        raise ValueError("audit: a canary's score is not finite")
    beta = (1 - confidence) / len(shares)
    ks = _ks(m, shares)
    best = (0.0, 2 * ks[-1], None, shares[-1])  # no bound: report the guesses of the largest share
    for share, k, v in zip(shares, ks, correct_guesses(scores, included, ks)):
        bound = epsilon_lower_bound(m, 2 * k, v, float(delta), beta)
        if share == shares[-1] and best[2] is None:
            best = (best[0], 2 * k, v, share)
        if bound > best[0]:
            best = (bound, 2 * k, v, share)
    bound, r, v, share = best
    more = (canaries_needed(scores, included, delta=delta, confidence=confidence, shares=shares)
            if needed and bound == 0 else None)
    return AuditResult(bound, m, int(included.sum()), r, v, share, float(delta), confidence, more)

def canaries_needed(scores, included, *, delta: float, confidence: float = 0.95,
                    shares: tuple[float, ...] = GUESS_SHARES, limit: int = 10**7) -> float:
    """Fewest canaries (to within 1 %) with which the accuracy of guessing seen here, at the same share,
    would give a bound above 0, the smallest over the shares: inf when no share guesses better than chance (more canaries of the same scores would not help),
    or when even `limit` would not do."""
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    m = len(scores)
    beta = (1 - confidence) / len(shares)
    best = math.inf
    for share, k, v in zip(shares, _ks(m, shares), correct_guesses(scores, included, _ks(m, shares))):
        accuracy = v / (2 * k)
        if accuracy <= 0.5:
            continue

        def rejects(size: int) -> bool:
            r = 2 * _ks(size, (share,))[0]
            return epsilon_lower_bound(size, r, int(accuracy * r), float(delta), beta) > 0

        high = m
        while high <= limit and not rejects(high):
            high *= 2
        if high > limit:
            continue
        low = high // 2  # fails (or is m itself, which failed)
        while high - low > max(1, high // 100):  # to within 1 %
            middle = (low + high) // 2
            low, high = (low, middle) if rejects(middle) else (middle, high)
        best = min(best, high)
    return float(best)

def audit_rows(result: AuditResult) -> list[tuple[str, float]]:
    """(metric, value) rows of one run's audit (piimem.metric_names)."""
    from piimem.metric_names import AUDIT

    return [(AUDIT["epsilon"], result.epsilon), (AUDIT["canaries"], float(result.canaries)),
            (AUDIT["included"], float(result.included)), (AUDIT["guesses"], float(result.guesses)),
            (AUDIT["correct"], float(result.correct)), (AUDIT["delta"], result.delta),
            (AUDIT["needed"], math.nan if result.needed is None else result.needed)]
