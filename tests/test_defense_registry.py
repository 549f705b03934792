"""The defense registry: every defense is one module of piimem.defense behind one protocol (`Defense`), the
registry is the schema's list, and a defense added with one registry entry runs through the same paths as the
shipped ones (its variants' names, options, config checks, training text, non-members' text)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml
from masking_data import DOCS, build_spans, build_texts
from snakemake.utils import validate

from piimem.config import ConfigError, check_config
from piimem.defense import (
    DEFENSE_KINDS,
    DEFENSES,
    REPLACEMENT_SCHEMA,
    Defense,
    Rewrite,
    build_training_text,
    nonmember_texts,
)
from piimem.defense.base import epoch0, no_replacements, spans_of
from piimem.plan import NamedOption, at_paper_setting, defense_variants, dp_options, training_texts, variant_options
from piimem.schema import default

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def default_config(**overrides) -> dict:
    """config/config.yaml with `overrides` (top-level keys) and the schema's defaults, as Snakemake builds it."""
    config = {**yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), **overrides}
    validate(config, str(SCHEMA))
    return config


def test_the_registry_is_the_schemas_list_in_its_order_one_module_per_defense():
    assert list(DEFENSES) == yaml.safe_load(SCHEMA.read_text())["properties"]["defenses"]["items"]["enum"]
    for name, kind in DEFENSE_KINDS.items():
        assert isinstance(kind, Defense) and kind.name == name
        assert type(kind).__module__ in ("piimem.defense.base", f"piimem.defense.{name}")
        assert importlib.import_module(f"piimem.defense.{name}").DEFENSE is kind


def test_every_defense_implements_the_protocol_for_every_variant():
    config = default_config(defenses=list(DEFENSES), exclude=[])
    train, spans = build_texts(DOCS), build_spans(DOCS)
    for name, variant in defense_variants(config).items():
        kind = DEFENSE_KINDS[variant["defense"]]
        assert all(isinstance(flag, bool) for flag in (kind.rewrites_text, kind.reads_spans, kind.private_training,
                                                       kind.canaries_upstream))
        for option in kind.named_options:  # each option a variant's name shows is a key of its section
            assert isinstance(option, NamedOption)
            default(f"{kind.name}.{option.key}")
        assert set(kind.compared_with) <= set(DEFENSES)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in kind.inputs(variant).items())
        assert isinstance(kind.nonmember_config(config, variant), dict)
        assert (dp_options(config, name) is not None) == kind.private_training
        # a defense that trains on the split as is shares one text among its variants
        assert (training_texts(config)[name] == name) == kind.rewrites_text or name == kind.name
        result = build_training_text(kind.name, train, spans=spans, dedup_texts=train.head(3),
                                     options=variant_options(config, name))
        assert result.texts.columns == ["epoch", "doc_id", "text"]
        assert dict(result.replacements.schema) == REPLACEMENT_SCHEMA
        unchanged = result.texts.filter(pl.col("epoch") == 0)["text"].to_list() == train["text"].to_list()
        assert unchanged != kind.rewrites_text, name  # each rewriting defense rewrote this corpus
        assert (result.replacements.height > 0) == kind.reads_spans, name


def test_the_defenses_own_what_the_workflow_asks_of_them():
    config = default_config(defenses=list(DEFENSES), exclude=[], dedup={"threshold": [0.7, 0.8]})
    variants = defense_variants(config)
    assert DEFENSE_KINDS["dedup"].inputs(variants["dedup_t0.7"]) == \
        {"dedup": "results/private/dedup/t0.7/train.parquet"}
    assert DEFENSE_KINDS["dedup"].nonmember_config(config, variants["dedup_t0.7"])["threshold"] == 0.7
    assert [d for d, kind in DEFENSE_KINDS.items() if kind.canaries_upstream] == ["dedup"]
    assert [d for d, kind in DEFENSE_KINDS.items() if kind.reads_spans] == ["rmft", "scrub"]
    assert DEFENSE_KINDS["rmft"].inputs(variants["rmft"]) == {} and variant_options(config, "none") == {}


@dataclass(frozen=True)
class Upper(Defense):
    """A made-up defense: upper-cases every message, counting the PERSON spans it set out to hide."""

    def check(self, config: dict) -> None:
        if 0 in config["toy"]["level"]:
            raise ConfigError("toy.level: 0 is no level")

    def options(self, config: dict, variant: dict) -> dict:
        return {"level": variant["level"]}

    def training_text(self, train, spans, dedup_texts, options) -> Rewrite:
        texts = train.select(epoch0(), "doc_id", pl.col("text").str.to_uppercase())
        return Rewrite(texts, no_replacements(), spans_of(train, spans, ["PERSON"]))


TOY = Upper("toy", rewrites_text=True, reads_spans=True,
            named_options=(NamedOption("level", lambda v: f"l{v}", sweepable=True),))


def test_a_defense_added_by_one_registry_entry_runs_through_the_same_paths(monkeypatch):
    monkeypatch.setitem(DEFENSE_KINDS, "toy", TOY)
    config = default_config(defenses=["none"], exclude=[])
    config.update(defenses=["none", "toy"], toy={"level": [1, 2]})  # after validation: the schema lacks toy

    assert defense_variants(config) == {"none": {"defense": "none"}, "toy_l1": {"defense": "toy", "level": 1},
                                        "toy_l2": {"defense": "toy", "level": 2}}
    assert training_texts(config) == {"none": "none", "toy_l1": "toy_l1", "toy_l2": "toy_l2"}
    assert variant_options(config, "toy_l2") == {"level": 2} and dp_options(config, "toy_l2") is None
    assert not at_paper_setting("toy_l1")  # no paper fixes its level

    texts, spans = build_texts(DOCS), build_spans(DOCS)
    result = build_training_text("toy", texts, spans=spans, options={"level": 2})
    assert result.texts["text"].to_list() == [d.upper() for d in DOCS]
    persons = spans.filter(pl.col("entity_type") == "PERSON")
    assert result.summary.select("entity_type", "occurrences", "replaced").rows() == \
        [("PERSON", persons.height, 0)]
    out = nonmember_texts("toy", texts.head(4), texts.tail(2), spans=spans, options={"level": 2})
    assert out.rows() == [(4, DOCS[4].upper()), (5, DOCS[5].upper())]

    config["toy"]["level"] = [1, 0]
    with pytest.raises(ConfigError, match="toy.level: 0 is no level"):
        check_config(config)


def test_an_unregistered_defense_is_refused_by_name():
    with pytest.raises(ValueError, match=r"defenses: unknown defense 'toy' \(expected one of none, dedup, rmft, "
                                         r"scrub, dp\)"):
        build_training_text("toy", build_texts(DOCS))


def test_the_report_reads_who_each_run_is_from_the_runs_table():
    """results/runs.parquet (aggregate.run_identity of the plan) says each run's defense kind, paper setting and
    method; the report's Identity reads it, and agrees with what the run names say."""
    from piimem.aggregate import run_identity
    from piimem.plan import Plan
    from piimem.report.select import Identity

    config = default_config(defenses=["none", "dedup", "rmft", "scrub", "dp"], exclude=[],
                            rmft={"scope": ["email", "all"]}, tuning={"lora": {"lr": [1e-3, 1e-2]}})
    runs = run_identity(Plan.of(config).identity())
    identity = Identity.of(runs)
    assert identity.kind("rmft_all") == "rmft" and identity.kind("dp_e8") == "dp" and identity.kind("x") is None
    assert [d for d in identity.defenses if identity.is_paper(d, "rmft")] == ["rmft_email"]
    assert identity.is_paper("dedup", "dedup") and not identity.is_paper("dp_e8", "dp")
    assert identity.head_to_head("rmft_all", ["none", "dedup", "rmft_email", "scrub"]) == ["dedup"]
    assert identity.methods["lora_lr0.01"] == "lora" and identity.family("lora_lr0.01") == "parameter"
    assert identity.family("prefix") == "prompt" and identity.family("full") == "parameter"
    assert Identity.of_names(runs["defense"].unique().to_list(), runs["tuning"].unique().to_list()) == identity
