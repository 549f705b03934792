"""How well the detector finds the PII that the synthetic corpus generator planted.

Unit of evaluation: the unique triple (document, entity type, normalised value). RMFT, scrubbing and the
extraction attack all work on "this PII string in this document" rather than on character offsets, and
a detector that finds a planted phone number twice in a message but with a slightly different span should
not be judged on span boundaries. Per type: tp = triples in both, fp = detected only, fn = planted only;
"ALL" sums the counts over types (micro average).

Which planted PII counts: only what is in `messages.text`, the text the model trains on and the detector
reads. Ground-truth offsets are relative to their field (the body, or one header value); each occurrence is
mapped to an offset in `text` (body rows: + text_body_offset; header rows: + the start of the rendered
"Name: " line's value) and checked against the text. Occurrences in headers that are not rendered into
`text` are dropped: no detector could find them there and no model could memorise them from there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import polars as pl

from piimem.metric_names import ALL
from piimem.pii.detect import header_lines
from piimem.pii.normalize import ENTITY_TYPES, normalize

log = logging.getLogger("piimem")

TRUTH_COLUMNS = ("path", "field", "start", "end", "entity_type", "value")
F_BETA = 2.0
METRICS_SCHEMA = {
    "entity_type": pl.Utf8,
    "tp": pl.Int64,
    "fp": pl.Int64,
    "fn": pl.Int64,
    "precision": pl.Float64,
    "recall": pl.Float64,
    "f2": pl.Float64,
}


def _field_key(name: str) -> str:
    # The generator may name a header as in the file ("X-From") or as a messages column ("x_from").
    return name.strip().lower().replace("_", "-")


def truth_in_text(ground_truth: pl.DataFrame, messages: pl.DataFrame) -> pl.DataFrame:
    """Ground-truth occurrences that lie in `messages.text`, with doc_id and offsets into that text.

    Columns: doc_id, start, end, entity_type, value, normalized (+ the ground truth's other columns).
    Rows of files missing from `messages` (quarantined) and of headers not rendered into `text` are
    dropped (counted in the log). An occurrence whose value is not at its offsets is an error.
    """
    missing = [c for c in TRUTH_COLUMNS if c not in ground_truth.columns]
    if missing:
        raise ValueError(f"ground truth lacks column(s) {missing}; expected at least {list(TRUTH_COLUMNS)}")
    extra = [c for c in ground_truth.columns if c not in (*TRUTH_COLUMNS, "doc_id", "normalized")]
    joined = ground_truth.join(
        messages.select("path", "doc_id", "text", "text_body_offset"), on="path", how="inner"
    )
    n_unknown_paths = ground_truth.height - joined.height
    if ground_truth.height and not joined.height:
        raise ValueError(
            "ground truth: none of its paths occurs in messages.path (is it for another corpus?)"
        )

    header_cache: dict[int, dict[str, int]] = {}
    rows: dict[str, list] = {
        k: [] for k in ("doc_id", "start", "end", "entity_type", "value", "normalized", *extra)
    }
    n_not_rendered = 0
    for row in joined.iter_rows(named=True):
        text, body_offset, field = row["text"], row["text_body_offset"], _field_key(row["field"])
        if field == "body":
            base = body_offset
        else:
            doc_id = row["doc_id"]
            if doc_id not in header_cache:
                header_cache[doc_id] = {
                    _field_key(name): value_start for name, value_start, _ in header_lines(text, body_offset)
                }
            base = header_cache[doc_id].get(field)
            if base is None:
                n_not_rendered += 1
                continue
        start, end = base + row["start"], base + row["end"]
        if text[start:end] != row["value"]:
            # No value in the message: even synthetic PII stays out of logs.
            raise ValueError(
                f"ground truth: {row['path']} field {row['field']!r} [{row['start']}:{row['end']}] "
                f"({row['entity_type']}) does not hold the recorded value in messages.text"
            )
        rows["doc_id"].append(row["doc_id"])
        rows["start"].append(start)
        rows["end"].append(end)
        rows["entity_type"].append(row["entity_type"])
        rows["value"].append(row["value"])
        rows["normalized"].append(normalize(row["entity_type"], row["value"]))
        for c in extra:
            rows[c].append(row[c])
    if n_unknown_paths or n_not_rendered:
        log.info(
            "ground truth: %d occurrence(s) of files not in messages and %d in headers not rendered "
            "into text left out of the evaluation",
            n_unknown_paths,
            n_not_rendered,
        )
    schema = {
        "doc_id": pl.Int64,
        "start": pl.Int64,
        "end": pl.Int64,
        "entity_type": pl.Utf8,
        "value": pl.Utf8,
        "normalized": pl.Utf8,
    } | {c: ground_truth.schema[c] for c in extra}
    return pl.DataFrame(rows, schema=schema)


def f_beta(precision: float | None, recall: float | None, beta: float = F_BETA) -> float | None:
    """F-beta score; beta = 2 weighs recall higher: a missed PII string leaks, a spurious one costs little."""
    if precision is None or recall is None:
        return None
    if precision == 0 and recall == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * precision * recall / (b2 * precision + recall)


def _metric_row(entity_type: str, tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else None  # undefined without detections
    recall = tp / (tp + fn) if tp + fn else None  # undefined without planted PII
    return {
        "entity_type": entity_type,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": precision,
        "recall": recall,
        "f2": f_beta(precision, recall),
    }


def _triples(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("normalized") != "").select("doc_id", "entity_type", "normalized").unique()


def evaluate_detection(
    spans: pl.DataFrame,
    ground_truth: pl.DataFrame,
    messages: pl.DataFrame,
    entity_types: Sequence[str] = ENTITY_TYPES,
) -> pl.DataFrame:
    """Precision, recall and F2 of `spans` against the planted PII, per type and "ALL" (micro).

    Scope: the documents of `messages` (all of them: a detection in a document without planted PII is a
    false positive) and the types in `entity_types`. Undefined ratios (0/0) are null.
    """
    truth = _triples(
        truth_in_text(ground_truth, messages).filter(pl.col("entity_type").is_in(list(entity_types)))
    )
    predicted = _triples(
        spans.filter(
            pl.col("doc_id").is_in(messages["doc_id"].implode())
            & pl.col("entity_type").is_in(list(entity_types))
        )
    )
    keys = ["doc_id", "entity_type", "normalized"]
    matched = predicted.join(truth, on=keys, how="inner")
    counts = {
        name: df.group_by("entity_type").len()
        for name, df in (("tp", matched), ("pred", predicted), ("true", truth))
    }
    per_type = {name: dict(df.iter_rows()) for name, df in counts.items()}

    rows = []
    totals = [0, 0, 0]
    for entity_type in entity_types:
        tp = per_type["tp"].get(entity_type, 0)
        fp = per_type["pred"].get(entity_type, 0) - tp
        fn = per_type["true"].get(entity_type, 0) - tp
        rows.append(_metric_row(entity_type, tp, fp, fn))
        totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
    rows.append(_metric_row(ALL, *totals))
    return pl.DataFrame(rows, schema=METRICS_SCHEMA)
