"""The config schema, workflow/schemas/config.schema.yaml: the one place of every key's default (and of its
shape and range, which Snakemake's `validate` checks). Dataclasses that hold a config section take their
defaults from here, so no default is written twice (tests/test_defaults.py checks every one)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@functools.cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def node(key: str) -> dict:
    """The schema of a dotted config key ("train.lr"), its $ref resolved."""
    here = schema()
    for part in key.split("."):
        try:
            here = here["properties"][part]
        except KeyError:
            raise KeyError(f"config key {key!r} is not in {SCHEMA_PATH.name}") from None
        if "$ref" in here:
            target = schema()["definitions"][here["$ref"].rsplit("/", 1)[-1]]
            here = {**target, **{k: v for k, v in here.items() if k != "$ref"}}
    return here


def default(key: str):
    """The schema's default of a dotted config key; a list default comes as a tuple (dataclasses are frozen)."""
    value = node(key)["default"]
    return tuple(value) if isinstance(value, list) else copy.deepcopy(value)
