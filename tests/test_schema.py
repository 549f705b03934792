"""The config schema: every key typed and described, no description cut short by YAML.

A one-line description in a YAML flow mapping (`{type: integer, description: A, b.}`) ends at the first
", " (the rest becomes a stray key with a null value) and breaks at ": ": such descriptions are quoted.
"""

from __future__ import annotations

import re

import yaml

from workflow_helpers import ROOT

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# JSON Schema keywords the schema uses; anything else in a schema object is a stray key.
KEYWORDS = {
    "$schema", "$ref", "description", "type", "default", "properties", "additionalProperties", "definitions",
    "required", "items", "enum", "anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems",
    "maxItems", "uniqueItems", "minLength", "minProperties", "pattern",
}


def _keys(node: dict, path: str):
    """(dotted key, its schema) of every property, nested objects, list items and alternatives included."""
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}{name}", sub
        yield from _keys(sub, f"{path}{name}.")
    for where, sub in (("[]", node.get("items")), ("{}", node.get("additionalProperties"))):
        if isinstance(sub, dict):
            yield from _keys(sub, path.rstrip(".") + where + ".")
    for option in node.get("anyOf") or []:
        yield from _keys(option, path)


def _schema_objects(node, path="schema"):
    """Every mapping in the schema document that is itself a schema (not a default value)."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key not in ("default", "enum"):
                yield from _schema_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schema_objects(value, f"{path}[{i}]")


def test_every_key_has_a_type_and_a_whole_description():
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = dict(_keys(schema, ""))
    assert len(keys) > 100 and "exclude[].seed" in keys and "corpus.split.fractions.train" in keys
    untyped = [k for k, sub in keys.items() if not {"type", "$ref", "anyOf"} & set(sub)]
    assert untyped == []
    undescribed = [k for k, sub in keys.items() if not str(sub.get("description") or "").strip()]
    assert undescribed == []
    # A cut description stops mid-sentence; every whole one ends with a full stop.
    cut = {k: sub["description"] for k, sub in keys.items() if not sub["description"].rstrip().endswith(".")}
    assert cut == {}


def test_no_stray_keys_from_unquoted_commas():
    schema = yaml.safe_load(SCHEMA.read_text())
    stray = {f"{path}.{key}": value for path, node in _schema_objects(schema)
             if not path.endswith(("properties", "definitions"))
             for key, value in node.items() if key not in KEYWORDS}
    assert stray == {}


def test_flow_mapping_descriptions_with_commas_or_colons_are_quoted():
    # The text itself, not only the parsed result: a later edit would bring the trap back.
    for number, line in enumerate(SCHEMA.read_text().splitlines(), start=1):
        match = re.search(r"\{.*\bdescription: (.*)\}\s*$", line)
        if match and re.search(r", |: ", match.group(1)):
            assert match.group(1).startswith('"'), f"line {number}: {line.strip()}"
