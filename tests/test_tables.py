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
    finetuning_notes,
    finetuning_table,
    latex_escape,
    maxter_curves,
    rmft_table,
    write_tables,
)


def metrics_frame(rows) -> pl.DataFrame:
    """A metrics table from (defense, tuning, seed, checkpoint, epoch, prompt_set, entity_type, metric, value
    [, ci_low, ci_high]) tuples; corpus and base model fixed."""
    full = [("synthetic", "tiny-gpt2", *r[:7], None, *r[7:], *([None, None] if len(r) == 9 else [])) for r in rows]
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
    # MaxTER is 50 from τ = 5 % on and undefined below: AURC 50 over the 31 of 41 grid points that qualify.
    assert rmft["AURC (%)"] == pytest.approx(50.0)
    assert rmft["AURC coverage (%)"] == pytest.approx(100 * 31 / 41) and rmft["min PPL increase (%)"] == 5.0
    # The paper's figures count e-mail addresses: none beside these all-type rows.
    assert rmft["entity type"] == "ALL" and rmft["TER reduction, paper (%)"] is None
    none = csv.row(0, named=True)
    assert none["TER reduction (%)"] is None and none["AURC (%)"] is None and none["TER reduction, paper (%)"] is None


def email_rows(defenses=("none", "rmft")):
    """rmft_rows of e-mail addresses and of names, and all types with twice the TER."""
    rows = []
    base = rmft_rows(tuple(d for d in defenses if d != "rmft_all"))
    if "rmft_all" in defenses:
        base += [("rmft_all", *r[1:]) for r in base if r[0] == "rmft"]
    for r in base:
        if r[6] == "ALL":  # all types: e-mail addresses and as many names
            rows += [(*r[:6], "EMAIL_ADDRESS", *r[7:]), (*r[:6], "PERSON", *r[7:]), (*r[:8], 2 * r[8])]
        else:
            rows.append(r)
    return rows


def test_rmft_table_puts_the_papers_figures_beside_the_paper_scope_rmft_email_rows_only():
    table = rmft_table(metrics_frame(email_rows(("none", "rmft", "rmft_all"))))
    assert table.select("entity type", "defense").rows() == [
        ("EMAIL_ADDRESS", "none"), ("EMAIL_ADDRESS", "rmft"), ("EMAIL_ADDRESS", "rmft_all"),
        ("ALL", "none"), ("ALL", "rmft"), ("ALL", "rmft_all")]
    paper = table["TER reduction, paper (%)"].to_list()
    assert paper == [None, 80.81, None, None, None, None]
    assert table["paper: model, data"][1] == "GPT-2, Enron e-mail; Joshi & Smith"
    assert table["TER (%)"].to_list()[:2] == [2.0, 1.0] and table["TER (%)"].to_list()[3:5] == [4.0, 2.0]


def test_markdown_and_latex_forms(tmp_path):
    paths = write_tables(rmft_table(metrics_frame(rmft_rows())), tmp_path / "rmft")
    md = paths[1].read_text().splitlines()
    assert md[0].startswith("| base model | tuning | prompt set | entity type | defense | TER (%) | SER (%) | "
                            "TEGR (%) | PPL |")
    assert md[1].startswith("| --- | --- | --- | --- | --- | ---: |")
    assert md[3].startswith("| tiny-gpt2 | lora_attention | train-prefix | ALL | rmft | 1.00 | 2.00 | 5.00 | 10.50 | "
                            "50.00 |")
    assert "| – |" in md[2]  # the baseline has no reduction
    tex = paths[2].read_text()
    assert tex.startswith(r"\begin{tabular}{lllll" + "r" * 13 + "l}\n\\toprule\n")
    assert r"TER (\%)" in tex and r"lora\_attention" in tex and r"\bottomrule" in tex
    assert not any(re.search(r"(?<!\\)[%_]", line) for line in tex.splitlines())


def test_constant_context_columns_can_be_left_out_of_md_and_tex_only(tmp_path):
    paths = write_tables(rmft_table(metrics_frame(rmft_rows())), tmp_path / "rmft",
                         drop_constant=("base model", "tuning"))
    assert paths[1].read_text().startswith("| prompt set | entity type | defense |")
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
    assert curves["aurc"].unique().to_list() == [50.0] and curves["coverage"].unique().to_list() == [
        pytest.approx(200 / 3)]
    # A grid that ends below the defense's perplexity cost: AURC undefined, the cost reported instead.
    short = maxter_curves(metrics_frame(rmft_rows()), taus=[0.0, 2.0, 4.0])
    assert short["aurc"].null_count() == 3 and short["coverage"].unique().to_list() == [0.0]
    assert short["min_ppl_increase"].unique().to_list() == [5.0]


def test_without_extraction_metrics_no_extraction_table_is_written(tmp_path):
    utility_only = metrics_frame([r for r in rmft_rows() if r[7] == "ppl_mean"])
    assert rmft_table(utility_only) is None
    assert extraction_by_type(utility_only) is None
    assert extraction_by_repetition(utility_only) is None
    assert finetuning_table(utility_only) is None
    assert write_tables(None, tmp_path / "rmft") == []
    # Only the claims table is written, every claim "not testable".
    assert [p.name for p in build_tables(utility_only, tmp_path / "tables")] == ["claims.csv", "claims.md",
                                                                               "claims.tex"]
    assert not (tmp_path / "rmft.csv").exists()


def mia_rows():
    rows = []
    for tuning, auc in (("prefix", 0.5), ("full", 0.9), ("lora_attention", 0.7), ("lora", 0.8)):
        for checkpoint, epoch, shift in (("c01", 1.0, -0.1), ("c02", 2.0, 0.0)):
            rows += [("none", tuning, 1, checkpoint, epoch, None, None, "mia_auc/loss", auc + shift, auc - 0.05,
                      auc + 0.05),
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
    # The paper measured no tiny GPT-2: no paper number beside these runs.
    assert table["LOSS AUC, paper"].null_count() == table.height
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


def test_finetuning_table_labels_paper_numbers_with_their_model_and_flags_runs_that_did_not_learn(tmp_path):
    rows = []
    for tuning, auc, ppl in (("full", 0.7, 12.0), ("prompt", 0.5, 30.0)):
        for checkpoint, epoch in (("c05", 5.0), ("c15", 15.0)):
            rows += [("none", tuning, 1, checkpoint, epoch, None, None, "mia_auc/loss", auc + epoch / 100),
                     ("none", tuning, 1, checkpoint, epoch, None, None, "ppl_mean", ppl),
                     ("none", tuning, 1, checkpoint, epoch, None, None, "ppl_base", 25.0)]
    metrics = metrics_frame(rows).with_columns(base_model=pl.lit("openai-community--gpt2"))
    table = finetuning_table(metrics, epoch=5)
    assert table["epoch"].to_list() == [5.0, 5.0] and table["LOSS AUC"].to_list() == pytest.approx([0.75, 0.55])
    assert table["LOSS AUC, paper"].to_list() == ["0.601", "0.48–0.50"]
    assert table["paper: model, data"].to_list() == ["GPT-2, WikiText-2; Hou et al., Table 3"] * 2
    assert table["PPL base"].to_list() == [25.0, 25.0]
    notes = finetuning_notes(table)
    assert len(notes) == 2 and notes[1].startswith("Not learnt: openai-community--gpt2 none-prompt ends at PPL 30.00")
    md = write_tables(table, tmp_path / "finetuning", notes=notes)[1].read_text()
    assert "Note: Not learnt: openai-community--gpt2 none-prompt" in md
    assert finetuning_table(metrics)["epoch"].to_list() == [15.0, 15.0]  # no epoch: the last checkpoint
    # Llama-2-7B gets Table 2 (no full fine-tuning there); any other model no paper number.
    llama = finetuning_table(metrics.with_columns(base_model=pl.lit("meta-llama--Llama-2-7b-hf")))
    assert llama["LOSS AUC, paper"].to_list() == [None, "0.478"]


def test_finetuning_table_shows_the_trained_text_view_of_defended_runs():
    rows = [("rmft", "full", 1, "c01", 1.0, None, None, "mia_auc/loss", 0.46),
            ("rmft", "full", 1, "c01", 1.0, None, None, "ppl_mean", 12.0)]
    metrics = metrics_frame(rows).with_columns(
        member_text=pl.when(pl.col("metric").str.starts_with("mia")).then(pl.lit("original")))
    trained = metrics.filter(pl.col("metric") == "mia_auc/loss").with_columns(member_text=pl.lit("trained"),
                                                                                value=pl.lit(0.58))
    table = finetuning_table(pl.concat([metrics, trained]))
    assert table.height == 1 and table["LOSS AUC"][0] == 0.46 and table["LOSS AUC, trained text"][0] == 0.58
