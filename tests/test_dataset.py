"""Any text data set as a corpus (piimem.corpus.dataset): saved data sets and data files, loaded offline,
split by their own splits, duplicates of training records quarantined; the WikiText config's dry run."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
import yaml
from workflow_helpers import (
    GPT2_CONFIG,
    ROOT,
    hub_cache,
    planned_jobs,
    scenario,
    scenario_script,
    snakemake,
    write_config,
)

from piimem.corpus.dataset import (
    QUARANTINE_DUPLICATE,
    DatasetNotAvailableError,
    HfSource,
    assigned_splits,
    check_available,
    load_corpus,
    prompt_texts,
)
from piimem.corpus.maildir import MESSAGES_SCHEMA
from piimem.corpus.splits import SPLITS_SCHEMA

DEDUP = {"num_perm": 128, "threshold": 0.8, "shingle_words": 1, "lowercase": True, "seed": 42, "verify": True,
         "substring": {"enabled": False, "min_bytes": 100}}


# Sentences of made-up words from a large vocabulary, so that no two unrelated ones are near-duplicates: the
# dataset scenario's (.test/dataset/make_data.py, which also writes that scenario's data).
MAKE_DATA = scenario_script("dataset", "make_data")
_sentences = MAKE_DATA.sentences


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict saved to disk: 40 train, 12 validation, 15 test records, short and empty lines among
    them, and one test record that copies a training record."""
    import datasets

    train, validation, test = _sentences(40, 1), _sentences(12, 2), _sentences(14, 3)
    test = test + [train[5]]  # a copy of a member: must not become a non-member
    parts = {"train": train + ["", " = Heading = "], "validation": validation, "test": test}
    folder = tmp_path_factory.mktemp("dataset") / "saved"
    datasets.DatasetDict({name: datasets.Dataset.from_dict({"content": rows, "id": list(range(len(rows)))})
                          for name, rows in parts.items()}).save_to_disk(str(folder))
    return folder, parts


def test_a_saved_data_set_keeps_its_splits_and_quarantines_copies_of_members(saved):
    folder, parts = saved
    source = HfSource.from_config({"path": str(folder), "text_field": "content", "min_chars": 20})
    messages, quarantine = load_corpus(source, dedup=DEDUP)
    assert messages.schema == pl.Schema(MESSAGES_SCHEMA)
    splits = assigned_splits(messages, source)
    counts = dict(splits.group_by("split").len().iter_rows())
    assert counts == {"train": 40, "validation": 12, "test": 14}  # the heading and the empty line dropped
    assert quarantine.rows() == [("test/14", QUARANTINE_DUPLICATE, len(parts["train"][5].encode()))]
    train_ids = splits.filter(pl.col("split") == "train")["doc_id"]
    assert messages.filter(pl.col("doc_id").is_in(train_ids.to_list()))["text"].to_list() == parts["train"][:40]
    assert (messages["text_body_offset"] == 0).all() and messages["from"].null_count() == messages.height
    assert messages["doc_id"].to_list() == list(range(messages.height))


def test_records_with_the_same_text_share_a_group(tmp_path):
    folder = tmp_path / "jsonl"
    folder.mkdir()
    test = _sentences(4, 5)
    rows = {"train": _sentences(6, 4), "test": [test[0], test[1], test[0], test[2], test[3], test[0]]}
    for name, texts in rows.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in texts))
    source = HfSource.from_config({"path": str(folder), "splits": {"train": "train", "test": "test"}})
    messages, quarantine = load_corpus(source, dedup=DEDUP)
    assert quarantine.height == 0  # copies of a test record, not of a training one, are kept
    splits = assigned_splits(messages, source)
    assert splits.schema == pl.Schema(SPLITS_SCHEMA)
    text = dict(messages.select("doc_id", "text").rows())
    first = {}
    for doc_id in sorted(text):
        first.setdefault(text[doc_id], doc_id)
    assert splits["group"].to_list() == [first[text[d]] for d in splits["doc_id"].to_list()]
    assert splits["group"].n_unique() == 6 + 4 and splits.height == 12


def test_unmapped_splits_pool_every_record_and_errors_name_the_key(saved):
    folder, _ = saved
    pooled = HfSource.from_config({"path": str(folder), "text_field": "content", "splits": None})
    messages, quarantine = load_corpus(pooled, dedup=DEDUP)
    assert messages.height == 40 + 1 + 12 + 15 and quarantine.height == 0  # " = Heading = " is 13 characters
    assert assigned_splits(messages, pooled) is None
    with pytest.raises(ValueError, match=r"corpus.hf.text_field: 'text' is not a column of split 'train'.*"
                                         r"\['content', 'id'\]"):
        load_corpus(HfSource.from_config({"path": str(folder)}))
    with pytest.raises(ValueError, match=r"corpus.hf.splits.validation: 'dev' is not a split of"):
        load_corpus(HfSource.from_config({"path": str(folder), "text_field": "content",
                                          "splits": {"train": "train", "validation": "dev", "test": "test"}}))
    with pytest.raises(ValueError, match=r"corpus.hf.splits.holdout: not a piimem split"):
        HfSource.from_config({"path": str(folder), "splits": {"holdout": "test"}})


def test_json_lines_files_name_their_split_and_give_prompts(tmp_path):
    folder = tmp_path / "jsonl"
    folder.mkdir()
    for name, rows in (("train", _sentences(10, 4)), ("test", _sentences(6, 5))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
    source = HfSource.from_config({"path": str(folder), "splits": {"train": "train", "test": "test"}})
    messages, _ = load_corpus(source, dedup=DEDUP)
    assert dict(assigned_splits(messages, source).group_by("split").len().iter_rows()) == {"train": 10, "test": 6}
    assert prompt_texts(source, "test") == _sentences(6, 5)
    with pytest.raises(ValueError, match=r"corpus.hf.split: 'validation' is not a split .* \['test', 'train'\]"):
        prompt_texts(source, "validation")


def test_a_hub_id_not_in_the_cache_is_an_error_with_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    source = HfSource.from_config({"path": "Salesforce/wikitext", "name": "wikitext-2-raw-v1"})
    with pytest.raises(DatasetNotAvailableError) as caught:
        check_available(source)
    message = str(caught.value)
    assert message.startswith("corpus.hf.path: 'Salesforce/wikitext' is not in the local datasets cache")
    assert ("datasets.load_dataset('Salesforce/wikitext', 'wikitext-2-raw-v1').save_to_disk("
            "'resources/datasets/Salesforce--wikitext--wikitext-2-raw-v1')") in message
    with pytest.raises(DatasetNotAvailableError, match="'./no/such.jsonl' does not exist"):
        check_available(HfSource.from_config({"path": "./no/such.jsonl"}))


def test_dry_run_of_the_wikitext_config_plans_the_methods_study_or_names_the_fix(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache(tmp_path / "hub", "gpt2",
                                                     {"config.json": json.dumps(GPT2_CONFIG).encode()})))
    config = yaml.safe_load((ROOT / "config" / "paper-finetuning.yaml").read_text())
    wikitext = yaml.safe_load((ROOT / "config" / "paper-finetuning-wikitext.yaml").read_text())
    for key, value in wikitext.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    write_config(tmp_path, config)
    planned = snakemake(tmp_path, "-n")  # planning goes on, warning with the fix; a real run refuses
    assert "corpus.hf.path: 'Salesforce/wikitext' is not in the local datasets cache" in planned.stdout + planned.stderr
    assert "load_dataset_corpus" in planned.stdout
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0 and "save_to_disk(" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    folder, _ = saved  # a local copy, as the config's comment says to make one
    config["corpus"]["hf"].update(path=str(folder), text_field="content", name=None)
    write_config(tmp_path, config)
    jobs = planned_jobs(tmp_path)
    assert jobs["load_dataset_corpus"] == 1 and "parse_corpus" not in jobs and "synthetic_corpus" not in jobs
    assert jobs["finetune"] == 6 and jobs["membership_inference"] == 6 and "extract_pii" not in jobs


def test_the_dataset_scenario_plans_from_a_shell_in_a_bare_working_directory(tmp_path):
    # As its config's comment says: the data in the working directory, the embedded default given first.
    MAKE_DATA.make_data(tmp_path)
    jobs = planned_jobs(tmp_path, "--configfile", *(str(ROOT / path) for path in
                                                    ("config/config.yaml", ".test/dataset/config.yaml")))
    assert jobs["load_dataset_corpus"] == 1 and jobs["finetune"] == 4 and jobs["extraction_prompts"] == 3
    assert "parse_corpus" not in jobs and "canary_exposure" not in jobs
    assert not (tmp_path / "config").exists()


@pytest.mark.slow
def test_a_data_set_runs_through_the_whole_workflow(tmp_path):
    # .test/dataset: its data written into the working directory from a shell, as its config's comment says,
    # and its config (paths relative to the working directory) over the embedded default.
    made = subprocess.run([sys.executable, str(ROOT / ".test/dataset/make_data.py"), str(tmp_path)],
                          check=False, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    write_config(tmp_path, scenario("dataset"))
    snakemake(tmp_path)
    results = tmp_path / "results"
    messages = pl.read_parquet(results / "private/corpus/messages.parquet")
    splits = pl.read_parquet(results / "corpus/splits.parquet").join(messages.select("doc_id", "folder"), on="doc_id")
    assert (splits["split"] == splits["folder"]).all()  # the data set's own splits
    assert dict(splits.group_by("split").len().iter_rows()) == {"train": 60, "validation": 16, "test": 20,
                                                                 "public": 40}
    quarantine = pl.read_csv(results / "corpus/quarantine.tsv", separator="\t")
    assert quarantine["reason"].to_list() == [QUARANTINE_DUPLICATE]
    assert "linking quoted and forwarded mail skipped: not mail" in (tmp_path / "logs/corpus/split.log").read_text()
    members = pl.read_parquet(results / "private/mia/tiny-gpt2/members.parquet").join(splits, on="doc_id")
    assert members.group_by("member").agg(pl.col("split").unique()).sort("member").rows() == [
        (False, ["test"]), (True, ["train"])]
    assert members["member"].sum() == (~members["member"]).sum() == 10  # mia.n
    wiki = pl.read_parquet(results / "private/extraction/tiny-gpt2/prompts/wiki.parquet")
    assert 0 < wiki.height <= 12
    metrics = pl.read_parquet(results / "metrics.parquet")
    assert set(metrics["corpus"]) == {"saved"} and set(metrics["defense"]) == {"none", "rmft"}
    assert set(metrics.filter(pl.col("metric") == "ter")["prompt_set"]) == {"train-prefix", "test", "wiki"}
    assert (results / "tables/claims.md").is_file()
