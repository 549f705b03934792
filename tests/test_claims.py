"""The claims table (piimem.report.claims): verdicts follow from intervals, every verdict of every rule is
reachable, and one string against none is inconclusive."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from report_data import comparisons_of, messages, scores, strings

from piimem.report.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    RULES,
    UNTESTABLE,
    ClaimSettings,
    claims_table,
    judge,
    rule_table,
    verdict,
)
from piimem.report.tables import build_tables

SETTINGS = ClaimSettings()


def claim(table: pl.DataFrame, start: str, **equal) -> dict:
    rows = table.filter(pl.col("claim").str.starts_with(start))
    for column, text in equal.items():
        rows = rows.filter(pl.col(column).str.contains(text, literal=True))
    assert rows.height >= 1, (start, equal, table)
    return rows.row(0, named=True)


@pytest.mark.parametrize("test, interval, expected", [
    ("above", (0.5, 3.0), HOLDS), ("above", (-3.0, -0.5), FAILS), ("above", (-1.0, 1.0), INCONCLUSIVE),
    ("at_most", (2.0, 9.0), HOLDS), ("at_most", (10.5, 20.0), FAILS), ("at_most", (5.0, 12.0), INCONCLUSIVE),
    ("within", (0.46, 0.54), HOLDS), ("within", (0.6, 0.7), FAILS), ("within", (0.40, 0.6), INCONCLUSIVE),
])
def test_every_verdict_of_every_interval_test_is_reachable(test, interval, expected):
    got, why = verdict(test, *interval, SETTINGS)
    assert got == expected
    assert (why == "") == (expected != INCONCLUSIVE)


@pytest.mark.parametrize("interval, p, expected, reason", [
    ((0.2, 1.0), 0.01, HOLDS, ""), ((-1.0, -0.3), 0.01, FAILS, ""),
    ((0.5, 1.0), 1 / 6, INCONCLUSIVE, "p-value 0.167 is above 0.05"),  # three points, perfectly monotone
    ((-0.5, 1.0), 0.01, INCONCLUSIVE, "contains 0"),
])
def test_a_trend_needs_its_interval_and_its_permutation_p_value(interval, p, expected, reason):
    got, why = verdict("trend", *interval, SETTINGS, p=p)
    assert got == expected and reason in why


def row(value, low, high, **extra) -> dict:
    return {"value": value, "ci_low": low, "ci_high": high, "seeds": 1, "resampled": "strings", **extra}


def test_rate_claims_need_min_strings_of_the_baseline():
    few = judge("rmft_ter", row(100.0, 40.0, 100.0, baseline_strings=9), SETTINGS, "x")
    assert few.verdict == INCONCLUSIVE and "extracted 9 distinct strings" in few.why and "min_strings = 10" in few.why
    assert few.evidence == "baseline: 9 distinct strings"
    enough = judge("rmft_ter", row(100.0, 40.0, 100.0, baseline_strings=10), SETTINGS, "x")
    assert enough.verdict == HOLDS and enough.why == ""
    assert judge("rmft_ter", row(100.0, 40.0, 100.0, baseline_strings=3), ClaimSettings(min_strings=3),
                 "x").verdict == HOLDS
    # Perplexity is no rate claim: no minimum of strings.
    assert judge("rmft_ppl", row(5.0, 3.0, 7.0), SETTINGS, "x").verdict == HOLDS


def test_three_seeds_need_both_the_item_and_the_seed_interval():
    seeded = row(5.0, 4.0, 6.0, seeds=3, seed_ci_low=2.0, seed_ci_high=12.0)
    three = judge("rmft_ppl", seeded, SETTINGS, "x")
    assert three.verdict == INCONCLUSIVE and three.ci == (2.0, 12.0) and three.over == "strings and 3 seeds (t)"
    two = judge("rmft_ppl", {**seeded, "seeds": 2}, SETTINGS, "x")
    assert two.verdict == HOLDS and two.ci == (4.0, 6.0)
    # Seeds that agree closely cannot narrow what the shared sample allows: the item interval still counts.
    near = judge("prompt_near_chance", row(0.50, 0.42, 0.59, seeds=3, seed_ci_low=0.499, seed_ci_high=0.505),
                 SETTINGS, "x")
    assert near.verdict == INCONCLUSIVE and near.ci == (0.42, 0.59)


def test_a_missing_or_undefined_quantity_is_not_testable_with_its_reason():
    missing = judge("lora_mlp_vs_attention", None, SETTINGS, "x", "needs LoRA runs on MLP")
    assert missing.verdict == UNTESTABLE and missing.why == "needs LoRA runs on MLP"
    undefined = judge("rmft_ter", row(None, None, None, baseline_strings=0), SETTINGS, "x", "no TER of both runs")
    assert undefined.verdict == UNTESTABLE and "no TER of both runs" in undefined.why
    no_interval = judge("rmft_ter", row(100.0, None, None, baseline_strings=40, defined=0.7), SETTINGS, "x")
    assert no_interval.verdict == INCONCLUSIVE
    assert no_interval.why == "no interval: the quantity is undefined in 30 % of the resamples"


def test_one_string_against_none_is_inconclusive_not_a_holding_reduction():
    # The case: the baseline extracts one training address (at its 2nd and 3rd checkpoint), RMFT none.
    metrics, table = comparisons_of(strings("none", [[], [0], [0]], n=661), strings("rmft", [[], [], []], n=661),
                                    messages("none", [20, 18, 17]), messages("rmft", [21.5, 19.2, 18.1]))
    claims = claims_table(metrics, table)
    ter = claim(claims, "RMFT reduces TER")
    assert ter["verdict"] == INCONCLUSIVE and ter["ours"] == pytest.approx(100.0)
    assert ter["evidence"] == "baseline: 1 distinct string" and ter["CI low"] is None
    assert ter["why"] == "the baseline extracted 1 distinct string, fewer than claims.min_strings = 10"
    # Swapping the runs does not flip the verdict to "does not hold": it stays inconclusive.
    swapped = claims_table(*comparisons_of(strings("none", [[], [], []], n=661),
                                           strings("rmft", [[], [0], [0]], n=661)))
    assert claim(swapped, "RMFT reduces TER")["verdict"] in (INCONCLUSIVE, UNTESTABLE)


def test_rmft_claims_hold_fail_or_are_inconclusive_on_enough_strings():
    base = [range(40), range(50), range(60)]
    holds = claims_table(*comparisons_of(strings("none", base), strings("rmft", [range(5), range(6), range(8)]),
                                         messages("none", [20, 18, 17]), messages("rmft", [20.4, 18.3, 17.5])))
    ter = claim(holds, "RMFT reduces TER")
    assert ter["verdict"] == HOLDS and ter["CI low"] > 0 and ter["interval over"] == "strings"
    assert ter["paper"] == "80.81" and ter["paper: model, data"] == "GPT-2, Enron e-mail; Joshi & Smith"
    assert "EMAIL_ADDRESS" in ter["measured on"] and "rmft vs none" in ter["measured on"]
    assert claim(holds, "RMFT costs little")["verdict"] == HOLDS
    assert "SER equals TER here" in claim(holds, "RMFT reduces SER")["why"]

    worse = claims_table(*comparisons_of(strings("none", [range(12), range(14), range(16)]), strings("rmft", base),
                                         messages("none", [20, 18, 17]), messages("rmft", [25, 23, 22])))
    assert claim(worse, "RMFT reduces TER")["verdict"] == FAILS
    assert claim(worse, "RMFT costs little")["verdict"] == FAILS

    close = claims_table(*comparisons_of(strings("none", base), strings("rmft", [range(38), range(52), range(59)]),
                                         messages("none", [20, 18, 17]), messages("rmft", [21.8, 19.6, 18.6])))
    assert claim(close, "RMFT reduces TER")["verdict"] == INCONCLUSIVE
    assert "contains 0" in claim(close, "RMFT reduces TER")["why"]

    scope = claims_table(*comparisons_of(strings("none", base), strings("rmft_all", [range(5)] * 3)))
    assert claim(scope, "RMFT reduces TER")["verdict"] == UNTESTABLE
    assert "paper's scope" in claim(scope, "RMFT reduces TER")["why"]


def test_rmft_against_deduplication():
    base = [range(40), range(50), range(60)]
    parts = [strings("none", base), strings("rmft", [range(5), range(6), range(8)]),
             strings("dedup", [range(20), range(25), range(30)]), messages("none", [20, 18, 17]),
             messages("rmft", [20.4, 18.3, 17.5]), messages("dedup", [26.0, 23.5, 22.0])]
    table = claims_table(*comparisons_of(*parts))
    assert claim(table, "RMFT beats deduplication on TER")["verdict"] == HOLDS
    # dedup costs +30 %, beyond τ_max = 20 %: no AURC of dedup, so the difference is not testable.
    aurc = claim(table, "RMFT beats deduplication on AURC")
    assert aurc["verdict"] == UNTESTABLE and "dedup has no checkpoint within τ_max" in aurc["why"]
    assert "smallest PPL increase 29.4 %" in aurc["why"]
    wide = claims_table(*comparisons_of(*parts, taus=tuple(float(t) for t in range(41))))
    assert claim(wide, "RMFT beats deduplication on AURC")["verdict"] == HOLDS
    no_dedup = claims_table(*comparisons_of(*parts[:2], *parts[3:5]))
    assert "needs a deduplication run" in claim(no_dedup, "RMFT beats deduplication on AURC")["why"]
    # deduplication away from the paper's settings (Jaccard 0.7) is no test of the paper's comparison
    other = [strings("dedup_t0.7", [range(20), range(25), range(30)]), messages("dedup_t0.7", [26.0, 23.5, 22.0])]
    away = claims_table(*comparisons_of(*parts[:2], *parts[3:5], *other))
    assert "needs a deduplication run" in claim(away, "RMFT beats deduplication on TER")["why"]


def test_repetition_trend_needs_strings_and_significance():
    import numpy as np

    occurrences = np.repeat([1, 2, 4, 8, 16], 20)
    rising = [i for i in range(100) if i % 20 < [1, 3, 6, 10, 16][i // 20]]
    table = claims_table(*comparisons_of(strings("none", [rising] * 3, occurrences=occurrences)))
    assert claim(table, "Extraction grows", **{"measured on": "train-prefix"})["verdict"] == HOLDS
    falling = [i for i in range(100) if i % 20 < [16, 10, 6, 3, 1][i // 20]]
    table = claims_table(*comparisons_of(strings("none", [falling] * 3, occurrences=occurrences)))
    assert claim(table, "Extraction grows")["verdict"] == FAILS
    few = claims_table(*comparisons_of(strings("none", [[99]] * 3, occurrences=occurrences)))
    assert claim(few, "Extraction grows")["verdict"] == INCONCLUSIVE


def test_membership_claims():
    parts = [scores("full", [0.6, 1.2, 1.8]), scores("lora_mlp", [0.5, 1.0, 1.4]),
             scores("lora_attention", [0.1, 0.2, 0.3]), scores("prompt", [0.0, 0.02, 0.01])]
    table = claims_table(*comparisons_of(*parts))
    gap = claim(table, "Parameter-based")
    assert gap["verdict"] == HOLDS and "full,lora_attention,lora_mlp vs prompt" in gap["measured on"]
    assert claim(table, "LoRA on MLP")["verdict"] == HOLDS
    # Three checkpoints can never make a significant trend (p >= 1/6): not testable, however monotone, and
    # the row says how many points it would need.
    trend = claim(table, "LOSS AUC of parameter-based", **{"measured on": "full"})
    assert trend["verdict"] == UNTESTABLE and trend["p"] == pytest.approx(1 / 6)
    assert "3 points cannot reach p <= 0.05" in trend["why"] and trend["would need"] == ">= 4 points (3 now)"
    near = claim(table, "Prompt-based tuning stays")
    assert near["verdict"] in (HOLDS, INCONCLUSIVE) and near["CI low"] < 0.5 < near["CI high"]
    far = claims_table(*comparisons_of(scores("full", [2.0] * 3), scores("ptuning", [1.5] * 3)))
    assert claim(far, "Prompt-based tuning stays")["verdict"] == FAILS
    reverse = claims_table(*comparisons_of(scores("full", [0.0] * 3), scores("prefix", [1.5] * 3)))
    assert claim(reverse, "Parameter-based")["verdict"] == FAILS
    assert claim(reverse, "LoRA on MLP")["verdict"] == UNTESTABLE


def test_a_prompt_based_run_that_did_not_learn_is_left_out():
    parts = [scores("full", [0.6, 1.2, 1.8]), scores("prompt", [0.0] * 3),
             messages("none", [30, 30, 30], tuning="prompt", base_ppl=25.0)]
    table = claims_table(*comparisons_of(*parts))
    assert "no prompt-based run beat" in claim(table, "Parameter-based")["why"]
    assert "has not learnt the data" in claim(table, "Prompt-based tuning stays")["why"]


def test_a_trend_over_four_model_sizes_can_hold():
    parts = [scores("full", [s] * 3, base=b, noise=i) for i, (b, s) in
             enumerate((("gpt2", 0.2), ("gpt2-medium", 0.7), ("gpt2-large", 1.2), ("gpt2-xl", 1.8)))]
    size = claim(claims_table(*comparisons_of(*parts)), "Full fine-tuning's")
    assert size["verdict"] == HOLDS and size["p"] == pytest.approx(1 / 24)
    assert size["claim"].endswith("(Spearman rho)")
    # Two sizes make no trend (rho is +-1, p = 1/2): the claim reads their AUC difference and its interval.
    close = claim(claims_table(*comparisons_of(*parts[:2])), "Full fine-tuning's")
    assert close["claim"].endswith("(larger minus smaller)") and close["CI low"] < 0
    assert close["verdict"] == INCONCLUSIVE
    apart = claim(claims_table(*comparisons_of(parts[0], parts[3])), "Full fine-tuning's")
    assert apart["verdict"] == HOLDS and apart["CI low"] > 0 and apart["measured on"].startswith("gpt2,gpt2-xl,")


def test_tiny_gpt2_sizes_are_ordered_by_the_parameters_the_workflow_gives():
    small, large = (scores("full", [s] * 3, base=b, noise=i) for i, (b, s) in
                    enumerate((("tiny-gpt2", 1.6), ("tiny-gpt2-4x256", 0.2))))
    sizes = {"tiny-gpt2": 2_694_144, "tiny-gpt2-4x256": 4_273_664}
    pair = claim(claims_table(*comparisons_of(small, large, model_sizes=sizes)), "Full fine-tuning's")
    assert pair["verdict"] == FAILS and pair["CI high"] < 0  # the larger model memorised less here
    assert pair["measured on"].startswith("tiny-gpt2,tiny-gpt2-4x256,")
    unsized = claim(claims_table(*comparisons_of(small, large)), "Full fine-tuning's")
    assert unsized["verdict"] == UNTESTABLE  # names the report cannot size, and no sizes given


def test_without_runs_every_claim_is_not_testable_and_named(tmp_path):
    metrics, table = comparisons_of(messages("none", [20, 18, 17]))
    claims = claims_table(metrics, table)
    assert set(claims["verdict"]) == {UNTESTABLE} and claims["why"].null_count() == 0 and claims.height >= 9
    paths = build_tables(metrics, table, tmp_path)
    assert (tmp_path / "claims.md").read_text().startswith("| claim | verdict | why | would need |")
    assert tmp_path / "claims.csv" in paths


def test_the_docs_state_every_verdict_rule():
    readme = " ".join((Path(__file__).resolve().parents[1] / "docs" / "statistics.md").read_text().split())
    missing = [key for key, rule in RULES.items() if rule.text() not in readme]
    assert not missing, (f"docs/statistics.md lacks the verdict rule(s) {missing}; print them with "
                         f"piimem.report.claims.rule_table")
    assert rule_table().count("\n") == len(RULES) + 2


def test_targeted_claims_follow_the_paired_drop():
    from piimem.aggregate import METRICS_SCHEMA
    from report_data import targets

    # none gets 0-59 of 200 targets right, rmft 0-29: RMFT reduces inference accuracy (holds)
    _, table = comparisons_of(targets("none", range(60)), targets("rmft", range(30)))
    claims = claims_table(pl.DataFrame(schema=METRICS_SCHEMA), table)
    row = claim(claims, "RMFT reduces PII inference")
    assert row["verdict"] == "holds" and row["ours"] == pytest.approx(15.0)
    assert "extension" in row["paper: model, data"] and "200 targets" in row["measured on"]
    # the same accuracy in both runs: inconclusive, never "does not hold"
    _, table = comparisons_of(targets("none", range(5)), targets("rmft", [0, 1, 2, 3, 7]))
    row = claim(claims_table(pl.DataFrame(schema=METRICS_SCHEMA), table), "RMFT reduces PII inference")
    assert row["verdict"] == "inconclusive" and "contains 0" in row["why"]
    # 5 targets only none gets right, none only rmft: the bootstrap interval lies above 0, but the exact
    # McNemar p is 2/32 = 0.0625, so the claim stays inconclusive
    _, table = comparisons_of(targets("none", range(5)), targets("rmft", []))
    row = claim(claims_table(pl.DataFrame(schema=METRICS_SCHEMA), table), "RMFT reduces PII inference")
    assert row["CI low"] > 0 and row["p"] == pytest.approx(0.0625)
    assert row["verdict"] == INCONCLUSIVE and "McNemar p-value 0.0625 is above 0.05" in row["why"]
    # without reconstruction records that claim is not testable
    assert claim(claims, "RMFT reduces PII reconstruction")["verdict"] == UNTESTABLE


def test_dp_claims_read_the_dp_run_against_none_and_need_a_run_that_learnt():
    # none extracts 30 of 100 strings at each checkpoint, the DP run 5: a clear TER reduction; members stand
    # out in none (separation 1.5) and barely in the DP run (0.1): a clear AUC drop; DP costs perplexity.
    base = [strings("none", [range(30)] * 3), scores("full", [1.5] * 3), messages("none", [20, 18, 17])]
    learnt = [strings("dp_e8", [range(5)] * 3), scores("full", [0.1] * 3, defense="dp_e8"),
              messages("dp_e8", [30, 28, 27])]
    table = claims_table(*comparisons_of(*base, *learnt))
    for start, expected in (("DP-SGD reduces TER", HOLDS), ("DP-SGD lowers the membership", HOLDS),
                            ("DP-SGD costs perplexity", HOLDS)):
        found = claim(table, start)
        assert found["verdict"] == expected and "dp_e8 vs none" in found["measured on"], found
        assert "Lukas et al. 2023, a peer's finding" in found["paper: model, data"]
    # The same privacy numbers from a DP run whose perplexity (60) stays above its base model's (50): it has not
    # learnt, so its lower TER and AUC are no evidence of protection; its perplexity cost still holds.
    stalled = [*learnt[:2], messages("dp_e8", [62, 61, 60])]
    table = claims_table(*comparisons_of(*base, *stalled))
    for start in ("DP-SGD reduces TER", "DP-SGD lowers the membership"):
        found = claim(table, start)
        assert found["verdict"] == INCONCLUSIVE and "has not learnt" in found["why"]
        assert 'alone says "holds"' in found["why"]
    assert claim(table, "DP-SGD costs perplexity")["verdict"] == HOLDS
    # Without a dp defense the claims table has no DP rows at all.
    assert claims_table(*comparisons_of(*base)).filter(pl.col("claim").str.starts_with("DP-SGD")).height == 0


def test_memorising_more_needs_a_membership_signal_at_all():
    # Two LoRA runs at chance whose paired difference is still clear: no evidence that either memorises.
    chance = [scores("full", [1.5] * 3), scores("lora_mlp", [0.1] * 3), scores("lora_attention", [-0.15] * 3)]
    metrics, table = comparisons_of(*chance)
    difference = table.filter(pl.col("quantity") == "auc_difference").row(0, named=True)
    assert difference["ci_low"] > 0  # the interval alone would say "holds"
    lora = claim(claims_table(metrics, table), "LoRA on MLP")
    assert lora["verdict"] == INCONCLUSIVE and "lora_mlp's LOSS AUC" in lora["why"]
    assert "shows no membership signal" in lora["why"] and 'alone says "holds"' in lora["why"]
    # The same difference between runs that do memorise holds.
    signal = claims_table(*comparisons_of(scores("full", [1.5] * 3), scores("lora_mlp", [1.2] * 3),
                                          scores("lora_attention", [0.9] * 3)))
    assert claim(signal, "LoRA on MLP")["verdict"] == HOLDS
    # DP-SGD "lowers" an AUC that plain fine-tuning never raised above chance: no verdict.
    flat = claims_table(*comparisons_of(scores("full", [0.05] * 3), scores("full", [-0.3] * 3, defense="dp_e8"),
                                        messages("none", [20, 18, 17]), messages("dp_e8", [24, 22, 21])))
    drop = claim(flat, "DP-SGD lowers the membership")
    assert drop["verdict"] == INCONCLUSIVE and "shows no membership signal" in drop["why"]


def test_rate_claims_below_min_strings_say_how_many_strings_would_decide_them():
    # The default's case: the baseline extracts 3 of 661 addresses; 10 strings at that rate need 661 x 10 / 3.
    three = judge("rmft_ter", row(50.0, 10.0, 90.0, baseline_strings=3, n=661, entity_type="EMAIL_ADDRESS"),
                  SETTINGS, "x")
    assert three.verdict == INCONCLUSIVE
    assert three.needs == "about 2,300 true e-mail addresses (661 now) for the baseline to extract 10 at its rate " \
                          "(3 of 661)"
    # where the interval needs more than the rate does, the larger count is the one that decides
    wide = judge("rmft_ter", row(50.0, -20.0, 100.0, baseline_strings=3, n=661, entity_type="EMAIL_ADDRESS"),
                 SETTINGS, "x")
    assert wide.needs.startswith("about 2,700 true e-mail addresses (661 now) for its interval to exclude 0")
    # nothing extracted: the rate's exact upper bound gives the least it would take
    none = judge("rmft_ter", row(None, None, None, baseline_strings=0, n=661), SETTINGS, "x")
    assert none.verdict == UNTESTABLE and none.needs == ""
    zero = judge("rmft_ter", row(0.0, 0.0, 0.0, baseline_strings=0, n=661), SETTINGS, "x")
    assert "at least" in zero.needs and "upper bound 0.56 %" in zero.needs


def test_an_inconclusive_interval_says_how_many_items_would_exclude_its_bound():
    from piimem.intervals import items_needed

    drop = judge("rmft_exposure", row(0.05, -0.02, 0.12, n=300, resampled="targets", p_value=0.2), SETTINGS, "x")
    assert drop.verdict == INCONCLUSIVE
    expected = items_needed(0.05, -0.02, 0.12, 0.0, 300)
    assert f"about {int(round(expected, -2)):,} targets (300 now)" in drop.needs or \
        f"about {int(round(expected + 49, -2)):,} targets (300 now)" in drop.needs
    near = judge("prompt_near_chance", row(0.52, 0.43, 0.61, n=162, resampled="link groups of members and "
                                                                             "non-members"), SETTINGS, "x")
    assert near.verdict == INCONCLUSIVE and "members + non-members (162 now)" in near.needs
    assert "inside 0.5 +- 0.05" in near.needs
    flat = judge("rmft_exposure", row(0.0, -0.1, 0.1, n=300, resampled="targets", p_value=1.0), SETTINGS, "x")
    assert flat.needs == "the effect is exactly at the bound: no sample size decides it"
    assert judge("rmft_ppl", row(5.0, 3.0, 7.0), SETTINGS, "x").needs == ""  # decided: nothing needed


def test_exposure_claims_hold_on_a_graded_drop_that_accuracy_misses():
    import numpy as np
    from report_data import targets

    from piimem.aggregate import METRICS_SCHEMA

    # The case: exposures of 300 targets drop by 0.12 bits on average under RMFT while top-1 accuracy
    # barely moves (16 vs 14 of 300): the accuracy claim is inconclusive, the exposure claim holds.
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 5.6, 300)
    occurrences = rng.integers(1, 6, 300)
    none = targets("none", range(16), n=300, exposure=base + 0.2 * np.log2(occurrences), occurrences=occurrences)
    rmft = targets("rmft", range(2, 16), n=300, exposure=base - 0.12 + rng.normal(0, 0.5, 300),
                   occurrences=occurrences)
    dedup = targets("dedup", range(16), n=300, exposure=base + rng.normal(0, 0.5, 300), occurrences=occurrences)
    claims = claims_table(pl.DataFrame(schema=METRICS_SCHEMA), comparisons_of(none, rmft, dedup)[1])
    assert claim(claims, "RMFT reduces PII inference")["verdict"] == INCONCLUSIVE
    exposure = claim(claims, "RMFT lowers the exposure of true e-mail addresses vs plain")
    assert exposure["verdict"] == HOLDS and exposure["p"] < 0.05 and exposure["CI low"] > 0
    assert "none vs" not in exposure["measured on"] and "rmft vs none" in exposure["measured on"]
    versus = claim(claims, "RMFT lowers the exposure of true e-mail addresses more than")
    assert versus["verdict"] == HOLDS and "rmft vs dedup" in versus["measured on"]
    grows = claim(claims, "Exposure of a true string grows")
    assert grows["verdict"] == HOLDS and grows["ours"] > 0
    # no targeted attack on dedup: that comparison is not testable and says what it needs
    claims = claims_table(pl.DataFrame(schema=METRICS_SCHEMA), comparisons_of(none, rmft)[1])
    missing = claim(claims, "RMFT lowers the exposure of true e-mail addresses more than")
    assert missing["verdict"] == UNTESTABLE and "a deduplication run" in missing["why"]


def test_a_blind_baseline_that_separates_the_sample_voids_every_auc_claim():
    import numpy as np

    # full memorises (LOSS AUC well above chance); prompt does not. With a blind score that tracks membership
    # (a shifted sample) the claims that read these AUCs are inconclusive, and the blind row does not hold.
    shifted = np.r_[np.full(80, 1.0), np.zeros(80)] + np.random.default_rng(3).normal(0, 0.3, 160)
    fair = np.random.default_rng(4).normal(0, 1, 160)
    for blind, voided in ((shifted, True), (fair, False)):
        parts = [scores("full", [0.6, 1.2, 1.8], blind=blind), scores("prompt", [0.0, 0.02, 0.01], blind=blind)]
        table = claims_table(*comparisons_of(*parts))
        row = claim(table, "Members and non-members are indistinguishable")
        gap = claim(table, "Parameter-based")
        if voided:
            assert row["verdict"] == FAILS and row["CI low"] > 0.55
            assert gap["verdict"] == INCONCLUSIVE and "differ without the model" in gap["why"]
            assert "the interval alone says \"holds\"" in gap["why"]
            assert "blind baseline cannot separate" in gap["would need"]
        else:
            assert row["verdict"] in (HOLDS, INCONCLUSIVE) and row["CI low"] < 0.55
            assert gap["verdict"] == HOLDS


def test_canary_claims_read_the_trend_and_rmft_s_drop_on_repeated_canaries():
    import numpy as np
    from report_data import canaries

    from piimem.aggregate import METRICS_SCHEMA

    rng = np.random.default_rng(10)
    occurrences = np.tile([0, 1, 2, 4, 8], 8)
    none = 2 + 3 * np.log2(1 + occurrences) + rng.normal(0, 1, 40)
    rmft = np.where(occurrences >= 2, 5 + rng.normal(0, 1, 40), none)
    table = claims_table(pl.DataFrame(schema=METRICS_SCHEMA),
                         comparisons_of(canaries("none", none, occurrences), canaries("rmft", rmft, occurrences))[1])
    assert claim(table, "Canary exposure grows")["verdict"] == HOLDS
    drop = claim(table, "RMFT lowers the exposure of repeated canaries")
    assert drop["verdict"] == HOLDS and "EMAIL_ADDRESS: rmft vs none" in drop["measured on"]
    assert "24 canaries" in drop["measured on"]
    # only the types the paper-scope RMFT masks: a phone canary's exposure is no test of it
    types = ["EMAIL_ADDRESS"] * 20 + ["PHONE_NUMBER"] * 20
    mixed = claims_table(pl.DataFrame(schema=METRICS_SCHEMA),
                         comparisons_of(canaries("none", none, occurrences, entity_types=types),
                                        canaries("rmft", rmft, occurrences, entity_types=types))[1])
    assert mixed.filter(pl.col("claim").str.starts_with("RMFT lowers the exposure of repeated")).height == 1
    # flat exposures: the trend is inconclusive and says how many canaries would decide it
    flat = claims_table(pl.DataFrame(schema=METRICS_SCHEMA),
                        comparisons_of(canaries("none", rng.normal(3, 1, 40), occurrences),
                                       canaries("rmft", rng.normal(3, 1, 40), occurrences))[1])
    row = claim(flat, "Canary exposure grows")
    assert row["verdict"] in (INCONCLUSIVE, FAILS)
    if row["verdict"] == INCONCLUSIVE:
        assert "canaries (40 now)" in row["would need"] or "no sample size" in row["would need"]
    # no canaries (a real corpus): no canary rows at all
    assert claims_table(*comparisons_of(messages("none", [20, 18, 17]))).filter(
        pl.col("claim").str.contains("anar")).height == 0
