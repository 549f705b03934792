"""Paper tables (piimem.report.tables) and their formats (piimem.report.formats): every number with its
interval or counts, headers that say which checkpoint, SER left out where it is TER."""

from __future__ import annotations

import re

import polars as pl
import pytest
from report_data import comparisons_of, messages, metric_row, scores, strings, targets

from piimem.report.formats import display, frame, latex_escape, to_markdown, write_tables
from piimem.report.tables import (
    build_tables,
    extraction_by_repetition,
    extraction_by_type,
    finetuning_notes,
    finetuning_table,
    rmft_notes,
    rmft_table,
    targeted_table,
)

NONE, RMFT = [range(20), range(30), range(40)], [range(5), range(10), range(15)]


def rmft_parts(defenses=("none", "rmft"), entity_type="EMAIL_ADDRESS"):
    ter = {"none": NONE, "rmft": RMFT, "rmft_all": RMFT, "dedup": [range(10)] * 3}
    ppl = {"none": [20.0, 18.0, 17.0], "rmft": [21.1, 19.1, 18.6], "rmft_all": [22.0, 20.0, 19.0],
           "dedup": [26.0, 23.0, 22.0]}
    return [p for d in defenses for p in (strings(d, ter[d], entity_type=entity_type), messages(d, ppl[d]))]


def test_rmft_table_reads_every_number_and_interval_from_the_comparisons(tmp_path):
    metrics, comparisons = comparisons_of(*rmft_parts())
    table = rmft_table(metrics, comparisons)
    assert table["defense"].to_list() == ["none", "rmft"]
    rmft = table.row(1, named=True)
    assert rmft["TER (%), mean over checkpoints"] == pytest.approx(10.0)
    assert (rmft["strings extracted k"], rmft["strings extracted n"]) == (15, 100)
    assert rmft["TER reduction (%)"] == pytest.approx(66.667, abs=1e-3)
    assert rmft["TER reduction (%) CI low"] < 66.7 < rmft["TER reduction (%) CI high"]
    assert rmft["PPL increase (%)"] == pytest.approx(100 * (19.6 - 55 / 3) / (55 / 3), abs=1e-6)
    assert rmft["AURC (%)"] is not None and rmft["AURC coverage (%)"] > 0
    assert rmft["TER reduction, paper (%)"] == 80.81
    assert rmft["paper: model, data"] == "GPT-2, Enron e-mail; Joshi & Smith"
    # S_c = O at every checkpoint: SER is TER, so its columns are left out and a note says why.
    assert not [c for c in table.columns if c.startswith("SER")]
    assert any("SER is left out" in note for note in rmft_notes(metrics, table))
    none = table.row(0, named=True)
    assert none["TER reduction (%)"] is None and none["TER reduction, paper (%)"] is None


def test_ser_stays_where_it_differs_from_ter():
    # Half the strings are seen by the first checkpoint (a checkpoint inside the first epoch).
    seen = [range(50), range(100), range(100)]
    parts = [strings("none", NONE, seen=seen), strings("rmft", RMFT, seen=seen), messages("none", [20, 18, 17]),
             messages("rmft", [21, 19, 18])]
    table = rmft_table(*comparisons_of(*parts))
    ser = table["SER (%), mean over checkpoints"].to_list()
    assert ser[0] == pytest.approx((40 + 30 + 40) / 3)  # 20 of 50 seen, then 30 and 40 of 100
    assert table["SER reduction (%)"][1] is not None


def test_the_paper_column_stands_beside_paper_scope_rmft_email_rows_only():
    metrics, comparisons = comparisons_of(*rmft_parts(("none", "rmft", "rmft_all")))
    table = rmft_table(metrics, comparisons)
    assert table["TER reduction, paper (%)"].to_list() == [None, 80.81, None]


def test_markdown_and_latex_fold_intervals_and_counts_into_cells(tmp_path):
    metrics, comparisons = comparisons_of(*rmft_parts())
    paths = write_tables(rmft_table(metrics, comparisons), tmp_path / "rmft", drop_constant=("base model", "tuning"),
                         notes=["a note"])
    md = paths[1].read_text().splitlines()
    assert md[0].startswith("| prompt set | entity type | defense | strings extracted (k of n) | TER (%), mean over "
                            "checkpoints | PPL, mean over checkpoints | TER reduction (%) |")
    assert re.match(r"\| train-prefix \| EMAIL_ADDRESS \| rmft \| 15 of 100 \| 10\.00 \[\d+\.\d\d, \d+\.\d\d\] \|",
                    md[3])
    assert md[-1] == "Note: a note"
    csv = pl.read_csv(paths[0])
    assert "TER (%), mean over checkpoints CI low" in csv.columns and "base model" in csv.columns
    tex = paths[2].read_text()
    assert r"TER (\%), mean over checkpoints" in tex and r"15 of 100" in tex and r"\bottomrule" in tex
    assert not any(re.search(r"(?<!\\)[%_]", line) for line in tex.splitlines())


def test_display_of_seed_intervals_and_missing_values():
    table = frame([{"name": "a", "X": 1.0, "X CI low": 0.5, "X CI high": 1.5, "X seeds CI low": 0.1,
                    "X seeds CI high": 1.9, "X k": 3, "X n": 9},
                   {"name": "b", "X": None, "X CI low": None, "X CI high": None, "X seeds CI low": None,
                    "X seeds CI high": None, "X k": None, "X n": None}], text_columns=["name"])
    headers, rows, numeric = display(table)
    assert headers == ["name", "X", "X (k of n)"] and numeric == [False, True, True]
    assert rows == [["a", "1.00 [0.50, 1.50]; seeds [0.10, 1.90]", "3 of 9"], ["b", None, None]]
    assert "| b | – | – |" in to_markdown(table)


def test_latex_escape_covers_the_special_characters():
    assert latex_escape(r"a_b 5% $x #1 {y} & ~ ^ \ ") == (
        r"a\_b 5\% \$x \#1 \{y\} \& \textasciitilde{} \textasciicircum{} \textbackslash{} ")


def test_extraction_tables_at_the_last_checkpoint_carry_exact_intervals_and_counts():
    import numpy as np

    occurrences = np.repeat([1, 2, 4, 8, 16], 20)
    metrics, _ = comparisons_of(strings("none", NONE, occurrences=occurrences), strings("rmft", RMFT))
    # ter_rep rows as the extraction stage writes them (k of n per bucket)
    rows = [metric_row("ter_rep/1", 100 * 7 / 20, checkpoint="c03", epoch=3.0, prompt_set="train-prefix",
                       entity_type="ALL", k=7, n=20),
            metric_row("ter_rep/16+", 0.0, checkpoint="c03", epoch=3.0, prompt_set="train-prefix", entity_type="ALL",
                       k=0, n=20)]
    from piimem.aggregate import with_exact_intervals

    metrics = pl.concat([metrics, with_exact_intervals(pl.DataFrame(rows, schema=metrics.schema))])
    by_type = extraction_by_type(metrics)
    assert by_type.select("defense", "entity type").rows() == [("none", "EMAIL_ADDRESS"), ("none", "ALL"),
                                                               ("rmft", "EMAIL_ADDRESS"), ("rmft", "ALL")]
    none = by_type.row(0, named=True)
    assert none["TER (%), last checkpoint"] == 40.0 and (none["TER k"], none["TER n"]) == (40, 100)
    assert not [c for c in by_type.columns if "O_ft" in c]  # no ter_ft rows: pre-training data unknown
    assert none["TER (%), last checkpoint CI low"] == pytest.approx(30.33, abs=0.01)  # 40 of 100, exact
    assert not [c for c in by_type.columns if c.startswith("SER")]  # SER = TER on every row
    ft = metric_row("ter_ft", 25.0, checkpoint="c03", epoch=3.0, prompt_set="train-prefix",
                    entity_type="EMAIL_ADDRESS", k=20, n=80)
    with_ft = extraction_by_type(pl.concat([metrics, with_exact_intervals(pl.DataFrame([ft], schema=metrics.schema))]))
    assert with_ft.row(0, named=True)["TER over O_ft (%), last checkpoint"] == 25.0
    assert with_ft.row(0, named=True)["TER over O_ft k"] == 20 and with_ft.row(2, named=True)["TER over O_ft k"] is None
    repetition = extraction_by_repetition(metrics)
    assert repetition.select("repetitions", "TER k", "TER n").rows() == [("1", 7, 20), ("16+", 0, 20)]
    assert repetition["TER (%), last checkpoint CI high"][1] == pytest.approx(16.84, abs=0.01)  # 0 of 20


def test_several_seeds_show_their_mean_and_t_interval_with_pooled_counts():
    parts = [strings("none", [range(10 + s)] * 3, seed=s) for s in (1, 2, 3)]
    metrics, _ = comparisons_of(*parts)
    row = extraction_by_type(metrics).row(0, named=True)
    assert row["TER (%), last checkpoint"] == pytest.approx(12.0)
    assert "TER (%), last checkpoint CI low" not in row  # intervals of different seeds do not average
    assert row["TER (%), last checkpoint seeds CI low"] == pytest.approx(12 - 4.302653 * 1 / 3 ** 0.5, abs=1e-4)
    assert (row["TER k"], row["TER n"]) == (36, 300)


def test_finetuning_table_at_the_table_epoch_with_intervals():
    parts = [scores("full", [0.3, 0.9, 1.5]), scores("prompt", [0.0, 0.0, 0.1]),
             messages("none", [20, 18, 17]), messages("none", [40, 39, 38], tuning="prompt", base_ppl=30.0)]
    metrics, comparisons = comparisons_of(*parts)
    table = finetuning_table(metrics, comparisons)
    assert table["tuning"].to_list() == ["full", "prompt"]
    full = table.row(0, named=True)
    assert full["epoch"] == 3.0 and full["members"] is None  # counts come with real MIA files only
    assert full["LOSS AUC, last checkpoint CI low"] < full["LOSS AUC, last checkpoint"]
    assert full["PPL"] == pytest.approx(17.0) and full["PPL CI low"] < 17.0 < full["PPL CI high"]
    assert full["PPL base"] == pytest.approx(50.0)
    at_two = finetuning_table(metrics, comparisons, epoch=2.2)
    assert at_two["epoch"].unique().to_list() == [2.0] and "LOSS AUC, epoch 2.2" in at_two.columns
    notes = finetuning_notes(table)
    assert any(n.startswith("Not learnt: tiny-gpt2 none-prompt ends at PPL 38.00") for n in notes)


def test_finetuning_table_labels_paper_numbers_with_their_model():
    parts = [scores("full", [0.3] * 3, base="openai-community--gpt2"), scores("prompt", [0.0] * 3,
                                                                                base="openai-community--gpt2")]
    table = finetuning_table(*comparisons_of(*parts))
    assert table["LOSS AUC, paper"].to_list() == ["0.601", "0.48–0.50"]
    assert table["paper: model, data"].to_list() == ["GPT-2, WikiText-2; Hou et al., Table 3"] * 2


def test_without_extraction_only_the_membership_tables_are_written(tmp_path):
    metrics, comparisons = comparisons_of(messages("none", [20, 18, 17]), scores("full", [0.5] * 3))
    assert rmft_table(metrics, comparisons) is None and extraction_by_type(metrics) is None
    assert write_tables(None, tmp_path / "rmft") == []
    names = sorted(p.name for p in build_tables(metrics, comparisons, tmp_path / "tables"))
    assert names == sorted(f"{t}.{e}" for t in ("claims", "finetuning") for e in ("csv", "md", "tex", "html"))


def test_html_tables_carry_the_cells_title_and_notes_and_are_the_same_every_time(tmp_path):
    metrics, comparisons = comparisons_of(messages("none", [20, 18, 17]), scores("full", [0.5] * 3))
    build_tables(metrics, comparisons, tmp_path / "a", scored_tokens=128)
    build_tables(metrics, comparisons, tmp_path / "b", scored_tokens=128)
    page = (tmp_path / "a" / "finetuning.html").read_text()
    assert page == (tmp_path / "b" / "finetuning.html").read_text()  # no random element ids
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page  # self-contained, static
    assert "The fine-tuning-methods study" in page and "first 128 tokens" in page
    md = (tmp_path / "a" / "finetuning.md").read_text().splitlines()
    headers = [h.strip() for h in md[0].strip("|").split("|")]
    cells = [c.strip() for c in md[2].strip("|").split("|")]
    cell = cells[headers.index("LOSS AUC, last checkpoint")]  # with its interval, as md shows it
    assert cell.startswith("0.") and "[" in cell and cell in page
    assert "paper" not in md[0]  # no paper figure for a tiny GPT-2: the empty columns are left out


def test_shown_targeted_table_folds_what_says_nothing():
    from piimem.report.tables import fold_targeted

    metrics, table = comparisons_of(targets("none", range(60), base_correct=range(10)),
                                    targets("rmft", range(30), base_correct=range(10)),
                                    targets("none", [], attack="reconstruction"),
                                    targets("rmft", [], attack="reconstruction"))
    full = targeted_table(metrics, table)
    assert set(full["attack"]) == {"PII inference", "PII reconstruction"}
    # O_ft columns over the same targets as the main ones (nothing in the pre-training data)
    full = full.with_columns(**{c.replace("accuracy", "accuracy over O_ft"): pl.col(c) for c in full.columns
                                if c.startswith("accuracy")})
    shown, notes = fold_targeted(full)
    assert set(shown["attack"]) == {"PII inference"} and not [c for c in shown.columns if "O_ft" in c]
    assert any("PII reconstruction" in n and "0 right everywhere" in n for n in notes)
    assert any("O_ft" in n for n in notes)
    # where the pre-training data holds some targets, O_ft has fewer of them: its columns stay
    fewer = full.with_columns(pl.col("accuracy over O_ft n") - 10)
    assert [c for c in fold_targeted(fewer)[0].columns if "O_ft" in c]


def test_shown_rmft_table_gives_the_paper_a_row_of_its_own():
    from piimem.report.tables import fold_rmft

    metrics, comparisons = comparisons_of(*rmft_parts())
    full = rmft_table(metrics, comparisons)
    shown, _ = fold_rmft(full)
    assert not [c for c in shown.columns if "paper" in c]
    paper = shown.filter(pl.col("defense").str.starts_with("paper: "))
    assert paper.height == full["paper: model, data"].drop_nulls().len() >= 1
    assert paper["TER reduction (%)"].to_list()[0] == 80.81 and paper["PPL increase (%)"].to_list()[0] == 5.73
    position = shown["defense"].to_list().index(paper["defense"][0])
    assert shown["defense"][position - 1] == "rmft"  # right after the row it stands beside


def test_targeted_table_beside_the_base_model_with_paired_drops():
    metrics, table = comparisons_of(targets("none", range(60), base_correct=range(10), pretrained=range(100)),
                                    targets("rmft", range(30), base_correct=range(10), pretrained=range(100)))
    targeted = targeted_table(metrics, table)
    assert targeted.select("attack", "entity type", "defense").rows() == [
        ("PII inference", "EMAIL_ADDRESS", "none"), ("PII inference", "EMAIL_ADDRESS", "rmft")]
    none, rmft = targeted.rows(named=True)
    assert none["accuracy (%)"] == 30.0 and (none["accuracy k"], none["accuracy n"]) == (60, 200)
    assert none["base model (%)"] == 5.0 and none["gain over base model (points)"] == pytest.approx(25.0)
    assert none["drop vs none (points)"] is None
    assert rmft["drop vs none (points)"] == pytest.approx(15.0)
    assert 0 < rmft["drop vs none (points) CI low"] < 15 < rmft["drop vs none (points) CI high"]
    assert rmft["drop p (McNemar)"] < 1e-8  # 30 targets only none gets right, none only rmft
    assert rmft["O_ft drop vs none (points)"] == 0.0  # both runs' hits are pre-trained targets
    assert targeted_table(metrics.filter(pl.col("metric") == "ter"), table) is None
