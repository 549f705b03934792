"""Utility of a run's checkpoints: the perplexity of the test split (and of the validation split, where there is
one) beside the base model's on the same texts (`Utility`); the formulas are `piimem.metrics.perplexity`'s."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import polars as pl

from piimem.metric_names import DP_EPSILON, PPL, PPL_BASE, PPL_CORPUS, TRAIN_LOSS, VAL_PPL, VAL_PPL_BASE, VALIDATION

log = logging.getLogger("piimem")


def scored_split(messages: pl.DataFrame, splits: pl.DataFrame, name: str, *, max_examples: int,
                 seed: int) -> pl.DataFrame:
    """The (doc_id, text) of split `name` that are scored: all of them, or a sample of `max_examples` (0: all)
    drawn with `seed`, in doc_id order."""
    from piimem.corpus.splits import split_texts

    texts = split_texts(messages, splits, name)
    if max_examples and texts.height > max_examples:
        texts = texts.sample(max_examples, seed=seed).sort("doc_id")
    return texts


def score_texts(model, tokenizer, texts: pl.DataFrame, *, max_length: int, batch_size: int,
                device: str) -> tuple[dict, pl.DataFrame]:
    """(perplexity values with n_examples and n_tokens, per message n_tokens, nll_sum, doc_id) of `texts`
    (doc_id, text)."""
    from piimem.metrics import perplexity
    from piimem.scoring import token_nll

    scores = token_nll(model, tokenizer, texts["text"].to_list(), max_length=max_length, batch_size=batch_size,
                       device=device)
    values = perplexity(scores["nll_sum"], scores["n_tokens"])
    per_message = scores.select("n_tokens", "nll_sum").with_columns(doc_id=texts["doc_id"])
    return {**values, "n_examples": scores.height, "n_tokens": int(scores["n_tokens"].sum())}, per_message


@dataclass
class Utility:
    """The scored test and validation texts, the settings they are scored with and the base model's scores of
    them: a run that ends no lower than the base model has not learnt its data. `options`: the utility
    section (max_examples, batch_size)."""

    tokenizer: object
    test: pl.DataFrame
    validation: pl.DataFrame
    options: dict
    max_length: int
    device: str
    base_values: dict | None = None  # the base model's test values (`score_texts`)
    base_messages: pl.DataFrame | None = None  # per test message: n_tokens, nll_sum, doc_id
    base_validation: dict | None = None  # the base model's validation values (VALIDATION keys), {}: no split

    @classmethod
    def from_files(cls, base_model, tokenizer, *, messages: str | os.PathLike, splits: str | os.PathLike,
                   options: dict, seed: int, max_length: int, device: str) -> Utility:
        """The texts of the corpus's splits (`seed`: the split's, which samples max_examples), scored with the
        base model."""
        messages, splits = pl.read_parquet(messages), pl.read_parquet(splits)
        test, validation = (scored_split(messages, splits, name, max_examples=options["max_examples"], seed=seed)
                            for name in ("test", "validation"))
        utility = cls(tokenizer, test, validation, options, max_length, device)
        utility.base_values, utility.base_messages = utility.score(base_model, test)
        utility.base_validation = utility.validation_values(base_model)
        log.info("base model: ppl_mean %.3f (test), %s (validation)", utility.base_values[PPL],
                 f"{utility.base_validation[VAL_PPL]:.3f}" if utility.base_validation else "no validation split")
        return utility

    def score(self, model, texts: pl.DataFrame) -> tuple[dict, pl.DataFrame]:
        return score_texts(model, self.tokenizer, texts, max_length=self.max_length,
                           batch_size=self.options["batch_size"], device=self.device)

    def validation_values(self, model) -> dict:
        """val_ppl_mean, val_ppl_corpus, val_n_examples, val_n_tokens; none without a validation split."""
        if not self.validation.height:
            return {}
        return {VALIDATION + key: value for key, value in self.score(model, self.validation)[0].items()}

    def tables(self, model, checkpoint: dict) -> dict[str, pl.DataFrame]:
        """One checkpoint's utility metrics with the base model's, its training loss and, for a DP-SGD run, the
        ε spent so far (`utility`), and per test message its NLL beside the base model's (`messages`), both
        stamped with the checkpoint (perplexity's outputs)."""
        from piimem.runs import stamp

        values, per_message = self.score(model, self.test)
        values.update(self.validation_values(model))
        if self.base_validation:
            values[VAL_PPL_BASE] = self.base_validation[VAL_PPL]
        per_message = per_message.with_columns(base_nll_sum=self.base_messages["nll_sum"])
        # The manifest's checkpoint records name their train_loss and dp_epsilon as the metrics do.
        values[PPL_BASE] = self.base_values[PPL]
        values[TRAIN_LOSS] = math.nan if checkpoint[TRAIN_LOSS] is None else checkpoint[TRAIN_LOSS]
        if DP_EPSILON in checkpoint:  # a DP-SGD run: the epsilon spent up to this checkpoint (NaN: no noise)
            values[DP_EPSILON] = math.nan if checkpoint[DP_EPSILON] is None else checkpoint[DP_EPSILON]
        log.info("checkpoint %s: ppl_mean %.3f, ppl_corpus %.3f, validation ppl_mean %s", checkpoint["id"],
                 values[PPL], values[PPL_CORPUS], f"{values[VAL_PPL]:.3f}" if self.base_validation else "-")
        table = pl.DataFrame({"metric": list(values), "value": [float(v) for v in values.values()]})
        return {"utility": stamp(table, checkpoint).select("checkpoint", "epoch", "metric", "value"),
                "messages": stamp(per_message.select("doc_id", "n_tokens", "nll_sum", "base_nll_sum"), checkpoint)}

    def check_learnt(self, last: dict[str, pl.DataFrame]) -> bool:
        """Whether the last checkpoint's tables (`tables`) show a test ppl_mean below the base model's; a
        warning in the log when not: such a run's attack results say nothing about privacy."""
        utility = last["utility"]
        ppl = utility.filter(pl.col("metric") == PPL)["value"][0]
        if ppl >= self.base_values[PPL]:
            log.warning("the last checkpoint's ppl_mean %.3f is no lower than the base model's %.3f: this run has "
                        "not learnt the training data, and its attack results say nothing about privacy",
                        ppl, self.base_values[PPL])
            return False
        return True
