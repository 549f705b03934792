"""PII inference and reconstruction (Lukas et al. 2023, "Analyzing Leakage of Personally Identifiable
Information in Language Models", IEEE S&P): one occurrence of a training PII string is masked; candidates
for the mask are filled in and ranked by the model's perplexity of the whole window, lowest first.

- Inference: the attacker also holds a candidate set that contains the true string: the true string and
  K-1 other strings of the same type from the corpus's own PII (`inference_targets`, `pii_inference`).
- Reconstruction: the candidates are the PII of that type the model writes when sampled from the text
  before the mask (`pii_reconstruction`).

The targets table is built once per base model (tokenizer) and read by every run, so results pair across
defenses string by string. It holds corpus text (private). The scores written from it hold ids and counts.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Collection, Mapping, Sequence

import polars as pl

from piimem.extraction.generation import generate, peft_virtual_tokens
from piimem.extraction.prompts import check_count, first_tokens_end, last_tokens_start, prompt_end
from piimem.metric_names import INFERENCE, RECONSTRUCTION
from piimem.metrics import PII
from piimem.pii.normalize import ENTITY_TYPES
from piimem.progress import Progress
from piimem.scoring import position_limit

log = logging.getLogger("piimem")

TARGETS_SCHEMA = {
    "target_id": pl.Int64,
    "entity_type": pl.Utf8,
    "normalized": pl.Utf8,
    "string_id": pl.Int64,  # the string's id in O (`piimem.extraction.table.string_ids`)
    "in_pretraining": pl.Boolean,  # null where the base model's pre-training data is unknown
    "doc_id": pl.Int64,
    "span_start": pl.Int64,
    "value": pl.Utf8,  # the masked occurrence as written
    "prefix": pl.Utf8,  # the text before it (`context_tokens` tokens, no separating space)
    "suffix": pl.Utf8,  # the text right after it (`suffix_tokens` tokens)
    "separator": pl.Utf8,  # what stood between prefix and value: "" or " "
    "candidates": pl.List(pl.Utf8),  # the other strings of the inference candidate set, as written
    "occurrences": pl.Int64,  # occurrences of the string in the training split (its repetition count)
}
# Per target and attack at one checkpoint (public: ids, ranks and flags, no string).
TARGET_RECORD_SCHEMA = {
    "attack": pl.Utf8, "prompt_set": pl.Utf8, "entity_type": pl.Utf8, "target_id": pl.Int64, "string_id": pl.Int64,
    "in_pretraining": pl.Boolean, "n_candidates": pl.Int64, "rank": pl.Int64, "correct": pl.Boolean,
    "exposure": pl.Float64, "truth_sampled": pl.Boolean,
    "occurrences": pl.Int64,  # the string's occurrences in the training split; null where not known
}


# ------------------------------------------------------------------------------------------
# Targets


def inference_targets(
    messages_text: pl.DataFrame,
    spans: pl.DataFrame,
    train_doc_ids: Collection[int],
    tokenizer,
    *,
    entity_types: Sequence[str],
    n_targets: int,
    n_candidates: int,
    context_tokens: int,
    suffix_tokens: int,
    seed: int,
    string_ids: Mapping[PII, int],
    pretraining: Collection[PII] | None = None,
    occurrences: Mapping[PII, int] | None = None,
) -> pl.DataFrame:
    """Up to `n_targets` training PII strings per entity type, one masked occurrence each (TARGETS_SCHEMA).

    `messages_text`: (doc_id, text) of every message (original text); `spans`: the spans table of the whole
    corpus, whose strings of each type are the candidate pool; `train_doc_ids`: the training split.
    Strings of O (`string_ids`' keys of the type) are drawn without replacement, then one of their training
    occurrences with text before it, all from `seed`. Candidates: `n_candidates` - 1 distinct other normal
    forms of the same type (as first written in the corpus), never the target's own. `pretraining`: the
    strings of the base model's pre-training data (O_ft is O without them); None when unknown. `occurrences`:
    each string's count in the training split (`pii_occurrence_counts`), carried into the attack records so
    that leakage can be read against repetition; None leaves the column null.
    """
    check_count("inference_targets: n_targets", n_targets)
    check_count("inference_targets: n_candidates", n_candidates, minimum=2)
    check_count("inference_targets: context_tokens", context_tokens)
    check_count("inference_targets: suffix_tokens", suffix_tokens)
    unknown = [t for t in entity_types if t not in ENTITY_TYPES]
    if unknown or not entity_types:
        raise ValueError(f"inference_targets: entity_types {list(entity_types)} must be a non-empty subset of "
                         f"{list(ENTITY_TYPES)}")
    texts = dict(zip(messages_text["doc_id"].to_list(), messages_text["text"].to_list()))
    train = set(train_doc_ids)
    ordered = spans.sort("doc_id", "start")
    rows = []
    for entity_type in entity_types:
        of_type = ordered.filter(pl.col("entity_type") == entity_type)
        # The candidate pool: each normal form of the type once, as first written.
        pool = of_type.unique(subset=["normalized"], keep="first", maintain_order=True).select(
            "normalized", "value").rows()
        places: dict[str, list[tuple[int, int, int, str]]] = {}  # a string's training occurrences
        for doc_id, start, end, normalized, value in of_type.filter(pl.col("doc_id").is_in(list(train))).select(
                "doc_id", "start", "end", "normalized", "value").rows():
            if start > 0:
                places.setdefault(normalized, []).append((doc_id, start, end, value))
        strings = sorted(s for t, s in string_ids if t == entity_type and s in places)
        rng = random.Random(f"{seed}/inference/{entity_type}")
        chosen = rng.sample(strings, min(n_targets, len(strings)))
        for normalized in sorted(chosen):
            doc_id, start, end, value = rng.choice(places[normalized])
            text = texts[doc_id]
            prefix_end = prompt_end(text, start)
            prefix_start, _ = last_tokens_start(tokenizer, text, prefix_end, context_tokens)
            others = [v for n, v in pool if n != normalized]
            picked = rng.sample(others, min(n_candidates - 1, len(others)))
            rows.append((len(rows), entity_type, normalized, string_ids[(entity_type, normalized)],
                         None if pretraining is None else (entity_type, normalized) in pretraining,
                         doc_id, start, value, text[prefix_start:prefix_end],
                         text[end:first_tokens_end(tokenizer, text, end, suffix_tokens)],
                         text[prefix_end:start], picked,
                         None if occurrences is None else occurrences.get((entity_type, normalized))))
    table = pl.DataFrame(rows, schema=TARGETS_SCHEMA, orient="row")
    log.info("extract: %d inference targets (%s), %d candidates each at most", table.height,
             ", ".join(f"{t} {n}" for t, n in table.group_by("entity_type").len().sort("entity_type").rows()),
             n_candidates)
    return table


# ------------------------------------------------------------------------------------------
# Scoring a window with each filling


def filled_window_scores(model, tokenizer, prefix: str, fillings: Sequence[str], suffix: str, *,
                         batch_size: int = 64, device: str = "auto", cached: bool = True,
                         per_token: bool = True) -> list[float]:
    """Mean NLL per token (log-perplexity) of prefix + filling + suffix for every filling, in input order;
    with `per_token` False the total NLL (nats) instead.

    The window is tokenised in two parts, the prefix (with the tokenizer's special tokens) and each filling
    with the suffix (without), so that every filled window starts with the same tokens: the prefix's score is
    computed once and, with `cached` (plain models; PEFT prompt-learning models always recompute), its key/value
    cache is reused for every filling, in batches of `batch_size` fillings. Both ways give the same
    numbers up to float rounding (bench/extract.py). Every token after the first is scored (the first has no
    context in GPT-2-style tokenizers, and is the BOS otherwise).
    """
    import torch

    from piimem.scoring import resolve_device, right_padded, shifted_token_nll

    fillings = list(fillings)
    if not fillings:
        return []
    check_count("filled_window_scores: batch_size", batch_size)
    target = resolve_device(device, key="filled_window_scores: device")
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    head = tokenizer(prefix, add_special_tokens=True, verbose=False)["input_ids"] or [start_id]
    rests = [tokenizer(f + suffix, add_special_tokens=False, verbose=False)["input_ids"] for f in fillings]
    limit = position_limit(model)
    if limit is not None:
        limit -= peft_virtual_tokens(model)[0]
        longest = len(head) + max(len(r) for r in rests)
        if longest > limit:
            raise ValueError(f"filled_window_scores: a filled window takes {longest} tokens, more than the model's "
                             f"{limit} positions (lower extraction.inference.context_tokens or suffix_tokens)")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    scores = [math.nan] * len(fillings)
    was_training = model.training
    model.to(target)
    model.eval()
    use_cache = cached and peft_virtual_tokens(model)[0] == 0
    try:
        with torch.inference_mode():
            head_ids = torch.tensor([head], dtype=torch.long, device=target)
            if use_cache:
                out = model(input_ids=head_ids, use_cache=True)
                head_nll = shifted_token_nll(out.logits, head_ids, torch.ones_like(head_ids))[0].sum().item()
                head_last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                cache = out.past_key_values
            order = sorted(range(len(rests)), key=lambda i: (-len(rests[i]), i))
            for begin in range(0, len(order), batch_size):
                rows = order[begin:begin + batch_size]
                ids, mask = right_padded([rests[i] for i in rows], pad_id, target)
                width = ids.shape[1]
                if use_cache:
                    batch_cache = copy.deepcopy(cache)
                    batch_cache.batch_repeat_interleave(len(rows))
                    full_mask = torch.cat([torch.ones((len(rows), len(head)), dtype=torch.long, device=target),
                                           mask], dim=1)
                    positions = torch.arange(len(head), len(head) + width, device=target).expand(len(rows), -1)
                    logits = model(input_ids=ids, attention_mask=full_mask, past_key_values=batch_cache,
                                   position_ids=positions, use_cache=True).logits
                    nll, valid = shifted_token_nll(logits, ids, mask)
                    first = -head_last[ids[:, 0]]
                    totals = (head_nll + first + nll.sum(dim=1)).double().cpu().tolist()
                    counts = (len(head) - 1 + 1 + valid.sum(dim=1)).cpu().tolist()
                else:
                    whole = torch.cat([head_ids.expand(len(rows), -1), ids], dim=1)
                    whole_mask = torch.cat([torch.ones((len(rows), len(head)), dtype=torch.long, device=target),
                                            mask], dim=1)
                    logits = model(input_ids=whole, attention_mask=whole_mask, use_cache=False).logits
                    nll, valid = shifted_token_nll(logits, whole, whole_mask)
                    totals = nll.sum(dim=1).double().cpu().tolist()
                    counts = valid.sum(dim=1).cpu().tolist()
                for r, i in enumerate(rows):
                    scores[i] = totals[r] / counts[r] if per_token else totals[r]
    finally:
        model.train(was_training)
    return scores


def rank_of_truth(scores: Sequence[float], truth: int = 0) -> int:
    """The true candidate's rank when candidates are sorted by score, lowest (most likely) first; ties
    count against it (rank = #{c: score_c <= score_truth}), so a model indifferent between candidates
    ranks it last, never first by luck."""
    return sum(s <= scores[truth] for s in scores)


def exposure(rank: int, n_candidates: int) -> float:
    """log2 K − log2 rank (Carlini et al. 2019's exposure over a candidate set of size K): log2 K when the
    truth ranks first, 0 when last."""
    return math.log2(n_candidates) - math.log2(rank)


# ------------------------------------------------------------------------------------------
# The attacks


def pii_inference(model, tokenizer, targets: pl.DataFrame, *, batch_size: int = 64, device: str = "auto",
                  cached: bool = True) -> pl.DataFrame:
    """Rank of every target's true string among its candidates (TARGET_RECORD_SCHEMA rows, attack
    "inference"): correct = ranked first, exposure = log2 K − log2 rank with K the candidate set's size."""
    rows = []
    with Progress(targets.height, "extract: PII inference", unit="targets") as progress:
        for t in targets.iter_rows(named=True):
            fillings = [t["separator"] + v for v in [t["value"], *t["candidates"]]]
            scores = filled_window_scores(model, tokenizer, t["prefix"], fillings, t["suffix"],
                                          batch_size=batch_size, device=device, cached=cached)
            rank = rank_of_truth(scores)
            rows.append((INFERENCE, None, t["entity_type"], t["target_id"], t["string_id"], t["in_pretraining"],
                         len(fillings), rank, rank == 1, exposure(rank, len(fillings)), None, t.get("occurrences")))
            progress.update()
    return pl.DataFrame(rows, schema=TARGET_RECORD_SCHEMA, orient="row")


def pii_reconstruction(model, tokenizer, targets: pl.DataFrame, *, analyzer, samples: int, new_tokens: int,
                       top_k: int, top_p: float, temperature: float, seed: int, score_threshold: float = 0.4,
                       ignore: Sequence[str] = (), batch_size: int = 64, device: str = "auto",
                       cached: bool = True) -> pl.DataFrame:
    """Reconstruction of every target (TARGET_RECORD_SCHEMA rows, attack "reconstruction").

    `samples` continuations of `new_tokens` tokens are sampled from the text before the mask (top-k, top-p,
    temperature; seeded); the PII of the target's type found in them (`find_pii` with `analyzer`, `ignore` as
    pii.ignore) are the candidates, each normal form once, ranked by the perplexity of the filled window.
    correct = the best ranked candidate is the true string; truth_sampled = the true string is among the
    candidates at all; n_candidates = their number (0: nothing of that type was written, a miss).
    """
    from piimem.extraction.found import find_pii

    check_count("pii_reconstruction: samples", samples)
    prompts = [p for p in targets["prefix"].to_list() for _ in range(samples)]
    continuations = generate(model, tokenizer, prompts, max_new_tokens=new_tokens, batch_size=batch_size,
                             do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                             device=device)
    types = sorted(set(targets["entity_type"].to_list()))
    found = find_pii(continuations, entity_types=types, analyzer=analyzer, score_threshold=score_threshold,
                     ignore=ignore) if continuations else None
    by_prompt: dict[int, list[tuple[str, str, str]]] = {}
    if found is not None:
        for index, entity_type, value, normalized in found.select("prompt_index", "entity_type", "value",
                                                                  "normalized").rows():
            by_prompt.setdefault(index, []).append((entity_type, value, normalized))
    rows = []
    with Progress(targets.height, "extract: PII reconstruction", unit="targets") as progress:
        for k, t in enumerate(targets.iter_rows(named=True)):
            written: dict[str, str] = {}
            for index in range(k * samples, (k + 1) * samples):
                for entity_type, value, normalized in by_prompt.get(index, []):
                    if entity_type == t["entity_type"]:
                        written.setdefault(normalized, value)
            correct = False
            if written:
                scores = filled_window_scores(model, tokenizer, t["prefix"],
                                              [t["separator"] + v for v in written.values()], t["suffix"],
                                              batch_size=batch_size, device=device, cached=cached)
                best = min(range(len(scores)), key=lambda i: (scores[i], i))
                correct = list(written)[best] == t["normalized"]
            rows.append((RECONSTRUCTION, None, t["entity_type"], t["target_id"], t["string_id"],
                         t["in_pretraining"], len(written), None, correct, None, t["normalized"] in written,
                         t.get("occurrences")))
            progress.update()
    return pl.DataFrame(rows, schema=TARGET_RECORD_SCHEMA, orient="row")
