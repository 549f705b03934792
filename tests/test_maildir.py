import hashlib
import os
from datetime import datetime, timezone

import polars as pl
import pytest

from piimem.corpus.maildir import DEFAULT_MAX_FILE_BYTES, body_hash, parse_maildir, render_text


def put(root, rel, data: bytes):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def headers(*lines: str, eol: str = "\n") -> bytes:
    return (eol.join(lines) + eol + eol).encode("ascii")


PLAIN = headers(
    "Message-ID: <1.JavaMail@example>",
    "Date: Mon, 14 May 2001 16:39:00 -0700 (PDT)",
    "From: alice@example.com",
    "To: bob@example.com, carol@example.com,",
    "\tdave@example.com",
    "Subject: Quarterly numbers",
    "X-From: Alice A",
    "X-To: Bob B",
    "X-cc: ",
    "Content-Type: text/plain; charset=us-ascii",
    eol="\r\n",
) + b"Line one\r\nLine two\r\n"


@pytest.fixture
def maildir_good(tmp_path):
    """A small tree of parseable but awkward messages; returns (root, {name: relative path})."""
    root = tmp_path / "maildir"
    files = {
        "crlf": ("alice/inbox/1.", PLAIN),
        "latin1": ("alice/inbox/2.", headers(
            "Message-ID: <2@x>", "Date: Tue, 15 May 2001 08:00:00 +0000", "From: alice@example.com",
            "Subject: latin", "Content-Type: text/plain; charset=iso-8859-1",
        ) + b"caf\xe9 cr\xe8me\n"),
        "mislabeled": ("alice/inbox/3.", headers(
            "Message-ID: <3@x>", "From: alice@example.com", "Subject: smart quotes",
            "Content-Type: text/plain; charset=us-ascii",
        ) + b"it\x92s done\n"),
        "unknown_charset": ("alice/inbox/4.", headers(
            "Message-ID: <4@x>", "From: alice@example.com", "Subject: odd charset",
            'Content-Type: text/plain; charset="x-unknown-foo"',
        ) + "naïve résumé\n".encode("utf-8")),
        "multipart": ("alice/inbox/5.", headers(
            "Message-ID: <5@x>", "From: alice@example.com", "Subject: parts",
            "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="BND"',
        ) + (
            b"preamble\n--BND\nContent-Type: text/plain; charset=utf-8\n\nfirst part\n"
            b"--BND\nContent-Type: text/html\n\n<p>html twin</p>\n"
            b"--BND\nContent-Type: text/plain; charset=iso-8859-1\n"
            b"Content-Transfer-Encoding: quoted-printable\n\n"
            b"second =E9t=\n=E9\n"
            b"--BND\nContent-Type: text/plain\n"
            b"Content-Disposition: attachment; filename=\"a.txt\"\n\nattached\n"
            b"--BND--\n"
        )),
        "html_only": ("alice/inbox/6.", headers(
            "Message-ID: <6@x>", "From: alice@example.com", "Subject: html",
            "Content-Type: text/html; charset=utf-8",
        ) + b"<html><style>p {color: red}</style><body><p>Hello&nbsp;<b>world</b> &amp; co</p>"
            b"<br>bye</body></html>\n"),
        "encoded_words": ("alice/inbox/7.", headers(
            "Message-ID: <7@x>", "From: =?iso-8859-1?q?Ren=E9?= <rene@example.com>",
            "Subject: =?utf-8?q?Caf=C3=A9_menu?= and =?utf-8?b?w7xiZXI=?=",
            "To: =?x-bogus-charset?q?plain?= <p@example.com>",
        ) + b"body\n"),
        "missing_id_date": ("alice/inbox/8.", headers("From: alice@example.com", "Subject: no id") + b"x\n"),
        "bad_date": ("alice/inbox/9.", headers(
            "Message-ID: <9@x>", "Date: sometime last week", "From: alice@example.com",
        ) + b"y\n"),
        "headers_only": ("alice/notes/1.", b"Message-ID: <10@x>\nFrom: alice@example.com\nSubject: empty"),
        # Same message filed twice more in alice's mailbox and once in bob's (not a copy: other mailbox).
        "copy_all_documents": ("alice/all_documents/1.", PLAIN),
        "copy_threads": ("alice/discussion_threads/deep/1.", PLAIN.replace(b"\r\n", b"\n")),
        "other_mailbox": ("bob/inbox/1.", PLAIN),
    }
    for rel, data in files.values():
        put(root, rel, data)
    put(root, "alice/.DS_Store", b"\x00\x01binary junk")
    put(root, ".hidden/1.", b"ignored")
    return root, {name: rel for name, (rel, _) in files.items()}


def rows_by_path(messages: pl.DataFrame) -> dict:
    return {row["path"]: row for row in messages.iter_rows(named=True)}


def test_good_messages_decode(maildir_good):
    root, names = maildir_good
    result = parse_maildir(root)
    assert result.quarantine.height == 0
    assert result.messages.height == len(names)  # dotfiles and dot-directories are skipped
    rows = rows_by_path(result.messages)
    r = {name: rows[rel] for name, rel in names.items()}

    crlf = r["crlf"]
    assert crlf["body"] == "Line one\nLine two\n"
    assert crlf["to"] == "bob@example.com, carol@example.com, dave@example.com"
    assert (crlf["mailbox"], crlf["folder"], crlf["message_id"]) == ("alice", "inbox", "<1.JavaMail@example>")
    assert crlf["date"] == datetime(2001, 5, 14, 23, 39, tzinfo=timezone.utc)
    extra = (crlf["x_from"], crlf["x_to"], crlf["x_cc"], crlf["cc"], crlf["bcc"])
    assert extra == ("Alice A", "Bob B", "", "", "")
    assert crlf["size"] == len(PLAIN)
    assert r["copy_threads"]["folder"] == "discussion_threads/deep"

    assert r["latin1"]["body"] == "café crème\n"
    assert r["mislabeled"]["body"] == "it\u2019s done\n"  # cp1252 fallback for 8-bit text labeled us-ascii
    assert r["unknown_charset"]["body"] == "naïve résumé\n"
    assert r["multipart"]["body"] == "first part\nsecond été"  # the CRLF before a boundary belongs to it
    assert r["html_only"]["body"] == "Hello\xa0world & co\n\nbye"
    assert r["encoded_words"]["subject"] == "Café menu and über"
    assert r["encoded_words"]["from"] == "René <rene@example.com>"
    assert r["encoded_words"]["to"] == "plain <p@example.com>"
    assert r["missing_id_date"]["message_id"] == (
        "<missing-" + hashlib.sha1(names["missing_id_date"].encode()).hexdigest()[:16] + ">"
    )
    assert r["missing_id_date"]["date"] is None and r["bad_date"]["date"] is None
    assert r["headers_only"]["body"] == "" and r["headers_only"]["subject"] == "empty"
    assert r["latin1"]["body_hash"] == hashlib.sha1("café crème".encode()).hexdigest()


def test_table_layout_and_copies(maildir_good):
    root, names = maildir_good
    messages = parse_maildir(root).messages
    assert messages["path"].to_list() == sorted(names.values())
    assert messages["doc_id"].to_list() == list(range(len(names)))
    assert messages.schema["date"] == pl.Datetime("us", "UTC")
    assert messages.schema["duplicate_of"] == pl.Int64
    doc = {row["path"]: row["doc_id"] for row in messages.iter_rows(named=True)}
    dup = {row["path"]: row["duplicate_of"] for row in messages.iter_rows(named=True)}
    first = doc[names["copy_all_documents"]]  # "all_documents" sorts before "discussion_threads", "inbox"
    assert dup[names["crlf"]] == first
    assert dup[names["copy_threads"]] == first  # CRLF vs LF file: still the same message
    assert dup[names["copy_all_documents"]] is None
    assert dup[names["other_mailbox"]] is None
    assert sum(v is not None for v in dup.values()) == 2


def test_malformed_files_are_quarantined_next_to_good_ones(tmp_path):
    root = tmp_path / "maildir"
    put(root, "carol/inbox/1.", PLAIN)
    put(root, "carol/inbox/2.", PLAIN.replace(b"charset=us-ascii", b"charset=x-unknown-foo"))
    put(root, "carol/junk/binary.", b"From: x@example.com\n\n\x00\x01\x02")
    put(root, "carol/junk/empty.", b"")
    put(root, "carol/junk/blank.", b"  \n\r\n")
    put(root, "carol/junk/prose.", b"Dear all,\nthe meeting moved.\n\nThanks\n")
    put(root, "carol/junk/note.", b"Note: not an e-mail\nTodo: none\n\nplain text\n")
    put(root, "stray-at-root.txt", PLAIN)
    with open(os.fsencode(root / "carol/junk") + b"/caf\xe9.", "wb") as fh:  # a Latin-1 file name
        fh.write(PLAIN)
    big = root / "carol/junk/huge."
    with open(big, "wb") as fh:
        fh.write(b"From: x@example.com\nSubject: big\n\n")
        chunk = b"x" * 1_000_000
        for _ in range(50):
            fh.write(chunk)
    big_size = big.stat().st_size

    result = parse_maildir(root)
    assert result.messages["path"].to_list() == ["carol/inbox/1.", "carol/inbox/2."]
    reasons = dict(zip(result.quarantine["path"], result.quarantine["reason"]))
    assert reasons == {
        "carol/junk/binary.": "binary content (NUL bytes)",
        "carol/junk/blank.": "empty file",
        "carol/junk/empty.": "empty file",
        "carol/junk/huge.": f"file larger than max_file_bytes ({big_size} > {DEFAULT_MAX_FILE_BYTES})",
        "carol/junk/note.": "no header block",
        "carol/junk/prose.": "no header block",
        "stray-at-root.txt": "not in a mailbox directory",
        "carol/junk/caf\ufffd.": "file name is not valid UTF-8",
    }
    sizes = dict(zip(result.quarantine["path"], result.quarantine["size"]))
    assert sizes["carol/junk/huge."] == big_size > DEFAULT_MAX_FILE_BYTES and sizes["carol/junk/empty."] == 0
    assert result.quarantine["path"].to_list() == sorted(reasons)
    assert result.messages.height + result.quarantine.height == 10  # every file, once

    # With a higher limit the big file is an ordinary (if long) message.
    roomy = parse_maildir(root, max_file_bytes=60_000_000, mailboxes=["carol"])
    assert "carol/junk/huge." in roomy.messages["path"].to_list()
    with pytest.raises(ValueError, match="corpus.max_file_bytes"):
        parse_maildir(root, max_file_bytes=0)


def test_render_text():
    hdrs = {"from": "a@x", "To": "", "Subject": "hi", "Date": "today"}
    text, offset = render_text(hdrs, "the body\n", ("From", "To", "Subject"))
    assert text == "From: a@x\nSubject: hi\n\nthe body\n" and text[offset:] == "the body\n"
    assert render_text(hdrs, "b", ()) == ("b", 0)
    assert render_text({"To": ""}, "b", ("To",)) == ("b", 0)  # no non-empty header: text is the body
    assert render_text(hdrs, "", ("Subject", "FROM")) == ("Subject: hi\nFROM: a@x\n\n", 23)


def test_text_column_follows_configured_headers(maildir_good):
    root, names = maildir_good
    for text_headers in (("From", "To", "Subject"), ("Subject", "Date"), ()):
        messages = parse_maildir(root, text_headers=text_headers).messages
        for row in messages.iter_rows(named=True):
            assert row["text"][row["text_body_offset"]:] == row["body"]
        row = rows_by_path(messages)[names["crlf"]]
        if text_headers == ("Subject", "Date"):
            assert row["text"].startswith(
                "Subject: Quarterly numbers\nDate: Mon, 14 May 2001 16:39:00 -0700 (PDT)\n\n"
            )
        elif text_headers == ():
            assert (messages["text"] == messages["body"]).all()
        else:
            assert row["text"] == (
                "From: alice@example.com\nTo: bob@example.com, carol@example.com, dave@example.com\n"
                "Subject: Quarterly numbers\n\nLine one\nLine two\n"
            )


def test_mailbox_filter_and_processes(maildir_good):
    root, names = maildir_good
    only_bob = parse_maildir(root, mailboxes=["bob"]).messages
    assert only_bob["path"].to_list() == [names["other_mailbox"]] and only_bob["doc_id"].to_list() == [0]
    with pytest.raises(ValueError, match="requested mailboxes not found: \\['nobody'\\]"):
        parse_maildir(root, mailboxes=["bob", "nobody"])
    with pytest.raises(ValueError, match="plain directory names"):
        parse_maildir(root, mailboxes=["../maildir"])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        parse_maildir(root / "missing")
    assert parse_maildir(root, threads=2).messages.equals(parse_maildir(root).messages)


def test_empty_tree_gives_typed_empty_tables(tmp_path):
    result = parse_maildir(tmp_path)
    assert result.messages.height == 0 and result.quarantine.height == 0
    assert result.messages.schema["date"] == pl.Datetime("us", "UTC")
    assert list(result.quarantine.columns) == ["path", "reason", "size"]


def test_enron_mini(enron_mini_dir, enron_mini_parsed):
    # Counts only in messages: this is real people's mail.
    n_files = sum(
        1
        for _dirpath, _dirnames, filenames in os.walk(enron_mini_dir)
        for name in filenames
        if not name.startswith(".")
    )
    assert n_files == 1041
    messages, quarantine = enron_mini_parsed.messages, enron_mini_parsed.quarantine
    assert messages.height + quarantine.height == n_files
    assert quarantine.height == 0, f"{quarantine.height} files quarantined"
    mailbox_counts = sorted(messages.group_by("mailbox").len()["len"].to_list())
    assert mailbox_counts == [113, 234, 309, 385]
    assert messages["mailbox"].n_unique() == 4
    assert messages["date"].null_count() == 0
    assert messages["date"].dt.year().is_between(1979, 2002).mean() > 0.99
    assert messages["message_id"].str.starts_with("<missing-").sum() == 0
    assert messages["doc_id"].to_list() == list(range(messages.height))
    assert messages["path"].is_sorted()
    assert (messages["from"] != "").all()
    assert not messages["body"].str.contains("\r").any()
    offsets_ok = all(
        t[o:] == b for t, o, b in zip(messages["text"], messages["text_body_offset"], messages["body"])
    )
    assert offsets_ok
    assert all(body_hash(b) == h for b, h in zip(messages["body"], messages["body_hash"]))

    copies = messages.filter(pl.col("duplicate_of").is_not_null())
    assert copies.height == 162
    originals = copies.join(messages, left_on="duplicate_of", right_on="doc_id", suffix="_orig")
    assert originals.height == copies.height
    assert (originals["mailbox"] == originals["mailbox_orig"]).all()
    assert (originals["body_hash"] == originals["body_hash_orig"]).all()
    assert (originals["duplicate_of"] < originals["doc_id"]).all()
    assert originals["duplicate_of_orig"].null_count() == originals.height  # originals are not copies
    assert copies.filter(pl.col("folder") == "discussion_threads").height == 57
