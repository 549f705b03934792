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
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

# Audit canary messages carry doc ids from here up: above any corpus id (a corpus's ids count its messages),
# so training knows them (`is_canary_doc`) without another column through every defense.
DOC_ID_BASE = 1 << 40
# Shares of the canaries guessed, half "included" (highest scores), half "held out" (lowest). The bound is the
# largest over the grid, each tested at β / len(grid) (Bonferroni), so choosing the best share costs nothing
# in confidence. Few guesses give a high bound when the top scores are all members; all guesses, when the
# signal is spread thin.
GUESS_SHARES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
# What the canary message says around the address: a lead-in sentence, then the address. Several lead-ins, so
# that the canaries share no 100-byte substring (exact-substring deduplication would cut it) and are no
# near-duplicates of each other (tests/test_audit.py checks both with the dedup stage).
LEAD_INS = (
    "Please use my personal address from now on:",
    "You can reach me at home at",
    "My new e-mail is",
    "Send the signed copy to",
    "For anything urgent write to",
    "Forward the schedule to my other account,",
)
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


def make_canaries(m: int, seed: int) -> pl.DataFrame:
    """`m` audit canary messages (CANARY_SCHEMA), each included with probability 1/2, all from `seed`.

    A message: "Subject: ..." and two or three prose sentences, the lead-in and the address, a closing
    sentence. Addresses are distinct; doc ids are DOC_ID_BASE + canary_id."""
    from piimem.corpus.synthetic import canary_email, prose

    if m < 0:
        raise ValueError(f"audit.canaries: expected a count >= 0, got {m}")
    rng = random.Random(f"audit:{seed}")
    lexicon = prose.Lexicon(prose.wordnet_words(), seed)
    rows, seen = [], set()
    for canary_id in range(m):
        value = canary_email(rng)
        while value in seen:
            value = canary_email(rng)
        seen.add(value)
        before = " ".join(prose.sentences(rng, rng.randint(2, 3), lexicon))
        lead = f"Subject: {prose.subject(rng)}\n\n{before} {rng.choice(LEAD_INS)} "
        after = prose.sentences(rng, 1, lexicon)[0]
        included = rng.random() < 0.5
        rows.append((canary_id, DOC_ID_BASE + canary_id, included, f"{lead}{value}.\n{after}\n", len(lead), value))
    return pl.DataFrame(rows, schema=CANARY_SCHEMA, orient="row")


def as_messages(canaries: pl.DataFrame) -> pl.DataFrame:
    """The canaries as rows of the messages table the PII detector reads (doc_id, text, text_body_offset)."""
    return canaries.select("doc_id", "text", text_body_offset=pl.col("text").str.find("\n\n", literal=True) + 2)


def canary_spans(canaries: pl.DataFrame, pii: dict) -> pl.DataFrame:
    """The PII stage's spans of the canary messages (`piimem.pii.detect.detect_spans` with the config's `pii`
    section): what RMFT and scrubbing rewrite in them, as in any training message."""
    from piimem.pii.detect import detect_spans

    return detect_spans(as_messages(canaries), entity_types=pii["entity_types"],
                        score_threshold=pii["score_threshold"], batch_size=pii["batch_size"],
                        spacy_model=pii["spacy_model"], ignore=pii["ignore"], header_pii=False)


def canary_summary(canaries: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """Public counts: canaries, how many are included, and how many addresses the PII stage found (exactly)."""
    found = spans.filter(pl.col("entity_type") == "EMAIL_ADDRESS").join(
        canaries.select("doc_id", "start", "value"), on=["doc_id", "start"], how="inner")
    found = found.filter(pl.col("end") - pl.col("start") == pl.col("value").str.len_chars())
    return pl.DataFrame({"canaries": [canaries.height], "included": [int(canaries["included"].sum())],
                         "held_out": [int((~canaries["included"]).sum())],
                         "addresses_detected": [found["doc_id"].n_unique()],
                         "other_spans": [spans.height - found.height]})


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


def canary_scores(model, base_model, tokenizer, canaries: pl.DataFrame, *, batch_size: int = 32,
                  device: str = "auto", base_nll: list[float] | None = None) -> pl.DataFrame:
    """SCORE_SCHEMA per canary: the total NLL (nats) of the address after the text before it under `model` and
    `base_model` (or `base_nll`, computed once for several checkpoints), and score = base_nll - nll."""
    if base_nll is None:
        base_nll = address_nll(base_model, tokenizer, canaries, batch_size=batch_size, device=device)
    nll = address_nll(model, tokenizer, canaries, batch_size=batch_size, device=device)
    return pl.DataFrame({"canary_id": canaries["canary_id"], "included": canaries["included"], "nll": nll,
                         "base_nll": base_nll}, schema={k: SCORE_SCHEMA[k] for k in SCORE_SCHEMA if k != "score"}
                        ).with_columns(score=pl.col("base_nll") - pl.col("nll"))


def address_nll(model, tokenizer, canaries: pl.DataFrame, *, batch_size: int = 32, device: str = "auto",
                ) -> list[float]:
    """Total NLL (nats) of each canary's address given the message text before it (one window per canary:
    `inference.filled_window_scores`, the scoring of the canary exposures and the targeted attacks)."""
    from piimem.extraction.inference import filled_window_scores
    from piimem.progress import Progress

    out = []
    with Progress(canaries.height, "audit: score canaries", unit="canaries") as progress:
        for text, start, value in canaries.select("text", "start", "value").rows():
            head = text[:start]
            # A space that ends the context goes with the address, as the tokenizer splits the message.
            head, separator = (head[:-1], " ") if head.endswith(" ") else (head, "")
            out.append(filled_window_scores(model, tokenizer, head, [separator + value], "", batch_size=batch_size,
                                            device=device, per_token=False)[0])
            progress.update()
    return out


# ------------------------------------------------------------------------------------------
# The bound


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


def accounted_epsilon(manifest: dict, delta: float) -> float | None:
    """A DP run's accounted ε at `delta` over all its steps (its accountant, noise and sampling rate, from the
    manifest's `dp`); None for a run without DP-SGD."""
    import dataclasses

    from piimem.train.dp import DPPlan, epsilon_spent

    if not manifest.get("dp"):
        return None
    plan = dataclasses.replace(DPPlan(**manifest["dp"]), delta=delta)
    return epsilon_spent(plan, int(manifest["steps"]))


def audit_run(model, base_model, tokenizer, canaries: pl.DataFrame, *, manifest, checkpoint: dict,
              audit_config: dict, batch_size: int = 32, device: str = "auto") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(result rows: checkpoint, epoch, metric, value; the per-canary SCORE_SCHEMA records with checkpoint and
    epoch) of one run's audit at `checkpoint` (`piimem.runs.checkpoint_models`)."""
    import json
    import logging

    from piimem.runs import stamp

    log = logging.getLogger("piimem")
    manifest = json.loads(open(manifest).read()) if not isinstance(manifest, dict) else manifest
    scores = canary_scores(model, base_model, tokenizer, canaries, batch_size=batch_size, device=device)
    delta = audit_config["delta"]
    result = audit(scores["score"].to_numpy(), scores["included"].to_numpy(), delta=delta,
                   confidence=audit_config["confidence"])
    log.info("audit: ε >= %.3g at %.0f %% confidence (δ = %.3g): %d of %d guesses right, %d canaries (%d included)",
             result.epsilon, 100 * result.confidence, result.delta, result.correct, result.guesses, result.canaries,
             result.included)
    rows = audit_rows(result)
    accounted = accounted_epsilon(manifest, delta)
    if accounted is not None:
        from piimem.metric_names import AUDIT

        rows.append((AUDIT["accounted"], accounted))
        log.info("audit: the accountant's ε at that δ is %.3g (%s)", accounted,
                 "no violation found" if result.epsilon <= accounted else "DP GUARANTEE VIOLATED")
    rows = pl.DataFrame(rows, schema={"metric": pl.Utf8, "value": pl.Float64}, orient="row")
    return stamp(rows, checkpoint), stamp(scores, checkpoint)
