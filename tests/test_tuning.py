"""Tuning methods on tiny real models: what trains, what stays frozen, what a checkpoint restores."""

import pytest
import torch

from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.tuning import (
    DEFAULTS,
    LORA_VARIANTS,
    TUNING_METHODS,
    TuningError,
    apply_tuning,
    learning_rate,
    load_checkpoint,
    lora_target_modules,
    trainable_parameters,
    method_options,
    virtual_tokens,
)

SENTENCE = "Please send the signed contract to the legal team before the meeting on Friday."

# Learning rates for a few steps on one sentence: the paper's lr where that moves the loss within a few
# steps (prompt tuning's 0.3), else a larger one (the papers' 1e-5..2e-4 need thousands of steps).
TEST_LR = {"full": 1e-3, "head": 1e-2, "lora": 1e-2, "prefix": 1e-2, "prompt": DEFAULTS["prompt"]["lr"],
           "ptuning": 1e-2}
STEPS = 8

# The six methods of Hou et al.; the LoRA target variants are tested on their own.
METHODS = [m for m in TUNING_METHODS if m not in LORA_VARIANTS]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [f"Note {i}: please send the report on invoice {i * 7} to the team before the meeting on day "
             f"{i % 5}." for i in range(300)]
    return train_tokenizer(texts, vocab_size=500)


@pytest.fixture(scope="module")
def batch(tokenizer):
    return tokenizer(SENTENCE, return_tensors="pt")["input_ids"]


def tiny_gpt2(tokenizer):
    # Same seed every time: two calls give identical weights (one to train, one as the untouched base).
    return init_tiny_gpt2(tokenizer, n_layer=2, n_embd=64, n_head=4, n_positions=256, seed=7)


def eval_loss(model, input_ids) -> float:
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids, labels=input_ids).loss.item()


def train_steps(model, input_ids, lr: float, steps: int = STEPS) -> None:
    """A plain AdamW loop; dropout draws from a forked, seeded generator so every run is the same."""
    optimizer = torch.optim.AdamW(list(trainable_parameters(model).values()), lr=lr, weight_decay=0.0)
    model.train()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(steps):
            loss = model(input_ids=input_ids, labels=input_ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed_names(before: dict, model) -> set[str]:
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    return {name for name, value in before.items() if not torch.equal(value, after[name])}


@pytest.mark.parametrize("method", METHODS)
def test_method_lowers_loss_and_changes_only_intended_parameters(method, tokenizer, batch):
    model = apply_tuning(tiny_gpt2(tokenizer), method, seed=1)
    trainable = set(trainable_parameters(model))
    before = snapshot(model)
    loss_before = eval_loss(model, batch)
    train_steps(model, batch, TEST_LR[method])
    loss_after = eval_loss(model, batch)
    changed = changed_names(before, model)

    print(f"{method}: loss {loss_before:.3f} -> {loss_after:.3f}")
    assert loss_after < loss_before - 0.05, (loss_before, loss_after)
    assert changed and changed <= trainable  # nothing frozen moved
    if method == "full":
        assert trainable == set(before)
        assert {"transformer.wte.weight", "transformer.h.0.attn.c_attn.weight",
                "transformer.h.1.mlp.c_fc.weight"} <= changed
    elif method == "head":
        assert changed == trainable == {"lm_head.weight"}
    elif method == "lora":
        assert all(".lora_A." in n or ".lora_B." in n for n in trainable)
        assert len(trainable) == 2 * 2 * 2  # layers x (c_attn, c_proj) x (A, B)
        assert changed == trainable
    else:  # prompt-based: only the prompt encoder exists to train, every base weight stays
        assert all(n.startswith("prompt_encoder.") for n in trainable)
        assert "prompt_encoder.default.embedding.weight" in trainable
        base_names = {n for n in before if not n.startswith("prompt_encoder.")}
        assert base_names and not (changed & base_names)


def test_head_only_unties_output_layer_and_keeps_input_embeddings(tokenizer, batch, tmp_path):
    model = tiny_gpt2(tokenizer)
    assert model.lm_head.weight is model.transformer.wte.weight  # GPT-2 ties them
    embeddings_before = model.transformer.wte.weight.detach().clone()

    model = apply_tuning(model, "head")
    assert model.config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()
    assert torch.equal(model.lm_head.weight, embeddings_before)  # a copy, same values at the start
    assert not model.transformer.wte.weight.requires_grad
    # transformers re-ties from the config, or from the mapping it cached at init: neither may undo it
    model.tie_weights()
    model.tie_weights(recompute_mapping=False)
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()

    train_steps(model, batch, TEST_LR["head"])
    assert torch.equal(model.transformer.wte.weight, embeddings_before)
    assert not torch.equal(model.lm_head.weight, embeddings_before)

    model.save_pretrained(tmp_path / "c01")
    loaded = load_checkpoint(tiny_gpt2(tokenizer), tmp_path / "c01")
    assert not loaded.training
    assert loaded.lm_head.weight.data_ptr() != loaded.transformer.wte.weight.data_ptr()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert torch.equal(loaded.transformer.wte.weight, embeddings_before)


@pytest.mark.parametrize("method", METHODS)
def test_checkpoint_round_trip_gives_same_logits(method, tokenizer, batch, tmp_path):
    model = apply_tuning(tiny_gpt2(tokenizer), method, seed=3)
    train_steps(model, batch, TEST_LR[method], steps=3)
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=batch).logits
    model.save_pretrained(tmp_path / "c01")

    base = tiny_gpt2(tokenizer).eval()
    with torch.no_grad():
        base_logits = base(input_ids=batch).logits
    loaded = load_checkpoint(base, tmp_path / "c01")
    assert not loaded.training
    with torch.no_grad():
        got = loaded(input_ids=batch).logits
        base_after = base(input_ids=batch).logits
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got[:, -batch.shape[1]:], base_logits)  # the checkpoint is not the base model
    assert torch.equal(base_after, base_logits)  # loading adapted a copy, the base stayed pre-trained


def lora_modules(model) -> list[str]:
    from peft.tuners.lora import LoraLayer

    return [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]


@pytest.mark.parametrize(("targets", "suffixes"), [
    ("attention", {"attn.c_attn", "attn.c_proj"}),
    ("mlp", {"mlp.c_fc", "mlp.c_proj"}),
    ("both", {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}),
])
def test_lora_targets_hit_the_right_gpt2_modules(targets, suffixes, tokenizer):
    model = apply_tuning(tiny_gpt2(tokenizer), "lora", {"targets": targets})
    hit = lora_modules(model)
    assert len(hit) == 2 * len(suffixes)  # two layers
    assert {".".join(name.split(".")[-2:]) for name in hit} == suffixes
    # GPT-2 has c_proj in attention and MLP: "attention" must not touch the MLP's and vice versa
    if targets == "attention":
        assert not any(".mlp." in name for name in hit)
    if targets == "mlp":
        assert not any(".attn." in name for name in hit)


def test_lora_variants_name_their_targets_and_refuse_another(tokenizer):
    mlp = lora_modules(apply_tuning(tiny_gpt2(tokenizer), "lora_mlp"))
    attention = lora_modules(apply_tuning(tiny_gpt2(tokenizer), "lora_attention", {"r": 2}))
    assert mlp and all(".mlp." in name for name in mlp)
    assert attention and all(".attn." in name for name in attention)
    assert len(lora_modules(apply_tuning(tiny_gpt2(tokenizer), "lora_both"))) == len(mlp) + len(attention)
    assert method_options("lora_mlp")["lr"] == method_options("lora")["lr"]
    with pytest.raises(TuningError, match=r"tuning\.lora_mlp\.targets: unknown option"):
        method_options("lora_mlp", {"targets": "attention"})


def tiny_llama(tie: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def tiny_llama_like(kind: str):
    import transformers

    config_class = getattr(transformers, f"{kind}Config")
    model_class = getattr(transformers, f"{kind}ForCausalLM")
    config = config_class(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    return model_class(config)


def tiny_gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4)
    torch.manual_seed(0)
    return GPTNeoXForCausalLM(config)


LLAMA_NAMES = {"attention": {"q_proj", "k_proj", "v_proj", "o_proj"},
               "mlp": {"gate_proj", "up_proj", "down_proj"}}


@pytest.mark.parametrize(("make", "family", "expected"), [
    (tiny_llama, "llama", LLAMA_NAMES),
    (lambda: tiny_llama_like("Mistral"), "mistral", LLAMA_NAMES),
    (lambda: tiny_llama_like("Qwen2"), "qwen2", LLAMA_NAMES),
    (tiny_gpt_neox, "gpt_neox", {"attention": {"query_key_value", "dense"},
                                 "mlp": {"dense_h_to_4h", "dense_4h_to_h"}}),
])
def test_lora_targets_on_other_families(make, family, expected):
    for targets in ("attention", "mlp", "both"):
        names = lora_target_modules(family, targets)
        model = make()
        assert model.config.model_type == family
        model = apply_tuning(model, "lora", {"targets": targets})
        hit = lora_modules(model)
        wanted = expected["attention"] | expected["mlp"] if targets == "both" else expected[targets]
        assert {name.rsplit(".", 1)[-1] for name in hit} == wanted
        assert len(hit) == 2 * len(wanted) == 2 * len(names)
        assert all(n.startswith("base_model.") and ".lora_" in n for n in trainable_parameters(model))


@pytest.mark.parametrize("method", ["prefix", "prompt", "ptuning"])
def test_prompt_methods_run_on_llama_and_gpt_neox(method):
    ids = torch.arange(12).reshape(1, 12)
    for make in (tiny_llama, tiny_gpt_neox):
        model = apply_tuning(make(), method, {"num_virtual_tokens": 4})
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        assert all(p.grad is not None for p in trainable_parameters(model).values())


def test_head_only_unties_a_tied_llama():
    model = tiny_llama(tie=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model = apply_tuning(model, "head")
    assert set(trainable_parameters(model)) == {"lm_head.weight"}
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_seeded_initialisation_leaves_global_rng_alone(tokenizer):
    state = torch.random.get_rng_state()
    a = apply_tuning(tiny_gpt2(tokenizer), "ptuning", seed=5)
    b = apply_tuning(tiny_gpt2(tokenizer), "ptuning", seed=5)
    c = apply_tuning(tiny_gpt2(tokenizer), "ptuning", seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (trainable_parameters(m) for m in (a, b, c))
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    name = "prompt_encoder.default.embedding.weight"
    assert not torch.equal(pa[name], pc[name])


def test_ptuning_encoder_defaults_follow_liu_et_al(tokenizer):
    lstm = apply_tuning(tiny_gpt2(tokenizer), "ptuning")
    encoder = lstm.prompt_encoder["default"]
    assert encoder.embedding.num_embeddings == 9  # template (3, 3, 3)
    assert encoder.lstm_head.bidirectional and encoder.lstm_head.num_layers == 2
    assert encoder.lstm_head.hidden_size == 32  # two directions of d/2 = model width 64
    mlp = apply_tuning(tiny_gpt2(tokenizer), "ptuning", {"encoder": "mlp"}).prompt_encoder["default"]
    assert not hasattr(mlp, "lstm_head") and mlp.mlp_head[0].out_features == 64


def test_prompt_text_init_copies_token_embeddings(tokenizer):
    options = {"num_virtual_tokens": 7, "init": "text", "init_text": "send the report"}
    model = apply_tuning(tiny_gpt2(tokenizer), "prompt", options, tokenizer=tokenizer)
    ids = tokenizer("send the report", add_special_tokens=False)["input_ids"]
    expected_ids = (ids * 7)[:7]
    words = model.get_base_model().transformer.wte.weight
    prompt = model.prompt_encoder["default"].embedding.weight
    assert torch.equal(prompt, words[expected_ids])


def test_prefix_defaults_follow_li_and_liang(tokenizer):
    model = apply_tuning(tiny_gpt2(tokenizer), "prefix")
    encoder = model.prompt_encoder["default"]
    assert encoder.embedding.num_embeddings == 10
    assert encoder.transform[0].out_features == 512
    assert encoder.transform[2].out_features == 2 * 2 * 64  # layers x (key, value) x width


def test_options_and_learning_rates():
    assert method_options("lora") == DEFAULTS["lora"]
    assert method_options("lora", {"r": 16})["r"] == 16
    assert DEFAULTS["lora"]["r"] == 4  # the defaults are not mutated by an override
    assert learning_rate("full", None, 2e-5) == 2e-5
    assert learning_rate("head", {}, 2e-5) == 2e-5
    assert learning_rate("lora", None, 2e-5) == 2e-4
    assert learning_rate("prompt", {"lr": 0.1}, 2e-5) == 0.1
    assert learning_rate("prefix", {"lr": None}, 3e-5) == 3e-5
    assert [virtual_tokens(m) for m in METHODS] == [0, 0, 0, 10, 100, 9]
    assert virtual_tokens("prompt", {"num_virtual_tokens": 20}) == 20


@pytest.mark.parametrize(("method", "extra_logits"), [("prefix", 0), ("prompt", 5), ("ptuning", 5)])
def test_virtual_tokens_shift_positions_and_prompt_logits(method, extra_logits, tokenizer):
    # n_positions 256: 251 real tokens + 5 virtual ones fit, 252 do not (GPT-2's learned positions).
    model = apply_tuning(tiny_gpt2(tokenizer), method, {"num_virtual_tokens": 5}).eval()
    assert virtual_tokens(method, {"num_virtual_tokens": 5}) == 5
    fits = torch.ones(1, 251, dtype=torch.long)
    with torch.no_grad():
        assert model(input_ids=fits).logits.shape[1] == 251 + extra_logits
        with pytest.raises(IndexError):
            model(input_ids=torch.ones(1, 252, dtype=torch.long))


@pytest.mark.parametrize(("method", "options", "message"), [
    ("lora", {"rank": 8}, "tuning.lora.rank"),
    ("full", {"r": 8}, "tuning.full.r"),
    ("lora", {"targets": "ffn"}, "tuning.lora.targets"),
    ("lora", {"r": 0}, "tuning.lora.r"),
    ("lora", {"dropout": 1.5}, "tuning.lora.dropout"),
    ("prefix", {"projection": "yes"}, "tuning.prefix.projection"),
    ("prompt", {"num_virtual_tokens": 2.5}, "tuning.prompt.num_virtual_tokens"),
    ("prompt", {"init": "text"}, "tuning.prompt.init_text"),
    ("ptuning", {"encoder": "gru"}, "tuning.ptuning.encoder"),
    ("head", {"lr": -1}, "tuning.head.lr"),
])
def test_bad_options_name_their_key(method, options, message):
    with pytest.raises(TuningError, match=message.replace(".", r"\.")):
        method_options(method, options)


def test_unknown_method_family_and_checkpoint_are_clear_errors(tokenizer, tmp_path):
    with pytest.raises(TuningError, match="'adapter'.*expected one of"):
        apply_tuning(tiny_gpt2(tokenizer), "adapter")
    with pytest.raises(TuningError, match="'bloom'"):
        lora_target_modules("bloom", "attention")
    with pytest.raises(TuningError, match="tokenizer"):
        apply_tuning(tiny_gpt2(tokenizer), "prompt", {"init": "text", "init_text": "hello"})
    with pytest.raises(TuningError, match="not a checkpoint"):
        load_checkpoint(tiny_gpt2(tokenizer), tmp_path)
