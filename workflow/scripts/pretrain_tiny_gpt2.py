from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.corpus.splits import split_texts
from piimem.corpus.synthetic import without_canaries
from piimem.io import create_private_files, write_table
from piimem.metric_names import VAL_PPL
from piimem.pretrain import pretrain_tiny_gpt2

create_private_files()  # the tokenizer's vocabulary and the weights hold corpus text
torch.set_num_threads(snakemake.threads)
inputs = snakemake.input
messages, splits = pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits)
if "outsiders" in inputs.keys():
    texts = pl.read_parquet(inputs.outsiders)
    log.info("pretrain: %d messages of the outsiders' world", texts.height)
else:
    texts = split_texts(messages, splits, "public")
    if "truth" in inputs.keys():
        n_public = texts.height
        texts = without_canaries(texts, pl.read_parquet(inputs.truth))
        log.info("pretrain: %d of %d public messages hold a planted canary and are left out",
                 n_public - texts.height, n_public)
validation = split_texts(messages, splits, "validation")
model, tokenizer, curve = pretrain_tiny_gpt2(
    texts,
    snakemake.params.options,
    block_size=snakemake.params.block_size,
    device=snakemake.params.device,
    work_dir=Path(snakemake.params.work_dir),
    validation=validation,
    state_every=snakemake.config["train"]["state_every"],  # not a param: it changes no result
)
write_table(curve, snakemake.output.curve)
chosen = curve.filter(pl.col("selected")).row(0, named=True)
log.info("pretrain: the base model is epoch %g of %d%s", chosen["epoch"], curve.height,
         f" (validation ppl_mean {chosen[VAL_PPL]:.2f})" if VAL_PPL in chosen else "")
model_dir = Path(snakemake.output.model).parent
model.save_pretrained(model_dir)
tokenizer.save_pretrained(model_dir)
