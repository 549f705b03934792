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
import math
import zlib
from collections.abc import Callable, Sequence

import polars as pl

from piimem.checks import is_int, is_number
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


def _check_scoring_arguments(caller: str, texts, max_length, batch_size) -> list[str]:
    if not is_int(max_length) or max_length < 2:
        raise ValueError(f"{caller}: max_length must be an integer >= 2, got {max_length!r}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"{caller}: batch_size must be a positive integer, got {batch_size!r}")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{caller}: texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts


def scored_text(tokenizer, texts: Sequence[str], *, max_length: int) -> list[str]:
    """The part of each text that a scoring pass with `max_length` reads: the characters covered by its
    first `max_length` tokens as `_forward_batches` encodes them (the whole text when it fits).

    Attacks that look at the text itself (Zlib's compressed size, Lowercase's re-cased copy) must use
    this span, not the whole text, or they compare the loss of one text with a property of another.
    Fast tokenizers give the span by their offsets; other tokenizers by decoding the kept tokens.
    """
    texts = list(texts)
    if not texts:
        return []
    full = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    cut = [i for i, ids in enumerate(full) if len(ids) > max_length]
    spans = list(texts)
    if not cut:
        return spans
    long_texts = [texts[i] for i in cut]
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(long_texts, add_special_tokens=True, truncation=True, max_length=max_length,
                            return_offsets_mapping=True, verbose=False)["offset_mapping"]
        for i, offsets in zip(cut, encoded):
            spans[i] = texts[i][:max(end for _, end in offsets)]
    else:
        for i in cut:
            spans[i] = tokenizer.decode(full[i][:max_length], skip_special_tokens=True)
    return spans


def position_limit(model) -> int | None:
    """The longest sequence the model's position embeddings allow (None when it does not say)."""
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def usable_positions(model) -> int | None:
    """How many input tokens the model can take: its position limit (`position_limit`) less the virtual
    tokens of a PEFT prompt-learning method; None when the config names no limit."""
    limit = position_limit(model)
    peft_config = getattr(model, "peft_config", None)
    if limit is not None and peft_config:
        adapter = peft_config[getattr(model, "active_adapter", "default")]
        limit -= getattr(adapter, "num_virtual_tokens", 0) or 0
    return limit


def right_padded(sequences: Sequence[Sequence[int]], pad_id: int, device=None):
    """(ids, mask): token id lists as one right-padded (batch, longest) long tensor and its attention mask."""
    import torch

    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for r, seq in enumerate(sequences):
        ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[r, :len(seq)] = 1
    return ids.to(device), mask.to(device)


def _forward_batches(model, tokenizer, texts: list[str], *, max_length: int, batch_size: int, target,
                     desc: str, on_batch: Callable) -> None:
    """Run the model over `texts` in length-sorted batches and hand each batch's output to `on_batch`.

    `on_batch(rows, logits, ids, mask)` gets the input positions of the batch's texts and the padded
    (right-padded) inputs; it runs under inference mode. Texts of fewer than 2 tokens have nothing to
    score and are never passed. The model is moved to `target` and put in eval mode, its previous mode
    restored afterwards. This is the one forward loop every scoring function shares, so they all see the
    same tokenization, truncation and virtual-token conventions (module docstring).
    """
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0  # padded positions are masked out; any valid id will do
    encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length,
                        return_attention_mask=False, verbose=False)["input_ids"] if texts else []
    # Longest first: the first batch shows at once whether memory suffices.
    scorable = [i for i in range(len(texts)) if len(encoded[i]) >= 2]
    order = sorted(scorable, key=lambda i: (-len(encoded[i]), i))

    was_training = model.training
    model.to(target)
    model.eval()
    try:
        with torch.inference_mode(), Progress(len(order), desc, unit="text") as progress:
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                ids, mask = right_padded([encoded[i] for i in rows], pad_id, target)
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                on_batch(rows, logits, ids, mask)
                progress.update(len(rows))
    finally:
        model.train(was_training)


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
    texts = _check_scoring_arguments("token_nll", texts, max_length, batch_size)
    target = resolve_device(device, key="token_nll: device")

    nll_sum = [0.0] * len(texts)
    n_tokens = [0] * len(texts)
    per_token_nll: list[list[float]] = [[] for _ in texts]

    def on_batch(rows, logits, ids, mask):
        nll, valid = shifted_token_nll(logits, ids, mask)
        sums = nll.sum(dim=1).double().cpu().tolist()
        counts = valid.sum(dim=1).cpu().tolist()
        nll_cpu = nll.cpu() if per_token else None
        for r, i in enumerate(rows):
            nll_sum[i], n_tokens[i] = sums[r], counts[r]
            if per_token:
                per_token_nll[i] = nll_cpu[r, :counts[r]].double().tolist()

    _forward_batches(model, tokenizer, texts, max_length=max_length, batch_size=batch_size, target=target,
                     desc="scoring", on_batch=on_batch)

    columns = {
        "index": pl.Series("index", range(len(texts)), dtype=pl.Int64),
        "nll_sum": pl.Series("nll_sum", nll_sum, dtype=pl.Float64),
        "n_tokens": pl.Series("n_tokens", n_tokens, dtype=pl.Int64),
    }
    if per_token:
        columns["token_nll"] = pl.Series("token_nll", per_token_nll, dtype=pl.List(pl.Float64))
    return pl.DataFrame(columns)


# ------------------------------------------------------------------------------------------
# Per-example statistics for membership inference: one forward pass feeds every attack.

# Below this standard deviation (nats) the next-token distribution is flat over its support (e.g. uniform
# or one-hot up to rounding), where (log p - mu) / sigma is 0/0 plus rounding noise: such tokens get 0.
MIN_SIGMA = 1e-6

# Elements of float32 log-probabilities materialised at once (positions x vocabulary). On a CPU a block
# that stays in cache (1 MiB) is 5x faster than one pass over the whole batch (measured: 21 ms vs 120 ms
# for 16 x 127 positions x 4,096 tokens); on a GPU large blocks avoid kernel-launch overhead.
_VOCAB_BLOCK_ELEMENTS = {"cpu": 256 * 1024, "other": 64 * 1024 * 1024}


def token_log_prob_statistics(logits, input_ids, attention_mask):
    """Per scored position t: log p(x_t | x_<t), and mu_t, sigma_t of log p(z | x_<t) for z ~ p(. | x_<t).

    mu_t = sum_z p(z) log p(z) (minus the entropy), sigma_t = sqrt(sum_z p(z) (log p(z) - mu_t)^2): the
    moments Min-K%++ standardises the target's log-probability with. Positions, padding and virtual-token
    logits follow `shifted_token_nll`. Returns `(log_prob, mu, sigma, valid)`, float32 tensors of shape
    (batch, length - 1) (0 where `valid` is False) and the bool mask. The variance is computed around the
    mean (not E[x^2] - mu^2), which in float32 would cancel badly for peaked distributions.
    """
    import torch

    extra = logits.shape[1] - input_ids.shape[1]
    if extra < 0:
        raise ValueError(f"model returned logits for {logits.shape[1]} positions, fewer than the "
                         f"{input_ids.shape[1]} input tokens")
    batch, length = input_ids.shape
    vocab = logits.shape[-1]
    valid = attention_mask[:, 1:] != 0
    targets = input_ids[:, 1:].masked_fill(~valid, 0).unsqueeze(-1)
    log_prob = torch.zeros((batch, length - 1), dtype=torch.float32, device=logits.device)
    mu = torch.zeros_like(log_prob)
    sigma = torch.zeros_like(log_prob)
    block = _VOCAB_BLOCK_ELEMENTS["cpu" if logits.device.type == "cpu" else "other"]
    if logits.device.type == "cpu":
        step = max(1, block // vocab)
        scored = valid.sum(dim=1).tolist()  # right padding: row r's scored positions are 0..scored[r]-1
        spans = [(r, lo, min(scored[r], lo + step)) for r in range(batch) for lo in range(0, scored[r], step)]
    else:
        rows_per_block = max(1, block // max(1, (length - 1) * vocab))
        spans = [(slice(r, min(batch, r + rows_per_block)), 0, length - 1) for r in range(0, batch, rows_per_block)]
    for rows, lo, hi in spans:
        # Position t's prediction sits at logits index extra + t - 1; the last position predicts nothing.
        logp = torch.log_softmax(logits[rows, extra + lo:extra + hi].float(), dim=-1)
        p = logp.exp()
        m = torch.linalg.vecdot(p, logp)
        centred = logp.sub_(m.unsqueeze(-1))  # in place: logp is not needed again except at the targets
        var = torch.linalg.vecdot(p, centred.square())
        log_prob[rows, lo:hi] = centred.gather(-1, targets[rows, lo:hi]).squeeze(-1) + m
        mu[rows, lo:hi] = m
        sigma[rows, lo:hi] = var.clamp_min(0).sqrt()
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    return (torch.where(valid, log_prob, zero), torch.where(valid, mu, zero),
            torch.where(valid, sigma, zero), valid)


def min_k_pp_token_scores(log_prob, mu, sigma):
    """Min-K%++'s per-token score (log p(x_t) - mu_t) / sigma_t; 0 where sigma_t < MIN_SIGMA (flat)."""
    import torch

    flat = sigma < MIN_SIGMA
    return torch.where(flat, torch.zeros_like(log_prob), (log_prob - mu) / sigma.masked_fill(flat, 1.0))


def lowest_count(n_tokens: int, fraction: float) -> int:
    """How many tokens "the K % lowest" of `n_tokens` are: floor(K n), at least 1 (0 when n is 0).

    floor matches the Min-K% authors' `int(len * ratio)`; the floor of 1 keeps short texts scored
    instead of averaging nothing. A tiny tolerance keeps e.g. 0.29 x 100 at 29, not 28.
    """
    if n_tokens <= 0:
        return 0
    return max(1, math.floor(fraction * n_tokens + 1e-9))


def lowest_fraction_mean(values, valid, fraction: float):
    """Per row: the mean of the `lowest_count(n, fraction)` smallest valid values (NaN for rows with none).

    `values`, `valid`: tensors of shape (batch, length). Returns a float64 tensor of shape (batch,).
    """
    import torch

    counts = valid.sum(dim=1)
    k = torch.tensor([lowest_count(int(n), fraction) for n in counts.tolist()], device=values.device)
    ordered = torch.sort(values.double().masked_fill(~valid, math.inf), dim=1).values
    # cumsum over +inf tails is never read: k <= n valid entries, all sorted first.
    cumulative = ordered.masked_fill(~torch.isfinite(ordered), 0.0).cumsum(dim=1)
    sums = cumulative.gather(1, (k - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
    return torch.where(k > 0, sums / k.clamp_min(1), torch.full_like(sums, math.nan))


def fraction_label(fraction: float) -> str:
    """Column suffix for a K fraction: 0.2 -> "20", 0.125 -> "12_5"."""
    return f"{fraction * 100:.6g}".replace(".", "_")


def example_statistics(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 16,
    device: str = "auto",
    min_k_fractions: Sequence[float] = (0.2,),
    lowercase: bool = True,
) -> pl.DataFrame:
    """Every per-example number the membership-inference attacks need, from one scoring pass.

    Columns, one row per text in input order (tokenization, truncation, batching and virtual tokens as in
    `token_nll`, whose NLLs these reproduce):
      index, n_tokens        as in `token_nll`
      nll_mean               mean NLL (nats) of the scored tokens; null when n_tokens is 0
      nll_lower_mean         mean NLL of the scored span (`scored_text`) lower-cased, over all its own tokens
                             (only with `lowercase`): a second batch loop inside this call, NLL only (no
                             vocabulary statistics), allowed as many tokens as the model takes
                             (`usable_positions`), since lower-cased text often needs more tokens than its
                             original; spans already in lower case reuse nll_mean instead of being scored
                             again
      zlib_bytes             len(zlib.compress(span.encode("utf-8"))) at zlib's default level, of the same
                             scored span: the loss and the compressed size describe the same characters
      min_k_<pct>            Min-K%: mean log-probability of the K % least likely scored tokens
                             (`lowest_count`), one column per K in `min_k_fractions` (e.g. min_k_20)
      min_k_pp_<pct>         Min-K%++: the mean of the K % lowest (log p(x_t) - mu_t) / sigma_t, with mu_t,
                             sigma_t the mean and standard deviation of log p(z) under z ~ p(. | x_<t),
                             taken from the same logits (`token_log_prob_statistics`)
    Min-K columns are null when n_tokens is 0. The lower-case loop roughly doubles the forward cost;
    pass lowercase=False when the lowercase attack is not run.
    """
    texts = _check_scoring_arguments("example_statistics", texts, max_length, batch_size)
    fractions = list(min_k_fractions)
    for fraction in fractions:
        if not is_number(fraction) or not 0 < fraction <= 1:
            raise ValueError(f"example_statistics: min_k_fractions must be numbers in (0, 1], got {fraction!r}")
    labels = [fraction_label(f) for f in fractions]
    if len(set(labels)) != len(labels):
        raise ValueError(f"example_statistics: min_k_fractions has duplicates: {fractions}")
    target = resolve_device(device, key="example_statistics: device")

    n = len(texts)
    n_tokens = [0] * n
    nll_mean: list[float | None] = [None] * n
    min_k: dict[str, list[float | None]] = {label: [None] * n for label in labels}
    min_k_pp: dict[str, list[float | None]] = {label: [None] * n for label in labels}

    def on_batch(rows, logits, ids, mask):
        log_prob, mu, sigma, valid = token_log_prob_statistics(logits, ids, mask)
        counts = valid.sum(dim=1)
        means = (-log_prob.double().sum(dim=1) / counts.clamp_min(1)).cpu().tolist()
        z = min_k_pp_token_scores(log_prob, mu, sigma)
        per_fraction = [(label, lowest_fraction_mean(log_prob, valid, f).cpu().tolist(),
                         lowest_fraction_mean(z, valid, f).cpu().tolist()) for label, f in zip(labels, fractions)]
        for r, i in enumerate(rows):
            n_tokens[i] = int(counts[r])
            nll_mean[i] = means[r]
            for label, plain, plus in per_fraction:
                min_k[label][i], min_k_pp[label][i] = plain[r], plus[r]

    _forward_batches(model, tokenizer, texts, max_length=max_length, batch_size=batch_size, target=target,
                     desc="statistics", on_batch=on_batch)

    columns = {
        "index": pl.Series("index", range(n), dtype=pl.Int64),
        "n_tokens": pl.Series("n_tokens", n_tokens, dtype=pl.Int64),
        "nll_mean": pl.Series("nll_mean", nll_mean, dtype=pl.Float64),
    }
    spans = scored_text(tokenizer, texts, max_length=max_length)
    if lowercase:
        changed = [i for i, t in enumerate(spans) if t.lower() != t]
        lower_mean = list(nll_mean)
        if changed:
            lower_texts = [spans[i].lower() for i in changed]
            limit = max(max_length, usable_positions(model) or 4 * max_length)
            lower_lengths = [len(ids) for ids in tokenizer(lower_texts, add_special_tokens=True,
                                                           verbose=False)["input_ids"]]
            cut = sum(n > limit for n in lower_lengths)
            if cut:
                log.warning("lowercase: %d of %d lower-cased spans exceed the model's %d positions and are cut",
                            cut, len(changed), limit)
            lower = token_nll(model, tokenizer, lower_texts, max_length=limit, batch_size=batch_size,
                              device=str(target))
            for i, s, k in zip(changed, lower["nll_sum"], lower["n_tokens"]):
                lower_mean[i] = s / k if k else None
        columns["nll_lower_mean"] = pl.Series("nll_lower_mean", lower_mean, dtype=pl.Float64)
    columns["zlib_bytes"] = pl.Series("zlib_bytes", [len(zlib.compress(t.encode("utf-8"))) for t in spans],
                                      dtype=pl.Int64)
    for label in labels:
        columns[f"min_k_{label}"] = pl.Series(f"min_k_{label}", min_k[label], dtype=pl.Float64)
    for label in labels:
        columns[f"min_k_pp_{label}"] = pl.Series(f"min_k_pp_{label}", min_k_pp[label], dtype=pl.Float64)
    return pl.DataFrame(columns)
