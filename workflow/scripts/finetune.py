# finetune: one fine-tuning run, in this process or, on several GPUs, one process per GPU.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

from piimem.io import create_private_files
from piimem.models import workflow_model_source
from piimem.train_run import start, workflow_spec

create_private_files()  # checkpoints memorise the training text
params, inputs = snakemake.params, snakemake.input
spec = workflow_spec(
    base_model=params.base_model, source=workflow_model_source(params.base_model, inputs.get("base_model")),
    tuning=params.tuning, train=params.train, seed=snakemake.wildcards.seed, dp=params.dp, texts=inputs.texts,
    run_dir=Path(snakemake.output.manifest).parent, inputs=list(inputs), threads=snakemake.threads,
    state_every=snakemake.config["train"]["state_every"])  # not a param: it changes no result
start(spec, gpus=params.train["gpus"])
