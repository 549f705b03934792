from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.extraction.canaries import canary_exposures
from piimem.io import write_table
from piimem.models import load_base_model, workflow_model_source
from piimem.runs import checkpoint_models, stamp

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))
canaries = pl.read_parquet(inputs.canaries)
for output, checkpoint, model in checkpoint_models(inputs.manifest, snakemake.output.results, base):
    exposures = canary_exposures(model, tokenizer, canaries, n_candidates=params.n_candidates, seed=params.seed,
                                 batch_size=params.batch_size, device=params.device)
    write_table(stamp(exposures, checkpoint), output)
    log.info("checkpoint %s: mean exposure %.2f of at most %.2f bits", checkpoint["id"], exposures["exposure"].mean(),
             exposures["max_exposure"].max())
