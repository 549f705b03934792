"""Damaged e-mail for tests: a maildir of broken files made from intact messages, at test time.

`make_damaged_maildir(root, sources, seed=...)` writes, under `root`, files of every kind of damage real
mailboxes and copies of them hold (NUL bytes, truncation, empty and random files, a missing header
separator, broken MIME, duplicate headers, mixed line endings, invalid encodings, very long bodies, lines
and headers, deep folders, links, FIFOs, odd names) and returns what the parser should make of each:
parsed, quarantined with which reason, or skipped (hidden). The sources are the raw bytes of intact
messages (the real sample's, or made-up ones); nothing here holds any text of them, and the damaged
files live only in the test's temporary folder.
"""

from __future__ import annotations

import base64
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

PARSED = "parsed"
SKIPPED = "skipped"
# A made-up address planted near the end of every long body: detection must find it past spaCy's limit.
LATE_ADDRESS = "late.reader@example.org"


@dataclass(frozen=True)
class DamagedFile:
    path: str  # relative to the root, "/"-joined, as the parser reports it
    kind: str
    expected: str  # PARSED, SKIPPED, or the quarantine reason (a prefix when it ends with "(")

    def matches(self, outcome: str) -> bool:
        if self.expected.endswith("("):
            return outcome.startswith(self.expected)
        return outcome == self.expected


def _split(message: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of a message; LF line ends."""
    message = message.replace(b"\r\n", b"\n")
    head, _, body = message.partition(b"\n\n")
    return head, body


def _without(head: bytes, *names: bytes) -> bytes:
    """The header block less the named fields (and their folded continuation lines)."""
    kept, skipping = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() in names
        if not skipping:
            kept.append(line)
    return b"\n".join(kept)


def _mime(head: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    head = _without(head, b"content-type", b"content-transfer-encoding", b"mime-version")
    return head + b"\nMIME-Version: 1.0\nContent-Type: " + content_type + b"\n" + extra


def _b64_lines(rng: random.Random, n_chars: int) -> bytes:
    """Lines of base64 of random bytes, as an attachment pasted inline: `n_chars` characters or a few more."""
    raw = bytes(rng.getrandbits(8) for _ in range(n_chars * 3 // 4 + 57))
    return base64.encodebytes(raw)[:n_chars]


# --- damage applied to one message's bytes: (rng, message) -> bytes --------------------------------------

def _nul_byte(rng, message):
    at = rng.randrange(len(message))
    return message[:at] + b"\x00" + message[at:]


def _truncated_in_headers(rng, message):
    head, _ = _split(message)
    first = head.find(b"\n") + 1  # keep the first whole header line
    return head[:rng.randint(first + 1, max(first + 1, len(head) - 1))]


def _truncated_in_body(rng, message):
    head, body = _split(message)
    return head + b"\n\n" + body[:rng.randint(0, max(0, len(body) - 1))]


def _a_few_bytes(rng, message):
    return message[:rng.randint(1, 5)].replace(b":", b"")


def _empty(rng, message):
    return b""


def _blank(rng, message):
    return rng.choice([b" ", b"\n", b"\r\n\r\n", b" \t \n \n"])


def _random_bytes(rng, message):
    data = bytearray(rng.getrandbits(8) for _ in range(rng.randint(200, 4000)))
    data[rng.randrange(len(data))] = 0  # random bytes nearly always hold a NUL; make sure
    return bytes(data)


def _random_text(rng, message):
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
             for _ in range(rng.randint(5, 300))]
    return ("lorem " + " ".join(words) + "\n").encode()  # "lorem " first: never a header line


def _no_separator(rng, message):
    head, body = _split(message)
    return head + b"\n" + body.lstrip(b"\n")


def _broken_boundary(rng, message):
    head, body = _split(message)
    parts = b"--OTHER\nContent-Type: text/plain\n\n" + body + b"\n--OTHER--\n"
    return _mime(head, b'multipart/mixed; boundary="DECLARED"') + b"\n" + parts


def _unclosed_multipart(rng, message):
    head, body = _split(message)
    cut = body[:rng.randint(0, len(body))]
    parts = (b"preamble\n--B1\nContent-Type: text/plain; charset=us-ascii\n\n" + cut +
             b"\n--B1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" +
             _b64_lines(rng, 300))  # no closing --B1--, the attachment cut short
    return _mime(head, b'multipart/mixed; boundary="B1"') + b"\n" + parts


def _duplicate_headers(rng, message):
    head, body = _split(message)
    extra = b"\nSubject: a second subject\nFrom: second.sender@example.org\nTo: second.to@example.org" \
            b"\nDate: not a date at all\nMessage-ID: <second@example.org>"
    return head + extra + b"\n\n" + body


def _mixed_line_endings(rng, message):
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    return b"".join(line + rng.choice([b"\n", b"\r\n", b"\r"]) for line in lines)


def _invalid_utf8(rng, message):
    head, body = _split(message)
    head = _mime(head, b"text/plain; charset=utf-8")
    return head + b"\n" + body + b"\n\xff\xfe caf\xe9 \xc3\x28 \xed\xa0\x80\n"


def _unknown_charset(rng, message):
    head, body = _split(message)
    return _mime(head, b'text/plain; charset="x-no-such-charset"') + b"\n" + body + b"\nna\xefve\n"


def _bad_base64(rng, message):
    head, body = _split(message)
    head = _mime(head, b"text/plain", b"Content-Transfer-Encoding: base64\n")
    return head + b"\n" + b"!!not*base64$$\n" + base64.encodebytes(body)[:-7]


def _bad_encoded_words(rng, message):
    head, body = _split(message)
    head = _without(head, b"subject") + b"\nSubject: =?x-bogus?Q?caf=E9?= =?utf-8?B?!!!?= =?utf-8?Q?ok?="
    return head + b"\n\n" + body


def _mbox_from_line(rng, message):
    return b"From mailer@example.org Mon Jan  1 00:00:00 2001\n" + message


def _html_only(rng, message):
    head, body = _split(message)
    markup = b"<html><body><p>" + body.replace(b"\n", b"<br>") + b"</p><script>x()</script></body></html>"
    return _mime(head, b"text/html; charset=us-ascii") + b"\n" + markup


def _long_body(rng, message, chars):
    head, body = _split(message)
    pasted = _b64_lines(rng, chars)
    return head + b"\n\n" + body + b"\n" + pasted + b"\nWrite to " + LATE_ADDRESS.encode() + b" please.\n"


def _long_line(rng, message, chars=120_000):
    head, body = _split(message)
    line = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "report", "figure"]) for _ in range(chars // 6))
    return head + b"\n\n" + body + b"\n" + line.encode()


def _long_header(rng, message, n=3000):
    head, body = _split(message)
    recipients = b",\n\t".join(b"user%d@example.org" % i for i in range(n))
    return _without(head, b"to") + b"\nTo: " + recipients + b"\n\n" + body


def _too_large(rng, message, size):
    head, body = _split(message)
    return head + b"\n\n" + body + b"\n" + b"y" * (size - len(head) - len(body))


CONTENT_KINDS = {  # kind: (damage, expected)
    "intact": (lambda rng, m: m, PARSED),
    "nul_byte": (_nul_byte, "binary content (NUL bytes)"),
    "truncated_in_headers": (_truncated_in_headers, PARSED),
    "truncated_in_body": (_truncated_in_body, PARSED),
    "a_few_bytes": (_a_few_bytes, "no header block"),
    "empty": (_empty, "empty file"),
    "blank": (_blank, "empty file"),
    "random_bytes": (_random_bytes, "binary content (NUL bytes)"),
    "random_text": (_random_text, "no header block"),
    "no_header_separator": (_no_separator, PARSED),
    "broken_mime_boundary": (_broken_boundary, PARSED),
    "unclosed_multipart": (_unclosed_multipart, PARSED),
    "duplicate_headers": (_duplicate_headers, PARSED),
    "mixed_line_endings": (_mixed_line_endings, PARSED),
    "invalid_utf8": (_invalid_utf8, PARSED),
    "unknown_charset": (_unknown_charset, PARSED),
    "bad_base64": (_bad_base64, PARSED),
    "bad_encoded_words": (_bad_encoded_words, PARSED),
    "mbox_from_line": (_mbox_from_line, PARSED),
    "html_only": (_html_only, PARSED),
    "long_line": (_long_line, PARSED),
    "long_header": (_long_header, PARSED),
}
# Kinds whose files cost seconds each further down (long texts): one of each unless asked otherwise.
HEAVY_KINDS = ("long_body", "long_line", "long_header", "too_large")


def make_damaged_maildir(root: Path, sources: list[bytes], *, seed: int, per_kind: int = 1,
                         long_body_chars: int = 1_100_000, max_file_bytes: int = 10_000_000,
                         heavy_per_kind: int = 1) -> list[DamagedFile]:
    """Write the damaged maildir under `root` (which must not exist) and return every file made.

    `per_kind` files of each content damage (each from another source, seeded), `heavy_per_kind` of the
    long ones; `long_body_chars`: characters pasted into each long body (above spaCy's 1,000,000 by
    default); `max_file_bytes`: the parser's limit, just exceeded by the too-large file.
    """
    root = Path(root)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    made: list[DamagedFile] = []

    def put(rel: str, data: bytes, kind: str, expected: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made.append(DamagedFile(rel, kind, expected))

    kinds = dict(CONTENT_KINDS)
    kinds["long_body"] = (lambda r, m: _long_body(r, m, long_body_chars), PARSED)
    kinds["too_large"] = (lambda r, m: _too_large(r, m, max_file_bytes + 1), "file larger than max_file_bytes (")
    for kind, (damage, expected) in kinds.items():
        count = heavy_per_kind if kind in HEAVY_KINDS else per_kind
        for i in range(count):
            source = rng.choice(sources)
            put(f"box{i % 4:02d}/{kind}/{i}.", damage(rng, source), kind, expected)

    # Where the file is, and what it is, rather than what it holds.
    message = rng.choice(sources)
    deep = "/".join(f"level{d:02d}" for d in range(40))
    put(f"box00/{deep}/1.", message, "deep_folder", PARSED)
    put("stray-at-root.", message, "at_root", "not in a mailbox directory")
    put("box01/odd/.DS_Store", b"\x00\x01binary", "hidden", SKIPPED)
    put("box01/.hidden-folder/1.", message, "hidden", SKIPPED)
    links = root / "box02" / "links"
    links.mkdir(parents=True)
    (links / "to-file.").symlink_to(root / "box00" / "intact" / "0.")
    made.append(DamagedFile("box02/links/to-file.", "link_to_file", PARSED))
    (links / "to-folder").symlink_to(root / "box00" / "intact", target_is_directory=True)
    made.append(DamagedFile("box02/links/to-folder", "link_to_folder", "link to a directory (not followed)"))
    (links / "dangling.").symlink_to(root / "box02" / "no-such-file")
    made.append(DamagedFile("box02/links/dangling.", "dangling_link", "broken link ("))
    (links / "loop-a.").symlink_to(links / "loop-b.")
    (links / "loop-b.").symlink_to(links / "loop-a.")
    made += [DamagedFile(f"box02/links/loop-{x}.", "link_loop", "broken link (") for x in "ab"]
    os.mkfifo(root / "box02" / "links" / "fifo.")
    made.append(DamagedFile("box02/links/fifo.", "fifo", "not a regular file"))
    (root / "box01" / "names").mkdir(parents=True)
    with open(os.fsencode(root / "box01" / "names") + b"/caf\xe9.", "wb") as fh:  # a Latin-1 file name
        fh.write(message)
    made.append(DamagedFile("box01/names/caf\ufffd.", "name_not_utf8", "file name is not valid UTF-8"))
    return made


def source_messages(maildir: Path, n: int, seed: int) -> list[bytes]:
    """`n` seeded picks of the intact files of a maildir that start with a known header line."""
    files = sorted(p for p in Path(maildir).rglob("*") if p.is_file() and not p.name.startswith("."))
    rng = random.Random(seed)
    picked = []
    for path in rng.sample(files, len(files)):
        data = path.read_bytes()
        if re.match(rb"(Message-ID|From|Date|Subject|To):", data, re.IGNORECASE) and b"\n\n" in data.replace(
                b"\r\n", b"\n"):
            picked.append(data)
        if len(picked) == n:
            break
    return picked
