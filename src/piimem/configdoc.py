"""docs/configuration.md, written from the config schema: every key with its default, the embedded default's
value where config/config.yaml changes it, and the schema's description. The schema is the one place that
holds them; `tests/test_configdoc.py` fails when the committed file is not what this writes.

    python -m piimem.configdoc            # rewrites docs/configuration.md
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
EMBEDDED = ROOT / "config" / "config.yaml"
TARGET = ROOT / "docs" / "configuration.md"

HEADER = """# Configuration

Every key of the config, from `workflow/schemas/config.schema.yaml` (its default, and what it means) and
`config/config.yaml` (the embedded default's value, where it sets one). A config file given with
`--configfile` is merged over `config/config.yaml`, whose values hold for the keys it leaves out; a key in
neither takes the schema's default. Set nested keys in such a file: `--config` sets top-level keys, and a list
or mapping given there holds text only (`--config rmft='{p: 0.5}'` makes `rmft.p` the text `'0.5'`;
docs/robustness.md). An unknown key or a bad value stops the run before any job, naming the key (`config:
unknown key 'corpus.sourse' (did you mean 'corpus.source'?)`, or `corpus.split.fractions: must sum to 1`).
Written by `python -m piimem.configdoc`; a test checks that it is current.

| key | default | embedded default | meaning |
|---|---|---|---|
"""


def _resolve(node: dict, schema: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        target = schema
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False).replace("|", "\\|")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _text(description: str | None) -> str:
    return re.sub(r"\s+", " ", description or "").strip().replace("|", "\\|")


def rows(schema: dict, embedded: dict) -> list[tuple[str, str, str, str]]:
    """(key, default, embedded default, meaning) of every leaf key, in the schema's order."""
    out: list[tuple[str, str, str, str]] = []

    def walk(properties: dict, prefix: str, given) -> None:
        for name, node in properties.items():
            node = _resolve(node, schema)
            key = f"{prefix}{name}"
            here = given.get(name, _MISSING) if isinstance(given, dict) else _MISSING
            children = node.get("properties")
            if node.get("type") == "object" and children:
                walk(children, f"{key}.", here if isinstance(here, dict) else {})
                continue
            default = node.get("default", _MISSING)
            mine = "" if here is _MISSING or here == default else _value(here)
            out.append((key, "" if default is _MISSING else _value(default), mine, _text(node.get("description"))))

    walk(schema["properties"], "", embedded)
    return out


_MISSING = object()


def render() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    embedded = yaml.safe_load(EMBEDDED.read_text())
    lines = [f"| `{key}` | {default} | {mine} | {meaning} |" for key, default, mine, meaning in rows(schema, embedded)]
    return HEADER + "\n".join(lines) + "\n"


def main() -> None:
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
