"""Figures (piimem.report.figures): what each figure plots (its studies, series, colours, intervals, reference
lines and labels, read back from the matplotlib axes), files written and reproducible, absent data writes
nothing."""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
import pytest
from matplotlib.colors import to_hex
from report_data import comparisons_of, messages, metric_row, scores, strings, targets

from piimem.aggregate import METRICS_SCHEMA, with_exact_intervals
from piimem.defense import DEFENSES
from piimem.report import figures as plots
from piimem.report.comparisons import COMPARISON_SCHEMA
from piimem.report.select import TUNING_ORDER

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFENDED = ("none", "dedup", "rmft")  # the RMFT study: full fine-tuning under each defense
METHODS = ("full", "lora", "prompt")  # the methods study: the undefended runs by tuning method
EXPOSURE = {"none": 40, "dedup": 30, "rmft": 20}  # targets PII inference gets right, per defense


def _exposure_rows(defense: str, right: int, seed: int, n: int = 200) -> list[dict]:
    """pii_inference_exposure and its base, as aggregated from `targets` (3 bits if right, else 0.5)."""
    where = dict(defense=defense, seed=seed, checkpoint="c03", epoch=3.0, entity_type="EMAIL_ADDRESS")
    return [metric_row("pii_inference_exposure", (3 * right + 0.5 * (n - right)) / n, **where),
            metric_row("pii_inference_exposure_base", (3 * 5 + 0.5 * (n - 5)) / n, **where),
            metric_row("pii_inference_candidates", 50.0, **where)]


@cache
def full_data(seeds: tuple[int, ...] = (1, 2)) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(metrics, comparisons) of both studies: none, dedup and rmft with full fine-tuning (extraction,
    utility, MIA, targeted attacks, repetition buckets, canaries, validation PPL) and the undefended lora and
    prompt runs (utility, MIA, validation PPL)."""
    parts, rows = [], []
    for seed in seeds:
        parts += [strings("none", [range(20), range(30), range(40)], seed=seed),
                  strings("dedup", [range(10), range(12), range(15)], seed=seed),
                  strings("rmft", [range(5), range(8 + seed), range(12)], seed=seed),
                  messages("none", [20, 18, 17], seed=seed), messages("dedup", [20.5, 18.2, 17.1], seed=seed),
                  messages("rmft", [21, 19.1, 18.2], seed=seed),
                  messages("none", [40, 38, 37], tuning="lora", seed=seed),
                  messages("none", [60, 58, 57], tuning="prompt", seed=seed),
                  scores("full", [0.3, 0.6, 0.9], seed=seed), scores("full", [0.3, 0.5, 0.8], seed=seed,
                                                                     defense="dedup"),
                  scores("full", [0.2, 0.4, 0.5], seed=seed, defense="rmft"),
                  scores("lora", [0.0, 0.05, 0.1], seed=seed), scores("prompt", [0.0, 0.0, 0.05], seed=seed)]
        for defense, right in EXPOSURE.items():
            parts.append(targets(defense, range(right + seed), base_correct=range(5), seed=seed))
            parts.append(targets(defense, [], base_correct=[], seed=seed, attack="reconstruction"))
            rows += _exposure_rows(defense, right + seed, seed)
    for defense in DEFENDED:
        for seed in seeds:
            for checkpoint, epoch in (("c01", 1.0), ("c02", 2.0), ("c03", 3.0)):
                where = dict(defense=defense, seed=seed, checkpoint=checkpoint, epoch=epoch)
                for bucket, k in (("1", 2), ("2-3", 5), ("4-7", None)):
                    rows.append(metric_row(f"ter_rep/{bucket}", None if k is None else 100 * k / 20, k=k,
                                           n=None if k is None else 20, prompt_set="train-prefix",
                                           entity_type="ALL", **where))
                for planted, exposure in ((1, 1.0), (10, 4.0), (100, 9.0)):
                    scale = 2 if defense == "rmft" else 1
                    rows += [metric_row(f"canary_exposure/{planted}", exposure / scale, entity_type="US_SSN", **where),
                             metric_row(f"canary_exposure_extrapolated/{planted}", 3 * exposure / scale,
                                        entity_type="US_SSN", ci=(exposure, 5 * exposure), **where),
                             metric_row(f"canary_max_exposure/{planted}", 10.0, entity_type="US_SSN", **where)]
    for defense, tuning in [*((d, "full") for d in DEFENDED), ("none", "lora"), ("none", "prompt")]:
        for seed in seeds:
            for checkpoint, epoch in (("c01", 1.0), ("c02", 2.0), ("c03", 3.0)):
                where = dict(defense=defense, tuning=tuning, seed=seed, checkpoint=checkpoint, epoch=epoch)
                rows += [metric_row("val_ppl_mean", 30 - 3 * epoch - seed + (defense == "rmft"), **where),
                         metric_row("val_ppl_base", 30.0, **where)]
    metrics, comparisons = comparisons_of(*parts)
    extra = with_exact_intervals(pl.DataFrame(rows, schema=METRICS_SCHEMA))
    return pl.concat([metrics, extra]), comparisons


def one_seed() -> tuple[pl.DataFrame, pl.DataFrame]:
    return full_data((1,))


def scores_table(n: int = 200, seed: int = 0, shift: float = 0.4) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    member = np.arange(n) < n // 2
    nll = rng.normal(2.0, 0.5, n) - shift * member
    return pl.DataFrame({"index": np.arange(n), "member": member, "group": np.arange(n), "n_tokens": np.full(n, 50),
                         "nll_mean": nll, "loss": -nll, "zlib": -nll / 3 + rng.normal(0, 0.1, n),
                         "min_k_20": np.where(np.arange(n) == 0, np.nan, -nll)})


def run_scores() -> dict[tuple[str, str, str], pl.DataFrame]:
    """A score table per run of both studies (the undefended full run stands in both)."""
    runs = [*(("tiny-gpt2", d, "full") for d in DEFENDED), *(("tiny-gpt2", "none", m) for m in METHODS[1:])]
    return {run: scores_table(seed=i, shift=0.6 - 0.1 * i) for i, run in enumerate(runs)}


# ------------------------------------------------------------------------------------------
# Reading a figure back


def blocks(fig) -> dict[str, list]:
    """{block title: its drawn axes} (the panel sets, one per study)."""
    return {sub._suptitle.get_text(): [ax for ax in sub.axes if ax.axison] for sub in fig.subfigs}


def series(ax) -> dict[str, str]:
    """{label: colour} of the panel's labelled lines and bars (reference lines included)."""
    found = {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()
             if not line.get_label().startswith("_")}
    found.update({c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in ax.containers
                  if hasattr(c, "patches") and c.patches and not c.get_label().startswith("_")})
    return found


def run_series(ax) -> set[str]:
    """The names of the runs a panel draws, without its reference lines (base model, chance, blind, ...)."""
    references = ("base model", "chance", "Pareto front", "blind", "rank exposure", "member", "non-member")
    return {label.split(" (")[0] for label in series(ax) if not label.startswith(references)}


def error_bars(ax) -> int:
    """The number of error-bar or band collections in a panel (one per series with an interval)."""
    from matplotlib.collections import LineCollection, PolyCollection

    return sum(isinstance(c, (LineCollection, PolyCollection)) for c in ax.collections)


def all_figures(metrics, comparisons):
    return {
        "metrics_by_checkpoint": plots.draw_metrics_by_checkpoint(metrics, comparisons),
        "maxter": plots.draw_maxter(comparisons),
        "mia_auc_by_epoch": plots.draw_mia_auc(metrics),
        "roc_curves": plots.draw_roc_curves(run_scores(), metrics),
        "loss_distributions": plots.draw_loss_distributions(run_scores(), {"tiny-gpt2": scores_table(seed=9)},
                                                            metrics),
        "extraction_by_repetition": plots.draw_extraction_by_repetition(metrics, comparisons),
        "canary_exposure": plots.draw_canary_exposure(metrics, comparisons),
        "targeted_attacks": plots.draw_targeted_attacks(metrics, comparisons),
        "privacy_utility_ter": plots.draw_privacy_utility(metrics, comparisons, privacy="ter"),
        "privacy_utility_auc": plots.draw_privacy_utility(metrics, comparisons, privacy="mia_auc/loss"),
        "auc_by_val_ppl": plots.draw_auc_by_val_ppl(metrics),
    }


# ------------------------------------------------------------------------------------------
# The palette and the studies


def test_one_colour_per_defense_and_method_in_one_palette():
    assert set(DEFENSES) | set(TUNING_ORDER) <= set(plots.PALETTE)
    # the undefended run is full fine-tuning's baseline: one colour; every other name its own
    assert plots.PALETTE["none"] == plots.PALETTE["full"]
    others = [c for name, c in plots.PALETTE.items() if name != "full"]
    assert len(set(others)) == len(others)
    colors = plots.series_colors(["rmft", "rmft_p0.5", "dedup"], "defense")
    assert to_hex(colors["rmft"]) == plots.PALETTE["rmft"].lower()
    assert to_hex(colors["rmft_p0.5"]) not in (plots.PALETTE["rmft"].lower(), plots.PALETTE["dedup"].lower())
    # a variant alone takes its base's colour; a LoRA target variant is LoRA's
    assert to_hex(plots.series_colors(["dp_e8"], "defense")["dp_e8"]) == plots.PALETTE["dp"].lower()
    assert to_hex(plots.series_colors(["lora_mlp_lr0.002"], "tuning")["lora_mlp_lr0.002"]) == \
        plots.PALETTE["lora"].lower()


def test_runs_fall_into_the_rmft_and_the_methods_study():
    metrics, _ = one_seed()
    found = plots.studies(metrics)
    assert [(s.kind, s.runs) for s in found] == [
        ("defenses", (("none", "full"), ("dedup", "full"), ("rmft", "full"))),
        ("methods", (("none", "full"), ("none", "lora"), ("none", "prompt")))]
    assert found[0].order == list(DEFENDED) and found[1].order == list(METHODS)
    assert found[0].title() == "RMFT study: defenses with full fine-tuning"
    # one run alone is a study of its own
    alone = plots.studies(metrics.filter((pl.col("defense") == "dedup")))
    assert [(s.kind, s.order) for s in alone] == [("runs", ["dedup"])]


def test_every_run_has_its_palette_colour_in_every_figure():
    metrics, comparisons = full_data()
    expected = {**{d: plots.PALETTE[d].lower() for d in DEFENDED},
                **{m: plots.PALETTE[m].lower() for m in METHODS}}
    seen: dict[str, set[str]] = {}
    for stem, fig in all_figures(metrics, comparisons).items():
        assert fig is not None, stem
        for ax in fig.get_axes():
            for label, color in series(ax).items():
                name = label.split(" (")[0]
                if name in expected:
                    seen.setdefault(name, set()).add(color)
    assert seen == {name: {color} for name, color in expected.items()}


# ------------------------------------------------------------------------------------------
# One figure at a time


def test_metrics_by_checkpoint_keeps_the_studies_apart():
    metrics, comparisons = one_seed()
    fig = plots.draw_metrics_by_checkpoint(metrics, comparisons)
    found = blocks(fig)
    rmft, methods = found["RMFT study: defenses with full fine-tuning"], \
        found["Fine-tuning methods study: undefended runs by method"]
    titles = [ax.get_title().split("\n")[0] for ax in rmft]
    # TER per scope (here e-mail addresses alone, the only type measured) and prompt set, perplexity; no SER
    # panel: SER = TER here (every string seen)
    assert titles == ["TER, e-mail addresses, prompts: train-prefix", "test perplexity"]
    assert all(run_series(ax) == set(DEFENDED) for ax in rmft)  # no methods-study run in the RMFT study
    assert [ax.get_title() for ax in methods] == ["test perplexity"]  # one run with extraction: no TER panel
    assert run_series(methods[0]) == set(METHODS)
    # every line with its interval: one error-bar collection per run
    assert all(error_bars(ax) == 3 for ax in rmft)
    ppl = rmft[1]
    assert "rmft vs none: +" in ppl.get_xlabel() and "[" in ppl.get_xlabel()  # the paired cost, with interval
    assert "base model: 50" in ppl.get_xlabel()  # the base model far above: said, not drawn
    # the baseline's count of distinct strings (any checkpoint) heads a panel that can decide
    assert rmft[0].get_title().endswith("none: 40 of 100 strings")


def test_a_panel_of_too_few_strings_is_greyed_and_says_so():
    found = [strings("none", [[0], [0, 1], [0, 1, 2]]), strings("rmft", [[], [0], [0]]),
             messages("none", [20, 18, 17]), messages("rmft", [21, 19, 18])]
    metrics, comparisons = comparisons_of(*found)
    fig = plots.draw_metrics_by_checkpoint(metrics, comparisons, min_strings=10)
    ter = [ax for ax in fig.get_axes() if ax.get_title().startswith("TER")]
    assert ter and all("too few strings: 3 of 100" in ax.get_title() for ax in ter)
    assert all(to_hex(ax.get_facecolor()) == plots.GREY_FACE for ax in ter)
    # enough strings for a lower threshold: drawn as usual
    fig = plots.draw_metrics_by_checkpoint(metrics, comparisons, min_strings=3)
    ter = [ax for ax in fig.get_axes() if ax.get_title().startswith("TER")]
    assert not any("too few" in ax.get_title() for ax in ter)
    assert {to_hex(ax.get_facecolor()) for ax in ter} != {plots.GREY_FACE}
    maxter = plots.draw_maxter(comparisons, min_strings=10)
    assert all("too few strings: 3 of 100" in ax.get_title() for ax in maxter.get_axes() if ax.axison)


def test_mia_auc_has_intervals_the_chance_band_and_the_blind_baseline():
    metrics, _ = one_seed()
    blind = [metric_row("mia_auc/blind", 0.47, tuning=t, epoch=e, checkpoint=c, member_text="original")
             for t in ("full", "lora") for c, e in (("c01", 1.0), ("c02", 2.0), ("c03", 3.0))]
    metrics = pl.concat([metrics, pl.DataFrame(blind, schema=METRICS_SCHEMA)])
    fig = plots.draw_mia_auc(metrics, chance_margin=0.1)
    found = blocks(fig)
    assert list(found) == ["RMFT study: defenses with full fine-tuning",
                           "Fine-tuning methods study: undefended runs by method"]
    for axes, runs in zip(found.values(), (DEFENDED, METHODS)):
        (ax,) = axes  # one attack scored: one panel; the blind baseline is a line, not a panel
        assert ax.get_title() == "LOSS attack"
        assert run_series(ax) == set(runs) and error_bars(ax) == len(runs)
        labels = [p.get_label() for p in ax.patches]
        assert "chance: 0.5 ± 0.1" in labels
        assert "blind baseline (no model): 0.47" in series(ax)


def test_roc_curves_of_every_run_one_panel_per_study():
    metrics, _ = one_seed()
    fig = plots.draw_roc_curves(run_scores(), metrics)
    found = blocks(fig)
    assert [run_series(ax) for axes in found.values() for ax in axes] == [set(DEFENDED), set(METHODS)]
    labels = series(next(iter(found.values()))[0])
    # the AUC of each curve with its bootstrap interval, from the metrics
    assert any(label.startswith("rmft (AUC ") and "[" in label for label in labels)


def test_loss_distributions_are_a_grid_with_each_run_once():
    metrics, _ = one_seed()
    fig = plots.draw_loss_distributions(run_scores(), {"tiny-gpt2": scores_table(seed=9)}, metrics)
    axes = [ax for ax in fig.get_axes() if ax.axison]
    titles = [ax.get_title().split("\n")[0] for ax in axes]
    assert titles == ["pre-trained base model", "none / full", "dedup / full", "rmft / full", "none / lora",
                      "none / prompt"]
    assert {ax.get_subplotspec().get_gridspec().ncols for ax in axes} == {3}
    assert axes[1].get_title().startswith("none / full\nLOSS AUC ")


def test_targeted_attacks_show_the_exposure_and_fold_zero_panels_into_a_note():
    metrics, comparisons = full_data()
    fig = plots.draw_targeted_attacks(metrics, comparisons)
    axes = [ax for ax in fig.get_axes() if ax.axison]
    assert [ax.get_title() for ax in axes] == ["PII inference: exposure of the true string",
                                              "exposure drop (paired over targets)",
                                              "PII inference accuracy (n=200)"]
    assert run_series(axes[0]) == set(DEFENDED) and run_series(axes[2]) == set(DEFENDED)  # dedup included
    assert "base model" in series(axes[0]) and "chance (100/K)" in series(axes[2])
    ticks = [t.get_text() for t in axes[1].get_xticklabels()]
    assert ticks == ["dedup\nvs none", "rmft\nvs none", "rmft\nvs dedup"]
    assert error_bars(axes[1]) == 3
    notes = [t.get_text() for t in fig.texts]
    assert any("PII reconstruction (0 of 200)" in t for t in notes)


def test_canary_exposure_draws_the_extrapolated_exposure_with_intervals_and_the_paired_drop(tmp_path):
    metrics, comparisons = one_seed()
    fig = plots.draw_canary_exposure(metrics, comparisons)
    (ax,) = [ax for ax in fig.get_axes() if ax.axison]
    assert ax.get_ylabel() == "extrapolated exposure (bits)"
    line = next(line for line in ax.get_lines() if line.get_label() == "rmft")
    np.testing.assert_allclose(line.get_ydata(), [1.5, 6.0, 13.5])
    assert error_bars(ax) == 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]
    # the rank exposure alone (files of an older run): with its ceiling
    rank_only = metrics.filter(~pl.col("metric").str.starts_with("canary_exposure_extrapolated"))
    fig = plots.draw_canary_exposure(rank_only)
    (ax,) = [ax for ax in fig.get_axes() if ax.axison]
    assert ax.get_ylabel() == "rank exposure (bits)" and "rank exposure's maximum (log2 |R|)" in series(ax)


def test_privacy_utility_splits_the_studies_and_labels_no_point():
    metrics, comparisons = one_seed()
    fig = plots.draw_privacy_utility(metrics, comparisons, privacy="mia_auc/loss")
    found = blocks(fig)
    assert [run_series(ax) for axes in found.values() for ax in axes] == [set(DEFENDED), set(METHODS)]
    assert all(not ax.texts for axes in found.values() for ax in axes)  # a legend, no labels that can overlap
    ter = plots.draw_privacy_utility(metrics, comparisons, privacy="ter")
    assert list(blocks(ter)) == ["RMFT study: defenses with full fine-tuning"]


def test_every_figure_is_a_grid_of_at_most_three_columns():
    metrics, comparisons = full_data()
    for stem, fig in all_figures(metrics, comparisons).items():
        columns = {ax.get_subplotspec().get_gridspec().ncols for ax in fig.get_axes()}
        assert max(columns) <= plots.MAX_COLUMNS, stem


# ------------------------------------------------------------------------------------------
# Files


def assert_figure(paths, stem):
    assert [p.name for p in paths] == [stem.name + ".png", stem.name + ".pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(PNG_SIGNATURE)
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf


def test_build_figures_writes_every_stem_that_has_data(tmp_path):
    metrics, comparisons = one_seed()
    without_canaries = metrics.filter(~pl.col("metric").str.starts_with("canary"))
    paths = plots.build_figures(without_canaries, comparisons, tmp_path, scores=run_scores(),
                                base_scores={"tiny-gpt2": scores_table(seed=9)})
    # (No audit metrics in this sample: the audit figure has its own test, tests/test_audit.py.)
    assert sorted({p.stem for p in paths}) == sorted(set(plots.FIGURE_STEMS) - {"canary_exposure", "audit"})
    for stem in {p.stem for p in paths}:
        assert_figure([tmp_path / f"{stem}.png", tmp_path / f"{stem}.pdf"], tmp_path / stem)


def test_figures_are_byte_for_byte_reproducible(tmp_path):
    metrics, comparisons = one_seed()
    first = plots.plot_metrics_by_checkpoint(metrics, tmp_path / "a", comparisons)
    second = plots.plot_metrics_by_checkpoint(metrics, tmp_path / "b", comparisons)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_absent_data_writes_nothing(tmp_path):
    empty = pl.DataFrame(schema=METRICS_SCHEMA)
    metrics, comparisons = one_seed()
    utility_only = metrics.filter(pl.col("metric") == "ppl_mean")
    assert plots.plot_metrics_by_checkpoint(empty, tmp_path / "a") == []
    assert plots.plot_maxter(comparisons.filter(pl.col("quantity") != "maxter"), tmp_path / "b") == []
    assert plots.plot_maxter(None, tmp_path / "c") == []
    assert plots.plot_mia_auc(utility_only, tmp_path / "d") == []
    assert plots.plot_extraction_by_repetition(utility_only, tmp_path / "e") == []
    assert plots.plot_canary_exposure(utility_only, tmp_path / "f") == []
    assert plots.plot_privacy_utility(utility_only, tmp_path / "g") == []
    assert plots.plot_auc_by_val_ppl(utility_only, tmp_path / "g2") == []
    assert plots.plot_targeted_attacks(utility_only, tmp_path / "g3") == []
    assert plots.plot_roc_curves({("tiny-gpt2", "none", "full"): scores_table().head(0)}, tmp_path / "h") == []
    assert plots.plot_loss_distributions({}, tmp_path / "i") == []
    assert plots.build_figures(empty, pl.DataFrame(schema=COMPARISON_SCHEMA), tmp_path / "j") == []
    assert list(tmp_path.iterdir()) == []


def test_a_score_table_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="member"):
        plots.plot_roc_curves({("tiny-gpt2", "none", "full"): scores_table().drop("member")}, tmp_path / "roc")


def test_the_score_files_shown_are_the_first_seed_of_each_selected_run(tmp_path):
    paths = [f"results/runs/tiny-gpt2/{name}/mia/c03.scores.parquet"
             for name in ("none-full-s2", "none-full-s1", "rmft-full-s1", "none-lora_lr0.01-s1",
                          "none-lora_lr0.1-s1")]
    chosen = pl.DataFrame({"base_model": "tiny-gpt2", "defense": ["none", "none", "rmft", "none"],
                           "tuning": ["full", "full", "full", "lora_lr0.01"], "seed": [1, 2, 1, 1],
                           "method": ["full", "full", "full", "lora"]})
    shown = plots.shown_score_files(paths, chosen)
    assert {k: str(v) for k, v in shown.items()} == {
        ("tiny-gpt2", "none", "full"): paths[1], ("tiny-gpt2", "rmft", "full"): paths[2],
        ("tiny-gpt2", "none", "lora"): paths[3]}  # the sweep's selected run, under its method's name
    reference = tmp_path / "tiny-gpt2" / "reference.parquet"
    reference.parent.mkdir()
    scores_table().select("index", "nll_mean").write_parquet(reference)
    labelled = plots.pretrained_scores([reference], {("tiny-gpt2", "none", "full"): scores_table()})
    assert labelled["tiny-gpt2"]["member"].sum() == 100
