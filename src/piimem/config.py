"""Checks of the configuration that a JSON schema cannot express, and values derived from it.

The schema (workflow/schemas/config.schema.yaml) has already filled defaults and checked types,
so everything here can index the config directly.
"""

from __future__ import annotations

import math
import re
from pathlib import Path


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


def check_config(config: dict) -> None:
    corpus = config["corpus"]
    if corpus["source"] == "maildir":
        if not corpus["path"]:
            raise ConfigError("corpus.path: required when corpus.source is 'maildir' (the root of a <mailbox>/<folder>/<file> tree)")
        if not Path(corpus["path"]).is_dir():
            raise ConfigError(f"corpus.path: {corpus['path']!r} is not a directory (expected the root of a maildir)")
    fractions = corpus["split"]["fractions"]
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-9):
        raise ConfigError(f"corpus.split.fractions: must sum to 1, got {fractions} (sum {sum(fractions.values()):g})")
    if fractions["train"] == 0:
        raise ConfigError("corpus.split.fractions.train: must be above 0 (the models are fine-tuned on it)")
    if "tiny-gpt2" in config["base_models"]:
        tiny, block = config["tiny_gpt2"], config["train"]["block_size"]
        if fractions["public"] == 0:
            raise ConfigError("corpus.split.fractions.public: must be above 0 when base_models has tiny-gpt2 (it is pre-trained on it)")
        if block > tiny["n_positions"]:
            raise ConfigError(f"train.block_size: {block} exceeds tiny_gpt2.n_positions ({tiny['n_positions']})")
        from piimem.tuning import virtual_tokens

        for method in config["tuning_methods"]:
            extra = virtual_tokens(method, config["tuning"].get(method))
            if block + extra > tiny["n_positions"]:
                raise ConfigError(
                    f"tuning.{method}.num_virtual_tokens: train.block_size ({block}) + {extra} virtual tokens exceed "
                    f"tiny_gpt2.n_positions ({tiny['n_positions']})"
                )
        if tiny["n_embd"] % tiny["n_head"]:
            raise ConfigError(f"tiny_gpt2.n_embd: {tiny['n_embd']} is not a multiple of tiny_gpt2.n_head ({tiny['n_head']})")


def corpus_name(config: dict) -> str:
    corpus = config["corpus"]
    if corpus["name"]:
        return corpus["name"]
    if corpus["source"] == "maildir":
        return Path(corpus["path"]).resolve().name
    return corpus["source"]


def model_slug(name: str) -> str:
    """A file-name-safe form of a model name: "EleutherAI/pythia-160m" -> "EleutherAI--pythia-160m".

    Path separators become "--" (as in the Hugging Face cache), any other character outside
    [A-Za-z0-9._-] becomes "_", and leading dots and dashes are dropped so the slug is never hidden or
    mistaken for an option or a parent directory.
    """
    parts = [part for part in re.split(r"[/\\]+", name.strip()) if part not in ("", ".")]
    slug = "--".join(re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in parts).lstrip(".-")
    if not slug:
        raise ValueError(f"base model name {name!r} gives an empty slug; expected e.g. 'EleutherAI/pythia-160m'")
    return slug


def checkpoint_ids(epochs: int, checkpoints_per_epoch: int) -> list[str]:
    """Ids of the checkpoints a run saves, known before training: c01 .. cNN (wider when N > 99)."""
    total = epochs * checkpoints_per_epoch
    width = max(2, len(str(total)))
    return [f"c{k:0{width}d}" for k in range(1, total + 1)]
