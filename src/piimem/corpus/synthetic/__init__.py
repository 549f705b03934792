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

Canaries: for each canary type and each repetition count r, `per_cell` fresh values are planted, each
inside a natural sentence in exactly r distinct messages. Host messages are the messages that are never
quoted, forwarded or copied and are neither automated notices nor forwards, so a canary of repetition r
occurs in exactly r files, once each, and its `n_occurrences` is r; a host holds at most one canary of a
type and at most MAX_CANARIES_PER_MESSAGE in all. E-mail canaries are first.last@<free-mail host> from
Faker's name lists (`canary_email`), a form no person of the corpus has, and
`piimem.extraction.canaries.random_candidates` draws their candidates from the same space.

Determinism: all choices come from `random.Random(seed)` and one Faker instance seeded with the
same seed, so the same config and Faker version give byte-identical files. The canaries draw from a second
stream seeded from the same seed, so the canary grid changes the canaries and nothing else of the corpus.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from faker import Faker

from piimem.corpus.synthetic import prose
from piimem.corpus.synthetic.messages import Message, Places, World, headers, plan_mailbox, render_body
from piimem.corpus.synthetic.text import Span
from piimem.corpus.synthetic.world import FREE_MAIL, US_CITIES, Cast, phone_number
from piimem.pii.normalize import normalize
from piimem.schema import default

CANARY_TYPES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD")
# A host message holds at most this many canaries, of different types: a message with one personal number or
# address reads naturally, one with several reads planted, and canaries that share a message share context
# (the second one's context holds the first), which correlates their exposures.
MAX_CANARIES_PER_MESSAGE = 2

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
    canary_per_cell: int = default("corpus.synthetic.canaries.per_cell")

    @classmethod
    def from_config(cls, section: Mapping) -> SyntheticConfig:
        """The generator's settings from the config's corpus.synthetic section (its `pretrain` block, the
        outsiders' world of piimem.corpus.pretraining, aside)."""
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()
                   if k not in ("canaries", "pretrain")}
        canaries = section.get("canaries")
        if canaries:
            keys = {"types": "canary_types", "repetitions": "canary_repetitions", "per_cell": "canary_per_cell"}
            options.update({keys[k]: tuple(v) if isinstance(v, list) else v for k, v in canaries.items() if k in keys})
        return cls(**options)


def _folder_display(folder: str) -> str:
    return folder.replace("_", " ").capitalize()


def _validate(cfg: SyntheticConfig) -> None:
    def fail(key: str, expected: str) -> None:
        name = key.replace("canary_", "canaries.") if key.startswith("canary_") else key  # the config's key
        raise ValueError(f"corpus.synthetic.{name}: expected {expected}, got {getattr(cfg, key)!r}")

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
    if len(set(cfg.canary_repetitions)) != len(cfg.canary_repetitions):
        fail("canary_repetitions", "distinct repetition counts (each is a cell of per_cell canaries)")
    if not isinstance(cfg.canary_per_cell, int) or cfg.canary_per_cell < 1:
        fail("canary_per_cell", "an integer >= 1")


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


@functools.cache
def canary_name_parts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The first and last names an e-mail canary's local part is drawn from: Faker's en_US lists (plain
    letters), each name once, in a fixed order."""
    from faker.providers.person.en_US import Provider

    def plain(names) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n for n in names if n.isascii() and n.isalpha()))

    return plain(Provider.first_names), plain(Provider.last_names)


def canary_email(rng: random.Random, domain: str | None = None) -> str:
    """An e-mail canary: first.last@domain, first and last drawn uniformly from `canary_name_parts` and the
    domain from the free-mail hosts (or `domain`, as its candidates keep it). The corpus's people write
    first.last only at company hosts and initial+last at free-mail hosts (`world.Cast.person`), so no
    person's address has this form; a canary and its candidates come from one space (Carlini et al. 2019)."""
    first, last = canary_name_parts()
    return f"{rng.choice(first).lower()}.{rng.choice(last).lower()}@{domain or rng.choice(FREE_MAIL)}"


def _canary_value(rng: random.Random, entity_type: str) -> str:
    if entity_type == "US_SSN":
        return _ssn(rng)
    if entity_type == "CREDIT_CARD":
        return _credit_card(rng)
    if entity_type == "EMAIL_ADDRESS":
        return canary_email(rng)
    return phone_number(rng, rng.choice(US_CITIES)[3], 0)


def _taken(cast: Cast) -> dict[str, set[str]]:
    """What a canary must not be, per type (normal forms): the people's phones and addresses; for e-mail
    also the first.last of every person's name (the model would know the name, not the canary)."""
    return {"PHONE_NUMBER": set(cast.phones),
            "EMAIL_ADDRESS": {normalize("EMAIL_ADDRESS", e) for e in cast.emails},
            "EMAIL_LOCAL": {f"{first.lower()}.{last.lower()}" for first, last in cast.names}}


def _fresh_canary(rng: random.Random, entity_type: str, taken: dict[str, set[str]], seen: set[tuple[str, str]]
                  ) -> str:
    """A canary value that is no other canary and no string of the corpus (`_taken`)."""
    while True:
        value = _canary_value(rng, entity_type)
        key = normalize(entity_type, value)
        if (entity_type, key) in seen or key in taken.get(entity_type, ()):
            continue
        if entity_type == "EMAIL_ADDRESS" and key.partition("@")[0] in taken["EMAIL_LOCAL"]:
            continue
        seen.add((entity_type, key))
        return value


def _canary_hosts(messages: list[Message]) -> list[Message]:
    """Messages that may hold a canary: never quoted, forwarded or copied (so a canary planted r times is
    in exactly r files, once each), not an automated notice (a personal number in a system's notice reads
    planted, and the notices' near-duplicate clusters would break) and not a forward (its note is a line or
    none: the canary's sentence would be most of the message's own text, and the split's linker, which joins
    messages whose own text lies mostly inside another's, would join the canary's hosts)."""
    return [m for m in messages if not m.is_parent and m.copy_folder is None and m.notice is None
            and m.kind != "forward"]


def _check_capacity(cfg: SyntheticConfig, n_hosts: int) -> None:
    per_type = cfg.canary_per_cell * sum(cfg.canary_repetitions)
    advice = "lower them or raise corpus.synthetic.n_mailboxes or messages_per_mailbox"
    if max(cfg.canary_repetitions) > n_hosts:
        raise ValueError(f"corpus.synthetic.canaries.repetitions: the largest repetition count "
                         f"({max(cfg.canary_repetitions)}) exceeds the {n_hosts} messages that can host a canary; "
                         f"{advice}")
    if per_type > n_hosts:
        raise ValueError(f"corpus.synthetic.canaries: per_cell x sum(repetitions) = {cfg.canary_per_cell} x "
                         f"{sum(cfg.canary_repetitions)} = {per_type} occurrences of each type, more than the "
                         f"{n_hosts} messages that can host a canary (one of each type per message); {advice}")
    if per_type * len(cfg.canary_types) > MAX_CANARIES_PER_MESSAGE * n_hosts:
        raise ValueError(f"corpus.synthetic.canaries: {per_type * len(cfg.canary_types)} canary occurrences "
                         f"({len(cfg.canary_types)} types x {per_type}) exceed the {n_hosts} host messages x "
                         f"{MAX_CANARIES_PER_MESSAGE} canaries per message; {advice}")


def _plant_canaries(cfg: SyntheticConfig, cast: Cast, messages: list[Message]) -> None:
    """`per_cell` canaries per (type, repetition count r), each in r distinct host messages, with the
    sentence that carries it. A stream of its own (seeded from the corpus seed): the canary grid leaves the
    rest of the corpus as it is."""
    if not cfg.canary_types or not cfg.canary_repetitions:
        return
    rng = random.Random(f"{cfg.seed}/canaries")
    hosts = _canary_hosts(messages)
    _check_capacity(cfg, len(hosts))
    seen: set[tuple[str, str]] = set()
    taken = _taken(cast)
    canaries = [(entity_type, _fresh_canary(rng, entity_type, taken, seen), r)
                for entity_type in cfg.canary_types for r in cfg.canary_repetitions
                for _ in range(cfg.canary_per_cell)]
    # The most repeated first, each to the least loaded hosts (random among equals): they need the most room,
    # and spreading keeps most canaries alone in their message.
    for entity_type, value, r in sorted(canaries, key=lambda c: -c[2]):
        free = [m for m in hosts if len(m.canaries) < MAX_CANARIES_PER_MESSAGE
                and all(c[0] != entity_type for c in m.canaries)]
        if len(free) < r:
            raise ValueError(f"corpus.synthetic.canaries: could not place a {entity_type} canary in {r} messages "
                             f"({len(free)} of {len(hosts)} hosts left with room); lower per_cell or repetitions, "
                             f"or raise corpus.synthetic.n_mailboxes or messages_per_mailbox")
        rng.shuffle(free)
        free.sort(key=lambda m: len(m.canaries))
        for host in free[:r]:
            host.canaries.append((entity_type, value, r, rng.choice(prose.CANARY_SENTENCES[entity_type])))


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
    _plant_canaries(cfg, cast, messages)
    world = World(cast, Places(rng), prose.Lexicon(prose.wordnet_words(), cfg.seed))

    truth = _GroundTruth()
    files: dict[tuple[str, str], int] = {}  # files so far per (mailbox, folder): the next file's number
    used_ids: set[str] = set()
    for m in messages:  # within a mailbox, parents come first, so quotes are rendered already
        while not m.message_id or m.message_id in used_ids:
            serial = 1075840000000 + rng.randrange(10**8)
            m.message_id = f"<{rng.randrange(10**6, 10**8)}.{serial}.JavaMail.synth@piimem>"
        used_ids.add(m.message_id)
        render_body(rng, m, messages, world)
        _write(root, m, files, truth)  # draws nothing: the stream is as if every body were rendered first
        if not m.is_parent:  # no later message quotes it: its text is on disk, so let it go
            m.body, m.body_spans = "", []
    return truth.frame()


def _write(root: Path, m: Message, files: dict[tuple[str, str], int], truth: _GroundTruth) -> None:
    """The message's file, and its copy if it has one, with their ground-truth rows."""
    for folder in (m.folder, m.copy_folder):
        if folder is None:
            continue
        key = (m.owner.mailbox_id, folder)
        files[key] = files.get(key, 0) + 1
        rel = f"{m.owner.mailbox_id}/{folder}/{files[key]}."
        # A copy keeps the X-Folder of its first filing, so the two files are byte-identical.
        lines = []
        for name, value in headers(m, _folder_display(m.folder)):
            rendered, spans = value.render()
            lines.append(f"{name}: {rendered}")
            truth.add(rel, name, spans)
        truth.add(rel, "body", m.body_spans)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(("\r\n".join(lines) + "\r\n\r\n" + m.body).encode("ascii"))


class _GroundTruth:
    """The ground-truth rows, gathered column by column and moved into polars every CHUNK rows: Python
    objects per row cost several times what polars stores, and a large corpus has millions of rows."""

    CHUNK = 200_000
    COLUMNS = ("path", "field", "start", "end", "entity_type", "value", "is_canary", "canary_repetitions")

    def __init__(self) -> None:
        self.chunks: list[pl.DataFrame] = []
        self.columns: dict[str, list] = {name: [] for name in (*self.COLUMNS, "key")}

    def add(self, path: str, field_name: str, spans: list[Span]) -> None:
        c = self.columns
        for s in spans:
            c["path"].append(path)
            c["field"].append(field_name)
            c["start"].append(s.start)
            c["end"].append(s.end)
            c["entity_type"].append(s.entity_type)
            c["value"].append(s.value)
            c["is_canary"].append(s.canary_repetitions is not None)
            c["canary_repetitions"].append(s.canary_repetitions)
            c["key"].append(normalize(s.entity_type, s.value))
        if len(c["path"]) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        schema = {**{name: GROUND_TRUTH_SCHEMA[name] for name in self.COLUMNS}, "key": pl.Utf8}
        self.chunks.append(pl.DataFrame(self.columns, schema=schema))
        self.columns = {name: [] for name in self.columns}

    def frame(self) -> pl.DataFrame:
        """The table, sorted by path, field and start; `n_occurrences` counts the rows of the same
        (entity_type, normal form), over the whole corpus."""
        self._flush()
        rows = pl.concat(self.chunks, rechunk=True)
        self.chunks = []
        n = pl.len().over("entity_type", "key").cast(pl.Int64).alias("n_occurrences")
        return rows.with_columns(n).select(list(GROUND_TRUTH_SCHEMA)).sort(["path", "field", "start"])


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
