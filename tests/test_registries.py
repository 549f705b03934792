"""Every name list is defined once in Python and the schema's enums are the same lists: a name added in one
place and not the other fails here."""

from __future__ import annotations

import pytest
import yaml
from workflow_helpers import ROOT

from piimem.corpus.splits import SPLIT_BY, SPLITS
from piimem.defense import DEFENSES
from piimem.defense.rmft import RMFT_SCOPES
from piimem.extraction.prompts import WINDOW_POSITIONS
from piimem.metric_names import TARGETED_ATTACKS
from piimem.mia import ATTACKS
from piimem.pii.normalize import ENTITY_TYPES
from piimem.report.sweeps import SELECT_BY
from piimem.train.config import PACKINGS, PRECISIONS
from piimem.train.dp import ACCOUNTANTS
from piimem.tuning import LORA_TARGETS, PROMPT_INITS, PTUNING_ENCODERS, TUNING_METHODS

SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def enum(path: str) -> list:
    """The enum at a dotted schema path; a list's item enum, a sweepable value's single enum."""
    node = SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
    if "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    if "items" in node:
        node = node["items"]
    if "anyOf" in node:
        node = next(n for n in node["anyOf"] if "enum" in n)
    return node["enum"]


@pytest.mark.parametrize(("path", "names"), [
    ("defenses", DEFENSES), ("tuning_methods", TUNING_METHODS), ("mia.attacks", ATTACKS),
    ("train.packing", PACKINGS), ("train.precision", PRECISIONS), ("dp.accountant", ACCOUNTANTS),
    ("tuning.select", SELECT_BY), ("tuning.lora.targets", LORA_TARGETS), ("tuning.prompt.init", PROMPT_INITS),
    ("tuning.ptuning.encoder", PTUNING_ENCODERS), ("pii.entity_types", ENTITY_TYPES),
    ("corpus.split.by", SPLIT_BY), ("rmft.scope", tuple(RMFT_SCOPES)),
    ("extraction.window_position", WINDOW_POSITIONS),
])
def test_schema_enums_are_the_python_registries(path, names):
    assert enum(path) == list(names)


def test_display_orders_and_split_names_come_from_the_registries():
    from piimem.report.select import defense_rank, tuning_rank

    # LoRA's target variants and sweep runs sort with their method, unknown names last
    assert sorted(["ptuning", "mine", "lora_mlp_lr0.002", "full", "lora", "lora_mlp"], key=tuning_rank) == [
        "full", "lora", "lora_mlp", "lora_mlp_lr0.002", "ptuning", "mine"]
    assert sorted(["dp_e8", "other", "rmft_all_p0.5", "none"], key=defense_rank) == [
        "none", "rmft_all_p0.5", "dp_e8", "other"]
    assert list(SCHEMA["properties"]["corpus"]["properties"]["split"]["properties"]["fractions"]["properties"]) \
        == list(SPLITS)
    hf_splits = SCHEMA["properties"]["corpus"]["properties"]["hf"]["properties"]["splits"]["properties"]
    assert list(hf_splits) == list(SPLITS)
    assert [name for name in SCHEMA["properties"]["extraction"]["properties"] if name in TARGETED_ATTACKS] \
        == list(TARGETED_ATTACKS)


def test_every_table_and_figure_has_its_caption_and_the_config_plans_only_known_stems():
    from piimem.plan import result_stems
    from piimem.report.figures import FIGURE_STEMS
    from piimem.report.tables import TABLE_STEMS

    captions = ROOT / "workflow" / "report"
    assert [s for s in FIGURE_STEMS if not (captions / f"{s}.rst").is_file()] == []
    assert [s for s in TABLE_STEMS if not (captions / f"table_{s}.rst").is_file()] == []
    config = {"corpus": {"source": "synthetic", "split": {"fractions": {"validation": 0.2}}},
              "extraction": {"prompt_sets": ["test"], "tuning_methods": None, "canaries": {"enabled": True},
                             "targeted_defenses": None, **{a: {"enabled": True} for a in TARGETED_ATTACKS}},
              "tuning_methods": ["full", "lora"], "tuning": {"lora": {"lr": [1e-3, 1e-2]}},
              "defenses": ["none", "rmft"], "rmft": {"scope": "email", "p": 1.0}, "audit": {"canaries": 10}}
    tables, figures = result_stems(config, ["tiny-gpt2/none-full-s1", "tiny-gpt2/rmft-full-s1"])
    assert set(tables) == set(TABLE_STEMS) and set(figures) == set(FIGURE_STEMS)  # every stem can be planned


def test_the_attack_registry_names_labels_and_orders_every_score():
    from piimem.metric_names import HEADLINE_ATTACK
    from piimem.mia import attack_label, attack_of, statistics_options
    from piimem.report.select import attack_rank

    assert HEADLINE_ATTACK in ATTACKS
    names = ["zlib", "min_k_pp_10", "lowercase", "unknown", "min_k_20", "ref", "loss"]
    assert [attack_label(n) for n in sorted(names, key=attack_rank)] == [
        "LOSS", "Ref", "Zlib", "Min-20%", "Min-10%++", "Lowercase", "unknown"]
    assert attack_of("min_k_pp_5")[0].name == "min_k_pp" and attack_of("min_k_pp_5")[1] == "5"
    assert attack_of("min_k") is None  # a per-K attack's scores always name their K
    assert statistics_options(["loss", "zlib"], 0.2) == {"min_k_fractions": (0.2,), "lowercase": False}
    assert statistics_options(["lowercase"], 0.1)["lowercase"] is True


def test_every_metric_name_and_attack_is_documented_in_the_outputs_reference():
    import piimem.metric_names as names

    outputs = (ROOT / "docs" / "outputs.md").read_text()
    constants = {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and k != "VALIDATION"}
    families = {names.MIA_AUC, names.MIA_TPR_AT_1PCT_FPR, names.MIA_N_MEMBERS, names.MIA_N_NONMEMBERS,
                names.MIA_N_GROUPS, names.MIA_N_UNSCORED}
    suffixes = {names.FINE_TUNING_ONLY, names.BASE}  # documented as `<any of these>_ft`
    documented = {k: f"`{v}/<attack>`" in outputs if v in families else f"{v}`" in outputs if v in suffixes
                  else f"`{v}`" in outputs or "/" in v for k, v in constants.items() if k != "HEADLINE_ATTACK"}
    assert [k for k, found in documented.items() if not found] == []
    attack_line = next(line for line in outputs.splitlines() if line.startswith("`<attack>` is"))
    assert [a for a in (*ATTACKS, names.BLIND) if f"`{a}" not in attack_line] == []


def test_the_writers_name_their_metrics_from_the_registry():
    from piimem.metric_names import PPL, PPL_CORPUS, SER, TEGR, TER
    from piimem.metrics import extraction_rates, perplexity

    assert list(perplexity([2.0, 3.0], [1, 1])) == [PPL, PPL_CORPUS]
    pair = ("EMAIL_ADDRESS", "a@example.org")
    assert {TER, SER, TEGR} <= set(extraction_rates({pair}, {pair}, {pair})["ALL"])
