from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl

from piimem.corpus.dataset import prompt_set_texts
from piimem.corpus.splits import split_texts
from piimem.extraction.prompts import file_prompts, train_prefix_prompts, window_prompts
from piimem.io import write_private_parquet
from piimem.models import load_base_model, workflow_model_source

options, inputs = snakemake.params.options, snakemake.input
prompt_set = snakemake.wildcards.prompt_set
_, tokenizer = load_base_model(workflow_model_source(snakemake.params.base_model, inputs.get("base_model")),
                               models_dir=Path("results/models"))
sizes = dict(n=options["n_prompts"], prompt_tokens=options["prompt_tokens"], seed=options["seed"])

if snakemake.params.dataset is not None:
    texts = prompt_set_texts(snakemake.params.dataset, key=f"extraction.prompt_files.{prompt_set}")
    prompts = window_prompts(texts, tokenizer, position=options["window_position"], **sizes)
elif "file" in inputs.keys():
    prompts = file_prompts(inputs.file, tokenizer, position=options["window_position"], **sizes)
else:
    messages, splits = pl.read_parquet(inputs.messages), pl.read_parquet(inputs.splits)
    if prompt_set == "train-prefix":
        prompts = train_prefix_prompts(split_texts(messages, splits, "train"), pl.read_parquet(inputs.spans),
                                       tokenizer, entity_types=options["prefix_entity_types"], **sizes)
    else:
        prompts = window_prompts(split_texts(messages, splits, prompt_set), tokenizer,
                                 position=options["window_position"], **sizes)
if prompts.height == 0:
    raise ValueError(f"extraction prompt set {prompt_set!r} holds no prompt: its texts are empty or, for "
                     f"train-prefix, the training split has no PII of extraction.prefix_entity_types")
write_private_parquet(prompts, snakemake.output.prompts)
log.info("prompt set %s: %d prompts, %.1f tokens on average", prompt_set, prompts.height,
         prompts["n_prompt_tokens"].mean())
