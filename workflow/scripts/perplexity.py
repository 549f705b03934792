from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import math
from pathlib import Path

import polars as pl
import torch

from piimem.corpus.splits import split_texts
from piimem.io import write_table
from piimem.metrics import perplexity
from piimem.models import load_base_model, workflow_model_source
from piimem.scoring import token_nll
from piimem.train import read_checkpoints
from piimem.tuning import load_checkpoint

torch.set_num_threads(snakemake.threads)
params = snakemake.params
checkpoints = read_checkpoints(snakemake.input.manifest)
source = workflow_model_source(params.base_model, snakemake.input.get("base_model"))
base, tokenizer = load_base_model(source, models_dir=Path("results/models"))

test = split_texts(pl.read_parquet(snakemake.input.messages), pl.read_parquet(snakemake.input.splits), "test")
if params.utility["max_examples"] and test.height > params.utility["max_examples"]:
    test = test.sample(params.utility["max_examples"], seed=params.seed).sort("doc_id")
texts = test["text"].to_list()

for output in snakemake.output.utility:
    checkpoint = checkpoints[Path(output).stem]
    model = load_checkpoint(base, checkpoint["dir"])
    scores = token_nll(model, tokenizer, texts, max_length=params.max_length,
                       batch_size=params.utility["batch_size"], device=params.device)
    values = perplexity(scores["nll_sum"], scores["n_tokens"])
    values.update(n_examples=scores.height, n_tokens=int(scores["n_tokens"].sum()),
                  train_loss=math.nan if checkpoint["train_loss"] is None else checkpoint["train_loss"])
    write_table(
        pl.DataFrame({"checkpoint": checkpoint["id"], "epoch": checkpoint["epoch"],
                      "metric": list(values), "value": [float(v) for v in values.values()]}),
        output,
    )
    log.info("checkpoint %s: ppl_mean %.3f, ppl_corpus %.3f", checkpoint["id"], values["ppl_mean"], values["ppl_corpus"])
