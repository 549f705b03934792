"""The untargeted extraction attack on one model: continuations of every prompt set, the PII in them
(`ExtractionAttack.found`), and, for a checkpoint of a run, those finds scored against the training PII
(`ExtractionScoring.tables`: the rates of `table.extraction_table` and the per-string records)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from piimem.extraction.found import PiiReader
from piimem.metrics import PII

log = logging.getLogger("piimem")


@dataclass
class ExtractionAttack:
    """Generation from every prompt set and the PII found in the continuations. `options`: the extraction
    section's generation keys (entity_types, new_tokens, batch_size, decoding, temperature, top_k, seed,
    person_min_words); `score_threshold`, `ignore`: pii's."""

    tokenizer: object
    prompt_sets: dict[str, pl.DataFrame]  # by name (the prompt file's stem), holding corpus text (private)
    options: Mapping
    device: str
    reader: PiiReader

    @classmethod
    def from_files(cls, tokenizer, prompt_files: Iterable[str | os.PathLike], options: Mapping, *,
                   score_threshold: float, ignore: Sequence[str], device: str) -> ExtractionAttack:
        prompt_sets = {Path(path).stem: pl.read_parquet(path) for path in prompt_files}
        return cls(tokenizer, prompt_sets, options, device,
                   PiiReader.build(options["entity_types"], score_threshold=score_threshold, ignore=ignore))

    def found(self, model) -> pl.DataFrame:
        """The PII found in the continuations of every prompt set (`found.counted`), with the set's name in
        `prompt_set` (private data)."""
        from piimem.extraction.found import counted
        from piimem.extraction.generation import generate

        options, tables = self.options, []
        for name, prompts in self.prompt_sets.items():
            continuations = generate(
                model, self.tokenizer, prompts["prompt"].to_list(), max_new_tokens=options["new_tokens"],
                batch_size=options["batch_size"], do_sample=options["decoding"] == "sample",
                temperature=options["temperature"], top_k=options["top_k"], seed=options["seed"],
                device=self.device,
            )
            found = counted(self.reader.find(continuations, options["entity_types"]), options["person_min_words"])
            tables.append(found.with_columns(prompt_set=pl.lit(name)))
        return pl.concat(tables)

    def base_tables(self, model) -> dict[str, pl.DataFrame]:
        """The base model's finds (`found`), which every run's rates leave out (extract_base's output)."""
        found = self.found(model)
        log.info("base model: %d PII occurrences in the continuations of %d prompt sets", found.height,
                 len(self.prompt_sets))
        return {"found": found}


@dataclass
class ExtractionScoring:
    """What a run's checkpoints are scored against: the training split's true PII O with its occurrence
    counts, the spans that give each checkpoint's S_c, the pre-training PII (None where unknown) and the
    base model's finds."""

    attack: ExtractionAttack
    spans: pl.DataFrame  # `counted` spans of the PII stage
    true_counts: dict[PII, int]
    pretraining: set[PII] | None
    base_found: pl.DataFrame

    @classmethod
    def from_files(cls, attack: ExtractionAttack, *, messages, splits, spans, base_found, base_model: str,
                   pretraining_pii=None) -> ExtractionScoring:
        """From the corpus's messages, splits and spans, extract_base's finds and, where the rule has it,
        the pre-training PII of a tiny GPT-2 (`found.pretraining_pii`)."""
        from piimem.corpus.splits import split_texts
        from piimem.extraction.found import counted, pii_occurrence_counts
        from piimem.extraction.found import pretraining_pii as pretraining_set

        options = attack.options
        messages, splits = pl.read_parquet(messages), pl.read_parquet(splits)
        spans = counted(pl.read_parquet(spans), options["person_min_words"])
        train_ids = split_texts(messages, splits, "train")["doc_id"]
        true_counts = pii_occurrence_counts(spans, train_ids, options["entity_types"])
        pretraining = pretraining_set(spans, messages, splits, base_model,
                                      None if pretraining_pii is None else pl.read_parquet(pretraining_pii))
        return cls(attack, spans, true_counts, pretraining, pl.read_parquet(base_found))

    def tables(self, model, checkpoint: dict) -> dict[str, pl.DataFrame]:
        """One checkpoint's finds (`found`, private), its rates (`results`) and per-string records
        (`strings`), the last two stamped with the checkpoint (extract_pii's outputs)."""
        from piimem.extraction.found import found_set, pii_set
        from piimem.extraction.table import extraction_table, string_records
        from piimem.metric_names import ALL, TER
        from piimem.runs import stamp

        entity_types = self.attack.options["entity_types"]
        seen = pii_set(self.spans, pl.read_parquet(checkpoint["dir"] / "consumed.parquet")["doc_id"], entity_types)
        found = self.attack.found(model)
        tables, strings = [], []
        for name, prompts in self.attack.prompt_sets.items():
            of_set = found.filter(pl.col("prompt_set") == name)
            targets = (list(prompts.select("entity_type", "normalized").rows())
                       if "normalized" in prompts.columns else None)
            tables.append(extraction_table(
                of_set, prompt_set=name, n_prompts=prompts.height, true_counts=self.true_counts, seen=seen,
                base_found=found_set(self.base_found.filter(pl.col("prompt_set") == name)),
                entity_types=entity_types, targets=targets, pretraining=self.pretraining,
            ))
            strings.append(string_records(of_set, prompt_set=name, true_counts=self.true_counts, seen=seen,
                                          entity_types=entity_types, pretraining=self.pretraining))
        table = pl.concat(tables)
        ter = table.filter((pl.col("entity_type") == ALL) & (pl.col("metric") == TER))
        log.info("checkpoint %s: TER %s", checkpoint["id"],
                 ", ".join(f"{s} {v:.2f} %" for s, v in ter.select("prompt_set", "value").rows()))
        return {"found": found, "results": stamp(table, checkpoint),
                "strings": stamp(pl.concat(strings), checkpoint)}
