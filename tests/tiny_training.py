"""Tiny-model training settings and data shared by the trainer's tests: made-up words (no PII), a one-block
GPT-2 that trains in seconds on 2 CPU cores, dropout on (GPT-2's default), so resume equality also needs the
RNG state."""

from __future__ import annotations

import polars as pl

from made_up_text import made_up_docs
from piimem.models import init_tiny_gpt2

# TrainConfig keys of a run of about 20 steps per epoch
SMALL = dict(block_size=32, batch_size=4, lr=3e-3, warmup_steps=2, device="cpu", precision="fp32")


def training_docs(n: int, seed: int) -> list[str]:
    return made_up_docs(n, seed, letters="abcdefghij", vocabulary=80, words=(8, 50))


def tiny_model(tok, seed: int = 7):
    return init_tiny_gpt2(tok, n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=seed)


def epoch0_texts(docs: list[str], doc_ids=None) -> pl.DataFrame:
    """(epoch 0, doc_id, text): the same texts every epoch."""
    doc_ids = list(range(len(docs))) if doc_ids is None else list(doc_ids)
    return pl.DataFrame({"epoch": [0] * len(docs), "doc_id": doc_ids, "text": docs},
                        schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})
