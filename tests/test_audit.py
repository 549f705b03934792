"""The privacy audit (piimem.audit): the ε lower bound against mechanisms of known ε and an independent
computation, the canaries (seeded, half held out, never in a split, each trained alone, kept by deduplication,
found by the PII stage), and the claims, table and figure that report it."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import binom

from piimem.audit import DOC_ID_BASE, with_canaries
from piimem.audit.bound import (
    GUESS_SHARES,
    _ks,
    audit,
    canaries_needed,
    correct_guesses,
    epsilon_lower_bound,
    p_value,
)
from piimem.audit.canaries import canary_spans, canary_summary, make_canaries
from piimem.metric_names import AUDIT, DP_EPSILON
from piimem.schema import default


def randomised_response(epsilon: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, included) of ε-DP randomised response: each canary's score says its inclusion truthfully with
    probability e^ε / (1 + e^ε), ties broken by a tiny seeded jitter."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    truthful = rng.random(m) < 1 / (1 + math.exp(-epsilon))
    return np.where(truthful, included, ~included) + 1e-6 * rng.random(m), included


def test_p_value_matches_an_independent_computation():
    # Theorem 5.2 written out term by term: the tail, and 2 m δ max_i (sum_{j=v-i}^{v-1} pmf(j)) / i.
    for m, r, v, eps, delta in ((100, 40, 33, 1.0, 0.0), (500, 200, 150, 0.7, 1e-5), (1000, 60, 60, 3.0, 1e-4),
                                (300, 300, 210, 0.5, 1e-3)):
        q = math.exp(eps) / (1 + math.exp(eps))
        tail = sum(binom.pmf(j, r, q) for j in range(v, r + 1))
        alpha = max((sum(binom.pmf(j, r, q) for j in range(v - i, v)) / i for i in range(1, v + 1)), default=0)
        expected = min(1.0, tail + 2 * m * delta * alpha)
        assert p_value(m, r, v, eps, delta) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_bound_of_all_guesses_right_solves_the_binomial_tail():
    # δ = 0, r of r right: the bound is the ε with q^r = β, q = e^ε / (1 + e^ε).
    q = 0.05 ** (1 / 100)
    assert epsilon_lower_bound(1000, 100, 100, 0.0, 0.05) == pytest.approx(math.log(q / (1 - q)), abs=1e-5)
    assert epsilon_lower_bound(1000, 100, 50, 0.0, 0.05) == 0.0  # chance accuracy rejects nothing


@pytest.mark.parametrize("epsilon", [1.0, 4.0, 8.0])
def test_bound_stays_below_the_true_epsilon_of_randomised_response(epsilon):
    # 200 seeded audits of 400 canaries each: the bound exceeds the true ε in at most β of them.
    above = sum(audit(*randomised_response(epsilon, 400, seed), delta=1e-5, needed=False).epsilon > epsilon
                for seed in range(200))
    assert above <= 0.05 * 200


@pytest.mark.parametrize("epsilon, margin", [(1.0, 0.9), (4.0, 3.6), (8.0, 5.0)])
def test_bound_nears_the_true_epsilon_with_many_canaries(epsilon, margin):
    # 20,000 canaries at δ = 1e-5 (measured 0.95-0.97, 3.79-3.88 and 5.37-5.64 over two seeds).
    for seed in range(2):
        result = audit(*randomised_response(epsilon, 20_000, seed), delta=1e-5, needed=False)
        assert margin <= result.epsilon <= epsilon


def test_a_model_that_memorises_every_included_canary_gives_a_large_bound():
    included = np.random.default_rng(3).random(400) < 0.5
    result = audit(included.astype(float), included, delta=1e-5)
    assert result.epsilon > 3.5 and result.correct == result.guesses and result.needed is None
    assert result.share < 1  # all guesses right only where none reach past the included half


def test_no_signal_gives_zero_and_says_more_canaries_would_not_help():
    rng = np.random.default_rng(5)
    included = rng.random(400) < 0.5
    result = audit(np.zeros(400), included, delta=1e-5)  # one score for all: guessed by position
    assert result.epsilon == 0 and result.guesses == 400
    zeros = [audit(rng.random(400), included, delta=1e-5, needed=False).epsilon == 0 for _ in range(50)]
    assert sum(zeros) >= 45
    # Scores that rank every held-out canary first: no share guesses better than chance.
    assert canaries_needed((~included).astype(float), included, delta=1e-5) == math.inf


def test_canaries_needed_is_the_size_at_which_the_seen_accuracy_gives_a_bound():
    # Randomised response at ε = 0.1 with 400 canaries has no power; at the count it names, the accuracy of
    # some share gives a bound > 0, and at 5 % fewer none does.
    scores, included = randomised_response(0.1, 400, 0)
    result = audit(scores, included, delta=1e-5)
    assert result.epsilon == 0 and math.isfinite(result.needed) and result.needed > 400
    beta = 0.05 / len(GUESS_SHARES)
    accuracies = [v / (2 * k) for k, v in zip(_ks(400, GUESS_SHARES), correct_guesses(scores, included,
                                                                                       _ks(400, GUESS_SHARES)))]

    def some_bound(n: int) -> bool:
        rs = [2 * k for k in _ks(n, GUESS_SHARES)]
        return any(a > 0.5 and epsilon_lower_bound(n, r, int(a * r), 1e-5, beta) > 0 for a, r in zip(accuracies, rs))

    assert some_bound(int(result.needed)) and not some_bound(int(0.95 * result.needed))


def test_canaries_are_seeded_half_included_distinct_and_above_every_corpus_id():
    first, again, other = make_canaries(200, 42), make_canaries(200, 42), make_canaries(200, 7)
    assert first.equals(again) and not first.equals(other)
    assert 70 <= first["included"].sum() <= 130
    assert first["value"].n_unique() == 200 and (first["doc_id"] >= DOC_ID_BASE).all()
    assert all(text[start:start + len(value)] == value for text, start, value in first.select("text", "start", "value").rows())


def test_only_the_included_half_reaches_the_training_text():
    canaries = make_canaries(60, 1)
    train = pl.DataFrame({"doc_id": [1, 2], "text": ["a message", "another"]})
    spans = pl.DataFrame({"doc_id": [1], "start": [0]})
    texts, merged = with_canaries(train, canaries, spans, pl.DataFrame({"doc_id": [DOC_ID_BASE], "start": [5]}))
    added = set(texts["doc_id"].to_list()) - {1, 2}
    assert added == set(canaries.filter(pl.col("included"))["doc_id"].to_list())
    held_out = canaries.filter(~pl.col("included"))["value"].to_list()
    assert not any(v in t for v in held_out for t in texts["text"].to_list())
    assert merged.height == 2
    assert with_canaries(train, None)[0] is train
    with pytest.raises(ValueError, match="doc ids at or above"):
        with_canaries(pl.DataFrame({"doc_id": [DOC_ID_BASE + 5], "text": ["x"]}), canaries)


def test_each_canary_is_an_example_of_its_own_and_changes_no_other():
    from piimem.train.data import TokenizedTexts, plan_epoch

    def store(docs: dict[int, int]) -> TokenizedTexts:
        ids = np.array(sorted(docs), dtype=np.int64)
        lengths = np.array([docs[i] for i in ids])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate([np.full(n, i % 1000, dtype=np.int32) for i, n in zip(ids, lengths)])
        return TokenizedTexts(doc_ids=ids, offsets=offsets, tokens=tokens)

    corpus = {i: 20 + 37 * i % 150 for i in range(1, 40)}
    canaries = {DOC_ID_BASE + j: 30 for j in range(6)}
    plain = plan_epoch(store(corpus), epoch=0, packing="blocks", block_size=64, seed=3)
    planted = plan_epoch(store(corpus | canaries), epoch=0, packing="blocks", block_size=64, seed=3)
    fewer = plan_epoch(store(corpus | dict(list(canaries.items())[1:])), epoch=0, packing="blocks", block_size=64,
                       seed=3)

    def examples(plan):
        return [(tuple(plan.example_doc_ids(i).tolist()), plan.example_tokens(i).tobytes())
                for i in range(plan.n_examples)]

    assert planted.n_examples == plain.n_examples + 6
    alone = [e for e in examples(planted) if e[0][0] >= DOC_ID_BASE]
    assert sorted(e[0] for e in alone) == [(d,) for d in sorted(canaries)]
    assert [e for e in examples(planted) if e[0][0] < DOC_ID_BASE] == examples(plain)
    # Removing one canary removes its example and nothing else.
    gone = [e for e in examples(planted) if e not in examples(fewer)]
    assert gone == [((DOC_ID_BASE,), planted.example_tokens([i for i in range(planted.n_examples)
                                                             if planted.example_doc_ids(i)[0] == DOC_ID_BASE][0])
                     .tobytes())]
    # Every document counts as consumed at its own example.
    first = planted.first_example_of_docs()
    for doc_id, example in zip(planted.trained_doc_ids.tolist(), first.tolist()):
        assert doc_id in planted.example_doc_ids(int(example)).tolist()


def test_deduplication_keeps_every_canary_whole():
    from piimem.dedup import DedupConfig, deduplicate

    canaries = make_canaries(300, 42)
    kept = deduplicate(canaries["doc_id"].to_list(), canaries["text"].to_list(),
                       DedupConfig.from_config(default("dedup"))).texts
    assert kept.height == 300
    assert kept.sort("doc_id")["text"].to_list() == canaries.sort("doc_id")["text"].to_list()


def test_the_pii_stage_finds_every_canary_address():
    canaries = make_canaries(40, 42)
    pii = {k: default(f"pii.{k}") for k in ("entity_types", "score_threshold", "batch_size", "spacy_model", "ignore")}
    summary = canary_summary(canaries, canary_spans(canaries, pii))
    assert summary["addresses_detected"].item() == 40 and summary["canaries"].item() == 40


# ------------------------------------------------------------------------------------------
# Claims, table, figure


def audit_metrics(bounds: dict[str, float], accounted: dict[str, float] | None = None,
                  needed: float | None = None) -> pl.DataFrame:
    from piimem.aggregate import METRICS_SCHEMA

    rows = []
    for defense, bound in bounds.items():
        values = {AUDIT["epsilon"]: bound, AUDIT["delta"]: 1e-5, AUDIT["canaries"]: 400.0, AUDIT["included"]: 200.0,
                  AUDIT["guesses"]: 400.0, AUDIT["correct"]: 230.0,
                  AUDIT["needed"]: needed if bound == 0 and needed is not None else math.nan}
        if accounted and defense in accounted:
            values[AUDIT["accounted"]] = accounted[defense]
            values[DP_EPSILON] = accounted[defense] / 2
        for metric, value in values.items():
            rows.append({"corpus": "synthetic", "base_model": "tiny-gpt2", "defense": defense, "tuning": "full",
                         "seed": 42, "checkpoint": "c03", "epoch": 3.0, "metric": metric,
                         "value": None if isinstance(value, float) and math.isnan(value) else value})
    return pl.DataFrame(rows, schema={k: METRICS_SCHEMA[k] for k in rows[0]}).with_columns(
        [pl.lit(None, dtype=METRICS_SCHEMA[c]).alias(c) for c in METRICS_SCHEMA if c not in rows[0]]
    ).select(list(METRICS_SCHEMA))


def drop_row(defense: str, value: float, low: float, high: float) -> pl.DataFrame:
    from piimem.report.comparisons import COMPARISON_SCHEMA

    row = {c: None for c in COMPARISON_SCHEMA} | {
        "quantity": "audit_epsilon_drop", "base_model": "tiny-gpt2", "tuning": "full", "defense": defense,
        "versus": "none", "checkpoint": "c03", "epoch": 3.0, "value": value, "ci_low": low, "ci_high": high,
        "defined": 1.0, "seeds": 1, "n": 400, "resampled": "canaries"}
    return pl.DataFrame([row], schema=COMPARISON_SCHEMA)


def test_the_dp_check_fires_on_a_constructed_violation():
    from piimem.report.claims import FAILS, HOLDS, ClaimSettings, audit_claims

    settings = ClaimSettings()
    violated = audit_claims(audit_metrics({"none": 2.0, "dp": 5.0}, {"dp": 3.0}), drop_row("dp", -3, -4, -2), settings)
    dp = [c for c in violated if c.rule == "dp_audit"]
    assert len(dp) == 1 and dp[0].verdict == FAILS and "DP guarantee violated" in dp[0].why
    kept = audit_claims(audit_metrics({"none": 2.0, "dp": 1.0}, {"dp": 3.0}), drop_row("dp", 1, 0.5, 1.5), settings)
    assert [c.verdict for c in kept if c.rule == "dp_audit"] == [HOLDS]


def test_rmft_audit_claim_reads_the_drop_and_says_what_a_powerless_audit_needs():
    from piimem.report.claims import HOLDS, INCONCLUSIVE, ClaimSettings, audit_claims

    settings = ClaimSettings()
    held = audit_claims(audit_metrics({"none": 2.0, "rmft": 0.5}), drop_row("rmft", 1.5, 0.4, 2.2), settings)
    assert [c.verdict for c in held if c.rule == "rmft_audit"] == [HOLDS]
    none = audit_claims(audit_metrics({"none": 0.0, "rmft": 0.0}, needed=3300.0), drop_row("rmft", 0, 0, 0),
                        settings)
    claim = next(c for c in none if c.rule == "rmft_audit")
    assert claim.verdict == INCONCLUSIVE and "no power" in claim.why and "3,300 audit canaries" in claim.needs
    no_audit = pl.DataFrame(schema=audit_metrics({"none": 1.0}).schema)
    assert audit_claims(no_audit, drop_row("rmft", 0, 0, 0), settings) == []


def test_audit_table_flags_a_violation_and_figure_plots_the_bounds():
    from piimem.report.figures import draw_audit
    from piimem.report.tables import audit_table

    metrics = audit_metrics({"none": 2.0, "rmft": 0.0, "dp": 5.0}, {"dp": 3.0}, needed=900.0)
    table = audit_table(metrics, drop_row("dp", -3, -4, -2))
    flags = dict(zip(table["defense"], table["flag"]))
    assert flags == {"none": "", "rmft": "no power: bound 0", "dp": "DP guarantee violated"}
    assert table.filter(pl.col("defense") == "dp")["drop vs none"].item() == -3
    assert table.filter(pl.col("defense") == "rmft")["canaries needed"].item() == 900
    fig = draw_audit(metrics)
    ax = fig.axes[0]
    points = [line.get_ydata()[0] for line in ax.get_lines() if line.get_marker() == "o"]
    assert points == [2.0, 0.0, 5.0]  # none, rmft, dp: the defenses' order
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "rmft", "dp"]
    bars = [line.get_ydata().tolist() for line in ax.get_lines() if line.get_label() == "accounted ε (audit δ)"]
    assert bars == [[3.0, 3.0]]


# ------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
def test_the_workflow_audits_a_plain_and_a_dp_run(tmp_path):
    """The small scenario with 60 audit canaries, none and DP-SGD, full fine-tuning: the canaries' rule, the
    included half in the training text and nowhere else, each run's audit with the accounted ε of the DP run."""
    from workflow_helpers import scenario, snakemake, write_config

    write_config(tmp_path, scenario("small") | {"defenses": ["none", "dp"], "tuning_methods": ["full"],
                                                "exclude": [], "audit": {"canaries": 60}})
    runs = tmp_path / "results/runs/tiny-gpt2"
    # A DP run always names its ε (dp_e8).
    targets = [f"results/runs/tiny-gpt2/{run}-full-s42/audit/c04.tsv" for run in ("none", "dp_e8")]
    snakemake(tmp_path, *targets)
    canaries = pl.read_parquet(tmp_path / "results/private/audit/canaries.parquet")
    summary = pl.read_csv(tmp_path / "results/audit/canaries.tsv", separator="\t")
    assert summary["canaries"].item() == 60 and summary["addresses_detected"].item() == 60
    texts = pl.read_parquet(tmp_path / "results/private/defense/none/train.parquet")
    planted = set(texts.filter(pl.col("doc_id") >= DOC_ID_BASE)["doc_id"].to_list())
    assert planted == set(canaries.filter(pl.col("included"))["doc_id"].to_list())
    messages = pl.read_parquet(tmp_path / "results/private/corpus/messages.parquet")
    splits = pl.read_parquet(tmp_path / "results/corpus/splits.parquet")
    assert not any(v in t for v in canaries["value"].to_list() for t in messages["text"].to_list())
    assert splits["doc_id"].max() < DOC_ID_BASE
    results = {}
    for run in ("none", "dp_e8"):
        rows = dict(pl.read_csv(runs / f"{run}-full-s42/audit/c04.tsv", separator="\t")
                    .select("metric", "value").iter_rows())
        scores = pl.read_parquet(runs / f"{run}-full-s42/audit/c04.audit.parquet")
        assert scores.height == 60 and scores["included"].to_list() == canaries.sort("canary_id")["included"].to_list()
        assert "value" not in scores.columns and "text" not in scores.columns  # public: no address, no message
        results[run] = rows
        assert rows[AUDIT["canaries"]] == 60 and rows[AUDIT["delta"]] == default("audit.delta")
        assert rows[AUDIT["epsilon"]] >= 0
    assert AUDIT["accounted"] not in results["none"]
    assert results["dp_e8"][AUDIT["epsilon"]] <= results["dp_e8"][AUDIT["accounted"]]
    manifest = __import__("json").loads((tmp_path / "results/private/runs/tiny-gpt2/dp_e8-full-s42/manifest.json")
                                        .read_text())
    # Each included canary is an example of its own: the epoch has that many examples more than the blocks.
    assert manifest["documents"] == texts.height
