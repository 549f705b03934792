"""Fresh, plausible fake values for PII strings: the replacements RMFT writes into the training text.

Every random piece comes from Faker's built-in word lists (names, user names, domain words, TLDs,
cities) driven by the caller's `random.Random`, never from the corpus, so a surrogate carries no real
person's data. The only piece of real text a surrogate may hold is the e-mail anchor: the RMFT paper
keeps one randomly chosen part of the original address (local part, domain label or TLD) so that the
fake still "belongs" to the same person, organisation or country.

Shapes, per type (each documented where it is built):
- EMAIL_ADDRESS: anchor rule; the whole surrogate is lower-case (Enron addresses are overwhelmingly
  lower-case, and lower-casing is what `normalize` does anyway, so the kept anchor compares equal).
- PHONE_NUMBER: the original's characters with every digit redrawn, country code kept.
- US_SSN: the original's separators, a valid area / group / serial.
- CREDIT_CARD: the original's grouping and length, the network prefix kept, a valid Luhn check digit.
- PERSON: a Faker name with the original's number of words, order ("Last, First") and case style.
- LOCATION: a Faker city, or "City, ST" when the original has a comma; case style kept.

A surrogate never normalises to its original; `make_surrogate` also steers clear of an `avoid` set
(the other real values of the same type) as long as it can.
"""

from __future__ import annotations

import random
import re
import string
from functools import lru_cache

from faker import Faker

from piimem.pii.normalize import ENTITY_TYPES, normalize

# The RMFT authors' e-mail pattern; a surrogate address must match it in full.
EMAIL_PATTERN = re.compile(r"[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+")

# Shapes of the structured types, used to count "PII-like strings" before and after masking and to
# check surrogates. Digit look-arounds stop a pattern from matching inside a longer number.
PII_LIKE_PATTERNS: dict[str, re.Pattern[str]] = {
    "EMAIL_ADDRESS": EMAIL_PATTERN,
    "PHONE_NUMBER": re.compile(r"(?<![\w+])(?:\+?1[-. ]?)?\(?[2-9]\d{2}\)?[-. ]?[2-9]\d{2}[-. ]?\d{4}(?!\d)"),
    "US_SSN": re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"),
    "CREDIT_CARD": re.compile(r"(?<!\d)\d{4}[- ]?\d{4,6}[- ]?\d{4,5}(?:[- ]?\d{1,4})?(?!\d)"),
}

MAX_TRIES = 64  # draws per surrogate before giving up on the `avoid` set (then only != original)

_LETTERS = string.ascii_lowercase
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9-]")
_NOT_WORD_CHAR = re.compile(r"[^a-z0-9]")


class SurrogateError(ValueError):
    """No surrogate different from the original could be drawn (the message holds no PII)."""


@lru_cache(maxsize=1)
def _faker() -> Faker:
    # Building a Faker takes ~20 ms, so one instance is shared; every call rebinds its random source to
    # the caller's rng, so its draws depend on that rng alone (single-threaded use).
    # Uniform rather than frequency-weighted draws from Faker's lists: 30-60x faster (Faker recomputes
    # the weights on every call), and no fake name ("Smith") recurs unusually often in the training text.
    return Faker("en_US", use_weighting=False)


def _bound_faker(rng: random.Random) -> Faker:
    fake = _faker()
    fake.random = rng
    return fake


def luhn_check_digit(payload: str) -> str:
    """The digit that makes `payload + digit` pass the Luhn check."""
    total = 0
    # Walking right to left over the payload, the first digit sits next to the check digit: doubled.
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = re.sub(r"\D", "", number)
    return len(digits) >= 2 and luhn_check_digit(digits[:-1]) == digits[-1]


def ssn_valid(value: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    digits = re.sub(r"\D", "", value)
    if len(digits) != 9:
        return False
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    return 0 < area < 900 and area != 666 and group != 0 and serial != 0


# --- e-mail -------------------------------------------------------------------------------------------


def split_email(address: str) -> tuple[str, str, str] | None:
    """(local part, domain label(s), TLD) lower-cased, or None when `address` is not local@label.tld.

    The domain label is everything between "@" and the last dot, so "a@mail.corp.com" has domain
    "mail.corp" and TLD "com".
    """
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or not local or "." not in domain:
        return None
    label, _, tld = domain.rpartition(".")
    if not label or not tld:
        return None
    return local, label, tld


def _fresh_token(draw, original: str, clean: re.Pattern[str]) -> str:
    for _ in range(MAX_TRIES):
        token = clean.sub("", draw().lower()).strip("-")
        if token and token != original:
            return token
    raise SurrogateError("could not draw an e-mail piece different from the original")


def _fresh_local(local: str, fake: Faker, rng: random.Random) -> str:
    if "." not in local:
        # Faker user names sometimes hold a dot ("first.last"); a plain local part stays plain.
        return _fresh_token(lambda: fake.user_name().replace(".", ""), local, _NOT_WORD_CHAR)
    pieces = local.split(".")
    fresh = []
    for i, piece in enumerate(pieces):
        if not piece:  # keep the shape of odd addresses such as "a..b"
            fresh.append(piece)
        elif len(piece) == 1:  # an initial stays an initial
            fresh.append(rng.choice([c for c in _LETTERS if c != piece]))
        elif i == len(pieces) - 1:
            fresh.append(_fresh_token(fake.last_name, piece, _NOT_WORD_CHAR))
        else:
            fresh.append(_fresh_token(fake.first_name, piece, _NOT_WORD_CHAR))
    return ".".join(fresh)


def _fresh_domain(label: str, fake: Faker) -> str:
    # As many dotted labels as the original ("mail.corp" -> two fresh domain words).
    n = label.count(".") + 1
    for _ in range(MAX_TRIES):
        fresh = ".".join(_fresh_token(fake.domain_word, "", _NOT_LABEL_CHAR) for _ in range(n))
        if fresh != label:
            return fresh
    raise SurrogateError("could not draw a domain different from the original")


def email_surrogate(original: str, rng: random.Random, fake: Faker) -> str:
    """The anchor rule: keep one randomly chosen part of the original, draw the other two fresh."""
    parts = split_email(original)
    if parts is None:
        # Not local@label.tld: nothing to anchor on, so a wholly fresh address.
        local = _fresh_token(lambda: fake.user_name().replace(".", ""), "", _NOT_WORD_CHAR)
        return f"{local}@{_fresh_domain('x', fake)}.{fake.tld()}"
    local, label, tld = parts
    kept = rng.choice(("local", "domain", "tld"))
    if kept != "local":
        local = _fresh_local(local, fake, rng)
    if kept != "domain":
        label = _fresh_domain(label, fake)
    if kept != "tld":
        # Faker has five TLDs; a replaced TLD must differ, so exactly one part stays the original's.
        tld = _fresh_token(fake.tld, tld, _NOT_LABEL_CHAR)
    return f"{local}@{label}.{tld}"


# --- digit-shaped types -------------------------------------------------------------------------------


def _fill_digits(shape: str, digits: str) -> str:
    """`shape` with its digits replaced, in order, by `digits` (all other characters kept in place)."""
    it = iter(digits)
    return "".join(next(it) if ch.isdigit() else ch for ch in shape)


def _digit(rng: random.Random, low: int = 0) -> str:
    return str(rng.randint(low, 9))


def phone_surrogate(original: str, rng: random.Random) -> str:
    """Same characters as the original, every digit redrawn except a country code.

    A leading "+1" or an 11-digit number starting with 1 keeps its 1; another "+CC" keeps its country
    code (the digits up to the first separator, at most three). North American numbers (10 digits
    after the country code) get an area code and exchange that start with 2-9; elsewhere a leading
    trunk 0 stays 0 and other first digits are 1-9.
    """
    digits = re.sub(r"\D", "", original)
    if not digits:
        # Nothing to keep the shape of: a North American number in the common written form.
        return _fill_digits("(000) 000-0000", _nanp(rng, 10))
    stripped = original.lstrip()
    if stripped.startswith("+"):
        head = re.match(r"\+\s*(\d+)", stripped)
        cc_len = 1 if digits.startswith("1") else min(len(head.group(1)) if head else 1, 3)
    else:
        cc_len = 1 if len(digits) == 11 and digits.startswith("1") else 0
    country, rest = digits[:cc_len], digits[cc_len:]
    if (country in ("", "1") and len(rest) >= 10) or (country == "" and len(rest) == 7):
        fresh = _nanp(rng, len(rest))
    elif rest:
        first = "0" if rest[0] == "0" else _digit(rng, 1)
        fresh = first + "".join(_digit(rng) for _ in rest[1:])
    else:
        fresh = ""
    return _fill_digits(original, country + fresh)


def _nanp(rng: random.Random, n: int) -> str:
    """n digits of a North American number: NXX-NXX-XXXX (N = 2-9, XX not "11", the N11 service codes);
    7 digits: NXX-XXXX; digits beyond 10: an extension."""
    out = [_digit(rng) for _ in range(n)]
    for head in (0, 3) if n >= 10 else (0,):
        out[head] = _digit(rng, 2)
        while out[head + 1] == out[head + 2] == "1":
            out[head + 2] = _digit(rng)
    return "".join(out)


def ssn_surrogate(original: str, rng: random.Random) -> str:
    """Same separators, a valid SSN: area 001-899 without 666, group 01-99, serial 0001-9999."""
    digits = re.sub(r"\D", "", original)
    if len(digits) != 9:
        # Not a nine-digit SSN: same shape, random digits, non-zero first digit.
        return _fill_digits(original, _digit(rng, 1) + "".join(_digit(rng) for _ in digits[1:]))
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    fresh = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    return _fill_digits(original, fresh)


# Network prefixes kept from the original card number (IIN ranges shared by millions of cards, not
# personal); longest first. Mastercard's 51-55 is redrawn within the range.
_CARD_PREFIXES = ("6011", "65", "34", "37", "36", "38", "30", "35")


def _card_prefix(digits: str, rng: random.Random) -> str:
    if digits[0] == "5":
        return "5" + str(rng.randint(1, 5))
    for prefix in _CARD_PREFIXES:
        if digits.startswith(prefix):
            return prefix
    return digits[0]


def card_surrogate(original: str, rng: random.Random) -> str:
    """Same grouping and length, same network (first digit, or the network prefix), valid Luhn digit."""
    digits = re.sub(r"\D", "", original)
    if len(digits) < 2:
        return _fill_digits(original, "".join(_digit(rng) for _ in digits))
    prefix = _card_prefix(digits, rng)[: len(digits) - 1]
    payload = prefix + "".join(_digit(rng) for _ in range(len(digits) - 1 - len(prefix)))
    return _fill_digits(original, payload + luhn_check_digit(payload))


# --- names and places ---------------------------------------------------------------------------------


def _case_like(fresh: str, original: str) -> str:
    letters = [c for c in original if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return fresh.upper()
    if letters and all(c.islower() for c in letters):
        return fresh.lower()
    return fresh


_INITIAL = re.compile(r"[A-Za-z]\.?")
_TRAILING_PUNCT = re.compile(r"[,.;:]*$")


def person_surrogate(original: str, rng: random.Random, fake: Faker) -> str:
    """A Faker name word for word: one word -> first name; two -> first last; three or more ->
    first, middle(s), last. "Last, First ..." keeps that order; initials stay initials; whitespace,
    trailing punctuation and the case style (UPPER / lower / as Faker writes it) of each word are kept.
    """
    parts = re.split(r"(\s+)", original)
    words = [i for i, part in enumerate(parts) if part and not part.isspace()]
    comma_order = len(words) >= 2 and parts[words[0]].endswith(",")
    out = list(parts)
    for rank, i in enumerate(words):
        word = parts[i]
        tail = _TRAILING_PUNCT.search(word).group()
        core = word[: len(word) - len(tail)] if tail else word
        if _INITIAL.fullmatch(word):
            fresh = rng.choice(string.ascii_uppercase) + word[1:]
            out[i] = _case_like(fresh, word)
            continue
        if comma_order:
            is_last = rank == 0
        else:
            is_last = len(words) >= 2 and rank == len(words) - 1
        fresh = fake.last_name() if is_last else fake.first_name()
        out[i] = _case_like(fresh, core) + tail
    return "".join(out)


def location_surrogate(original: str, rng: random.Random, fake: Faker) -> str:
    """A Faker city; "City, ST" (state abbreviation) when the original holds a comma; case style kept."""
    if "," in original:
        state = fake.state_abbr(include_territories=False, include_freely_associated_states=False)
        fresh = f"{fake.city()}, {state}"
    else:
        fresh = fake.city()
    return _case_like(fresh, original)


# --- entry point --------------------------------------------------------------------------------------


def _draw(entity_type: str, original: str, rng: random.Random) -> str:
    if entity_type == "EMAIL_ADDRESS":
        return email_surrogate(original, rng, _bound_faker(rng))
    if entity_type == "PHONE_NUMBER":
        return phone_surrogate(original, rng)
    if entity_type == "US_SSN":
        return ssn_surrogate(original, rng)
    if entity_type == "CREDIT_CARD":
        return card_surrogate(original, rng)
    if entity_type == "PERSON":
        return person_surrogate(original, rng, _bound_faker(rng))
    if entity_type == "LOCATION":
        return location_surrogate(original, rng, _bound_faker(rng))
    raise ValueError(f"make_surrogate: unknown entity type {entity_type!r} (expected one of {ENTITY_TYPES})")


def make_surrogate(
    entity_type: str, original: str, rng: random.Random, avoid: frozenset[str] | set[str] = frozenset()
) -> str:
    """A fresh fake `entity_type` value shaped like `original`, drawn from `rng` only.

    The result never normalises to `original`. It is redrawn while its normal form is in `avoid` (pass
    the normal forms of the other real values of this type, so a fake never adds an occurrence of a
    real one); after MAX_TRIES draws that rule is dropped, since a corpus may use up e.g. every
    one-word first name Faker knows. Callers that care check `normalize(...) in avoid` themselves.
    """
    target = normalize(entity_type, original)
    fallback = None
    for _ in range(MAX_TRIES):
        fresh = _draw(entity_type, original, rng)
        key = normalize(entity_type, fresh)
        if key == target:
            continue
        if key not in avoid:
            return fresh
        if fallback is None:
            fallback = fresh
    if fallback is not None:
        return fallback
    raise SurrogateError(
        f"make_surrogate: no {entity_type} surrogate differing from the original in {MAX_TRIES} draws"
    )
