"""The workflow on a real one-node SLURM cluster, with profiles/slurm, its placeholders filled in.

tests/slurm/cluster.py installs and starts the cluster (root; Debian's Slurm 22.05). One small run goes
through it while the same config runs locally with --cores. Once the finetune job's first checkpoint and
training state are on disk, `scancel --signal=TERM` ends its running step (the training process), as a
crash would: the job FAILS, Snakemake must resubmit it and training resume from that state. (A plain
`scancel`, or --signal=KILL, leaves the job "CANCELLED by <uid>", a state snakemake-executor-plugin-slurm
2.8.0 does not recognise: the workflow then waits for that job forever; see docs/clusters.md, "Running on a
clusters".)
A cluster that cannot start fails these tests with the daemons' own words; nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml
from piimem.train import read_train_log
from polars.testing import assert_frame_equal
from slurm.cluster import Cluster, ClusterError, start
from workflow_helpers import ROOT, planned_jobs, scenario, write_config

pytestmark = pytest.mark.slow

# .test/slurm/config.yaml over .test/small/config.yaml: one run (none-full) with fewer pre-training epochs,
# bootstrap resamples and canary candidates keeps both runs inside CI's budget; train.gpus: 1 makes every
# model job ask for a GPU.
CONFIG = scenario("small", "slurm")
RUN_DIR = "results/private/runs/tiny-gpt2/none-full-s42"
LOCAL_RULES = {"aggregate_metrics", "comparisons", "tables", "figures", "all"}
PLACEHOLDERS = ("<account>", "<partition>", "<gpu-partition>")
RUN_TIMEOUT_S = 600


@dataclass
class Runs:
    cluster: Cluster
    slurm_dir: Path
    local_dir: Path
    profile: dict
    profile_dir: Path
    planned: dict[str, int]
    sacct: list[dict[str, str]]
    killed_job: str
    state_step_at_kill: int
    slurm_seconds: float
    local_seconds: float


@pytest.fixture(scope="module")
def cluster():
    try:
        running = start()
    except ClusterError as error:
        problem = f"the test SLURM cluster did not start:\n{error}"
    else:
        yield running
        running.stop()
        return
    pytest.fail(problem, pytrace=False)


def cluster_profile(cluster: Cluster, directory: Path) -> tuple[dict, Path]:
    """profiles/slurm with the test cluster's account, partitions, CPUs and memory, at directory/config.yaml.

    The placeholders take the cluster's values; memory and threads are capped at what its one node has
    (the profile asks up to 64 GB and 16 CPUs); a status check every second instead of every 40 s.
    """
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    values = {"<account>": cluster.account, "<partition>": cluster.cpu_partition,
              "<gpu-partition>": cluster.gpu_partition}

    def fill(resources: dict) -> dict:
        filled = {key: values.get(value, value) for key, value in resources.items()}
        if "mem_mb" in filled:
            filled["mem_mb"] = min(filled["mem_mb"], cluster.memory_mb)
        return filled

    profile["default-resources"] = fill(profile["default-resources"])
    profile["set-resources"] = {rule: fill(r) for rule, r in profile["set-resources"].items()}
    profile["set-threads"] = {rule: min(n, cluster.cpus) for rule, n in profile["set-threads"].items()}
    profile.update({"slurm-init-seconds-before-status-checks": 1, "seconds-between-status-checks": 1,
                    "slurm-keep-successful-logs": True})
    text = yaml.safe_dump(profile, sort_keys=False)
    assert not any(p in text for p in PLACEHOLDERS), text
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(text)
    return profile, directory


def snakemake_process(workdir: Path, *args: str, log: Path, nice: int = 0) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="")
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d",
                             str(workdir), *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            preexec_fn=lambda: os.nice(nice))


def wait_for(runs: dict[str, tuple[subprocess.Popen, Path]], started: float) -> dict[str, float]:
    """Seconds from `started` until each run ended; a run that failed or overran fails with its log."""
    ended: dict[str, float] = {}
    while len(ended) < len(runs):
        for what, (process, log) in runs.items():
            if what not in ended and process.poll() is not None:
                ended[what] = time.monotonic() - started
                tail = log.read_text()[-8000:]
                assert process.returncode == 0, f"{what} failed ({process.returncode}):\n{tail}"
        if time.monotonic() - started > RUN_TIMEOUT_S:
            raise AssertionError(f"still running after {RUN_TIMEOUT_S} s: {sorted(set(runs) - set(ended))}")
        time.sleep(0.5)
    return ended


def kill_finetune_after_first_state(cluster: Cluster, slurm_dir: Path, process: subprocess.Popen,
                                    started: float) -> tuple[str | None, int]:
    """End the running finetune job's step as soon as its run has a saved training state (a checkpoint's).

    (None, -1) when the run ended first (wait_for then shows why)."""
    state = slurm_dir / RUN_DIR / "state" / "state.json"
    while process.poll() is None and time.monotonic() - started < RUN_TIMEOUT_S:
        if state.is_file():
            running = cluster.run("squeue", "-h", "-t", "RUNNING", "-o", "%i %k").stdout.split("\n")
            job = next((line.split()[0] for line in running if " rule_finetune_" in line), None)
            if job is not None:
                cluster.run("scancel", "--signal=TERM", job)
                try:
                    step = json.loads(state.read_text())["step"]
                except (OSError, ValueError, KeyError):  # renamed away meanwhile: a later checkpoint's
                    step = -1
                return job, step
        time.sleep(0.02)
    return None, -1


def sacct_rows(cluster: Cluster) -> list[dict[str, str]]:
    fields = ("JobID", "Comment", "Partition", "AllocCPUS", "ReqMem", "Timelimit", "State", "AllocTRES",
              "Elapsed")
    out = cluster.run("sacct", "-X", "-a", "-P", "-n", "--starttime", "now-1hours",
                      "-o", ",".join(fields)).stdout
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]


def rule_of(row: dict[str, str]) -> str:
    """The rule a job ran: the plugin submits with --comment rule_<name>[_wildcards_<values>]."""
    return re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", row["Comment"])[1]


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> Runs:
    slurm_dir, local_dir = tmp_path_factory.mktemp("on-slurm"), tmp_path_factory.mktemp("local")
    for workdir in (slurm_dir, local_dir):
        write_config(workdir, CONFIG)
    profile, profile_dir = cluster_profile(cluster, tmp_path_factory.mktemp("profile"))
    planned = planned_jobs(slurm_dir, "--profile", str(profile_dir))
    # Both at once: the SLURM run spends much of its time waiting for the next status check, which the
    # local run, at the lowest CPU priority, fills without slowing the cluster's jobs.
    started = time.monotonic()
    # Each job with the threads it has on the cluster: torch's sums, and so the metrics, depend on them.
    threads = [f"{rule}={n}" for rule, n in profile["set-threads"].items()]
    local = snakemake_process(local_dir, "--cores", "2", "--set-threads", *threads, log=local_dir / "snakemake.log",
                              nice=19)
    on_slurm = snakemake_process(slurm_dir, "--profile", str(profile_dir), log=slurm_dir / "snakemake.log")
    try:
        job, step = kill_finetune_after_first_state(cluster, slurm_dir, on_slurm, started)
        seconds = wait_for({"the run on SLURM": (on_slurm, slurm_dir / "snakemake.log"),
                            "the local run": (local, local_dir / "snakemake.log")}, started)
    finally:
        for process in (on_slurm, local):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert job is not None, "the finetune job ended before it could be killed with a saved state"
    slurm_seconds, local_seconds = seconds["the run on SLURM"], seconds["the local run"]
    rows = sacct_rows(cluster)
    print(f"\ncluster up in {cluster.start_seconds:.1f} s; run on SLURM {slurm_seconds:.0f} s, local run "
          f"{local_seconds:.0f} s (at the same time); killed finetune job {job} at saved step {step}")
    print("\n".join(" | ".join(row.values()) for row in rows))
    return Runs(cluster, slurm_dir, local_dir, profile, profile_dir, planned, rows, job, step, slurm_seconds,
                local_seconds)


def test_cluster_has_one_idle_node_in_a_cpu_and_a_gpu_partition(cluster):
    nodes = cluster.run("sinfo", "-h", "-N", "-o", "%N %P %c %G").stdout.split("\n")
    assert sorted(filter(None, nodes)) == sorted([
        f"{cluster.node} {cluster.cpu_partition}* {cluster.cpus} gpu:{cluster.gpus}",
        f"{cluster.node} {cluster.gpu_partition} {cluster.cpus} gpu:{cluster.gpus}"])
    assert cluster.cpus == os.cpu_count()


def test_every_cluster_job_went_through_sbatch_with_the_profiles_resources(runs):
    expected = {rule: n for rule, n in runs.planned.items() if rule not in LOCAL_RULES}
    submitted: dict[str, int] = {}
    for row in runs.sacct:
        if row["State"] == "COMPLETED":
            submitted[rule_of(row)] = submitted.get(rule_of(row), 0) + 1
    assert submitted == expected
    assert not LOCAL_RULES & {rule_of(row) for row in runs.sacct}
    defaults, per_rule = runs.profile["default-resources"], runs.profile["set-resources"]
    for row in runs.sacct:
        rule = rule_of(row)
        resources = {**defaults, **per_rule.get(rule, {})}
        hours = int(resources["runtime"].removesuffix("h"))
        limit = f"{hours // 24}-{hours % 24:02}:00:00" if hours >= 24 else f"{hours:02}:00:00"
        cpus = runs.profile["set-threads"].get(rule, 1)
        gpu = resources["slurm_partition"] == runs.cluster.gpu_partition
        assert (row["Partition"], row["AllocCPUS"], row["ReqMem"], row["Timelimit"]) == (
            resources["slurm_partition"], str(cpus), f"{resources['mem_mb']}M", limit), row
        assert ("gres/gpu=1" in row["AllocTRES"]) == gpu, row
    finetune = [row for row in runs.sacct if rule_of(row) == "finetune"]
    assert [(r["Partition"], r["ReqMem"], r["Timelimit"]) for r in finetune] == [
        (runs.cluster.gpu_partition, f"{min(64000, runs.cluster.memory_mb)}M", "1-00:00:00")] * 2


def test_metrics_equal_the_local_run_value_for_value(runs):
    on_slurm = pl.read_parquet(runs.slurm_dir / "results/metrics.parquet")
    local = pl.read_parquet(runs.local_dir / "results/metrics.parquet")
    assert on_slurm.height > 0 and {"ppl_mean", "train_loss"} <= set(on_slurm["metric"])
    assert_frame_equal(on_slurm.sort(on_slurm.columns), local.sort(local.columns), check_exact=True)


def test_killed_finetune_was_resubmitted_and_resumed_from_its_saved_state(runs):
    finetune = [row for row in runs.sacct if rule_of(row) == "finetune"]
    assert [row["State"] for row in finetune] == ["FAILED", "COMPLETED"], finetune
    assert finetune[0]["JobID"] == runs.killed_job
    manifest = json.loads((runs.slurm_dir / RUN_DIR / "manifest.json").read_text())
    local = json.loads((runs.local_dir / RUN_DIR / "manifest.json").read_text())
    checkpoint_steps = [c["step"] for c in local["checkpoints"]]
    # Resumed once, at a checkpoint's saved state, before the end: the kill landed mid-training.
    assert len(manifest["resumed_at_steps"]) == 1, manifest["resumed_at_steps"]
    assert manifest["resumed_at_steps"][0] in checkpoint_steps[:-1]
    assert runs.state_step_at_kill in (-1, *checkpoint_steps[:-1])
    assert local["resumed_at_steps"] == []
    # Nothing lost: the same checkpoints, steps and training losses as the uninterrupted local run.
    assert manifest["checkpoints"] == local["checkpoints"]
    assert manifest["steps"] == local["steps"] and manifest["complete"]
    job_log = (runs.slurm_dir / "logs/train/tiny-gpt2/none-full-s42.log").read_text()
    assert f"resuming {RUN_DIR} at step {manifest['resumed_at_steps'][0]}" in job_log
    # Every step's loss once, from two attempts, equal to the uninterrupted run's.
    steps = read_train_log(runs.slurm_dir / RUN_DIR / "train_log.tsv")
    local_steps = read_train_log(runs.local_dir / RUN_DIR / "train_log.tsv")
    assert (set(steps["attempt"]), set(local_steps["attempt"])) == ({1, 2}, {1})
    assert steps["step"].to_list() == list(range(1, manifest["total_steps"] + 1))
    columns = ("step", "epoch", "loss", "lr")
    assert_frame_equal(steps.select(columns), local_steps.select(columns), check_exact=True)


def test_a_rerun_plans_nothing(runs):
    assert planned_jobs(runs.slurm_dir, "--profile", str(runs.profile_dir)) == {}
