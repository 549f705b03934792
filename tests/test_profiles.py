"""The shipped configs and the SLURM profile plan the runs they promise (dry runs: no SLURM, no GPU)."""

from __future__ import annotations

import re

import yaml
from workflow_helpers import ROOT, planned_jobs, snakemake, write_config

SLURM = ("--profile", str(ROOT / "profiles" / "slurm"))


def paper(name: str) -> tuple[str, str]:
    return "--configfile", str(ROOT / "config" / name)


def picked(jobs: dict[str, int], *rules: str) -> dict[str, int | None]:
    return {rule: jobs.get(rule) for rule in rules}


def job_resources(dry_run: str, rule: str) -> list[dict[str, str]]:
    """The `resources:` line of every planned job of `rule`, as key -> value."""
    found = []
    for block in dry_run.split("\n\n"):
        line = re.search(r"resources: (.*)", block)
        if re.search(rf"^(local)?rule {rule}:", block, re.M) and line:
            found.append(dict(item.split("=", 1) for item in line[1].split(", ")))
    return found


def test_paper_rmft_on_slurm_plans_four_runs_with_thirty_checkpoints_on_gpus(tmp_path, gpt2_in_hf_cache):
    write_config(tmp_path)
    args = (*SLURM, *paper("paper-rmft.yaml"))
    jobs = planned_jobs(tmp_path, *args)
    expected = {"download_cmu": 1, "finetune": 4, "perplexity": 4, "membership_inference": 4,
                "extraction_prompts": 4, "extract_pii": 4, "extract_base": 1}
    assert picked(jobs, *expected) == expected
    # The Common-Crawl prompt file is the user's to supply: a job says so. WikiText-2 is a data set, loaded
    # offline by its prompts job (one of the four), which names the fetch command when it is not there.
    assert jobs["missing_prompt_file_common_crawl"] == 1 and "missing_prompt_file_wikitext" not in jobs
    # A real GPT-2: nothing to pre-train; CMU e-mail: no planted canaries.
    assert not {"pretrain_tiny_gpt2", "synthetic_corpus", "canary_exposure"} & set(jobs)
    out = snakemake(tmp_path, "-n", *args).stdout
    assert "results/runs/gpt2/rmft-full-s42/extraction/c30.tsv" in out and "/c31.tsv" not in out
    finetune = job_resources(out, "finetune")
    assert len(finetune) == 4
    for resources in finetune:
        assert (resources["gpu"], resources["slurm_partition"], resources["runtime"]) == (
            "1", "<gpu-partition>", "1440")
    detect = job_resources(out, "detect_pii")[0]
    assert (detect["slurm_partition"], detect["mem_mb"]) == ("<partition>", "36000")


def test_paper_finetuning_plans_every_method_for_fifteen_epochs(tmp_path, gpt2_in_hf_cache):
    write_config(tmp_path)
    args = (*SLURM, *paper("paper-finetuning.yaml"))
    jobs = planned_jobs(tmp_path, *args)
    assert picked(jobs, "finetune", "perplexity", "membership_inference", "defense_text") == {
        "finetune": 6, "perplexity": 6, "membership_inference": 6, "defense_text": 1}
    assert "extract_pii" not in jobs  # the paper runs no extraction attack
    out = snakemake(tmp_path, "-n", *args).stdout
    for method in ("full", "head", "lora", "prefix", "prompt", "ptuning"):
        assert f"results/runs/gpt2/none-{method}-s42/mia/c15.tsv" in out, method
    assert "/c16.tsv" not in out


def test_smollm2_config_plans_a_real_model_on_the_synthetic_corpus(tmp_path):
    write_config(tmp_path)
    jobs = planned_jobs(tmp_path, *paper("smollm2.yaml"))
    assert picked(jobs, "synthetic_corpus", "export_smollm2", "finetune", "canary_exposure") == {
        "synthetic_corpus": 1, "export_smollm2": 1, "finetune": 4, "canary_exposure": 4}
    assert "pretrain_tiny_gpt2" not in jobs
    out = snakemake(tmp_path, "-n", *paper("smollm2.yaml")).stdout
    assert "results/runs/smollm2-135m/rmft-lora-s42/utility/c04.tsv" in out


# Every rule that loads a model, and so runs in the GPU partition.
MODEL_RULES = ("pretrain_tiny_gpt2", "finetune", "perplexity", "mia_reference", "membership_inference",
               "extract_base", "extract_pii", "canary_exposure", "targeted_base", "targeted_attacks")


def planned_gpus(dry_run: str, rules) -> dict[str, set[str | None]]:
    return {rule: {resources.get("gpu") for resources in job_resources(dry_run, rule)} for rule in rules}


def test_finetune_asks_for_train_gpus_and_every_other_model_job_for_one(tmp_path):
    write_config(tmp_path, {"train": {"gpus": 4}})
    out = snakemake(tmp_path, "-n", *SLURM).stdout
    gpus = planned_gpus(out, MODEL_RULES)
    assert gpus == {rule: {"4" if rule == "finetune" else "1"} for rule in MODEL_RULES}
    for rule in MODEL_RULES:
        assert {r["slurm_partition"] for r in job_resources(out, rule)} == {"<gpu-partition>"}, rule
    # CPU stages ask for no GPU and stay in the CPU partition.
    for rule in ("parse_corpus", "detect_pii", "deduplicate", "defense_text", "mia_members"):
        assert [(r.get("gpu"), r["slurm_partition"]) for r in job_resources(out, rule)][:1] == [
            (None, "<partition>")], rule


def test_without_gpus_in_the_config_no_job_asks_for_one(tmp_path):
    write_config(tmp_path)  # train.gpus: 0, the default
    gpus = planned_gpus(snakemake(tmp_path, "-n", *SLURM).stdout, MODEL_RULES)
    assert gpus == {rule: {"0"} for rule in MODEL_RULES}


def test_no_profile_caps_cluster_jobs_at_the_login_nodes_cores():
    # Snakemake reads profiles/default on every run, --profile profiles/slurm included; with a cluster
    # executor `cores` caps each job's --cpus-per-task and all running jobs' CPUs together.
    for profile in ("default", "slurm"):
        settings = yaml.safe_load((ROOT / "profiles" / profile / "config.yaml").read_text())
        assert "cores" not in settings, profile
