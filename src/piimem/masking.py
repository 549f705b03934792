"""Training-text defenses that rewrite PII: Randomized Masked Fine-Tuning (RMFT) and scrubbing.

Both take the training split's texts (doc_id, text) and the PII spans found in them (the `spans`
contract: offsets into `text`, non-overlapping) and return the rewritten texts in the same row order.

RMFT (Joshi & Smith, arXiv 2512.03310), the paper setting being the default: group the occurrences of
each PII string (same type, same normal form), ordered by (doc_id, start); keep one verbatim (the
first) and replace every other one by a fresh, independently drawn surrogate of the same type. Each
real string then occurs once in the training text, while the text keeps its shape.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import defaultdict
from dataclasses import dataclass

import polars as pl

from piimem.pii.normalize import ENTITY_TYPES, normalize
from piimem.progress import track
from piimem.schema import check, default
from piimem.surrogates import PII_LIKE_PATTERNS, make_surrogate

log = logging.getLogger("piimem")

MAPPING_SCHEMA = {
    "doc_id": pl.Int64,
    "start": pl.Int64,
    "end": pl.Int64,
    "entity_type": pl.Utf8,
    "original": pl.Utf8,
    "surrogate": pl.Utf8,
    "new_start": pl.Int64,
    "new_end": pl.Int64,
}


@dataclass(frozen=True)
class RmftConfig:
    """The `rmft` block of the config. Defaults are the paper's setting.

    keep: which occurrence of each PII string stays real ("first" as in the authors' code; "last" as
      in their earlier version; "random": one chosen with the seed).
    p: probability that each other occurrence is replaced (1.0: all of them).
    redraw_per_epoch: draw new surrogate values for every epoch (the paper masks once, statically).
    entity_types: the PII types to mask; spans of other types stay as they are.
    seed: every random choice (kept occurrence, which ones are replaced, surrogate values) derives from it.
    """

    keep: str = default("rmft.keep")
    p: float = default("rmft.p")
    redraw_per_epoch: bool = default("rmft.redraw_per_epoch")
    entity_types: tuple[str, ...] = default("rmft.entity_types")
    seed: int = default("rmft.seed")

    def __post_init__(self) -> None:
        # YAML hands over lists; a tuple keeps the config hashable and immutable.
        object.__setattr__(self, "entity_types", tuple(self.entity_types))
        check("rmft", {"keep": self.keep, "p": self.p, "redraw_per_epoch": self.redraw_per_epoch,
                       "seed": self.seed})
        _check_entity_types(self.entity_types, "rmft.entity_types")


def _check_entity_types(entity_types, key: str) -> None:
    unknown = sorted(set(entity_types) - set(ENTITY_TYPES))
    if unknown:
        raise ValueError(f"{key}: unknown entity types {unknown} (expected a subset of {list(ENTITY_TYPES)})")


def _rng(*parts: object) -> random.Random:
    """A generator seeded from `parts` through SHA-256: the same on every run and under any
    PYTHONHASHSEED (Python's str hash() is salted per process, so it must not pick seeds)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _require_columns(df: pl.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing} (has {df.columns})")


def _text_by_doc(texts: pl.DataFrame) -> dict[int, str]:
    _require_columns(texts, "texts", ("doc_id", "text"))
    by_doc = dict(zip(texts["doc_id"].to_list(), texts["text"].to_list(), strict=True))
    if len(by_doc) != texts.height:
        raise ValueError("texts: doc_id is not unique")
    return by_doc


def targeted_spans(texts: dict[int, str], spans: pl.DataFrame, entity_types) -> pl.DataFrame:
    """The spans of `entity_types` in the documents of `texts`, sorted by (doc_id, start), checked.

    Spans of documents not in `texts` (e.g. the test split's) are dropped. Offsets must lie inside the
    text, `value` (when present) must equal text[start:end], spans of one document must not overlap;
    otherwise a ValueError names the doc_id and offsets (never the PII itself).
    """
    _require_columns(spans, "spans", ("doc_id", "start", "end", "entity_type"))
    chosen = spans.filter(
        pl.col("entity_type").is_in(list(entity_types)) & pl.col("doc_id").is_in(list(texts))
    ).sort("doc_id", "start")
    has_value = "value" in chosen.columns
    values = chosen["value"].to_list() if has_value else [None] * chosen.height
    prev_doc, prev_end = None, -1
    columns = (chosen["doc_id"], chosen["start"], chosen["end"], values)
    for doc_id, start, end, value in zip(*columns, strict=True):
        text = texts[doc_id]
        where = f"spans: doc_id {doc_id} span [{start}, {end})"
        if not 0 <= start < end <= len(text):
            raise ValueError(f"{where} lies outside its text of length {len(text)}")
        if has_value and text[start:end] != value:
            raise ValueError(f"{where}: `value` differs from text[start:end] (spans and texts out of sync?)")
        if doc_id == prev_doc and start < prev_end:
            raise ValueError(f"{where} overlaps the previous span, which ends at {prev_end} (expected none)")
        prev_doc, prev_end = doc_id, end
    return chosen


def apply_rmft(
    texts: pl.DataFrame, spans: pl.DataFrame, cfg: RmftConfig = RmftConfig(), epoch: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """RMFT-mask `texts` (doc_id, text) using their PII `spans`.

    Returns the masked texts (doc_id, text; input row order) and the private mapping, one row per
    replaced occurrence sorted by (doc_id, start): doc_id, start, end (in the input text), entity_type,
    original, surrogate, new_start, new_end (in the output text).

    Randomness, all derived from cfg.seed through SHA-256 of the group's (type, normal form), so a group's
    outcome does not depend on the other groups or on iteration order:
    - which occurrence stays real and which others are replaced (p) come from (seed, group) only, so
      they are the same in every epoch even with redraw_per_epoch;
    - surrogate values come from (seed, group) when static (epoch is then ignored) and from
      (seed, epoch, group) with redraw_per_epoch, so each epoch sees fresh fakes at the same places.
    """
    by_doc = _text_by_doc(texts)
    chosen = targeted_spans(by_doc, spans, cfg.entity_types)
    given = chosen["normalized"].to_list() if "normalized" in chosen.columns else [None] * chosen.height
    keys = [
        key if key is not None else normalize(entity_type, by_doc[doc_id][start:end])
        for key, (entity_type, doc_id, start, end) in zip(
            given, chosen.select("entity_type", "doc_id", "start", "end").iter_rows(), strict=True
        )
    ]
    occurrences = list(
        zip(chosen["doc_id"], chosen["start"], chosen["end"], chosen["entity_type"], keys, strict=True)
    )

    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (_, _, _, entity_type, key, *_) in enumerate(occurrences):
        groups[(entity_type, key)].append(i)  # occurrences are already in (doc_id, start) order
    # A surrogate should not turn into another real value of its type (that would add an occurrence).
    real_values: dict[str, set[str]] = defaultdict(set)
    for entity_type, key in groups:
        real_values[entity_type].add(key)

    value_epoch = epoch if cfg.redraw_per_epoch else "static"
    replacements: dict[int, list[tuple[int, int, str, str, str]]] = defaultdict(list)
    hits_real = 0
    in_order = sorted(groups.items())
    for (entity_type, key), members in track(in_order, total=len(groups), desc="rmft draw", unit="groups"):
        choice_rng = _rng("rmft-choice", cfg.seed, entity_type, key)
        value_rng = _rng("rmft-value", cfg.seed, value_epoch, entity_type, key)
        kept = {"first": 0, "last": len(members) - 1}.get(cfg.keep)
        if kept is None:
            kept = choice_rng.randrange(len(members))
        for rank, i in enumerate(members):
            if rank == kept:
                continue
            if cfg.p < 1.0 and not choice_rng.random() < cfg.p:
                continue
            doc_id, start, end, _, _ = occurrences[i]
            original = by_doc[doc_id][start:end]
            surrogate = make_surrogate(entity_type, original, value_rng, avoid=real_values[entity_type])
            hits_real += normalize(entity_type, surrogate) in real_values[entity_type]
            replacements[doc_id].append((start, end, entity_type, original, surrogate))

    out_texts, rows = [], []
    for doc_id in track(texts["doc_id"].to_list(), total=texts.height, desc="rmft rewrite", unit="docs"):
        text = by_doc[doc_id]
        edits = sorted(replacements.get(doc_id, ()))
        if not edits:
            out_texts.append(text)
            continue
        # Cutting the text at the original offsets and joining the pieces is the same as replacing
        # right to left: every offset used refers to the untouched input. `shift` tracks where the
        # input positions land in the output.
        pieces, cursor, shift = [], 0, 0
        for start, end, entity_type, original, surrogate in edits:
            pieces.append(text[cursor:start])
            pieces.append(surrogate)
            new_start = start + shift
            new_end = new_start + len(surrogate)
            rows.append((doc_id, start, end, entity_type, original, surrogate, new_start, new_end))
            shift += len(surrogate) - (end - start)
            cursor = end
        pieces.append(text[cursor:])
        out_texts.append("".join(pieces))

    mapping = pl.DataFrame(rows, schema=MAPPING_SCHEMA, orient="row")
    log.info(
        "rmft: %d occurrences in %d groups of %s; replaced %d (keep=%s, p=%s, %s); "
        "%d surrogates equal another real value",
        len(occurrences), len(groups), ",".join(cfg.entity_types), mapping.height, cfg.keep, cfg.p,
        f"epoch {epoch}" if cfg.redraw_per_epoch else "static", hits_real,
    )
    masked = pl.DataFrame({"doc_id": texts["doc_id"], "text": pl.Series("text", out_texts, dtype=pl.Utf8)})
    return masked, mapping


def apply_scrub(texts: pl.DataFrame, spans: pl.DataFrame, entity_types=ENTITY_TYPES) -> pl.DataFrame:
    """Replace every span of `entity_types` by its type tag ("<EMAIL_ADDRESS>", ...) with Presidio's
    anonymizer; documents without such spans pass through untouched. Returns (doc_id, text), input order."""
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

    _check_entity_types(entity_types, "scrub.entity_types")
    by_doc = _text_by_doc(texts)
    chosen = targeted_spans(by_doc, spans, entity_types)
    scores = chosen["score"].fill_null(1.0).to_list() if "score" in chosen.columns else [1.0] * chosen.height
    per_doc: dict[int, list] = defaultdict(list)
    for doc_id, start, end, entity_type, score in zip(
        chosen["doc_id"], chosen["start"], chosen["end"], chosen["entity_type"], scores, strict=True
    ):
        per_doc[doc_id].append(RecognizerResult(entity_type=entity_type, start=start, end=end, score=score))

    engine = AnonymizerEngine()
    operators = {t: OperatorConfig("replace", {"new_value": f"<{t}>"}) for t in entity_types}
    out = []
    for doc_id in track(texts["doc_id"].to_list(), total=texts.height, desc="scrub", unit="docs"):
        results = per_doc.get(doc_id)
        if not results:
            out.append(by_doc[doc_id])
            continue
        # Our spans are already final (non-overlapping); Presidio must not merge neighbours such as
        # two PERSON spans separated by a space into one tag.
        result = engine.anonymize(by_doc[doc_id], results, operators, merge_entities_with_spaces=False)
        out.append(result.text)
    log.info(
        "scrub: %d spans of %s tagged in %d documents", chosen.height, ",".join(entity_types), len(per_doc)
    )
    return pl.DataFrame({"doc_id": texts["doc_id"], "text": pl.Series("text", out, dtype=pl.Utf8)})


def count_pii_like(text: str) -> dict[str, int]:
    """How many strings in `text` look like each structured PII type (regex shapes, see surrogates)."""
    return {entity_type: len(pattern.findall(text)) for entity_type, pattern in PII_LIKE_PATTERNS.items()}
