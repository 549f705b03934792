"""Canary exposure (Carlini et al. 2019, "The Secret Sharer"): the text before each planted canary
(`canary_contexts`), the canary's log-likelihood against `random_candidates` of the same format, and two
exposures from them (`canary_exposures`): the rank exposure, log2 |R| - log2 rank, which cannot exceed log2 |R|,
and the extrapolated exposure, -log2 of the candidates' fitted skew-normal CDF at the canary's value, which keeps
growing past it."""

from __future__ import annotations

import logging
import math
import os
import random
import re
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from piimem.extraction.prompts import check_count, last_tokens_start
from piimem.progress import Progress

log = logging.getLogger("piimem")

# A fitted skew-normal whose shape is beyond this is taken as a failed fit: with a hundred candidates the
# shape's maximum-likelihood estimate runs off to infinity with non-negligible probability (the fit then
# becomes a half-normal whose cut-off tail gives thousands of bits to any canary below the sample).
MAX_SHAPE = 20.0
# Fewest candidates a skew-normal (three parameters) is fitted to; fewer fit a normal.
MIN_FIT = 20
# Below this log-CDF (nats), scipy's skew-normal CDF loses precision and underflows; the tail is integrated.
_TAIL_LOGCDF = -20.0
FITS = ("skewnorm", "normal", "rank")  # the `exposure_fit` of each canary: which estimate it got


def _window_nll(model, tokenizer, context: str, values: Sequence[str], *, batch_size: int,
                device: str) -> list[float]:
    """Total NLL (nats) of `context + value` for every value (`inference.filled_window_scores`: the context
    is run once and its key/value cache reused; a space that ends the context moves to the values, as a
    training text tokenises it)."""
    from piimem.extraction.inference import filled_window_scores

    head, separator = (context[:-1], " ") if context.endswith(" ") else (context, "")
    try:
        return filled_window_scores(model, tokenizer, head, [separator + v for v in values], "",
                                    batch_size=batch_size, device=device, per_token=False)
    except ValueError as error:
        raise ValueError(f"canary_exposure: {error}") from None


def rank_exposure(canary_score: float, candidate_scores: Sequence[float]) -> float:
    """log2 |R| - log2 rank, R = the candidates plus the canary, ranked by score (NLL), lowest first, ties
    counted against the canary (rank = 1 + #{c: score_c <= canary's}), so a model indifferent between the
    candidates shows none. Ranked first: log2 |R|; last: 0."""
    rank = 1 + sum(s <= canary_score for s in candidate_scores)
    return math.log2(len(candidate_scores) + 1) - math.log2(rank)


def _skewnorm_logcdf(x: float, shape: float, loc: float, scale: float) -> float:
    """log F(x) of a skew-normal, also far in the tail, where scipy's CDF underflows: there
    F(z) = f(z) * integral_0^inf f(z - u) / f(z) du, with log f(z) = log 2 + log phi(z) + log Phi(shape z)."""
    from scipy.integrate import quad
    from scipy.stats import norm, skewnorm

    value = float(skewnorm.logcdf(x, shape, loc, scale))
    if math.isfinite(value) and value > _TAIL_LOGCDF:
        return value
    z = (x - loc) / scale

    def log_pdf(t: float) -> float:
        return math.log(2) + float(norm.logpdf(t)) + float(norm.logcdf(shape * t))

    head = log_pdf(z)
    tail, _ = quad(lambda u: math.exp(log_pdf(z - u) - head), 0, math.inf)
    return head + math.log(tail)


def extrapolated_exposure(canary_score: float, candidate_scores: Sequence[float]) -> tuple[float, str]:
    """(exposure in bits, fit) of a canary: -log2 F(canary_score), F the CDF of a skew-normal fitted by
    maximum likelihood to the candidates' scores (Carlini et al. 2019, exposure by extrapolation: the share
    of the whole random space that is more likely than the canary, not only of the candidates scored).

    Fallbacks, named in `fit`: "normal" (a normal with the candidates' mean and standard deviation) when the
    skew-normal fit raises, gives a non-finite parameter, a shape beyond ±MAX_SHAPE or a non-positive scale,
    or when fewer than MIN_FIT candidates are finite; "rank" (`rank_exposure`) when the candidates' scores
    do not vary (no distribution to fit) or the canary's score is not finite.
    """
    from scipy.stats import norm, skewnorm

    scores = np.asarray(candidate_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size < 2 or not math.isfinite(canary_score) or float(np.ptp(scores)) == 0.0:
        return rank_exposure(canary_score, list(candidate_scores)), "rank"
    if scores.size >= MIN_FIT:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the optimiser's overflow warnings on the way to an optimum
                shape, loc, scale = map(float, skewnorm.fit(scores))
            if all(map(math.isfinite, (shape, loc, scale))) and scale > 0 and abs(shape) <= MAX_SHAPE:
                return -_skewnorm_logcdf(canary_score, shape, loc, scale) / math.log(2), "skewnorm"
        except (ValueError, RuntimeError, FloatingPointError):
            pass
    mean, sd = float(scores.mean()), float(scores.std(ddof=1))
    return -float(norm.logcdf(canary_score, mean, sd)) / math.log(2), "normal"


def canary_exposure(model, tokenizer, canary: str, context: str, candidates: Sequence[str], *,
                    batch_size: int = 32, device: str = "auto") -> float:
    """Rank exposure of a canary (`rank_exposure`), R = the distinct `candidates` plus the canary (added when
    missing), each scored by the model's NLL of `context + r` (`_window_nll`). A canary ranked first gives
    the maximum, log2 |R|; one ranked last gives 0."""
    space = list(dict.fromkeys([canary, *candidates]))
    if len(space) < 2:
        raise ValueError("canary_exposure: needs at least one candidate other than the canary")
    nll = _window_nll(model, tokenizer, context, space, batch_size=batch_size, device=device)
    return rank_exposure(nll[0], nll[1:])


def random_candidates(canary: str, entity_type: str | None, n: int, seed: int) -> list[str]:
    """`n` distinct strings of the canary's format, from the space the canary itself was drawn from.

    entity_type EMAIL_ADDRESS: first.last at the canary's domain, first and last names drawn as the
    synthetic corpus draws its e-mail canaries (`piimem.corpus.synthetic.canary_email`). The others redraw
    every digit and keep every other character: US_SSN valid SSNs (area 001-899 but 666, group and serial
    non-zero); CREDIT_CARD the same network prefix and a valid Luhn check digit; PHONE_NUMBER a valid North
    American number shape, country code kept (piimem.surrogates); None (or another type) uniform digits. The
    canary itself never appears. Raises ValueError when the canary has no digit (an address: no `@`) or its
    shape cannot give `n` distinct values.
    """
    from piimem import surrogates
    from piimem.corpus.synthetic import canary_email, canary_name_parts

    check_count("random_candidates: n", n)
    if entity_type == "EMAIL_ADDRESS":
        local, at, domain = canary.rpartition("@")
        if not (local and at and domain):
            raise ValueError("random_candidates: an EMAIL_ADDRESS canary must read local@domain")
        first, last = canary_name_parts()
        size = len(first) * len(last)

        def draw(original: str, rng: random.Random) -> str:
            return canary_email(rng, domain)
    else:
        digits = sum(ch.isdigit() for ch in canary)
        if digits == 0:
            raise ValueError("random_candidates: the canary holds no digit to redraw")
        size = 10 ** digits
        draw = {
            "US_SSN": surrogates.ssn_surrogate,
            "CREDIT_CARD": surrogates.card_surrogate,
            "PHONE_NUMBER": surrogates.phone_surrogate,
        }.get(entity_type, lambda original, rng: re.sub(r"\d", lambda _: str(rng.randrange(10)), original))
    if size - 1 < n:
        raise ValueError(f"random_candidates: a canary of this format allows at most {size - 1} other values, "
                         f"{n} asked")
    rng = random.Random(seed)
    out: dict[str, None] = {}
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise ValueError(f"random_candidates: could not draw {n} distinct {entity_type or 'digit'} values of "
                             f"this shape ({len(out)} found)")
        value = draw(canary, rng)
        if value != canary:
            out[value] = None
    return list(out)


CANARY_SCHEMA = {
    "canary_id": pl.Int64,
    "entity_type": pl.Utf8,
    "repetitions": pl.Int64,  # occurrences planted in the corpus
    "train_occurrences": pl.Int64,  # training-split messages that hold it
    "doc_id": pl.Int64,  # the message its context comes from
    "context": pl.Utf8,
    "value": pl.Utf8,
}
# Per canary and checkpoint (public: ids and numbers, no value): `{checkpoint}.canaries.parquet`, and with
# max_exposure the rows of `{checkpoint}.tsv`.
CANARY_RECORD_SCHEMA = {
    "canary_id": pl.Int64,  # the same canary in every run of a base model (`canary_contexts`)
    "entity_type": pl.Utf8,
    "repetitions": pl.Int64,
    "train_occurrences": pl.Int64,
    "exposure": pl.Float64,  # rank exposure, bits
    "exposure_extrapolated": pl.Float64,  # bits
    "exposure_fit": pl.Utf8,  # one of FITS
    "n_candidates": pl.Int64,  # random candidates; |R| = n_candidates + 1
}


def canary_contexts(truth: pl.DataFrame, messages: pl.DataFrame, train_doc_ids: Collection[int], tokenizer, *,
                    context_tokens: int) -> pl.DataFrame:
    """One row per planted canary of the synthetic corpus: its value, how often the training split holds it
    and the `context_tokens` tokens of message text right before one occurrence (private data).

    `truth`: the synthetic ground truth (is_canary, canary_repetitions, entity_type, value); `messages`:
    (doc_id, text). The context comes from the first training message (lowest doc_id) that holds the canary,
    the occurrence RMFT keeps (`keep: first`), or, for a canary with no training occurrence (a non-member
    control), from the first message that does. canary_id numbers the canaries in (entity_type,
    repetitions, value) order, so it is the same in every run of a base model. Canaries found in no message
    text (e.g. cut by a parse limit) are left out and logged.
    """
    check_count("canary_contexts: context_tokens", context_tokens)
    canaries = (truth.filter(pl.col("is_canary")).select("entity_type", "value", "canary_repetitions")
                .unique().sort("entity_type", "canary_repetitions", "value"))
    train = set(train_doc_ids)
    docs = messages.select("doc_id", "text").sort("doc_id").rows()
    rows = []
    for entity_type, value, repetitions in canaries.rows():
        holders = [(doc_id, text) for doc_id, text in docs if text and value in text]
        if not holders:
            log.warning("extract: a %s canary planted %d times is in no message text; left out", entity_type,
                        repetitions)
            continue
        in_train = [h for h in holders if h[0] in train]
        doc_id, text = (in_train or holders)[0]
        end = text.index(value)
        start, _ = last_tokens_start(tokenizer, text, end, context_tokens)
        rows.append((len(rows), entity_type, repetitions, len(in_train), doc_id, text[start:end], value))
    return pl.DataFrame(rows, schema=CANARY_SCHEMA, orient="row")


def canary_candidates(canaries: pl.DataFrame, *, n_candidates: int, seed: int) -> list[list[str]]:
    """`random_candidates` of every canary of a `canary_contexts` table, in its row order, drawn from
    (seed, canary_id): every checkpoint and run ranks a canary against the same ones."""
    return [random_candidates(value, entity_type, n_candidates, seed=seed * 1_000_003 + canary_id)
            for canary_id, entity_type, value in canaries.select("canary_id", "entity_type", "value").rows()]


def canary_exposures(model, tokenizer, canaries: pl.DataFrame, *, n_candidates: int, seed: int,
                     batch_size: int = 32, device: str = "auto",
                     candidates: Sequence[Sequence[str]] | None = None) -> pl.DataFrame:
    """Both exposures of every canary of a `canary_contexts` table: CANARY_RECORD_SCHEMA rows and
    max_exposure (log2 |R|, the rank exposure's ceiling), no value. `candidates`: `canary_candidates` of the
    same table, n_candidates and seed, drawn once for all checkpoints of a job (drawn here when None)."""
    if candidates is None:
        candidates = canary_candidates(canaries, n_candidates=n_candidates, seed=seed)
    if len(candidates) != canaries.height or any(len(c) != n_candidates for c in candidates):
        raise ValueError(f"canary_exposures: expected {n_candidates} candidates for each of {canaries.height} "
                         f"canaries")
    rows = []
    with Progress(canaries.height, "extract: canary exposure", unit="canaries") as progress:
        for canary, drawn in zip(canaries.iter_rows(named=True), candidates):
            nll = _window_nll(model, tokenizer, canary["context"], [canary["value"], *drawn],
                              batch_size=batch_size, device=device)
            extrapolated, fit = extrapolated_exposure(nll[0], nll[1:])
            rows.append((canary["canary_id"], canary["entity_type"], canary["repetitions"],
                         canary["train_occurrences"], rank_exposure(nll[0], nll[1:]), extrapolated, fit,
                         n_candidates, math.log2(n_candidates + 1)))
            progress.update()
    table = pl.DataFrame(rows, schema={**CANARY_RECORD_SCHEMA, "max_exposure": pl.Float64}, orient="row")
    fallbacks = table.filter(pl.col("exposure_fit") != "skewnorm")
    if fallbacks.height:
        log.info("extract: %d of %d canaries' extrapolated exposures fell back (%s)", fallbacks.height, table.height,
                 ", ".join(f"{fit} {n}" for fit, n in fallbacks.group_by("exposure_fit").len().sort("exposure_fit")
                           .rows()))
    return table


@dataclass
class CanaryExposure:
    """Canary exposure of a run's checkpoints: the canaries of a base model (`canary_contexts`), each ranked at
    every checkpoint against the same `canary_candidates`, drawn once."""

    tokenizer: object
    canaries: pl.DataFrame  # private: the canaries' values and contexts
    candidates: list[list[str]]
    n_candidates: int
    seed: int
    batch_size: int
    device: str

    @classmethod
    def from_file(cls, tokenizer, canaries: str | os.PathLike, *, n_candidates: int, seed: int, batch_size: int,
                  device: str) -> CanaryExposure:
        canaries = pl.read_parquet(canaries)
        return cls(tokenizer, canaries, canary_candidates(canaries, n_candidates=n_candidates, seed=seed),
                   n_candidates, seed, batch_size, device)

    def tables(self, model, checkpoint: dict) -> dict[str, pl.DataFrame]:
        """One checkpoint's exposures (`results`: CANARY_RECORD_SCHEMA and max_exposure) and its records
        (`records`: CANARY_RECORD_SCHEMA), both stamped with the checkpoint (canary_exposure's outputs)."""
        from piimem.runs import stamp

        exposures = stamp(canary_exposures(model, self.tokenizer, self.canaries, n_candidates=self.n_candidates,
                                           seed=self.seed, batch_size=self.batch_size, device=self.device,
                                           candidates=self.candidates), checkpoint)
        means = exposures.select(pl.col("exposure", "max_exposure", "exposure_extrapolated").mean()
                                 .fill_null(float("nan")))
        log.info("checkpoint %s: %d canaries, mean exposure %.2f of at most %.2f bits (rank), %.2f bits "
                 "(extrapolated)", checkpoint["id"], exposures.height, *means.row(0))
        return {"results": exposures, "records": exposures.select(*CANARY_RECORD_SCHEMA, "checkpoint", "epoch")}
