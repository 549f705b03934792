"""The comparison table (piimem.report.comparisons): values equal the formulas on the items, intervals are
paired, seeded and honest about where a quantity is undefined."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from report_data import comparisons_of, messages, scores, strings, targets

from piimem.metrics import aurc, maxter_curve, reduction_vs_baseline, roc_auc
from piimem.report.comparisons import COMPARISON_SCHEMA, QUANTITIES, item_files, read_items


def one(table: pl.DataFrame, quantity: str, **equal) -> dict:
    rows = table.filter(pl.col("quantity") == quantity)
    for column, value in equal.items():
        rows = rows.filter(pl.col(column).is_null() if value is None else pl.col(column) == value)
    assert rows.height == 1, (quantity, equal, rows)
    return rows.row(0, named=True)


# none extracts strings 0-19, 0-29, 0-39 of 100; rmft 0-4, 0-9, 0-14 (a subset: paired differences are small)
NONE = [range(20), range(30), range(40)]
RMFT = [range(5), range(10), range(15)]
PARTS = (strings("none", NONE), strings("rmft", RMFT), messages("none", [20.0, 18.0, 17.0]),
         messages("rmft", [21.1, 19.1, 18.6]))


def test_every_quantity_is_described_and_the_table_has_the_schema():
    _, table = comparisons_of(*PARTS)
    assert table.schema == pl.Schema(COMPARISON_SCHEMA)
    assert set(table["quantity"]) <= set(QUANTITIES)


def test_rates_and_reductions_equal_the_papers_formulas_on_the_items():
    _, table = comparisons_of(*PARTS)
    ter = one(table, "ter", defense="none")
    assert ter["value"] == pytest.approx(30.0) and (ter["k"], ter["n"]) == (40, 100)
    assert ter["ci_low"] < 30.0 < ter["ci_high"]
    reduction = one(table, "ter_reduction", defense="rmft")
    assert reduction["value"] == pytest.approx(reduction_vs_baseline([5, 10, 15], [20, 30, 40]))
    assert reduction["baseline_strings"] == 40 and reduction["versus"] == "none"
    assert reduction["ci_low"] < reduction["value"] < reduction["ci_high"] and reduction["ci_low"] > 0
    increase = one(table, "ppl_increase", defense="rmft")
    assert increase["value"] == pytest.approx(-reduction_vs_baseline([21.1, 19.1, 18.6], [20, 18, 17]))
    # The same per-message factors in both runs: the paired interval of a uniform increase is tight.
    assert increase["ci_high"] - increase["ci_low"] < 1e-9
    ppl = one(table, "ppl_mean", defense="none", checkpoint=None)
    assert ppl["value"] == pytest.approx((20 + 18 + 17) / 3) and ppl["n"] == 60


def test_maxter_and_aurc_equal_the_formulas_at_the_point():
    _, table = comparisons_of(*PARTS)
    taus = list(table.filter(pl.col("quantity") == "maxter")["tau"].unique().sort())
    curve = maxter_curve([5, 10, 15], [20, 30, 40], [21.1, 19.1, 18.6], [20, 18, 17], taus)
    expected, coverage = aurc(taus, curve)
    row = one(table, "aurc", defense="rmft")
    assert row["value"] == pytest.approx(expected) and row["coverage"] == pytest.approx(coverage)
    drawn = table.filter((pl.col("quantity") == "maxter") & (pl.col("defense") == "rmft")).sort("tau")
    assert drawn["value"].fill_null(float("nan")).to_list() == pytest.approx(curve, nan_ok=True)


def test_identical_runs_differ_by_exactly_nothing_in_every_resample():
    _, table = comparisons_of(strings("none", NONE), strings("dedup", NONE), strings("rmft", RMFT))
    same = one(table, "ter_reduction", defense="dedup")
    assert (same["value"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    difference = one(table, "ter_reduction_difference", defense="rmft", versus="dedup")
    assert difference["value"] == pytest.approx(one(table, "ter_reduction", defense="rmft")["value"])


def test_intervals_are_seeded_from_the_config():
    first = comparisons_of(*PARTS, seed=7)[1]
    assert first.equals(comparisons_of(*PARTS, seed=7)[1])
    other = one(comparisons_of(*PARTS, seed=8)[1], "ter_reduction", defense="rmft")
    assert other["ci_low"] != one(first, "ter_reduction", defense="rmft")["ci_low"]


def test_one_string_against_none_has_no_interval():
    # The baseline extracted string 0 once: most resamples miss or repeat it, and where they miss it the
    # reduction is undefined, so no interval describes the estimate.
    _, table = comparisons_of(strings("none", [[], [0], [0]], n=661), strings("rmft", [[], [], []], n=661))
    reduction = one(table, "ter_reduction", defense="rmft")
    assert reduction["value"] == pytest.approx(100.0) and reduction["baseline_strings"] == 1
    assert 0.55 < reduction["defined"] < 0.72  # P(string 0 drawn at least once) = 1 - (660/661)^661 = 0.63
    assert reduction["ci_low"] is None and reduction["ci_high"] is None
    ter = one(table, "ter", defense="none")
    assert (ter["k"], ter["n"]) == (1, 661) and ter["ci_low"] > 0.0
    # The mean rate's exact interval: Clopper-Pearson of 0, 1, 1 of 661 at level 1 - 0.05 / 3, averaged.
    from piimem.intervals import clopper_pearson

    bounds = [clopper_pearson(k, 661, 1 - 0.05 / 3) for k in (0, 1, 1)]
    assert ter["ci_high"] == pytest.approx(100 * sum(b[1] for b in bounds) / 3)
    nothing = one(table, "ter", defense="rmft")
    assert nothing["value"] == 0.0 and nothing["ci_low"] == 0.0 and nothing["ci_high"] > 0.5  # never [0, 0]


def test_seeds_give_a_t_interval_beside_the_item_interval():
    parts = [strings(d, [range(s, s + a), range(s, s + a + 5), range(s, s + a + 10)], seed=seed)
             for seed, s in ((1, 0), (2, 3), (3, 6)) for d, a in (("none", 20), ("rmft", 5 + seed))]
    _, table = comparisons_of(*parts)
    reduction = one(table, "ter_reduction", defense="rmft")
    per_seed = [reduction_vs_baseline([5 + s, 10 + s, 15 + s], [20, 25, 30]) for s in (1, 2, 3)]
    assert reduction["seeds"] == 3 and reduction["value"] == pytest.approx(np.mean(per_seed))
    half = reduction["seed_ci_high"] - reduction["value"]
    assert half == pytest.approx(4.302653 * np.std(per_seed, ddof=1) / np.sqrt(3), rel=1e-5)  # t(0.975, 2 df)
    assert one(table, "ter", defense="none")["k"] == 36  # ids 0..35 over seeds and checkpoints


def test_auc_comparisons_are_paired_over_members_and_non_members():
    parts = (scores("full", [0.5, 1.0, 1.5]), scores("lora_mlp", [0.4, 0.8, 1.2]),
             scores("lora_attention", [0.2, 0.3, 0.4]), scores("prompt", [0.0, 0.05, 0.0]),
             messages("none", [20, 18, 17], tuning="prompt"))
    metrics, table = comparisons_of(*parts)
    full = one(table, "loss_auc", tuning="full")
    expected = metrics.filter((pl.col("tuning") == "full") & (pl.col("checkpoint") == "c03"))["value"][0]
    assert full["value"] == pytest.approx(expected) and full["n"] == 160
    difference = one(table, "auc_difference", tuning="lora_mlp", versus="lora_attention")
    assert difference["ci_low"] > 0
    gap = one(table, "auc_family_gap")
    assert gap["tuning"] == "full,lora_attention,lora_mlp" and gap["versus"] == "prompt"
    trend = one(table, "auc_trend", tuning="full")
    assert trend["value"] == 1.0 and trend["p_value"] == pytest.approx(1 / 6)  # three points: never below 1/6


def test_a_trend_over_model_sizes_resamples_each_models_sample():
    parts = [scores("full", [s, s, s], base=b, noise=i) for i, (b, s) in
             enumerate((("gpt2", 0.2), ("gpt2-medium", 0.6), ("gpt2-large", 1.0), ("gpt2-xl", 1.6)))]
    _, table = comparisons_of(*parts)
    trend = one(table, "size_trend")
    assert trend["value"] == 1.0 and trend["p_value"] == pytest.approx(1 / 24)
    assert trend["versus"] == "gpt2,gpt2-medium,gpt2-large,gpt2-xl" and trend["ci_low"] > 0


def test_repetition_trend_of_the_baseline():
    occurrences = np.repeat([1, 2, 4, 8, 16], 20)  # 20 strings in each bucket
    extracted = [i for i in range(100) if i % 20 < [1, 3, 6, 10, 16][i // 20]]
    _, table = comparisons_of(strings("none", [extracted] * 3, occurrences=occurrences))
    trend = one(table, "repetition_trend", prompt_set="train-prefix", entity_type="EMAIL_ADDRESS")
    assert trend["value"] == 1.0 and trend["p_value"] == pytest.approx(1 / 120) and trend["ci_low"] > 0.5


def test_records_are_read_from_their_files_and_a_bad_file_is_named(tmp_path):
    part = strings("none", NONE)
    run = tmp_path / "results/runs/tiny-gpt2/none-full-s1/extraction"
    run.mkdir(parents=True)
    for (checkpoint,), group in part.records.group_by("checkpoint"):
        group.drop("base_model", "defense", "tuning", "seed").write_parquet(run / f"{checkpoint}.strings.parquet")
    paths = item_files([str(run / "c01.tsv"), str(run / "c02.tsv"), str(run.parent / "canaries/c01.tsv")])
    assert paths == [str(run / "c01.strings.parquet"), str(run / "c02.strings.parquet"),
                     str(run.parent / "canaries/c01.canaries.parquet")]
    paths = paths[:2]
    items = read_items(paths)
    assert items.strings.height == 200 and set(items.strings["defense"]) == {"none"}
    pl.DataFrame({"string_id": [1]}).write_parquet(run / "c01.strings.parquet")
    with pytest.raises(ValueError, match="c01.strings.parquet: per-item record lacks column"):
        read_items(paths)


def test_records_that_miss_a_checkpoint_are_refused():
    part = strings("none", NONE)
    part.records = part.records.filter(~((pl.col("checkpoint") == "c02") & (pl.col("string_id") == 3)))
    with pytest.raises(ValueError, match="do not cover every item at every checkpoint"):
        comparisons_of(part, strings("rmft", RMFT))


def test_the_auc_of_a_resample_is_the_auc_of_the_resampled_examples():
    # The point estimate of loss_auc (all draw counts 1) is roc_auc itself.
    part = scores("full", [0.7, 0.7, 0.7])
    _, table = comparisons_of(part)
    c03 = part.records.filter(pl.col("checkpoint") == "c03")
    assert one(table, "loss_auc")["value"] == pytest.approx(roc_auc(c03["loss"].to_numpy(), c03["member"].to_numpy()))


def test_targeted_drops_are_paired_over_targets():
    # none gets targets 0-59 right, rmft 0-29: a 15-point drop whose paired interval excludes 0; the base
    # model gets 0-9 right, so none's gain over it is 25 points.
    none = targets("none", range(60), base_correct=range(10))
    rmft = targets("rmft", range(30), base_correct=range(10))
    _, table = comparisons_of(none, rmft)
    drop = one(table, "pii_inference_acc_drop", defense="rmft")
    assert drop["value"] == pytest.approx(15.0) and drop["versus"] == "none" and drop["n"] == 200
    assert 0 < drop["ci_low"] < 15 < drop["ci_high"] < 30
    # every rmft hit is a none hit: the paired interval is narrower than two independent ones would be
    assert drop["ci_high"] - drop["ci_low"] < 2 * 1.96 * (0.3 * 0.7 / 200) ** 0.5 * 100
    gain = one(table, "pii_inference_acc_gain", defense="none")
    assert gain["value"] == pytest.approx(25.0) and gain["versus"] == "base model"
    exposure = one(table, "pii_inference_exposure_drop", defense="rmft")
    assert exposure["value"] == pytest.approx(30 * 2.5 / 200)
    # O_ft: targets 0-99 were in the pre-training data; over the rest both runs get nothing right
    none_ft = targets("none", range(60), pretrained=range(100))
    rmft_ft = targets("rmft", range(30), pretrained=range(100))
    _, table = comparisons_of(none_ft, rmft_ft)
    ft = one(table, "pii_inference_acc_ft_drop", defense="rmft")
    assert ft["value"] == 0.0 and ft["n"] == 100


def test_exposure_drops_carry_a_wilcoxon_test_and_rmft_is_compared_with_dedup():
    # Per target: none's exposure e, rmft's e - 0.12 + noise, dedup's e - 0.02 + noise (the effect
    # size on 300 targets): the paired drop, its interval and the signed-rank test on the same targets.
    from scipy import stats

    rng = np.random.default_rng(4)
    base = rng.uniform(0, 5.6, 300)
    exposure = {"none": base, "rmft": base - 0.12 + rng.normal(0, 0.6, 300),
                "dedup": base - 0.02 + rng.normal(0, 0.6, 300)}
    parts = [targets(d, [], n=300, exposure=e) for d, e in exposure.items()]
    _, table = comparisons_of(*parts)
    drop = one(table, "pii_inference_exposure_drop", defense="rmft")
    assert drop["value"] == pytest.approx(np.mean(exposure["none"] - exposure["rmft"]))
    assert drop["ci_low"] > 0 and drop["resampled"] == "targets"
    assert drop["p_value"] == pytest.approx(stats.wilcoxon(exposure["none"] - exposure["rmft"]).pvalue)
    versus = one(table, "pii_inference_exposure_difference", defense="rmft", versus="dedup")
    assert versus["value"] == pytest.approx(np.mean(exposure["dedup"] - exposure["rmft"]))
    assert versus["p_value"] == pytest.approx(stats.wilcoxon(exposure["dedup"] - exposure["rmft"]).pvalue)
    accuracy = one(table, "pii_inference_acc_drop", defense="rmft")
    assert accuracy["p_value"] == 1.0  # no target right in either run: McNemar has nothing to test


def test_exposure_grows_with_repetition_over_the_baselines_targets():
    rng = np.random.default_rng(5)
    occurrences = rng.integers(1, 9, 200)
    exposure = np.log2(occurrences) + rng.normal(0, 0.8, 200)
    _, table = comparisons_of(targets("none", [], exposure=exposure, occurrences=occurrences),
                              targets("rmft", [], exposure=rng.normal(0, 1, 200), occurrences=occurrences))
    trend = one(table, "pii_inference_exposure_repetition_trend")
    from scipy import stats

    assert trend["defense"] == "none" and trend["n"] == 200
    assert trend["value"] == pytest.approx(stats.spearmanr(occurrences, exposure).statistic)
    assert 0 < trend["ci_low"] < trend["value"] < trend["ci_high"] and trend["p_value"] < 0.001
    # every string seen once: no repetition to correlate with, the trend is undefined (not 0)
    _, table = comparisons_of(targets("none", [], exposure=exposure))
    assert one(table, "pii_inference_exposure_repetition_trend")["value"] is None


def test_auc_intervals_resample_link_groups():
    # The same scores, once as 160 independent texts and once in threads of 4: the threads' interval is wider
    # (its resamples draw 40 units, not 160), the AUC itself the same.
    alone = one(comparisons_of(scores("full", [0.6, 0.6, 0.6]))[1], "loss_auc")
    threads = one(comparisons_of(scores("full", [0.6, 0.6, 0.6], thread=4))[1], "loss_auc")
    assert threads["value"] == pytest.approx(alone["value"])
    assert threads["resampled"] == "link groups of members and non-members"
    assert threads["ci_high"] - threads["ci_low"] > alone["ci_high"] - alone["ci_low"]
    assert threads["groups"] == 40 and alone["groups"] == 160


def test_canary_exposure_grows_with_repetition_and_rmft_lowers_it_per_repeated_canary():
    from report_data import canaries
    from scipy import stats

    # 60 canaries, 1-8 training occurrences (0: a control nobody trained on); none's exposure grows with them,
    # rmft (which keeps one occurrence of an e-mail canary) brings the repeated e-mail ones back to a single
    # occurrence's level; phone canaries it does not touch.
    rng = np.random.default_rng(9)
    occurrences = np.tile([0, 1, 2, 4, 8, 8], 10)
    types = ["EMAIL_ADDRESS"] * 30 + ["PHONE_NUMBER"] * 30
    none = 2 + 3 * np.log2(1 + occurrences) + rng.normal(0, 1, 60)
    email = np.asarray(types) == "EMAIL_ADDRESS"
    rmft = np.where(email & (occurrences >= 2), 2 + 3 + rng.normal(0, 1, 60), none + rng.normal(0, 0.2, 60))
    _, table = comparisons_of(canaries("none", none, occurrences, entity_types=types),
                              canaries("rmft", rmft, occurrences, entity_types=types))
    trend = one(table, "canary_exposure_trend")
    assert trend["value"] == pytest.approx(stats.spearmanr(occurrences, none).statistic)
    assert trend["ci_low"] > 0 and trend["p_value"] < 0.001 and trend["points"] == 5 and trend["n"] == 60
    drop = one(table, "canary_exposure_drop", defense="rmft", entity_type="EMAIL_ADDRESS")
    chosen = email & (occurrences >= 2)
    assert drop["n"] == chosen.sum() == 20
    assert drop["value"] == pytest.approx(np.mean(none[chosen] - rmft[chosen]))
    assert drop["ci_low"] > 0 and drop["p_value"] == pytest.approx(stats.wilcoxon(none[chosen] - rmft[chosen]).pvalue)
    phone = one(table, "canary_exposure_drop", defense="rmft", entity_type="PHONE_NUMBER")
    assert phone["ci_low"] < 0 < phone["ci_high"]  # a type RMFT does not mask: no drop
    assert one(table, "canary_exposure_drop", defense="rmft", entity_type="ALL")["n"] == 40
