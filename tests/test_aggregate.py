"""Collecting per-checkpoint result files into the tidy metrics table (piimem.aggregate)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from piimem.aggregate import METRICS_SCHEMA, collect_metrics, parse_run_path
from piimem.runs import RunId
from piimem.io import write_table

RUN = "results/runs/tiny-gpt2/rmft-lora_attention-s7"


def write_utility(root, checkpoint="c01", epoch=0.5, run=RUN):
    path = root / run / "utility" / f"{checkpoint}.tsv"
    write_table(pl.DataFrame({"checkpoint": checkpoint, "epoch": epoch,
                              "metric": ["ppl_mean", "ppl_corpus", "n_examples", "n_tokens", "train_loss"],
                              "value": [12.5, 11.0, 40.0, 5120.0, 2.25]}), path)
    return path


def write_mia(root, checkpoint="c01", epoch=0.5, run=RUN, drop=()):
    path = root / run / "mia" / f"{checkpoint}.tsv"
    table = pl.DataFrame({
        "attack": ["loss", "min_k_20"], "reference": ["base model tiny-gpt2", None], "n_members": [100, 100],
        "n_nonmembers": [100, 100], "n_unscored": [0, 2], "auc": [0.62, 0.58], "auc_low": [0.55, 0.5],
        "auc_high": [0.69, 0.66], "tpr_at_1pct_fpr": [0.05, 0.03], "tpr_at_1pct_fpr_low": [0.01, 0.0],
        "tpr_at_1pct_fpr_high": [0.12, 0.09], "tpr_at_0_1pct_fpr": [0.01, 0.0],
        "checkpoint": checkpoint, "epoch": epoch,
    }).drop(list(drop))
    write_table(table, path)
    return path


def write_extraction(root, checkpoint="c01", epoch=0.5, run=RUN):
    path = root / run / "extraction" / f"{checkpoint}.tsv"
    rows = [("train-prefix", "ALL", "ter", 2.5, 1, 40), ("train-prefix", "ALL", "ser", 4.0, 1, 25),
            ("train-prefix", "EMAIL_ADDRESS", "email_exact", 10.0, 1, 10),
            ("test", "PERSON", "ter_rep/16+", math.nan, 0, 0), ("test", "PERSON", "n_rep/16+", 0.0, None, None)]
    write_table(pl.DataFrame(rows, schema=["prompt_set", "entity_type", "metric", "value", "k", "n"], orient="row")
                .with_columns(checkpoint=pl.lit(checkpoint), epoch=pl.lit(epoch)), path)
    return path


def write_canaries(root, checkpoint="c01", epoch=0.5, run=RUN):
    path = root / run / "canaries" / f"{checkpoint}.tsv"
    write_table(pl.DataFrame({"canary_id": [0, 1, 2], "entity_type": ["US_SSN", "US_SSN", "US_SSN"],
                              "repetitions": [1, 1, 10], "train_occurrences": [1, 1, 1], "exposure": [1.0, 3.0, 8.5],
                              "exposure_extrapolated": [1.5, 4.5, 30.0], "exposure_fit": "skewnorm",
                              "n_candidates": 1023, "max_exposure": [10.0, 10.0, 10.0], "checkpoint": checkpoint,
                              "epoch": epoch}), path)
    return path


def value(table, metric, **equal):
    rows = table.filter(pl.col("metric") == metric)
    for column, wanted in equal.items():
        rows = rows.filter(pl.col(column) == wanted)
    assert rows.height == 1, (metric, equal, rows)
    return rows.row(0, named=True)


def test_parse_run_path_reads_every_part():
    run = parse_run_path("results/runs/tiny-gpt2/rmft-lora_attention-s7/extraction/c03.tsv")
    assert (run.run, run.kind, run.checkpoint) == (RunId("tiny-gpt2", "rmft", "lora_attention", 7), "extraction", "c03")
    assert run.run.path == "tiny-gpt2/rmft-lora_attention-s7"


@pytest.mark.parametrize("bad", [
    "results/runs/tiny-gpt2/rmft-lora-attention-s7/mia/c01.tsv",  # a "-" inside the tuning name
    "results/runs/tiny-gpt2/rmft-lora-sX/mia/c01.tsv",
    "results/runs/tiny-gpt2/rmft-lora-s1/scores/c01.tsv",  # unknown kind
    "results/runs/tiny-gpt2/rmft-lora-s1/mia/c01.scores.parquet",
])
def test_a_path_outside_the_layout_is_named_in_the_error(bad):
    with pytest.raises(ValueError, match=bad.split("/")[-1].replace(".", r"\.")) as error:
        parse_run_path(bad)
    assert bad in str(error.value)


def test_utility_rows_keep_every_metric_with_run_columns(tmp_path):
    table = collect_metrics([write_utility(tmp_path)], corpus="synthetic")
    assert table.schema == pl.Schema(METRICS_SCHEMA)
    assert table.height == 5
    assert sorted(table["metric"]) == ["n_examples", "n_tokens", "ppl_corpus", "ppl_mean", "train_loss"]
    row = value(table, "ppl_mean")
    assert row == {"corpus": "synthetic", "base_model": "tiny-gpt2", "defense": "rmft", "tuning": "lora_attention",
                   "seed": 7, "checkpoint": "c01", "epoch": 0.5, "prompt_set": None, "entity_type": None,
                   "member_text": None, "metric": "ppl_mean", "value": 12.5, "ci_low": None, "ci_high": None,
                   "k": None, "n": None}


def test_mia_rows_name_attack_and_rate_and_carry_the_auc_interval(tmp_path):
    table = collect_metrics([write_mia(tmp_path)], corpus="synthetic")
    # 2 attacks x (auc, tpr@1%, tpr@0.1%, n_members, n_nonmembers, n_unscored)
    assert table.height == 12
    loss = value(table, "mia_auc/loss")
    assert (loss["value"], loss["ci_low"], loss["ci_high"]) == (0.62, 0.55, 0.69)
    assert table["member_text"].unique().to_list() == ["original"]  # a file without views scores originals
    tpr = value(table, "mia_tpr@1%fpr/loss")
    assert (tpr["value"], tpr["ci_low"], tpr["ci_high"]) == (0.05, 0.01, 0.12)  # the TPR's bootstrap interval
    assert value(table, "mia_tpr@0.1%fpr/loss")["value"] == 0.01
    assert value(table, "mia_tpr@0.1%fpr/min_k_20")["ci_low"] is None
    assert value(table, "mia_n_unscored/min_k_20")["value"] == 2.0
    assert set(table["metric"]) == {f"{m}/{a}" for a in ("loss", "min_k_20") for m in (
        "mia_auc", "mia_tpr@1%fpr", "mia_tpr@0.1%fpr", "mia_n_members", "mia_n_nonmembers", "mia_n_unscored")}


def test_extraction_rows_keep_prompt_set_and_type_and_nan_becomes_null(tmp_path):
    table = collect_metrics([write_extraction(tmp_path)], corpus="enron")
    assert table.height == 5
    assert value(table, "ter", prompt_set="train-prefix", entity_type="ALL")["value"] == 2.5
    assert value(table, "email_exact", entity_type="EMAIL_ADDRESS")["prompt_set"] == "train-prefix"
    assert value(table, "ter_rep/16+", prompt_set="test", entity_type="PERSON")["value"] is None
    assert value(table, "n_rep/16+")["value"] == 0.0


def test_counted_rates_carry_k_of_n_and_their_exact_interval(tmp_path):
    table = collect_metrics([write_extraction(tmp_path)], corpus="enron")
    ter = value(table, "ter", prompt_set="train-prefix", entity_type="ALL")
    # 1 of 40: Clopper-Pearson 95 % = 0.063 % .. 13.16 % (the beta quantiles, checked against R's binom.test)
    assert (ter["k"], ter["n"]) == (1, 40)
    assert ter["ci_low"] == pytest.approx(0.0633, abs=1e-3) and ter["ci_high"] == pytest.approx(13.16, abs=1e-2)
    assert value(table, "ser")["ci_high"] == pytest.approx(20.35, abs=1e-2)  # 1 of 25
    empty = value(table, "ter_rep/16+")
    assert (empty["k"], empty["n"], empty["ci_low"], empty["ci_high"]) == (0, 0, None, None)
    assert value(table, "n_rep/16+")["k"] is None
    wider = collect_metrics([write_extraction(tmp_path)], corpus="enron", level=0.99)
    assert value(wider, "ter", entity_type="ALL")["ci_high"] > ter["ci_high"]


def test_canaries_are_summarised_per_type_and_planted_count(tmp_path):
    table = collect_metrics([write_canaries(tmp_path)], corpus="synthetic")
    # 2 planted counts x (exposure, extrapolated exposure, max exposure, train occurrences, number)
    assert table.height == 10
    assert value(table, "canary_exposure/1")["value"] == 2.0
    assert value(table, "canary_exposure/10")["value"] == 8.5
    assert value(table, "canary_exposure_extrapolated/1")["value"] == 3.0
    assert value(table, "canary_exposure_extrapolated/10")["value"] == 30.0
    assert value(table, "canary_n/1")["value"] == 2.0
    assert value(table, "canary_max_exposure/10")["value"] == 10.0
    assert value(table, "canary_train_occurrences/10")["value"] == 1.0
    assert set(table["entity_type"]) == {"US_SSN"}
    # the t interval over a cell's canaries: mean 3 +- t(0.975, 1) * sd 2.12 / sqrt 2 = 3 +- 19.06
    cell = value(table, "canary_exposure_extrapolated/1")
    assert cell["ci_low"] == pytest.approx(3.0 - 19.0593, abs=1e-3)
    assert cell["ci_high"] == pytest.approx(3.0 + 19.0593, abs=1e-3)
    assert value(table, "canary_exposure/1")["ci_high"] == pytest.approx(2.0 + 12.7062, abs=1e-3)
    # one canary: no interval; counts and ceilings carry none either
    assert value(table, "canary_exposure_extrapolated/10")["ci_low"] is None
    assert value(table, "canary_n/1")["ci_low"] is None
    # the level is the report's
    wider = collect_metrics([write_canaries(tmp_path)], corpus="synthetic", level=0.99)
    assert value(wider, "canary_exposure_extrapolated/1")["ci_high"] > cell["ci_high"]


def test_canary_files_without_the_extrapolated_exposure_are_refused(tmp_path):
    path = write_canaries(tmp_path)
    pl.read_csv(path, separator="\t").drop("exposure_extrapolated").write_csv(path, separator="\t")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['exposure_extrapolated'\]"):
        collect_metrics([path], corpus="synthetic")


def test_collect_metrics_is_sorted_whatever_the_file_order(tmp_path):
    files = [write_utility(tmp_path, "c02", 1.0), write_mia(tmp_path, "c02", 1.0), write_extraction(tmp_path),
             write_canaries(tmp_path), write_utility(tmp_path),
             write_utility(tmp_path, run="results/runs/gpt2/none-full-s1")]
    forward = collect_metrics(files, corpus="synthetic")
    backward = collect_metrics(files[::-1], corpus="synthetic")
    assert forward.equals(backward)
    assert forward.height == 5 + 12 + 5 + 10 + 5 + 5
    assert forward.select("base_model", "defense", "tuning", "seed").unique().sort("base_model").rows() == [
        ("gpt2", "none", "full", 1), ("tiny-gpt2", "rmft", "lora_attention", 7)]
    assert value(forward, "ppl_mean", checkpoint="c02")["epoch"] == 1.0
    assert forward["corpus"].unique().to_list() == ["synthetic"]


def test_no_files_give_an_empty_table_with_the_contract_columns():
    assert collect_metrics([], corpus="synthetic").schema == pl.Schema(METRICS_SCHEMA)


def test_a_missing_column_is_named_with_the_file(tmp_path):
    path = write_mia(tmp_path, drop=("auc_high",))
    with pytest.raises(ValueError, match="auc_high") as error:
        collect_metrics([path], corpus="synthetic")
    assert str(path) in str(error.value)


def test_a_file_named_for_another_checkpoint_is_refused(tmp_path):
    path = write_utility(tmp_path)
    moved = path.with_name("c09.tsv")
    path.rename(moved)
    with pytest.raises(ValueError, match="c09"):
        collect_metrics([moved], corpus="synthetic")


def test_the_same_file_given_twice_is_refused(tmp_path):
    path = write_utility(tmp_path)
    with pytest.raises(ValueError, match="same run"):
        collect_metrics([path, path], corpus="synthetic")


def test_names_that_look_like_numbers_stay_text_and_bad_values_name_the_file(tmp_path):
    path = tmp_path / RUN / "extraction" / "c01.tsv"
    write_table(pl.DataFrame({"prompt_set": ["2024"], "entity_type": ["ALL"], "metric": ["ter"], "value": [1.5],
                              "k": [1], "n": [2], "checkpoint": ["c01"], "epoch": [1.0]}), path)
    assert collect_metrics([path], corpus="synthetic")["prompt_set"].to_list() == ["2024"]
    write_table(pl.DataFrame({"prompt_set": ["test"], "entity_type": ["ALL"], "metric": ["ter"], "value": ["high"],
                              "k": [1], "n": [2], "checkpoint": ["c01"], "epoch": [1.0]}), path)
    with pytest.raises(ValueError, match="wrong type") as error:
        collect_metrics([path], corpus="synthetic")
    assert str(path) in str(error.value)


def test_mia_rows_keep_the_view_of_the_members_text_apart(tmp_path):
    path = write_mia(tmp_path)
    table = pl.read_csv(path, separator="\t")
    both = pl.concat([table.with_columns(member_text=pl.lit("original")),
                      table.with_columns(member_text=pl.lit("trained"), auc=pl.col("auc") - 0.1)])
    write_table(both, path)
    metrics = collect_metrics([path], corpus="synthetic")
    assert metrics.height == 24
    assert value(metrics, "mia_auc/loss", member_text="original")["value"] == 0.62
    assert value(metrics, "mia_auc/loss", member_text="trained")["value"] == pytest.approx(0.52)
