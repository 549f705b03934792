"""Figures (piimem.plots): files written, readable, reproducible; absent data writes nothing."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_tables import metrics_frame, mia_rows, rmft_rows

from piimem import plots
from piimem.aggregate import METRICS_SCHEMA

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def full_metrics() -> pl.DataFrame:
    """Extraction, utility, MIA and canary metrics of two defenses, two seeds each."""
    rows = []
    for seed in (1, 2):
        rows += [(d, t, seed, c, e, p, et, m, v + seed / 10) for d, t, _, c, e, p, et, m, v in rmft_rows(tuning="full")]
    for defense in ("none", "rmft"):
        for seed in (1, 2):
            for checkpoint, epoch in (("c01", 1.0), ("c02", 2.0)):
                for bucket, rate in (("1", 5.0), ("2-3", 10.0), ("4-7", None)):
                    at = (defense, "full", seed, checkpoint, epoch, "train-prefix", "ALL")
                    rows += [(*at, f"ter_rep/{bucket}", rate), (*at, f"n_rep/{bucket}", 4.0)]
                for planted, exposure in ((1, 1.0), (10, 4.0), (100, 9.0)):
                    at = (defense, "full", seed, checkpoint, epoch, None, "US_SSN")
                    rows += [(*at, f"canary_exposure/{planted}", exposure / (2 if defense == "rmft" else 1)),
                             (*at, f"canary_max_exposure/{planted}", 10.0)]
                rows.append((defense, "full", seed, checkpoint, epoch, None, None, "mia_auc/loss", 0.6, 0.55, 0.65))
    return metrics_frame(rows)


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
    lambda m, stem: plots.plot_metrics_by_checkpoint(m, stem),
    lambda m, stem: plots.plot_maxter(m, stem),
    lambda m, stem: plots.plot_mia_auc(m, stem),
    lambda m, stem: plots.plot_extraction_by_repetition(m, stem),
    lambda m, stem: plots.plot_canary_exposure(m, stem),
    lambda m, stem: plots.plot_privacy_utility(m, stem, privacy="ter"),
    lambda m, stem: plots.plot_privacy_utility(m, stem, privacy="mia_auc/loss"),
], ids=["by_checkpoint", "maxter", "mia_auc", "by_repetition", "canaries", "privacy_ter", "privacy_auc"])
def test_metric_figures_are_written(tmp_path, draw):
    stem = tmp_path / "figures" / "figure"
    assert_figure(draw(full_metrics(), stem), stem)


def test_mia_figure_of_several_tuning_methods(tmp_path):
    stem = tmp_path / "mia"
    assert_figure(plots.plot_mia_auc(metrics_frame(mia_rows()), stem), stem)


def test_score_figures_are_written(tmp_path):
    stem = tmp_path / "roc"
    assert_figure(plots.plot_roc_curves(scores_table(), stem, title="none-full-s1 c02"), stem)
    path = tmp_path / "scores.parquet"
    scores_table(seed=1).write_parquet(path)
    stem = tmp_path / "losses"
    assert_figure(plots.plot_loss_distributions({"pre-trained": scores_table(), "none-full-s1": path}, stem), stem)


def test_figures_are_byte_for_byte_reproducible(tmp_path):
    first = plots.plot_maxter(full_metrics(), tmp_path / "a")
    second = plots.plot_maxter(full_metrics(), tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_absent_data_writes_nothing(tmp_path):
    empty = pl.DataFrame(schema=METRICS_SCHEMA)
    utility_only = full_metrics().filter(pl.col("metric") == "ppl_mean")
    single_defense = full_metrics().filter(pl.col("defense") == "none")
    assert plots.plot_metrics_by_checkpoint(empty, tmp_path / "a") == []
    assert plots.plot_maxter(utility_only, tmp_path / "b") == []
    assert plots.plot_maxter(single_defense, tmp_path / "c") == []
    assert plots.plot_mia_auc(utility_only, tmp_path / "d") == []
    assert plots.plot_extraction_by_repetition(utility_only, tmp_path / "e") == []
    assert plots.plot_canary_exposure(utility_only, tmp_path / "f") == []
    assert plots.plot_privacy_utility(utility_only, tmp_path / "g") == []
    assert plots.plot_roc_curves(scores_table().head(0), tmp_path / "h") == []
    assert plots.plot_loss_distributions({}, tmp_path / "i") == []
    assert plots.build_figures(empty, tmp_path / "j") == []
    assert list(tmp_path.iterdir()) == []


def test_build_figures_writes_only_what_has_data(tmp_path):
    metrics = full_metrics().filter(~pl.col("metric").str.starts_with("canary"))
    paths = plots.build_figures(metrics, tmp_path, roc_scores=scores_table())
    stems = sorted({p.stem for p in paths})
    assert stems == sorted(set(plots.FIGURE_STEMS) - {"canary_exposure", "loss_distributions"})
    assert all(p.exists() for p in paths)


def test_a_score_table_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="member"):
        plots.plot_roc_curves(scores_table().drop("member"), tmp_path / "roc")
