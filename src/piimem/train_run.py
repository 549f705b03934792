"""One fine-tuning run described by a JSON file: the entry point for data-parallel launchers.

A Snakemake `script:` job is one Python process; `accelerate launch` (or torchrun) has to start the N
processes of a multi-GPU run itself. So the job writes the run's description to a JSON file and starts

    python -m accelerate.commands.launch --multi_gpu --num_processes N --num_machines 1 \\
        --mixed_precision no --dynamo_backend no --main_process_port 0 \\
        -m piimem.train_run --config run.json

(`launch_command(path, N)` builds exactly this), or, with one process, calls `run(spec)` directly.
Every process loads the base model, applies the tuning method and calls piimem.train.train(), which
finds WORLD_SIZE in its environment (see piimem.train). `--main_process_port 0` takes a free port, so
several runs can share a machine. accelerate's own mixed precision stays off: train() applies the
`train.precision` setting itself.

run.json (no corpus text, only names, paths and settings):
  base_model       a base_models entry or local directory (piimem.models.load_base_model)
  models_dir       where the workflow's built models live (e.g. "results/models")
  tuning           a piimem.tuning.TUNING_METHODS name
  tuning_options   the method's resolved options (piimem.tuning.method_options), {} for defaults
  train            TrainConfig keys (seed and lr already resolved)
  texts            parquet (epoch, doc_id, text) to train on
  run_dir          the run directory
  fingerprint      what the run depends on (piimem.io.fingerprint)
  threads          optional: torch CPU threads per process
  state_every      optional: how often to save resumable state (piimem.train.StateEvery keys)
  dp               optional: DP-SGD settings (piimem.train.dp.DPConfig keys), null for plain training
  stop_after_step  optional, for tests: end after that step as a kill would
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

REQUIRED = ("base_model", "models_dir", "tuning", "tuning_options", "train", "texts", "run_dir",
            "fingerprint")
OPTIONAL = ("threads", "state_every", "dp", "stop_after_step")


def load_spec(path: Path) -> dict:
    """The run description in `path`, checked for its keys."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the run description ({exc})") from exc
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a JSON object with keys {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if k not in spec]
    unknown = sorted(set(spec) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise ValueError(f"{path}: missing key(s) {missing}, unknown key(s) {unknown} "
                         f"(expected {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
    return spec


def run(spec: dict) -> dict:
    """Load the base model, apply the tuning method and train; returns the manifest."""
    import polars as pl
    import torch

    from piimem.models import load_base_model
    from piimem.train import TrainConfig, train
    from piimem.tuning import apply_tuning

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    cfg = TrainConfig.from_dict(spec["train"])
    model, tokenizer = load_base_model(spec["base_model"], models_dir=Path(spec["models_dir"]))
    model = apply_tuning(model, spec["tuning"], spec["tuning_options"], seed=cfg.seed, tokenizer=tokenizer)
    return train(model, tokenizer, pl.read_parquet(spec["texts"]), cfg, Path(spec["run_dir"]),
                 fingerprint=spec["fingerprint"], stop_after_step=spec.get("stop_after_step"),
                 state_every=spec.get("state_every"), dp=spec.get("dp"))


def launch_command(config_path: Path, processes: int) -> list[str]:
    """The command that runs `config_path` in `processes` processes, one GPU each, on this machine."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(int(processes)), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", "0",
            "-m", "piimem.train_run", "--config", str(config_path)]


def run_learning_rate(method: str, options: dict | None, train_lr: float, dp: dict | None) -> float:
    """The learning rate a fine-tuning run trains with, first set wins: a DP-SGD variant's own `lr` (the `lr` of
    `dp`, `piimem.plan.dp_options`; None or no `dp`: not set), the tuning method's `lr` option
    (`piimem.tuning.learning_rate`), train.lr (`train_lr`)."""
    from piimem.tuning import learning_rate

    if dp is not None and dp.get("lr") is not None:
        return float(dp["lr"])
    return learning_rate(method, options, train_lr)


def workflow_spec(*, base_model: str, source: str, tuning: dict, train: dict, seed: int | str, dp: dict | None,
                  texts: str, run_dir: str | os.PathLike, inputs: list[str], threads: int, state_every) -> dict:
    """The run description of the workflow's finetune job (see the module's docstring).

    `base_model`: the `base_models` entry, `source` what loads it (`piimem.models.workflow_model_source`);
    `tuning`: the tuning variant's method (`tuning`) and options; `train`: the train section without
    state_every (gpus is left out here: it says how the job starts, not what it computes); `dp`: the DP-SGD
    settings of a dp variant (`piimem.plan.dp_options`, None or empty otherwise), whose `lr` becomes the
    run's (`run_learning_rate`) and leaves the DP settings; `inputs`: every input file, for the fingerprint.
    """
    from piimem.io import fingerprint
    from piimem.tuning import method_options

    method = tuning["tuning"]  # the run's tuning name may be a sweep's variant (lora_lr0.002)
    options = method_options(method, tuning["options"])
    dp = dict(dp) if dp else None
    settings = {k: v for k, v in train.items() if k != "gpus"}
    settings.update(seed=int(seed), lr=run_learning_rate(method, options, train["lr"], dp))
    dp = None if dp is None else {k: v for k, v in dp.items() if k != "lr"}  # the trainer's DPConfig keys
    return {
        "base_model": source,
        "models_dir": "results/models",
        "tuning": method,
        "tuning_options": options,
        "train": settings,
        "texts": texts,
        "run_dir": str(run_dir),
        "fingerprint": fingerprint(
            {"base_model": base_model, "tuning": method, "options": options, "train": settings, "dp": dp}, inputs),
        "dp": dp,
        "threads": threads,
        "state_every": state_every,
    }


def start(spec: dict, gpus: int) -> None:
    """Train the run of `spec` in this process, or, on several GPUs, in one process per GPU started by
    accelerate (`launch_command`), from the run's `launch.json`."""
    import subprocess

    if gpus > 1:
        run_dir = Path(spec["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_path = run_dir / "launch.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        subprocess.run(launch_command(spec_path, gpus), check=True, stdout=sys.stderr, stderr=sys.stderr)
    else:
        run(spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m piimem.train_run", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the run description (JSON)")
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    # Rank 0 reports progress; the others only warnings, so a job log is not N copies of the same lines.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if rank == "0" else logging.WARNING,
                        format=f"%(asctime)s %(levelname)s %(name)s [rank {rank}]: %(message)s", force=True)
    from piimem.io import create_private_files

    create_private_files()  # checkpoints memorise the training text
    run(load_spec(args.config))


if __name__ == "__main__":
    main()
