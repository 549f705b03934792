"""Checks of the configuration that a JSON schema cannot express, and values derived from it.

The schema (workflow/schemas/config.schema.yaml) has already filled defaults and checked types,
so everything here can index the config directly.
"""

from __future__ import annotations

import math
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


def corpus_name(config: dict) -> str:
    corpus = config["corpus"]
    if corpus["name"]:
        return corpus["name"]
    if corpus["source"] == "maildir":
        return Path(corpus["path"]).resolve().name
    return corpus["source"]
