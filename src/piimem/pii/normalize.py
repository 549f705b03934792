"""One normaliser per PII type: every stage compares PII strings through these.

Two strings are "the same PII" exactly when their normal forms are equal, so RMFT's grouping,
the extraction attack's matching and the detector's evaluation all agree.
"""

from __future__ import annotations

import re
import unicodedata

ENTITY_TYPES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "LOCATION")

_SPACES = re.compile(r"\s+")
_NON_DIGITS = re.compile(r"\D")


def _words(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).casefold()
    return _SPACES.sub(" ", text).strip(" .,;:'\"")


def normalize_email(value: str) -> str:
    return value.strip().strip("<>.,;:'\"").lower()


def normalize_phone(value: str) -> str:
    digits = _NON_DIGITS.sub("", value)
    # The North American country code is optional in writing: +1 713 853 1234 == (713) 853-1234.
    return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits


def normalize_digits(value: str) -> str:
    return _NON_DIGITS.sub("", value)


_BY_TYPE = {
    "EMAIL_ADDRESS": normalize_email,
    "PHONE_NUMBER": normalize_phone,
    "US_SSN": normalize_digits,
    "CREDIT_CARD": normalize_digits,
}


def normalize(entity_type: str, value: str) -> str:
    """The comparable form of `value` as a PII string of `entity_type` (names and places: case-folded words)."""
    return _BY_TYPE.get(entity_type, _words)(value)
