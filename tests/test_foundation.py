"""Config checks, private-file modes, progress lines and PII normal forms."""

import logging
import stat

import polars as pl
import pytest

from piimem.config import ConfigError, check_config, corpus_name
from piimem.io import write_private_parquet, write_table
from piimem.pii import normalize
from piimem.progress import Progress, track


def _config(**corpus):
    base = {"source": "synthetic", "path": None, "name": None,
            "split": {"fractions": {"train": 0.6, "test": 0.2, "public": 0.2}}}
    base.update(corpus)
    return {"corpus": base}


def test_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match=r"corpus\.split\.fractions: must sum to 1.*sum 0\.9"):
        check_config(_config(split={"fractions": {"train": 0.5, "test": 0.2, "public": 0.2}}))


def test_train_fraction_must_be_positive():
    with pytest.raises(ConfigError, match=r"corpus\.split\.fractions\.train"):
        check_config(_config(split={"fractions": {"train": 0.0, "test": 0.5, "public": 0.5}}))


def test_maildir_source_needs_an_existing_path(tmp_path):
    with pytest.raises(ConfigError, match=r"corpus\.path: required"):
        check_config(_config(source="maildir"))
    with pytest.raises(ConfigError, match=r"corpus\.path: .*nowhere.* is not a directory"):
        check_config(_config(source="maildir", path=str(tmp_path / "nowhere")))
    check_config(_config(source="maildir", path=str(tmp_path)))
    assert corpus_name(_config(source="maildir", path=str(tmp_path))) == tmp_path.name
    assert corpus_name(_config(source="maildir", path=str(tmp_path), name="mine")) == "mine"
    assert corpus_name(_config()) == "synthetic"


def test_private_files_are_0600_in_0700_directory_even_when_overwritten(tmp_path):
    target = tmp_path / "results" / "private" / "pii" / "spans.parquet"
    target.parent.mkdir(parents=True)
    target.write_text("old")
    target.chmod(0o644)
    write_private_parquet(pl.DataFrame({"value": ["a@b.com"]}), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "results" / "private").stat().st_mode) == 0o700
    assert pl.read_parquet(target)["value"].to_list() == ["a@b.com"]


def test_write_table_by_suffix(tmp_path):
    df = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_table(df, tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text().splitlines() == ["a\tb", "1\tx", "2\ty"]
    with pytest.raises(ValueError, match=r"unknown table format '\.xlsx'"):
        write_table(df, tmp_path / "t.xlsx")


def test_progress_logs_counts_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="piimem")
    assert list(track(range(5), total=5, desc="parsing", unit="files", every_s=0.0)) == list(range(5))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("parsing: 1/5 (20.0 %) files,")
    assert "ETA" in lines[0] and "files/s" in lines[0]
    assert lines[-1].startswith("parsing: 5/5 (100.0 %) files") and lines[-1].endswith("(done)")


def test_progress_without_total_has_no_eta():
    progress = Progress(None, "hashing", unit="docs")
    progress.done = 7
    assert progress.line().startswith("hashing: 7 docs,") and "ETA" not in progress.line()


@pytest.mark.parametrize(
    ("entity_type", "a", "b"),
    [
        ("EMAIL_ADDRESS", "<Jane.Doe@Example.COM>", "jane.doe@example.com"),
        ("PHONE_NUMBER", "+1 (713) 853-1234", "713.853.1234"),
        ("US_SSN", "536-90-4399", "536 90 4399"),
        ("CREDIT_CARD", "4111 1111 1111 1111", "4111-1111-1111-1111"),
        ("PERSON", "Jane  DOE", "jane doe"),
        ("LOCATION", "Houston,", "houston"),
    ],
)
def test_normal_forms_agree(entity_type, a, b):
    assert normalize(entity_type, a) == normalize(entity_type, b)


def test_normal_forms_keep_distinct_values_apart():
    assert normalize("PHONE_NUMBER", "713 853 1234") != normalize("PHONE_NUMBER", "713 853 1235")
    assert normalize("EMAIL_ADDRESS", "a.b@x.com") != normalize("EMAIL_ADDRESS", "ab@x.com")
