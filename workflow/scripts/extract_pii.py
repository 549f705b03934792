# Both generation rules: `extract_base` runs the base model on every prompt set (its finds are subtracted
# later); `extract_pii` runs every checkpoint of a run and scores what it finds against the training PII.
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.corpus.splits import split_texts
from piimem.extraction.found import counted, find_pii, found_set, pii_occurrence_counts, pii_set, pretraining_pii
from piimem.extraction.generation import generate
from piimem.extraction.table import extraction_table, string_records
from piimem.io import write_private_parquet, write_table
from piimem.metric_names import TER
from piimem.models import load_base_model, workflow_model_source
from piimem.pii.detect import build_analyzer
from piimem.runs import checkpoint_models, stamp

torch.set_num_threads(snakemake.threads)
params, inputs = snakemake.params, snakemake.input
options = params.extraction
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))
prompt_sets = {Path(path).stem: pl.read_parquet(path) for path in inputs.prompts}
analyzer = build_analyzer(entity_types=options["entity_types"])


def attack(model) -> pl.DataFrame:
    """The PII found in the continuations of every prompt set, with the set's name (private data)."""
    tables = []
    for name, prompts in prompt_sets.items():
        continuations = generate(
            model, tokenizer, prompts["prompt"].to_list(), max_new_tokens=options["new_tokens"],
            batch_size=options["batch_size"], do_sample=options["decoding"] == "sample",
            temperature=options["temperature"], top_k=options["top_k"], seed=options["seed"], device=params.device,
        )
        found = counted(find_pii(continuations, entity_types=options["entity_types"], analyzer=analyzer,
                                 score_threshold=params.score_threshold, ignore=params.ignore),
                        options["person_min_words"])
        tables.append(found.with_columns(prompt_set=pl.lit(name)))
    return pl.concat(tables)


if "manifest" not in inputs.keys():
    found = attack(base)
    write_private_parquet(found, snakemake.output.found)
    log.info("base model: %d PII occurrences in the continuations of %d prompt sets", found.height, len(prompt_sets))
else:
    messages, splits, spans = (pl.read_parquet(inputs[key]) for key in ("messages", "splits", "spans"))
    spans = counted(spans, options["person_min_words"])
    train_ids = split_texts(messages, splits, "train")["doc_id"]
    true_counts = pii_occurrence_counts(spans, train_ids, options["entity_types"])
    pretraining = pretraining_pii(spans, messages, splits, params.base_model,
                                  pl.read_parquet(inputs.pretraining_pii) if "pretraining_pii" in inputs.keys()
                                  else None)
    base_found = pl.read_parquet(inputs.base_found)
    found_paths = dict(zip(snakemake.output.results, snakemake.output.found))
    string_paths = dict(zip(snakemake.output.results, snakemake.output.strings))
    for result_path, checkpoint, model in checkpoint_models(inputs.manifest, snakemake.output.results, base):
        seen = pii_set(spans, pl.read_parquet(checkpoint["dir"] / "consumed.parquet")["doc_id"],
                       options["entity_types"])
        found = attack(model)
        write_private_parquet(found, found_paths[str(result_path)])
        tables, strings = [], []
        for name, prompts in prompt_sets.items():
            targets = (list(prompts.select("entity_type", "normalized").rows())
                       if "normalized" in prompts.columns else None)
            tables.append(extraction_table(
                found.filter(pl.col("prompt_set") == name), prompt_set=name, n_prompts=prompts.height,
                true_counts=true_counts, seen=seen,
                base_found=found_set(base_found.filter(pl.col("prompt_set") == name)),
                entity_types=options["entity_types"], targets=targets, pretraining=pretraining,
            ))
            strings.append(string_records(found.filter(pl.col("prompt_set") == name), prompt_set=name,
                                          true_counts=true_counts, seen=seen, entity_types=options["entity_types"],
                                          pretraining=pretraining))
        write_table(stamp(pl.concat(strings), checkpoint), string_paths[str(result_path)])
        table = pl.concat(tables)
        write_table(stamp(table, checkpoint), result_path)
        ter = table.filter((pl.col("entity_type") == "ALL") & (pl.col("metric") == TER))
        log.info("checkpoint %s: TER %s", checkpoint["id"],
                 ", ".join(f"{s} {v:.2f} %" for s, v in ter.select("prompt_set", "value").rows()))
