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


def _scalar_branches(spec: dict) -> list[dict]:
    """The schemas a single value may take: a sweepable key's non-list branches, each $ref resolved."""
    branches = spec.get("anyOf", [spec])
    resolved = [schema()["definitions"][b["$ref"].rsplit("/", 1)[-1]] if "$ref" in b else b for b in branches]
    return [b for b in resolved if b.get("type") != "array" or "anyOf" not in spec]


def _bounds(spec: dict) -> str:
    low = (f">= {spec['minimum']}", "[", spec["minimum"]) if "minimum" in spec else \
        (f"> {spec['exclusiveMinimum']}", "(", spec["exclusiveMinimum"]) if "exclusiveMinimum" in spec else None
    high = (f"<= {spec['maximum']}", "]", spec["maximum"]) if "maximum" in spec else \
        (f"< {spec['exclusiveMaximum']}", ")", spec["exclusiveMaximum"]) if "exclusiveMaximum" in spec else None
    if low and high:
        return f" in {low[1]}{low[2]}, {high[2]}{high[1]}"
    return f" {(low or high)[0]}" if low or high else ""


def expected(spec: dict) -> str:
    """What a key's schema asks of one value, in words: "a number in (0, 1]", "one of ('prv', 'rdp')"."""
    words, nullable = [], False
    for branch in _scalar_branches(spec):
        types = branch.get("type", [])
        types = [types] if isinstance(types, str) else list(types)
        nullable |= "null" in types
        kind = next((t for t in types if t != "null"), None)
        if "enum" in branch:
            words.append(f"one of {tuple(branch['enum'])}")
        elif kind == "boolean":
            words.append("true or false")
        elif kind in ("integer", "number"):
            words.append(("an integer" if kind == "integer" else "a number") + _bounds(branch))
        elif kind == "string" and "pattern" in branch:
            words.append(f"a string matching {branch['pattern']}")
        elif kind is not None:
            words.append({"array": "a list", "object": "a mapping"}.get(kind, f"a {kind}")
                         + (f" of {expected(branch['items'])}" if kind == "array" and "items" in branch else ""))
    return " or ".join(words + ["null"] * nullable)


def check(section: str, values: dict) -> None:
    """Check each value of a config section against its key's schema, as Snakemake's `validate` does for a
    config file: the dataclasses that library code builds without a config file check through this, so
    every shape and range is written once, in the schema. ValueError names the key and what it expects."""
    import jsonschema

    definitions = {"definitions": schema()["definitions"]}  # what a nested $ref points to
    for key, value in values.items():
        spec = node(f"{section}.{key}")
        if not any(jsonschema.Draft202012Validator({**branch, **definitions}).is_valid(value)
                   for branch in _scalar_branches(spec)):
            raise ValueError(f"{section}.{key}: expected {expected(spec)}, got {value!r}")
