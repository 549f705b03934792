"""One job's measurement of a fine-tuning run: the loop over its checkpoints that every measuring rule runs.

A measuring rule (perplexity, membership inference, extraction, targeted attacks, canary exposure) has one
job per run. The job loads the base model once (`rule_base_model`), then `evaluate_checkpoints` loads each
checkpoint onto it in turn (`piimem.runs.checkpoint_models`), asks the rule's measurement for that
checkpoint's tables and writes each to the file the rule declares for it (`write_tables`).

A measurement is a callable `(model, checkpoint) -> {output name: table}`: its tables carry the checkpoint's
id and epoch where their files hold them (`piimem.runs.stamp`). The rules that measure the base model itself
(extract_base, targeted_base, mia_reference) have scripts of their own and write the base model's tables
with `write_tables`, so no script has to ask which rule it serves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import polars as pl

# Where the workflow builds its models (tiny GPT-2s, the SmolLM2 export): models_dir of load_base_model.
MODELS_DIR = Path("results/models")

Measurement = Callable[[object, dict], Mapping[str, pl.DataFrame]]


def rule_base_model(base_model: str, config_json: str | os.PathLike | None, *, threads: int):
    """(model, tokenizer) of a rule's base model: `base_model` is its `base_models` entry, `config_json` the
    rule's `base_model` input (None for a Hugging Face id, which loads from the local cache). torch uses the
    job's `threads` from here on, set before loading as every measurement's numbers were made."""
    import torch

    from piimem.models import load_base_model, workflow_model_source

    torch.set_num_threads(threads)
    return load_base_model(workflow_model_source(base_model, config_json), models_dir=MODELS_DIR)


def write_tables(tables: Mapping[str, pl.DataFrame], files: Mapping[str, str | os.PathLike]) -> None:
    """Write each table to the file of the same name (`files`: a rule's named outputs, snakemake's `output`
    will do): a file inside a folder named "private" holds raw PII and is written with
    `piimem.io.write_private_parquet`, any other with `write_table`.

    ValueError naming both sets of names when they differ: a table the rule has no file for, or a file no
    table is written to, is a measurement that does not match its rule.
    """
    from piimem.io import write_private_parquet, write_table

    files = dict(files.items())  # snakemake's output too: a list whose named entries are its items()
    if set(tables) != set(files):
        raise ValueError(f"write_tables: the measurement gives tables {sorted(tables)} but the rule declares "
                         f"outputs {sorted(files)}")
    for name, path in files.items():
        (write_private_parquet if "private" in Path(path).parts else write_table)(tables[name], path)


def _per_checkpoint(outputs) -> dict[str, list[Path]]:
    """{output name: its files}, every name with one file per checkpoint, named after it in the same order."""
    files = {name: [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
             for name, paths in outputs.items()}  # a rule that measures one checkpoint names one file
    if not files:
        raise ValueError("evaluate_checkpoints: no outputs given")
    first, *rest = files
    ids = [path.name.split(".", 1)[0] for path in files[first]]
    for name in rest:
        if [path.name.split(".", 1)[0] for path in files[name]] != ids:
            raise ValueError(f"evaluate_checkpoints: output {name!r} ({[str(p) for p in files[name]]}) does not "
                             f"name the checkpoints of output {first!r} ({ids}) in the same order")
    return files


def evaluate_checkpoints(manifest: str | os.PathLike, outputs: Mapping[str, Sequence[str | os.PathLike]],
                         base_model, measure: Measurement) -> list[Mapping[str, pl.DataFrame]]:
    """Measure every checkpoint of a finished run and write its tables; returns them, checkpoint by checkpoint.

    `outputs`: the rule's named outputs (snakemake's `output` will do), each listing one file per checkpoint
    named `{checkpoint}.<anything>`, all in the same checkpoint order, which is the order measured in.
    `manifest`: the run's manifest.json; `base_model`: the pre-trained model every checkpoint loads onto
    (`checkpoint_models`: it stays unchanged). `measure(model, checkpoint)` gets the loaded model and the
    manifest's entry of the checkpoint (id, epoch, step, train_loss, dir) and returns its tables by output
    name (`write_tables`).
    """
    from piimem.runs import checkpoint_models

    files = _per_checkpoint(outputs)
    first = next(iter(files))
    measured = []
    for i, (_, checkpoint, model) in enumerate(checkpoint_models(manifest, files[first], base_model)):
        tables = measure(model, checkpoint)
        write_tables(tables, {name: paths[i] for name, paths in files.items()})
        measured.append(tables)
    return measured
