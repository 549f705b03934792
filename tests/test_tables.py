"""Paper tables from the tidy metrics table (piimem.tables)."""

from __future__ import annotations

import re

import polars as pl
import pytest

from piimem.aggregate import METRICS_SCHEMA
from piimem.tables import (
    build_tables,
    extraction_by_repetition,
    extraction_by_type,
    finetuning_table,
    latex_escape,
    maxter_curves,
    rmft_table,
    write_tables,
)


def metrics_frame(rows) -> pl.DataFrame:
    """A metrics table from (defense, tuning, seed, checkpoint, epoch, prompt_set, entity_type, metric, value
    [, ci_low, ci_high]) tuples; corpus and base model fixed."""
    full = [("synthetic", "tiny-gpt2", *r, *([None, None] if len(r) == 9 else [])) for r in rows]
    return pl.DataFrame(full, schema=METRICS_SCHEMA, orient="row")


def rmft_rows(defenses=("none", "rmft"), tuning="lora_attention"):
    """none: TER 2, SER 4, TEGR 10, PPL 10 at both checkpoints; rmft: TER 1, SER 1 and 3, TEGR 5, PPL 10.5."""
    values = {"none": {"ter": (2.0, 2.0), "ser": (4.0, 4.0), "tegr": (10.0, 10.0), "ppl_mean": (10.0, 10.0)},
              "rmft": {"ter": (1.0, 1.0), "ser": (1.0, 3.0), "tegr": (5.0, 5.0), "ppl_mean": (10.5, 10.5)}}
    rows = []
    for defense in defenses:
        for i, checkpoint in enumerate(("c01", "c02")):
            for metric, pair in values[defense].items():
                where = (None, None) if metric == "ppl_mean" else ("train-prefix", "ALL")
                rows.append((defense, tuning, 1, checkpoint, float(i + 1), *where, metric, pair[i]))
    return rows


def test_rmft_table_values_in_the_csv(tmp_path):
    table = rmft_table(metrics_frame(rmft_rows()))
    paths = write_tables(table, tmp_path / "tables" / "rmft")
    assert [p.name for p in paths] == ["rmft.csv", "rmft.md", "rmft.tex"]
    csv = pl.read_csv(paths[0])
    assert csv["defense"].to_list() == ["none", "rmft"]
    rmft = csv.row(1, named=True)
    assert rmft["TER (%)"] == 1.0 and rmft["SER (%)"] == 2.0 and rmft["PPL"] == 10.5
    assert rmft["TER reduction (%)"] == 50.0
    assert rmft["SER reduction (%)"] == 50.0
    assert rmft["PPL increase (%)"] == 5.0
    # MaxTER is 50 from τ = 5 % on and counts 0 below: (0.5 * 50 / 2 + 15 * 50) / 20
    assert rmft["AURC (%)"] == pytest.approx(38.125)
    assert rmft["TER reduction, paper (%)"] == 80.81 and rmft["PPL increase, paper (%)"] == 5.73
    none = csv.row(0, named=True)
    assert none["TER reduction (%)"] is None and none["AURC (%)"] is None and none["TER reduction, paper (%)"] is None


def test_markdown_and_latex_forms(tmp_path):
    paths = write_tables(rmft_table(metrics_frame(rmft_rows())), tmp_path / "rmft")
    md = paths[1].read_text().splitlines()
    assert md[0].startswith("| base model | tuning | prompt set | defense | TER (%) | SER (%) | TEGR (%) | PPL |")
    assert md[1].startswith("| --- | --- | --- | --- | ---: |")
    assert md[3].startswith("| tiny-gpt2 | lora_attention | train-prefix | rmft | 1.00 | 2.00 | 5.00 | 10.50 | 50.00 |")
    assert "| – |" in md[2]  # the baseline has no reduction
    tex = paths[2].read_text()
    assert tex.startswith(r"\begin{tabular}{llll" + "r" * 11 + "}\n\\toprule\n")
    assert r"TER (\%)" in tex and r"lora\_attention" in tex and r"\bottomrule" in tex
    assert not any(re.search(r"(?<!\\)[%_]", line) for line in tex.splitlines())


def test_constant_context_columns_can_be_left_out_of_md_and_tex_only(tmp_path):
    paths = write_tables(rmft_table(metrics_frame(rmft_rows())), tmp_path / "rmft",
                         drop_constant=("base model", "tuning"))
    assert paths[1].read_text().startswith("| prompt set | defense |")
    assert "base model" in pl.read_csv(paths[0]).columns


def test_latex_escape_covers_the_special_characters():
    assert latex_escape(r"a_b 5% $x #1 {y} & ~ ^ \ ") == (
        r"a\_b 5\% \$x \#1 \{y\} \& \textasciitilde{} \textasciicircum{} \textbackslash{} ")


def test_a_single_defense_gives_a_table_without_comparison():
    table = rmft_table(metrics_frame(rmft_rows(defenses=("rmft",))))
    assert table.height == 1
    assert table["TER reduction (%)"].to_list() == [None] and table["AURC (%)"].to_list() == [None]
    assert maxter_curves(metrics_frame(rmft_rows(defenses=("rmft",)))) is None


def test_maxter_curves_null_where_nothing_qualifies():
    curves = maxter_curves(metrics_frame(rmft_rows()), taus=[0.0, 5.0, 10.0])
    assert curves["defense"].unique().to_list() == ["rmft"]
    assert curves["maxter"].to_list() == [None, 50.0, 50.0]
    assert curves["aurc"].unique().to_list() == [pytest.approx((5 * 50 / 2 + 5 * 50) / 10)]


def test_without_extraction_metrics_no_extraction_table_is_written(tmp_path):
    utility_only = metrics_frame([r for r in rmft_rows() if r[7] == "ppl_mean"])
    assert rmft_table(utility_only) is None
    assert extraction_by_type(utility_only) is None
    assert extraction_by_repetition(utility_only) is None
    assert finetuning_table(utility_only) is None
    assert write_tables(None, tmp_path / "rmft") == []
    assert build_tables(utility_only, tmp_path / "tables") == []
    assert not (tmp_path / "rmft.csv").exists()


def mia_rows():
    rows = []
    for tuning, auc in (("prefix", 0.5), ("full", 0.9), ("lora_attention", 0.7), ("lora", 0.8)):
        for checkpoint, epoch, shift in (("c01", 1.0, -0.1), ("c02", 2.0, 0.0)):
            rows += [("none", tuning, 1, checkpoint, epoch, None, None, "mia_auc/loss", auc + shift, auc - 0.05, auc + 0.05),
                     ("none", tuning, 1, checkpoint, epoch, None, None, "mia_auc/min_k_20", auc - 0.1),
                     ("none", tuning, 1, checkpoint, epoch, None, None, "mia_tpr@1%fpr/loss", 0.01),
                     ("none", tuning, 1, checkpoint, epoch, None, None, "ppl_mean", 20.0 + epoch)]
    return rows


def test_finetuning_table_orders_methods_and_takes_the_last_checkpoint(tmp_path):
    table = finetuning_table(metrics_frame(mia_rows()))
    assert table["tuning"].to_list() == ["full", "lora", "lora_attention", "prefix"]
    full = table.row(0, named=True)
    assert full["epoch"] == 2.0 and full["seeds"] == 1
    assert full["LOSS AUC"] == 0.9 and full["LOSS AUC CI low"] == pytest.approx(0.85)
    assert full["Min-20% AUC"] == pytest.approx(0.8) and full["LOSS TPR@1%FPR"] == 0.01 and full["PPL"] == 22.0
    paper = table["LOSS AUC, paper (Llama-2-7B, WikiText)"].to_list()
    assert paper == [None, 0.787, None, 0.484]  # only the exact paper method names
    first = finetuning_table(metrics_frame(mia_rows()), epoch=1.2)
    assert first["epoch"].unique().to_list() == [1.0] and first["LOSS AUC"][0] == pytest.approx(0.8)
    tex = write_tables(table, tmp_path / "finetuning")[2].read_text()
    assert r"LOSS TPR@1\%FPR" in tex and "0.900" in tex  # AUC columns show 3 decimals


def test_finetuning_table_shows_no_interval_for_several_seeds():
    rows = mia_rows() + [(r[0], r[1], 2, *r[3:]) for r in mia_rows()]
    table = finetuning_table(metrics_frame(rows))
    assert table["seeds"].unique().to_list() == [2]
    assert table["LOSS AUC CI low"].null_count() == table.height


def test_extraction_tables_at_the_last_checkpoint():
    rows = []
    for defense, ter in (("rmft", 1.0), ("none", 3.0)):
        for checkpoint, epoch, factor in (("c01", 1.0, 2.0), ("c02", 2.0, 1.0)):
            for entity_type in ("ALL", "EMAIL_ADDRESS"):
                rows += [(defense, "full", 1, checkpoint, epoch, "test", entity_type, "ter", ter * factor),
                         (defense, "full", 1, checkpoint, epoch, "test", entity_type, "ser", 0.0),
                         (defense, "full", 1, checkpoint, epoch, "test", entity_type, "tegr", 50.0),
                         (defense, "full", 1, checkpoint, epoch, "test", entity_type, "n_true", 12.0)]
            for bucket, rate, n in (("16+", None, 0.0), ("2-3", 20.0 / factor, 5.0), ("1", 10.0, 7.0)):
                rows += [(defense, "full", 1, checkpoint, epoch, "test", "ALL", f"ter_rep/{bucket}", rate),
                         (defense, "full", 1, checkpoint, epoch, "test", "ALL", f"n_rep/{bucket}", n)]
    metrics = metrics_frame(rows)
    by_type = extraction_by_type(metrics)
    assert by_type.select("defense", "entity type").rows() == [
        ("none", "EMAIL_ADDRESS"), ("none", "ALL"), ("rmft", "EMAIL_ADDRESS"), ("rmft", "ALL")]
    assert by_type["TER (%)"].to_list() == [3.0, 3.0, 1.0, 1.0]
    assert by_type["true PII"].dtype == pl.Int64 and by_type["true PII"].to_list() == [12] * 4
    by_repetition = extraction_by_repetition(metrics)
    assert by_repetition.filter(pl.col("defense") == "none").select("repetitions", "true PII", "TER (%)").rows() == [
        ("1", 7, 10.0), ("2-3", 5, 20.0), ("16+", 0, None)]
    assert by_repetition.filter(pl.col("defense") == "rmft").height == 3
