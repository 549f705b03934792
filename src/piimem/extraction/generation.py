"""Batched decoding with left padding and the KV cache: `generate_token_ids`, `generate` (continuations only)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from piimem.checks import is_int, is_number
from piimem.extraction.prompts import check_count
from piimem.progress import Progress
from piimem.scoring import position_limit


def peft_virtual_tokens(model):
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
    top_p: float = 1.0,
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

    check_count("generate: max_new_tokens", max_new_tokens)
    check_count("generate: batch_size", batch_size)
    if do_sample and not temperature > 0:
        raise ValueError(f"generate: temperature must be > 0 for sampling, got {temperature!r}")
    if not is_int(top_k) or top_k < 0:
        raise ValueError(f"generate: top_k must be an integer >= 0 (0 = off), got {top_k!r}")
    if not is_number(top_p) or not 0 < top_p <= 1:
        raise ValueError(f"generate: top_p must be a number in (0, 1] (1 = off), got {top_p!r}")
    if cache not in ("static", "dynamic"):
        raise ValueError(f"generate: cache must be 'static' or 'dynamic', got {cache!r}")
    prompts = list(prompts)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"generate: prompts must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    if not prompts:
        return []

    n_virtual, ignores_positions = peft_virtual_tokens(model)
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
        top_p=float(top_p) if do_sample else None, num_beams=1,
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
    top_p: float = 1.0,
    seed: int = 0,
    device: str = "auto",
) -> list[str]:
    """The decoded continuation of each prompt (not the prompt), in input order.

    Batches of `batch_size` prompts, left-padded with an attention mask (positions follow the mask, so a
    padded prompt continues exactly as it would alone), decoded with the KV cache through
    `model.generate` (a PeftModel's own generate for prompt-based methods, which prepends its virtual
    tokens; prompt tuning and P-tuning ignore position ids, so their batches hold prompts of equal token
    length only and need no padding). Greedy by default; `do_sample` draws with `temperature`, `top_k`
    (0 = no top-k cut) and `top_p` (nucleus; 1 = no cut) from a generator seeded with `seed` (the caller's
    RNG state is left as it was; draws depend on the batching).
    A prompt longer than the model's position limit minus `max_new_tokens` (minus the virtual tokens of
    prompt-based methods) is cut from the left. Generation stops at EOS; the text after it is dropped.
    The tokenizer's padding and truncation sides are restored afterwards.
    """
    ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                             device=device)
    return tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


