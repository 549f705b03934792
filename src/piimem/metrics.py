"""Metric formulas, in one place (definitions: reference/papers.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence


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
    return {"ppl_mean": ppl_mean, "ppl_corpus": ppl_corpus}
