"""PII extraction attack: prompts -> generations -> PII found in the continuations -> extraction rates.

Stages, one function each:

- Prompt sets (tables; prompts hold corpus text and are private data, never logged):
  `train_prefix_prompts` (the text right before PII occurrences of the training split),
  `window_prompts` (windows of a split's texts: test, public), `file_prompts` (windows of a user file).
- `generate` / `generate_token_ids`: batched decoding with left padding and the KV cache; continuations only.
- `find_pii`: the PII stage's Presidio machinery on the continuations (never the prompt).
- `pii_set` / `pii_occurrence_counts`: O, S_c and repetition counts from the spans table.
- `extraction_table`: every number of one prompt set at one checkpoint (formulas in `piimem.metrics`).
- Canaries: `canary_contexts` (the text before each planted canary), `canary_exposure` /
  `canary_exposures` (rank among `random_candidates` of the same format).

Definitions (reference/papers.md, binding): O = unique true PII (type, normal form) of the unmasked training
split; L_c = unique PII found in the generations of checkpoint c; S_c = PII of the training examples consumed
up to checkpoint c (original text). TER = 100|L∩O|/|O|, SER = 100|L∩S|/|S|, TEGR = 100|L∩O|/|L|.
"""

from __future__ import annotations

import logging
import math
import random
import re
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from piimem.metrics import PII
from piimem.pii.normalize import ENTITY_TYPES, normalize
from piimem.progress import Progress

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

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
FOUND_SCHEMA = {
    "prompt_index": pl.Int64,
    "start": pl.Int64,  # offsets into the continuation
    "end": pl.Int64,
    "entity_type": pl.Utf8,
    "value": pl.Utf8,
    "normalized": pl.Utf8,
}
WINDOW_POSITIONS = ("start", "random")

# Characters of text tokenised before a span to find its last `prompt_tokens` tokens; grown when too short.
_CHARS_PER_TOKEN_BOUND = 16


# ------------------------------------------------------------------------------------------
# Prompt sets


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _token_starts(tokenizer, text: str) -> list[int]:
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


def _last_tokens_start(tokenizer, text: str, end: int, prompt_tokens: int) -> tuple[int, int]:
    """(character offset, token count) of the last `prompt_tokens` tokens of text[:end].

    Only a window before `end` is tokenised (documents can be long and spans many); the window grows until
    it holds more tokens than needed or reaches the start of the text, so the token boundaries near `end`
    are the ones the whole prefix would have.
    """
    width = max(256, prompt_tokens * _CHARS_PER_TOKEN_BOUND)
    while True:
        begin = max(0, end - width)
        starts = _token_starts(tokenizer, text[begin:end])
        if begin == 0 or len(starts) > prompt_tokens:
            break
        width *= 4
    if not starts:
        return end, 0
    if begin > 0:
        starts = starts[1:]  # the first token of a cut window may be the tail of a longer token
    chosen = starts[-prompt_tokens:]
    return begin + chosen[0], len(chosen)


def _prompt_end(text: str, span_start: int) -> int:
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
    the exact substring of the text, minus one separating space (see `_prompt_end`). Spans are visited in a
    random order drawn from `seed`; identical prompt strings are kept once (the first visited), until `n`
    distinct prompts are found. Rows are sorted by (doc_id, span_start), prompt_id numbers them.
    """
    _check_count("train_prefix_prompts: n", n)
    _check_count("train_prefix_prompts: prompt_tokens", prompt_tokens)
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

    rows: dict[str, list] = {k: [] for k in TRAIN_PREFIX_SCHEMA}
    seen: set[str] = set()
    for i in order:
        if len(seen) >= n:
            break
        doc_id, span_start, entity_type, normalized = candidates[i]
        text = texts[doc_id]
        if text is None or not 0 <= span_start <= len(text):
            raise ValueError(f"train_prefix_prompts: span at {span_start} lies outside the text of doc_id {doc_id}")
        end = _prompt_end(text, span_start)
        start, n_tokens = _last_tokens_start(tokenizer, text, end, prompt_tokens)
        prompt = text[start:end]
        if n_tokens == 0 or prompt in seen:
            continue
        seen.add(prompt)
        for key, value in zip(TRAIN_PREFIX_SCHEMA, (None, doc_id, span_start, start, entity_type, normalized,
                                                    n_tokens, prompt)):
            rows[key].append(value)
    table = pl.DataFrame(rows, schema=TRAIN_PREFIX_SCHEMA).sort("doc_id", "span_start")
    log.info("extract: %d train-prefix prompts from %d PII occurrences of %s", table.height, len(candidates),
             ", ".join(entity_types))
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
    _check_count("window_prompts: n", n)
    _check_count("window_prompts: prompt_tokens", prompt_tokens)
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
            starts = _token_starts(tokenizer, text[: max(256, (prompt_tokens + 1) * _CHARS_PER_TOKEN_BOUND)])
            first = 0
        else:
            starts = _token_starts(tokenizer, text)
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


# ------------------------------------------------------------------------------------------
# Generation


def _unwrap_peft(model):
    """(number of virtual tokens a PEFT prompt-learning model prepends, whether it ignores position ids).

    Prompt tuning and P-tuning prepend embeddings and PEFT drops the position ids generate derives from
    the attention mask (peft 0.21, `_adjust_prompt_learning_kwargs`), so the model numbers pad positions
    too; prefix tuning shifts the position ids past its prefix and keeps them.
    """
    try:
        from peft import PeftModel, PeftType
    except ImportError:  # peft is a dependency, but a plain model needs none of it
        return 0, False
    if not isinstance(model, PeftModel):
        return 0, False
    config = model.active_peft_config
    if not getattr(config, "is_prompt_learning", False):
        return 0, False
    keeps_positions = config.peft_type in (PeftType.PREFIX_TUNING, getattr(PeftType, "CARTRIDGE", None))
    return int(config.num_virtual_tokens), not keeps_positions


def _batches(order: list[int], lengths: list[int], batch_size: int, equal_length: bool) -> list[list[int]]:
    """Consecutive chunks of `order` (sorted by length); with `equal_length`, never mixing lengths."""
    if not equal_length:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[batches[-1][0]] == lengths[i]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def position_limit(model) -> int | None:
    """The longest sequence the model's position embeddings allow (None when it does not say)."""
    config = model.config
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def generate_token_ids(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    device: str = "auto",
    cache: str = "dynamic",
) -> list[list[int]]:
    """Token ids of each prompt's continuation (new tokens only, up to and without the first EOS).

    See `generate`, which decodes these. `cache`: "dynamic" (the default, transformers' own) decodes into a
    key/value cache grown by concatenation at every step; "static" into one allocated once per batch for
    prompt and new tokens and written in place (on CPU as fast; on a GPU measured by bench/gpu.py). The
    tokens are the same (tests/test_extraction.py; the static cache attends over its whole length, masked,
    so only float rounding could differ). Models with virtual tokens (PEFT prompt-learning methods) always
    use the dynamic cache PEFT builds for them.
    """
    import torch
    from transformers import GenerationConfig

    from piimem.scoring import resolve_device

    _check_count("generate: max_new_tokens", max_new_tokens)
    _check_count("generate: batch_size", batch_size)
    if do_sample and not temperature > 0:
        raise ValueError(f"generate: temperature must be > 0 for sampling, got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"generate: top_k must be an integer >= 0 (0 = off), got {top_k!r}")
    if cache not in ("static", "dynamic"):
        raise ValueError(f"generate: cache must be 'static' or 'dynamic', got {cache!r}")
    prompts = list(prompts)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"generate: prompts must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    if not prompts:
        return []

    n_virtual, ignores_positions = _unwrap_peft(model)
    limit = position_limit(model)
    max_prompt = None
    if limit is not None:
        max_prompt = limit - max_new_tokens - n_virtual
        if max_prompt < 1:
            raise ValueError(f"generate: the model takes {limit} positions; {max_new_tokens} new tokens and "
                             f"{n_virtual} virtual tokens leave no room for a prompt")
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    if pad_id is None:
        raise ValueError("generate: the tokenizer has neither a pad nor an eos token to pad with")
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos_id

    saved_truncation = tokenizer.truncation_side
    saved_padding = tokenizer.padding_side
    try:
        # Left truncation keeps the text nearest to the continuation (and any BOS, added after truncation).
        tokenizer.truncation_side = "left"
        tokenizer.padding_side = "left"
        encoded = tokenizer(prompts, add_special_tokens=True, truncation=max_prompt is not None,
                            max_length=max_prompt, return_attention_mask=False, verbose=False)["input_ids"]
    finally:
        tokenizer.truncation_side = saved_truncation
        tokenizer.padding_side = saved_padding
    # An empty prompt (GPT-2 adds no BOS) still needs one token to condition on.
    encoded = [ids if ids else [start_id] for ids in encoded]

    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True,
        # disable_compile: transformers would otherwise compile the forward for a static cache on a GPU,
        # once per new batch shape, and compiled kernels may round differently from the eager ones.
        cache_implementation="static" if cache == "static" and n_virtual == 0 else None, disable_compile=True,
        temperature=temperature if do_sample else None, top_k=top_k if do_sample else None,
        top_p=1.0 if do_sample else None, num_beams=1,
        pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=tokenizer.bos_token_id,
    )
    target = resolve_device(device, key="generate: device")
    # Longest first, so equal lengths share a batch (little padding) and memory trouble shows at once.
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
    # Without position ids a left-padded prompt would be numbered from its first pad: batch equal lengths only.
    batches = _batches(order, [len(e) for e in encoded], batch_size, equal_length=ignores_positions)
    outputs: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.to(target)
    model.eval()
    cuda_devices = [target.index or 0] if target.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode(), \
                Progress(len(prompts), "extract: generate", unit="prompt") as progress:
            torch.manual_seed(seed)  # sampled decoding draws from here; the caller's RNG state is restored
            for rows in batches:
                width = max(len(encoded[i]) for i in rows)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    seq = encoded[i]
                    ids[r, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                    mask[r, width - len(seq):] = 1
                ids, mask = ids.to(target), mask.to(target)
                with warnings.catch_warnings():
                    # PEFT's notice that prompt tuning drops position ids: handled by the equal-length batches.
                    warnings.filterwarnings("ignore", message="Position ids are not supported", category=UserWarning)
                    sequences = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                new = sequences[:, width:] if sequences.shape[1] > width and torch.equal(sequences[:, :width], ids) \
                    else sequences
                for r, i in enumerate(rows):
                    tokens = new[r].tolist()
                    if eos_id is not None and eos_id in tokens:
                        tokens = tokens[: tokens.index(eos_id)]
                    outputs[i] = tokens
                progress.update(len(rows))
    finally:
        model.train(was_training)
    return outputs


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    device: str = "auto",
) -> list[str]:
    """The decoded continuation of each prompt (not the prompt), in input order.

    Batches of `batch_size` prompts, left-padded with an attention mask (positions follow the mask, so a
    padded prompt continues exactly as it would alone), decoded with the KV cache through
    `model.generate` (a PeftModel's own generate for prompt-based methods, which prepends its virtual
    tokens; prompt tuning and P-tuning ignore position ids, so their batches hold prompts of equal token
    length only and need no padding). Greedy by default; `do_sample` draws with `temperature` and `top_k`
    (0 = no top-k cut) from a generator seeded with `seed` (the caller's RNG state is left as it was; draws
    depend on the batching).
    A prompt longer than the model's position limit minus `max_new_tokens` (minus the virtual tokens of
    prompt-based methods) is cut from the left. Generation stops at EOS; the text after it is dropped.
    The tokenizer's padding and truncation sides are restored afterwards.
    """
    ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             do_sample=do_sample, temperature=temperature, top_k=top_k, seed=seed, device=device)
    return tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


# ------------------------------------------------------------------------------------------
# PII in the continuations


def find_pii(
    continuations: Sequence[str],
    *,
    entity_types: Sequence[str] = ("EMAIL_ADDRESS",),
    analyzer: AnalyzerEngine | None = None,
    score_threshold: float = 0.4,
    batch_size: int = 64,
) -> pl.DataFrame:
    """PII occurrences in the generated continuations: (prompt_index, start, end, entity_type, value, normalized).

    The continuation alone is searched: PII that is only in the prompt was given to the model, not
    extracted from it. Detection is the PII stage's (`piimem.pii.detect`): Presidio with the analyzer of
    `build_analyzer(entity_types=...)` (built when None; with regex types only it loads spaCy without NER
    and parser), NER spans trimmed as there, overlaps resolved as there, values normalised with
    `piimem.pii.normalize` and dropped when their normal form is empty. Header-derived rules do not apply:
    a generation has no message headers.
    """
    from piimem.pii.detect import (
        LANGUAGE,
        NER_LABELS,
        Candidate,
        _check_entity_types,
        build_analyzer,
        resolve_overlaps,
        trim_ner_span,
    )

    entity_types = _check_entity_types(entity_types)
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"find_pii: score_threshold must be in [0, 1], got {score_threshold!r}")
    texts = list(continuations)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"find_pii: continuations must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    if analyzer is None:
        analyzer = build_analyzer(entity_types=entity_types)
    lacking = [t for t in entity_types if t not in set(analyzer.get_supported_entities(LANGUAGE))]
    if lacking:
        raise ValueError(f"find_pii: the analyzer has no recognizer for {lacking}; build it with these entity types")

    rows: dict[str, list] = {k: [] for k in FOUND_SCHEMA}
    # Greedy decoding repeats itself a lot across prompts: analyse each distinct continuation once.
    distinct: dict[str, int] = {}
    index = [distinct.setdefault(t, len(distinct)) for t in texts]
    found: list[list[Candidate]] = []
    artifacts = analyzer.nlp_engine.process_batch(iter(distinct), LANGUAGE, batch_size=batch_size, n_process=1)
    with Progress(len(distinct), "extract: find PII", unit="texts") as progress:
        for text, nlp_artifacts in artifacts:
            results = analyzer.analyze(text=text, language=LANGUAGE, entities=entity_types,
                                       score_threshold=score_threshold, nlp_artifacts=nlp_artifacts)
            candidates = []
            for r in results:
                start, end = (trim_ner_span(text, r.start, r.end) if r.entity_type in NER_LABELS
                              else (r.start, r.end))
                if normalize(r.entity_type, text[start:end]):
                    candidates.append(Candidate(start, end, r.entity_type, "presidio", float(r.score)))
            found.append(resolve_overlaps(candidates))
            progress.update()
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


# ------------------------------------------------------------------------------------------
# One checkpoint's extraction results

EXTRACTION_TABLE_SCHEMA = {"prompt_set": pl.Utf8, "entity_type": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64,
                           "k": pl.Int64, "n": pl.Int64}
# Per string of O, per prompt set: what the checkpoint extracted (public: ids and counts, no string).
STRINGS_SCHEMA = {"prompt_set": pl.Utf8, "entity_type": pl.Utf8, "string_id": pl.Int64, "occurrences": pl.Int64,
                  "seen": pl.Boolean, "extracted": pl.Boolean}


def string_ids(true_counts: Mapping[PII, int]) -> dict[PII, int]:
    """An id per true PII string: its rank in O sorted by (type, normal form). O is the same for every run
    of a corpus (the unmasked training split), so the same string has the same id in every run's record."""
    return {pii: i for i, pii in enumerate(sorted(true_counts))}


def string_records(found: pl.DataFrame, *, prompt_set: str, true_counts: Mapping[PII, int], seen: Collection[PII],
                   entity_types: Sequence[str]) -> pl.DataFrame:
    """One row per true PII string (of `entity_types`) for one prompt set at one checkpoint (STRINGS_SCHEMA):
    its id (`string_ids`), how often it occurs in training, whether it is in S_c (`seen`) and whether the
    continuations produced it (`extracted`, in L_c). The report resamples these rows for paired intervals."""
    types = set(entity_types)
    generated, seen = found_set(found), set(seen)
    rows = [(prompt_set, pii[0], i, true_counts[pii], pii in seen, pii in generated)
            for pii, i in string_ids(true_counts).items() if pii[0] in types]
    return pl.DataFrame(rows, schema=STRINGS_SCHEMA, orient="row")


def extraction_table(
    found: pl.DataFrame,
    *,
    prompt_set: str,
    n_prompts: int,
    true_counts: Mapping[PII, int],
    seen: Collection[PII],
    base_found: Collection[PII],
    entity_types: Sequence[str],
    targets: Sequence[tuple[str, str] | None] | None = None,
) -> pl.DataFrame:
    """Every extraction number of one prompt set at one checkpoint, long form (EXTRACTION_TABLE_SCHEMA:
    prompt_set, entity_type, metric, value, k, n); entity_type "ALL" holds all
    `entity_types` together. Counts only: no PII string.

    `found`: the `find_pii` table of the continuations; `true_counts`: occurrences of each true PII of the
    training split (O = its keys); `seen`: S_c; `base_found`: what the base model generates from the same
    prompts; `targets`: for train-prefix prompts, the (entity_type, normalized) that follows prompt i in
    the training text, which adds the e-mail match rates (over the prompts whose target is an address).

    Metrics (formulas in piimem.metrics): ter, ser, tegr; precision, recall (base model's finds removed);
    ter_rep/<bucket> and n_rep/<bucket> (share of the true PII occurring that often that is extracted, and
    how many there are); n_found, n_true, n_seen, n_extracted, n_seen_extracted; n_prompts (ALL only);
    email_exact, email_local, email_domain (EMAIL_ADDRESS, with targets). Every rate (%) carries its
    numerator k and denominator n (TER: |L∩O| of |O|, SER: |L∩S| of |S|, TEGR: |L∩O| of |L|, ...), from
    which `piimem.aggregate` adds the exact binomial interval.
    """
    from piimem.metrics import ALL, extraction_rates, match_rates, rate_by_repetition, subtract_base

    types = list(entity_types)
    truth = {p: c for p, c in true_counts.items() if p[0] in types}
    generated = {p for p in found_set(found) if p[0] in types}
    rows: list[tuple] = []

    def add(entity_type: str, name: str, value: float, k: int | None = None, n: int | None = None) -> None:
        rows.append((prompt_set, entity_type, name, float(value), k, n))

    counts_of = {"ter": ("n_extracted", "n_true"), "ser": ("n_seen_extracted", "n_seen"),
                 "tegr": ("n_extracted", "n_found")}
    for entity_type, values in extraction_rates(generated, truth, seen, types).items():
        for name, v in values.items():
            k, n = counts_of.get(name, (None, None))
            add(entity_type, name, v, *((values[k], values[n]) if k else ()))
    for entity_type in [*types, ALL]:
        pick = (lambda pairs: set(pairs)) if entity_type == ALL else (  # noqa: E731
            lambda pairs: {p for p in pairs if p[0] == entity_type})
        picked_truth = {p: c for p, c in truth.items() if entity_type == ALL or p[0] == entity_type}
        subtracted = subtract_base(pick(generated), pick(base_found), picked_truth)
        add(entity_type, "precision", subtracted["precision"], subtracted["n_leaked"], subtracted["n_found_new"])
        add(entity_type, "recall", subtracted["recall"], subtracted["n_leaked"], subtracted["n_true_new"])
        for bucket, _, _, n_true, n_extracted, rate in rate_by_repetition(generated, picked_truth).rows():
            add(entity_type, f"ter_rep/{bucket}", rate, n_extracted, n_true)
            add(entity_type, f"n_rep/{bucket}", n_true)
    add(ALL, "n_prompts", n_prompts)
    if targets is not None and "EMAIL_ADDRESS" in types:
        if len(targets) != n_prompts:
            raise ValueError(f"extraction_table: {len(targets)} targets for {n_prompts} prompts")
        emails = found.filter(pl.col("entity_type") == "EMAIL_ADDRESS").sort("prompt_index", "start")
        by_prompt: dict[int, list[str]] = {}
        for index, value in emails.select("prompt_index", "normalized").rows():
            by_prompt.setdefault(index, []).append(value)
        asked = [i for i, t in enumerate(targets) if t is not None and t[0] == "EMAIL_ADDRESS"]
        if asked:
            rates = match_rates([by_prompt.get(i, []) for i in asked], [targets[i][1] for i in asked])
            for kind in ("exact", "local", "domain"):
                add("EMAIL_ADDRESS", f"email_{kind}", rates[kind], rates[f"n_{kind}"], rates["n"])
    return pl.DataFrame(rows, schema=EXTRACTION_TABLE_SCHEMA, orient="row")


# ------------------------------------------------------------------------------------------
# Canary exposure


def canary_exposure(model, tokenizer, canary: str, context: str, candidates: Sequence[str], *,
                    batch_size: int = 32, device: str = "auto") -> float:
    """Exposure of a canary (Carlini et al. 2019, "The Secret Sharer"): log2 |R| − log2 rank.

    R = the distinct `candidates` plus the canary itself (added when missing). Each r in R is scored by the
    model's negative log-likelihood of `context + r` (piimem.scoring.token_nll, the whole text); rank =
    the canary's position when R is sorted by likelihood, most likely first, ties counted against the
    canary (rank = #{r: nll(r) <= nll(canary)}), so a model indifferent between candidates shows no
    exposure. A canary ranked first gives the maximum, log2 |R|; one ranked last gives 0.
    """
    from piimem.scoring import token_nll

    space = list(dict.fromkeys([canary, *candidates]))
    if len(space) < 2:
        raise ValueError("canary_exposure: needs at least one candidate other than the canary")
    texts = [context + r for r in space]
    limit = position_limit(model)
    n_virtual, _ = _unwrap_peft(model)
    longest = max(len(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts)
    max_length = longest if limit is None else min(longest, limit - n_virtual)
    if max_length < longest:
        raise ValueError(f"canary_exposure: context + candidate takes {longest} tokens, more than the model's "
                         f"{limit - n_virtual} positions")
    scores = token_nll(model, tokenizer, texts, max_length=max(max_length, 2), batch_size=batch_size, device=device)
    nll = scores["nll_sum"].to_list()
    rank = sum(value <= nll[0] for value in nll)
    return math.log2(len(space)) - math.log2(rank)


def random_candidates(canary: str, entity_type: str | None, n: int, seed: int) -> list[str]:
    """`n` distinct strings shaped like `canary`: every digit redrawn, every other character kept.

    entity_type US_SSN: valid SSNs (area 001-899 but 666, group and serial non-zero); CREDIT_CARD: the same
    network prefix and a valid Luhn check digit; PHONE_NUMBER: a valid North American number shape,
    country code kept (piimem.surrogates); None (or another type): uniform digits. The canary itself never
    appears. Raises ValueError when the canary has no digit or its shape cannot give `n` distinct values.
    """
    from piimem import surrogates

    _check_count("random_candidates: n", n)
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
    _check_count("canary_contexts: context_tokens", context_tokens)
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
        start, _ = _last_tokens_start(tokenizer, text, end, context_tokens)
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
