"""The data half of the DAG, run for real by Snakemake on small inputs."""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path

import polars as pl
import pytest
import yaml
from workflow_helpers import ENRON_MINI, REAL_SPLIT, ROOT, SHARED, planned_jobs, scenario, snakemake, write_config

from piimem.extraction.found import counted

SMALL = scenario("small")  # .test/small/config.yaml
# SMALL's runs: the five defenses with full fine-tuning (the RMFT study) and five more tuning methods on the
# undefended text (the fine-tuning-methods study); extraction attacks the first five. The default has three.
METHODS = ("head", "lora", "prefix", "prompt", "ptuning")
N_RUNS, N_ATTACKED = 5 + len(METHODS), 5
DEFAULT_RUNS, DEFAULT_ATTACKED = 3 + len(METHODS), 3
N_TARGETED = 3  # the runs the RMFT claims compare, none, dedup and rmft: the default's every attacked run, and
# SMALL's extraction.targeted_defenses
# Whatever reruns, the aggregation and everything built from it follow.
REPORT = {"aggregate_metrics": 1, "comparisons": 1, "tables": 1, "figures": 1, "all": 1}


def report_assets_text() -> str:
    import snakemake

    assets = Path(snakemake.__file__).parent / "assets"
    return "\n".join(p.read_bytes().decode("utf-8", "ignore") for p in assets.rglob("*") if p.is_file())


def per_run(n: int, attacked: int | None = None, targeted: int | None = None, **extra: int) -> dict[str, int]:
    """The jobs that evaluate `n` runs, `attacked` of them (all unless said) by extraction and canaries,
    `targeted` of them (as many as attacked unless said) by the targeted attacks."""
    attacked = n if attacked is None else attacked
    targeted = attacked if targeted is None else targeted
    jobs = {"perplexity": n, "membership_inference": n, "extract_pii": attacked, "canary_exposure": attacked,
            "targeted_attacks": targeted}
    return {**{k: v for k, v in jobs.items() if v}, **extra, **REPORT}


def report(**jobs: int) -> dict[str, int]:
    return {**jobs, **REPORT}


def test_lint_is_clean(tmp_path):
    write_config(tmp_path)
    proc = snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_plans_every_stage_once_and_each_defense(tmp_path):
    write_config(tmp_path)
    assert planned_jobs(tmp_path) == {
        "synthetic_corpus": 1, "parse_corpus": 1, "split_corpus": 1, "corpus_stats": 1, "detect_pii": 1,
        "evaluate_pii": 1, "outsider_corpus": 1,
        "deduplicate": 1, "defense_text": 3, "pretrain_tiny_gpt2": 1, "finetune": DEFAULT_RUNS,
        "perplexity": DEFAULT_RUNS, "mia_members": 1, "mia_reference": 1, "membership_inference": DEFAULT_RUNS,
        "mia_trained_texts": 2, "mia_trained_reference": 2,  # the defended runs' trained-text view
        "extraction_prompts": 2, "extract_base": 1, "extract_pii": DEFAULT_ATTACKED, "canary_contexts": 1,
        "canary_exposure": DEFAULT_ATTACKED, "attack_targets": 1, "targeted_base": 1,
        "targeted_attacks": N_TARGETED,
        **REPORT,
    }


def test_the_small_scenario_plans_from_a_shell_as_the_tests_run_it(tmp_path):
    write_config(tmp_path)  # the embedded default, as in a checkout
    jobs = planned_jobs(tmp_path, "--configfile", str(ROOT / ".test" / "small" / "config.yaml"))
    assert (jobs["finetune"], jobs["extract_pii"], jobs["defense_text"]) == (N_RUNS, N_ATTACKED, 5)


def test_the_slurm_scenario_over_the_small_one_plans_from_a_shell_as_the_tests_run_it(tmp_path):
    # Snakemake merges the files after --configfile in order, key by key, as scenario() does.
    write_config(tmp_path / "shell")
    shell = planned_jobs(tmp_path / "shell", "--configfile", *(str(ROOT / ".test" / name / "config.yaml")
                                                                for name in ("small", "slurm")))
    write_config(tmp_path / "tests", scenario("small", "slurm"))
    assert shell == planned_jobs(tmp_path / "tests") and shell["finetune"] == 1


def test_dry_run_crosses_models_defenses_methods_and_seeds(tmp_path):
    write_config(tmp_path, {"defenses": ["none", "rmft"], "tuning_methods": ["full", "lora", "prefix"],
                            "exclude": [], "extraction": {"tuning_methods": None},
                            "seeds": [1, 2], "train": {"epochs": 2, "checkpoints_per_epoch": 3}})
    jobs = planned_jobs(tmp_path)
    assert jobs["finetune"] == 2 * 3 * 2 and jobs["perplexity"] == 12 and jobs["defense_text"] == 2
    assert jobs["membership_inference"] == 12 and jobs["mia_reference"] == 1
    assert jobs["mia_trained_texts"] == jobs["mia_trained_reference"] == 1  # one view per defense, shared by runs
    assert jobs["extract_pii"] == 12 and jobs["extract_base"] == 1 and jobs["extraction_prompts"] == 2
    out = snakemake(tmp_path, "-n").stdout
    assert "results/private/runs/tiny-gpt2/rmft-prefix-s2/manifest.json" in out


def test_dry_run_of_methods_extended_pretrains_a_second_size_for_one_run(tmp_path):
    extended = yaml.safe_load((ROOT / "config" / "methods-extended.yaml").read_text())
    write_config(tmp_path, extended)
    jobs = planned_jobs(tmp_path)
    assert jobs["pretrain_tiny_gpt2"] == 2 and jobs["finetune"] == DEFAULT_RUNS + 3 + 1  # 3 LoRA targets, 1 larger
    out = snakemake(tmp_path, "-n").stdout
    assert "results/private/models/tiny-gpt2-4x256/config.json" in out
    assert "logs/train/pretrain_tiny-gpt2-4x256.log" in out
    assert "results/private/runs/tiny-gpt2-4x256/none-full-s42/manifest.json" in out
    assert "tiny-gpt2-4x256/none-lora" not in out and "tiny-gpt2-4x256/rmft-full" not in out
    write_config(tmp_path, {"base_models": ["tiny-gpt2-2x130"]})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "hidden size 130 is not a multiple of tiny_gpt2.n_head (4)" in proc.stdout + proc.stderr


def test_dry_run_sweeps_rmft_probability_and_dedup_threshold_minus_exclusions(tmp_path):
    write_config(tmp_path, {"rmft": {"p": [0.5, 1.0]}, "dedup": {"threshold": [0.7, 0.8]},
                            "tuning_methods": ["full", "lora"], "extraction": {"tuning_methods": None},
                            "exclude": [{"defense": "rmft_p0.5", "tuning": "lora"}]})
    jobs = planned_jobs(tmp_path)
    # none, dedup_t0.7, dedup_t0.8, rmft_p0.5, rmft_p1 x full, lora = 10 runs, minus rmft_p0.5-lora
    assert (jobs["deduplicate"], jobs["defense_text"], jobs["finetune"], jobs["extract_pii"]) == (2, 5, 9, 9)
    out = snakemake(tmp_path, "-n", "results/runs/tiny-gpt2/rmft_p0.5-full-s42/utility/c01.tsv").stdout
    assert "rmft_p0.5" in out
    write_config(tmp_path, {"exclude": [{"tuning": "lora_mlp"}]})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "exclude[0]: {'tuning': 'lora_mlp'} matches no run" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"corpus": {"sourse": "cmu"}}, ["config: unknown key 'corpus.sourse' (did you mean 'corpus.source'?)"]),
        ({"mia": {"min_k": 1.5}}, ["1.5 is greater than the maximum of 1", "instance['mia']['min_k']"]),
        ({"dedup": {"threshold": [0.7, 1.5]}}, ["is not valid under any of the given schemas",
                                                "instance['dedup']['threshold']"]),
        ({"pii": {"entity_types": ["PERSON", "IBAN"]}}, ["'IBAN' is not one of", "instance['pii']['entity_types'][1]"]),
        ({"corpus": {"split": {"fractions": {"train": 0.7, "test": 0.2, "public": 0.2}}}},
         ["corpus.split.fractions: must sum to 1"]),
        ({"corpus": {"source": "maildir"}}, ["corpus.path: required when corpus.source is 'maildir'"]),
        ({"extraction": {"prompt_sets": ["train-prefix", "wiki"]}},
         ["extraction.prompt_sets: 'wiki' is neither one of ['train-prefix', 'test', 'public'] nor a name in "
          "extraction.prompt_files (none given)"]),
        ({"extraction": {"entity_types": ["IBAN"]}}, ["'IBAN' is not one of", "['extraction']['entity_types'][0]"]),
        ({"extraction": {"new_tokens": 200}},
         ["extraction.new_tokens: prompt_tokens + new_tokens (264) + 0 virtual tokens of full exceed "
          "tiny_gpt2.n_positions (256)"]),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, overrides, expected):
    write_config(tmp_path, overrides)
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("synthetic")
    write_config(workdir, SMALL)
    snakemake(workdir)
    return workdir


@pytest.mark.slow
def test_synthetic_run_writes_every_output(synthetic_run):
    results = synthetic_run / "results"
    messages = pl.read_parquet(results / "private/corpus/messages.parquet")
    truth = pl.read_parquet(synthetic_run / "resources/synthetic/ground_truth.parquet")
    # Snakemake marks directory outputs with a dotfile, which the parser skips like any hidden file.
    n_files = sum(1 for p in (synthetic_run / "resources/synthetic/maildir").rglob("*")
                  if p.is_file() and not p.name.startswith("."))
    quarantine = pl.read_csv(results / "corpus/quarantine.tsv", separator="\t")
    assert messages.height + quarantine.height == n_files and quarantine.height == 0
    splits = pl.read_parquet(results / "corpus/splits.parquet")
    assert splits.height == messages.height
    assert set(splits["split"]) == {"train", "validation", "test"}  # no public split: the outsiders pre-train
    assert truth.height > 0
    for defense in ("none", "dedup", "rmft", "scrub", "dp"):  # dp: the split as is, shared by its variants
        texts = pl.read_parquet(results / f"private/defense/{defense}/train.parquet")
        assert texts.height > 0 and set(texts["epoch"]) == {0}
    train_ids = set(splits.filter(pl.col("split") == "train")["doc_id"])
    assert set(pl.read_parquet(results / "private/defense/none/train.parquet")["doc_id"]) == train_ids
    dedup_ids = set(pl.read_parquet(results / "private/defense/dedup/train.parquet")["doc_id"])
    assert dedup_ids < train_ids  # copies and quoted threads make some messages near duplicates
    links = dict(pl.read_csv(results / "corpus/links.tsv", separator="\t").iter_rows())
    assert links["test_with_train_text"] == 0 < links["test_with_train_text_if_split_by_body"]


@pytest.mark.slow
def test_files_holding_pii_are_private(synthetic_run):
    private = synthetic_run / "results/private"
    files = [p for p in private.rglob("*") if p.is_file()]
    assert len(files) >= 8
    assert any(p.suffix == ".safetensors" for p in files) and any(p.name == "tokenizer.json" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # Every folder, also those Snakemake creates before a job runs (common.smk's onstart sets them first).
    folders = [private, *(p for p in private.rglob("*") if p.is_dir())]
    assert len(folders) >= 20
    assert [str(p) for p in folders if stat.S_IMODE(p.stat().st_mode) != 0o700] == []


@pytest.mark.slow
def test_detection_quality_on_synthetic_ground_truth(synthetic_run):
    evaluation = pl.read_csv(synthetic_run / "results/pii/evaluation.tsv", separator="\t")
    by_type = {row["entity_type"]: row for row in evaluation.iter_rows(named=True)}
    for entity_type in ("EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD", "PHONE_NUMBER"):
        assert by_type[entity_type]["recall"] >= 0.9, by_type[entity_type]
    assert by_type["EMAIL_ADDRESS"]["precision"] >= 0.9


@pytest.mark.slow
def test_rmft_leaves_each_email_address_once_in_training_text(synthetic_run):
    # The default runs the paper's RMFT: e-mail addresses only.
    summary = pl.read_csv(synthetic_run / "results/defense/rmft/summary.tsv", separator="\t")
    assert summary["entity_type"].to_list() == ["EMAIL_ADDRESS"] and summary["max_repeats_after"][0] == 1
    assert (summary["replaced"] == summary["occurrences"] - summary["unique_strings"]).all()
    none = pl.read_csv(synthetic_run / "results/defense/none/summary.tsv", separator="\t")
    assert none.is_empty()
    # Names are left as they are: the most frequent name of the train split occurs as often as without RMFT.
    spans = pl.read_parquet(synthetic_run / "results/private/pii/spans.parquet")
    texts = {d: pl.read_parquet(synthetic_run / f"results/private/defense/{d}/train.parquet") for d in ("none", "rmft")}
    names = spans.filter(pl.col("entity_type") == "PERSON").join(texts["none"].select("doc_id"), on="doc_id")
    name = names.group_by("value").len().sort("len", "value", descending=True)["value"][0]
    counts = {d: sum(t.count(name) for t in texts[d]["text"]) for d in texts}
    assert counts["rmft"] == counts["none"] >= 5


@pytest.mark.slow
def test_no_ground_truth_pii_in_logs_or_public_outputs(synthetic_run):
    truth = pl.read_parquet(synthetic_run / "resources/synthetic/ground_truth.parquet")
    secrets = {v for v in truth["value"].unique().to_list() if len(v) >= 6}
    assert len(secrets) > 50
    checked = 0
    for folder in ("logs", "benchmarks", ".snakemake/log", "results"):
        for path in (synthetic_run / folder).rglob("*"):
            if not path.is_file() or "private" in path.relative_to(synthetic_run).parts:
                continue
            text = path.read_bytes().decode("utf-8", "ignore")
            leaked = sum(1 for s in secrets if s in text)
            assert leaked == 0, f"{path.relative_to(synthetic_run)} holds {leaked} ground-truth PII strings"
            checked += 1
    assert checked >= 15


@pytest.mark.slow
def test_second_run_plans_nothing_and_an_edit_reruns_only_its_dependants(synthetic_run, tmp_path):
    assert planned_jobs(synthetic_run) == {}
    config = synthetic_run / "config/config.yaml"
    original = config.read_text()
    try:
        # A defense's own options rebuild its text, its run and its run's trained-text view of the members.
        trained_view = {"mia_trained_texts": 1, "mia_trained_reference": 1}
        write_config(synthetic_run, {**SMALL, "rmft": {"p": 0.5}})
        assert planned_jobs(synthetic_run) == per_run(1, defense_text=1, finetune=1, **trained_view)
        write_config(synthetic_run, {**SMALL, "dedup": {"threshold": 0.7}})
        assert planned_jobs(synthetic_run) == per_run(1, deduplicate=1, defense_text=1, finetune=1, **trained_view)
        write_config(synthetic_run, {**SMALL, "train": {**SMALL["train"], "lr": 1e-4}})
        assert planned_jobs(synthetic_run) == per_run(N_RUNS, N_ATTACKED, N_TARGETED, finetune=N_RUNS)
        # A tuning method's options rebuild its runs alone, which extraction does not attack.
        write_config(synthetic_run, {**SMALL, "tuning": {"lora": {"r": 8}}})
        assert planned_jobs(synthetic_run) == per_run(1, 0, finetune=1)
        write_config(synthetic_run, {**SMALL, "utility": {"batch_size": 4}})
        assert planned_jobs(synthetic_run) == report(perplexity=N_RUNS)
        write_config(synthetic_run, {**SMALL, "mia": {**SMALL["mia"], "bootstrap": 200}})
        assert planned_jobs(synthetic_run) == report(membership_inference=N_RUNS)
        # Decoding settings regenerate without rebuilding prompts; prompt settings rebuild both.
        write_config(synthetic_run, {**SMALL, "extraction": {**SMALL["extraction"], "new_tokens": 16}})
        assert planned_jobs(synthetic_run) == report(extract_base=1, extract_pii=N_ATTACKED)
        write_config(synthetic_run, {**SMALL, "extraction": {**SMALL["extraction"], "prompt_tokens": 32}})
        assert planned_jobs(synthetic_run) == report(extraction_prompts=2, extract_base=1, extract_pii=N_ATTACKED)
        write_config(synthetic_run, {**SMALL, "extraction": {**SMALL["extraction"], "canaries": {"n_candidates": 10}}})
        assert planned_jobs(synthetic_run) == report(canary_exposure=N_ATTACKED)
        # The targets' settings rebuild the targets and rescore them; sampling settings only rescore.
        write_config(synthetic_run, {**SMALL, "extraction": {**SMALL["extraction"],
                                                             "inference": {"n_targets": 40, "candidates": 10}}})
        assert planned_jobs(synthetic_run) == report(attack_targets=1, targeted_base=1, targeted_attacks=N_TARGETED)
        write_config(synthetic_run, {**SMALL, "extraction": {**SMALL["extraction"],
                                                             "reconstruction": {"samples": 3, "new_tokens": 12}}})
        assert planned_jobs(synthetic_run) == report(targeted_base=1, targeted_attacks=N_TARGETED)
    finally:
        config.write_text(original)


@pytest.mark.slow
def test_training_outputs_checkpoints_and_perplexity(synthetic_run):
    run = synthetic_run / "results/private/runs/tiny-gpt2/none-full-s42"
    utility = synthetic_run / "results/runs/tiny-gpt2/none-full-s42/utility"
    manifest = json.loads((run / "manifest.json").read_text())
    assert [c["id"] for c in manifest["checkpoints"]] == ["c01", "c02", "c03", "c04"]
    assert [c["epoch"] for c in manifest["checkpoints"]] == [0.5, 1.0, 1.5, 2.0]
    assert manifest["complete"] and not (run / "state").exists()
    losses = [c["train_loss"] for c in manifest["checkpoints"]]
    assert losses[-1] < losses[0]
    train_ids = set(pl.read_parquet(synthetic_run / "results/private/defense/none/train.parquet")["doc_id"])
    consumed = [set(pl.read_parquet(run / c["path"] / "consumed.parquet")["doc_id"]) for c in manifest["checkpoints"]]
    assert consumed[0] < consumed[1] == train_ids and consumed[-1] == train_ids
    ppl = {c: pl.read_csv(utility / f"{c}.tsv", separator="\t") for c in ("c01", "c04")}
    first, last = (dict(zip(ppl[c]["metric"], ppl[c]["value"])) for c in ("c01", "c04"))
    assert last["ppl_mean"] < first["ppl_mean"] and last["ppl_corpus"] <= last["ppl_mean"] * 1.5
    splits = pl.read_parquet(synthetic_run / "results/corpus/splits.parquet")
    assert first["n_examples"] == splits.filter(pl.col("split") == "test").height
    assert first["val_n_examples"] == splits.filter(pl.col("split") == "validation").height > 10
    assert last["val_ppl_mean"] < first["val_ppl_base"] == last["val_ppl_base"]
    # The base model: pre-trained on the outsiders' mail, the epoch of lowest validation perplexity chosen.
    curve = pl.read_csv(synthetic_run / "results/models/tiny-gpt2.pretrain.tsv", separator="\t")
    assert curve["epoch"].to_list() == [1.0, 2.0] and curve["selected"].sum() == 1
    assert curve.filter(pl.col("selected"))["val_ppl_mean"][0] == pytest.approx(curve["val_ppl_mean"].min())
    assert curve.filter(pl.col("selected"))["val_ppl_mean"][0] == pytest.approx(first["val_ppl_base"])
    outsiders = dict(pl.read_csv(synthetic_run / "results/corpus/outsiders.tsv", separator="\t").rows())
    assert outsiders["messages_kept"] == pl.read_parquet(
        synthetic_run / "results/private/corpus/outsiders.parquet").height > 50
    assert outsiders["messages_generated"] == (outsiders["messages_kept"] + outsiders["folder_copies"]
                                               + outsiders["holding_training_pii"])


@pytest.mark.slow
def test_membership_inference_on_every_checkpoint(synthetic_run):
    members = pl.read_parquet(synthetic_run / "results/private/mia/tiny-gpt2/members.parquet")
    assert members["member"].sum() == (~members["member"]).sum() > 20
    splits = pl.read_parquet(synthetic_run / "results/corpus/splits.parquet")
    by_split = dict(zip(*members.join(splits, on="doc_id").group_by("member").agg(pl.col("split").unique())
                        .select("member", pl.col("split").list.first()).to_dict(as_series=False).values()))
    assert by_split == {True: "train", False: "test"}
    for checkpoint in ("c01", "c04"):
        table = pl.read_csv(synthetic_run / f"results/runs/tiny-gpt2/none-full-s42/mia/{checkpoint}.tsv",
                            separator="\t")
        assert table["attack"].to_list() == ["loss", "ref", "zlib", "min_k_20", "min_k_pp_20", "lowercase", "blind"]
        assert ((table["auc_low"] <= table["auc"]) & (table["auc"] <= table["auc_high"])).all()
        assert table.filter(pl.col("attack") == "ref")["reference"][0] == "base model tiny-gpt2"
        assert (table["n_members"] == members["member"].sum()).all() and (table["n_unscored"] == 0).all()
        assert table["member_text"].unique().to_list() == ["original"]  # the undefended run has one view
    # A defended run is attacked on the members' original text and on the text it trained on.
    rmft = pl.read_csv(synthetic_run / "results/runs/tiny-gpt2/rmft-full-s42/mia/c04.tsv", separator="\t")
    assert rmft.group_by("member_text").len().sort("member_text").rows() == [("original", 7), ("trained", 7)]
    # Distinct texts in link groups; the blind baseline (no model) does not separate this corpus's sample.
    messages = pl.read_parquet(synthetic_run / "results/private/corpus/messages.parquet")
    assert members.join(messages.select("doc_id", "body_hash"), on="doc_id")["body_hash"].n_unique() == members.height
    assert members.join(splits, on="doc_id").select((pl.col("group") == pl.col("group_right")).all()).item()
    blind = pl.read_parquet(synthetic_run / "results/comparisons.parquet").filter(pl.col("quantity") == "blind_auc")
    assert blind.height == 1 and blind["ci_low"][0] <= 0.55 and blind["groups"][0] <= blind["n"][0]
    trained = pl.read_parquet(synthetic_run / "results/private/mia/tiny-gpt2/trained/rmft.parquet")
    assert trained["doc_id"].to_list() == members["doc_id"].to_list() and trained["text"].null_count() == 0
    assert (trained["text"] != members["text"]).sum() > 0  # rewritten e-mail addresses


@pytest.mark.slow
def test_a_dp_run_spends_its_epsilon_and_goes_through_every_attack_and_table(synthetic_run):
    results = synthetic_run / "results"
    manifest = json.loads((results / "private/runs/tiny-gpt2/dp_e8-full-s42/manifest.json").read_text())
    plan = manifest["dp"]
    assert plan["epsilon_target"] == 8 and plan["noise_multiplier"] > 0 and plan["accountant"] == "prv"
    assert plan["delta"] == pytest.approx(1 / plan["examples"])
    assert plan["examples"] == manifest["examples_per_epoch"][0]
    metrics = pl.read_parquet(results / "metrics.parquet").filter(pl.col("defense") == "dp_e8")
    spent = metrics.filter(pl.col("metric") == "dp_epsilon").sort("checkpoint")["value"].to_list()
    assert len(spent) == 4 and spent == sorted(spent) and 7.9 <= spent[-1] <= 8.0
    assert spent == pytest.approx([c["dp_epsilon"] for c in manifest["checkpoints"]])
    # Trained on the split as is: attacked on the members' original text only, by extraction and canaries too.
    auc = metrics.filter(pl.col("metric") == "mia_auc/loss")
    assert auc["member_text"].unique().to_list() == ["original"] and auc.height == 4
    assert {"ter", "ser", "canary_exposure/16", "pii_inference_acc"} - set(metrics["metric"]) == {"pii_inference_acc"}
    comparisons = pl.read_parquet(results / "comparisons.parquet").filter(pl.col("defense") == "dp_e8")
    assert {"ter_reduction", "ppl_increase", "auc_drop", "maxter"} <= set(comparisons["quantity"])
    rmft = pl.read_csv(results / "tables/rmft.csv")
    assert rmft.filter(pl.col("defense") == "dp_e8").height == 2 * 2  # prompt sets x PII scopes
    claims = pl.read_csv(results / "tables/claims.csv").filter(pl.col("claim").str.starts_with("DP-SGD"))
    assert claims.height == 2 + 1 + 1  # TER per prompt set, the AUC drop, the perplexity increase
    assert claims["paper: model, data"].str.contains("Lukas et al. 2023, a peer's finding").all()
    assert claims["measured on"].str.contains("dp_e8 vs none").all()


@pytest.mark.slow
def test_every_tuning_method_trains_and_is_attacked_by_membership_inference(synthetic_run):
    runs = synthetic_run / "results/runs/tiny-gpt2"
    full = json.loads((synthetic_run / "results/private/runs/tiny-gpt2/none-full-s42/manifest.json").read_text())
    assert full["trainable_parameters"] == full["parameters"]
    for method in METHODS:
        manifest = json.loads(
            (synthetic_run / f"results/private/runs/tiny-gpt2/none-{method}-s42/manifest.json").read_text())
        assert 0 < manifest["trainable_parameters"] < manifest["parameters"], method
        assert manifest["complete"] and len(manifest["checkpoints"]) == 4, method
        mia = pl.read_csv(runs / f"none-{method}-s42/mia/c04.tsv", separator="\t")
        assert mia["member_text"].unique().to_list() == ["original"] and mia.height == 7, method  # blind too
        assert (runs / f"none-{method}-s42/utility/c04.tsv").is_file()
        # The methods study is measured by membership inference; extraction attacks the defenses' runs.
        assert not (runs / f"none-{method}-s42/extraction").exists()
        assert not (runs / f"none-{method}-s42/canaries").exists()


@pytest.mark.slow
def test_pii_extraction_on_every_checkpoint(synthetic_run):
    results = synthetic_run / "results"
    splits = pl.read_parquet(results / "corpus/splits.parquet")
    train_ids = splits.filter(pl.col("split") == "train")["doc_id"]
    # O as the attack metrics count it: PERSON strings of two words or more (extraction.person_min_words)
    spans = counted(pl.read_parquet(results / "private/pii/spans.parquet")
                    .filter(pl.col("doc_id").is_in(train_ids.to_list())), 2)
    n_true = spans.select("entity_type", "normalized").unique().height
    prefix = pl.read_parquet(results / "private/extraction/tiny-gpt2/prompts/train-prefix.parquet")
    assert 0 < prefix.height <= 48 and set(prefix["entity_type"]) == {"EMAIL_ADDRESS"}
    assert set(prefix["doc_id"]) <= set(train_ids)
    test_prompts = pl.read_parquet(results / "private/extraction/tiny-gpt2/prompts/test.parquet")
    assert set(test_prompts["doc_id"]) <= set(splits.filter(pl.col("split") == "test")["doc_id"])
    for checkpoint in ("c01", "c04"):
        table = pl.read_csv(results / f"runs/tiny-gpt2/none-full-s42/extraction/{checkpoint}.tsv", separator="\t")
        value = {(p, t, m): v for p, t, m, v in table.select("prompt_set", "entity_type", "metric", "value").rows()}
        assert set(table["prompt_set"]) == {"train-prefix", "test"} and set(table["checkpoint"]) == {checkpoint}
        for prompt_set in ("train-prefix", "test"):
            assert value[(prompt_set, "ALL", "n_true")] == n_true
            assert 0 <= value[(prompt_set, "ALL", "ter")] <= 100
            assert value[(prompt_set, "ALL", "n_extracted")] <= value[(prompt_set, "ALL", "n_found")]
        assert value[("train-prefix", "ALL", "n_prompts")] == prefix.height
        assert ("train-prefix", "EMAIL_ADDRESS", "email_exact") in value
        assert ("test", "EMAIL_ADDRESS", "email_exact") not in value
        found = pl.read_parquet(results / f"private/runs/tiny-gpt2/none-full-s42/extraction/{checkpoint}.parquet")
        n_found = found.filter(pl.col("prompt_set") == "test").select("entity_type", "normalized").unique().height
        assert value[("test", "ALL", "n_found")] == n_found
    # S_c grows with the documents consumed: at half an epoch fewer PII strings were seen than at the end
    first, last = (pl.read_csv(results / f"runs/tiny-gpt2/none-full-s42/extraction/{c}.tsv", separator="\t")
                   .filter((pl.col("metric") == "n_seen") & (pl.col("entity_type") == "ALL"))["value"][0]
                   for c in ("c01", "c04"))
    assert first < last == n_true


@pytest.mark.slow
def test_targeted_attacks_score_the_same_targets_at_the_last_checkpoint(synthetic_run):
    results = synthetic_run / "results"
    targets = pl.read_parquet(results / "private/extraction/tiny-gpt2/targets.parquet")
    assert 0 < targets.height <= 40 and set(targets["entity_type"]) == {"EMAIL_ADDRESS"}
    assert all(len(c) == 19 and t not in c for t, c in targets.select("value", "candidates").rows())
    records = {}
    assert not (results / "runs/tiny-gpt2/scrub-full-s42/targeted").exists()  # not in targeted_defenses
    for defense in ("none", "dedup", "rmft"):
        folder = results / f"runs/tiny-gpt2/{defense}-full-s42/targeted"
        assert sorted(p.name for p in folder.iterdir()) == ["c04.targets.parquet", "c04.tsv"]  # the last only
        records[defense] = pl.read_parquet(folder / "c04.targets.parquet")
        table = pl.read_csv(folder / "c04.tsv", separator="\t")
        value = {(m, t): (v, k, n) for m, t, v, k, n in table.select("metric", "entity_type", "value", "k", "n").rows()}
        for metric in ("pii_inference_acc", "pii_inference_acc_base", "pii_reconstruction_acc"):
            v, k, n = value[(metric, "EMAIL_ADDRESS")]
            assert n == targets.height and v == pytest.approx(100 * k / n)
        assert 0 <= value[("pii_inference_exposure", "EMAIL_ADDRESS")][0] <= math.log2(20)
    # every run and the base model score the same targets, which carry ids and flags only
    assert len({tuple(r.filter(pl.col("attack") == "inference")["target_id"].sort()) for r in records.values()}) == 1
    assert not [c for c, t in records["none"].schema.items() if t == pl.Utf8 and c not in ("attack", "prompt_set",
                                                                                          "entity_type", "checkpoint")]
    base = pl.read_parquet(results / "extraction/tiny-gpt2/targeted-base.targets.parquet")
    joined = records["none"].join(base, on=["attack", "prompt_set", "entity_type", "target_id"], nulls_equal=True)
    assert joined.height == records["none"].height and (joined["base_correct"] == joined["correct_right"]).all()
    metrics = pl.read_parquet(results / "metrics.parquet")
    assert {"pii_inference_acc", "association_exact", "ter_ft"} <= set(metrics["metric"])
    assert (results / "tables/targeted.md").is_file() and (results / "figures/targeted_attacks.png").is_file()


@pytest.mark.slow
def test_a_missing_prompt_file_fails_its_own_job_with_what_to_write(synthetic_run):
    config = synthetic_run / "config/config.yaml"
    original = config.read_text()
    wiki = synthetic_run / "resources/wiki/test.txt"
    target = "results/private/extraction/tiny-gpt2/prompts/wiki.parquet"
    try:
        extraction = {**SMALL["extraction"], "prompt_files": {"wiki": str(wiki)},
                      "prompt_sets": ["train-prefix", "test", "wiki"]}
        write_config(synthetic_run, {**SMALL, "extraction": extraction})
        assert planned_jobs(synthetic_run, target) == {"missing_prompt_file_wiki": 1, "extraction_prompts": 1}
        proc = snakemake(synthetic_run, target, check=False)
        log = (synthetic_run / "logs/extract/missing-prompt-file-wiki.log").read_text()
        assert proc.returncode != 0 and f"extraction.prompt_files.wiki: {wiki} does not exist" in log
        wiki.parent.mkdir(parents=True)
        wiki.write_text("= Heading =\nThe first paragraph of a made-up article.\n\nA second, longer one.\n")
        assert planned_jobs(synthetic_run, target) == {"extraction_prompts": 1}
        snakemake(synthetic_run, target)
        prompts = pl.read_parquet(synthetic_run / target)
        assert sorted(prompts["doc_id"]) == [0, 1, 3]
    finally:
        config.write_text(original)


@pytest.mark.slow
def test_canary_exposure_on_every_checkpoint(synthetic_run):
    truth = pl.read_parquet(synthetic_run / "resources/synthetic/ground_truth.parquet").filter(pl.col("is_canary"))
    canaries = pl.read_parquet(synthetic_run / "results/private/extraction/tiny-gpt2/canaries.parquet")
    # .test/small: 3 types x 4 repetition counts x 1 canary per cell
    assert canaries.height == truth.select("value").n_unique() == 12
    run = synthetic_run / "results/runs/tiny-gpt2/none-full-s42/canaries"
    exposure = pl.read_csv(run / "c04.tsv", separator="\t")
    assert exposure.height == 12 and "value" not in exposure.columns
    assert exposure["max_exposure"].to_list() == [pytest.approx(math.log2(31))] * 12
    assert ((exposure["exposure"] >= 0) & (exposure["exposure"] <= exposure["max_exposure"] + 1e-9)).all()
    assert (exposure["exposure_extrapolated"] >= 0).all()
    assert (exposure["train_occurrences"] <= exposure["repetitions"]).all()
    assert exposure.filter(pl.col("repetitions") == 16)["train_occurrences"].min() > 0
    # the per-canary records: ids and numbers, the same canary ids in every run
    records = pl.read_parquet(run / "c04.canaries.parquet")
    assert records.columns == ["canary_id", "entity_type", "repetitions", "train_occurrences", "exposure",
                               "exposure_extrapolated", "exposure_fit", "n_candidates", "checkpoint", "epoch"]
    ids = ["canary_id", "entity_type", "repetitions", "train_occurrences", "exposure_fit", "n_candidates"]
    assert records.select(ids).equals(exposure.select(ids))
    assert records["exposure_extrapolated"].to_list() == pytest.approx(exposure["exposure_extrapolated"].to_list())
    rmft = pl.read_parquet(synthetic_run / "results/runs/tiny-gpt2/rmft-full-s42/canaries/c04.canaries.parquet")
    assert rmft.select("canary_id", "entity_type", "repetitions").equals(
        records.select("canary_id", "entity_type", "repetitions"))
    # The base model pre-trains on the outsiders' mail, which holds no canary.
    pretrain_log = (synthetic_run / "logs/train/pretrain_tiny-gpt2.log").read_text()
    assert re.search(r"pretrain: [1-9]\d* messages of the outsiders' world", pretrain_log)
    truth = pl.read_parquet(synthetic_run / "resources/synthetic/ground_truth.parquet")
    outsiders = pl.read_parquet(synthetic_run / "results/private/corpus/outsiders.parquet")
    canaries = truth.filter(pl.col("is_canary"))["value"].unique().to_list()
    assert canaries and not outsiders["text"].str.contains_any(canaries).any()


CONTRACT = ["corpus", "base_model", "defense", "tuning", "seed", "checkpoint", "epoch", "metric", "value",
            "ci_low", "ci_high"]


@pytest.mark.slow
def test_metrics_tables_figures_and_report(synthetic_run):
    results = synthetic_run / "results"
    metrics = pl.read_parquet(results / "metrics.parquet")
    assert metrics.columns[: len(CONTRACT) - 4] == CONTRACT[:7] and set(CONTRACT) <= set(metrics.columns)
    assert set(metrics["corpus"]) == {"synthetic"} and set(metrics["defense"]) == {"none", "dedup", "rmft", "scrub",
                                                                                         "dp_e8"}
    names = set(metrics["metric"])
    assert {"ter", "ser", "tegr", "ppl_mean", "ppl_corpus", "train_loss", "mia_auc/loss", "mia_tpr@1%fpr/loss",
            "mia_tpr@0.1%fpr/ref", "canary_exposure/16"} <= names
    utility = pl.read_csv(results / "runs/tiny-gpt2/rmft-full-s42/utility/c03.tsv", separator="\t")
    ppl = metrics.filter((pl.col("defense") == "rmft") & (pl.col("checkpoint") == "c03")
                         & (pl.col("metric") == "ppl_mean"))
    assert ppl.height == 1 and ppl["value"][0] == pytest.approx(
        utility.filter(pl.col("metric") == "ppl_mean")["value"][0])
    auc = metrics.filter(pl.col("metric") == "mia_auc/loss")
    assert auc.filter(pl.col("member_text") == "original").height == N_RUNS * 4  # runs x checkpoints
    assert auc.filter(pl.col("member_text") == "trained").height == 3 * 4  # the defended runs
    assert ((auc["ci_low"] <= auc["value"]) & (auc["value"] <= auc["ci_high"])).all()
    assert metrics.filter(pl.col("metric") == "ppl_base")["value"].n_unique() == 1
    assert metrics.filter(pl.col("metric") == "ppl_mean")["ci_low"].is_null().all()
    # Every rate with its counts and exact interval; the TPR with its bootstrap interval.
    ter = metrics.filter(pl.col("metric") == "ter")
    assert ter["k"].null_count() == 0 and (ter["n"] > 0).all() and ter["ci_high"].null_count() == 0
    assert ((ter["ci_low"] <= ter["value"]) & (ter["value"] <= ter["ci_high"])).all()
    assert metrics.filter(pl.col("metric") == "mia_tpr@1%fpr/loss")["ci_high"].null_count() == 0
    # Per-item records (ids and counts only) and the comparisons computed from them.
    strings = pl.read_parquet(results / "runs/tiny-gpt2/none-full-s42/extraction/c03.strings.parquet")
    assert strings.schema["string_id"] == pl.Int64 and "normalized" not in strings.columns
    comparisons = pl.read_parquet(results / "comparisons.parquet")
    assert {"ter", "ter_reduction", "ppl_increase", "aurc", "maxter", "loss_auc", "auc_family_gap", "blind_auc",
            "pii_inference_exposure_drop", "pii_inference_exposure_difference",
            "pii_inference_exposure_repetition_trend", "canary_exposure_trend", "canary_exposure_drop"} <= set(
        comparisons["quantity"])

    rmft = pl.read_csv(results / "tables/rmft.csv")
    assert rmft.height == 5 * 2 * 2  # defenses x prompt sets x PII scopes (e-mail, all)
    assert {"AURC (%)", "AURC (%) CI low", "AURC coverage (%)", "min PPL increase (%)", "strings extracted k",
            "TER (%), mean over checkpoints CI high"} <= set(rmft.columns)
    claims = pl.read_csv(results / "tables/claims.csv")
    assert set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive", "not testable"}
    assert claims["why"].null_count() == 0 and (results / "tables/claims.md").is_file() and claims.height >= 9
    for start in ("RMFT lowers the exposure of true", "Exposure of a true string", "Canary exposure grows",
                  "RMFT lowers the exposure of repeated canaries", "Members and non-members are indistinguishable"):
        assert claims.filter(pl.col("claim").str.starts_with(start)).height >= 1, start
    # every undecided claim says what would decide it (a count, or why no count can)
    undecided = claims.filter(pl.col("verdict") == "inconclusive")
    assert undecided["would need"].null_count() == 0
    # No verdict on rates rests on fewer than claims.min_strings strings of the baseline.
    rates = claims.filter(pl.col("evidence").str.starts_with("baseline:")
                          & pl.col("verdict").is_in(["holds", "does not hold"]))
    assert all(int(e.split()[1]) >= 10 for e in rates["evidence"])
    assert claims.filter(pl.col("evidence").str.starts_with("baseline:")).height >= 4
    assert (results / "tables/finetuning.md").read_text().startswith("|")
    assert "\\begin{tabular}" in (results / "tables/extraction_by_type.tex").read_text()
    figures = sorted(p.name for p in (results / "figures").glob("*.png"))
    assert figures == [f"{stem}.png" for stem in sorted((
        "metrics_by_checkpoint", "maxter", "mia_auc_by_epoch", "roc_curves", "loss_distributions",
        "extraction_by_repetition", "canary_exposure", "targeted_attacks", "privacy_utility_ter",
        "privacy_utility_auc", "auc_by_val_ppl"))]
    assert all((results / "figures" / f).read_bytes()[:4] == b"\x89PNG" for f in figures)

    snakemake(synthetic_run, "--report", "results/report.html")
    html = (results / "report.html").read_bytes().decode("utf-8", "ignore")
    assert len(html) > 100_000 and "roc_curves.png" in html
    # Tables open inline (HTML; a CSV the report offers only as a download), every caption renders, and the
    # landing page holds the summary.
    # (Rule details list every output by name, so look at the result entries and their embedded data.)
    assert '"results/tables/rmft.html": {' in html and '"results/tables/claims.html": {' in html
    assert '"results/tables/rmft.csv": {' not in html and "filename=rmft.csv" not in html
    assert "System Message" not in html and "What the runs show" in html
    summary = (results / "summary.md").read_text()
    assert summary.startswith("# What the runs show") and "Does RMFT lower the exposure" in summary
    truth = pl.read_parquet(synthetic_run / "resources/synthetic/ground_truth.parquet")
    secrets = {v for v in truth["value"].unique().to_list() if len(v) >= 6}
    # Names such as "Michael" or "Monaco" also stand in the licences and fonts bundled into every report.
    bundled = report_assets_text()
    assert not [s for s in secrets if s in html and s not in bundled]


@pytest.mark.skipif(not (SHARED / "scripts/check_outputs.py").is_file(), reason="../shared is not beside the project")
@pytest.mark.slow
def test_finished_run_passes_the_output_contract_check(synthetic_run):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(SHARED / "scripts/check_outputs.py"), "results"], cwd=synthetic_run,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: metrics.parquet has" in proc.stdout and "appears elsewhere" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not ENRON_MINI.is_dir(), reason="../shared/data/enron-mini is not beside the project")
def test_real_enron_sample_through_the_data_stages(tmp_path):
    write_config(tmp_path, {"corpus": {"source": "maildir", "path": str(ENRON_MINI), "split": REAL_SPLIT},
                            "defenses": ["rmft"]})
    snakemake(tmp_path, "results/pii/summary.tsv", "results/defense/rmft/summary.tsv", "results/dedup/t0.8/summary.tsv",
              "results/corpus/stats.tsv")
    messages = pl.read_parquet(tmp_path / "results/private/corpus/messages.parquet", columns=["doc_id"])
    quarantine = pl.read_csv(tmp_path / "results/corpus/quarantine.tsv", separator="\t")
    assert messages.height + quarantine.height == 1041
    assert quarantine["reason"].null_count() == 0
    pii = pl.read_csv(tmp_path / "results/pii/summary.tsv", separator="\t")
    counts = dict(zip(pii["entity_type"], pii["n_spans"]))
    assert counts.get("EMAIL_ADDRESS", 0) > 500 and counts.get("PERSON", 0) > 100
    rmft = pl.read_csv(tmp_path / "results/defense/rmft/summary.tsv", separator="\t")
    assert rmft["max_repeats_after"].max() == 1 and rmft["replaced"].sum() > 0
    # Real mail: most PII strings occur once or twice, and many distinct addresses per message.
    stats = dict(pl.read_csv(tmp_path / "results/corpus/stats.tsv", separator="\t").iter_rows())
    assert stats["messages_sampled"] == 700 and stats["occurrences/1"] > 0.5
    assert stats["distinct_per_1k_messages/EMAIL_ADDRESS"] > 1000 and stats["mean_occurrences/ALL"] < 4
