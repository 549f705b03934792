"""Canary exposure (Carlini et al. 2019): the text before each planted canary (`canary_contexts`) and the
canary's rank among `random_candidates` of the same format (`canary_exposure`, `canary_exposures`)."""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Collection, Sequence

import polars as pl

from piimem.extraction.prompts import check_count, last_tokens_start
from piimem.progress import Progress

log = logging.getLogger("piimem")


def canary_exposure(model, tokenizer, canary: str, context: str, candidates: Sequence[str], *,
                    batch_size: int = 32, device: str = "auto") -> float:
    """Exposure of a canary (Carlini et al. 2019, "The Secret Sharer"): log2 |R| − log2 rank.

    R = the distinct `candidates` plus the canary itself (added when missing). Each r in R is scored by the
    model's negative log-likelihood of `context + r` (the whole text; `inference.filled_window_scores`:
    the context is run once and its key/value cache reused for every r, a space that ends the context moved
    to the candidates, as a training text tokenises it); rank = the canary's position when R is sorted by
    likelihood, most likely first, ties counted against the canary (rank = #{r: nll(r) <= nll(canary)}), so
    a model indifferent between candidates shows no exposure. A canary ranked first gives the maximum,
    log2 |R|; one ranked last gives 0.
    """
    from piimem.extraction.inference import filled_window_scores, rank_of_truth

    space = list(dict.fromkeys([canary, *candidates]))
    if len(space) < 2:
        raise ValueError("canary_exposure: needs at least one candidate other than the canary")
    head, separator = (context[:-1], " ") if context.endswith(" ") else (context, "")
    try:
        nll = filled_window_scores(model, tokenizer, head, [separator + r for r in space], "",
                                   batch_size=batch_size, device=device, per_token=False)
    except ValueError as error:
        raise ValueError(f"canary_exposure: {error}") from None
    return math.log2(len(space)) - math.log2(rank_of_truth(nll))


def random_candidates(canary: str, entity_type: str | None, n: int, seed: int) -> list[str]:
    """`n` distinct strings shaped like `canary`: every digit redrawn, every other character kept.

    entity_type US_SSN: valid SSNs (area 001-899 but 666, group and serial non-zero); CREDIT_CARD: the same
    network prefix and a valid Luhn check digit; PHONE_NUMBER: a valid North American number shape,
    country code kept (piimem.surrogates); None (or another type): uniform digits. The canary itself never
    appears. Raises ValueError when the canary has no digit or its shape cannot give `n` distinct values.
    """
    from piimem import surrogates

    check_count("random_candidates: n", n)
    digits = sum(ch.isdigit() for ch in canary)
    if digits == 0:
        raise ValueError("random_candidates: the canary holds no digit to redraw")
    if 10 ** digits - 1 < n:
        raise ValueError(f"random_candidates: a canary with {digits} digit(s) allows at most {10 ** digits - 1} "
                         f"other values, {n} asked")
    draw = {
        "US_SSN": surrogates.ssn_surrogate,
        "CREDIT_CARD": surrogates.card_surrogate,
        "PHONE_NUMBER": surrogates.phone_surrogate,
    }.get(entity_type, lambda original, rng: re.sub(r"\d", lambda _: str(rng.randrange(10)), original))
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


def canary_contexts(truth: pl.DataFrame, messages: pl.DataFrame, train_doc_ids: Collection[int], tokenizer, *,
                    context_tokens: int) -> pl.DataFrame:
    """One row per planted canary of the synthetic corpus: its value, how often the training split holds it
    and the `context_tokens` tokens of message text right before one occurrence (private data).

    `truth`: the synthetic ground truth (is_canary, canary_repetitions, entity_type, value); `messages`:
    (doc_id, text). The context comes from the first training message that holds the canary, or, for a
    canary with no training occurrence (a non-member control), from the first message that does. Canaries
    found in no message text (e.g. cut by a parse limit) are left out and logged.
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


def canary_exposures(model, tokenizer, canaries: pl.DataFrame, *, n_candidates: int, seed: int,
                     batch_size: int = 32, device: str = "auto") -> pl.DataFrame:
    """Exposure of every canary of a `canary_contexts` table: (entity_type, repetitions, train_occurrences,
    exposure, max_exposure), no value. Candidates are drawn per canary from (seed, canary_id), so every
    checkpoint ranks a canary against the same ones."""
    rows = []
    with Progress(canaries.height, "extract: canary exposure", unit="canaries") as progress:
        for canary in canaries.iter_rows(named=True):
            candidates = random_candidates(canary["value"], canary["entity_type"], n_candidates,
                                           seed=seed * 1_000_003 + canary["canary_id"])
            exposure = canary_exposure(model, tokenizer, canary["value"], canary["context"], candidates,
                                       batch_size=batch_size, device=device)
            rows.append((canary["entity_type"], canary["repetitions"], canary["train_occurrences"], exposure,
                         math.log2(n_candidates + 1)))
            progress.update()
    return pl.DataFrame(rows, schema={"entity_type": pl.Utf8, "repetitions": pl.Int64, "train_occurrences": pl.Int64,
                                      "exposure": pl.Float64, "max_exposure": pl.Float64}, orient="row")
