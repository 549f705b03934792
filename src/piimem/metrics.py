"""Metric formulas, in one place (definitions: docs/attacks.md, docs/outputs.md, docs/statistics.md)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import polars as pl

from piimem.checks import is_int, is_number
from piimem.intervals import LEVEL, percentile_interval
from piimem.metric_names import (
    ALL,
    N_EXTRACTED,
    N_FOUND,
    N_SEEN,
    N_SEEN_EXTRACTED,
    N_TRUE,
    PPL,
    PPL_CORPUS,
    PRECISION,
    RECALL,
    SER,
    TEGR,
    TER,
)
from piimem.pii.normalize import normalize
from piimem.schema import default

PII = tuple[str, str]  # (entity_type, normalized value)


def perplexity(nll_sum: Sequence[float], n_tokens: Sequence[int]) -> dict[str, float]:
    """Perplexity of a text set from per-example NLL sums (nats) and scored-token counts.

    ppl_mean:   mean over examples of exp(nll_sum / n_tokens) — the per-example number the RMFT paper
                averages.
    ppl_corpus: exp(sum nll_sum / sum n_tokens) — token-weighted, reported beside it.
    Examples with no scored token (n_tokens 0 or missing) carry no information and are left out.
    A value that overflows float is reported as inf.
    """
    nll_sum, n_tokens = list(nll_sum), list(n_tokens)
    if len(nll_sum) != len(n_tokens):
        raise ValueError(f"perplexity: nll_sum has {len(nll_sum)} values but n_tokens has {len(n_tokens)}")
    pairs = [(float(s), int(n)) for s, n in zip(nll_sum, n_tokens)
             if n is not None and s is not None and n > 0]
    if not pairs:
        raise ValueError("perplexity: no example has a scored token (all n_tokens are 0 or missing)")
    if any(math.isnan(s) for s, _ in pairs):
        raise ValueError("perplexity: nll_sum contains NaN")

    def _exp(x: float) -> float:
        try:
            return math.exp(x)
        except OverflowError:
            return math.inf

    ppl_mean = math.fsum(_exp(s / n) for s, n in pairs) / len(pairs)
    ppl_corpus = _exp(math.fsum(s for s, _ in pairs) / sum(n for _, n in pairs))
    return {PPL: ppl_mean, PPL_CORPUS: ppl_corpus}


# ------------------------------------------------------------------------------------------
# Membership inference: ROC of a score where larger = member (labels: True / 1 = member).


def _scores_and_labels(scores, labels, caller: str):
    import numpy as np

    scores = np.asarray(list(scores) if not hasattr(scores, "__array__") else scores, dtype=np.float64)
    labels = np.asarray(list(labels) if not hasattr(labels, "__array__") else labels)
    if scores.ndim != 1 or labels.ndim != 1 or len(scores) != len(labels):
        raise ValueError(f"{caller}: scores and labels must be 1-D of the same length, got shapes "
                         f"{scores.shape} and {labels.shape}")
    if np.isnan(scores).any():
        raise ValueError(f"{caller}: scores contain {int(np.isnan(scores).sum())} NaN/null value(s); drop the "
                         f"examples without a score (n_tokens 0) first")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{caller}: labels must be booleans or 0/1 (1 = member)")
        labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"{caller}: need both members and non-members, got {n_pos} members and "
                         f"{n_neg} non-members")
    return scores, labels


def _average_ranks(values):
    """1-based ranks with ties given the mean of the ranks they span (as for Mann-Whitney U)."""
    import numpy as np

    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Group boundaries of equal values; every member of a group gets the group's mean rank.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    group_rank = (starts + 1 + ends) / 2.0  # mean of starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def spearman_rows(x, y):
    """Spearman's rank correlation of `x` (P points) with every row of `y` (..., P), ties as average ranks:
    the Pearson correlation of the ranks. NaN for a row that is constant (or when `x` is), or with fewer
    than 2 points; a row holding NaN is ranked over its finite points only."""
    import numpy as np
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape[-1:] != x.shape:
        raise ValueError(f"spearman: x must be 1-D with one value per column of y, got {x.shape} and {y.shape}")
    flat = y.reshape(-1, x.size)
    out = np.full(flat.shape[0], np.nan)
    complete = np.isfinite(flat).all(axis=1)
    if x.size >= 2 and complete.any():
        rx = rankdata(x)
        rx = rx - rx.mean()
        ry = rankdata(flat[complete], axis=1)
        ry = ry - ry.mean(axis=1, keepdims=True)
        norm = np.sqrt((rx ** 2).sum() * (ry ** 2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[complete] = np.where(norm > 0, (ry * rx).sum(axis=1) / norm, np.nan)
    for i in np.flatnonzero(~complete):
        kept = np.isfinite(flat[i])
        if kept.sum() >= 2:
            out[i] = spearman_rows(x[kept], flat[i, kept][None, :])[0]
    return out.reshape(y.shape[:-1])


def spearman_pairs(x, y):
    """Spearman's rank correlation of each row of `x` with the same row of `y` (both (..., P), e.g. bootstrap
    resamples of paired items): NaN for a row where either side is constant."""
    import numpy as np
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"spearman_pairs: x and y must have the same shape, got {x.shape} and {y.shape}")
    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)
    rx, ry = rx - rx.mean(axis=-1, keepdims=True), ry - ry.mean(axis=-1, keepdims=True)
    norm = np.sqrt((rx ** 2).sum(axis=-1) * (ry ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (rx * ry).sum(axis=-1) / norm, np.nan)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of paired values (ties as average ranks): the Pearson correlation of
    the ranks. NaN with fewer than 2 pairs or when either side is constant."""
    import numpy as np

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman: x and y must be 1-D of the same length, got {x.shape} and {y.shape}")
    return float(spearman_rows(x, y[None, :])[0])


def roc_auc(scores, labels) -> float:
    """ROC AUC of `scores` (larger = member) for `labels` (True = member).

    Equals P(score of a random member > score of a random non-member) + 0.5 P(tie), computed from average
    ranks (Mann-Whitney U); all scores tied gives 0.5. Same value as the trapezoid area under `roc_curve`.
    """
    scores, labels = _scores_and_labels(scores, labels, "roc_auc")
    ranks = _average_ranks(scores)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores, labels):
    """(fpr, tpr, thresholds) of the rule "member if score >= threshold", numpy arrays.

    One point per distinct score, thresholds decreasing, plus a first point (0, 0) at threshold +inf;
    tied scores move together (one diagonal step), so the curve's trapezoid area equals `roc_auc`.
    """
    import numpy as np

    scores, labels = _scores_and_labels(scores, labels, "roc_curve")
    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], labels[order]
    # Last index of each run of equal scores: the point after all of that score are called members.
    last = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
    tp = np.cumsum(hits)[last]
    fp = np.cumsum(~hits)[last]
    tpr = np.r_[0.0, tp / hits.sum()]
    fpr = np.r_[0.0, fp / (~hits).sum()]
    thresholds = np.r_[np.inf, ordered[last]]
    return fpr, tpr, thresholds


def tpr_at_fpr(scores, labels, fpr: float) -> float:
    """The largest TPR among the ROC points (`roc_curve`) whose FPR is <= `fpr` (no interpolation).

    The convention of mimir and of the LiRA paper's low-FPR reporting: an achievable threshold, never a
    point between two. With n non-members an FPR target below 1/n admits only thresholds that flag no
    non-member, so at 0.1 % FPR fewer than 1,000 non-members make the number coarse (report n beside it).
    """
    import numpy as np

    if not is_number(fpr) or not 0 <= fpr <= 1:
        raise ValueError(f"tpr_at_fpr: fpr must be a number in [0, 1], got {fpr!r}")
    fprs, tprs, _ = roc_curve(scores, labels)
    return float(np.max(tprs[fprs <= fpr + 1e-12]))


class SortedScores:
    """Members' and non-members' scores of one attack, arranged once so that the AUC and the TPR at a low
    FPR of any resample (draw counts per example) are prefix sums of the counts read at fixed positions."""

    def __init__(self, scores, labels) -> None:
        import numpy as np

        scores, labels = _scores_and_labels(scores, labels, "bootstrap")
        self.labels = labels
        self.member_order = np.argsort(scores[labels], kind="mergesort")
        self.members = scores[labels][self.member_order]
        self.other_order = np.argsort(scores[~labels], kind="mergesort")
        self.others = scores[~labels][self.other_order]
        self.below = np.searchsorted(self.others, self.members, side="left")
        self.at_or_below = np.searchsorted(self.others, self.members, side="right")

    def aucs(self, member_counts, other_counts):
        """ROC AUC of each resample: member i's credit is the drawn non-members below it plus half those
        tied, so the AUC is sum_i count_i credit_i / (m k), m and k the resample's drawn members and
        non-members (fixed for a bootstrap of items, varying for one of groups)."""
        import numpy as np

        members, others = member_counts[:, self.member_order], other_counts[:, self.other_order]
        prefix = np.zeros((len(others), others.shape[1] + 1), dtype=np.int64)
        np.cumsum(others, axis=1, out=prefix[:, 1:])
        low, high = prefix[:, self.below], prefix[:, self.at_or_below]
        drawn = members.sum(axis=1) * prefix[:, -1]
        return (members * (low + 0.5 * (high - low))).sum(axis=1) / drawn

    def tprs_at_fpr(self, member_counts, other_counts, fpr: float):
        """`tpr_at_fpr` of each resample. With a = floor(fpr k) non-member draws allowed above the threshold,
        v = the largest non-member score with more than a draws at or above it; the best achievable
        threshold flags exactly the examples scored above v, so TPR = drawn members above v / m."""
        import numpy as np

        members, others = member_counts[:, self.member_order], other_counts[:, self.other_order]
        m = members.shape[1]
        # Allowed per resample: a bootstrap of groups draws a varying number of non-members.
        allowed = np.floor(fpr * others.sum(axis=1) + 1e-9).astype(np.int64)[:, None]
        at_or_above = np.cumsum(others[:, ::-1], axis=1)[:, ::-1]  # draws with score >= others[j] (sorted up)
        # Ties: only the first position of a run of equal scores counts all draws tied with it.
        first = np.r_[True, self.others[1:] != self.others[:-1]]
        exceeds = (at_or_above > allowed) & first
        # The largest such score: the last qualifying position (every row has one unless allowed >= k).
        last = exceeds.shape[1] - 1 - np.argmax(exceeds[:, ::-1], axis=1)
        any_exceeds = exceeds.any(axis=1)
        threshold = np.where(any_exceeds, self.others[last], -np.inf)
        above = np.searchsorted(self.members, threshold, side="right")  # first member scored above v
        suffix = np.zeros((len(members), m + 1), dtype=np.int64)
        np.cumsum(members[:, ::-1], axis=1, out=suffix[:, 1:])
        return suffix[np.arange(len(members)), m - above] / suffix[:, -1]


def bootstrap_roc(scores, labels, n: int = 1000, seed: int = 0, fprs: Sequence[float] = (), groups=None):
    """`n` stratified bootstrap replicates of `roc_auc` and of `tpr_at_fpr` at each of `fprs`, from the same
    resamples: members and non-members each drawn with replacement to their own count (so every resample
    has both classes), seeded. With `groups` (one label per example, e.g. its thread), whole groups are drawn
    instead, members' and non-members' groups each to their own number (`class_group_draws`). Returns (aucs,
    {fpr: tprs}), numpy arrays of length n.

    Vectorised (`SortedScores`): a resample is a vector of draw counts per example, so n resamples cost
    O(n (members + non-members)). Draw order: per chunk of replicates, the non-member counts, then the
    member counts (`piimem.intervals.draw_counts`).
    """
    import numpy as np

    from piimem.intervals import chunk_sizes

    if not is_int(n) or n < 1:
        raise ValueError(f"bootstrap_auc_ci: n must be a positive integer, got {n!r}")
    sorted_scores = SortedScores(scores, labels)
    draw = class_group_draws(sorted_scores.labels, groups)
    rng = np.random.default_rng(seed)
    aucs, tprs = [], {fpr: [] for fpr in fprs}
    for b in chunk_sizes(n, len(sorted_scores.labels)):
        other_counts, member_counts = draw(rng, b)
        aucs.append(sorted_scores.aucs(member_counts, other_counts))
        for fpr in fprs:
            tprs[fpr].append(sorted_scores.tprs_at_fpr(member_counts, other_counts, fpr))
    return np.concatenate(aucs), {fpr: np.concatenate(v) for fpr, v in tprs.items()}


def class_group_draws(labels, groups=None):
    """A function (rng, b) -> (non-member counts (b, k), member counts (b, m)) drawing b stratified bootstrap
    resamples of labelled examples: each class's examples with replacement to their own count, or, with
    `groups` (one label per example), each class's groups to their own number, every drawn group bringing
    all its examples of that class (`piimem.intervals.draw_group_counts`). Non-members are drawn first."""
    import numpy as np

    from piimem.intervals import draw_counts, draw_group_counts, group_index

    labels = np.asarray(labels, dtype=bool)
    if groups is None:
        sizes = int((~labels).sum()), int(labels.sum())
        return lambda rng, b: tuple(draw_counts(rng, size, b) for size in sizes)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise ValueError(f"bootstrap: one group per example needed, got {groups.shape} for {labels.shape}")
    indexes = [group_index(groups[~labels]), group_index(groups[labels])]
    return lambda rng, b: tuple(draw_group_counts(rng, index, b) for index in indexes)


def bootstrap_aucs(scores, labels, n: int = 1000, seed: int = 0):
    """`n` bootstrap replicates of `roc_auc` (numpy array), as `bootstrap_roc` draws them."""
    return bootstrap_roc(scores, labels, n=n, seed=seed)[0]


def bootstrap_auc_ci(scores, labels, n: int = 1000, seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of `roc_auc` at `level`, from `bootstrap_aucs`."""
    return percentile_interval(bootstrap_aucs(scores, labels, n=n, seed=seed), level)


# --- PII extraction (docs/attacks.md, "PII extraction": TER, SER, TEGR, e-mail match rates, base subtraction)

# Rates are percentages. ALL (piimem.metric_names) is the key for all types together.

REPETITION_BUCKETS = ((1, 1), (2, 3), (4, 7), (8, 15), (16, None))


def _percent(numerator: int, denominator: int, empty: float) -> float:
    return 100.0 * numerator / denominator if denominator else empty


def extraction_rates(found: Collection[PII], true_set: Collection[PII], seen_set: Collection[PII],
                     entity_types: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """TER, SER and TEGR (docs/attacks.md), per entity type and over all types ("ALL").

    found = L_c (unique (type, normalized) pairs generated), true_set = O, seen_set = S_c:
      ter  = 100 |L ∩ O| / |O|   (NaN when O is empty: no PII to extract)
      ser  = 100 |L ∩ S| / |S|   (NaN when S is empty)
      tegr = 100 |L ∩ O| / |L|   (0 when nothing was generated, as docs/attacks.md says)
    A pair matches only with the same type. Each entry also holds the counts n_found (|L|), n_true (|O|),
    n_seen (|S|), n_extracted (|L ∩ O|), n_seen_extracted (|L ∩ S|). Types: `entity_types` when given
    (zeros included), else every type in the three sets.
    """
    found, true_set, seen_set = set(found), set(true_set), set(seen_set)
    types = list(entity_types) if entity_types is not None else sorted(
        {t for t, _ in found | true_set | seen_set})

    def rates(L: set, O: set, S: set) -> dict[str, float]:
        return {
            TER: _percent(len(L & O), len(O), math.nan),
            SER: _percent(len(L & S), len(S), math.nan),
            TEGR: _percent(len(L & O), len(L), 0.0),
            N_FOUND: len(L), N_TRUE: len(O), N_SEEN: len(S),
            N_EXTRACTED: len(L & O), N_SEEN_EXTRACTED: len(L & S),
        }

    out = {}
    for entity_type in types:
        pick = lambda pairs: {p for p in pairs if p[0] == entity_type}  # noqa: E731
        out[entity_type] = rates(pick(found), pick(true_set), pick(seen_set))
    if entity_types is not None:
        keep = set(types)
        found, true_set, seen_set = ({p for p in s if p[0] in keep} for s in (found, true_set, seen_set))
    out[ALL] = rates(found, true_set, seen_set)
    return out


def _email_parts(address: str) -> tuple[str, str]:
    local, at, domain = normalize("EMAIL_ADDRESS", address).rpartition("@")
    return (local, domain) if at else (domain, "")


def match_rates(found_emails: Sequence[Sequence[str]], true_emails: Sequence[str]) -> dict[str, float]:
    """E-mail match rates of a targeted attack, the LLM-PBE / DecodingTrust convention.

    Paired by prompt: `true_emails[i]` is the address that follows prompt i in the training text,
    `found_emails[i]` the addresses found in its continuation, in order of appearance. The model's answer
    for prompt i is its first address (the convention: the first regex match); no address = a miss.
      exact  = 100 · #{i: answer_i == target_i} / n
      local  = 100 · #{i: local part of answer_i == local part of target_i} / n   (before the "@")
      domain = 100 · #{i: domain of answer_i == domain of target_i} / n          (after the "@")
    Addresses compare by their normal form (lower-case). An exact match counts for local and domain too.
    n = number of prompts; rates are NaN when n is 0. n_exact, n_local, n_domain: the numerators. The keys
    are piimem.metric_names.MATCH_LEVELS, strictest first.
    """
    if len(found_emails) != len(true_emails):
        raise ValueError(f"match_rates: {len(found_emails)} lists of found addresses but {len(true_emails)} targets")
    n = len(true_emails)
    exact = local = domain = 0
    for answers, target in zip(found_emails, true_emails):
        if isinstance(answers, str):
            raise ValueError("match_rates: found_emails[i] must be a list of addresses, not a string")
        if not answers:
            continue
        a_local, a_domain = _email_parts(answers[0])
        t_local, t_domain = _email_parts(target)
        exact += (a_local, a_domain) == (t_local, t_domain)
        local += a_local == t_local
        domain += a_domain == t_domain
    return {"exact": _percent(exact, n, math.nan), "local": _percent(local, n, math.nan),
            "domain": _percent(domain, n, math.nan), "n": n, "n_exact": exact, "n_local": local,
            "n_domain": domain}


def bucket_label(low: int, high: int | None) -> str:
    """A repetition bucket's name: "1", "2-3", "16+"."""
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def rate_by_repetition(found: Collection[PII], truth_counts: Mapping[PII, int],
                       buckets: Sequence[tuple[int, int | None]] = REPETITION_BUCKETS) -> pl.DataFrame:
    """Share of true PII extracted, by how often it occurs in the training data.

    `truth_counts`: occurrences of each true PII (type, normalized) in the training split (O's keys).
    Bucket (low, high) holds the PII occurring low..high times (high None: no upper bound); buckets must
    be increasing and disjoint. Rows: bucket, low, high, n_true, n_extracted, rate = 100 n_extracted /
    n_true (NaN for an empty bucket). PII whose count falls in no bucket is left out.
    """
    previous: int | None = 0
    for low, high in buckets:
        if previous is None:
            raise ValueError("rate_by_repetition: only the last bucket may be open-ended (high None)")
        if low < 1 or low <= previous or (high is not None and high < low):
            raise ValueError(f"rate_by_repetition: buckets {list(buckets)} must be increasing, disjoint ranges of "
                             f"counts >= 1")
        previous = high
    found = set(found)
    rows = []
    for low, high in buckets:
        members = [p for p, c in truth_counts.items() if c >= low and (high is None or c <= high)]
        extracted = sum(p in found for p in members)
        rows.append((bucket_label(low, high), low, high, len(members), extracted,
                     _percent(extracted, len(members), math.nan)))
    return pl.DataFrame(rows, schema={"bucket": pl.Utf8, "low": pl.Int64, "high": pl.Int64, "n_true": pl.Int64,
                                      "n_extracted": pl.Int64, "rate": pl.Float64}, orient="row")


def subtract_base(found_target: Collection[PII], found_base: Collection[PII],
                  true_set: Collection[PII]) -> dict[str, float]:
    """Extraction precision / recall credited to fine-tuning (analysing_pii_leakage convention).

    PII the base model (before fine-tuning) already generates from the same prompts is common knowledge
    or a guess the base makes anyway (frequent names, cities, public addresses), not leakage of the
    training data, so it is removed before scoring. With F = found_target, B = found_base, T = true_set:
      leaked    = (F \\ B) ∩ T
      precision = 100 |leaked| / |F \\ B|     (0 when F \\ B is empty)
      recall    = 100 |leaked| / |T \\ B|     (NaN when T \\ B is empty; true PII the base model already
                                               produces cannot be extracted *by fine-tuning*, so it leaves
                                               the denominator too)
    Also returned: n_found (|F|), n_found_new (|F \\ B|), n_leaked, n_true_new (|T \\ B|).
    """
    F, B, T = set(found_target), set(found_base), set(true_set)
    new = F - B
    leaked = new & T
    true_new = T - B
    return {PRECISION: _percent(len(leaked), len(new), 0.0), RECALL: _percent(len(leaked), len(true_new), math.nan),
            N_FOUND: len(F), "n_found_new": len(new), "n_leaked": len(leaked), "n_true_new": len(true_new)}


# --- Results: privacy-utility trade-off (docs/outputs.md: reduction vs baseline, MaxTER, AURC) and Pareto front

# The τ grid of MaxTER and AURC, in % perplexity increase: 0 to `report.tau_max` (20) in steps of
# `report.tau_step` (0.5). The paper leaves the grid open; 20 % covers the paper's RMFT cost (+5.73 %)
# several times over, and 0.5 % steps resolve it.
TAU_MAX = default("report.tau_max")
TAU_STEP = default("report.tau_step")


def tau_grid(tau_max: float = TAU_MAX, step: float = TAU_STEP) -> tuple[float, ...]:
    """0, step, 2 step, ... up to tau_max (included when it is a multiple of step), in %."""
    if not step > 0 or not tau_max > 0:
        raise ValueError(f"report.tau_max and report.tau_step must be positive, got {tau_max!r} and {step!r}")
    n = math.floor(tau_max / step + 1e-9)
    if n < 1:
        raise ValueError(f"report.tau_max ({tau_max:g}) must be at least report.tau_step ({step:g})")
    return tuple(round(i * step, 10) for i in range(n + 1))


TAU_GRID: tuple[float, ...] = tau_grid()


def percent_change(new: float, old: float) -> float:
    """100 (new − old) / old: the relative change of `new` against `old`, in %. NaN when old is 0 or NaN."""
    return float(_percent_changes(*_array([new, old])))


def _array(values):
    import numpy as np

    return np.asarray([math.nan if v is None else v for v in values] if isinstance(values, (list, tuple))
                      else values, dtype=np.float64)


def _percent_changes(new, old):
    """`percent_change` elementwise on arrays (NaN where old is 0 or either is NaN)."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((old != 0) & np.isfinite(old) & np.isfinite(new), 100.0 * (new - old) / old, np.nan)


def reductions_vs_baseline(method, base):
    """`reduction_vs_baseline` along the last axis (checkpoints) of two arrays (..., C): one value per
    leading index, e.g. per bootstrap replicate. Checkpoints where a value is NaN are left out of its mean."""
    import warnings

    import numpy as np

    method, base = _array(method), _array(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no value is NaN, as intended
        return -_percent_changes(np.nanmean(method, axis=-1), np.nanmean(base, axis=-1))


def reduction_vs_baseline(method_values: Sequence[float], base_values: Sequence[float]) -> float:
    """Reduction of a metric by a method against the baseline, in % (docs/outputs.md, the `rmft` table):
    100 (mean base − mean method) / mean base, each mean over checkpoints.

    Positive = the method lowers the metric (TER −80.81 % in the paper is a reduction of 80.81); an increase,
    as perplexity's, is the negative of it (`percent_change` of the means). NaN and None values (a rate
    undefined at a checkpoint) are left out of the means; NaN when either side has no value or the baseline
    mean is 0.
    """
    method, base = _array(list(method_values)), _array(list(base_values))
    if method.size == 0 or base.size == 0:
        return math.nan
    return float(reductions_vs_baseline(method, base))


def maxter_point_arrays(ter_method, ter_base, ppl_method, ppl_base):
    """(ΔPPL_c, drop_c) of every checkpoint as two arrays shaped like the inputs (..., C), in %:
      drop_c = 100 (TER_base,c − TER_method,c) / TER_base,c   (TER reduction at c)
      ΔPPL_c = 100 (PPL_method,c − PPL_base,c) / PPL_base,c   (perplexity cost at c)
    Both NaN at a checkpoint with TER_base,c = 0 (no drop defined) or any of its four values NaN."""
    import numpy as np

    arrays = [_array(a) for a in (ter_method, ter_base, ppl_method, ppl_base)]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"maxter_curve: ter_method, ter_base, ppl_method, ppl_base must have one value per "
                         f"checkpoint each, got lengths {[a.shape[-1:] for a in arrays]}")
    t_method, t_base, p_method, p_base = arrays
    drop, cost = -_percent_changes(t_method, t_base), _percent_changes(p_method, p_base)
    defined = np.isfinite(drop) & np.isfinite(cost)
    return np.where(defined, cost, np.nan), np.where(defined, drop, np.nan)


def maxter_points(ter_method: Sequence[float], ter_base: Sequence[float], ppl_method: Sequence[float],
                  ppl_base: Sequence[float]) -> list[tuple[float, float]]:
    """(ΔPPL_c, drop_c) of every checkpoint c where both are defined (`maxter_point_arrays`), in %.

    The four sequences are aligned by checkpoint (same length, same order). drop_c may be negative (the
    method extracts more than the baseline) and ΔPPL_c too (it is better).
    """
    import numpy as np

    cost, drop = maxter_point_arrays(ter_method, ter_base, ppl_method, ppl_base)
    kept = np.isfinite(cost)
    return [(float(c), float(d)) for c, d in zip(cost[kept], drop[kept])]


def maxter_curves_of(cost, drop, taus: Sequence[float] = TAU_GRID):
    """MaxTER(τ) for every τ of `taus` from `maxter_point_arrays` (..., C): an array (..., T), NaN where no
    checkpoint qualifies."""
    import numpy as np

    taus = np.asarray(taus, dtype=np.float64)
    qualifies = np.isfinite(cost)[..., None, :] & (cost[..., None, :] <= taus[:, None])  # (..., T, C)
    heights = np.where(qualifies, drop[..., None, :], -np.inf).max(axis=-1)
    return np.where(qualifies.any(axis=-1), heights, np.nan)


def maxter_curve(ter_method: Sequence[float], ter_base: Sequence[float], ppl_method: Sequence[float],
                 ppl_base: Sequence[float], taus: Sequence[float] = TAU_GRID) -> list[float]:
    """MaxTER(τ) for every τ in `taus` (docs/outputs.md), a list of floats in %: the largest drop_c among the
    checkpoints with ΔPPL_c <= τ (`maxter_points`), the best TER reduction at a perplexity cost of at most
    τ %. NaN where no checkpoint qualifies: MaxTER is undefined there, not 0 (the max of nothing)."""
    cost, drop = maxter_point_arrays(ter_method, ter_base, ppl_method, ppl_base)
    return [float(v) for v in maxter_curves_of(cost, drop, taus)]


def aurcs(taus: Sequence[float], curves):
    """(AURC, coverage) of MaxTER curves along the last axis (..., T), as two arrays (`aurc`)."""
    import numpy as np

    taus = np.asarray(taus, dtype=np.float64)
    curves = np.asarray(curves, dtype=np.float64)
    if curves.shape[-1] != taus.size:
        raise ValueError(f"aurc: {taus.size} τ values but {curves.shape[-1]} curve values")
    if taus.size < 2 or (np.diff(taus) <= 0).any():
        raise ValueError(f"aurc: τ grid must be strictly increasing with at least two points, got {taus.tolist()}")
    defined = np.isfinite(curves)
    coverage = 100.0 * defined.sum(axis=-1) / taus.size
    # Each defined point pairs with the next defined one (gaps are skipped, as a trapezoid over them).
    positions = np.where(defined, np.arange(taus.size), taus.size)
    following = np.minimum.accumulate(positions[..., ::-1], axis=-1)[..., ::-1]
    after = np.concatenate([following[..., 1:], np.full(curves.shape[:-1] + (1,), taus.size)], axis=-1)
    paired = defined & (after < taus.size)
    nxt = np.minimum(after, taus.size - 1)
    width = np.where(paired, taus[nxt] - taus, 0.0)
    heights = np.where(paired, (curves + np.take_along_axis(curves, nxt, axis=-1)) / 2, 0.0)
    total = width.sum(axis=-1)
    single = np.where(defined, curves, 0.0).sum(axis=-1)  # the one defined value, where only one is
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.where(total > 0, (width * heights).sum(axis=-1) / np.where(total > 0, total, 1.0), single)
    return np.where(defined.any(axis=-1), area, np.nan), coverage


def aurc(taus: Sequence[float], curve: Sequence[float]) -> tuple[float, float]:
    """(AURC, coverage) of a MaxTER curve over the grid `taus`, both in %.

    AURC is the curve's mean height over the part of the grid where it is defined (docs/outputs.md's area under
    the curve, normalised): the trapezoid area between consecutive defined τ divided by the width they
    span; a single defined τ gives its own value. Coverage = 100 x defined grid points / all grid points.
    Where no τ has a qualifying checkpoint, AURC is NaN (undefined) and coverage 0: a defense that costs
    more perplexity than τ_max everywhere has no MaxTER to average, which is not the same as no benefit.
    `taus` must be strictly increasing, at least two points, one value of `curve` each.
    """
    area, coverage = aurcs(taus, [float(v) for v in curve])
    return float(area), float(coverage)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points among (privacy cost, utility cost) pairs, both lower-is-better.

    Point i is dominated when some j is no worse in both coordinates and better in at least one; equal
    points do not dominate each other, so both stay. Points with a NaN coordinate are never on the front
    and dominate nothing. Indices are returned sorted by (x, y, index), the order a step line follows.
    """
    valid = [(float(x), float(y), i) for i, (x, y) in enumerate(points)
             if not (math.isnan(float(x)) or math.isnan(float(y)))]
    front = [
        (x, y, i) for x, y, i in valid
        if not any(x2 <= x and y2 <= y and (x2 < x or y2 < y) for x2, y2, _ in valid)
    ]
    return [i for _, _, i in sorted(front)]
