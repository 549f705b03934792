"""Parse a maildir tree (``<mailbox>/<folder>/.../<file>``) into the `messages` and `quarantine` tables.

Every regular file under the root becomes exactly one row: a parsed message in `messages`, or a row
in `quarantine` (path, reason, size) saying why it could not be used. Names starting with "." (files
and directories, e.g. ``.DS_Store``, ``.git``) are skipped and appear in neither table. A symbolic link
to a file is read as that file (wherever it points); a link to a directory is not followed and is one
quarantine row, as is a directory that cannot be listed.

Quarantine reasons (stable strings; tests and reports count them):

- ``"file larger than max_file_bytes (N > M)"`` -- size from stat, the file is never read
- ``"empty file"`` -- zero bytes, or only whitespace
- ``"binary content (NUL bytes)"`` -- a NUL byte anywhere in the file
- ``"no header block"`` -- the file does not start with RFC 822 ``Name: value`` lines, or none of its
  leading header lines is a known message header (From, To, Subject, Date, Message-ID, ...)
- ``"not in a mailbox directory"`` -- a file directly under the root (no mailbox component)
- ``"not a regular file"`` -- a FIFO, socket or device (never opened)
- ``"broken link (<strerror>)"`` -- a symbolic link whose target is missing, or a loop of links
- ``"link to a directory (not followed)"`` -- the row's path is the link's; its tree is not read
- ``"unreadable: <strerror>"`` -- an OSError while reading (the path itself is not repeated)
- ``"unreadable directory: <strerror>"`` -- the row's path is the directory's
- ``"file name is not valid UTF-8"`` -- path shown with replacement characters, size 0
- ``"parse error (<ExceptionType>)"`` -- anything the e-mail parser could not recover from

Decoding choices (why: the Enron files are old, mostly us-ascii, with some mislabeled 8-bit text):
header values are RFC 2047-decoded and unfolded (any whitespace run containing a line break
becomes one space); bodies use the declared charset, then UTF-8, then cp1252 with replacement
characters, so an unknown or wrong charset never stops a file from being parsed. Multipart bodies are
the text/plain parts (not attachments) joined by "\\n"; when there is no text/plain part, text/html
parts with their tags crudely stripped. Unparseable dates become null, not quarantine.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import hashlib
import html
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.errors import HeaderParseError
from email.header import decode_header
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path

import polars as pl

from piimem.progress import Progress
from piimem.workers import WorkerFailed, map_in_processes

DEFAULT_TEXT_HEADERS = ("From", "To", "Subject")
# Enron's largest real message is a few MB; 10 MB leaves room and stops runaway files early.
DEFAULT_MAX_FILE_BYTES = 10_000_000

# Header name -> messages column. To/Cc/Bcc may appear more than once; all occurrences are joined.
HEADER_COLUMNS = {
    "from": "from",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "x-from": "x_from",
    "x-to": "x_to",
    "x-cc": "x_cc",
    "subject": "subject",
}
_MULTI_VALUED = {"to", "cc", "bcc"}

MESSAGES_SCHEMA = {
    "doc_id": pl.Int64,
    "message_id": pl.Utf8,
    "mailbox": pl.Utf8,
    "folder": pl.Utf8,
    "path": pl.Utf8,
    "date": pl.Datetime("us", "UTC"),
    **{column: pl.Utf8 for column in HEADER_COLUMNS.values()},
    "body": pl.Utf8,
    "text": pl.Utf8,
    "text_body_offset": pl.Int64,
    "size": pl.Int64,
    "body_hash": pl.Utf8,
    "duplicate_of": pl.Int64,
}
QUARANTINE_SCHEMA = {"path": pl.Utf8, "reason": pl.Utf8, "size": pl.Int64}

# A header field name is printable US-ASCII without ":"; obsolete syntax allows blanks before the colon.
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_KNOWN_HEADERS = frozenset(
    b"from to cc bcc subject date message-id sender reply-to received return-path mime-version "
    b"content-type content-transfer-encoding in-reply-to references x-from x-to x-mailer".split()
)
_LINEBREAK_RUN = re.compile(r"\s*[\r\n]\s*")
_HTML_DROP = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>|<!--.*?-->")
_HTML_BREAK = re.compile(r"(?i)<\s*(?:br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>")
_HTML_TAG = re.compile(r"(?s)<[^>]*>")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_SURROGATE = re.compile("[\udc80-\udcff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class ParseResult:
    messages: pl.DataFrame
    quarantine: pl.DataFrame


def render_text(headers: Mapping[str, str], body: str, text_headers: Sequence[str]) -> tuple[str, int]:
    """The training text of one message and the offset of its body inside it.

    One "Name: value" line per configured header that is non-empty (name spelled as configured,
    looked up case-insensitively in `headers`), then a blank line, then the body. Without any header
    line (none configured, or all empty) the text is the body itself.
    """
    lookup = {name.lower(): value for name, value in headers.items()}
    lines = []
    for name in text_headers:
        value = lookup.get(name.lower(), "")
        if value:
            lines.append(f"{name}: {value}\n")
    if not lines:
        return body, 0
    prefix = "".join(lines) + "\n"
    return prefix + body, len(prefix)


def body_hash(body: str) -> str:
    """sha1 of the body with whitespace runs collapsed to one space and the ends stripped."""
    return hashlib.sha1(" ".join(body.split()).encode("utf-8")).hexdigest()


def missing_message_id(path: str) -> str:
    return "<missing-" + hashlib.sha1(path.encode("utf-8")).hexdigest()[:16] + ">"


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Declared charset, then UTF-8, then cp1252 with replacement characters: never raises."""
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            # bytes.decode rejects non-text codecs (base64, zlib, ...) with LookupError too.
            return data.decode(codecs.lookup(candidate.strip().strip('"')).name)
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace")


def _fix_surrogates(value: str) -> str:
    # compat32 keeps undecodable header bytes as surrogate escapes; turn them back into text.
    if _SURROGATE.search(value):
        return _decode_bytes(value.encode("utf-8", "surrogateescape"), None)
    return value


def _decode_header_value(raw: str) -> str:
    if "=?" in raw:
        try:
            chunks = decode_header(raw)
        except (HeaderParseError, ValueError, LookupError):
            chunks = [(raw, None)]
        parts = []
        for chunk, charset in chunks:
            if isinstance(chunk, str):
                parts.append(_fix_surrogates(chunk))
            elif charset is None:
                # decode_header hands back unencoded stretches as raw-unicode-escape bytes.
                parts.append(_fix_surrogates(chunk.decode("raw-unicode-escape", errors="replace")))
            else:
                parts.append(_decode_bytes(chunk, charset))
        value = "".join(parts)
    else:
        value = _fix_surrogates(raw)
    return _LINEBREAK_RUN.sub(" ", value).strip()


def _strip_html(markup: str) -> str:
    text = _HTML_DROP.sub("", markup)
    text = _HTML_BREAK.sub("\n", text)
    text = html.unescape(_HTML_TAG.sub("", text))
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    if not isinstance(payload, bytes):  # defensive: compat32 returns bytes for decode=True
        payload = str(payload).encode("utf-8", "surrogateescape")
    return _decode_bytes(payload, part.get_content_charset())


def _body(msg: email.message.Message) -> str:
    if msg.is_multipart():
        plain, markup = [], []
        for part in msg.walk():
            if part.is_multipart() or part.get_content_disposition() == "attachment":
                continue
            content_type = part.get_content_type()
            if content_type == "text/plain":
                plain.append(_part_text(part))
            elif content_type == "text/html":
                markup.append(_part_text(part))
        text = "\n".join(plain) if plain else "\n".join(_strip_html(m) for m in markup)
    else:
        content_type = msg.get_content_type()
        if content_type == "text/html":
            text = _strip_html(_part_text(msg))
        elif msg.get_content_maintype() == "text":
            text = _part_text(msg)
        else:
            text = ""  # a single non-text part (e.g. an attachment only) has no body text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _date_us(raw: str) -> int | None:
    """Microseconds since the epoch (UTC); None when the Date header is missing or unparseable."""
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
        if parsed.tzinfo is None:  # "-0000" or no zone: RFC 5322 says UTC with unknown local zone
            parsed = parsed.replace(tzinfo=timezone.utc)
        return (parsed - _EPOCH) // _MICROSECOND
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _has_header_block(data: bytes) -> bool:
    """True when the file starts with header lines and at least one is a known message header."""
    head = data.split(b"\n\n", 1)[0]
    lines = head.split(b"\n")
    if lines and lines[0].startswith(b"From "):  # mbox separator line before the headers
        lines = lines[1:]
    if not lines or not _HEADER_LINE.match(lines[0]):
        return False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_LINE.match(line):
            break  # the parser starts the body here (missing separator); the block so far counts
        if line.split(b":", 1)[0].strip().lower() in _KNOWN_HEADERS:
            return True
    return False


def _parse_file(root: str, text_headers: tuple[str, ...], max_file_bytes: int, rel: str) -> tuple:
    """("message", rel, size, fields...) or ("quarantine", rel, reason, size); never raises."""
    full = os.path.join(root, rel)
    try:
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            try:
                info = os.stat(full)
            except OSError as exc:
                return ("quarantine", rel, f"broken link ({exc.strerror or type(exc).__name__})", 0)
    except OSError as exc:
        return ("quarantine", rel, f"unreadable: {exc.strerror or type(exc).__name__}", 0)
    size = info.st_size
    if not stat.S_ISREG(info.st_mode):
        return ("quarantine", rel, "not a regular file", size)
    if size > max_file_bytes:
        return ("quarantine", rel, f"file larger than max_file_bytes ({size} > {max_file_bytes})", size)
    parts = rel.split("/")
    if len(parts) < 2:
        return ("quarantine", rel, "not in a mailbox directory", size)
    try:
        with open(full, "rb") as fh:
            data = fh.read(max_file_bytes + 1)
    except OSError as exc:
        return ("quarantine", rel, f"unreadable: {exc.strerror or type(exc).__name__}", size)
    if len(data) > max_file_bytes:  # grew after stat
        return ("quarantine", rel, f"file larger than max_file_bytes ({len(data)} > {max_file_bytes})", size)
    if not data.strip():
        return ("quarantine", rel, "empty file", size)
    if b"\x00" in data:
        return ("quarantine", rel, "binary content (NUL bytes)", size)
    data = data.replace(b"\r\n", b"\n")
    if not _has_header_block(data):
        return ("quarantine", rel, "no header block", size)
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        raw: dict[str, list[str]] = {}
        for name, value in msg.raw_items():
            raw.setdefault(name.strip().lower(), []).append(str(value))

        decoded: dict[str, str] = {}

        def header(name: str) -> str:
            name = name.lower()
            if name not in decoded:
                values = raw.get(name) or [""]
                if name in _MULTI_VALUED:
                    decoded[name] = ", ".join(v for v in map(_decode_header_value, values) if v)
                else:
                    decoded[name] = _decode_header_value(values[0])
            return decoded[name]

        message_id = header("message-id") or missing_message_id(rel)
        columns = [header(name) for name in HEADER_COLUMNS]
        body = _body(msg)
        text, offset = render_text({name: header(name) for name in text_headers}, body, text_headers)
        date = _date_us(header("date"))
    except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the corpus
        return ("quarantine", rel, f"parse error ({type(exc).__name__})", size)
    return ("message", rel, size, message_id, parts[0], "/".join(parts[1:-1]), date, *columns,
            body, text, offset, body_hash(body))


def list_files(
    root: str | os.PathLike, mailboxes: Iterable[str] | None = None
) -> tuple[list[str], list[tuple]]:
    """Relative "/"-joined paths of all files to parse, sorted; plus quarantine rows for unlistable dirs."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"maildir root {str(root)!r} is not a directory")
    starts = [root]
    if mailboxes is not None:
        wanted = sorted(set(mailboxes))
        odd = [m for m in wanted if not m or "/" in m or m.startswith(".")]
        if odd:
            raise ValueError(f"mailboxes must be plain directory names under {str(root)!r}, got {odd}")
        absent = [m for m in wanted if not (root / m).is_dir()]
        if absent:
            raise ValueError(f"maildir {str(root)!r}: requested mailboxes not found: {absent}")
        starts = [root / m for m in wanted]
    files: list[str] = []
    walk_problems: list[tuple] = []  # quarantine rows found while walking (directories, odd names)

    def on_error(exc: OSError) -> None:
        where = Path(exc.filename).relative_to(root).as_posix() if exc.filename else "."
        why = exc.strerror or type(exc).__name__
        walk_problems.append(("quarantine", where, f"unreadable directory: {why}", 0))

    for start in starts:
        for dirpath, dirnames, filenames in os.walk(start, onerror=on_error):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            visible = [d for d in dirnames if not d.startswith(".")]
            # os.walk lists links to directories among the directories and does not enter them: say so.
            links = [d for d in visible if os.path.islink(os.path.join(dirpath, d))]
            for name in links:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                walk_problems.append(("quarantine", shown, "link to a directory (not followed)", 0))
            dirnames[:] = [d for d in visible if d not in links]
            for name in filenames:
                if name.startswith("."):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:  # undecodable bytes in a name; the tables hold UTF-8 only
                    shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    walk_problems.append(("quarantine", shown, "file name is not valid UTF-8", 0))
                    continue
                files.append(rel)
    files.sort()
    return files, walk_problems


def parse_maildir(
    root: str | os.PathLike,
    *,
    text_headers: Sequence[str] = DEFAULT_TEXT_HEADERS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    mailboxes: Iterable[str] | None = None,
    threads: int = 1,
) -> ParseResult:
    """Parse every file under `root` into messages (sorted by path, doc_id = row) and quarantine.

    `mailboxes` restricts the walk to those top-level directories (ValueError if one is absent).
    `threads` > 1 parses in that many worker processes; results are identical to threads=1.
    """
    if max_file_bytes <= 0:
        raise ValueError(f"corpus.max_file_bytes must be a positive number of bytes, got {max_file_bytes!r}")
    text_headers = tuple(text_headers)
    files, results = list_files(root, mailboxes)
    work = partial(_parse_file, os.fspath(root), text_headers, max_file_bytes)
    with Progress(total=len(files), desc="parse maildir", unit="files") as progress:
        # Several processes: forked (see piimem.workers); a worker that dies is an error naming its files.
        processes = threads if len(files) > 1 else 1
        size = _CHUNK_FILES if processes > 1 else 1
        chunks = [files[i:i + size] for i in range(0, len(files), size)]
        try:
            for chunk_results in map_in_processes(partial(_parse_files, work), chunks, processes):
                results.extend(chunk_results)
                progress.update(len(chunk_results))
        except WorkerFailed as failure:
            failed = [rel for chunk in chunks[failure.first:failure.last + 1] for rel in chunk]
            which = repr(failed[0]) if len(failed) == 1 else \
                f"one of {len(failed)} files {failed[0]!r} .. {failed[-1]!r} (parse with one process to see which)"
            raise RuntimeError(f"parse: {failure.reason}, while parsing {which} under {os.fspath(root)!r}"
                               ) from failure
    return _tables(results)


_CHUNK_FILES = 64  # files per task of a worker process: large enough to amortise, small enough to name


def _parse_files(work, rels: list[str]) -> list[tuple]:
    return [work(rel) for rel in rels]


def first_mail_file(root: str | os.PathLike) -> str | None:
    """The first file `parse_maildir` would try to parse as a message, or None when there is none.

    A candidate is a non-hidden file (or link to one) inside a mailbox directory, found without
    listing the whole tree; cheap enough to run before any job.
    """
    root = Path(root)
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif directory != root and entry.is_file():
                    return Path(entry.path).relative_to(root).as_posix()
            except OSError:
                continue
    return None


class EmptyCorpusError(ValueError):
    """No file of the corpus could be parsed into a message."""


def quarantine_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    """Quarantined files per reason, most first; sizes in reasons read "(N > M)" (they differ per file)."""
    reasons = [re.sub(r"\(\d+ > \d+\)", "(N > M)", reason) for reason in quarantine["reason"].to_list()]
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def require_messages(result: ParseResult, corpus: str) -> None:
    """Raise EmptyCorpusError naming `corpus` and the quarantine counts when no message was parsed."""
    if result.messages.height:
        return
    if result.quarantine.height == 0:
        raise EmptyCorpusError(f"corpus {corpus}: no file to parse (expected <mailbox>/<folder>/<file> "
                               f"entries); check corpus.source and corpus.path")
    counts = ", ".join(f"{n} {reason}" for reason, n in quarantine_counts(result.quarantine).items())
    raise EmptyCorpusError(
        f"corpus {corpus}: none of its {result.quarantine.height} files could be parsed as a message; "
        f"quarantined: {counts}. Check that corpus.path is a maildir of RFC 822 messages "
        f"(<mailbox>/<folder>/<file>, each starting with headers such as From: and Subject:)"
    )


def _tables(results: list[tuple]) -> ParseResult:
    parsed = sorted((r[1:] for r in results if r[0] == "message"), key=lambda r: r[0])
    quarantined = sorted((r[1:] for r in results if r[0] == "quarantine"), key=lambda r: r[0])
    names = ["path", "size", "message_id", "mailbox", "folder", "date", *HEADER_COLUMNS.values(),
             "body", "text", "text_body_offset", "body_hash"]
    columns: dict[str, list] = {name: [row[i] for row in parsed] for i, name in enumerate(names)}
    n = len(parsed)
    columns["doc_id"] = list(range(n))

    # The same message filed in several folders of one mailbox (Enron's all_documents,
    # discussion_threads, ...): later copies point at the first by path.
    first_copy: dict[tuple, int] = {}
    duplicate_of: list[int | None] = []
    for doc_id in range(n):
        key = (columns["mailbox"][doc_id], columns["from"][doc_id], columns["date"][doc_id],
               columns["subject"][doc_id], columns["body_hash"][doc_id])
        original = first_copy.setdefault(key, doc_id)
        duplicate_of.append(None if original == doc_id else original)
    columns["duplicate_of"] = duplicate_of

    dates = pl.Series("date", columns.pop("date"), dtype=pl.Int64)
    messages = pl.DataFrame(
        {name: columns[name] for name in MESSAGES_SCHEMA if name != "date"},
        schema={name: dtype for name, dtype in MESSAGES_SCHEMA.items() if name != "date"},
    )
    messages = messages.with_columns(
        dates.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias("date")
    ).select(list(MESSAGES_SCHEMA))
    quarantine = pl.DataFrame(
        {
            "path": [r[0] for r in quarantined],
            "reason": [r[1] for r in quarantined],
            "size": [r[2] for r in quarantined],
        },
        schema=QUARANTINE_SCHEMA,
    )
    return ParseResult(messages=messages, quarantine=quarantine)
