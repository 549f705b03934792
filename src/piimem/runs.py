"""A fine-tuning run: its identity (the names and paths every stage derives from it) and its checkpoints.

A run is one base model x defense variant x tuning method x seed. Its name, `{defense}-{tuning}-s{seed}`,
sits under the base model's slug, so its path is `{base}/{defense}-{tuning}-s{seed}`: e.g.
`tiny-gpt2/rmft_p0.5-lora-s42`. Defense and tuning names never hold "-", a slug never holds "/".
`RunId` is the one place that builds and parses these names, `variant_name` / `parse_variant` the one place
for a defense's or tuning method's variants (`rmft_all_p0.5`: RMFT with the `all` scope and p = 0.5,
`lora_lr0.002`); result files sit at
`results/runs/{run path}/{kind}/{checkpoint}.tsv`, their per-item records (one row per true PII string,
test message or MIA example, no text) beside them at `{kind}/{checkpoint}.{part}.parquet`.

`checkpoint_models` loads a finished run's checkpoints one by one onto the base model, each with the output
file that belongs to it: the loop under `piimem.evaluate.evaluate_checkpoints`, which every measuring rule
(perplexity, membership inference, extraction, targeted attacks, canary exposure) runs, and under the audit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"(?P<defense>[^/-]+)-(?P<tuning>[^/-]+)-s(?P<seed>\d+)")
RESULT_KINDS = ("utility", "mia", "extraction", "canaries", "targeted", "audit")
VARIANT_SEPARATOR = "_"


def variant_name(base: str, parts: Sequence[str] = ()) -> str:
    """The name of a defense or tuning variant: its defense or method, then one part per option it sweeps
    (piimem.plan.defense_variants, tuning_variants): variant_name("rmft", ["all", "p0.5"]) is rmft_all_p0.5."""
    return VARIANT_SEPARATOR.join([base, *parts])


def parse_variant(name: str, bases: Sequence[str]) -> tuple[str, list[str]]:
    """(defense or method, parts) of a variant name: the longest of `bases` it extends (lora_mlp, not lora,
    in lora_mlp_lr0.002); a name that extends none is split at its first separator."""
    matches = [b for b in bases if name == b or name.startswith(b + VARIANT_SEPARATOR)]
    base = max(matches, key=len) if matches else name.split(VARIANT_SEPARATOR, 1)[0]
    rest = name[len(base) + 1:]
    return base, rest.split(VARIANT_SEPARATOR) if rest else []


@dataclass(frozen=True, order=True)
class RunId:
    base: str  # the base model's slug (piimem.plan.model_slug)
    defense: str  # a defense variant (piimem.plan.defense_variants)
    tuning: str
    seed: int

    def __post_init__(self) -> None:
        for field, value in (("defense", self.defense), ("tuning", self.tuning)):
            if not value or "-" in value or "/" in value:
                raise ValueError(f"run {field} {value!r}: must be non-empty and hold neither '-' nor '/'")
        if not self.base or "/" in self.base:
            raise ValueError(f"run base model slug {self.base!r}: must be non-empty and hold no '/'")

    @property
    def name(self) -> str:
        """`{defense}-{tuning}-s{seed}`: the run's name under its base model."""
        return f"{self.defense}-{self.tuning}-s{self.seed}"

    @property
    def path(self) -> str:
        """`{base}/{defense}-{tuning}-s{seed}`: the run's folder under results/runs and results/private/runs."""
        return f"{self.base}/{self.name}"

    def __str__(self) -> str:
        return self.path

    @classmethod
    def parse(cls, path: str) -> RunId:
        """The run of a path `{base}/{defense}-{tuning}-s{seed}`; ValueError naming it otherwise."""
        base, _, name = str(path).rpartition("/")
        match = _NAME.fullmatch(name)
        if not base or "/" in base or match is None:
            raise ValueError(f"{path!r}: not a run path; expected {{base}}/{{defense}}-{{tuning}}-s{{seed}} "
                             f"(defense and tuning without '-')")
        return cls(base, match["defense"], match["tuning"], int(match["seed"]))


@dataclass(frozen=True)
class ResultFile:
    """What a per-checkpoint result file's path says: the run, the kind of measurement, the checkpoint."""

    path: Path
    run: RunId
    kind: str
    checkpoint: str
    part: str | None = None  # a per-item record's name ("strings", "messages", "scores"); None: the .tsv

    @classmethod
    def parse(cls, path: str | os.PathLike, part: bool = False) -> ResultFile:
        """Read run, kind and checkpoint from a path ending in `{base}/{run name}/{kind}/{checkpoint}.tsv`,
        or with `part`, in `{kind}/{checkpoint}.{part}.parquet` (a per-item record).

        ValueError naming the file for any other layout or an unknown kind.
        """
        path = Path(path)
        parts = path.parts
        ending = "{checkpoint}.{part}.parquet" if part else "{checkpoint}.tsv"
        expected = (f"{path}: not a run result file; expected .../{{base}}/{{defense}}-{{tuning}}-s{{seed}}/"
                    f"{{kind}}/{ending} (defense and tuning without '-', kind one of {RESULT_KINDS})")
        stem, dot, record = path.name.removesuffix(".parquet").partition(".")
        if len(parts) < 4 or (path.suffix != ".tsv" if not part else not (path.suffix == ".parquet" and dot)):
            raise ValueError(expected)
        try:
            run = RunId.parse(f"{parts[-4]}/{parts[-3]}")
        except ValueError as error:
            raise ValueError(expected) from error
        if parts[-2] not in RESULT_KINDS:
            raise ValueError(f"{path}: unknown result kind {parts[-2]!r} (expected one of {RESULT_KINDS})")
        return cls(path, run, parts[-2], stem, record) if part else cls(path, run, parts[-2], path.stem)


def read_checkpoints(manifest_path: str | os.PathLike) -> dict[str, dict]:
    """The checkpoints a finished run's manifest lists, by id, each with `dir`: its absolute directory."""
    manifest_path = Path(manifest_path)
    return {
        c["id"]: {**c, "dir": manifest_path.parent / c["path"]}
        for c in json.loads(manifest_path.read_text())["checkpoints"]
    }


def checkpoint_models(manifest_path: str | os.PathLike, outputs: Sequence[str | os.PathLike], base_model,
                      ) -> Iterator[tuple[Path, dict, object]]:
    """(output, checkpoint, model) for every output file, in the given order.

    Each output is named after its checkpoint (`{checkpoint}.tsv` or `{checkpoint}.<anything>`); the
    checkpoint is the manifest's entry (`read_checkpoints`: id, epoch, step, train_loss, dir) and the model
    is loaded onto `base_model`, which stays the unchanged pre-trained model (`tuning.load_checkpoint`).
    """
    from piimem.tuning import load_checkpoint

    checkpoints = read_checkpoints(manifest_path)
    for output in map(Path, outputs):
        checkpoint_id = output.name.split(".", 1)[0]
        if checkpoint_id not in checkpoints:
            raise ValueError(f"{output}: checkpoint {checkpoint_id!r} is not in {manifest_path} "
                             f"(it lists {sorted(checkpoints)})")
        checkpoint = checkpoints[checkpoint_id]
        yield output, checkpoint, load_checkpoint(base_model, checkpoint["dir"])


def stamp(table, checkpoint: dict):
    """`table` (polars) with the checkpoint's id and epoch as columns, as every per-checkpoint file holds."""
    import polars as pl

    return table.with_columns(checkpoint=pl.lit(checkpoint["id"]), epoch=pl.lit(float(checkpoint["epoch"])))
