from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.extraction import canary_exposures
from piimem.io import write_table
from piimem.models import load_base_model, workflow_model_source
from piimem.train import read_checkpoints
from piimem.tuning import load_checkpoint

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))
canaries = pl.read_parquet(inputs.canaries)
checkpoints = read_checkpoints(inputs.manifest)
for output in snakemake.output.results:
    checkpoint = checkpoints[Path(output).stem]
    exposures = canary_exposures(load_checkpoint(base, checkpoint["dir"]), tokenizer, canaries,
                                 n_candidates=params.n_candidates, seed=params.seed, batch_size=params.batch_size,
                                 device=params.device)
    write_table(exposures.with_columns(checkpoint=pl.lit(checkpoint["id"]), epoch=pl.lit(checkpoint["epoch"])), output)
    log.info("checkpoint %s: mean exposure %.2f of at most %.2f bits", checkpoint["id"], exposures["exposure"].mean(),
             exposures["max_exposure"].max())
