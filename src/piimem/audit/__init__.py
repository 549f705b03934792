"""An empirical privacy audit in the run itself: a lower bound on ε from canaries (Steinke, Nasr & Jagielski,
NeurIPS 2023, "Privacy auditing with one (1) training run"; docs/audit.md).

The steps, each a function below:
1. `make_canaries`: m short mail messages, each holding one e-mail address drawn at random (first.last at a
   free-mail host, the space of the exposure canaries, `piimem.corpus.synthetic.canary_email`) between two
   sentences of the synthetic corpus's business prose, each included in training with probability 1/2 from the
   config's seed. They never enter the corpus, its splits or any attack's sample: `with_canaries` adds the
   included half to the train split's text where each defense builds its training text, so deduplication, RMFT
   and scrubbing act on them as on any message (their e-mail spans come from the PII stage's own detector).
2. Training (`piimem.train.data`) gives every message whose doc_id is at or above `DOC_ID_BASE` an example of
   its own, outside the packed blocks: adding or removing one canary adds or removes exactly one example
   (one privacy unit of DP-SGD) and changes no other.
3. `canary_scores`: per canary, the NLL (nats) of its address after the text before it, under the base model
   minus under the run's model: how much fine-tuning raised the address's likelihood (the base model's NLL
   takes out how likely the address is anyway; neither model saw a held-out canary).
4. `audit`: guess "included" for the k highest scores and "held out" for the k lowest, for k in a fixed grid
   of shares of the canaries (`GUESS_SHARES`, Bonferroni over the grid), count the correct guesses, and take
   the largest ε that the count rejects at confidence 1 - β for (ε, δ)-DP (`epsilon_lower_bound`: the paper's
   Theorem 5.2 as a p-value, solved for ε with scipy). A lower bound: the run is at least this leaky, with
   probability 1 - β over the canaries' coin flips; it says nothing about how much leakier it may be.

Modules: `canaries` (step 1: the canary messages and their PII spans), `bound` (step 4: the guesses and the ε
bound), `scores` (step 3 and the per-run audit, `RunAudit`). This module holds what training and the defenses'
texts need (the canaries' doc ids, adding the included half), so that those jobs import neither Presidio nor
torch for it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# Audit canary messages carry doc ids from here up: above any corpus id (a corpus's ids count its messages),
# so training knows them (`is_canary_doc`) without another column through every defense.
DOC_ID_BASE = 1 << 40

CANARY_SCHEMA = {
    "canary_id": pl.Int64,
    "doc_id": pl.Int64,
    "included": pl.Boolean,
    "text": pl.Utf8,  # the message (private: the address is in it)
    "start": pl.Int64,  # where the address starts in text
    "value": pl.Utf8,
}

# Per run: one row per canary, public (no text, no address).
SCORE_SCHEMA = {"canary_id": pl.Int64, "included": pl.Boolean, "nll": pl.Float64, "base_nll": pl.Float64,
                "score": pl.Float64}

def is_canary_doc(doc_ids) -> np.ndarray:
    """Which of `doc_ids` are audit canary messages (bool array)."""
    return np.asarray(doc_ids, dtype=np.int64) >= DOC_ID_BASE

def with_canaries(train: pl.DataFrame, canaries: pl.DataFrame | None, spans: pl.DataFrame | None = None,
                  canary_spans: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(the train split's doc_id, text with the included canaries' messages added; `spans` with the canaries'
    `canary_spans` added where both are given). Both unchanged without canaries."""
    if canaries is None or canaries.height == 0:
        return train, spans
    if train.height and int(train["doc_id"].max()) >= DOC_ID_BASE:
        raise ValueError(f"audit: the corpus has doc ids at or above {DOC_ID_BASE}, where the audit canaries' are")
    added = canaries.filter(pl.col("included")).select("doc_id", "text")
    train = pl.concat([train.select("doc_id", "text"), added]).sort("doc_id")
    if spans is not None and canary_spans is not None:
        spans = pl.concat([spans, canary_spans], how="vertical_relaxed")
    return train, spans
