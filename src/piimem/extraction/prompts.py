"""Prompt sets for the extraction attack (tables; prompts hold corpus text and are private, never logged).

`train_prefix_prompts`: the text right before PII occurrences of the training split; `window_prompts`: windows
of a split's texts (test, public); `file_prompts`: windows of a user file.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from piimem.checks import is_int
from piimem.pii.normalize import ENTITY_TYPES

log = logging.getLogger("piimem")


TRAIN_PREFIX_SCHEMA = {
    "prompt_id": pl.Int64,
    "doc_id": pl.Int64,
    "span_start": pl.Int64,  # offset of the PII span in messages.text
    "prompt_start": pl.Int64,  # offset of the prompt's first character in messages.text
    "entity_type": pl.Utf8,
    "normalized": pl.Utf8,  # the PII that follows the prompt in the training text (the target)
    "n_prompt_tokens": pl.Int64,
    "prompt": pl.Utf8,
}
WINDOW_SCHEMA = {
    "prompt_id": pl.Int64,
    "doc_id": pl.Int64,
    "prompt_start": pl.Int64,  # character offset of the window in its text
    "n_prompt_tokens": pl.Int64,
    "prompt": pl.Utf8,
}
WINDOW_POSITIONS = ("start", "random")

# Characters of text tokenised before a span to find its last `prompt_tokens` tokens; grown when too short.
_CHARS_PER_TOKEN_BOUND = 16

def check_count(name: str, value, minimum: int = 1) -> None:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def token_starts(tokenizer, text: str) -> list[int]:
    """Character offset where each token of `text` starts (fast tokenizers: offset mapping)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"prompt building needs a fast tokenizer (offset mapping); got {type(tokenizer).__name__}")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)["offset_mapping"]
    starts = []
    for start, end in offsets:
        # Byte-level BPE can split one character over several tokens, which then share an offset pair.
        if end > start and (not starts or start > starts[-1]):
            starts.append(start)
    return starts


def last_tokens_start(tokenizer, text: str, end: int, prompt_tokens: int) -> tuple[int, int]:
    """(character offset, token count) of the last `prompt_tokens` tokens of text[:end].

    Only a window before `end` is tokenised (documents can be long and spans many); the window grows until
    it holds more tokens than needed or reaches the start of the text, so the token boundaries near `end`
    are the ones the whole prefix would have.
    """
    width = max(256, prompt_tokens * _CHARS_PER_TOKEN_BOUND)
    while True:
        begin = max(0, end - width)
        starts = token_starts(tokenizer, text[begin:end])
        if begin == 0 or len(starts) > prompt_tokens:
            break
        width *= 4
    if not starts:
        return end, 0
    if begin > 0:
        starts = starts[1:]  # the first token of a cut window may be the tail of a longer token
    chosen = starts[-prompt_tokens:]
    return begin + chosen[0], len(chosen)


def first_tokens_end(tokenizer, text: str, start: int, n_tokens: int) -> int:
    """Offset where the first `n_tokens` tokens of text[start:] end (the text's end when it has fewer).

    As `last_tokens_start`, only a window is tokenised, grown until it holds more tokens than needed."""
    width = max(256, (n_tokens + 1) * 16)
    while True:
        stop = min(len(text), start + width)
        starts = token_starts(tokenizer, text[start:stop])
        if len(starts) > n_tokens:
            return start + starts[n_tokens]
        if stop == len(text):
            return stop
        width *= 4


def prompt_end(text: str, span_start: int) -> int:
    """Where a prompt before a span ends: right before it, without one separating space.

    Byte-level BPE (GPT-2) and SentencePiece (Llama) attach a single leading space to the next word, so a
    prompt ending in that space asks the model for a token sequence it never saw in training ("at" " "
    "jdoe" instead of "at" " jdoe"). Line breaks and other whitespace are separate tokens and stay.
    """
    return span_start - 1 if span_start > 0 and text[span_start - 1] == " " else span_start


def train_prefix_prompts(
    messages_text: pl.DataFrame,
    spans: pl.DataFrame,
    tokenizer,
    *,
    n: int,
    prompt_tokens: int,
    seed: int,
    entity_types: Sequence[str] = ("EMAIL_ADDRESS",),
) -> pl.DataFrame:
    """Up to `n` prompts made of the text right before PII occurrences of the training split.

    `messages_text`: (doc_id, text) of the training split (the original, unmasked text); `spans`: the spans
    table (offsets into that text). Each prompt is the last `prompt_tokens` tokens before a span of one of
    `entity_types` (fewer when the text before it is shorter; a span at the very start gives no prompt), as
    the exact substring of the text, minus one separating space (see `prompt_end`). Identical prompt strings
    are kept once. Spans are visited in a random order drawn from `seed`: first every distinct target (type,
    normal form), in the order its first occurrence is drawn, tries its occurrences in the drawn order until
    one gives a prompt string not used yet (a header line such as "To:" often gives the same prompt for many
    addresses); then further occurrences fill up to `n`. So `n` at least the number of distinct targets gives
    every target a prompt unless none of its occurrences has text of its own before it (logged).
    Rows are sorted by (doc_id, span_start), prompt_id numbers them.
    """
    check_count("train_prefix_prompts: n", n)
    check_count("train_prefix_prompts: prompt_tokens", prompt_tokens)
    for table, name, columns in ((messages_text, "messages_text", ("doc_id", "text")),
                                 (spans, "spans", ("doc_id", "start", "end", "entity_type", "normalized"))):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"train_prefix_prompts: {name} lacks column(s) {missing}")
    unknown = [t for t in entity_types if t not in ENTITY_TYPES]
    if unknown or not entity_types:
        raise ValueError(f"train_prefix_prompts: entity_types {list(entity_types)} must be a non-empty subset "
                         f"of {list(ENTITY_TYPES)}")

    texts = dict(zip(messages_text["doc_id"].to_list(), messages_text["text"].to_list()))
    candidates = (
        spans.filter(pl.col("entity_type").is_in(list(entity_types)) & pl.col("doc_id").is_in(list(texts)))
        .select("doc_id", "start", "entity_type", "normalized")
        .unique(subset=["doc_id", "start"], keep="first")
        .sort("doc_id", "start")
        .rows()
    )
    order = list(range(len(candidates)))
    random.Random(seed).shuffle(order)
    occurrences: dict[tuple[str, str], list[int]] = {}  # each target's occurrences, in the drawn order
    for i in order:
        occurrences.setdefault(candidates[i][2:], []).append(i)

    def prompt_of(i: int) -> tuple[int, int, str]:
        doc_id, span_start = candidates[i][:2]
        text = texts[doc_id]
        if text is None or not 0 <= span_start <= len(text):
            raise ValueError(f"train_prefix_prompts: span at {span_start} lies outside the text of doc_id {doc_id}")
        end = prompt_end(text, span_start)
        start, n_tokens = last_tokens_start(tokenizer, text, end, prompt_tokens)
        return start, n_tokens, text[start:end]

    rows: dict[str, list] = {k: [] for k in TRAIN_PREFIX_SCHEMA}
    seen: set[str] = set()
    tried: set[int] = set()

    def take(i: int) -> bool:
        """Add occurrence i's prompt unless it is empty or already used; whether it was added."""
        tried.add(i)
        start, n_tokens, prompt = prompt_of(i)
        if n_tokens == 0 or prompt in seen:
            return False
        seen.add(prompt)
        doc_id, span_start, entity_type, normalized = candidates[i]
        for key, value in zip(TRAIN_PREFIX_SCHEMA, (None, doc_id, span_start, start, entity_type, normalized,
                                                    n_tokens, prompt)):
            rows[key].append(value)
        return True

    without = 0  # targets none of whose occurrences gives a prompt of its own
    for target_occurrences in occurrences.values():
        if len(seen) >= n:
            break
        without += not any(take(i) for i in target_occurrences)
    for i in order:
        if len(seen) >= n:
            break
        if i not in tried:
            take(i)
    table = pl.DataFrame(rows, schema=TRAIN_PREFIX_SCHEMA).sort("doc_id", "span_start")
    targets = table.select("entity_type", "normalized").n_unique()
    log.info("extract: %d train-prefix prompts from %d PII occurrences of %s; %d of %d distinct targets have one; "
             "%d without an occurrence whose prompt differs from the other targets' prompts, %d not tried (n reached)",
             table.height, len(candidates), ", ".join(entity_types), targets, len(occurrences), without,
             len(occurrences) - targets - without)
    return table.with_columns(pl.int_range(table.height, dtype=pl.Int64).alias("prompt_id"))


def window_prompts(
    texts: pl.DataFrame | Sequence[str],
    tokenizer,
    *,
    n: int,
    prompt_tokens: int,
    seed: int,
    position: str = "start",
) -> pl.DataFrame:
    """Up to `n` prompts of `prompt_tokens` tokens, one window per text of a split (test, public).

    `texts`: a (doc_id, text) table or a list of strings (doc_id = list index). Texts are drawn in a random
    order from `seed`, at most one window each; empty texts and repeated windows are skipped, so fewer than
    `n` rows come back when the split has fewer usable texts. `position` "start": the first `prompt_tokens`
    tokens of each text (the RMFT paper: test examples truncated to 64 tokens); "random": a window starting
    at a token boundary drawn from the same seed. Windows are exact substrings of the texts.
    """
    check_count("window_prompts: n", n)
    check_count("window_prompts: prompt_tokens", prompt_tokens)
    if position not in WINDOW_POSITIONS:
        raise ValueError(f"window_prompts: position must be one of {WINDOW_POSITIONS}, got {position!r}")
    if isinstance(texts, pl.DataFrame):
        missing = [c for c in ("doc_id", "text") if c not in texts.columns]
        if missing:
            raise ValueError(f"window_prompts: texts table lacks column(s) {missing}")
        doc_ids, strings = texts["doc_id"].to_list(), texts["text"].to_list()
    else:
        strings = list(texts)
        doc_ids = list(range(len(strings)))
    bad = [i for i, t in enumerate(strings) if t is not None and not isinstance(t, str)]
    if bad:
        raise ValueError(f"window_prompts: texts must be strings; item {bad[0]} is {type(strings[bad[0]]).__name__}")

    rng = random.Random(seed)
    order = list(range(len(strings)))
    rng.shuffle(order)
    rows: dict[str, list] = {k: [] for k in WINDOW_SCHEMA}
    seen: set[str] = set()
    for i in order:
        if len(seen) >= n:
            break
        text = strings[i]
        if not text or not text.strip():
            continue
        # Long texts: only the part that can hold the window is tokenised.
        if position == "start":
            starts = token_starts(tokenizer, text[: max(256, (prompt_tokens + 1) * _CHARS_PER_TOKEN_BOUND)])
            first = 0
        else:
            starts = token_starts(tokenizer, text)
            first = rng.randrange(max(1, len(starts) - prompt_tokens + 1))
        if not starts:
            continue
        begin = starts[first]
        last = first + prompt_tokens
        end = starts[last] if last < len(starts) else len(text)
        prompt = text[begin:end].rstrip(" ") if last < len(starts) else text[begin:end]
        if not prompt.strip() or prompt in seen:
            continue
        seen.add(prompt)
        for key, value in zip(WINDOW_SCHEMA, (None, doc_ids[i], begin, min(prompt_tokens, len(starts) - first),
                                              prompt)):
            rows[key].append(value)
    table = pl.DataFrame(rows, schema=WINDOW_SCHEMA).sort("doc_id", "prompt_start")
    log.info("extract: %d window prompts (%s) from %d texts", table.height, position, len(strings))
    return table.with_columns(pl.int_range(table.height, dtype=pl.Int64).alias("prompt_id"))


def file_prompts(
    path: str | Path,
    tokenizer,
    *,
    n: int,
    prompt_tokens: int,
    seed: int,
    position: str = "start",
) -> pl.DataFrame:
    """`window_prompts` over a user text file (UTF-8), one text per non-empty line (WikiText's layout:
    a paragraph per line). doc_id is the 0-based line number in the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist or is not a file (expected a UTF-8 text "
                                f"file, one text per line)")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = content.splitlines()
    keep = [i for i, line in enumerate(lines) if line.strip()]
    if not keep:
        raise ValueError(f"prompt file {path} holds no non-empty line (expected one text per line)")
    texts = pl.DataFrame({"doc_id": keep, "text": [lines[i] for i in keep]},
                         schema={"doc_id": pl.Int64, "text": pl.Utf8})
    return window_prompts(texts, tokenizer, n=n, prompt_tokens=prompt_tokens, seed=seed, position=position)


