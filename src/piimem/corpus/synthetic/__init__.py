"""A seeded, Enron-like maildir with known PII: the default corpus, built offline in seconds.

The tree looks like the CMU Enron release (`<mailbox>/<folder>/<n>.`, mailbox ids like
"allen-p") and each file has the same header block, in the same order, as the real files:
header lines end in CRLF and the body uses LF, as in the Enron sample the project ships.

What it models, calibrated against the real sample's statistics (`bench/corpus.py`; no text of it is
used): a large population written to thinly (`world`), heavy-tailed recipient lists and message lengths,
long documents that name many people and places, quotes and forwards (`messages`), business prose from
templates (`prose`). Every PII string the generator writes is recorded in the ground-truth table, so the
PII stage can be scored for precision/recall and the attacks against exact counts:

* one row per occurrence, in any written file: headers (From, To, Cc, X-From, X-To, X-cc; offsets
  into the header value as a parser returns it) and body (offsets into the decoded body with
  line endings normalised to LF);
* types: PERSON (full names, and first names in greetings, closings and mentions), EMAIL_ADDRESS,
  PHONE_NUMBER, LOCATION (cities, states, countries), US_SSN, CREDIT_CARD. In a postal address only the
  city is labelled LOCATION: spaCy (and so Presidio) tags the city as a place but not the street, state
  code or ZIP. Street lines, state codes and ZIP codes are written but not labelled. Mailbox ids inside
  X-Folder / X-Origin / X-FileName ("allen-p", "pallen") are account names, not labelled either;
* `n_occurrences` counts the rows whose (entity_type, normalize(entity_type, value)) equal this
  row's, over the whole corpus, copies, quotes and headers included.

Duplication comes in three realistic forms: replies quote the whole earlier message
("-----Original Message-----", signature included), forwards embed it ("Forwarded by ..."), and
`copy_fraction` of the messages are also filed, byte-identical, in a second folder (the way Enron's
all_documents repeats other folders).

Canaries: for each canary type and each repetition count r, one fresh value is planted inside a
natural sentence in exactly r distinct messages. Host messages are chosen among messages that are
never quoted, forwarded or copied, so a canary of repetition r occurs in exactly r files, once
each, and its `n_occurrences` is r.

Determinism: all choices come from `random.Random(seed)` and one Faker instance seeded with the
same seed, so the same config and Faker version give byte-identical files.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from faker import Faker

from piimem.corpus.synthetic import prose
from piimem.corpus.synthetic.messages import Message, Places, World, headers, plan_mailbox, render_body
from piimem.corpus.synthetic.text import Span
from piimem.corpus.synthetic.world import US_CITIES, Cast
from piimem.pii.normalize import normalize
from piimem.schema import default

CANARY_TYPES = ("US_SSN", "CREDIT_CARD", "PHONE_NUMBER")
HEADER_PII_FIELDS = ("From", "To", "Cc", "X-From", "X-To", "X-cc")

GROUND_TRUTH_SCHEMA = {
    "path": pl.Utf8,
    "field": pl.Utf8,
    "start": pl.Int64,
    "end": pl.Int64,
    "entity_type": pl.Utf8,
    "value": pl.Utf8,
    "is_canary": pl.Boolean,
    "canary_repetitions": pl.Int64,
    "n_occurrences": pl.Int64,
}


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = default("corpus.synthetic.seed")
    n_mailboxes: int = default("corpus.synthetic.n_mailboxes")
    messages_per_mailbox: int = default("corpus.synthetic.messages_per_mailbox")
    folders: tuple[str, ...] = default("corpus.synthetic.folders")
    reply_fraction: float = default("corpus.synthetic.reply_fraction")
    forward_fraction: float = default("corpus.synthetic.forward_fraction")
    copy_fraction: float = default("corpus.synthetic.copy_fraction")
    signature_fraction: float = default("corpus.synthetic.signature_fraction")
    people_per_message: float = default("corpus.synthetic.people_per_message")
    popularity: float = default("corpus.synthetic.popularity")
    canary_types: tuple[str, ...] = default("corpus.synthetic.canaries.types")
    canary_repetitions: tuple[int, ...] = default("corpus.synthetic.canaries.repetitions")

    @classmethod
    def from_config(cls, section: Mapping) -> SyntheticConfig:
        """The generator's settings from the config's corpus.synthetic section (its `pretrain` block, the
        outsiders' world of piimem.corpus.pretraining, aside)."""
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()
                   if k not in ("canaries", "pretrain")}
        canaries = section.get("canaries")
        if canaries:
            options.update(canary_types=tuple(canaries["types"]), canary_repetitions=tuple(canaries["repetitions"]))
        return cls(**options)


def _folder_display(folder: str) -> str:
    return folder.replace("_", " ").capitalize()


def _validate(cfg: SyntheticConfig) -> None:
    def fail(key: str, expected: str) -> None:
        raise ValueError(f"corpus.synthetic.{key}: expected {expected}, got {getattr(cfg, key)!r}")

    if cfg.n_mailboxes < 1:
        fail("n_mailboxes", "an integer >= 1")
    if cfg.messages_per_mailbox < 1:
        fail("messages_per_mailbox", "an integer >= 1")
    if not cfg.folders or len(set(cfg.folders)) != len(cfg.folders):
        fail("folders", "a non-empty list of distinct folder names")
    for name in cfg.folders:
        if not name or "/" in name or name.startswith(".") or not name.isascii():
            fail("folders", "plain ASCII folder names without '/' or a leading '.'")
    for key in ("reply_fraction", "forward_fraction", "copy_fraction", "signature_fraction"):
        if not 0.0 <= getattr(cfg, key) <= 1.0:
            fail(key, "a fraction in [0, 1]")
    if cfg.reply_fraction + cfg.forward_fraction > 1.0:
        fail("forward_fraction", "reply_fraction + forward_fraction <= 1")
    if cfg.copy_fraction > 0 and len(cfg.folders) < 2:
        fail("folders", "at least two folders when copy_fraction > 0")
    if not cfg.people_per_message > 0:
        fail("people_per_message", "a positive number")
    if not cfg.popularity >= 0:
        fail("popularity", "a number >= 0")
    if not set(cfg.canary_types) <= set(CANARY_TYPES) or len(set(cfg.canary_types)) != len(cfg.canary_types):
        fail("canary_types", f"distinct types among {CANARY_TYPES}")
    if any(not isinstance(r, int) or r < 1 for r in cfg.canary_repetitions):
        fail("canary_repetitions", "positive integers")


# --- canary values -------------------------------------------------------------------------------


def _luhn_check_digit(digits: str) -> str:
    total = 0
    # Doubling starts at the rightmost digit of the payload, since the check digit will follow it.
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return len(digits) > 0 and total % 10 == 0


def _ssn(rng: random.Random) -> str:
    # Issued-looking numbers only: area 001-899 without 666, group 01-99, serial 0001-9999.
    while True:
        area = rng.randrange(1, 900)
        if area != 666:
            break
    ssn = f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"
    return ssn if len(set(ssn.replace("-", ""))) > 1 else _ssn(rng)


def _credit_card(rng: random.Random) -> str:
    prefix = rng.choice(("4", "51", "52", "53", "54", "55", "6011"))
    payload = prefix + "".join(str(rng.randrange(10)) for _ in range(15 - len(prefix)))
    number = payload + _luhn_check_digit(payload)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _plant_canaries(rng: random.Random, cfg: SyntheticConfig, cast: Cast, messages: list[Message]) -> None:
    # Only messages that are never quoted, forwarded or copied: each canary then sits in exactly
    # r files, once per file.
    hosts = [m for m in messages if not m.is_parent and m.copy_folder is None]
    need = max(cfg.canary_repetitions, default=0)
    if cfg.canary_types and need > len(hosts):
        raise ValueError(
            f"corpus.synthetic.canary_repetitions: the largest repetition count ({need}) exceeds the "
            f"{len(hosts)} messages that can host a canary; raise n_mailboxes or messages_per_mailbox"
        )
    seen: set[str] = set()
    for entity_type in cfg.canary_types:
        for r in cfg.canary_repetitions:
            while True:
                if entity_type == "US_SSN":
                    value = _ssn(rng)
                elif entity_type == "CREDIT_CARD":
                    value = _credit_card(rng)
                else:
                    value = cast.fresh_phone(rng.choice(US_CITIES)[3], 0)
                if value not in seen:
                    seen.add(value)
                    break
            # Prefer hosts without a canary of this type yet: one card number per e-mail reads naturally.
            free = [m for m in hosts if all(t != entity_type for t, _, _ in m.canaries)]
            taken = [m for m in hosts if m not in free]
            chosen = rng.sample(free, min(r, len(free)))
            chosen += rng.sample(taken, r - len(chosen))
            for host in chosen:
                host.canaries.append((entity_type, value, r))


def generate_maildir(root: Path, cfg: SyntheticConfig) -> pl.DataFrame:
    """Write the synthetic maildir under `root` (which must be absent or empty); return its ground truth.

    The ground truth holds raw (synthetic) PII; the caller stores it with
    `piimem.io.write_private_parquet`.
    """
    _validate(cfg)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root}: the synthetic maildir must be written to an absent or empty directory"
        )
    rng = random.Random(cfg.seed)
    fake = Faker("en_US")
    fake.seed_instance(cfg.seed)

    n_messages = cfg.n_mailboxes * cfg.messages_per_mailbox
    cast = Cast(rng, fake, cfg.n_mailboxes, round(cfg.people_per_message * n_messages), cfg.popularity)
    messages: list[Message] = []
    for owner in cast.owners:
        plan_mailbox(rng, cfg, cast, owner, messages)
    _plant_canaries(rng, cfg, cast, messages)
    world = World(cast, Places(rng), prose.Lexicon(prose.wordnet_words(), cfg.seed))

    used_ids: set[str] = set()
    for m in messages:  # within a mailbox, parents come first, so quotes are rendered already
        while not m.message_id or m.message_id in used_ids:
            serial = 1075840000000 + rng.randrange(10**8)
            m.message_id = f"<{rng.randrange(10**6, 10**8)}.{serial}.JavaMail.synth@piimem>"
        used_ids.add(m.message_id)
        render_body(rng, m, messages, world)

    rows: list[dict] = []
    counters: dict[tuple[str, str], int] = {}
    for m in messages:
        for folder in (m.folder, m.copy_folder):
            if folder is None:
                continue
            key = (m.owner.mailbox_id, folder)
            counters[key] = counters.get(key, 0) + 1
            rel = f"{m.owner.mailbox_id}/{folder}/{counters[key]}."
            # A copy keeps the X-Folder of its first filing, so the two files are byte-identical.
            lines = []
            for name, value in headers(m, _folder_display(m.folder)):
                rendered, spans = value.render()
                lines.append(f"{name}: {rendered}")
                rows.extend(_row(rel, name, s) for s in spans)
            rows.extend(_row(rel, "body", s) for s in m.body_spans)
            data = ("\r\n".join(lines) + "\r\n\r\n" + m.body).encode("ascii")
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    counts = Counter((r["entity_type"], normalize(r["entity_type"], r["value"])) for r in rows)
    for r in rows:
        r["n_occurrences"] = counts[(r["entity_type"], normalize(r["entity_type"], r["value"]))]
    return pl.DataFrame(rows, schema=GROUND_TRUTH_SCHEMA).sort(["path", "field", "start"])


def _row(path: str, field_name: str, s: Span) -> dict:
    return {
        "path": path, "field": field_name, "start": s.start, "end": s.end, "entity_type": s.entity_type,
        "value": s.value, "is_canary": s.canary_repetitions is not None,
        "canary_repetitions": s.canary_repetitions,
    }


def without_canaries(texts: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """`texts` (doc_id, text) less the messages that hold a planted canary (by the ground truth `truth`).

    The tiny GPT-2 is pre-trained on the public split: public copies of a canary would make the base
    model remember it, and its exposure after fine-tuning would then measure pre-training, not
    fine-tuning.
    """
    values = truth.filter(pl.col("is_canary"))["value"].unique().sort().to_list()
    if not values:
        return texts
    return texts.filter(~pl.col("text").str.contains_any(values))
