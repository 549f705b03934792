"""DP-SGD (piimem.train.dp): calibration against Opacus's accountant, per-example clipping, Poisson sampling,
the no-noise limit against plain training, resume, and what the tuning methods support (tiny GPT-2, CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from made_up_text import made_up_docs
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from tiny_training import SMALL, tiny_model, training_docs

from piimem.config import ConfigError, check_config
from piimem.models import train_tokenizer
from piimem.plan import defense_variants, dp_options, variant_options
from piimem.train import TrainConfig, plan_run, train
from piimem.train.dp import DPConfig, PrivateStep, epsilon_spent, plan_dp, poisson_sample
from piimem.tuning import apply_tuning, method_options


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(training_docs(200, 1), 300)


@pytest.fixture(scope="module")
def texts():
    docs = training_docs(24, 2)
    return pl.DataFrame({"epoch": [0] * len(docs), "doc_id": list(range(len(docs))), "text": docs},
                        schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_noise_multiplier_and_epsilon_are_opacus_accountants(accountant):
    plan = plan_dp(DPConfig(epsilon=8, accountant=accountant), examples=250, expected_batch=8, steps=96)
    assert plan.sample_rate == pytest.approx(8 / 250) and plan.delta == pytest.approx(1 / 250)
    assert plan.noise_multiplier == get_noise_multiplier(target_epsilon=8, target_delta=1 / 250, sample_rate=8 / 250,
                                                         steps=96, accountant=accountant, epsilon_tolerance=0.01)
    reference = create_accountant(mechanism=accountant)
    for _ in range(96):
        reference.step(noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate)
    spent = epsilon_spent(plan, 96)
    assert spent == pytest.approx(reference.get_epsilon(delta=plan.delta), rel=1e-6)
    assert 7.98 <= spent <= 8.0  # the binary search stops just below the target
    assert epsilon_spent(plan, 32) < epsilon_spent(plan, 64) < spent and epsilon_spent(plan, 0) == 0
    given = plan_dp(DPConfig(epsilon=None, noise_multiplier=0.0, delta=1e-5), examples=250, expected_batch=8, steps=9)
    assert given.noise_multiplier == 0 and given.epsilon_target is None and epsilon_spent(given, 9) is None


@pytest.mark.parametrize(("values", "message"), [
    ({"epsilon": 0}, "dp.epsilon: expected a number > 0"),
    ({"epsilon": None}, r"set dp.epsilon \(the target\) or dp.noise_multiplier"),
    ({"delta": 1.5}, r"dp.delta: expected a number in \(0, 1\)"),
    ({"max_grad_norm": 0}, "dp.max_grad_norm: expected a number > 0"),
    ({"accountant": "gdp2"}, r"dp.accountant: expected one of \('prv', 'rdp'\)"),
])
def test_dp_settings_errors_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        DPConfig(**values)


def test_poisson_sampling_is_seeded_per_step_and_has_the_planned_rate(tok, texts):
    draws = [poisson_sample(400, 0.05, seed=42, step=s) for s in range(1, 201)]
    assert np.array_equal(draws[3], poisson_sample(400, 0.05, seed=42, step=4))
    assert not np.array_equal(draws[3], poisson_sample(400, 0.05, seed=43, step=4))
    sizes = np.array([len(d) for d in draws])
    assert abs(sizes.mean() - 20) < 1.0 and sizes.std() > 2  # Binomial(400, 0.05): sd 4.4, not a fixed batch
    cfg = TrainConfig(**SMALL, epochs=2, checkpoints_per_epoch=1)
    plan = plan_run(tok, texts, cfg, poisson=True)
    fixed = plan_run(tok, texts, cfg)
    assert plan.steps_per_epoch == fixed.steps_per_epoch and plan.sample_rate(0) == pytest.approx(
        4 / plan.epochs[0].n_examples)
    consumed = plan.consumed()
    # A document is consumed at the first step that samples one of its blocks.
    for doc_id, first in consumed.head(5).iter_rows():
        steps = [s for s in range(1, plan.total_steps + 1) if any(
            doc_id in plan.epochs[plan._locate(s)[0]].example_doc_ids(int(i)).tolist() for i in plan.step_indices(s))]
        assert steps[0] == first


def test_clipped_per_example_gradients_never_exceed_max_grad_norm(tok):
    model = tiny_model(tok)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    plan = plan_dp(DPConfig(epsilon=None, noise_multiplier=0.0, max_grad_norm=0.5), examples=16, expected_batch=4,
                   steps=1)
    private = PrivateStep(model, optimizer, plan, torch.device("cpu"))
    try:
        ids = torch.randint(0, len(tok), (4, 16), generator=torch.Generator().manual_seed(0))
        for i in range(4):  # one example at a time: its clipped gradient is the whole summed gradient
            private.zero_grad()
            logits = model(input_ids=ids[i:i + 1], position_ids=private.position_ids(ids[i:i + 1])).logits
            torch.nn.functional.cross_entropy(logits[0, :-1], ids[i, 1:]).backward()
            raw = private.per_example_norms().item()
            private.accumulate(1)
            clipped = torch.sqrt(sum((p.summed_grad ** 2).sum() for _, p in private.named)).item()
            assert raw > 0.5 and clipped <= 0.5 * (1 + 1e-5) and clipped == pytest.approx(0.5, rel=1e-4)
    finally:
        private.close()


@pytest.mark.parametrize("method", ["full", "lora"])
def test_per_example_gradients_equal_one_example_backward_passes(tok, method):
    """Opacus's per-example gradients of GPT-2 (Conv1D through functorch, the tied embedding and output
    layer summed, positions one row per example) equal the gradients of each example alone."""
    model = tiny_model(tok)
    if method != "full":
        model = apply_tuning(model, method, method_options(method), seed=1, tokenizer=tok)
    model.train()
    for module in model.modules():  # no dropout: the two ways must see the same network
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ids = torch.randint(0, len(tok), (3, 12), generator=torch.Generator().manual_seed(1))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    alone = []
    for i in range(3):
        model.zero_grad()
        logits = model(input_ids=ids[i:i + 1]).logits
        torch.nn.functional.cross_entropy(logits[0, :-1], ids[i, 1:]).backward()
        alone.append([p.grad.clone() for _, p in named])
    model.zero_grad()
    plan = plan_dp(DPConfig(epsilon=None, noise_multiplier=0.0), examples=3, expected_batch=3, steps=1)
    private = PrivateStep(model, torch.optim.SGD(model.parameters(), lr=0.1), plan, torch.device("cpu"))
    try:
        logits = model(input_ids=ids, position_ids=private.position_ids(ids)).logits
        losses = torch.stack([torch.nn.functional.cross_entropy(logits[i, :-1], ids[i, 1:]) for i in range(3)])
        losses.sum().backward()
        private.check_per_example(3)
        for j, (name, p) in enumerate(named):
            for i in range(3):
                torch.testing.assert_close(p.grad_sample[i], alone[i][j], rtol=1e-4, atol=1e-6, msg=name)
    finally:
        private.close()


def _equal_length_texts(tok, n: int, block: int) -> pl.DataFrame:
    """Messages of at least `block` tokens, so packing `messages` makes every example exactly `block` long."""
    docs = [d for d in made_up_docs(4 * n, 5, letters="abcdefghij", vocabulary=80, words=(30, 50))
            if len(tok(d)["input_ids"]) >= block][:n]
    assert len(docs) == n
    return pl.DataFrame({"epoch": [0] * n, "doc_id": list(range(n)), "text": docs},
                        schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})


def test_without_noise_and_clipping_dp_sgd_is_plain_training(tok, tmp_path):
    """Sampling rate 1 (a batch as large as the data), noise 0 and a clipping norm no gradient reaches:
    DP-SGD's steps are plain training's, loss for loss and weight for weight (two micro-batches a step)."""
    texts = _equal_length_texts(tok, 6, 24)
    cfg = TrainConfig(**{**SMALL, "block_size": 24, "batch_size": 3, "max_grad_norm": 0.0}, grad_accum=2,
                      packing="messages", epochs=3, checkpoints_per_epoch=1)
    plain, private = tiny_model(tok), tiny_model(tok)
    plain_manifest = train(plain, tok, texts, cfg, tmp_path / "plain", fingerprint="plain")
    dp_manifest = train(private, tok, texts, cfg, tmp_path / "dp", fingerprint="dp",
                        dp={"epsilon": None, "noise_multiplier": 0.0, "max_grad_norm": 1e6})
    assert dp_manifest["dp"]["sample_rate"] == 1.0 and dp_manifest["steps"] == plain_manifest["steps"] == 3
    assert [c["train_loss"] for c in dp_manifest["checkpoints"]] == pytest.approx(
        [c["train_loss"] for c in plain_manifest["checkpoints"]], rel=1e-5)
    assert [c["dp_epsilon"] for c in dp_manifest["checkpoints"]] == [None] * 3
    for (name, a), (_, b) in zip(plain.named_parameters(), private.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_a_dp_run_spends_its_epsilon_and_resumes_to_the_same_losses(tok, texts, tmp_path):
    cfg = TrainConfig(**SMALL, epochs=2, checkpoints_per_epoch=2)
    dp = {"epsilon": 4.0, "max_grad_norm": 1.0, "accountant": "prv"}
    whole = train(tiny_model(tok), tok, texts, cfg, tmp_path / "whole", fingerprint="f", dp=dp)
    plan = whole["dp"]
    assert plan["epsilon_target"] == 4.0 and plan["noise_multiplier"] > 0.5
    assert plan["examples"] == whole["examples_per_epoch"][0] and plan["delta"] == pytest.approx(1 / plan["examples"])
    spent = [c["dp_epsilon"] for c in whole["checkpoints"]]
    assert spent == sorted(spent) and 3.9 <= spent[-1] <= 4.0
    model = tiny_model(tok)
    stopped = train(model, tok, texts, cfg, tmp_path / "resumed", fingerprint="f", dp=dp, stop_after_step=5,
                    state_every={"steps": 1})
    assert stopped["complete"] is False
    resumed = train(tiny_model(tok), tok, texts, cfg, tmp_path / "resumed", fingerprint="f", dp=dp)
    assert resumed["resumed_at_steps"] == [5]
    for key in ("train_loss", "dp_epsilon", "step"):
        assert [c[key] for c in resumed["checkpoints"]] == [c[key] for c in whole["checkpoints"]]
    log = json.loads((tmp_path / "whole" / "manifest.json").read_text())
    assert log["dp"] == plan


def test_lora_adapters_learn_under_dp_and_prompt_tuning_is_refused(tok, texts, tmp_path):
    cfg = TrainConfig(**SMALL, epochs=1, checkpoints_per_epoch=1)
    model = apply_tuning(tiny_model(tok), "lora", method_options("lora", {"lr": 1e-2}), seed=1, tokenizer=tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    train(model, tok, texts, cfg, tmp_path / "lora", fingerprint="l", dp={"epsilon": 8.0})
    moved = max((p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters() if n in before)
    assert moved > 1e-4  # the LoRA weights Opacus clipped and noised are the ones the model trains
    prompt = apply_tuning(tiny_model(tok), "prompt", method_options("prompt", {"num_virtual_tokens": 4}), seed=1,
                          tokenizer=tok)
    with pytest.raises(ValueError, match=r"dp: parameter prompt_encoder.default.embedding.weight got 1 gradients "
                                         r"for a micro-batch of \d+ examples"):
        train(prompt, tok, texts, cfg, tmp_path / "prompt", fingerprint="p", dp={"epsilon": 8.0})


def test_dp_refuses_settings_it_cannot_account_for(tok, texts, tmp_path):
    with pytest.raises(ValueError, match="train.compile: not with DP-SGD"):
        train(tiny_model(tok), tok, texts, TrainConfig(**SMALL, compile=True), tmp_path / "c", fingerprint="c",
              dp={"epsilon": 8.0})
    redrawn = pl.concat([texts.with_columns(pl.lit(e, dtype=pl.Int64).alias("epoch")) for e in range(2)])
    redrawn = redrawn.with_columns(pl.when(pl.col("epoch") == 1).then(pl.col("text") + " more words here")
                                   .otherwise(pl.col("text")).alias("text"))
    with pytest.raises(ValueError, match="dp: the epochs have .* examples; DP-SGD's accounting needs one"):
        train(tiny_model(tok), tok, redrawn, TrainConfig(**SMALL, epochs=2), tmp_path / "r", fingerprint="r",
              dp={"epsilon": 8.0})
    assert math.isfinite(plan_dp(DPConfig(), examples=10, expected_batch=20, steps=3).noise_multiplier)


def _validated(**config) -> dict:
    """A config as the schema fills it."""
    from snakemake.utils import validate
    from workflow_helpers import ROOT

    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def test_dp_variants_name_their_epsilon_and_sweeps_and_read_the_dp_block():
    config = _validated(defenses=["none", "dp"], dp={"epsilon": [1, 8], "lr": [1e-3, 1e-2], "batch_size": 64})
    variants = defense_variants(config)
    assert list(variants) == ["none", "dp_e1_lr0.001", "dp_e1_lr0.01", "dp_e8_lr0.001", "dp_e8_lr0.01"]
    assert dp_options(config, "dp_e8_lr0.01") == {"delta": None, "max_grad_norm": 1.0, "accountant": "prv",
                                                 "epsilon": 8.0, "batch_size": 64, "lr": 0.01}
    assert dp_options(config, "none") is None
    single = _validated(defenses=["none", "dp"])
    assert list(defense_variants(single)) == ["none", "dp_e8"]  # a single ε is named too
    assert dp_options(single, "dp_e8")["batch_size"] is None and variant_options(single, "dp_e8") == {}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"tuning_methods": ["full", "prompt"]}, r"the dp defense cannot train tuning method 'prompt' .*exclude: "
                                             r"\[\{defense: dp, tuning: prompt\}\]"),
    ({"train": {"gpus": 2}}, "train.gpus: 2 with the dp defense"),
    ({"train": {"compile": True}}, "train.compile: not with the dp defense"),
    ({"train": {"precision": "fp16"}}, "train.precision: fp16 is not supported with the dp defense"),
])
def test_dp_settings_it_cannot_train_stop_the_config(overrides, message):
    config = _validated(**{"defenses": ["none", "dp"], "tuning_methods": ["full"], **overrides})
    with pytest.raises(ConfigError, match=message):
        check_config(config)
    ok = _validated(defenses=["none", "dp"], tuning_methods=["full", "prompt"],
                    exclude=[{"defense": "dp", "tuning": "prompt"}])
    check_config(ok)
