"""The embedded base model: a tiny GPT-2 with its own tokenizer, pre-trained on the public split.

Fine-tuning then really starts from a pretrained model, and the reference-model attack has a
reference that never saw the members. Killed mid-way, it resumes like any training run.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from piimem.io import fingerprint
from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.train import TrainConfig, train


def pretrain_tiny_gpt2(public: pl.DataFrame, options: dict, *, block_size: int, device: str, work_dir: Path,
                       state_every: dict | None = None):
    """`public`: (doc_id, text) of the public split; `options`: the config's tiny_gpt2 section;
    `state_every`: train.state_every."""
    pre = options["pretrain"]
    tokenizer = train_tokenizer(public["text"].to_list(), options["vocab_size"])
    model = init_tiny_gpt2(
        tokenizer, n_layer=options["n_layer"], n_embd=options["n_embd"], n_head=options["n_head"],
        n_positions=options["n_positions"], seed=options["seed"],
    )
    cfg = TrainConfig(
        block_size=block_size, lr=pre["lr"], epochs=pre["epochs"], warmup_steps=pre["warmup_steps"],
        batch_size=pre["batch_size"], checkpoints_per_epoch=1, seed=options["seed"], device=device,
    )
    texts = public.select(pl.lit(0, dtype=pl.Int64).alias("epoch"), "doc_id", "text")
    digest = fingerprint({"tiny_gpt2": options, "block_size": block_size,
                          "texts": texts.hash_rows().sum()})
    train(model, tokenizer, texts, cfg, work_dir, fingerprint=digest, state_every=state_every)
    return model, tokenizer
