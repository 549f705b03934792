from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

import math
from pathlib import Path

import polars as pl
import torch

from piimem.corpus.splits import split_texts
from piimem.io import write_table
from piimem.metric_names import DP_EPSILON, PPL, PPL_BASE, PPL_CORPUS, TRAIN_LOSS, VAL_PPL, VAL_PPL_BASE, VALIDATION
from piimem.metrics import perplexity
from piimem.models import load_base_model, workflow_model_source
from piimem.runs import checkpoint_models, stamp
from piimem.scoring import token_nll

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))

messages, splits = pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits)


def scored_split(name: str) -> pl.DataFrame:
    texts = split_texts(messages, splits, name)
    if params.utility["max_examples"] and texts.height > params.utility["max_examples"]:
        texts = texts.sample(params.utility["max_examples"], seed=params.seed).sort("doc_id")
    return texts


test, validation = scored_split("test"), scored_split("validation")


def score(model, texts: pl.DataFrame) -> tuple[dict, pl.DataFrame]:
    scores = token_nll(model, tokenizer, texts["text"].to_list(), max_length=params.max_length,
                       batch_size=params.utility["batch_size"], device=params.device)
    values = perplexity(scores["nll_sum"], scores["n_tokens"])
    per_message = scores.select("n_tokens", "nll_sum").with_columns(doc_id=texts["doc_id"])
    return {**values, "n_examples": scores.height, "n_tokens": int(scores["n_tokens"].sum())}, per_message


def validation_values(model) -> dict:
    """val_ppl_mean, val_ppl_corpus, val_n_examples, val_n_tokens; none without a validation split."""
    return {VALIDATION + key: value for key, value in score(model, validation)[0].items()} if validation.height else {}


# The base model's perplexity on the same texts: a run that ends no lower has not learnt the data.
base_values, base_messages = score(base, test)
ppl_base = base_values[PPL]
val_base = validation_values(base)
log.info("base model: ppl_mean %.3f (test), %s (validation)", ppl_base,
         f"{val_base[VAL_PPL]:.3f}" if val_base else "no validation split")
message_paths = dict(zip(snakemake.output.utility, snakemake.output.messages))
for output, checkpoint, model in checkpoint_models(inputs.manifest, snakemake.output.utility, base):
    values, per_message = score(model, test)
    values.update(validation_values(model))
    if val_base:
        values[VAL_PPL_BASE] = val_base[VAL_PPL]
    per_message = per_message.with_columns(base_nll_sum=base_messages["nll_sum"])
    write_table(stamp(per_message.select("doc_id", "n_tokens", "nll_sum", "base_nll_sum"), checkpoint),
                message_paths[str(output)])
    # The manifest's checkpoint records name their train_loss and dp_epsilon as the metrics do.
    values[PPL_BASE] = ppl_base
    values[TRAIN_LOSS] = math.nan if checkpoint[TRAIN_LOSS] is None else checkpoint[TRAIN_LOSS]
    if DP_EPSILON in checkpoint:  # a DP-SGD run: the epsilon spent up to this checkpoint (NaN: no noise)
        values[DP_EPSILON] = math.nan if checkpoint[DP_EPSILON] is None else checkpoint[DP_EPSILON]
    write_table(stamp(pl.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]}),
                      checkpoint).select("checkpoint", "epoch", "metric", "value"), output)
    log.info("checkpoint %s: ppl_mean %.3f, ppl_corpus %.3f, validation ppl_mean %s", checkpoint["id"],
             values[PPL], values[PPL_CORPUS], f"{values[VAL_PPL]:.3f}" if val_base else "-")
if values[PPL] >= ppl_base:
    log.warning("the last checkpoint's ppl_mean %.3f is no lower than the base model's %.3f: this run has not "
                "learnt the training data, and its attack results say nothing about privacy",
                values[PPL], ppl_base)
