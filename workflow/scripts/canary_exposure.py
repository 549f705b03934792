from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.extraction.canaries import CANARY_RECORD_SCHEMA, canary_candidates, canary_exposures
from piimem.io import write_table
from piimem.models import load_base_model, workflow_model_source
from piimem.runs import checkpoint_models, stamp

torch.set_num_threads(snakemake.threads)
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))
canaries = pl.read_parquet(inputs.canaries)
# Drawn once: every checkpoint ranks a canary against the same candidates.
candidates = canary_candidates(canaries, n_candidates=params.n_candidates, seed=params.seed)
record_paths = dict(zip(map(str, output.results), output.records))
for result_path, checkpoint, model in checkpoint_models(inputs.manifest, output.results, base):
    exposures = stamp(canary_exposures(model, tokenizer, canaries, n_candidates=params.n_candidates, seed=params.seed,
                                       batch_size=params.batch_size, device=params.device, candidates=candidates),
                       checkpoint)
    write_table(exposures, result_path)
    write_table(exposures.select(*CANARY_RECORD_SCHEMA, "checkpoint", "epoch"), record_paths[str(result_path)])
    means = exposures.select(pl.col("exposure", "max_exposure", "exposure_extrapolated").mean().fill_null(float("nan")))
    log.info("checkpoint %s: %d canaries, mean exposure %.2f of at most %.2f bits (rank), %.2f bits (extrapolated)",
             checkpoint["id"], exposures.height, *means.row(0))
