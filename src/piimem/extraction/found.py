"""PII in the continuations (`find_pii`) and the sets the extraction rates compare: L (`found_set`), O and
S_c (`pii_set`), repetition counts (`pii_occurrence_counts`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from piimem.metrics import PII
from piimem.pii.normalize import normalize
from piimem.progress import Progress

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine


FOUND_SCHEMA = {
    "prompt_index": pl.Int64,
    "start": pl.Int64,  # offsets into the continuation
    "end": pl.Int64,
    "entity_type": pl.Utf8,
    "value": pl.Utf8,
    "normalized": pl.Utf8,
}

@dataclass(frozen=True)
class PiiReader:
    """What an attack finds PII in a model's text with: a Presidio analyzer and pii's score_threshold and
    ignore list, so that generated text is read as the corpus was (`find_pii`)."""

    analyzer: object
    score_threshold: float
    ignore: Sequence[str]

    @classmethod
    def build(cls, entity_types: Sequence[str], *, score_threshold: float, ignore: Sequence[str]) -> PiiReader:
        from piimem.pii.detect import build_analyzer

        return cls(build_analyzer(entity_types=entity_types), score_threshold, ignore)

    def find(self, continuations: Sequence[str], entity_types: Sequence[str]) -> pl.DataFrame:
        return find_pii(continuations, entity_types=entity_types, analyzer=self.analyzer,
                        score_threshold=self.score_threshold, ignore=self.ignore)


def find_pii(
    continuations: Sequence[str],
    *,
    entity_types: Sequence[str] = ("EMAIL_ADDRESS",),
    analyzer: AnalyzerEngine | None = None,
    score_threshold: float = 0.4,
    batch_size: int = 64,
    ignore: Iterable[str] = (),
) -> pl.DataFrame:
    """PII occurrences in the generated continuations: (prompt_index, start, end, entity_type, value, normalized).

    The continuation alone is searched: PII that is only in the prompt was given to the model, not
    extracted from it. Detection is the PII stage's (`piimem.pii.detect`, the same checks, Presidio task,
    NER trimming, normal forms and overlap resolution), with the analyzer of `build_analyzer(entity_types=...)`
    when None (with regex types only it loads spaCy without NER and parser), `ignore` as pii.ignore.
    Header-derived rules do not apply: a generation has no message headers.
    """
    from piimem.pii.detect import (
        AnalysisTask,
        checked_analyzer,
        ignored,
        normal_forms_of,
        presidio_candidates,
        resolve_overlaps,
    )

    texts = list(continuations)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"find_pii: continuations must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    analyzer, entity_types = checked_analyzer(analyzer, entity_types, score_threshold)
    task = AnalysisTask(analyzer, tuple(entity_types), score_threshold, batch_size)
    ignore = ignored(ignore)

    # Greedy decoding repeats itself a lot across prompts: analyse each distinct continuation once.
    distinct: dict[str, int] = {}
    index = [distinct.setdefault(t, len(distinct)) for t in texts]
    unique = list(distinct)
    found = []
    with Progress(len(unique), "extract: find PII", unit="texts") as progress:
        for i in range(0, len(unique), batch_size):
            chunk = unique[i:i + batch_size]
            for text, results in zip(chunk, task(chunk)):
                found.append(resolve_overlaps(normal_forms_of(text, presidio_candidates(text, results), ignore)))
            progress.update(len(chunk))
    rows: dict[str, list] = {k: [] for k in FOUND_SCHEMA}
    for prompt_index, text in enumerate(texts):
        for cand in found[index[prompt_index]]:
            value = text[cand.start:cand.end]
            for key, item in zip(FOUND_SCHEMA, (prompt_index, cand.start, cand.end, cand.entity_type, value,
                                                normalize(cand.entity_type, value))):
                rows[key].append(item)
    return pl.DataFrame(rows, schema=FOUND_SCHEMA)


def found_set(found: pl.DataFrame) -> set[PII]:
    """L: the unique (entity_type, normalized) pairs of a `find_pii` table."""
    return set(found.select("entity_type", "normalized").unique().rows())


def pii_set(spans: pl.DataFrame, doc_ids: Iterable[int] | None = None,
            entity_types: Sequence[str] | None = None) -> set[PII]:
    """Unique (entity_type, normalized) pairs of the spans of `doc_ids` (all when None).

    O: the spans of the training split's doc ids (original text); S_c: those of the doc ids in the
    checkpoint's consumed.parquet.
    """
    table = spans
    if doc_ids is not None:
        table = table.filter(pl.col("doc_id").is_in(list(doc_ids)))
    if entity_types is not None:
        table = table.filter(pl.col("entity_type").is_in(list(entity_types)))
    return set(table.select("entity_type", "normalized").unique().rows())


def pii_occurrence_counts(spans: pl.DataFrame, doc_ids: Iterable[int] | None = None,
                          entity_types: Sequence[str] | None = None) -> dict[PII, int]:
    """Occurrences of each (entity_type, normalized) in the spans of `doc_ids`: the repetition counts."""
    table = spans
    if doc_ids is not None:
        table = table.filter(pl.col("doc_id").is_in(list(doc_ids)))
    if entity_types is not None:
        table = table.filter(pl.col("entity_type").is_in(list(entity_types)))
    counts = table.group_by("entity_type", "normalized").agg(pl.len().alias("n"))
    return {(t, v): n for t, v, n in counts.rows()}




def counted(table: pl.DataFrame, person_min_words: int = 1) -> pl.DataFrame:
    """The rows of a spans or `find_pii` table that attack metrics count: PERSON strings only with at least
    `person_min_words` words in their normal form (a lone first name matches far too much text to be
    evidence of a person; 1 counts every name)."""
    if person_min_words <= 1:
        return table
    words = pl.col("normalized").str.split(" ").list.len()
    return table.filter((pl.col("entity_type") != "PERSON") | (words >= person_min_words))


def pretraining_pii(spans: pl.DataFrame, messages: pl.DataFrame, splits: pl.DataFrame,
                    base_model: str, outsiders: pl.DataFrame | None = None) -> set[PII] | None:
    """The PII strings of the base model's pre-training texts, where piimem knows them (every tiny GPT-2,
    sized ones included; None for any other base model): O_ft is O without them, the strings a fine-tuned
    model can only have learnt from its fine-tuning data. `outsiders` (entity_type, normalized): the ground
    truth's PII in the text of the outsiders' mail it pre-trained on (piimem.corpus.pretraining.pii_of: bodies
    and text headers, not the header fields the text leaves out); without it, what the PII stage found in the
    public split. A training string is in pre-training only when the same (entity_type, normalized) pair is."""
    from piimem.corpus.splits import split_texts
    from piimem.models import is_tiny_gpt2

    if not is_tiny_gpt2(base_model):
        return None
    if outsiders is not None:
        return set(outsiders.select("entity_type", "normalized").rows())
    return pii_set(spans, split_texts(messages, splits, "public")["doc_id"])
