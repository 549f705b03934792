"""The embedded base model: a tiny GPT-2 with its own tokenizer, pre-trained from scratch.

Fine-tuning then really starts from a model that knows the language of mail, and the reference-model
attack has a reference that never saw the members. The text is the outsiders' mail on the synthetic corpus
or the public split (`piimem.corpus.pretraining`). Every epoch ends in a checkpoint; with validation texts
each is scored, and the base model is the epoch of lowest validation perplexity (the curve says where it
plateaus). Killed mid-way, it resumes like any training run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from piimem.io import fingerprint
from piimem.metric_names import TRAIN_LOSS, VAL_PPL, VALIDATION
from piimem.metrics import perplexity
from piimem.models import init_tiny_gpt2, train_tokenizer
from piimem.scoring import token_nll
from piimem.train import TrainConfig, train

log = logging.getLogger("piimem")


def pretrain_tiny_gpt2(texts: pl.DataFrame, options: dict, *, block_size: int, device: str, work_dir: Path,
                       validation: pl.DataFrame | None = None, state_every: dict | None = None):
    """(model, tokenizer, curve): `texts` (doc_id, text) to pre-train on; `options`: the config's tiny_gpt2
    section; `validation` (doc_id, text): scored after every epoch; `state_every`: train.state_every.

    curve: one row per epoch (epoch, step, train_loss, val_ppl_mean, val_ppl_corpus, selected); the model
    is the selected epoch's: the lowest val_ppl_mean, or the last without validation texts."""
    from transformers import AutoModelForCausalLM

    pre = options["pretrain"]
    tokenizer = train_tokenizer(texts["text"].to_list(), options["vocab_size"])
    model = init_tiny_gpt2(
        tokenizer, n_layer=options["n_layer"], n_embd=options["n_embd"], n_head=options["n_head"],
        n_positions=options["n_positions"], seed=options["seed"],
    )
    cfg = TrainConfig(
        block_size=block_size, lr=pre["lr"], epochs=pre["epochs"], warmup_steps=pre["warmup_steps"],
        batch_size=pre["batch_size"], checkpoints_per_epoch=1, seed=options["seed"], device=device,
    )
    epochs = texts.select(pl.lit(0, dtype=pl.Int64).alias("epoch"), "doc_id", "text")
    digest = fingerprint({"tiny_gpt2": options, "block_size": block_size, "texts": epochs.hash_rows().sum()})
    manifest = train(model, tokenizer, epochs, cfg, work_dir, fingerprint=digest, state_every=state_every)
    rows = []
    for checkpoint in manifest["checkpoints"]:
        row = {"epoch": checkpoint["epoch"], "step": checkpoint["step"], TRAIN_LOSS: checkpoint[TRAIN_LOSS]}
        if validation is not None and validation.height:
            scored = AutoModelForCausalLM.from_pretrained(work_dir / checkpoint["path"])
            nll = token_nll(scored, tokenizer, validation["text"].to_list(), max_length=block_size, batch_size=16,
                            device=device)
            values = perplexity(nll["nll_sum"], nll["n_tokens"])
            row.update({VALIDATION + name: value for name, value in values.items()})
            log.info("pre-training epoch %g: train loss %.3f, validation ppl_mean %.2f", row["epoch"],
                     row[TRAIN_LOSS], row[VAL_PPL])
        rows.append(row)
    curve = pl.DataFrame(rows)
    best = (curve[VAL_PPL].arg_min() if VAL_PPL in curve.columns else curve.height - 1)
    curve = curve.with_columns(selected=pl.int_range(pl.len()) == best)
    if best != curve.height - 1:
        model = AutoModelForCausalLM.from_pretrained(work_dir / manifest["checkpoints"][best]["path"])
    return model, tokenizer, curve
