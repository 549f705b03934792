# The targeted attacks (PII inference, reconstruction, association) on the base model (`targeted_base`) or
# on a run's checkpoints (`targeted_attacks`, which adds the base model's numbers beside its own).
from piimem.logs import log_to_file

log = log_to_file(snakemake.log[0])

from pathlib import Path

import polars as pl
import torch

from piimem.extraction.association import association_results
from piimem.extraction.found import find_pii
from piimem.extraction.generation import generate
from piimem.extraction.inference import TARGET_RECORD_SCHEMA, pii_inference, pii_reconstruction
from piimem.extraction.table import EXTRACTION_TABLE_SCHEMA, targeted_table
from piimem.metric_names import BASE
from piimem.io import write_table
from piimem.models import load_base_model, workflow_model_source
from piimem.pii.detect import build_analyzer
from piimem.runs import checkpoint_models, stamp

torch.set_num_threads(snakemake.threads)
params, inputs, output = snakemake.params, snakemake.input, snakemake.output
options = params.options
base, tokenizer = load_base_model(workflow_model_source(params.base_model, inputs.get("base_model")),
                                  models_dir=Path("results/models"))
targets, prompts = pl.read_parquet(inputs.targets), pl.read_parquet(inputs.association)
types = sorted(set(targets["entity_type"].to_list()) | {"EMAIL_ADDRESS"})
analyzer = build_analyzer(entity_types=types)
device, batch_size = params.device, options["batch_size"]


def attack(model) -> tuple[pl.DataFrame, list[tuple]]:
    """(per-target records, association rates) of one model."""
    records, rates = [], []
    if options["inference"]["enabled"]:
        records.append(pii_inference(model, tokenizer, targets, batch_size=batch_size, device=device))
    if options["reconstruction"]["enabled"]:
        sampling = options["reconstruction"]
        records.append(pii_reconstruction(
            model, tokenizer, targets, analyzer=analyzer, samples=sampling["samples"],
            new_tokens=sampling["new_tokens"], top_k=sampling["top_k"], top_p=sampling["top_p"],
            temperature=sampling["temperature"], seed=options["seed"], score_threshold=params.score_threshold,
            ignore=params.ignore, batch_size=batch_size, device=device))
    if options["association"]["enabled"] and prompts.height:
        continuations = generate(model, tokenizer, prompts["prompt"].to_list(),
                                 max_new_tokens=options["association"]["new_tokens"], batch_size=batch_size,
                                 device=device)
        found = find_pii(continuations, entity_types=["EMAIL_ADDRESS"], analyzer=analyzer,
                         score_threshold=params.score_threshold, ignore=params.ignore)
        rates, association = association_results(found, prompts)
        records.append(association)
    return (pl.concat(records) if records else pl.DataFrame(schema=TARGET_RECORD_SCHEMA)), rates


KEYS = ["attack", "prompt_set", "entity_type", "target_id"]
if "manifest" not in inputs.keys():
    records, rates = attack(base)
    write_table(records, output.records)
    write_table(targeted_table(records, rates, suffix=BASE), output.results)
    log.info("base model: %d targeted records", records.height)
else:
    base_records = pl.read_parquet(inputs.base_records).select(
        *KEYS, base_correct="correct", base_exposure="exposure")
    base_rows = pl.read_csv(inputs.base_results, separator="\t", schema=EXTRACTION_TABLE_SCHEMA)
    record_paths = dict(zip(output.results, output.records))
    for result_path, checkpoint, model in checkpoint_models(inputs.manifest, output.results, base):
        records, rates = attack(model)
        write_table(stamp(records.join(base_records, on=KEYS, how="left", nulls_equal=True), checkpoint),
                    record_paths[str(result_path)])
        table = pl.concat([targeted_table(records, rates), base_rows])
        write_table(stamp(table, checkpoint), result_path)
        acc = table.filter(pl.col("metric").is_in(["pii_inference_acc", "pii_reconstruction_acc"]))
        log.info("checkpoint %s: %s", checkpoint["id"], ", ".join(
            f"{m} {t} {v:.1f} % ({k} of {n})"
            for m, t, v, k, n in acc.select("metric", "entity_type", "value", "k", "n").rows()))
