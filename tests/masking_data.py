"""A small hand-written corpus of fake PII (example.com, 555 numbers, test cards) and its spans, found by exact
string search so that the tests using it do not depend on the Presidio detector."""

from __future__ import annotations

import re

import polars as pl

from piimem.pii import normalize

DOCS = [
    "From: Alice Smith <alice.smith@example.com>\nTo: bob@corp.example.org\n\n"
    "Bob, call me at (713) 555-0142 about the Houston, TX site. My SSN is 219-09-9999.",
    "From: bob@corp.example.org\nTo: Alice.Smith@Example.com\n\n"
    "Alice Smith, the card 4111 1111 1111 1111 was charged. Ring (713) 555-0142 or +1 713 555 0199.",
    "Meeting in Portland with Bob and Alice Smith. Card 5555-5555-5555-4444, "
    "backup card 4111 1111 1111 1111.",
    "Nothing personal here, just a note about the weather.",
    "Forward to alice.smith@example.com and carol@widgets.net; Carol Jones lives in Portland. "
    "Her number: +1 713 555 0199, SSN 219-09-9999, card 5555-5555-5555-4444.",
    "Reminder: alice.smith@example.com, (713) 555-0142, 4111 1111 1111 1111, Houston, TX.",
]

# (type, literal, case-insensitive search?)
PII = [
    ("EMAIL_ADDRESS", "alice.smith@example.com", True),
    ("EMAIL_ADDRESS", "bob@corp.example.org", True),
    ("EMAIL_ADDRESS", "carol@widgets.net", True),
    ("PHONE_NUMBER", "(713) 555-0142", False),
    ("PHONE_NUMBER", "+1 713 555 0199", False),
    ("US_SSN", "219-09-9999", False),
    ("CREDIT_CARD", "4111 1111 1111 1111", False),
    ("CREDIT_CARD", "5555-5555-5555-4444", False),
    ("PERSON", "Alice Smith", False),
    ("PERSON", "Carol Jones", False),
    ("PERSON", "Bob", False),
    ("LOCATION", "Houston, TX", False),
    ("LOCATION", "Portland", False),
]


def build_spans(docs: list[str], first_doc_id: int = 0) -> pl.DataFrame:
    rows = []
    for doc_id, text in enumerate(docs, start=first_doc_id):
        for entity_type, literal, ignore_case in PII:
            flags = re.IGNORECASE if ignore_case else 0
            for m in re.finditer(r"(?<![\w.])" + re.escape(literal) + r"(?!\w)", text, flags):
                value = m.group()
                key = normalize(entity_type, value)
                rows.append((doc_id, m.start(), m.end(), entity_type, "test", 1.0, value, key))
    spans = pl.DataFrame(
        rows,
        schema={"doc_id": pl.Int64, "start": pl.Int64, "end": pl.Int64, "entity_type": pl.Utf8,
                "source": pl.Utf8, "score": pl.Float64, "value": pl.Utf8, "normalized": pl.Utf8},
        orient="row",
    ).sort("doc_id", "start")
    return spans


def build_texts(docs: list[str], first_doc_id: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"doc_id": list(range(first_doc_id, first_doc_id + len(docs))), "text": docs},
                        schema={"doc_id": pl.Int64, "text": pl.Utf8})
