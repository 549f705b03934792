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
from piimem.runs import checkpoint_models, stamp
from piimem.scoring import token_nll

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))

test = split_texts(pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits), "test")
if params.utility["max_examples"] and test.height > params.utility["max_examples"]:
    test = test.sample(params.utility["max_examples"], seed=params.seed).sort("doc_id")
texts = test["text"].to_list()


def score(model) -> tuple[dict, pl.DataFrame]:
    scores = token_nll(model, tokenizer, texts, max_length=params.max_length,
                       batch_size=params.utility["batch_size"], device=params.device)
    values = perplexity(scores["nll_sum"], scores["n_tokens"])
    per_message = scores.select("n_tokens", "nll_sum").with_columns(doc_id=test["doc_id"])
    return {**values, "n_examples": scores.height, "n_tokens": int(scores["n_tokens"].sum())}, per_message


# The base model's perplexity on the same texts: a run that ends no lower has not learnt the data.
base_values, base_messages = score(base)
ppl_base = base_values["ppl_mean"]
log.info("base model: ppl_mean %.3f", ppl_base)
message_paths = dict(zip(snakemake.output.utility, snakemake.output.messages))
for output, checkpoint, model in checkpoint_models(inputs.manifest, snakemake.output.utility, base):
    values, per_message = score(model)
    per_message = per_message.with_columns(base_nll_sum=base_messages["nll_sum"])
    write_table(stamp(per_message.select("doc_id", "n_tokens", "nll_sum", "base_nll_sum"), checkpoint),
                message_paths[str(output)])
    values.update(ppl_base=ppl_base,
                  train_loss=math.nan if checkpoint["train_loss"] is None else checkpoint["train_loss"])
    write_table(stamp(pl.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]}),
                      checkpoint).select("checkpoint", "epoch", "metric", "value"), output)
    log.info("checkpoint %s: ppl_mean %.3f, ppl_corpus %.3f", checkpoint["id"], values["ppl_mean"],
             values["ppl_corpus"])
if values["ppl_mean"] >= ppl_base:
    log.warning("the last checkpoint's ppl_mean %.3f is no lower than the base model's %.3f: this run has not "
                "learnt the training data, and its attack results say nothing about privacy",
                values["ppl_mean"], ppl_base)
