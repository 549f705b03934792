from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.audit import audit_run
from piimem.io import write_table
from piimem.models import load_base_model, workflow_model_source
from piimem.runs import checkpoint_models

torch.set_num_threads(snakemake.threads)
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))
canaries = pl.read_parquet(inputs.canaries)
for _, checkpoint, model in checkpoint_models(inputs.manifest, [output.result], base):
    result, records = audit_run(model, base, tokenizer, canaries, manifest=inputs.manifest, checkpoint=checkpoint,
                                audit_config=params.audit, batch_size=params.batch_size, device=params.device)
    write_table(result, output.result)
    write_table(records, output.records)
