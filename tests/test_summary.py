"""The summary (piimem.report.summary): one line per question, read from the claims, with the effect, its
interval, the verdict, and what would decide an undecided one; written as md and html."""

from __future__ import annotations

import numpy as np
import polars as pl
from report_data import comparisons_of, messages, scores, strings, targets

from piimem.report.summary import COLUMNS, QUESTIONS, run_context, summary_table, write_summary


def _runs():
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 5.6, 300)
    occurrences = rng.integers(1, 6, 300)
    return comparisons_of(
        strings("none", [range(3)] * 3, n=661), strings("rmft", [[0]] * 3, n=661),
        messages("none", [20.0, 18.0, 17.0]), messages("rmft", [21.1, 19.1, 18.6]),
        targets("none", range(16), n=300, exposure=base + 0.2 * np.log2(occurrences), occurrences=occurrences),
        targets("rmft", range(14), n=300, exposure=base - 0.12 + rng.normal(0, 0.5, 300), occurrences=occurrences),
        scores("full", [0.6, 1.2, 1.8]), scores("prompt", [0.0, 0.02, 0.01]))


def test_one_line_per_question_the_runs_answer():
    table = summary_table(*_runs())
    assert table.columns == list(COLUMNS)
    asked = table["question"].to_list()
    assert asked == [q.text for q in QUESTIONS if q.text in asked]  # the registry's order
    assert not [q for q in asked if "DP-SGD" in q]  # no dp run: no DP line
    line = dict(table.filter(pl.col("question").str.contains("exposure of the true")).row(0, named=True))
    assert line["answer"] == "holds" and line["effect [95 % CI]"].endswith("(drop, bits)")
    assert "[" in line["effect [95 % CI]"] and "p = " in line["why, or what would decide it"]
    ter = dict(table.filter(pl.col("question").str.contains("how much plain fine-tuning extracts")).row(0, named=True))
    assert ter["answer"] == "inconclusive"
    assert "Would need: about" in ter["why, or what would decide it"] and "of 661" in ter["why, or what would decide it"]


def test_written_as_markdown_and_a_self_contained_html_page(tmp_path):
    context = run_context("synthetic", ["tiny-gpt2"], 2, 3, [42])
    assert context == "synthetic corpus, tiny-gpt2, 2 runs, 3 checkpoints each, seed 42"
    md, html, rst = write_summary(*_runs(), tmp_path, context=context)
    text = md.read_text()
    assert text.startswith("# What the runs show\n\nsynthetic corpus") and "| question | answer |" in text
    assert text.count("\n| ") <= 2 + len(QUESTIONS) + 1  # one screen: a header, a rule, a line per question
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "What the runs show" in page and "<script" not in page
    assert "Does RMFT lower the exposure of the true training addresses?" in page
    # the report's landing page: a list, one line per question, its answer first
    lines = rst.read_text().splitlines()
    assert lines[0].startswith("**What the runs show** (synthetic corpus")
    assert [line.split("**")[1] for line in lines[2:]] == summary_table(*_runs())["answer"].to_list()
