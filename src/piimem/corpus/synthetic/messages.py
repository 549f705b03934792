"""Who writes to whom, when, about what: the messages of the synthetic mailboxes and their bodies.

Shapes taken from real Enron mail (rates and distributions only, never its text): most messages go to one
or two people, a few to dozens (recipient counts drawn from a heavy-tailed mixture); own text is short
with a long tail (sentence counts log-normal), and a small share are long documents (announcements,
market notes, minutes) that name many people and places; replies quote their parent whole, forwards
embed it; a minority of messages end with a signature block.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from piimem.corpus.synthetic import prose
from piimem.corpus.synthetic.text import Span, Text
from piimem.corpus.synthetic.world import US_CITIES, US_STATES, WORLD_CITIES, Cast, Person

TZ = ZoneInfo("America/Los_Angeles")  # Enron's mail servers stamped Pacific time
CORPUS_START = datetime(1999, 1, 1)
CORPUS_END = datetime(2002, 6, 30)
MAX_DEPTH = 3
# Recipients of a new message: (probability, lowest, highest) of a uniform draw on a log scale.
RECIPIENTS = ((0.63, 1, 1), (0.2, 2, 3), (0.11, 4, 9), (0.06, 10, 40))
# Own text in sentences: log-normal with this median and sigma; documents are a share of new messages.
SENTENCES_MEDIAN, SENTENCES_SIGMA, DOCUMENT_SHARE = 6.0, 1.2, 0.12
# Share of new messages that are automated notices, each mailbox receiving two kinds from one sender.
NOTICE_SHARE = 0.07


@dataclass
class Message:
    owner: Person
    when: datetime
    sender: Person
    to: list[Person]
    cc: list[Person]
    subject: str
    kind: str  # "new" | "reply" | "forward"
    parent: int | None  # index into the global message list
    depth: int  # quoting depth, to keep reply chains bounded
    folder: str
    copy_folder: str | None = None
    signature: bool = False
    document: bool = False
    notice: int | None = None  # an automated notice: which of prose.NOTICES
    snapshot: str = ""
    canaries: list[tuple[str, str, int, str]] = field(default_factory=list)  # type, value, r, sentence
    is_parent: bool = False
    message_id: str = ""
    body: str = ""
    body_spans: list[Span] = field(default_factory=list)


def header_date(when: datetime) -> str:
    return f"{when:%a}, {when.day} {when:%b %Y %H:%M:%S %z} ({when.tzname()})"


def _quote_date(when: datetime) -> str:
    hour = when.hour % 12 or 12
    return f"{when:%A, %B} {when.day}, {when.year} {hour}:{when:%M %p}"


def _notes_date(when: datetime, seconds: bool) -> str:
    return when.strftime("%m/%d/%Y %I:%M:%S %p" if seconds else "%m/%d/%Y %I:%M %p")


def _pick_folder(rng: random.Random, folders: tuple[str, ...], sent: bool) -> str:
    preferred, avoided = ("sent_items", "inbox") if sent else ("inbox", "sent_items")
    weights = [6 if f == preferred else 0 if f == avoided and len(folders) > 2 else 1 for f in folders]
    return rng.choices(folders, weights=weights)[0]


def _n_recipients(rng: random.Random) -> int:
    roll = rng.random()
    for probability, low, high in RECIPIENTS:
        if roll < probability:
            return int(math.exp(rng.uniform(math.log(low), math.log(high + 1))))
        roll -= probability
    return 1


def base_subject(subject: str) -> str:
    while subject[:4] in ("RE: ", "FW: "):
        subject = subject[4:]
    return subject


def plan_mailbox(rng: random.Random, cfg, cast: Cast, owner: Person, messages: list[Message]) -> None:
    """Who writes to whom and when, which message answers or forwards which: no text yet."""
    contacts = cast.draw(20, exclude=[owner])  # the owner's usual correspondents
    notices = (contacts[0], rng.sample(range(len(prose.NOTICES)), 2))  # who sends which automated notices
    span_days = rng.randrange(180, 540)
    latest_start = (CORPUS_END - CORPUS_START).days - span_days
    start = CORPUS_START + timedelta(days=rng.randrange(max(latest_start, 1)))
    times = sorted(
        start + timedelta(days=rng.randrange(span_days), hours=rng.randrange(7, 20),
                          minutes=rng.randrange(60), seconds=rng.randrange(60))
        for _ in range(cfg.messages_per_mailbox)
    )
    first = len(messages)
    snapshot = f"{times[-1]:%b%Y}"  # the month the mailbox was exported, as in Enron's X-Folder

    def audience(k: int, exclude: list[Person]) -> list[Person]:
        # Small audiences are mostly the usual correspondents; large ones reach into the population.
        usual = [p for p in contacts if p not in exclude]
        n_usual = min(len(usual), sum(rng.random() < (0.55 if k <= 3 else 0.1) for _ in range(k)))
        chosen = rng.sample(usual, n_usual)
        return chosen + cast.draw(k - n_usual, exclude=[*exclude, *chosen])

    for when in times:
        when = when.replace(tzinfo=TZ)
        recent = [i for i in range(max(first, len(messages) - 10), len(messages)) if messages[i].depth < MAX_DEPTH]
        roll = rng.random()
        document, notice = False, None
        if recent and roll < cfg.reply_fraction:
            parent_index = rng.choice(recent)
            parent = messages[parent_index]
            if parent.sender is owner:  # a recipient answers the owner
                sender, to = parent.to[0], [owner]
                cc = [p for p in parent.to[1:] + parent.cc if p is not sender][:2]
            else:
                sender, to, cc = owner, [parent.sender], [p for p in parent.cc if p is not owner][:2]
            kind, subject = "reply", "RE: " + base_subject(parent.subject)
        elif recent and roll < cfg.reply_fraction + cfg.forward_fraction:
            parent_index = rng.choice(recent)
            parent = messages[parent_index]
            sender, to, cc = owner, audience(rng.choice((1, 1, 2, 3)), [owner, parent.sender]), []
            kind, subject = "forward", "FW: " + base_subject(parent.subject)
        else:
            parent_index, parent = None, None
            document = rng.random() < DOCUMENT_SHARE
            k = _n_recipients(rng) if not document else rng.randint(3, 30)
            if not document and rng.random() < NOTICE_SHARE:
                notice = rng.choice(notices[1])
                sender, to, cc = notices[0], [owner], []
            elif rng.random() < 0.45 and not document:
                sender = owner
                to = audience(k, [owner])
                cc = audience(rng.choice((0, 0, 0, 1, 2)), [owner, *to])
            else:
                sender = rng.choice(contacts) if rng.random() < 0.6 else cast.draw(1, exclude=[owner])[0]
                to = [owner] + audience(k - 1, [owner, sender])
                rng.shuffle(to)
                cc = audience(rng.choice((0, 0, 1)), [owner, sender, *to])
            kind, subject = "new", prose.subject(rng) if notice is None else f"Notice {notice + 1}"
        depth = 0
        if parent is not None:
            parent.is_parent = True
            depth = parent.depth + 1
        folder = _pick_folder(rng, cfg.folders, sent=sender is owner)
        copy_folder = None
        if rng.random() < cfg.copy_fraction:
            choices = [f for f in cfg.folders if f != folder]
            copy_folder = "all_documents" if "all_documents" in choices else rng.choice(choices)
        messages.append(Message(
            owner=owner, when=when, sender=sender, to=to, cc=cc, subject=subject, kind=kind, parent=parent_index,
            depth=depth, folder=folder, copy_folder=copy_folder, signature=rng.random() < cfg.signature_fraction,
            document=document, notice=notice, snapshot=snapshot,
        ))


# --- bodies --------------------------------------------------------------------------------------


class Places:
    """Places named in prose: cities at home and abroad, states and countries, by popularity (offices and
    the big hubs first), so a few recur often and most are named once or twice."""

    def __init__(self, rng: random.Random):
        from piimem.corpus.synthetic.world import countries

        self.rng = rng
        home = [city for city, *_ in US_CITIES]
        self.names = list(dict.fromkeys(home + list(WORLD_CITIES) + list(US_STATES) + list(countries())))
        self.weights = [1.0 / (rank + 3) ** 0.2 for rank in range(len(self.names))]
        self.cum_weights = list(itertools.accumulate(self.weights))  # summed once (world.Cast.cum_weights)

    def draw(self) -> str:
        return self.rng.choices(self.names, cum_weights=self.cum_weights)[0]


@dataclass
class World:
    """What the bodies draw from: the people, the places and the open-class words."""

    cast: Cast
    places: Places
    lexicon: prose.Lexicon


def _mention(rng: random.Random, text: Text, p: Person, places: Places) -> None:
    """One sentence about a person that repeats their name, phone, e-mail or city."""
    doc = rng.choice(prose.SLOTS["doc"])
    kind = rng.choice((0, 0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 8, 8, 8))
    if kind == 0:
        text.add("I spoke with ").pii("PERSON", p.full).add(f" this morning about {doc}.")
    elif kind == 1:
        text.add("Please call ").pii("PERSON", p.full).add(" at ").pii("PHONE_NUMBER", p.phone)
        text.add(f" if you have questions on {doc}.")
    elif kind == 2:
        text.add("You can reach ").pii("PERSON", p.first).add(" at ").pii("EMAIL_ADDRESS", p.email)
        text.add(" while I am out.")
    elif kind == 3:
        text.pii("PERSON", p.full).add(" will be in ").pii("LOCATION", places.draw())
        text.add(f" on {rng.choice(prose.SLOTS['day'][:5])} for the {rng.choice(prose.SLOTS['meeting'])}.")
    elif kind == 4:
        text.add("Send the signed copy of " + doc + " to ").pii("PERSON", p.full).add(" at ")
        text.pii("EMAIL_ADDRESS", p.email).add(".")
    elif kind == 5:
        text.pii("PERSON", p.full).add(" in ").pii("LOCATION", p.city)
        text.add(f" has the latest numbers for {rng.choice(prose.SLOTS['period'])}.")
    elif kind == 6:
        text.add("I copied ").pii("PERSON", p.first).add(" since ").add(rng.choice(("he", "she")))
        text.add(f" owns {doc}.")
    elif kind == 7:
        text.add("According to ").pii("PERSON", p.full).add(f", {prose.fill(rng, '{group}')} wants {doc} by ")
        text.add(rng.choice(prose.SLOTS["day"]) + ".")
    else:
        text.pii("PERSON", p.first).add(f" asked whether we could {rng.choice(prose.SLOTS['task'])}.")


def _place_sentence(rng: random.Random, text: Text, places: Places) -> None:
    kind = rng.randrange(4)
    place = places.draw()
    if kind == 0:
        text.add(f"The {rng.choice(prose.SLOTS['meeting'])} will be in ").pii("LOCATION", place).add(" this year.")
    elif kind == 1:
        text.add("I will be in ").pii("LOCATION", place).add(f" {rng.choice(prose.SLOTS['day'])}.")
    elif kind == 2:
        text.add("Demand in ").pii("LOCATION", place).add(f" was {rng.choice(prose.SLOTS['adjective'])} again.")
    else:
        text.add("We are looking at a new deal in ").pii("LOCATION", place).add(".")


def _own_text(rng: random.Random, text: Text, n: int, m: Message, world: World) -> None:
    """n sentences of prose, some of them naming a person or a place."""
    for i, sentence in enumerate(prose.sentences(rng, lexicon=world.lexicon, n=n)):
        if i:
            text.add("\n\n" if rng.random() < 0.15 else " ")
        roll = rng.random()
        if roll < 0.22:
            usual = [p for p in m.to + m.cc if p is not m.sender]
            person = rng.choice(usual) if usual and rng.random() < 0.3 else world.cast.draw(1, exclude=[m.sender])[0]
            _mention(rng, text, person, world.places)
        elif roll < 0.3:
            _place_sentence(rng, text, world.places)
        else:
            text.add(sentence)


def _document(rng: random.Random, text: Text, world: World) -> None:
    """A long text passed around by mail: an organisation announcement, minutes or a market note."""
    kind = rng.randrange(3)
    if kind == 0:
        text.add("Please join me in welcoming the following people to their new roles:\n\n")
        for p in world.cast.draw(rng.randint(5, 40)):
            text.pii("PERSON", p.full).add(f", {p.title}, ").pii("LOCATION", p.city)
            text.add(f" - {prose.fill(rng, '{group}')}")
            if rng.random() < 0.15:
                text.add(", ").pii("PHONE_NUMBER", p.phone)
            text.add(".\n")
        text.add("\n" + " ".join(prose.sentences(rng, lexicon=world.lexicon, n=rng.randint(3, 8))))
    elif kind == 1:
        text.add("Minutes of the " + rng.choice(prose.SLOTS["meeting"]) + "\n\nAttendees: ")
        text.join(world.cast.draw(rng.randint(6, 24)), ", ")
        text.add("\n\n")
        for _ in range(rng.randint(6, 25)):
            text.add("- " + " ".join(prose.sentences(rng, lexicon=world.lexicon, n=rng.randint(1, 4))) + "\n")
    else:
        text.add(f"{prose.fill(rng, '{Commodity}')} market update\n\n")
        for _ in range(rng.randint(8, 30)):
            if rng.random() < 0.5:
                text.pii("LOCATION", world.places.draw()).add(": ")
            text.add(" ".join(prose.sentences(rng, lexicon=world.lexicon, n=rng.randint(1, 3))) + "\n")


def render_body(rng: random.Random, m: Message, messages: list[Message], world: World) -> None:
    text = Text()
    single = len(m.to) == 1
    if m.notice is not None:
        text.add(prose.notice(rng, m.notice))  # (notices and forwards host no canary: _canary_hosts)
    elif m.kind == "forward" and rng.random() < 0.5:
        pass  # a bare forward, as often in Enron: no note of one's own
    else:
        if single and rng.random() < 0.7:
            text.add(rng.choice(prose.GREETINGS)).pii("PERSON", m.to[0].first)
            text.add(rng.choice((",\n\n", " -\n\n", "\n\n")))
        elif not single and rng.random() < 0.5:
            text.add(rng.choice(prose.GROUP_GREETINGS))
        if m.document:
            _document(rng, text, world)
        elif m.kind == "forward":
            text.add(rng.choice(("FYI - see below.", "Please see below.", "See the note below.", "FYI")))
            if rng.random() < 0.5:
                text.add(" ")
                _own_text(rng, text, rng.randint(1, 3), m, world)
        else:
            n = max(1, min(60, round(rng.lognormvariate(math.log(SENTENCES_MEDIAN), SENTENCES_SIGMA))))
            _own_text(rng, text, n, m, world)
        _canary_sentences(text, m)
        closing = rng.choice(prose.CLOSINGS)
        if rng.random() < 0.75:
            text.add("\n\n" + closing).pii("PERSON", m.sender.first).add("\n")
        if m.signature:
            _signature(text, m.sender)
    if m.kind == "reply":
        parent = messages[m.parent]
        text.add("\n -----Original Message-----\nFrom: \t").pii("PERSON", parent.sender.full)
        text.add(" [mailto:").pii("EMAIL_ADDRESS", parent.sender.email).add("]\n")
        text.add(f"Sent:\t{_quote_date(parent.when)}\nTo:\t").join(parent.to, "; ").add("\n")
        if parent.cc:
            text.add("Cc:\t").join(parent.cc, "; ").add("\n")
        text.add(f"Subject:\t{parent.subject}\n\n").embed(parent.body, parent.body_spans)
    elif m.kind == "forward":
        parent = messages[m.parent]
        site = m.sender.city[:3].upper()
        text.add("\n---------------------- Forwarded by ").pii("PERSON", m.sender.full)
        text.add(f"/{site}/CORP on {_notes_date(m.when, seconds=False)} ---------------------------\n\n\n")
        text.pii("PERSON", parent.sender.full).add(" <").pii("EMAIL_ADDRESS", parent.sender.email)
        text.add(f"> on {_notes_date(parent.when, seconds=True)}\nTo: ").join(parent.to, ", ", display=True)
        text.add("\ncc: ").join(parent.cc, ", ", display=True)
        text.add(f"\nSubject: {parent.subject}\n\n").embed(parent.body, parent.body_spans)
    m.body, m.body_spans = text.render()


def _canary_sentences(text: Text, m: Message) -> None:
    """The message's canaries, each in the sentence chosen when it was planted (no draw here, so the canaries
    never shift the generator's stream)."""
    for entity_type, value, r, sentence in m.canaries:
        before, after = sentence.split("{v}")
        text.add(" " + before).pii(entity_type, value, canary_repetitions=r).add(after)


def _signature(text: Text, p: Person) -> None:
    text.add("\n\n").pii("PERSON", p.full).add(f"\n{p.title}\n{p.company}\nPhone: ")
    text.pii("PHONE_NUMBER", p.phone).add("\nE-mail: ").pii("EMAIL_ADDRESS", p.email)
    # One address line: with the street on a line of its own, spaCy tends to read "Willow Lane\nHouston"
    # as a name and misses the city.
    text.add(f"\n{p.street}, ").pii("LOCATION", p.city).add(f", {p.state} {p.zip}\n")


def headers(m: Message, folder_label: str) -> list[tuple[str, Text]]:
    """The header block in the order of the CMU files, each value with its PII spans."""
    owner = m.owner
    block = [
        ("Message-ID", Text().add(m.message_id)),
        ("Date", Text().add(header_date(m.when))),
        ("From", Text().pii("EMAIL_ADDRESS", m.sender.email)),
        ("To", Text().join(m.to, ", ", as_email=True)),
    ]
    if m.cc:
        block.append(("Cc", Text().join(m.cc, ", ", as_email=True)))
    block += [
        ("Subject", Text().add(m.subject)),
        ("Mime-Version", Text().add("1.0")),
        ("Content-Type", Text().add("text/plain; charset=us-ascii")),
        ("Content-Transfer-Encoding", Text().add("7bit")),
        ("X-From", Text().person(m.sender, display=True)),
        ("X-To", Text().join(m.to, ", ", display=True)),
        ("X-cc", Text().join(m.cc, ", ", display=True)),
        ("X-bcc", Text()),
        ("X-Folder", Text().add(f"\\{owner.mailbox_id}_{m.snapshot}\\Notes Folders\\{folder_label}")),
        ("X-Origin", Text().add(owner.mailbox_id.title())),
        ("X-FileName", Text().add(f"{owner.first[0].lower()}{owner.last.lower()} (Non-Privileged).pst")),
    ]
    return block
