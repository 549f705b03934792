"""docs/configuration.md is what piimem.configdoc writes from the schema and the embedded default."""

from piimem.configdoc import TARGET, render, rows


def test_the_committed_configuration_doc_is_current():
    assert TARGET.read_text() == render(), "docs/configuration.md is stale: run python -m piimem.configdoc"


def test_every_key_has_its_default_and_the_embedded_default_where_it_differs():
    table = {key: (default, mine, meaning) for key, default, mine, meaning in rows(
        {"properties": {"a": {"type": "object", "properties": {
            "b": {"type": "integer", "default": 3, "description": "The b."},
            "c": {"$ref": "#/definitions/c", "default": "x"}}}},
         "definitions": {"c": {"description": "The  c\n key."}}},
        {"a": {"b": 5, "c": "x"}})}
    assert table == {"a.b": ("3", "5", "The b."), "a.c": ("x", "", "The c key.")}
