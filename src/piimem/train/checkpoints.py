"""Checkpoint folders: the weights (or the adapter) and tokenizer, consumed.parquet and checkpoint.json.

Written through a hidden temporary folder and a rename, so a folder named like a checkpoint is complete.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import polars as pl

from piimem.io import write_table
from piimem.train.config import Checkpoint


@contextlib.contextmanager
def _hf_progress_bars_off():
    """save_pretrained draws a one-item "Writing model shards" bar per checkpoint: noise in rule logs."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_checkpoint(model, tokenizer, run_dir: Path, checkpoint: Checkpoint, record: dict,
                     consumed: pl.DataFrame) -> None:
    final = run_dir / "checkpoints" / checkpoint.id
    tmp = run_dir / "checkpoints" / f".{checkpoint.id}.tmp"
    for path in (tmp, final):
        if path.exists():
            shutil.rmtree(path)
    tmp.mkdir(parents=True)
    with _hf_progress_bars_off():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_table(consumed, tmp / "consumed.parquet")  # doc ids only, no text
    (tmp / "checkpoint.json").write_text(json.dumps(record, indent=1))
    tmp.rename(final)
