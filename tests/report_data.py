"""Constructed runs for the report's tests: per-item records (piimem.report.comparisons.Items) and the
metrics rows the same runs would aggregate to, so that tables, claims and figures see consistent inputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from piimem.aggregate import METRICS_SCHEMA, with_exact_intervals
from piimem.metrics import bootstrap_auc_ci, roc_auc
from piimem.report.comparisons import Items, Settings, compare

BASE = "tiny-gpt2"
CHECKPOINTS = (("c01", 1.0), ("c02", 2.0), ("c03", 3.0))


@dataclass
class Part:
    """Records of one kind for one run, and its metrics rows."""

    kind: str  # strings, messages, scores, targets or canaries
    records: pl.DataFrame
    metrics: list[dict] = field(default_factory=list)


def metric_row(metric, value, *, defense="none", tuning="full", seed=1, checkpoint="c01", epoch=1.0,
               prompt_set=None, entity_type=None, base=BASE, ci=(None, None), k=None, n=None,
               member_text=None) -> dict:
    return {"corpus": "synthetic", "base_model": base, "defense": defense, "tuning": tuning, "seed": seed,
            "checkpoint": checkpoint, "epoch": epoch, "prompt_set": prompt_set, "entity_type": entity_type,
            "member_text": member_text, "metric": metric, "value": value, "ci_low": ci[0], "ci_high": ci[1],
            "k": k, "n": n}


def _run(frame: pl.DataFrame, base: str, defense: str, tuning: str, seed: int) -> pl.DataFrame:
    return frame.with_columns(base_model=pl.lit(base), defense=pl.lit(defense), tuning=pl.lit(tuning),
                              seed=pl.lit(seed, dtype=pl.Int64))


def strings(defense: str, extracted: Sequence[Iterable[int]], *, n: int = 100, tuning: str = "full", seed: int = 1,
            prompt_set: str = "train-prefix", entity_type: str = "EMAIL_ADDRESS", occurrences=None,
            seen: Sequence[Iterable[int]] | None = None, base: str = BASE,
            checkpoints=CHECKPOINTS) -> Part:
    """n true strings (ids 0..n-1), the ids each checkpoint extracted; every string seen unless `seen` says
    which; TER and SER rows of `entity_type` and ALL with their counts."""
    occurrences = np.ones(n, dtype=np.int64) if occurrences is None else np.asarray(occurrences)
    frames, rows = [], []
    for c, ((checkpoint, epoch), found) in enumerate(zip(checkpoints, extracted)):
        found = set(found)
        seen_ids = set(range(n)) if seen is None else set(seen[c])
        frames.append(pl.DataFrame({
            "checkpoint": checkpoint, "prompt_set": prompt_set, "entity_type": entity_type,
            "string_id": np.arange(n), "occurrences": occurrences,
            "seen": [i in seen_ids for i in range(n)], "extracted": [i in found for i in range(n)]}))
        k_seen = len(found & seen_ids)
        for scope in {entity_type, "ALL"}:
            where = dict(defense=defense, tuning=tuning, seed=seed, checkpoint=checkpoint, epoch=epoch,
                         prompt_set=prompt_set, entity_type=scope, base=base)
            rows += [metric_row("ter", 100 * len(found) / n, k=len(found), n=n, **where),
                     metric_row("ser", 100 * k_seen / len(seen_ids) if seen_ids else None, k=k_seen,
                                n=len(seen_ids), **where)]
    return Part("strings", _run(pl.concat(frames), base, defense, tuning, seed), rows)


def messages(defense: str, ppl: Sequence[float], *, n: int = 60, tuning: str = "full", seed: int = 1,
             base_ppl: float = 50.0, spread: float = 0.3, noise: int = 0, base: str = BASE,
             checkpoints=CHECKPOINTS) -> Part:
    """n test messages of 100 tokens whose perplexity at checkpoint c is ppl[c] times a per-message factor
    (the same for every run with the same `noise`: the runs are paired); ppl_mean and ppl_base rows."""
    factor = np.exp(np.random.default_rng(noise).normal(0, spread, n))
    factor /= factor.mean()
    frames, rows = [], []
    for (checkpoint, epoch), value in zip(checkpoints, ppl):
        per_message = value * factor
        frames.append(pl.DataFrame({"checkpoint": checkpoint, "doc_id": np.arange(n), "n_tokens": 100,
                                    "nll_sum": 100 * np.log(per_message),
                                    "base_nll_sum": 100 * np.log(base_ppl * factor)}))
        where = dict(defense=defense, tuning=tuning, seed=seed, checkpoint=checkpoint, epoch=epoch, base=base)
        rows += [metric_row("ppl_mean", float(per_message.mean()), **where),
                 metric_row("ppl_base", float((base_ppl * factor).mean()), **where)]
    return Part("messages", _run(pl.concat(frames), base, defense, tuning, seed), rows)


def scores(tuning: str, separations: Sequence[float], *, n: int = 80, defense: str = "none", seed: int = 1,
           noise: int = 0, base: str = BASE, checkpoints=CHECKPOINTS, thread: int = 1, blind=None) -> Part:
    """n members and n non-members in link groups of `thread` texts each (members' and non-members' apart);
    at checkpoint c a member's LOSS score is `separations[c]` higher on average (per-example noise fixed by
    `noise`); mia_auc/loss rows with their bootstrap interval. `blind`: a blind-baseline score per example."""
    rng = np.random.default_rng(noise)
    member = np.arange(2 * n) < n
    base_score, jitter = rng.normal(0, 1, 2 * n), rng.normal(0, 1, 2 * n)
    frames, rows = [], []
    for (checkpoint, epoch), separation in zip(checkpoints, separations):
        loss = base_score + 0.3 * jitter * seed + separation * member
        frames.append(pl.DataFrame({"checkpoint": checkpoint, "index": np.arange(2 * n), "member": member,
                                    "group": np.arange(2 * n) // thread, "loss": loss,
                                    **({} if blind is None else {"blind": np.asarray(blind, dtype=float)})}))
        ci = bootstrap_auc_ci(loss, member, n=200, seed=0)
        rows.append(metric_row("mia_auc/loss", roc_auc(loss, member), defense=defense, tuning=tuning, seed=seed,
                               checkpoint=checkpoint, epoch=epoch, base=base, ci=ci, member_text="original"))
    return Part("scores", _run(pl.concat(frames), base, defense, tuning, seed), rows)


def targets(defense: str, correct: Iterable[int], *, base_correct: Iterable[int] = (), n: int = 200,
            attack: str = "inference", tuning: str = "full", seed: int = 1, pretrained: Iterable[int] = (),
            entity_type: str = "EMAIL_ADDRESS", base: str = BASE, checkpoint=CHECKPOINTS[-1], exposure=None,
            occurrences=None) -> Part:
    """n targets (ids 0..n-1) of one targeted attack at one checkpoint: the ids the run gets right and those
    the base model gets right (the same in every run: the runs are paired); accuracy rows and `_base`.
    `exposure` (one per target; default 3 bits if right, else 0.5) and `occurrences` (training repetitions)."""
    correct, base_correct, pretrained = set(correct), set(base_correct), set(pretrained)
    ids = np.arange(n)
    frame = pl.DataFrame({
        "checkpoint": checkpoint[0], "attack": attack, "prompt_set": None, "entity_type": entity_type,
        "target_id": ids, "in_pretraining": [i in pretrained for i in ids], "correct": [i in correct for i in ids],
        "exposure": ([3.0 if i in correct else 0.5 for i in ids] if exposure is None
                     else np.asarray(exposure, dtype=float)),
        "base_correct": [i in base_correct for i in ids],
        "base_exposure": [3.0 if i in base_correct else 0.5 for i in ids],
        "occurrences": (np.ones(n, dtype=np.int64) if occurrences is None else np.asarray(occurrences))},
        schema_overrides={"prompt_set": pl.Utf8})
    metric = {"inference": "pii_inference_acc", "reconstruction": "pii_reconstruction_acc"}[attack]
    where = dict(defense=defense, tuning=tuning, seed=seed, checkpoint=checkpoint[0], epoch=checkpoint[1],
                 entity_type=entity_type, base=base)
    rows = [metric_row(metric, 100 * len(correct) / n, k=len(correct), n=n, **where),
            metric_row(f"{metric}_base", 100 * len(base_correct) / n, k=len(base_correct), n=n, **where)]
    return Part("targets", _run(frame, base, defense, tuning, seed), rows)


def canaries(defense: str, exposure, occurrences, *, entity_types=None, tuning: str = "full", seed: int = 1,
             base: str = BASE, checkpoint=CHECKPOINTS[-1]) -> Part:
    """One run's canary records at one checkpoint: canary i has extrapolated exposure `exposure[i]` and
    `occurrences[i]` training occurrences (ids 0..n-1, every run the same canaries); a canary_exposure row."""
    n = len(exposure)
    types = ["EMAIL_ADDRESS"] * n if entity_types is None else list(entity_types)
    frame = pl.DataFrame({"checkpoint": checkpoint[0], "canary_id": np.arange(n), "entity_type": types,
                          "repetitions": np.asarray(occurrences), "train_occurrences": np.asarray(occurrences),
                          "exposure": np.minimum(np.asarray(exposure, dtype=float), np.log2(101)),
                          "exposure_extrapolated": np.asarray(exposure, dtype=float)})
    rows = [metric_row("canary_exposure_extrapolated/1", float(np.mean(exposure)), defense=defense, tuning=tuning,
                       seed=seed, checkpoint=checkpoint[0], epoch=checkpoint[1], entity_type=types[0], base=base)]
    return Part("canaries", _run(frame, base, defense, tuning, seed), rows)


def build(*parts: Part) -> tuple[pl.DataFrame, Items]:
    """(metrics, items) of the parts."""
    rows = [r for p in parts for r in p.metrics]
    metrics = pl.DataFrame(rows, schema=METRICS_SCHEMA) if rows else pl.DataFrame(schema=METRICS_SCHEMA)
    kinds = {kind: [p.records for p in parts if p.kind == kind]
             for kind in ("strings", "messages", "scores", "targets", "canaries")}
    items = Items(**{kind: pl.concat(frames, how="diagonal") if frames else pl.DataFrame()
                     for kind, frames in kinds.items()})
    return with_exact_intervals(metrics), items


def comparisons_of(*parts: Part, resamples: int = 400, **settings) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(metrics, comparison table) of the parts."""
    metrics, items = build(*parts)
    return metrics, compare(metrics, items, Settings(resamples=resamples, **settings))
