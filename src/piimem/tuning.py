"""Tuning methods: which parameters of a base model a fine-tuning run may change.

Parameter-based methods train weights of the model itself: `full` (all of them), `head` (the output
layer only) and `lora` (low-rank updates of attention and/or MLP projections). Prompt-based methods
leave every base weight frozen and learn extra inputs: `prefix` (key/value vectors prepended in every
layer), `prompt` (embeddings prepended to the input) and `ptuning` (prepended embeddings produced by a
small trained encoder). Hou et al. (arXiv 2507.00258) compare exactly these six for memorisation.

`apply_tuning` returns the model to train with only the intended parameters requiring gradients; the
trainer optimises those and calls `model.save_pretrained(dir)`. `load_checkpoint` is the inverse for
evaluation. The PEFT methods use the `peft` library; `full` and `head` stay plain transformers models.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from pathlib import Path

from piimem.checks import is_int, is_number

log = logging.getLogger("piimem")

LORA_TARGETS = ("attention", "mlp", "both")
# LoRA with its target set in the method's name, so one config can compare target sets (Hou et al.).
LORA_VARIANTS = {f"lora_{targets}": targets for targets in LORA_TARGETS}
TUNING_METHODS = ("full", "head", "lora", *LORA_VARIANTS, "prefix", "prompt", "ptuning")
# Hou et al.'s two kinds: methods that train weights of the model and methods that learn extra inputs.
PROMPT_BASED = ("prefix", "prompt", "ptuning")
PARAMETER_BASED = tuple(m for m in TUNING_METHODS if m not in PROMPT_BASED)
PROMPT_INITS = ("random", "text")
PTUNING_ENCODERS = ("mlp", "lstm")

# Defaults per method, taken from each method's original paper. `lr` is the learning rate the method's
# run uses; None means "the train.lr of the config" (full and head fine-tuning share the base recipe).
DEFAULTS: dict[str, dict] = {
    "full": {"lr": None},
    "head": {"lr": None},
    # LoRA, Hu et al. 2021 (arXiv 2106.09685), their GPT-2 setting (E2E/WebNLG/DART, Table 11 and the
    # authors' examples/NLG): rank 4, alpha 32, LoRA dropout 0.1, AdamW lr 2e-4, attention weights adapted.
    "lora": {"r": 4, "alpha": 32, "dropout": 0.1, "targets": "attention", "lr": 2e-4},
    # Prefix-tuning, Li & Liang 2021 (arXiv 2101.00190): default prefix length 10 with GPT-2, the prefix
    # reparametrised through an MLP whose hidden width is 512 for table-to-text, AdamW lr 5e-5.
    "prefix": {"num_virtual_tokens": 10, "projection": True, "encoder_hidden_size": 512, "lr": 5e-5},
    # Prompt tuning, Lester et al. 2021 (arXiv 2104.08691): prompt length 100, constant lr 0.3 (with
    # Adafactor there, AdamW here). The paper's best initialisation, class labels, needs a classification
    # task; a language model has none, so the default is random (PEFT's: standard normal), and "text"
    # initialises from the input embeddings of `init_text`'s tokens.
    "prompt": {"num_virtual_tokens": 100, "init": "random", "init_text": None, "lr": 0.3},
    # P-tuning, Liu et al. 2021 (arXiv 2103.10385, "GPT Understands, Too"): prompt encoder = 2-layer
    # bidirectional LSTM + 2-layer ReLU MLP, LAMA template (3, 3, 3) = 9 prompt tokens, Adam lr 1e-5.
    # encoder_hidden_size None: as in the authors' code, the LSTM's two directions together are as wide
    # as the model (d/2 each), and the MLP encoder is d wide.
    "ptuning": {"num_virtual_tokens": 9, "encoder": "lstm", "encoder_hidden_size": None, "lr": 1e-5},
}
DEFAULTS.update({name: {k: v for k, v in DEFAULTS["lora"].items() if k != "targets"} for name in LORA_VARIANTS})

# LoRA target module names per model family (config.model_type), as suffixes of full module paths:
# PEFT matches a target when a module's dotted name equals it or ends with "." + it. GPT-2 has a
# `c_proj` in both attention and MLP, so its names keep the parent ("attn.c_proj" vs "mlp.c_proj").
_LLAMA_LIKE = {
    "attention": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
    "mlp": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
}
LORA_MODULES: dict[str, dict[str, list[str]]] = {
    "gpt2": {"attention": ["attn.c_attn", "attn.c_proj"], "mlp": ["mlp.c_fc", "mlp.c_proj"]},
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "gpt_neox": {
        "attention": ["attention.query_key_value", "attention.dense"],
        "mlp": ["mlp.dense_h_to_4h", "mlp.dense_4h_to_h"],
    },
}


class TuningError(ValueError):
    """A tuning method, option or checkpoint is wrong; the message names the key or path."""


def method_options(method: str, options: dict | None = None) -> dict:
    """The method's DEFAULTS overlaid with `options` (the config block `tuning.<method>`), checked."""
    _check_method(method)
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS[method]))
    if unknown:
        raise TuningError(
            f"tuning.{method}.{unknown[0]}: unknown option (expected one of {sorted(DEFAULTS[method])})"
        )
    merged = {**DEFAULTS[method], **options}
    for key, value in merged.items():
        _check_option(method, key, value)
    if method == "prompt" and merged["init"] == "text" and not merged["init_text"]:
        raise TuningError("tuning.prompt.init_text: required when tuning.prompt.init is 'text'")
    return merged


def learning_rate(method: str, options: dict | None, train_lr: float) -> float:
    """The learning rate of a run: the method's `lr` option, or `train_lr` where that is None."""
    lr = method_options(method, options)["lr"]
    return float(train_lr) if lr is None else float(lr)


def virtual_tokens(method: str, options: dict | None = None) -> int:
    """Positions the method puts before the real tokens (0 for full, head and LoRA).

    Prompt and P-tuning prepend input embeddings, prefix tuning prepends keys/values (the model then
    numbers the real tokens from there on): either way a model with learned absolute positions (GPT-2,
    n_positions) sees sequences this much longer, so block_size + this must fit into n_positions.
    """
    return method_options(method, options).get("num_virtual_tokens", 0)


def lora_target_modules(family: str, targets: str) -> list[str]:
    """LoRA target module names for a model family: attention projections, MLP projections, or both."""
    if targets not in LORA_TARGETS:
        raise TuningError(f"tuning.lora.targets: expected one of {LORA_TARGETS}, got {targets!r}")
    if family not in LORA_MODULES:
        raise TuningError(
            f"LoRA target modules for model family {family!r} are not known (known: {sorted(LORA_MODULES)}); "
            "add its attention/MLP projection names to piimem.tuning.LORA_MODULES"
        )
    names = LORA_MODULES[family]
    if targets == "both":
        return [*names["attention"], *names["mlp"]]
    return list(names[targets])


def apply_tuning(model, method: str, options: dict | None = None, *, seed: int = 42, tokenizer=None):
    """Prepare `model` for fine-tuning with `method`; returns the model to train.

    full/head return `model` itself (modified in place: requires_grad flags, and for head an untied
    output layer); the PEFT methods return a `peft.PeftModel` wrapping it, with every base weight frozen.
    New parameters (LoRA matrices, prompts, prompt encoders) are initialised from `seed`, and the global
    torch RNG is left as it was. `tokenizer` is needed only for prompt tuning with init "text".
    """
    opts = method_options(method, options)
    if method == "full":
        return model.requires_grad_(True)
    if method == "head":
        return _head_only(model)

    import torch
    from peft import get_peft_model

    config = _peft_config(model, method, opts)
    # fork_rng restores the global generators afterwards: seeding here leaves no trace outside.
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices), warnings.catch_warnings():
        torch.manual_seed(seed)
        # peft 0.21 calls transformers' deprecated `is_gradient_checkpointing`; the FutureWarning is theirs.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    if method == "prompt" and opts["init"] == "text":
        _init_prompt_from_text(peft_model, opts["init_text"], tokenizer)
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info("tuning %s: %d of %d parameters trainable (%.3f %%)", method, trainable, total,
             100.0 * trainable / max(total, 1))
    return peft_model


def trainable_parameters(model) -> dict:
    """{name: parameter} of every parameter that requires a gradient (the live tensors, not copies)."""
    return {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}


def load_checkpoint(base_model, checkpoint_dir, *, inplace: bool = False):
    """The model saved by `model.save_pretrained(checkpoint_dir)` during training, in eval mode.

    A PEFT adapter directory (adapter_config.json) is loaded onto `base_model`: LoRA injects its layers
    into the base model's modules, so unless `inplace=True` a deep copy is adapted and `base_model` stays
    the pre-trained model (it is also the reference model of membership inference). A full model
    directory (full or head-only fine-tuning: config.json + weights) is loaded by itself, with
    `base_model`'s dtype, attention implementation and device when one is given.
    """
    import torch
    from transformers import AutoModelForCausalLM

    checkpoint_dir = Path(checkpoint_dir)
    if (checkpoint_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        if base_model is None:
            raise TuningError(f"{checkpoint_dir}: a PEFT adapter checkpoint needs its base model (got None)")
        if isinstance(base_model, PeftModel):
            raise TuningError(f"{checkpoint_dir}: base_model is already a PeftModel; pass the plain base")
        base = base_model if inplace else copy.deepcopy(base_model)
        # is_trainable=False: inference mode, adapter frozen; prompt encoders are replaced by the prompts
        # they produced at save time (PEFT stores those), so the logits equal the trained model's.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(base, checkpoint_dir, is_trainable=False)
    elif (checkpoint_dir / "config.json").is_file():
        kwargs = {"dtype": torch.float32, "attn_implementation": "sdpa"}
        if base_model is not None:
            kwargs = {"dtype": next(base_model.parameters()).dtype,
                      "attn_implementation": base_model.config._attn_implementation}
        model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, **kwargs)
        if base_model is not None:
            model.to(next(base_model.parameters()).device)
        model.requires_grad_(False)
    else:
        raise TuningError(
            f"{checkpoint_dir}: not a checkpoint (expected adapter_config.json for a PEFT adapter or "
            "config.json for a full model)"
        )
    model.eval()
    return model


def _check_method(method: str) -> None:
    if method not in TUNING_METHODS:
        raise TuningError(f"tuning method {method!r} is not known (expected one of {TUNING_METHODS})")


def _check_option(method: str, key: str, value) -> None:
    where = f"tuning.{method}.{key}"
    if key == "lr":
        if value is not None and not (is_number(value) and value > 0):
            raise TuningError(f"{where}: expected a positive number or null (= train.lr), got {value!r}")
    elif key in ("r", "num_virtual_tokens") or (key == "encoder_hidden_size" and value is not None):
        if not (is_int(value) and value >= 1):
            raise TuningError(f"{where}: expected a positive integer, got {value!r}")
    elif key == "alpha":
        if not (is_number(value) and value > 0):
            raise TuningError(f"{where}: expected a positive number, got {value!r}")
    elif key == "dropout":
        if not (is_number(value) and 0 <= value < 1):
            raise TuningError(f"{where}: expected a probability in [0, 1), got {value!r}")
    elif key == "targets":
        if value not in LORA_TARGETS:
            raise TuningError(f"{where}: expected one of {LORA_TARGETS}, got {value!r}")
    elif key == "projection":
        if not isinstance(value, bool):
            raise TuningError(f"{where}: expected true or false, got {value!r}")
    elif key == "init":
        if value not in PROMPT_INITS:
            raise TuningError(f"{where}: expected one of {PROMPT_INITS}, got {value!r}")
    elif key == "init_text":
        if value is not None and not isinstance(value, str):
            raise TuningError(f"{where}: expected a string or null, got {value!r}")
    elif key == "encoder":
        if value not in PTUNING_ENCODERS:
            raise TuningError(f"{where}: expected one of {PTUNING_ENCODERS}, got {value!r}")


def _head_only(model):
    """Freeze everything but the output layer; untie it from the input embedding first if shared.

    GPT-2 (and SmolLM2) use one matrix as input embedding and output layer. Training the shared matrix
    would change the input embeddings too, so the output layer gets its own copy of the weights and
    the config says the two are no longer tied, which save_pretrained/from_pretrained then respect.
    """
    import torch

    head = model.get_output_embeddings()
    if head is None:
        raise TuningError(f"head-only tuning: {type(model).__name__} has no output layer "
                          "(get_output_embeddings() is None)")
    embeddings = model.get_input_embeddings()
    if embeddings is not None and head.weight.data_ptr() == embeddings.weight.data_ptr():
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
        log.info("tuning head: output layer untied from the input embedding")
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):  # composite configs keep the flag on the text config
        model.config.get_text_config().tie_word_embeddings = False
    # transformers 5 caches the tie mapping at init, and tie_weights(recompute_mapping=False) re-ties from
    # that cache; recompute it from the config, which now says untied, so nothing ties the copy back.
    if hasattr(model, "all_tied_weights_keys"):
        model.all_tied_weights_keys = model.get_expanded_tied_weights_keys(all_submodels=True)
    model.requires_grad_(False)
    head.requires_grad_(True)
    return model


def _model_width(model) -> int:
    return model.get_input_embeddings().embedding_dim


def _peft_config(model, method: str, opts: dict):
    from peft import LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType

    from piimem.models import model_family

    if method == "lora" or method in LORA_VARIANTS:
        family = model_family(model)
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=opts["r"], lora_alpha=opts["alpha"], lora_dropout=opts["dropout"],
            target_modules=lora_target_modules(family, LORA_VARIANTS.get(method) or opts["targets"]),
            # GPT-2's projections are Conv1D layers storing weights as (in, out).
            fan_in_fan_out=family == "gpt2",
        )
    if method == "prefix":
        return PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=opts["num_virtual_tokens"],
            prefix_projection=opts["projection"], encoder_hidden_size=opts["encoder_hidden_size"],
        )
    if method == "prompt":
        # "text" is initialised here after construction (see _init_prompt_from_text): PEFT's own TEXT
        # init reloads the tokenizer from a path, which an in-memory tokenizer does not have.
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=opts["num_virtual_tokens"],
                                  prompt_tuning_init="RANDOM")
    if method == "ptuning":
        hidden = opts["encoder_hidden_size"]
        if hidden is None:
            width = _model_width(model)
            hidden = max(width // 2, 1) if opts["encoder"] == "lstm" else width
        return PromptEncoderConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=opts["num_virtual_tokens"],
            encoder_reparameterization_type=opts["encoder"].upper(), encoder_hidden_size=hidden,
        )
    raise AssertionError(method)


def _init_prompt_from_text(peft_model, init_text: str, tokenizer) -> None:
    """Set the soft prompt to the input embeddings of `init_text`'s tokens, repeated to the prompt length."""
    import torch

    if tokenizer is None:
        raise TuningError("tuning.prompt.init: 'text' needs the tokenizer (apply_tuning(..., tokenizer=...))")
    token_ids = tokenizer(init_text, add_special_tokens=False)["input_ids"]
    if not token_ids:
        raise TuningError("tuning.prompt.init_text: tokenizes to no tokens")
    prompt = peft_model.prompt_encoder[peft_model.active_adapter].embedding
    n = prompt.num_embeddings
    token_ids = (token_ids * math.ceil(n / len(token_ids)))[:n]
    words = peft_model.get_base_model().get_input_embeddings()
    with torch.no_grad():
        ids = torch.tensor(token_ids, dtype=torch.long, device=words.weight.device)
        prompt.weight.copy_(words(ids).to(prompt.weight.dtype))

