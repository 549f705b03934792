from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.io import create_private_files, fingerprint
from piimem.models import load_base_model
from piimem.train import TrainConfig, train
from piimem.tuning import apply_tuning, learning_rate, method_options

create_private_files()  # checkpoints memorise the training text
torch.set_num_threads(snakemake.threads)
# A model on this machine comes as its config.json; a Hugging Face id loads from the local cache.
model_source = str(Path(snakemake.input.base_model).parent) if "base_model" in snakemake.input.keys() \
    else snakemake.params.base_model
wildcards, params = snakemake.wildcards, snakemake.params
options = method_options(wildcards.tuning, params.tuning)
settings = {k: v for k, v in params.train.items() if k != "gpus"}
settings.update(seed=int(wildcards.seed), lr=learning_rate(wildcards.tuning, options, params.train["lr"]))
cfg = TrainConfig.from_dict(settings)

model, tokenizer = load_base_model(model_source, models_dir=Path("results/models"))
model = apply_tuning(model, wildcards.tuning, options, seed=int(wildcards.seed), tokenizer=tokenizer)
run_dir = Path(snakemake.output.manifest).parent
train(
    model,
    tokenizer,
    pl.read_parquet(snakemake.input.texts),
    cfg,
    run_dir,
    fingerprint=fingerprint(
        {"base_model": params.base_model, "tuning": wildcards.tuning, "options": options, "train": settings},
        list(snakemake.input),
    ),
)
