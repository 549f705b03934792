"""The targeted attacks on one model (`TargetedAttacks.run`): PII inference and reconstruction on masked
training occurrences (`inference`) and association prompts built from owners' names (`association`), as
per-target records and rates (`table.targeted_table`); a checkpoint's records and rates sit beside the base
model's (`TargetedBaseline`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from piimem.extraction.found import PiiReader

log = logging.getLogger("piimem")

# What identifies one target's record: the base model's record of it joins on these.
RECORD_KEYS = ["attack", "prompt_set", "entity_type", "target_id"]


@dataclass
class TargetedAttacks:
    """The targets (`inference.inference_targets`) and association prompts of a base model, with the
    extraction.targeted options (inference, reconstruction, association, seed, batch_size); `score_threshold`,
    `ignore`: pii's."""

    tokenizer: object
    targets: pl.DataFrame  # private: masked training text
    prompts: pl.DataFrame  # the association prompts, private
    options: Mapping
    device: str
    reader: PiiReader

    @classmethod
    def from_files(cls, tokenizer, targets: str | os.PathLike, association: str | os.PathLike, options: Mapping, *,
                   score_threshold: float, ignore: Sequence[str], device: str) -> TargetedAttacks:
        targets, prompts = pl.read_parquet(targets), pl.read_parquet(association)
        types = sorted(set(targets["entity_type"].to_list()) | {"EMAIL_ADDRESS"})
        return cls(tokenizer, targets, prompts, options, device,
                   PiiReader.build(types, score_threshold=score_threshold, ignore=ignore))

    def run(self, model) -> tuple[pl.DataFrame, list[tuple]]:
        """(per-target records, association rates) of one model, for the attacks the options enable."""
        from piimem.extraction.association import association_results
        from piimem.extraction.generation import generate
        from piimem.extraction.inference import TARGET_RECORD_SCHEMA, pii_inference, pii_reconstruction

        options, tokenizer, device = self.options, self.tokenizer, self.device
        batch_size = options["batch_size"]
        records, rates = [], []
        if options["inference"]["enabled"]:
            records.append(pii_inference(model, tokenizer, self.targets, batch_size=batch_size, device=device))
        if options["reconstruction"]["enabled"]:
            sampling = options["reconstruction"]
            records.append(pii_reconstruction(
                model, tokenizer, self.targets, analyzer=self.reader.analyzer, samples=sampling["samples"],
                new_tokens=sampling["new_tokens"], top_k=sampling["top_k"], top_p=sampling["top_p"],
                temperature=sampling["temperature"], seed=options["seed"], score_threshold=self.reader.score_threshold,
                ignore=self.reader.ignore, batch_size=batch_size, device=device))
        if options["association"]["enabled"] and self.prompts.height:
            continuations = generate(model, tokenizer, self.prompts["prompt"].to_list(),
                                     max_new_tokens=options["association"]["new_tokens"], batch_size=batch_size,
                                     device=device)
            found = self.reader.find(continuations, ["EMAIL_ADDRESS"])
            rates, association = association_results(found, self.prompts)
            records.append(association)
        return (pl.concat(records) if records else pl.DataFrame(schema=TARGET_RECORD_SCHEMA)), rates

    def base_tables(self, model) -> dict[str, pl.DataFrame]:
        """The base model's records and its rates named with the base suffix (targeted_base's outputs)."""
        from piimem.extraction.table import targeted_table
        from piimem.metric_names import BASE

        records, rates = self.run(model)
        log.info("base model: %d targeted records", records.height)
        return {"records": records, "results": targeted_table(records, rates, suffix=BASE)}


@dataclass
class TargetedBaseline:
    """The base model's targeted results (targeted_base's outputs), set beside every checkpoint's."""

    attacks: TargetedAttacks
    records: pl.DataFrame  # RECORD_KEYS, base_correct, base_exposure
    rows: pl.DataFrame  # the base model's rates, EXTRACTION_TABLE_SCHEMA

    @classmethod
    def from_files(cls, attacks: TargetedAttacks, *, results: str | os.PathLike,
                   records: str | os.PathLike) -> TargetedBaseline:
        from piimem.extraction.table import EXTRACTION_TABLE_SCHEMA

        base_records = pl.read_parquet(records).select(*RECORD_KEYS, base_correct="correct",
                                                       base_exposure="exposure")
        return cls(attacks, base_records, pl.read_csv(results, separator="\t", schema=EXTRACTION_TABLE_SCHEMA))

    def tables(self, model, checkpoint: dict) -> dict[str, pl.DataFrame]:
        """One checkpoint's records with the base model's outcome of each target, and its rates followed by the
        base model's, both stamped with the checkpoint (targeted_attacks' outputs)."""
        from piimem.extraction.table import targeted_table
        from piimem.metric_names import PII_INFERENCE_ACC, PII_RECONSTRUCTION_ACC
        from piimem.runs import stamp

        records, rates = self.attacks.run(model)
        table = pl.concat([targeted_table(records, rates), self.rows])
        acc = table.filter(pl.col("metric").is_in([PII_INFERENCE_ACC, PII_RECONSTRUCTION_ACC]))
        log.info("checkpoint %s: %s", checkpoint["id"], ", ".join(
            f"{m} {t} {v:.1f} % ({k} of {n})"
            for m, t, v, k, n in acc.select("metric", "entity_type", "value", "k", "n").rows()))
        return {"records": stamp(records.join(self.records, on=RECORD_KEYS, how="left", nulls_equal=True),
                                 checkpoint),
                "results": stamp(table, checkpoint)}
