"""The speed paths compute what the plain ones do (issue 11): the chunked loss and the mask-free full blocks
(loss and gradients), compiled blocks (weights), the state written beside training (a failed write
resumes exactly), the static key/value cache (greedy tokens). Tiny GPT-2, CPU."""

from __future__ import annotations

import copy
import dataclasses
import json

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

import piimem.train.loop
import piimem.train.state
from made_up_text import made_up_docs
from tiny_training import SMALL
from piimem.extraction.generation import generate_token_ids
from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.train import StateEvery, TrainConfig, read_train_log, train
from piimem.train.loss import micro_batch_nll, output_head
from piimem.tuning import apply_tuning

METHOD_OPTIONS = {"full": {}, "head": {}, "lora": {}, "prefix": {}, "prompt": {"num_virtual_tokens": 3},
                  "ptuning": {}}


def _docs(n: int, seed: int) -> list[str]:
    return made_up_docs(n, seed, letters="abcdefghij", vocabulary=80, words=(8, 50))


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(_docs(300, seed=1), 300)


def _model(tok, dropout: bool = True):
    model = init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=7)
    if not dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model


def _texts(n: int = 30) -> pl.DataFrame:
    return pl.DataFrame({"epoch": [0] * n, "doc_id": list(range(3, 3 * n + 3, 3)), "text": _docs(n, seed=2)},
                        schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})


def _batch(vocab: int, padded: bool):
    ids = torch.randint(0, vocab, (4, 32), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 20:] = 0
        mask[3, 5:] = 0
    return ids, mask


def _loss_and_grads(model, ids, mask, head, dtype=None):
    model.zero_grad(set_to_none=True)
    nll = micro_batch_nll(model, ids, mask, head=head, autocast_dtype=dtype)
    (nll / 100).backward()
    return nll.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_chunked_loss_equals_the_logits_loss(tok, method, padded):
    model = apply_tuning(_model(tok), method, METHOD_OPTIONS[method], seed=0, tokenizer=tok)
    model.eval()  # no dropout, so both ways see the same network
    head = output_head(model)
    assert head is not None and head.weight.shape[0] == model.config.vocab_size
    ids, mask = _batch(model.config.vocab_size, padded)
    reference, reference_grads = _loss_and_grads(model, ids, mask, None)
    # the fast way gets no mask for an unpadded batch, as the loop passes it
    loss, grads = _loss_and_grads(model, ids, mask if padded else None, head)
    assert loss == pytest.approx(reference, rel=1e-6)
    assert sorted(grads) == sorted(reference_grads) and grads
    for name, grad in reference_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()),
                                   msg=name)
    if method not in ("full", "head"):  # the frozen output layer got no gradient from the chunked loss
        assert head.weight.grad is None


@pytest.mark.parametrize("padded", [False, True])
def test_chunked_loss_under_bf16_autocast_is_as_close_to_fp32_as_the_logits_loss(tok, padded):
    """Same mixed-precision semantics: the output layer in bf16, the softmax in fp32, fp32 master weights;
    both ways differ from the fp32 result by bf16 rounding of the same size."""
    model = _model(tok).eval()
    ids, mask = _batch(model.config.vocab_size, padded)
    exact, exact_grads = _loss_and_grads(model, ids, mask, None)

    def error(head) -> tuple[float, float]:
        given_mask = mask if padded or head is None else None
        loss, grads = _loss_and_grads(model, ids, given_mask, head, torch.bfloat16)
        assert all(g.dtype == torch.float32 for g in grads.values())
        relative = [float((grads[n] - g).norm() / g.norm()) for n, g in exact_grads.items()]
        return abs(loss - exact) / exact, sum(relative) / len(relative)

    logits_loss, logits_grads = error(None)
    chunked_loss, chunked_grads = error(output_head(model))
    assert 0 < logits_grads < 0.03 and 0 < chunked_grads < 0.03  # bf16 rounding, not fp32 equality
    assert chunked_grads < 1.5 * logits_grads
    assert chunked_loss < 1e-4 and logits_loss < 1e-4


@pytest.mark.parametrize("method", ["full", "prefix", "prompt"])
def test_full_blocks_without_a_mask_equal_an_all_ones_mask(tok, method):
    model = apply_tuning(_model(tok), method, METHOD_OPTIONS[method], seed=0, tokenizer=tok).eval()
    ids, mask = _batch(model.config.vocab_size, padded=False)
    with_mask, with_mask_grads = _loss_and_grads(model, ids, mask, None)
    without, without_grads = _loss_and_grads(model, ids, None, None)
    assert without == pytest.approx(with_mask, rel=1e-6)
    for name, grad in with_mask_grads.items():
        torch.testing.assert_close(without_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_output_head_only_where_hidden_states_can_stand_in_for_logits(tok):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    gpt2 = _model(tok)
    assert output_head(gpt2) is gpt2.lm_head
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    assert output_head(llama) is llama.lm_head
    # LoRA on the output layer itself: its forward is more than the weight, so the logits way is kept
    lora_head = get_peft_model(_model(tok), LoraConfig(r=2, target_modules=["lm_head"]))
    assert output_head(lora_head) is None


def test_training_with_the_chunked_loss_equals_training_with_logits(tok, tmp_path, monkeypatch):
    """Dropout on: both ways draw the same masks, so the runs match step for step."""
    cfg = TrainConfig(**SMALL, epochs=1, checkpoints_per_epoch=2)
    fast_model = _model(tok)
    fast = train(fast_model, tok, _texts(), cfg, tmp_path / "fast", fingerprint="fp")
    monkeypatch.setattr(piimem.train.loop, "output_head", lambda model: None)
    plain_model = _model(tok)
    plain = train(plain_model, tok, _texts(), cfg, tmp_path / "plain", fingerprint="fp")
    assert fast["steps"] == plain["steps"] == 25
    fast_log, plain_log = (read_train_log(tmp_path / d / "train_log.tsv") for d in ("fast", "plain"))
    assert fast_log["loss"].to_list() == pytest.approx(plain_log["loss"].to_list(), rel=1e-5)
    plain_weights = plain_model.state_dict()
    for name, value in fast_model.state_dict().items():
        torch.testing.assert_close(value, plain_weights[name], rtol=1e-4, atol=1e-5, msg=name)


def test_compiled_blocks_train_like_eager_ones(tok, tmp_path):
    """train.compile (inductor on CPU): the same weights up to float rounding; the compile time reported;
    the model's blocks plain again afterwards. Dropout off: compiled dropout draws its own masks."""
    cfg = TrainConfig(**SMALL, epochs=1, checkpoints_per_epoch=1)
    eager_model, compiled_model = _model(tok, dropout=False), _model(tok, dropout=False)
    eager = train(eager_model, tok, _texts(), cfg, tmp_path / "eager", fingerprint="fp")
    compiled = train(compiled_model, tok, _texts(), dataclasses.replace(cfg, compile=True),
                     tmp_path / "compiled", fingerprint="fp")
    assert eager["compile_seconds"] == 0 and compiled["compile_seconds"] > 0
    assert compiled["config"]["compile"] is True
    eager_weights = eager_model.state_dict()
    for name, value in compiled_model.state_dict().items():
        torch.testing.assert_close(value, eager_weights[name], rtol=1e-3, atol=1e-4, msg=name)
    assert all(block._compiled_call_impl is None for block in compiled_model.transformer.h)
    # the compiling step has a window (a train_log rate) of its own
    rates = read_train_log(tmp_path / "compiled" / "train_log.tsv")["tokens_per_s"].to_list()
    assert rates[0] != rates[1] and rates[1] == rates[2]


def test_a_failed_state_write_resumes_like_a_kill_during_it(tok, tmp_path, monkeypatch):
    """States are written beside training (StateWriter). The second write (step 10) fails, as a kill
    during it would; training has gone on meanwhile and written checkpoint c01 (step 13) before noticing.
    The run folder then holds c01 and the state of step 5, and a new call resumes from it exactly."""
    cfg = TrainConfig(**SMALL, epochs=1, checkpoints_per_epoch=2)  # 25 steps, checkpoints at 13 and 25
    every = StateEvery(minutes=None, steps=5)
    reference_model = _model(tok)
    reference = train(reference_model, tok, _texts(), cfg, tmp_path / "reference", fingerprint="fp",
                      state_every=every)

    real_write, writes = piimem.train.state.write_state, []

    def failing_second_write(run_dir, snapshot):
        writes.append(snapshot.counters["step"])
        if len(writes) == 2:
            raise OSError("disk full (made up)")
        real_write(run_dir, snapshot)

    monkeypatch.setattr(piimem.train.state, "write_state", failing_second_write)
    run_dir = tmp_path / "failed"
    with pytest.raises(RuntimeError, match=r"writing the resumable state to .*state failed: disk full"):
        train(_model(tok), tok, _texts(), cfg, run_dir, fingerprint="fp", state_every=every)
    assert writes == [5, 10]
    assert json.loads((run_dir / "state" / "state.json").read_text())["step"] == 5
    assert (run_dir / "checkpoints" / "c01").is_dir() and not (run_dir / "manifest.json").exists()

    monkeypatch.setattr(piimem.train.state, "write_state", real_write)
    resumed = train(_model(tok), tok, _texts(), cfg, run_dir, fingerprint="fp", state_every=every)
    assert resumed["resumed_at_steps"] == [5]
    assert not (run_dir / "state").exists()
    for checkpoint in reference["checkpoints"]:
        a, b = (load_file(d / checkpoint["path"] / "model.safetensors")
                for d in (tmp_path / "reference", run_dir))
        assert all(torch.equal(a[k], b[k]) for k in a), checkpoint["id"]
    assert [c["train_loss"] for c in resumed["checkpoints"]] == \
        [c["train_loss"] for c in reference["checkpoints"]]
    assert read_train_log(run_dir / "train_log.tsv")["loss"].to_list() == \
        read_train_log(tmp_path / "reference" / "train_log.tsv")["loss"].to_list()


def test_static_cache_generates_the_same_greedy_tokens(tok):
    model = _model(tok).eval()
    prompts = _docs(48, seed=5)
    prompts = [" ".join(p.split()[:n]) for p, n in zip(prompts, [1, 3, 7, 12, 20, 30] * 8)]
    for m in (model, apply_tuning(copy.deepcopy(model), "lora", {}, seed=0)):
        dynamic = generate_token_ids(m, tok, prompts, max_new_tokens=20, batch_size=16, device="cpu")
        static = generate_token_ids(m, tok, prompts, max_new_tokens=20, batch_size=16, device="cpu",
                                    cache="static")
        assert static == dynamic and sum(map(len, static)) > 200
    # prompt tuning keeps PEFT's own dynamic cache: the same tokens either way
    prompt_model = apply_tuning(copy.deepcopy(model), "prompt", {"num_virtual_tokens": 3}, seed=0)
    short = dict(max_new_tokens=8, device="cpu")
    assert generate_token_ids(prompt_model, tok, prompts[:8], cache="static", **short) == \
        generate_token_ids(prompt_model, tok, prompts[:8], **short)
    with pytest.raises(ValueError, match="cache must be 'static' or 'dynamic'"):
        generate_token_ids(model, tok, prompts[:1], cache="paged", device="cpu")
