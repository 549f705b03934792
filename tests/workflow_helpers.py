"""Running the real workflow in a scratch directory, as a user would with their own config."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ENRON_MINI = SHARED / "data" / "enron-mini"
# A real corpus pre-trains the tiny GPT-2 on its public split, which the embedded default (pre-training on
# synthetic outsiders) leaves empty.
REAL_SPLIT = {"fractions": {"train": 0.6, "validation": 0.1, "test": 0.2, "public": 0.1}}


def merge(base: dict, extra: dict) -> dict:
    """`extra` merged into `base` (changed in place and returned) key by key, as Snakemake merges the files
    given with --configfile: a mapping into a mapping recursively, any other value replaces."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def scenario(*names: str) -> dict:
    """Named test configurations, .test/<name>/config.yaml, merged in the order given (`scenario("small",
    "slurm")` is the slurm scenario over the small one, as `--configfile .test/small/config.yaml
    .test/slurm/config.yaml` is): overrides of the embedded default."""
    config: dict = {}
    for name in names:
        merge(config, yaml.safe_load((ROOT / ".test" / name / "config.yaml").read_text()) or {})
    return config


def scenario_script(name: str, script: str) -> ModuleType:
    """.test/<name>/<script>.py imported by its path (a scenario's data maker, runnable from a shell too)."""
    path = ROOT / ".test" / name / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"scenario_{name}_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(workdir: Path, overrides: dict | None = None) -> Path:
    """The embedded default with `overrides` merged in, at workdir/config/config.yaml."""
    config = merge(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), overrides or {})
    path = workdir / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# GPT-2's config.json as the Hugging Face hub serves it: a cache holding it (`hub_cache`) passes the
# workflow's check, before any job, that every base model can be loaded offline; it cannot load the model.
GPT2_CONFIG = {
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
    "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "vocab_size": 50257,
}


def hub_cache(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Put `files` into the Hugging Face hub cache layout at `cache` (models--owner--name/refs/main +
    snapshots/<commit>/...), as `hf download` leaves them; returns `cache`."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return cache


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule name -> job count of what `snakemake -n` would run."""
    # Targets go first: --quiet takes every word after it.
    out = snakemake(workdir, *args, "-n", "--quiet", "rules").stdout
    jobs: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs
