from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.io import create_private_files

from piimem.corpus.splits import split_texts
from piimem.corpus.synthetic import without_canaries
from piimem.pretrain import pretrain_tiny_gpt2

create_private_files()  # the tokenizer's vocabulary and the weights hold corpus text
torch.set_num_threads(snakemake.threads)
public = split_texts(pl.read_parquet(snakemake.input.messages), pl.read_parquet(snakemake.input.splits), "public")
if "truth" in snakemake.input.keys():
    n_public = public.height
    public = without_canaries(public, pl.read_parquet(snakemake.input.truth))
    log.info("pretrain: %d of %d public messages hold a planted canary and are left out",
             n_public - public.height, n_public)
model, tokenizer = pretrain_tiny_gpt2(
    public,
    snakemake.params.options,
    block_size=snakemake.params.block_size,
    device=snakemake.params.device,
    work_dir=Path(snakemake.params.work_dir),
    state_every=snakemake.config["train"]["state_every"],  # not a param: it changes no result
)
model_dir = Path(snakemake.output.model).parent
model.save_pretrained(model_dir)
tokenizer.save_pretrained(model_dir)
