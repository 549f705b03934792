"""RMFT and scrubbing on a small hand-written corpus of fake PII (example.com, 555 numbers, test cards).

Spans are built here by exact string search, so these tests do not depend on the Presidio detector.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from masking_data import DOCS, PII, build_spans, build_texts
from piimem.masking import RmftConfig, apply_rmft, apply_scrub, count_pii_like, targeted_spans
from piimem.pii import ENTITY_TYPES, normalize
from piimem.surrogates import (
    EMAIL_PATTERN,
    PII_LIKE_PATTERNS,
    luhn_valid,
    make_surrogate,
    split_email,
    ssn_valid,
)

TEXTS = build_texts(DOCS)
SPANS = build_spans(DOCS)


def digest(cfg: RmftConfig = RmftConfig(), epoch: int = 0) -> str:
    out, mapping = apply_rmft(TEXTS, SPANS, cfg, epoch)
    h = hashlib.sha256()
    for text in out["text"]:
        h.update(text.encode() + b"\0")
    for row in mapping.iter_rows():
        h.update(repr(row).encode())
    return h.hexdigest()


def output_spans(texts: pl.DataFrame, spans: pl.DataFrame, out: pl.DataFrame, mapping: pl.DataFrame):
    """(doc_id, new_start, new_end, entity_type) of every span in the output: replaced ones from the
    mapping, untouched ones shifted by the length changes before them."""
    edits = {}
    for doc_id, start, end, _, _, surrogate, new_start, new_end in mapping.iter_rows():
        edits[(doc_id, start)] = (end, surrogate, new_start, new_end)
    result = []
    for doc_id, start, end, entity_type, value in spans.select(
        "doc_id", "start", "end", "entity_type", "value"
    ).iter_rows():
        if (doc_id, start) in edits:
            _, _, new_start, new_end = edits[(doc_id, start)]
        else:
            shift = sum(
                len(sur) - (e - s) for (d, s), (e, sur, _, _) in edits.items() if d == doc_id and s < start
            )
            new_start, new_end = start + shift, end + shift
            assert out_text(out, doc_id)[new_start:new_end] == value
        result.append((doc_id, new_start, new_end, entity_type))
    return result


def out_text(out: pl.DataFrame, doc_id: int) -> str:
    return out.filter(pl.col("doc_id") == doc_id)["text"].item()


def groups_of(spans: pl.DataFrame) -> dict[tuple[str, str], list[tuple[int, int]]]:
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    rows = spans.select("doc_id", "start", "entity_type", "normalized").iter_rows()
    for doc_id, start, entity_type, key in rows:
        groups.setdefault((entity_type, key), []).append((doc_id, start))
    return groups


def replaced_positions(mapping: pl.DataFrame) -> set[tuple[int, int]]:
    return set(zip(mapping["doc_id"].to_list(), mapping["start"].to_list()))


# --- RMFT, paper defaults ---------------------------------------------------------------------------


def test_corpus_fixture_has_repeats_of_every_type():
    counts = Counter(SPANS["entity_type"].to_list())
    assert set(counts) == set(ENTITY_TYPES)
    sizes = Counter(len(v) for v in groups_of(SPANS).values())
    assert sizes[1] == 2 and sum(sizes.values()) == len(PII)  # two singletons (never replaced), all found
    # "Alice.Smith@Example.com" and "alice.smith@example.com" are one PII string
    assert len(groups_of(SPANS)[("EMAIL_ADDRESS", "alice.smith@example.com")]) == 4


def test_defaults_leave_each_pii_string_exactly_once():
    out, mapping = apply_rmft(TEXTS, SPANS)
    groups = groups_of(SPANS)
    assert mapping.height == sum(len(v) - 1 for v in groups.values())

    # Occurrences re-derived from the output: count each original normal form over all output spans.
    found = Counter()
    for doc_id, new_start, new_end, entity_type in output_spans(TEXTS, SPANS, out, mapping):
        found[(entity_type, normalize(entity_type, out_text(out, doc_id)[new_start:new_end]))] += 1
    for key in groups:
        assert found[key] == 1, key

    # The kept occurrence is the first one, verbatim.
    replaced = replaced_positions(mapping)
    for members in groups.values():
        assert members[0] not in replaced and all(m in replaced for m in members[1:])

    # Raw counts in the output text, unambiguous for e-mails, SSNs and cards.
    whole = "\n".join(out["text"]).lower()
    for entity_type, literal, _ in PII:
        if entity_type in ("EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD"):
            assert whole.count(literal.lower()) == 1, literal
    before = "\n".join(TEXTS["text"]).lower()
    assert before.count("alice.smith@example.com") == 4 and before.count("4111 1111 1111 1111") == 3


def test_mapping_offsets_point_at_original_and_surrogate():
    out, mapping = apply_rmft(TEXTS, SPANS)
    assert mapping.columns == [
        "doc_id", "start", "end", "entity_type", "original", "surrogate", "new_start", "new_end"
    ]
    assert mapping.sort("doc_id", "start").equals(mapping)
    for doc_id, start, end, entity_type, original, surrogate, new_start, new_end in mapping.iter_rows():
        assert TEXTS["text"][doc_id][start:end] == original
        assert out_text(out, doc_id)[new_start:new_end] == surrogate
        assert normalize(entity_type, surrogate) != normalize(entity_type, original)
    # untouched document passes through
    assert out_text(out, 3) == DOCS[3]
    assert out["doc_id"].to_list() == TEXTS["doc_id"].to_list()


def test_number_of_pii_like_strings_per_type_is_unchanged():
    out, mapping = apply_rmft(TEXTS, SPANS)
    assert mapping.height > 0
    for before, after in zip(TEXTS["text"], out["text"], strict=True):
        assert count_pii_like(before) == count_pii_like(after)
    total = Counter()
    for text in TEXTS["text"]:
        total.update(count_pii_like(text))
    assert total == {"EMAIL_ADDRESS": 7, "US_SSN": 2, "CREDIT_CARD": 5, "PHONE_NUMBER": 5}


def _assert_valid_surrogate(entity_type: str, original: str, surrogate: str) -> None:
    assert normalize(entity_type, surrogate) != normalize(entity_type, original)
    non_digits = lambda s: re.sub(r"\d", "#", s)  # noqa: E731
    if entity_type == "EMAIL_ADDRESS":
        assert EMAIL_PATTERN.fullmatch(surrogate), surrogate
        assert surrogate == surrogate.lower()
        old, new = split_email(original), split_email(surrogate)
        same = [a == b for a, b in zip(old, new, strict=True)]
        assert sum(same) == 1, (original, surrogate)  # the anchor: exactly one part kept
        assert new[1].count(".") == old[1].count(".")
        if not same[0] and "." in old[0]:
            old_pieces, new_pieces = old[0].split("."), new[0].split(".")
            assert len(old_pieces) == len(new_pieces)
            assert all(a != b for a, b in zip(old_pieces, new_pieces, strict=True))
        if not same[0] and "." not in old[0]:
            assert "." not in new[0]
    elif entity_type == "PHONE_NUMBER":
        assert non_digits(surrogate) == non_digits(original)
        digits = re.sub(r"\D", "", surrogate)
        national = digits[1:] if len(digits) == 11 else digits
        assert len(digits) == len(re.sub(r"\D", "", original))
        if len(digits) == 11:
            assert digits[0] == "1"
        assert national[0] in "23456789" and national[3] in "23456789"
        assert PII_LIKE_PATTERNS["PHONE_NUMBER"].fullmatch(surrogate)
    elif entity_type == "US_SSN":
        assert non_digits(surrogate) == non_digits(original)
        assert ssn_valid(surrogate)
    elif entity_type == "CREDIT_CARD":
        assert non_digits(surrogate) == non_digits(original)
        assert luhn_valid(surrogate)
        assert surrogate[0] == original[0]
    elif entity_type == "PERSON":
        assert len(surrogate.split()) == len(original.split())
        assert re.fullmatch(r"[A-Za-z ,.'-]+", surrogate)
    elif entity_type == "LOCATION":
        assert ("," in surrogate) == ("," in original)
        if "," in original:
            assert re.fullmatch(r"[A-Za-z .'-]+, [A-Z]{2}", surrogate)


def test_surrogates_in_mapping_are_valid_values_of_their_type():
    _, mapping = apply_rmft(TEXTS, SPANS)
    assert set(mapping["entity_type"]) == set(ENTITY_TYPES)
    for _, _, _, entity_type, original, surrogate, _, _ in mapping.iter_rows():
        _assert_valid_surrogate(entity_type, original, surrogate)


@pytest.mark.parametrize(
    ("entity_type", "original"),
    [
        ("EMAIL_ADDRESS", "alice.smith@example.com"),
        ("EMAIL_ADDRESS", "j.q.public@mail.example.co.uk"),
        ("EMAIL_ADDRESS", "Bob@Corp.Example.org"),
        ("PHONE_NUMBER", "(713) 555-0142"),
        ("PHONE_NUMBER", "1-800-555-0199"),
        ("PHONE_NUMBER", "+1 713.555.0199"),
        ("PHONE_NUMBER", "7135550142"),
        ("US_SSN", "219-09-9999"),
        ("US_SSN", "219 09 9999"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("CREDIT_CARD", "378282246310005"),
        ("CREDIT_CARD", "5555-5555-5555-4444"),
        ("PERSON", "Alice"),
        ("PERSON", "Alice Smith"),
        ("PERSON", "Alice B. Smith"),
        ("LOCATION", "Portland"),
        ("LOCATION", "Houston, TX"),
    ],
)
def test_make_surrogate_many_draws_are_valid(entity_type, original):
    rng = random.Random(7)
    draws = [make_surrogate(entity_type, original, rng) for _ in range(150)]
    for surrogate in draws:
        _assert_valid_surrogate(entity_type, original, surrogate)
    assert len(set(draws)) > 100  # fresh values, not one fake reused
    if entity_type == "EMAIL_ADDRESS":
        # each of the three anchors gets chosen
        kept = Counter(
            tuple(a == b for a, b in zip(split_email(original), split_email(s), strict=True)) for s in draws
        )
        assert set(kept) == {(True, False, False), (False, True, False), (False, False, True)}


def test_person_surrogate_keeps_order_initials_and_case():
    rng = random.Random(3)
    comma = make_surrogate("PERSON", "Smith, Alice", rng)
    assert re.fullmatch(r"[A-Z][a-z'-]+, [A-Z][a-z'-]+", comma), comma
    initial = make_surrogate("PERSON", "Alice B. Smith", rng).split()
    assert re.fullmatch(r"[A-Z]\.", initial[1])
    upper = make_surrogate("PERSON", "ALICE SMITH", rng)
    assert upper == upper.upper() and len(upper.split()) == 2
    lower = make_surrogate("PERSON", "alice", rng)
    assert lower == lower.lower() and lower != "alice"


def test_make_surrogate_is_seeded_and_avoids_other_real_values():
    a = [make_surrogate("EMAIL_ADDRESS", "alice.smith@example.com", random.Random(5)) for _ in range(2)]
    assert a[0] == a[1]
    avoided = make_surrogate("EMAIL_ADDRESS", "alice.smith@example.com", random.Random(5), avoid={a[0]})
    assert avoided != a[0]
    with pytest.raises(ValueError, match="unknown entity type 'IBAN'"):
        make_surrogate("IBAN", "x", random.Random(0))


def test_make_surrogate_falls_back_when_avoid_set_is_exhausted():
    from faker.providers.person.en_US import Provider

    first_names = {normalize("PERSON", n) for n in Provider.first_names}
    surrogate = make_surrogate("PERSON", "Alice", random.Random(1), avoid=first_names)
    assert normalize("PERSON", surrogate) != "alice" and normalize("PERSON", surrogate) in first_names


# --- RMFT options -----------------------------------------------------------------------------------


def test_keep_last_keeps_the_last_occurrence():
    out, mapping = apply_rmft(TEXTS, SPANS, RmftConfig(keep="last"))
    replaced = replaced_positions(mapping)
    for members in groups_of(SPANS).values():
        assert members[-1] not in replaced and all(m in replaced for m in members[:-1])
    assert "alice.smith@example.com" in out_text(out, 5) and "alice.smith@example.com" not in out_text(out, 0)


def test_keep_random_is_seeded_and_keeps_one_per_group():
    groups = groups_of(SPANS)
    kept_by_seed = {}
    for seed in range(6):
        cfg = RmftConfig(keep="random", seed=seed)
        assert digest(cfg) == digest(cfg)
        replaced = replaced_positions(apply_rmft(TEXTS, SPANS, cfg)[1])
        kept = []
        for members in groups.values():
            left = [m for m in members if m not in replaced]
            assert len(left) == 1
            kept.append(members.index(left[0]))
        kept_by_seed[seed] = tuple(kept)
    assert len(set(kept_by_seed.values())) > 1
    assert any(k != 0 for ks in kept_by_seed.values() for k in ks)  # not always the first


def test_p_zero_changes_nothing():
    out, mapping = apply_rmft(TEXTS, SPANS, RmftConfig(p=0.0))
    assert mapping.height == 0 and out.equals(TEXTS)


def test_p_half_replaces_about_half_deterministically():
    docs = [f"Note {i}: write to alice.smith@example.com today." for i in range(201)]
    texts, spans = build_texts(docs), build_spans(docs)
    cfg = RmftConfig(p=0.5)
    out, mapping = apply_rmft(texts, spans, cfg)
    assert 70 <= mapping.height <= 130  # 200 candidates
    assert (0, 15) not in replaced_positions(mapping)  # the first is always kept
    out2, mapping2 = apply_rmft(texts, spans, cfg)
    assert mapping.equals(mapping2) and out.equals(out2)
    other = apply_rmft(texts, spans, RmftConfig(p=0.5, seed=43))[1]
    assert replaced_positions(other) != replaced_positions(mapping)
    assert sum(t.count("alice.smith@example.com") for t in out["text"]) == 201 - mapping.height


def test_redraw_per_epoch_gives_fresh_surrogates_at_the_same_places():
    cfg = RmftConfig(redraw_per_epoch=True)
    out0, map0 = apply_rmft(TEXTS, SPANS, cfg, epoch=0)
    out1, map1 = apply_rmft(TEXTS, SPANS, cfg, epoch=1)
    again0 = apply_rmft(TEXTS, SPANS, cfg, epoch=0)
    assert again0[0].equals(out0) and again0[1].equals(map0)
    assert replaced_positions(map0) == replaced_positions(map1)
    differ = sum(a != b for a, b in zip(map0["surrogate"], map1["surrogate"], strict=True))
    assert differ >= map0.height - 1
    assert not out0.equals(out1)


def test_static_masking_ignores_epoch():
    assert digest(RmftConfig(), epoch=0) == digest(RmftConfig(), epoch=5)


def test_entity_type_filter_is_honoured():
    out, mapping = apply_rmft(TEXTS, SPANS, RmftConfig(entity_types=["EMAIL_ADDRESS", "US_SSN"]))
    assert set(mapping["entity_type"]) == {"EMAIL_ADDRESS", "US_SSN"}
    whole = "\n".join(out["text"])
    assert whole.count("(713) 555-0142") == 3 and whole.count("Alice Smith") == 3
    assert whole.lower().count("alice.smith@example.com") == 1 and whole.count("219-09-9999") == 1


def test_a_group_is_masked_the_same_whatever_else_is_in_the_corpus():
    extra = ["Unrelated: dave@example.net and Dave Brown, (212) 555-0100."] * 2
    docs = DOCS + extra
    _, alone = apply_rmft(TEXTS, SPANS)
    _, more = apply_rmft(build_texts(docs), build_spans(docs))
    assert more.filter(pl.col("doc_id") < len(DOCS)).equals(alone)


def test_output_does_not_depend_on_pythonhashseed():
    here = digest()
    script = "import test_masking as t; print(t.digest())"
    tests_dir = str(Path(__file__).parent)
    for hashseed in ("0", "4242"):
        path = tests_dir + os.pathsep + os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": path}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == here


def test_config_and_span_errors_are_clear():
    with pytest.raises(ValueError, match=r"rmft.keep: expected one of"):
        RmftConfig(keep="middle")
    with pytest.raises(ValueError, match=r"rmft.p: expected a number in \[0, 1\], got 1.5"):
        RmftConfig(p=1.5)
    with pytest.raises(ValueError, match=r"rmft.entity_types: unknown entity types \['IBAN'\]"):
        RmftConfig(entity_types=("IBAN",))
    shifted = SPANS.with_columns(
        pl.when(pl.col("doc_id") == 2).then(pl.col("start") + 1).otherwise(pl.col("start")).alias("start")
    )
    with pytest.raises(ValueError, match=r"spans: doc_id 2 span \[\d+, \d+\): `value` differs"):
        apply_rmft(TEXTS, shifted)
    overlapping = pl.concat([SPANS, SPANS.head(1).with_columns(pl.lit("PERSON").alias("entity_type"))])
    with pytest.raises(ValueError, match="overlaps the previous span"):
        apply_rmft(TEXTS, overlapping)
    with pytest.raises(ValueError, match=r"texts: missing columns \['text'\]"):
        apply_rmft(TEXTS.rename({"text": "body"}), SPANS)


def test_spans_of_documents_outside_the_split_are_ignored():
    train = TEXTS.filter(pl.col("doc_id") < 3)
    out, mapping = apply_rmft(train, SPANS)
    assert out["doc_id"].to_list() == [0, 1, 2]
    assert set(mapping["doc_id"]) <= {0, 1, 2}
    by_doc = dict(zip(train["doc_id"], train["text"], strict=True))
    assert targeted_spans(by_doc, SPANS, ENTITY_TYPES)["doc_id"].max() == 2


# --- scrub ------------------------------------------------------------------------------------------


def test_scrub_replaces_spans_with_type_tags_and_nothing_else():
    out = apply_scrub(TEXTS, SPANS, ENTITY_TYPES)
    for doc_id, text in zip(TEXTS["doc_id"], TEXTS["text"], strict=True):
        expected, cursor = [], 0
        doc_spans = SPANS.filter(pl.col("doc_id") == doc_id).select("start", "end", "entity_type")
        for start, end, entity_type in doc_spans.iter_rows():
            expected += [text[cursor:start], f"<{entity_type}>"]
            cursor = end
        expected.append(text[cursor:])
        assert out_text(out, doc_id) == "".join(expected)
    assert out_text(out, 0).startswith(
        "From: <PERSON> <<EMAIL_ADDRESS>>\nTo: <EMAIL_ADDRESS>\n\n<PERSON>, call me at <PHONE_NUMBER>"
    )
    assert out_text(out, 3) == DOCS[3]


def test_scrub_honours_types_and_keeps_neighbouring_spans_apart():
    out = apply_scrub(TEXTS, SPANS, ("CREDIT_CARD",))
    assert out_text(out, 2) == ("Meeting in Portland with Bob and Alice Smith. Card <CREDIT_CARD>, "
                                "backup card <CREDIT_CARD>.")
    texts = build_texts(["Alice Bob wrote."])
    spans = pl.DataFrame({"doc_id": [0, 0], "start": [0, 6], "end": [5, 9],
                          "entity_type": ["PERSON", "PERSON"],
                          "score": [0.8, 0.9], "value": ["Alice", "Bob"]})
    assert apply_scrub(texts, spans)["text"].item() == "<PERSON> <PERSON> wrote."


def test_normal_forms_are_derived_when_the_span_table_lacks_them():
    with_columns = apply_rmft(TEXTS, SPANS)
    bare = apply_rmft(TEXTS, SPANS.drop("normalized", "value", "source", "score"))
    assert bare[0].equals(with_columns[0]) and bare[1].equals(with_columns[1])
