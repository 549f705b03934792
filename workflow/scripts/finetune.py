from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import json
import subprocess
import sys
from pathlib import Path

from piimem.io import create_private_files, fingerprint
from piimem.models import workflow_model_source
from piimem.train_run import launch_command, run
from piimem.tuning import learning_rate, method_options

create_private_files()  # checkpoints memorise the training text
wildcards, params = snakemake.wildcards, snakemake.params
method = params.tuning["tuning"]  # the run's tuning name may be a sweep's variant (lora_lr0.002)
options = method_options(method, params.tuning["options"])
settings = {k: v for k, v in params.train.items() if k != "gpus"}
settings.update(seed=int(wildcards.seed), lr=learning_rate(method, options, params.train["lr"]))
dp = dict(params.dp) if params.dp else None
if dp is not None and dp.pop("lr") is not None:  # a DP variant's own learning rate (dp.lr)
    settings["lr"] = float(params.dp["lr"])
run_dir = Path(snakemake.output.manifest).parent
spec = {
    "base_model": workflow_model_source(params.base_model, snakemake.input.get("base_model")),
    "models_dir": "results/models",
    "tuning": method,
    "tuning_options": options,
    "train": settings,
    "texts": snakemake.input.texts,
    "run_dir": str(run_dir),
    "fingerprint": fingerprint(
        {"base_model": params.base_model, "tuning": method, "options": options, "train": settings, "dp": dp},
        list(snakemake.input),
    ),
    "dp": dp,
    "threads": snakemake.threads,
    "state_every": snakemake.config["train"]["state_every"],  # not a param: it changes no result
}
gpus = params.train["gpus"]
if gpus > 1:
    # One run on several GPUs: accelerate starts one process per GPU (see piimem.train_run).
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / "launch.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    subprocess.run(launch_command(spec_path, gpus), check=True, stdout=sys.stderr, stderr=sys.stderr)
else:
    run(spec)
