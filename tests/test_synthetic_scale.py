"""The synthetic generator at two sizes: what should scale with the message count does, what should not (the
canary grid) does not, and the ground truth stays exact. Speed is measured in docs/performance.md, not here."""

import email
import os
import random
import re
import subprocess
import sys
from collections import Counter
from email import policy

import polars as pl
import pytest
from faker import Faker

from piimem.corpus.synthetic import SyntheticConfig, _fresh_canary, _taken, generate_maildir, world
from piimem.pii import normalize

GRID = {"canary_types": ("EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD"), "canary_repetitions": (1, 2, 4),
        "canary_per_cell": 2}
SMALL = SyntheticConfig(seed=11, n_mailboxes=4, messages_per_mailbox=30, **GRID)
LARGE = SyntheticConfig(seed=11, n_mailboxes=8, messages_per_mailbox=60, **GRID)  # 4 x the messages


def _generate(root, cfg):
    truth = generate_maildir(root, cfg)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return truth, files


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    return {"small": _generate(root / "small", SMALL), "large": _generate(root / "large", LARGE)}


def _message_ids(files) -> set[bytes]:
    return {re.match(rb"Message-ID: (\S+)\r\n", raw).group(1) for raw in files.values()}


def _parse(raw: bytes):
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    return msg, msg.get_payload(decode=True).decode("ascii").replace("\r\n", "\n")


def _assert_offsets_exact(truth: pl.DataFrame, files: dict[str, bytes]) -> None:
    parsed = {path: _parse(raw) for path, raw in files.items()}
    for row in truth.iter_rows(named=True):
        msg, body = parsed[row["path"]]
        text = body if row["field"] == "body" else msg[row["field"]]
        assert text[row["start"] : row["end"]] == row["value"], (row["path"], row["field"], row["start"])


def test_messages_and_files_scale_with_the_config(corpora):
    for name, cfg in (("small", SMALL), ("large", LARGE)):
        truth, files = corpora[name]
        n_messages = cfg.n_mailboxes * cfg.messages_per_mailbox
        assert len(_message_ids(files)) == n_messages, name
        copies = len(files) - n_messages  # byte-identical second filings
        assert 0.08 < copies / n_messages < 0.3, (name, copies)
        assert {p.split("/")[0] for p in files} == {p.split("/")[0] for p in truth["path"]}
        assert len({p.split("/")[0] for p in files}) == cfg.n_mailboxes


def test_pii_per_message_and_population_grow_linearly(corpora):
    (small, small_files), (large, large_files) = corpora["small"], corpora["large"]
    per_message = [t.filter(~pl.col("is_canary")).height / len(_message_ids(f))
                   for t, f in ((small, small_files), (large, large_files))]
    assert 0.75 < per_message[1] / per_message[0] < 1.33, per_message
    # The population is people_per_message x messages and most are named once or twice, so the distinct
    # people named grow about as the corpus (4x here), not as a fixed cast would (1x).
    names = [t.filter((pl.col("entity_type") == "PERSON") & pl.col("value").str.contains(" "))["value"].n_unique()
             for t in (small, large)]
    assert 2.8 < names[1] / names[0] < 5, names


def test_the_canary_grid_does_not_scale(corpora):
    expected_values = len(GRID["canary_types"]) * len(GRID["canary_repetitions"]) * GRID["canary_per_cell"]
    expected_rows = len(GRID["canary_types"]) * sum(GRID["canary_repetitions"]) * GRID["canary_per_cell"]
    for name in ("small", "large"):
        truth, _ = corpora[name]
        canaries = truth.filter(pl.col("is_canary"))
        assert canaries.height == expected_rows, name
        values = canaries.group_by("entity_type", "value").agg(
            r=pl.col("canary_repetitions").first(), files=pl.col("path").n_unique(), n=pl.col("n_occurrences").first())
        assert values.height == expected_values, name
        assert (values["r"] == values["files"]).all() and (values["r"] == values["n"]).all(), name


def test_ground_truth_is_exact_at_the_larger_size(corpora):
    truth, files = corpora["large"]
    _assert_offsets_exact(truth, files)
    keys = [(t, normalize(t, v)) for t, v in zip(truth["entity_type"], truth["value"])]
    counts = Counter(keys)
    assert truth["n_occurrences"].to_list() == [counts[k] for k in keys]
    assert truth.select("path", "field", "start").is_unique().all()
    assert truth["path"].to_list() == sorted(truth["path"].to_list())


def test_faker_name_draws_as_faker_does():
    # The generator draws names from Faker's stream without Faker's per-call summing of weights; the same
    # draws keep corpora byte-identical to those Faker's own calls gave.
    ours, theirs = Faker("en_US"), Faker("en_US")
    ours.seed_instance(5)
    theirs.seed_instance(5)
    for _ in range(3000):
        assert world.faker_name(ours.random, "first_names") == theirs.first_name()
        assert world.faker_name(ours.random, "last_names") == theirs.last_name()


def _cast(n_people: int, seed: int = 3) -> world.Cast:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return world.Cast(random.Random(seed), fake, 5, n_people, 0.5)


def test_population_names_are_unique():
    cast = _cast(20_000)
    people = cast.owners + cast.people
    assert len({(p.first, p.last) for p in people}) == len(people)
    assert len({p.email for p in people}) == len(people)
    assert len({p.mailbox_id for p in cast.owners}) == len(cast.owners)


def test_rarer_names_once_the_likely_ones_run_out(monkeypatch):
    # A large population takes Faker's likely (first, last) pairs; after NAME_TRIES misses in a row the cast
    # draws from the pairs no one has. One miss is enough here, so a small cast switches early.
    monkeypatch.setattr(world, "NAME_TRIES", 1)
    cast = _cast(5000)
    people = cast.owners + cast.people
    assert cast.free_pairs is not None
    assert len({(p.first, p.last) for p in people}) == len(people)
    assert not any("-" in p.last for p in people)
    pairs = len(cast.free_pairs.firsts) * len(cast.free_pairs.lasts)
    assert len(cast.free_pairs) == pairs - len(people)  # every name is a plain pair, taken once


def test_names_past_the_likely_ones_do_not_depend_on_the_hash_seed():
    # The pairs left are listed from a set of names: their order, and so the names drawn, must not follow
    # the process's string-hash seed.
    code = ("import random, hashlib; from faker import Faker; from piimem.corpus.synthetic import world\n"
            "world.NAME_TRIES = 1; fake = Faker('en_US'); fake.seed_instance(3)\n"
            "cast = world.Cast(random.Random(3), fake, 5, 3000, 0.5); assert cast.free_pairs is not None\n"
            "print(hashlib.sha256(repr([(p.first, p.last) for p in cast.people]).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1, digests


def test_double_surnames_once_the_plain_pairs_are_used_up():
    # People take plain pairs until only those kept free for the e-mail canaries are left, then get double
    # surnames; a canary still finds a first.last that is no one's name.
    cast = _cast(50)
    free = world.FreePairs(set())
    pairs = [(first, last) for first in free.firsts for last in free.lasts]
    left = [pair for pair in pairs if pair not in cast.names][: free.reserve + 2]
    cast.names |= set(pairs) - set(left)
    cast.free_pairs = world.FreePairs(cast.names)
    named = [cast.person(internal=False) for _ in range(5)]
    assert {(p.first, p.last) for p in named[:2]} <= set(left)
    assert len(cast.free_pairs) == free.reserve >= 0.1 * len(pairs)
    assert all(re.fullmatch(r"[A-Za-z]+-[A-Za-z]+", p.last) for p in named[2:])
    assert len({(p.first, p.last) for p in named}) == 5 and not {(p.first, p.last) for p in named[2:]} & set(pairs)
    canary = _fresh_canary(random.Random(1), "EMAIL_ADDRESS", _taken(cast), set())
    assert canary.partition("@")[0] not in {f"{first.lower()}.{last.lower()}" for first, last in cast.names}


def test_a_corpus_of_double_surnames_keeps_its_ground_truth(tmp_path, monkeypatch):
    # Owners after NAME_TRIES misses, and everyone once every plain pair is taken, get double surnames; with no
    # tries left every person has one, and the files and their ground truth hold.
    monkeypatch.setattr(world, "NAME_TRIES", 0)
    truth, files = _generate(tmp_path / "maildir", SMALL)
    full_names = truth.filter((pl.col("entity_type") == "PERSON") & pl.col("value").str.contains(" "))["value"]
    assert full_names.len() > 0
    assert full_names.str.contains(r"^[A-Za-z]+ [A-Za-z]+-[A-Za-z]+$").all()
    assert all(re.fullmatch(r"[a-z]+-[a-z]+-[a-z]", p.split("/")[0]) for p in files)
    _assert_offsets_exact(truth, files)
    text = "\n".join(raw.decode("ascii") for raw in files.values())
    found = Counter(m.lower() for m in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text) if not m.endswith("@piimem"))
    assert found == Counter(truth.filter(pl.col("entity_type") == "EMAIL_ADDRESS")["value"].to_list())
