"""The claims table's verdict rules on constructed metrics tables: every verdict of every rule is reachable."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from piimem.aggregate import METRICS_SCHEMA
from piimem.claims import FAILS, HOLDS, RULES, UNTESTABLE, claims_table
from piimem.metrics import tau_grid
from piimem.tables import build_tables


def row(metric, value, *, defense="none", tuning="full", checkpoint="c01", epoch=1.0, prompt_set=None,
        entity_type=None, base="tiny-gpt2", ci=(None, None), member_text=None):
    return {"corpus": "synthetic", "base_model": base, "defense": defense, "tuning": tuning, "seed": 1,
            "checkpoint": checkpoint, "epoch": epoch, "prompt_set": prompt_set, "entity_type": entity_type,
            "member_text": member_text, "metric": metric, "value": value, "ci_low": ci[0], "ci_high": ci[1]}


def frame(rows) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=METRICS_SCHEMA)


CHECKPOINTS = (("c01", 1.0), ("c02", 2.0))


def extraction(defense, ter, ppl, ser=None, entity_type="EMAIL_ADDRESS"):
    """TER (and SER) of e-mail addresses on train-prefix prompts and ppl_mean, the same at both checkpoints."""
    rows = []
    for checkpoint, epoch in CHECKPOINTS:
        where = dict(defense=defense, checkpoint=checkpoint, epoch=epoch)
        rows += [row("ter", ter, prompt_set="train-prefix", entity_type=entity_type, **where),
                 row("ser", ter if ser is None else ser, prompt_set="train-prefix", entity_type=entity_type, **where),
                 row("ppl_mean", ppl, **where)]
    return rows


def test_rmft_reductions_hold_fail_or_are_untestable():
    holds = frame(extraction("none", 10.0, 10.0) + extraction("rmft", 2.0, 10.5))
    table = claims_table(holds)
    ter = table.filter(pl.col("claim").str.starts_with("RMFT reduces TER")).row(0, named=True)
    assert ter["verdict"] == HOLDS and ter["ours"] == pytest.approx(80.0)
    assert ter["paper"] == "80.81" and ter["paper: model, data"] == "GPT-2, Enron e-mail; Joshi & Smith"
    assert "EMAIL_ADDRESS" in ter["measured on"] and "rmft vs none" in ter["measured on"]
    ppl = table.filter(pl.col("claim").str.starts_with("RMFT costs little")).row(0, named=True)
    assert ppl["verdict"] == HOLDS and ppl["ours"] == pytest.approx(5.0)

    worse = claims_table(frame(extraction("none", 10.0, 10.0) + extraction("rmft", 12.0, 12.0)))
    assert worse.filter(pl.col("claim").str.starts_with("RMFT reduces TER"))["verdict"][0] == FAILS
    assert worse.filter(pl.col("claim").str.starts_with("RMFT costs little"))["verdict"][0] == FAILS

    nothing = claims_table(frame(extraction("none", 0.0, 10.0) + extraction("rmft", 0.0, 10.0)))
    ter = nothing.filter(pl.col("claim").str.starts_with("RMFT reduces TER")).row(0, named=True)
    assert ter["verdict"] == UNTESTABLE and "extracted nothing" in ter["why"]

    no_rmft = claims_table(frame(extraction("none", 10.0, 10.0) + extraction("rmft_all", 1.0, 10.0)))
    ter = no_rmft.filter(pl.col("claim").str.starts_with("RMFT reduces TER")).row(0, named=True)
    assert ter["verdict"] == UNTESTABLE and "paper's scope" in ter["why"]  # rmft_all is not the paper's RMFT


def test_rmft_against_deduplication_on_ter_and_aurc():
    # rmft: 80 % less TER at +5 % PPL; dedup: 50 % less at +30 % (outside τ_max 20: its AURC is undefined).
    rows = extraction("none", 10.0, 10.0) + extraction("rmft", 2.0, 10.5) + extraction("dedup", 5.0, 13.0)
    table = claims_table(frame(rows))
    ter = table.filter(pl.col("claim").str.starts_with("RMFT beats deduplication on TER")).row(0, named=True)
    assert ter["verdict"] == HOLDS and ter["ours"] == pytest.approx(30.0)
    aurc = table.filter(pl.col("claim").str.starts_with("RMFT beats deduplication on AURC")).row(0, named=True)
    assert aurc["verdict"] == HOLDS and "dedup has no checkpoint within τ_max = 20 %" in aurc["why"]
    assert "dedup 30.0 %" in aurc["why"]

    reverse = extraction("none", 10.0, 10.0) + extraction("rmft", 5.0, 13.0) + extraction("dedup", 2.0, 10.5)
    table = claims_table(frame(reverse))
    assert table.filter(pl.col("claim").str.starts_with("RMFT beats deduplication on TER"))["verdict"][0] == FAILS
    assert table.filter(pl.col("claim").str.starts_with("RMFT beats deduplication on AURC"))["verdict"][0] == FAILS

    neither = extraction("none", 10.0, 10.0) + extraction("rmft", 2.0, 13.0) + extraction("dedup", 5.0, 13.0)
    aurc = claims_table(frame(neither)).filter(pl.col("claim").str.starts_with("RMFT beats deduplication on AURC"))
    assert aurc["verdict"][0] == UNTESTABLE and "neither has a checkpoint" in aurc["why"][0]
    # A wider τ grid reaches both: the AURCs compare (80 vs 50 points).
    wide = claims_table(frame(neither), taus=tau_grid(40.0, 1.0))
    aurc = wide.filter(pl.col("claim").str.starts_with("RMFT beats deduplication on AURC")).row(0, named=True)
    assert aurc["verdict"] == HOLDS and aurc["ours"] == pytest.approx(30.0)

    no_dedup = claims_table(frame(extraction("none", 10.0, 10.0) + extraction("rmft", 2.0, 10.5)))
    aurc = no_dedup.filter(pl.col("claim").str.starts_with("RMFT beats deduplication on AURC"))
    assert aurc["verdict"][0] == UNTESTABLE and "needs a deduplication run" in aurc["why"][0]


def repetition(rates):
    return [row(f"ter_rep/{bucket}", rate, prompt_set="test", entity_type="ALL", checkpoint="c02", epoch=2.0)
            for bucket, rate in rates.items()]


@pytest.mark.parametrize("rates, verdict", [
    ({"1": 1.0, "2-3": 5.0, "4-7": 10.0, "16+": 40.0}, HOLDS),
    ({"1": 10.0, "2-3": 5.0, "4-7": 1.0, "8-15": None}, FAILS),
    ({"1": 10.0, "2-3": None}, UNTESTABLE),
])
def test_extraction_by_repetition(rates, verdict):
    table = claims_table(frame(repetition(rates)))
    claim = table.filter(pl.col("claim").str.starts_with("Extraction grows")).row(0, named=True)
    assert claim["verdict"] == verdict
    if verdict == HOLDS:
        assert claim["ours"] == pytest.approx(1.0)


def mia(tuning, aucs, ppl=10.0, ppl_base=20.0, ci=None, base="tiny-gpt2"):
    """LOSS AUC per epoch (1, 2, ...) of an undefended run, with its perplexity and the base model's."""
    rows = []
    for epoch, auc in enumerate(aucs, start=1):
        where = dict(tuning=tuning, checkpoint=f"c{epoch:02d}", epoch=float(epoch), base=base)
        interval = ci if ci is not None else (auc - 0.05, auc + 0.05)
        rows += [row("mia_auc/loss", auc, ci=interval, member_text="original", **where),
                 row("ppl_mean", ppl, **where), row("ppl_base", ppl_base, **where)]
    return rows


def test_parameter_based_more_exposed_than_prompt_based():
    table = claims_table(frame(mia("full", [0.6, 0.7, 0.8]) + mia("prompt", [0.5, 0.5, 0.51])))
    claim = table.filter(pl.col("claim").str.starts_with("Parameter-based")).row(0, named=True)
    assert claim["verdict"] == HOLDS and claim["ours"] == pytest.approx(0.29)
    assert claim["paper"] == "0.601 vs 0.48–0.50" and "GPT-2, WikiText-2" in claim["paper: model, data"]
    assert claims_table(frame(mia("full", [0.6, 0.6, 0.6]) + mia("prompt", [0.7, 0.7, 0.7]))).filter(
        pl.col("claim").str.starts_with("Parameter-based"))["verdict"][0] == FAILS
    # A prompt-tuning run that did not beat its base model's perplexity says nothing about privacy.
    stalled = claims_table(frame(mia("full", [0.6, 0.7, 0.8]) + mia("prompt", [0.5, 0.5, 0.5], ppl=25.0)))
    claim = stalled.filter(pl.col("claim").str.starts_with("Parameter-based")).row(0, named=True)
    assert claim["verdict"] == UNTESTABLE and "no prompt-based run beat" in claim["why"]
    near = stalled.filter(pl.col("claim").str.starts_with("Prompt-based tuning stays")).row(0, named=True)
    assert near["verdict"] == UNTESTABLE and "has not learnt" in near["why"]
    only_full = claims_table(frame(mia("full", [0.6, 0.7, 0.8])))
    assert only_full.filter(pl.col("claim").str.starts_with("Parameter-based"))["verdict"][0] == UNTESTABLE


@pytest.mark.parametrize("aucs, verdict", [([0.55, 0.6, 0.7], HOLDS), ([0.7, 0.6, 0.55], FAILS),
                                           ([0.6, 0.7], UNTESTABLE)])
def test_parameter_based_auc_grows_with_epochs(aucs, verdict):
    table = claims_table(frame(mia("lora", aucs)))
    claim = table.filter(pl.col("claim").str.starts_with("LOSS AUC of parameter-based")).row(0, named=True)
    assert claim["verdict"] == verdict and "lora" in claim["measured on"]


@pytest.mark.parametrize("ci, verdict", [((0.45, 0.56), HOLDS), ((0.6, 0.7), FAILS)])
def test_prompt_based_near_chance(ci, verdict):
    table = claims_table(frame(mia("ptuning", [0.5, 0.52, 0.51], ci=ci)))
    claim = table.filter(pl.col("claim").str.starts_with("Prompt-based tuning stays")).row(0, named=True)
    assert claim["verdict"] == verdict and (claim["CI low"], claim["CI high"]) == ci


def test_the_table_epoch_picks_the_checkpoint_compared():
    rows = mia("full", [0.55, 0.6, 0.9]) + mia("prefix", [0.5, 0.58, 0.5])
    assert claims_table(frame(rows)).filter(pl.col("claim").str.starts_with("Parameter-based"))["verdict"][0] == HOLDS
    at_two = claims_table(frame(rows), finetuning_epoch=2)
    claim = at_two.filter(pl.col("claim").str.starts_with("Parameter-based")).row(0, named=True)
    assert claim["verdict"] == HOLDS and claim["ours"] == pytest.approx(0.02) and "epoch 2" in claim["measured on"]


def test_lora_targets_and_model_size():
    table = claims_table(frame(mia("lora_mlp", [0.8] * 3) + mia("lora_attention", [0.7] * 3)))
    lora = table.filter(pl.col("claim").str.starts_with("LoRA on MLP")).row(0, named=True)
    assert lora["verdict"] == HOLDS and lora["ours"] == pytest.approx(0.1)
    assert claims_table(frame(mia("lora", [0.8] * 3))).filter(
        pl.col("claim").str.starts_with("LoRA on MLP"))["verdict"][0] == UNTESTABLE

    sizes = frame(mia("full", [0.6] * 3, base="openai-community--gpt2") + mia("full", [0.7] * 3, base="gpt2-medium"))
    size = claims_table(sizes).filter(pl.col("claim").str.starts_with("Full fine-tuning's")).row(0, named=True)
    assert size["verdict"] == HOLDS and size["ours"] == pytest.approx(1.0)
    smaller = frame(mia("full", [0.7] * 3, base="gpt2") + mia("full", [0.6] * 3, base="gpt2-large"))
    assert claims_table(smaller).filter(pl.col("claim").str.starts_with("Full fine-tuning's"))["verdict"][0] == FAILS
    assert claims_table(frame(mia("full", [0.6] * 3))).filter(
        pl.col("claim").str.starts_with("Full fine-tuning's"))["verdict"][0] == UNTESTABLE


def test_without_runs_every_claim_is_untestable_and_named(tmp_path):
    table = claims_table(frame([]))
    assert set(table["verdict"]) == {UNTESTABLE} and table["why"].null_count() == 0
    assert table.height >= 9
    paths = build_tables(frame(extraction("none", 10.0, 10.0) + extraction("rmft", 2.0, 10.5)), tmp_path)
    assert (tmp_path / "claims.md").read_text().startswith("| claim | paper | paper: model, data | ours |")
    assert tmp_path / "claims.csv" in paths


def test_the_readme_states_every_verdict_rule():
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    missing = [rule for rule, text in RULES.items() if text not in readme]
    assert not missing, f"README lacks the verdict rule(s) {missing}"
