"""Any text data set as a corpus (`corpus.source: hf`): loaded with Hugging Face `datasets`, offline.

`corpus.hf.path` names the data set: a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
(`load_from_disk`), a data file or a directory of them (json / jsonl, csv, parquet, txt; `load_dataset` with
the format's builder), or a hub id such as `Salesforce/wikitext` that is already in the local `datasets`
cache. Nothing is downloaded: `datasets` is set offline for the load, and a data set that is not on this
machine is an error that names the key and gives the command that fetches it on a machine with network.

Each row's `text_field` is one record (one "message" of the pipeline): its text is stripped, and records
shorter than `min_chars` are dropped (WikiText's empty lines and `= Heading =` lines). `splits` maps
piimem's splits to the data set's (train -> members and fine-tuning text, validation -> model selection,
test -> non-members, perplexity and prompts, public -> the tiny GPT-2's pre-training); a split mapped to
null stays empty. Without a mapping (`splits: null`) every record of every split is pooled and
`corpus.split.fractions` assigns them, as for mail.

Near-duplicates across splits: with a mapping the data set's splits are kept, so a validation, test or public
record that is an exact or near duplicate (MinHash, the dedup stage's settings) of a training record would
be a member under another name; it is quarantined and counted instead (reason "near-duplicate of a
training record"), as an unreadable mail file is.

The records become rows of the messages table (`piimem.corpus.maildir.MESSAGES_SCHEMA`): body = text, no
header fields, `mailbox` the data set's name, `folder` the data set's split, `path` "<split>/<row index>".
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from piimem.corpus.splits import SPLITS, SPLITS_SCHEMA
from piimem.schema import default

log = logging.getLogger("piimem")

# Data-file formats by suffix -> the `datasets` builder that reads them.
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text",
                 ".arrow": "arrow"}
QUARANTINE_DUPLICATE = "near-duplicate of a training record"


class DatasetNotAvailableError(ValueError):
    """The data set is not on this machine (offline); the message names the key and the fix."""


@dataclass(frozen=True)
class HfSource:
    """The `corpus.hf` section (or a prompt set's data set): where the data set is and which rows count."""

    path: str
    name: str | None = None  # the data set's configuration, e.g. "wikitext-2-raw-v1"
    text_field: str = default("corpus.hf.text_field")
    splits: Mapping[str, str | None] | None = field(default_factory=lambda: default("corpus.hf.splits"))
    min_chars: int = default("corpus.hf.min_chars")
    key: str = "corpus.hf"  # the config key errors name

    @classmethod
    def from_config(cls, section: Mapping, key: str = "corpus.hf") -> HfSource:
        known = {"path", "name", "text_field", "splits", "min_chars"}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"{key}.{unknown[0]}: unknown key (expected one of {sorted(known)})")
        if not section.get("path"):
            raise ValueError(f"{key}.path: required (a saved data set directory, a data file or a hub id)")
        values = {k: section[k] for k in known if k in section}
        splits = values.get("splits")
        if splits is not None:
            extra = sorted(set(splits) - set(SPLITS))
            if extra:
                raise ValueError(f"{key}.splits.{extra[0]}: not a piimem split (expected {list(SPLITS)})")
            values["splits"] = {name: splits.get(name) for name in SPLITS}
        return cls(**values, key=key)

    def fetch_hint(self) -> str:
        """How to make the data set available offline, run once on a machine with network."""
        name = f", {self.name!r}" if self.name else ""
        target = f"resources/datasets/{self.path.replace('/', '--')}" + (f"--{self.name}" if self.name else "")
        return (f"on a machine with network run: python -c \"import datasets; datasets.load_dataset("
                f"{self.path!r}{name}).save_to_disk({target!r})\", copy {target} here and set {self.key}.path "
                f"to it (or fill this machine's datasets cache, HF_DATASETS_CACHE, with the same load_dataset call)")


def is_saved_dataset(path: Path) -> bool:
    """A directory written by save_to_disk (a Dataset's state.json, or a DatasetDict's dataset_dict.json)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def _data_files(path: Path) -> tuple[str, dict | str]:
    """(builder, data_files) of a data file or a directory of data files of one format."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in FILE_BUILDERS)
    builders = {FILE_BUILDERS.get(p.suffix) for p in files}
    if not files or None in builders or len(builders) != 1:
        raise ValueError(f"corpus data files at {path}: expected files of one format among "
                         f"{sorted(FILE_BUILDERS)}, found {sorted({p.suffix for p in files}) or 'none'}")
    # A file's stem names its split when it is one of the usual ones (train.jsonl, test.jsonl); else "train".
    by_split: dict[str, list[str]] = {}
    for p in files:
        split = p.stem if p.stem in SPLITS else "train"
        by_split.setdefault(split, []).append(str(p))
    return builders.pop(), by_split


def _offline_datasets():
    """The `datasets` module set never to download, whatever the caller's environment says."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"  # read when datasets is first imported
    import datasets

    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True  # when it was imported before
    return datasets


def load_splits(source: HfSource) -> dict[str, object]:
    """{data set split name: datasets.Dataset}, offline; DatasetNotAvailableError when it is not here."""
    datasets = _offline_datasets()
    path = Path(source.path)
    try:
        if is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
        elif path.exists():
            builder, files = _data_files(path)
            loaded = datasets.load_dataset(builder, data_files=files)
        else:
            loaded = datasets.load_dataset(source.path, source.name)
    except (FileNotFoundError, ConnectionError, OSError, datasets.exceptions.DatasetNotFoundError) as error:
        where = "no such file or directory, and " if not path.exists() else ""
        raise DatasetNotAvailableError(
            f"{source.key}.path: {source.path!r}" + (f" ({source.key}.name {source.name!r})" if source.name else "")
            + f" is not available offline ({where}not in the local datasets cache: {type(error).__name__}); "
            + source.fetch_hint()) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = {"train": loaded}
    return dict(loaded)


def check_available(source: HfSource) -> None:
    """DatasetNotAvailableError unless `load_splits` can load the data set offline: a local path must
    exist; a hub id must be in the datasets cache (its builder loads there without a download)."""
    path = Path(source.path)
    if path.exists():
        return
    if source.path.startswith((".", "/")) or path.suffix in FILE_BUILDERS:
        raise DatasetNotAvailableError(f"{source.key}.path: {source.path!r} does not exist; expected a saved data "
                                       f"set directory, a data file of {sorted(FILE_BUILDERS)} or a hub id")
    datasets = _offline_datasets()
    try:
        datasets.load_dataset_builder(source.path, source.name)
    except Exception as error:  # noqa: BLE001 - every failure here means "not loadable offline"
        raise DatasetNotAvailableError(
            f"{source.key}.path: {source.path!r} is not in the local datasets cache and this workflow runs "
            f"offline ({type(error).__name__}); {source.fetch_hint()}") from None


def records(source: HfSource) -> pl.DataFrame:
    """(split, index, text): every row of every split of the data set with at least min_chars characters
    after stripping, in split then row order. ValueError naming text_field when a split lacks it."""
    frames = []
    for split, table in load_splits(source).items():
        if source.text_field not in table.column_names:
            raise ValueError(f"{source.key}.text_field: {source.text_field!r} is not a column of split {split!r} "
                             f"of {source.path!r} (its columns: {table.column_names})")
        texts = [str(t).strip() if t is not None else "" for t in table[source.text_field]]
        frame = pl.DataFrame({"split": split, "index": range(len(texts)), "text": texts},
                             schema={"split": pl.Utf8, "index": pl.Int64, "text": pl.Utf8})
        frames.append(frame.filter(pl.col("text").str.len_chars() >= source.min_chars))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"split": pl.Utf8, "index": pl.Int64,
                                                                 "text": pl.Utf8})


def _piimem_split(source: HfSource) -> dict[str, str]:
    """{data set split: piimem split} of the mapping (empty without one)."""
    return {theirs: ours for ours, theirs in (source.splits or {}).items() if theirs is not None}


def messages_table(source: HfSource, rows: pl.DataFrame) -> pl.DataFrame:
    """The records as the pipeline's messages table (MESSAGES_SCHEMA), doc_id in split-mapping order: train
    first, so that every cluster of duplicates that holds a training record keeps it."""
    from piimem.corpus.maildir import MESSAGES_SCHEMA

    mapped = _piimem_split(source)
    order = {theirs: SPLITS.index(ours) for theirs, ours in mapped.items()}
    rows = rows.with_columns(pl.col("split").replace_strict(order, default=len(SPLITS)).alias("rank")) \
        .sort("rank", "split", "index").drop("rank")
    texts = rows["text"].to_list()
    table = pl.DataFrame({
        "doc_id": range(rows.height),
        "mailbox": source.path.rstrip("/").rsplit("/", 1)[-1] + (f"/{source.name}" if source.name else ""),
        "folder": rows["split"],
        "path": [f"{s}/{i}" for s, i in zip(rows["split"].to_list(), rows["index"].to_list())],
        "body": texts,
        "text": texts,
        "text_body_offset": 0,
        "size": [len(t.encode()) for t in texts],
        "body_hash": [hashlib.sha256(t.encode()).hexdigest() for t in texts],
    })
    return table.with_columns([pl.lit(None, dtype=dtype).alias(column) for column, dtype in MESSAGES_SCHEMA.items()
                               if column not in table.columns]).select(list(MESSAGES_SCHEMA)).cast(MESSAGES_SCHEMA)


def load_corpus(source: HfSource, dedup: Mapping | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(messages, quarantine) of the data set: the records of its mapped splits (all splits without a
    mapping) as messages, and with a mapping the non-training records that duplicate a training record
    (exactly or nearly, `dedup` being the dedup section) quarantined."""
    from piimem.corpus.maildir import QUARANTINE_SCHEMA

    rows = records(source)
    available = set(rows["split"].unique().to_list())
    mapped = _piimem_split(source)
    missing = sorted(set(mapped) - available)
    if missing:
        raise ValueError(f"{source.key}.splits.{mapped[missing[0]]}: {missing[0]!r} is not a split of "
                         f"{source.path!r} with records (it has {sorted(available)})")
    if mapped:
        rows = rows.filter(pl.col("split").is_in(list(mapped)))
    messages = messages_table(source, rows)
    quarantine = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    if mapped and dedup is not None:
        duplicated = duplicates_of_training(messages, mapped, dedup)
        quarantine = messages.filter(pl.col("doc_id").is_in(duplicated)).select(
            "path", pl.lit(QUARANTINE_DUPLICATE).alias("reason"), "size").cast(QUARANTINE_SCHEMA)
        messages = messages.filter(~pl.col("doc_id").is_in(duplicated)).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("doc_id"))
    log.info("data set %s: %d records in %s, %d quarantined as duplicates of training records", source.path,
             messages.height, dict(messages.group_by("folder").len().iter_rows()), quarantine.height)
    return messages, quarantine


def duplicates_of_training(messages: pl.DataFrame, mapped: Mapping[str, str], dedup: Mapping) -> list[int]:
    """doc_ids of the records outside the training split whose duplicate cluster (the dedup stage's MinHash
    clusters) holds a training record."""
    from piimem.dedup import DedupConfig, find_duplicate_clusters

    clusters, _ = find_duplicate_clusters(messages["doc_id"].to_list(), messages["text"].to_list(),
                                          DedupConfig.from_config(dedup))
    ours = messages.select("doc_id", pl.col("folder").replace_strict(dict(mapped), default=None).alias("split"))
    clusters = clusters.join(ours, on="doc_id")
    trained = clusters.filter(pl.col("split") == "train")["cluster_id"].unique()
    return clusters.filter((pl.col("split") != "train") & pl.col("cluster_id").is_in(trained.to_list()))[
        "doc_id"].to_list()


def assigned_splits(messages: pl.DataFrame, source: HfSource) -> pl.DataFrame | None:
    """The splits table (doc_id, split, group) by the mapping of data set splits to piimem's; None without a
    mapping. A record's group is the lowest doc_id among the records with its text (its body_hash): records
    quote nothing, so copies are their only link."""
    mapped = _piimem_split(source)
    if not mapped:
        return None
    return messages.select(
        "doc_id", pl.col("folder").replace_strict(dict(mapped)).alias("split"),
        pl.col("doc_id").min().over("body_hash").alias("group"),
    ).cast(SPLITS_SCHEMA).sort("doc_id")


def prompt_set_texts(spec: Mapping, key: str) -> list[str]:
    """The texts of an extraction prompt set given as a data set: `spec` holds corpus.hf's keys and `split`
    (the test split when not given); `key` names the prompt set in errors."""
    source = HfSource.from_config({k: v for k, v in spec.items() if k != "split"}, key=key)
    return prompt_texts(source, spec.get("split", "test"))


def prompt_texts(source: HfSource, split: str) -> list[str]:
    """The records of one split of a data set, for an extraction prompt set."""
    rows = records(source)
    available = sorted(set(rows["split"].to_list()))
    if split not in available:
        raise ValueError(f"{source.key}.split: {split!r} is not a split of {source.path!r} with records "
                         f"(it has {available})")
    return rows.filter(pl.col("split") == split)["text"].to_list()
