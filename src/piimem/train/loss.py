"""The step loss: the summed NLL of a micro-batch's real target tokens (the loop divides by the step's count).

Two ways to the same number, chosen per model by `output_head`:

  logits   the model's logits over the whole vocabulary, cross-entropy in float32 (`shifted_token_nll`);
  chunked  the model's last hidden states, multiplied by the output layer's weight a chunk of positions at
           a time inside `ChunkedNLL`, which also computes the gradients there, so no (positions x
           vocabulary) tensor is ever kept for the backward pass and padding positions are skipped.

Both compute the output layer in the autocast dtype (bf16/fp16 on a GPU; fp32 on CPU), the log-softmax in
float32, and keep float32 master weights; they differ only in rounding (summation order, and where the
loss scale multiplies the bfloat16 gradient of the logits: after the matmul here, before it in autograd).
tests/test_train_speed.py checks loss and gradients against the logits way.

A micro-batch without padding (full blocks) is passed without an attention mask: the model's causal mask
alone is then the same mask, and SDPA can take its fused causal kernels instead of a materialised mask.
"""

from __future__ import annotations

import contextlib
import functools

# Model families whose causal-LM forward returns `output layer(last hidden states)` and nothing else (no
# logit scaling or soft-capping), so hidden states can stand in for logits (see `hidden_states_out`).
_PLAIN_HEAD_FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "gpt_neox")

# float32 logits materialised at once, (positions in a chunk) x vocabulary: on a CPU a chunk that stays in
# cache; on a GPU large enough to keep the matmuls efficient (as in piimem.scoring).
_CHUNK_ELEMENTS = {"cpu": 1 << 20, "other": 1 << 26}


def output_head(model):
    """The model's output layer when the chunked loss applies (a plain bias-free nn.Linear of a family in
    _PLAIN_HEAD_FAMILIES; LoRA or other wrappers on the head do not qualify), else None."""
    import torch

    family = getattr(getattr(model, "config", None), "model_type", None)
    if family not in _PLAIN_HEAD_FAMILIES:
        return None
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    return head


def _identity(hidden_states):
    return hidden_states


@contextlib.contextmanager
def hidden_states_out(head):
    """Within the block the output layer passes its input through, so the model's "logits" are its last
    hidden states (the layer's weight keeps its place in the model and its gradient)."""
    head.forward = _identity  # an instance attribute: shadows the class's forward
    try:
        yield
    finally:
        del head.forward


def micro_batch_nll(forward, ids, mask, *, head=None, autocast_dtype=None):
    """Summed NLL of the real target tokens of one right-padded micro-batch (a float32 scalar tensor).

    `forward`: the model (or its compiled form); `mask`: the attention mask, None when nothing is padded;
    `head`: `output_head(model)` for the chunked way, None for the logits way; `autocast_dtype`: the
    dtype the model computes in under autocast (None: no autocast).
    """
    import torch

    autocast = (torch.autocast(device_type=ids.device.type, dtype=autocast_dtype) if autocast_dtype
                else contextlib.nullcontext())
    if head is None:
        from piimem.scoring import shifted_token_nll

        with autocast:
            logits = forward(input_ids=ids, attention_mask=mask, use_cache=False).logits
        nll, _ = shifted_token_nll(logits, ids, torch.ones_like(ids) if mask is None else mask)
        return nll.sum()
    with autocast, hidden_states_out(head):
        hidden = forward(input_ids=ids, attention_mask=mask, use_cache=False).logits
    length = ids.shape[1]
    extra = hidden.shape[1] - length  # virtual tokens of prompt tuning / P-tuning come first
    if extra < 0:
        raise ValueError(f"model returned hidden states for {hidden.shape[1]} positions, fewer than the "
                         f"{length} input tokens")
    hidden = hidden[:, extra:extra + length - 1]  # position t predicts token t + 1
    targets = ids[:, 1:]
    if mask is not None:
        valid = mask[:, 1:].bool()
        hidden, targets = hidden[valid], targets[valid]
    return chunked_nll(hidden.reshape(-1, hidden.shape[-1]), head.weight, targets.reshape(-1),
                       compute_dtype=autocast_dtype or head.weight.dtype)


def example_mean_nll(forward, ids, mask, *, position_ids=None, autocast_dtype=None):
    """Each example's mean NLL over its real target tokens, (batch,) float32: the per-example losses of
    DP-SGD (piimem.train.dp), the logits way, whose output layer call per-example gradient hooks see."""
    import torch

    from piimem.scoring import shifted_token_nll

    autocast = (torch.autocast(device_type=ids.device.type, dtype=autocast_dtype) if autocast_dtype
                else contextlib.nullcontext())
    with autocast:
        logits = forward(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
    nll, valid = shifted_token_nll(logits, ids, torch.ones_like(ids) if mask is None else mask)
    return nll.sum(dim=1) / valid.sum(dim=1).clamp(min=1)


def chunked_nll(hidden, weight, targets, *, compute_dtype):
    """sum_t -log softmax(hidden_t weight^T)[targets_t] (float32), with its gradients, a chunk of rows at a
    time: `hidden` (rows, width), `weight` (vocabulary, width), `targets` (rows,). The matmuls run in
    `compute_dtype`, the softmax in float32."""
    return _chunked_nll_function().apply(hidden, weight, targets, compute_dtype)


@functools.cache
def _chunked_nll_function():
    """The autograd function, defined on first use (this package imports torch lazily).

    The gradients are computed in the forward pass (softmax - onehot, then the two matmuls) and scaled
    by the incoming gradient in the backward pass, as Liger-Kernel's fused linear cross-entropy does.
    """
    import torch

    class ChunkedNLL(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets, dtype):
            device_type = hidden.device.type
            want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            rows = hidden.shape[0]
            step = max(1, _CHUNK_ELEMENTS["cpu" if device_type == "cpu" else "other"] // weight.shape[0])
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_hidden = torch.empty_like(hidden) if want_hidden else None
            grad_weight = (torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                           if want_weight else None)
            with torch.autocast(device_type, enabled=False):
                w = weight.to(dtype)
                for lo in range(0, rows, step):
                    h = hidden[lo:lo + step].to(dtype)
                    y = targets[lo:lo + step]
                    logits = (h @ w.t()).float()
                    lse = torch.logsumexp(logits, dim=-1)
                    total += (lse - logits.gather(1, y.unsqueeze(1)).squeeze(1)).sum()
                    if not (want_hidden or want_weight):
                        continue
                    grad = logits.sub_(lse.unsqueeze(1)).exp_()  # softmax, in place of the logits
                    grad[torch.arange(len(y), device=y.device), y] -= 1.0
                    grad = grad.to(dtype)
                    if want_hidden:
                        grad_hidden[lo:lo + step] = grad @ w
                    if want_weight:
                        grad_weight += (grad.t() @ h).float()
            ctx.save_for_backward(grad_hidden, grad_weight)
            ctx.weight_dtype = weight.dtype
            return total

        @staticmethod
        def backward(ctx, grad_total):
            grad_hidden, grad_weight = ctx.saved_tensors
            if grad_hidden is not None:
                grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
            if grad_weight is not None:
                grad_weight = (grad_weight * grad_total).to(ctx.weight_dtype)
            return grad_hidden, grad_weight, None, None

    return ChunkedNLL
