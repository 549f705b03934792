"""Each tuning method at its best: the validation split, tuning sweeps and the choice among their runs, the
outsiders' pre-training mail, and claims at matched utility."""

from __future__ import annotations

import polars as pl
import pytest
from report_data import metric_row
from workflow_helpers import ROOT, planned_jobs, snakemake, write_config

from piimem.aggregate import METRICS_SCHEMA
from piimem.config import ConfigError, check_config
from piimem.corpus.pretraining import pii_of, training_strings, without_strings
from piimem.corpus.splits import LinkConfig, assign_splits, link_messages
from piimem.plan import run_names, swept, tuning_variants
from piimem.report.claims import FAILS, HOLDS, INCONCLUSIVE, Claim, ClaimSettings, at_matched_utility, method_utility
from piimem.report.sweeps import mark_selected, reported, selection, swept_value
from piimem.report.tables import finetuning_table, tuning_sweep_table


def test_a_list_of_values_is_one_run_per_value_named_by_option_and_value():
    config = {"tuning_methods": ["full", "lora", "prefix"],
              "tuning": {"lora": {"lr": [2e-4, 2e-3, 2e-5], "r": 8}, "prefix": {"lr": 1e-3}}}
    variants = tuning_variants(config)
    assert list(variants) == ["full", "lora_lr0.0002", "lora_lr0.002", "lora_lr0.00002", "prefix"]
    assert variants["lora_lr0.002"] == {"tuning": "lora", "options": {"lr": 2e-3, "r": 8}, "swept": {"lr": 2e-3}}
    assert variants["prefix"] == {"tuning": "prefix", "options": {"lr": 1e-3}, "swept": {}}
    assert swept(config) and not swept({"tuning_methods": ["lora"], "tuning": {"lora": {"lr": [1e-3]}}})
    both = tuning_variants({"tuning_methods": ["lora"], "tuning": {"lora": {"lr": [1e-3, 1e-2], "r": [4, 16]}}})
    assert list(both) == ["lora_lr0.001_r4", "lora_lr0.001_r16", "lora_lr0.01_r4", "lora_lr0.01_r16"]


def test_runs_of_a_sweep_are_excluded_by_their_method_or_their_name():
    config = {"base_models": ["tiny-gpt2"], "defenses": ["none", "rmft"], "rmft": {"p": 1.0, "scope": "email"},
              "dedup": {"threshold": 0.8}, "seeds": [1], "tuning_methods": ["full", "lora"],
              "tuning": {"lora": {"lr": [1e-3, 1e-2]}}, "exclude": [{"defense": "rmft", "tuning": "lora"}]}
    assert run_names(config) == ["tiny-gpt2/none-full-s1", "tiny-gpt2/none-lora_lr0.001-s1",
                                 "tiny-gpt2/none-lora_lr0.01-s1", "tiny-gpt2/rmft-full-s1"]
    config["exclude"] = [{"tuning": "lora_lr0.01"}]
    assert "tiny-gpt2/none-lora_lr0.01-s1" not in run_names(config)


def _checked(**corpus) -> dict:
    """A config as the schema fills it, with a LoRA learning-rate sweep and the given corpus keys."""
    from snakemake.utils import validate

    config = {"tuning_methods": ["full", "lora"], "tuning": {"lora": {"lr": [1e-3, 1e-2]}},
              "corpus": {"split": {"fractions": {"train": 0.6, "validation": 0, "test": 0.2, "public": 0.2}}}}
    config["corpus"].update(corpus)
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def test_a_sweep_needs_a_validation_split_and_the_outsiders_a_seed_of_their_own():
    with pytest.raises(ConfigError, match=r"'lora_lr0.001' is one run of a sweep.*fractions.validation above 0"):
        check_config(_checked())
    check_config(_checked(split={"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2, "public": 0}},
                          synthetic={"pretrain": {"n_mailboxes": 4, "seed": 7}}))
    with pytest.raises(ConfigError, match="corpus.synthetic.pretrain.seed: must differ from corpus.synthetic.seed"):
        check_config(_checked(split={"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2, "public": 0}},
                              synthetic={"pretrain": {"n_mailboxes": 4, "seed": 42}}))
    with pytest.raises(ConfigError, match="fractions.public: must be above 0 when base_models has a tiny GPT-2"):
        check_config(_checked(split={"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2, "public": 0}}))


def test_the_validation_split_is_grouped_and_disjoint_from_the_others(enron_mini_parsed):
    messages = enron_mini_parsed.messages
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2, "public": 0.0}
    groups, _ = link_messages(messages, LinkConfig.from_config({}, seed=42))
    splits = assign_splits(messages, fractions=fractions, seed=42, groups=groups)
    counts = dict(splits.group_by("split").len().rows())
    assert set(counts) == {"train", "validation", "test"} and counts["validation"] > 100
    assert abs(counts["validation"] / splits.height - 0.2) < 0.05
    # every linked group (copies, quotes, forwards) and every body lies in one split only
    joined = splits.join(groups, on="doc_id").join(messages.select("doc_id", "body_hash"), on="doc_id")
    assert joined.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1
    assert joined.group_by("body_hash").agg(pl.col("split").n_unique())["split"].max() == 1


def _run_rows(tuning: str, val: list[float], auc: float, seed: int = 1, defense: str = "none") -> list[dict]:
    rows = []
    for i, value in enumerate(val, start=1):
        at = {"tuning": tuning, "seed": seed, "defense": defense, "checkpoint": f"c0{i}", "epoch": float(i)}
        rows += [metric_row("val_ppl_mean", value, **at), metric_row("ppl_mean", value * 1.1, **at),
                 metric_row("mia_auc/loss", auc, ci=(auc - 0.05, auc + 0.05), member_text="original", **at)]
    return rows


METHODS = {"full": "full", "lora_lr0.001": "lora", "lora_lr0.01": "lora", "lora_lr0.1": "lora"}


def _metrics(*runs: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([r for run in runs for r in run], schema=METRICS_SCHEMA)


def test_selection_picks_the_lowest_validation_perplexity_at_the_table_checkpoint_per_seed():
    metrics = _metrics(_run_rows("full", [20, 10], 0.7), _run_rows("lora_lr0.001", [40, 30], 0.55),
                       _run_rows("lora_lr0.01", [30, 12], 0.52), _run_rows("lora_lr0.1", [25, 50], 0.9),
                       _run_rows("lora_lr0.001", [40, 11], 0.6, seed=2),
                       _run_rows("lora_lr0.01", [30, 14], 0.5, seed=2))
    marked = mark_selected(metrics, METHODS)
    chosen = {(t, s) for t, s in marked.filter(pl.col("selected")).select("tuning", "seed").unique().rows()}
    # last checkpoint: lr 0.01 wins seed 1 (12 < 30 < 50), lr 0.001 seed 2 (11 < 14); full has no sweep
    assert chosen == {("full", 1), ("lora_lr0.01", 1), ("lora_lr0.001", 2)}
    at_first = mark_selected(metrics, METHODS, epoch=1.0)
    assert ("lora_lr0.1", 1) in set(at_first.filter(pl.col("selected")).select("tuning", "seed").unique().rows())
    shown = reported(marked, selection(marked), keep_name=True)
    assert sorted(shown.select("tuning", "seed", "tuning_run").unique().rows()) == [
        ("full", 1, "full"), ("lora", 1, "lora_lr0.01"), ("lora", 2, "lora_lr0.001")]
    assert reported(marked, selection(marked)).columns == marked.columns
    everything = mark_selected(metrics, METHODS, select="none")
    assert everything["selected"].all()
    assert set(reported(everything, selection(everything))["tuning"]) == set(METHODS)


def test_a_sweep_without_validation_perplexity_cannot_select():
    metrics = _metrics(_run_rows("lora_lr0.001", [40], 0.55), _run_rows("lora_lr0.01", [30], 0.52))
    metrics = metrics.filter(pl.col("metric") != "val_ppl_mean")
    with pytest.raises(ValueError, match=r"val_ppl_mean is missing for the swept run\(s\) \['lora_lr0.001', "
                                         r"'lora_lr0.01'\]"):
        mark_selected(metrics, METHODS)
    with pytest.raises(ValueError, match=r"tuning name\(s\) \['prompt'\] are not runs"):
        mark_selected(_metrics(_run_rows("prompt", [1], 0.5)), METHODS)


def test_sweep_table_lists_every_run_and_the_finetuning_table_says_which_value_won():
    metrics = mark_selected(_metrics(_run_rows("full", [20, 10], 0.7), _run_rows("lora_lr0.001", [40, 30], 0.55),
                                     _run_rows("lora_lr0.01", [30, 12], 0.52)), METHODS)
    sweep = tuning_sweep_table(metrics)
    assert sweep.select("tuning", "value", "val PPL", "selected").rows() == [
        ("lora", "lr0.01", 12.0, "yes"), ("lora", "lr0.001", 30.0, "")]
    assert sweep["LOSS AUC"].to_list() == [0.52, 0.55]
    table = finetuning_table(reported(metrics, selection(metrics), keep_name=True))
    assert table.select("tuning", "val PPL", "chosen").rows() == [("full", 10.0, None), ("lora", 12.0, "lr0.01")]
    assert swept_value("lora_mlp_lr0.01", "lora_mlp") == "lr0.01" and swept_value("lora", "lora") is None
    assert tuning_sweep_table(mark_selected(_metrics(_run_rows("full", [20], 0.7)), METHODS)) is None


@pytest.mark.parametrize(("verdict", "ppl", "expected"), [
    (HOLDS, {"full": 10.0, "prompt": 19.0}, HOLDS), (HOLDS, {"full": 10.0, "prompt": 21.0}, INCONCLUSIVE),
    (FAILS, {"full": 10.0, "prompt": 30.0}, INCONCLUSIVE),
    (INCONCLUSIVE, {"full": 10.0, "prompt": 30.0}, INCONCLUSIVE)])
def test_a_verdict_between_methods_needs_matched_utility(verdict, ppl, expected):
    metrics = _metrics(*(_run_rows(tuning, [value], 0.6) for tuning, value in ppl.items()))
    utility = method_utility(metrics, None)
    assert utility[0] == "val PPL"
    claim = at_matched_utility(Claim("parameter_vs_prompt", "tiny-gpt2, none", verdict=verdict), list(ppl),
                               "tiny-gpt2", utility, ClaimSettings(max_ppl_ratio=2.0))
    assert claim.verdict == expected
    assert claim.measured_on.endswith(f"val PPL: full 10.00, prompt {ppl['prompt']:.2f}")
    if expected != verdict:
        assert claim.why.startswith(f"not at matched utility: val PPL {ppl['prompt']:.2f} (prompt) is "
                                    f"{ppl['prompt'] / 10:.2f}x 10.00 (full)")


def test_outsiders_mail_loses_every_message_holding_a_training_pii_string():
    messages = pl.DataFrame({"doc_id": [0, 1, 2], "path": ["a/1.", "a/2.", "b/1."], "text": ["x", "y", "z"]})
    splits = pl.DataFrame({"doc_id": [0, 1, 2], "split": ["train", "test", "train"]})
    truth = pl.DataFrame({"path": ["a/1.", "a/1.", "a/1.", "a/2.", "b/1."],
                          "entity_type": ["EMAIL_ADDRESS", "PERSON", "PERSON", "PHONE_NUMBER", "LOCATION"],
                          "value": ["Jo.Doe@corp.com", "Jo", "Jo Doe", "713-555-0100", "Houston"]})
    strings = training_strings(truth, messages, splits, person_min_words=2)
    assert strings == ["Jo Doe", "Jo.Doe@corp.com"]  # not the test split's phone, a first name or a city
    outsiders = pl.DataFrame({"doc_id": [0, 1, 2, 3], "text": ["mail jo.doe@CORP.com now", "Dear Jo Doe,",
                                                             "Dear Jo, in Houston", "call 713-555-0100"]})
    assert without_strings(outsiders, strings)["doc_id"].to_list() == [2, 3]
    kept = pl.DataFrame({"path": ["b/1."]})
    assert pii_of(truth.with_columns(field=pl.lit("body")), kept, ["From"]).rows() == [("LOCATION", "houston")]


def test_a_sweep_plans_one_run_per_value_and_the_sweep_table(tmp_path):
    write_config(tmp_path, {"defenses": ["none"], "exclude": [], "tuning_methods": ["full", "lora"],
                            "tuning": {"lora": {"lr": [2e-4, 2e-3]}}, "extraction": {"prompt_sets": []}})
    jobs = planned_jobs(tmp_path)
    assert jobs["finetune"] == jobs["perplexity"] == jobs["membership_inference"] == 3
    out = snakemake(tmp_path, "-n").stdout
    for run in ("none-full-s42", "none-lora_lr0.0002-s42", "none-lora_lr0.002-s42"):
        assert f"results/private/runs/tiny-gpt2/{run}/manifest.json" in out
    assert "results/tables/tuning_sweep.md" in out and "results/figures/auc_by_val_ppl.png" in out
    write_config(tmp_path, {"corpus": {"split": {"fractions": {"train": 0.6, "validation": 0, "test": 0.2,
                                                               "public": 0.2}}},
                            "tuning": {"lora": {"lr": [2e-4, 2e-3]}}})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "set corpus.split.fractions.validation above 0" in proc.stdout + proc.stderr
