"""One teacher-forced scoring pass: the negative log-likelihood of every token of a text under a model.

Perplexity (utility) and every membership-inference score are functions of these numbers, so the
forward pass is done once per checkpoint and text set, and the formulas live in `piimem.metrics`.

Token conventions (shared with training, see `shifted_token_nll`):

- Each text is encoded with the tokenizer's own special tokens (`add_special_tokens=True`) and cut to
  `max_length` tokens from the left (the beginning is kept). GPT-2-style tokenizers add nothing, so the
  first text token has no context and is not scored; tokenizers that add a BOS (Llama, SmolLM2) put it
  first, so every text token is scored, conditioned on BOS. In both cases the scored tokens are
  positions 2..n of the encoded sequence and `n_tokens` = n - 1.
- Prompt tuning and P-tuning (PEFT) prepend virtual tokens, so their logits are longer than the input:
  the leading extra positions belong to the virtual tokens and are dropped. Prefix tuning feeds its
  prefix as past key values and returns logits of the input's length; nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import polars as pl

from piimem.progress import Progress

log = logging.getLogger("piimem")


def shifted_token_nll(logits, input_ids, attention_mask):
    """Per-position NLL of `input_ids[:, 1:]` given the model's `logits` (teacher forcing).

    Returns `(nll, valid)`, both of shape (batch, length - 1): `nll` in float32 with 0 where `valid` is
    False (padding on the right). Logits longer than the input come from virtual tokens placed before
    the input (prompt tuning, P-tuning) and their leading positions are dropped.
    """
    import torch
    import torch.nn.functional as F

    extra = logits.shape[1] - input_ids.shape[1]
    if extra < 0:
        raise ValueError(f"model returned logits for {logits.shape[1]} positions, fewer than the "
                         f"{input_ids.shape[1]} input tokens")
    if extra:
        logits = logits[:, extra:]
    batch, length = input_ids.shape
    # Shift the targets rather than the logits: slicing the logits would copy a (batch, length, vocab)
    # tensor, which costs more than the rest of the loss (measured 3-4x on CPU).
    targets = torch.full_like(input_ids, -100)
    targets[:, :-1] = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    # Cross-entropy in float32: bf16/fp16 logits lose too much precision in the log-sum-exp.
    nll = F.cross_entropy(logits.reshape(batch * length, -1).float(), targets.view(-1), reduction="none",
                          ignore_index=-100).view(batch, length)[:, :-1]
    return nll, targets[:, :-1] != -100


def resolve_device(name: str, *, key: str = "device"):
    """torch.device for "auto" (a CUDA GPU when one is visible, else the CPU) or an explicit name."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{key}: {name!r} is not a device name "
                         f"(expected auto, cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}: {name!r} asks for a CUDA GPU but none is visible (use auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{key}: {name!r} asks for Apple MPS but it is not available (use auto or cpu)")
    return device


def token_nll(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 16,
    device: str = "auto",
    per_token: bool = False,
) -> pl.DataFrame:
    """Table (index, nll_sum, n_tokens), one row per text in input order.

    `nll_sum` is the sum of the NLLs (nats) of the scored tokens, `n_tokens` their number (see the module
    docstring); a text of fewer than 2 tokens has n_tokens 0 and nll_sum 0. With `per_token`, a column
    `token_nll` (list of float) holds the NLL of each scored token, for attacks such as Min-K%.
    Runs without gradients in eval mode (the model's previous mode is restored), in float32, texts
    sorted by length into batches of `batch_size` to keep padding small. The model is moved to `device`.
    """
    import torch

    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"token_nll: max_length must be an integer >= 2, got {max_length!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"token_nll: batch_size must be a positive integer, got {batch_size!r}")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"token_nll: texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")

    target = resolve_device(device, key="token_nll: device")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0  # padded positions are masked out; any valid id will do
    encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length,
                        return_attention_mask=False, verbose=False)["input_ids"] if texts else []

    nll_sum = [0.0] * len(texts)
    n_tokens = [0] * len(texts)
    per_token_nll: list[list[float]] = [[] for _ in texts]
    # Longest first: the first batch shows at once whether memory suffices.
    scorable = [i for i in range(len(texts)) if len(encoded[i]) >= 2]
    order = sorted(scorable, key=lambda i: (-len(encoded[i]), i))

    was_training = model.training
    model.to(target)
    model.eval()
    try:
        with torch.inference_mode(), Progress(len(order), "scoring", unit="text") as progress:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                width = len(encoded[rows[0]])
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):
                    seq = encoded[i]
                    ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[r, :len(seq)] = 1
                ids, mask = ids.to(target), mask.to(target)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                nll, valid = shifted_token_nll(logits, ids, mask)
                sums = nll.sum(dim=1).double().cpu().tolist()
                counts = valid.sum(dim=1).cpu().tolist()
                nll_cpu = nll.cpu() if per_token else None
                for r, i in enumerate(rows):
                    nll_sum[i], n_tokens[i] = sums[r], counts[r]
                    if per_token:
                        per_token_nll[i] = nll_cpu[r, :counts[r]].double().tolist()
                progress.update(len(rows))
    finally:
        model.train(was_training)

    columns = {
        "index": pl.Series("index", range(len(texts)), dtype=pl.Int64),
        "nll_sum": pl.Series("nll_sum", nll_sum, dtype=pl.Float64),
        "n_tokens": pl.Series("n_tokens", n_tokens, dtype=pl.Int64),
    }
    if per_token:
        columns["token_nll"] = pl.Series("token_nll", per_token_nll, dtype=pl.List(pl.Float64))
    return pl.DataFrame(columns)
