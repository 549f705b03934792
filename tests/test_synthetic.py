"""The synthetic Enron-like maildir: determinism, exact ground truth, canaries, duplication."""

import email
import hashlib
import re
from collections import Counter, defaultdict
from email import policy
from pathlib import Path

import phonenumbers
import polars as pl
import pytest

from piimem.corpus.synthetic import (
    GROUND_TRUTH_SCHEMA,
    SyntheticConfig,
    generate_maildir,
    luhn_valid,
    without_canaries,
)
from piimem.pii import ENTITY_TYPES, normalize
from piimem.schema import default

HEADER_ORDER = [
    "Message-ID", "Date", "From", "To", "Cc", "Subject", "Mime-Version", "Content-Type",
    "Content-Transfer-Encoding", "X-From", "X-To", "X-cc", "X-bcc", "X-Folder", "X-Origin", "X-FileName",
]
REPLY_MARKER = " -----Original Message-----\n"
FORWARD_MARKER = "---------------------- Forwarded by "
SMALL = SyntheticConfig(seed=7, n_mailboxes=3, messages_per_mailbox=40, canary_repetitions=(1, 2, 4, 8),
                        canary_per_cell=1)
# The canary grid of the schema's defaults (the `corpus` fixture's).
TYPES, REPETITIONS, PER_CELL = (default(f"corpus.synthetic.canaries.{k}") for k in ("types", "repetitions", "per_cell"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "maildir"
    truth = generate_maildir(root, SyntheticConfig())
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return root, truth, files


def _parse(raw: bytes):
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    body = msg.get_payload(decode=True).decode("ascii").replace("\r\n", "\n")
    return msg, body


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_config_gives_byte_identical_corpus(tmp_path):
    first = generate_maildir(tmp_path / "a", SMALL)
    second = generate_maildir(tmp_path / "b", SMALL)
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert first.equals(second)


def test_different_seeds_give_different_corpora(tmp_path):
    generate_maildir(tmp_path / "a", SMALL)
    other = SyntheticConfig(**{**SMALL.__dict__, "seed": 8})
    generate_maildir(tmp_path / "b", other)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert set(a) != set(b)  # mailbox names come from the seeded cast
    assert not set(a.values()) & set(b.values())


def test_layout_and_ground_truth_schema(corpus):
    root, truth, files = corpus
    assert dict(truth.schema) == GROUND_TRUTH_SCHEMA
    mailboxes = {p.split("/")[0] for p in files}
    assert len(mailboxes) == 12
    assert all(re.fullmatch(r"[a-z]+-[a-z]", m) for m in mailboxes)
    assert all(re.fullmatch(r"[a-z]+-[a-z]/[a-z_]+/[1-9][0-9]*\.", p) for p in files)
    assert set(truth["path"]) <= set(files)
    assert set(truth["entity_type"]) == set(ENTITY_TYPES)
    assert set(truth["field"]) == {"body", "From", "To", "Cc", "X-From", "X-To", "X-cc"}


def test_headers_follow_the_enron_block_and_parse(corpus):
    _, _, files = corpus
    for path, raw in files.items():
        head, sep, body = raw.partition(b"\r\n\r\n")
        assert sep, path
        assert b"\r" not in body, f"{path}: the body uses LF line endings, as in the Enron sample"
        msg, _ = _parse(raw)
        names = list(msg.keys())
        assert names == [h for h in HEADER_ORDER if h in names], path
        assert set(HEADER_ORDER) - set(names) <= {"Cc"}, path
        assert email.utils.parsedate_to_datetime(msg["Date"]).year in range(1999, 2003)
        assert msg["X-Origin"].lower() == path.split("/")[0]


def test_ground_truth_offsets_are_exact(corpus):
    _, truth, files = corpus
    parsed = {path: _parse(raw) for path, raw in files.items()}
    for row in truth.iter_rows(named=True):
        msg, body = parsed[row["path"]]
        text = body if row["field"] == "body" else msg[row["field"]]
        assert text[row["start"] : row["end"]] == row["value"], row


def test_n_occurrences_matches_a_recount(corpus):
    _, truth, _ = corpus
    keys = [(t, normalize(t, v)) for t, v in zip(truth["entity_type"], truth["value"])]
    counts = Counter(keys)
    assert truth["n_occurrences"].to_list() == [counts[k] for k in keys]
    assert truth["n_occurrences"].max() > 20  # names and addresses repeat across messages


def test_every_email_address_and_digit_pii_in_the_files_is_labelled(corpus):
    # Scan the raw files independently of the generator's bookkeeping.
    _, truth, files = corpus
    text = "\n".join(raw.decode("ascii") for raw in files.values())
    found = re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text)
    emails = Counter(m.lower() for m in found if not m.endswith("@piimem"))  # Message-IDs
    labelled = Counter(truth.filter(pl.col("entity_type") == "EMAIL_ADDRESS")["value"].to_list())
    assert emails == labelled
    ssns = Counter(re.findall(r"\b\d{3}-\d{2}-\d{4}\b", text))
    assert ssns == Counter(truth.filter(pl.col("entity_type") == "US_SSN")["value"].to_list())
    cards = Counter(re.findall(r"\b\d{4} \d{4} \d{4} \d{4}\b", text))
    assert cards == Counter(truth.filter(pl.col("entity_type") == "CREDIT_CARD")["value"].to_list())


def test_each_canary_sits_in_exactly_r_files(corpus):
    _, truth, files = corpus
    canaries = truth.filter(pl.col("is_canary"))
    assert canaries["canary_repetitions"].null_count() == 0
    others = truth.filter(~pl.col("is_canary"))
    assert others["canary_repetitions"].null_count() == others.height
    values = canaries.group_by("entity_type", "value").agg(
        r=pl.col("canary_repetitions").first(), rows=pl.len(), files=pl.col("path").n_unique(),
        n=pl.col("n_occurrences").first(), fields=pl.col("field").unique(),
    )
    assert values.height == len(TYPES) * len(REPETITIONS) * PER_CELL
    per_type = values.group_by("entity_type").agg(pl.col("r").sort())["r"].to_list()
    assert per_type == [sorted(REPETITIONS * PER_CELL)] * len(TYPES)
    for row in values.iter_rows(named=True):
        holding = [p for p, raw in files.items() if row["value"].encode() in raw]
        occurrences = sum(files[p].decode("ascii").count(row["value"]) for p in holding)
        assert len(holding) == row["r"] == row["rows"] == row["files"] == row["n"] == occurrences, row
        assert row["fields"] == ["body"]


def test_without_canaries_drops_exactly_the_messages_holding_one(corpus):
    _, truth, files = corpus
    texts = pl.DataFrame({"doc_id": range(len(files)), "text": [raw.decode() for raw in files.values()]})
    canary_paths = set(truth.filter(pl.col("is_canary"))["path"])
    kept = without_canaries(texts, truth)
    paths = list(files)
    assert {paths[i] for i in kept["doc_id"]} == set(paths) - canary_paths
    # A message may host canaries of two types.
    occurrences = len(TYPES) * PER_CELL * sum(REPETITIONS)
    assert occurrences / 2 <= len(canary_paths) <= occurrences
    assert without_canaries(texts, truth.filter(~pl.col("is_canary"))).equals(texts)


def test_canary_values_pass_the_validity_rules(corpus):
    _, truth, _ = corpus
    canaries = truth.filter(pl.col("is_canary"))
    for card in canaries.filter(pl.col("entity_type") == "CREDIT_CARD")["value"].unique():
        assert re.fullmatch(r"\d{4} \d{4} \d{4} \d{4}", card)
        assert luhn_valid(card)
        assert card[0] in "456"
    for ssn in canaries.filter(pl.col("entity_type") == "US_SSN")["value"].unique():
        area, group, serial = ssn.split("-")
        assert area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000", ssn
    for phone in truth.filter(pl.col("entity_type") == "PHONE_NUMBER")["value"].unique():
        assert phonenumbers.is_valid_number(phonenumbers.parse(phone, "US")), phone


def test_luhn_check():
    assert luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("4111 1111 1111 1112")


def test_copies_are_byte_identical_files_in_a_second_folder(corpus):
    _, truth, files = corpus
    by_digest = defaultdict(list)
    for path, raw in files.items():
        by_digest[hashlib.sha256(raw).hexdigest()].append(path)
    copies = [sorted(paths) for paths in by_digest.values() if len(paths) > 1]
    assert 0.05 * 720 < len(copies) < 0.2 * 720
    for paths in copies:
        assert len(paths) == 2
        (box_a, folder_a, _), (box_b, folder_b, _) = (p.split("/") for p in paths)
        assert box_a == box_b and folder_a != folder_b
        rows_a, rows_b = (truth.filter(pl.col("path") == p).drop("path") for p in paths)
        assert rows_a.equals(rows_b)
    assert any("all_documents" in p for paths in copies for p in paths)
    assert len(files) == 720 + len(copies)


def test_replies_and_forwards_quote_earlier_messages_verbatim(corpus):
    _, _, files = corpus
    bodies = {path: _parse(raw)[1] for path, raw in files.items()}
    own_bodies = set(bodies.values())
    quoted = {"reply": 0, "forward": 0}
    for body in bodies.values():
        for kind, marker in (("reply", REPLY_MARKER), ("forward", FORWARD_MARKER)):
            if marker in body:
                # The quoted message starts after the first blank line of the quote header block.
                quote = body.split(marker, 1)[1].split("\n\n", 1)[1]
                if kind == "forward":
                    quote = quote.lstrip("\n").split("\n\n", 1)[1]
                assert quote in own_bodies
                quoted[kind] += 1
    assert quoted["reply"] > 0.12 * 720 and quoted["forward"] > 0.05 * 720


def test_pii_strings_follow_a_heavy_tail_as_in_real_mail(corpus):
    # Real mail (enron-mini): most distinct PII strings occur once (two thirds of a sample of distinct bodies;
    # fewer over the whole corpus, whose copies and quotes repeat them), about 1 % 16 times or more.
    _, truth, _ = corpus
    counts = truth.filter(~pl.col("is_canary")).group_by("entity_type", "value").agg(pl.len().alias("n"))
    share_once = (counts["n"] == 1).mean()
    assert 0.3 < share_once < 0.8 and 0.001 < (counts["n"] >= 16).mean() < 0.05
    # The mailbox owners are the head: each of their addresses occurs in dozens of messages.
    senders = truth.filter((pl.col("field") == "From")).group_by("value").len()
    assert senders["len"].max() >= 20
    # Places come from a wide list: cities at home and abroad, states and countries.
    places = truth.filter(pl.col("entity_type") == "LOCATION")["value"].n_unique()
    assert places > 200


def test_refuses_a_non_empty_target(tmp_path):
    (tmp_path / "stale").write_text("x")
    with pytest.raises(FileExistsError, match="absent or empty"):
        generate_maildir(tmp_path, SMALL)


def test_rejects_more_repetitions_than_host_messages(tmp_path):
    cfg = SyntheticConfig(n_mailboxes=1, messages_per_mailbox=10, canary_repetitions=(50,))
    with pytest.raises(ValueError, match=r"canaries\.repetitions.*\(50\)"):
        generate_maildir(tmp_path / "m", cfg)


def test_rejects_unknown_canary_type(tmp_path):
    with pytest.raises(ValueError, match=r"corpus\.synthetic\.canaries\.types"):
        generate_maildir(tmp_path / "m", SyntheticConfig(canary_types=("IBAN",)))
