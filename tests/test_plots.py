"""Figures (piimem.report.figures): files written, readable, reproducible; absent data writes nothing."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pytest
from report_data import comparisons_of, messages, metric_row, scores, strings, targets

from piimem.aggregate import METRICS_SCHEMA, with_exact_intervals
from piimem.report import figures as plots
from piimem.report.comparisons import COMPARISON_SCHEMA

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@cache
def full_data() -> tuple[pl.DataFrame, pl.DataFrame]:
    """(metrics, comparisons) of two defenses with extraction, utility and MIA, two seeds each, plus
    repetition buckets and canaries."""
    parts = []
    for seed in (1, 2):
        parts += [strings("none", [range(20), range(30), range(40)], seed=seed),
                  strings("rmft", [range(5), range(8 + seed), range(12)], seed=seed),
                  messages("none", [20, 18, 17], seed=seed), messages("rmft", [21, 19.1, 18.2], seed=seed),
                  scores("full", [0.3, 0.6, 0.9], seed=seed), scores("full", [0.2, 0.4, 0.5], seed=seed,
                                                                     defense="rmft"),
                  targets("none", range(40 + seed), base_correct=range(5), seed=seed),
                  targets("rmft", range(20), base_correct=range(5), seed=seed)]
    metrics, comparisons = comparisons_of(*parts)
    rows = []
    for defense in ("none", "rmft"):
        for seed in (1, 2):
            for checkpoint, epoch in (("c01", 1.0), ("c02", 2.0), ("c03", 3.0)):
                where = dict(defense=defense, seed=seed, checkpoint=checkpoint, epoch=epoch)
                for bucket, k in (("1", 2), ("2-3", 5), ("4-7", None)):
                    rows.append(metric_row(f"ter_rep/{bucket}", None if k is None else 100 * k / 20, k=k,
                                           n=None if k is None else 20, prompt_set="train-prefix",
                                           entity_type="ALL", **where))
                rows += [metric_row("val_ppl_mean", 30 - 3 * epoch - seed + (defense == "rmft"), **where),
                         metric_row("val_ppl_base", 30.0, **where)]
                for planted, exposure in ((1, 1.0), (10, 4.0), (100, 9.0)):
                    rows += [metric_row(f"canary_exposure/{planted}", exposure / (2 if defense == "rmft" else 1),
                                        entity_type="US_SSN", **where),
                             metric_row(f"canary_exposure_extrapolated/{planted}",
                                        3 * exposure / (2 if defense == "rmft" else 1), entity_type="US_SSN",
                                        ci=(exposure, 5 * exposure), **where),
                             metric_row(f"canary_max_exposure/{planted}", 10.0, entity_type="US_SSN", **where)]
    extra = with_exact_intervals(pl.DataFrame(rows, schema=METRICS_SCHEMA))
    return pl.concat([metrics, extra]), comparisons


def scores_table(n: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    member = np.arange(n) < n // 2
    nll = rng.normal(2.0, 0.5, n) - 0.4 * member
    return pl.DataFrame({"index": np.arange(n), "member": member, "n_tokens": np.full(n, 50), "nll_mean": nll,
                         "loss": -nll, "zlib": -nll / 3 + rng.normal(0, 0.1, n),
                         "min_k_20": np.where(np.arange(n) == 0, np.nan, -nll)})


def assert_figure(paths, stem):
    assert [p.name for p in paths] == [stem.name + ".png", stem.name + ".pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5000
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf


@pytest.mark.parametrize("draw", [
    lambda m, c, stem: plots.plot_metrics_by_checkpoint(m, stem, c),
    lambda m, c, stem: plots.plot_maxter(c, stem),
    lambda m, c, stem: plots.plot_mia_auc(m, stem),
    lambda m, c, stem: plots.plot_extraction_by_repetition(m, stem),
    lambda m, c, stem: plots.plot_canary_exposure(m, stem),
    lambda m, c, stem: plots.plot_privacy_utility(m, stem, privacy="ter"),
    lambda m, c, stem: plots.plot_privacy_utility(m, stem, privacy="mia_auc/loss"),
    lambda m, c, stem: plots.plot_targeted_attacks(m, stem),
], ids=["by_checkpoint", "maxter", "mia_auc", "by_repetition", "canaries", "privacy_ter", "privacy_auc",
        "targeted"])
def test_metric_figures_are_written(tmp_path, draw):
    stem = tmp_path / "figures" / "figure"
    assert_figure(draw(*full_data(), stem), stem)


def test_one_seed_draws_each_checkpoints_interval(tmp_path):
    metrics, comparisons = full_data()
    one_seed = metrics.filter(pl.col("seed") == 1)
    stem = tmp_path / "one"
    assert_figure(plots.plot_metrics_by_checkpoint(one_seed, stem, comparisons), stem)
    expected = "none extracted train-prefix: 40 of 100 strings (last checkpoint)"
    assert plots._baseline_strings(one_seed, "ALL") == expected


def test_score_figures_are_written(tmp_path):
    stem = tmp_path / "roc"
    assert_figure(plots.plot_roc_curves(scores_table(), stem, title="none-full-s1 c02"), stem)
    path = tmp_path / "scores.parquet"
    scores_table(seed=1).write_parquet(path)
    stem = tmp_path / "losses"
    assert_figure(plots.plot_loss_distributions({"pre-trained": scores_table(), "none-full-s1": path}, stem), stem)


def test_figures_are_byte_for_byte_reproducible(tmp_path):
    first = plots.plot_maxter(full_data()[1], tmp_path / "a")
    second = plots.plot_maxter(full_data()[1], tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_absent_data_writes_nothing(tmp_path):
    empty = pl.DataFrame(schema=METRICS_SCHEMA)
    metrics, comparisons = full_data()
    utility_only = metrics.filter(pl.col("metric") == "ppl_mean")
    assert plots.plot_metrics_by_checkpoint(empty, tmp_path / "a") == []
    assert plots.plot_maxter(comparisons.filter(pl.col("quantity") != "maxter"), tmp_path / "b") == []
    assert plots.plot_maxter(None, tmp_path / "c") == []
    assert plots.plot_mia_auc(utility_only, tmp_path / "d") == []
    assert plots.plot_extraction_by_repetition(utility_only, tmp_path / "e") == []
    assert plots.plot_canary_exposure(utility_only, tmp_path / "f") == []
    assert plots.plot_privacy_utility(utility_only, tmp_path / "g") == []
    assert plots.plot_auc_by_val_ppl(utility_only, tmp_path / "g2") == []
    assert plots.plot_roc_curves(scores_table().head(0), tmp_path / "h") == []
    assert plots.plot_loss_distributions({}, tmp_path / "i") == []
    assert plots.build_figures(empty, pl.DataFrame(schema=COMPARISON_SCHEMA), tmp_path / "j") == []
    assert list(tmp_path.iterdir()) == []


def test_canary_exposure_of_one_seed_draws_the_cells_intervals(tmp_path):
    rows = []
    for defense in ("none", "rmft"):
        for planted, exposure in ((1, 1.0), (4, 3.0), (16, 60.0)):  # past ten times the ceiling: a log axis
            for entity_type in ("EMAIL_ADDRESS", "US_SSN"):
                rows += [metric_row(f"canary_exposure/{planted}", min(exposure, 6.6), defense=defense,
                                    entity_type=entity_type, ci=(0.5 * exposure, 6.6)),
                         metric_row(f"canary_exposure_extrapolated/{planted}", exposure, defense=defense,
                                    entity_type=entity_type, ci=(0.5 * exposure, 2 * exposure)),
                         metric_row(f"canary_max_exposure/{planted}", 6.6, defense=defense, entity_type=entity_type)]
    one_seed = pl.DataFrame(rows, schema=METRICS_SCHEMA)
    assert_figure(plots.plot_canary_exposure(one_seed, tmp_path / "canaries"), tmp_path / "canaries")
    # the rank exposure alone (files of an older run): still a figure
    rank_only = one_seed.filter(~pl.col("metric").str.starts_with("canary_exposure_extrapolated"))
    assert_figure(plots.plot_canary_exposure(rank_only, tmp_path / "rank"), tmp_path / "rank")


def test_build_figures_writes_only_what_has_data(tmp_path):
    metrics, comparisons = full_data()
    metrics = metrics.filter(~pl.col("metric").str.starts_with("canary"))
    paths = plots.build_figures(metrics, comparisons, tmp_path, roc_scores=scores_table())
    stems = sorted({p.stem for p in paths})
    assert stems == sorted(set(plots.FIGURE_STEMS) - {"canary_exposure", "loss_distributions"})
    assert all(p.exists() for p in paths)


def test_a_score_table_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="member"):
        plots.plot_roc_curves(scores_table().drop("member"), tmp_path / "roc")
