"""Training texts of the defenses as the shipped configs set them up, and the non-members' trained-text view."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import yaml
from masking_data import DOCS, build_spans, build_texts
from snakemake.utils import validate

from piimem.defense import build_training_text, nonmember_texts, trained_view
from piimem.plan import defense_variants, variant_options

ROOT = Path(__file__).resolve().parents[1]


def shipped_config(name: str, overrides: dict | None = None) -> dict:
    """config/<name> merged over config/config.yaml, with the schema's defaults, as Snakemake builds it."""
    def merge(base: dict, extra: dict) -> dict:
        for key, value in extra.items():
            base[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
                else value
        return base

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    if name != "config.yaml":
        merge(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    merge(config, overrides or {})
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def occurrences(texts: pl.DataFrame, value: str) -> int:
    return sum(text.count(value) for text in texts["text"].to_list())


def test_paper_rmft_config_masks_email_addresses_only_and_the_all_type_variant_masks_the_rest():
    config = shipped_config("paper-rmft.yaml")
    assert list(defense_variants(config)) == ["none", "dedup", "rmft", "scrub"]
    paper = build_training_text("rmft", build_texts(DOCS), spans=build_spans(DOCS),
                                options=variant_options(config, "rmft")).texts
    # A name and a phone number repeated across messages survive; a repeated address is left once.
    for value, before in (("Alice Smith", 3), ("(713) 555-0142", 3)):
        assert occurrences(build_texts(DOCS), value) == before and occurrences(paper, value) == before
    assert sum(text.lower().count("alice.smith@example.com") for text in paper["text"]) == 1

    both = shipped_config("paper-rmft.yaml", {"rmft": {"scope": ["email", "all"]}})
    assert [n for n in defense_variants(both) if n.startswith("rmft")] == ["rmft_email", "rmft_all"]
    assert variant_options(both, "rmft_email") == variant_options(config, "rmft")
    everything = build_training_text("rmft", build_texts(DOCS), spans=build_spans(DOCS),
                                     options=variant_options(both, "rmft_all")).texts
    assert occurrences(everything, "Alice Smith") == 1 and occurrences(everything, "(713) 555-0142") == 1


def test_the_default_config_runs_the_papers_rmft_scope():
    config = shipped_config("config.yaml")
    assert variant_options(config, "rmft")["entity_types"] == ["EMAIL_ADDRESS"]


def _split(n_train: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    texts, spans = build_texts(DOCS), build_spans(DOCS)
    return texts.head(n_train), texts.tail(len(DOCS) - n_train), spans


def test_nonmembers_are_masked_as_if_they_followed_the_training_split():
    train, test, spans = _split(4)  # docs 4 and 5 are non-members
    options = {"keep": "first", "p": 1.0, "redraw_per_epoch": False, "entity_types": ["EMAIL_ADDRESS", "PERSON"],
               "seed": 42}
    out = nonmember_texts("rmft", train, test, spans=spans, options=options)
    assert out["doc_id"].to_list() == [4, 5]
    # alice.smith@example.com and Alice Smith occur in training: replaced in the non-members too; carol@widgets.net
    # and Carol Jones occur first in doc 4: kept there, as a first occurrence in training would be.
    doc4, doc5 = out["text"].to_list()
    assert "alice.smith@example.com" not in doc4.lower() and "alice.smith@example.com" not in doc5.lower()
    assert "carol@widgets.net" in doc4 and "Carol Jones" in doc4
    # The training rows of the same pass are the defense's own training text.
    alone = build_training_text("rmft", train, spans=spans, options=options).texts
    both = build_training_text("rmft", pl.concat([train, test]), spans=spans, options=options).texts
    assert both.filter(pl.col("doc_id") < 4)["text"].to_list() == alone["text"].to_list()

    scrubbed = nonmember_texts("scrub", train, test, spans=spans, options={"entity_types": ["PHONE_NUMBER"]})
    assert "<PHONE_NUMBER>" in scrubbed["text"][0] and "555 0199" not in scrubbed["text"][0]


def test_dedup_drops_a_nonmember_that_repeats_training_text():
    base = "the quarterly gas storage report shows volumes up in every region we trade " * 3
    train = pl.DataFrame({"doc_id": [0, 1], "text": [base, "an unrelated note about lunch plans today " * 3]})
    test = pl.DataFrame({"doc_id": [2, 3], "text": [base + " thanks", "a fresh message about the weather " * 3]})
    dedup = {"num_perm": 128, "threshold": 0.8, "shingle_words": 1, "lowercase": True, "seed": 42, "verify": True,
             "substring": {"enabled": True, "min_bytes": 100}}
    out = nonmember_texts("dedup", train, test, dedup_config=dedup)
    assert out["doc_id"].to_list() == [3]  # doc 2 is a near duplicate of member 0


def test_trained_view_pairs_each_sample_row_with_the_text_the_model_saw():
    members = pl.DataFrame({"doc_id": [0, 1, 4, 5], "text": ["a", "b", "c", "d"], "member": [True, True, False, False],
                            "length": [1, 1, 1, 1], "length_bin": [0, 0, 0, 0]})
    trained = pl.DataFrame({"epoch": [0, 0, 1], "doc_id": [1, 0, 0], "text": ["B", "A", "A2"]})
    nonmembers = pl.DataFrame({"doc_id": [5], "text": ["D"]})
    view = trained_view(members, trained, nonmembers)
    assert view.rows() == [(0, True, "A"), (1, True, "B"), (4, False, None), (5, False, "D")]
