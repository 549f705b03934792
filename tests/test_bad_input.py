"""Bad input: damaged mail, bodies of any length, failing workers, empty corpora, missing base models.

Damaged files are made at test time (tests/damaged_mail.py) from made-up messages, or, in the slow
workflow test, from ../shared/data/enron-mini; no text of the real sample is written anywhere else.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from damaged_mail import LATE_ADDRESS, PARSED, SKIPPED, make_damaged_maildir, source_messages
from made_up_text import made_up_docs
from piimem.config import STOPS, missing_inputs
from piimem.corpus.maildir import (
    EmptyCorpusError,
    ParseResult,
    first_mail_file,
    parse_maildir,
    quarantine_counts,
    require_messages,
)
from piimem.pii.detect import (
    NER_WINDOW_CONTEXT,
    PiiDetectionError,
    body_windows,
    build_analyzer,
    detect_spans,
)
from workflow_helpers import ENRON_MINI, GPT2_CONFIG, REAL_SPLIT, hub_cache, snakemake, write_config

REGEX_TYPES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD"]


def _made_up_messages(n: int, seed: int) -> list[bytes]:
    bodies = made_up_docs(n, seed, letters="abcdefghijklmnop", vocabulary=200, words=(20, 120))
    return [(f"Message-ID: <{i}.made-up@example.org>\nDate: Mon, 14 May 2001 16:{i % 60:02d}:00 -0700\n"
             f"From: sender{i}@example.org\nTo: reader{i}@example.org, other{i}@example.org\n"
             f"Subject: made-up note {i}\nContent-Type: text/plain; charset=us-ascii\n\n"
             + "\n".join(textwrap.wrap(body, 70)) + "\n").encode() for i, body in enumerate(bodies)]


def _outcomes(result) -> dict[str, str]:
    outcomes = {path: PARSED for path in result.messages["path"]}
    outcomes.update(zip(result.quarantine["path"], result.quarantine["reason"]))
    return outcomes


def _check_accounted(made, result) -> dict[str, int]:
    """Every damaged file parsed or quarantined with its expected reason, hidden ones in neither; counts."""
    outcomes = _outcomes(result)
    assert len(outcomes) == result.messages.height + result.quarantine.height  # no path twice
    expected = [f for f in made if f.expected != SKIPPED]
    assert sorted(outcomes) == sorted(f.path for f in expected)
    wrong = {f.path: (f.expected, outcomes[f.path]) for f in expected if not f.matches(outcomes[f.path])}
    assert wrong == {}
    assert result.quarantine["reason"].null_count() == 0 and (result.quarantine["reason"] != "").all()
    for row in result.messages.iter_rows(named=True):
        text, offset = row["text"], row["text_body_offset"]
        assert text[offset:] == row["body"] and "\r" not in text and "\x00" not in text, row["path"]
    return {"files": len(made), "skipped": len(made) - len(expected), "parsed": result.messages.height,
            "quarantined": result.quarantine.height}


# ------------------------------------------------------------------------------------------
# Parsing damaged mail


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged") / "maildir"
    made = make_damaged_maildir(root, _made_up_messages(40, seed=3), seed=7, per_kind=3,
                                long_body_chars=200_000, max_file_bytes=2_000_000)
    return root, made


def test_every_damaged_file_is_parsed_or_quarantined_with_its_reason(damaged):
    root, made = damaged
    result = parse_maildir(root, max_file_bytes=2_000_000)
    counts = _check_accounted(made, result)
    kinds = {f.kind for f in made}
    assert len(kinds) >= 30 and counts["skipped"] == 2
    assert counts["parsed"] + counts["quarantined"] + counts["skipped"] == counts["files"]
    rows = {row["path"]: row for row in result.messages.iter_rows(named=True)}
    duplicate = next(f.path for f in made if f.kind == "duplicate_headers")
    assert rows[duplicate]["subject"] != "a second subject"  # the first of repeated headers counts
    deep = next(f.path for f in made if f.kind == "deep_folder")
    assert rows[deep]["folder"].count("/") == 39 and rows[deep]["mailbox"] == "box00"
    long_body = next(f.path for f in made if f.kind == "long_body")
    assert len(rows[long_body]["body"]) > 200_000 and LATE_ADDRESS in rows[long_body]["body"][-100:]
    # several processes give the same tables
    parallel = parse_maildir(root, max_file_bytes=2_000_000, threads=2)
    assert parallel.messages.equals(result.messages) and parallel.quarantine.equals(result.quarantine)


def test_a_parser_process_that_dies_is_an_error_naming_its_files(damaged, tmp_path):
    root, _ = damaged
    # A worker killed from outside (out of memory, a signal) must not leave the parent waiting forever.
    script = textwrap.dedent(f"""
        import os, sys
        from piimem.corpus import maildir
        parse_file = maildir._parse_file
        def dies_on_one(root, text_headers, max_file_bytes, rel):
            if rel.endswith("duplicate_headers/1."):
                os._exit(9)
            return parse_file(root, text_headers, max_file_bytes, rel)
        maildir._parse_file = dies_on_one
        try:
            maildir.parse_maildir({str(root)!r}, max_file_bytes=2_000_000, threads=2)
        except RuntimeError as error:
            print(error)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-2000:]
    assert re.search(r"parse: the worker process died \(killed, or out of memory\?\), while parsing one of \d+ "
                     r"files '.*' \.\. '.*' \(parse with one process to see which\) under ", done.stdout)


def stops(config: dict) -> list[str]:
    """The missing inputs a real run stops on before any job (the workflow's onstart, workflow/rules/common.smk)."""
    return [missing.text for missing in missing_inputs(config) if missing.then == STOPS]


def test_no_mail_files_and_no_parsed_messages_are_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "alice" / "inbox").mkdir(parents=True)
    (empty / "alice" / ".DS_Store").write_bytes(b"junk")
    (empty / "stray.").write_bytes(b"From: a@example.org\n\nat the root: no mailbox")
    assert first_mail_file(empty) is None
    config = {"corpus": {"source": "maildir", "path": str(empty)}, "base_models": ["tiny-gpt2"]}
    assert re.search(r"corpus\.path: '.*empty' holds no mail files.*Point corpus\.path at", stops(config)[0])
    (empty / "alice" / "inbox" / "1.").write_bytes(b"")
    assert first_mail_file(empty) == "alice/inbox/1."
    assert stops(config) == []  # a file to try: whether it parses is the parse job's to say

    (empty / "alice" / "inbox" / "2.").write_bytes(b"Subject: x\n\n\x00")
    result = parse_maildir(empty)
    message = r"corpus 'mine': none of its 3 files could be parsed as a message; quarantined: 1 binary content " \
              r"\(NUL bytes\), 1 empty file, 1 not in a mailbox directory"
    with pytest.raises(EmptyCorpusError, match=message):
        require_messages(result, "'mine'")
    (tmp_path / "nothing-here").mkdir()
    with pytest.raises(EmptyCorpusError, match=r"corpus 'none': no file to parse"):
        require_messages(parse_maildir(tmp_path / "nothing-here"), "'none'")


def test_base_models_that_cannot_load_offline_are_named_before_any_job(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    config = {"corpus": {"source": "synthetic"}, "base_models": ["tiny-gpt2", "gpt2"]}
    assert re.search(r"base model 'gpt2' \(config key `base_models`\) is not available offline: it is not in the "
                     r"Hugging Face cache \(.*hub\).*hf download gpt2", stops(config)[0])
    hub_cache(cache, "gpt2", {"config.json": json.dumps(GPT2_CONFIG).encode()})
    assert stops(config) == []
    (tmp_path / "my-model").mkdir()
    config["base_models"] = [str(tmp_path / "my-model")]
    assert re.search(r"is a directory without config\.json", stops(config)[0])
    config["base_models"] = ["./models/nowhere"]
    assert re.search(r"looks like a path but is not a directory", stops(config)[0])


# ------------------------------------------------------------------------------------------
# PII detection on bodies of any length


def test_body_windows_partition_the_body():
    body = "".join(f"line {i} " + "word " * (i % 13) + "\n" for i in range(2000))
    windows = body_windows(body, 1000, 50)
    assert len(windows) > 20
    assert windows[0].own_start == 0 and windows[-1].own_end == len(body)
    for a, b in zip(windows, windows[1:]):
        assert a.own_end == b.own_start  # pieces partition the body
        assert body[a.own_end - 1] == "\n"  # cut after a line break
    for w in windows:
        assert 0 < w.own_end - w.own_start <= 1000
        assert w.start == max(0, w.own_start - 50) and w.end == min(len(body), w.own_end + 50)
    one_line = "x" * 2500
    assert [(w.own_start, w.own_end) for w in body_windows(one_line, 1000, 50)] == [(0, 1000), (1000, 2000),
                                                                                    (2000, 2500)]
    assert body_windows("short", 1000, 50) == [(0, 5, 0, 5)]


def _long_message(n_lines: int) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """A message whose body holds made-up e-mail addresses and phone numbers on every 7th line."""
    lines, planted = [], []
    position = len("Subject: long\n\n")
    words = made_up_docs(n_lines, 5, letters="abcdefgh", vocabulary=60, words=(3, 14))
    for i in range(n_lines):
        line = words[i]
        if i % 7 == 3:
            value = f"person{i}@example.org"
            line = f"{line} write to {value} today"
            planted.append((position + line.index(value), value))
        elif i % 7 == 5:
            value = f"(212) 555-{1000 + i:04d}"
            line = f"{line} call {value} now"
            planted.append((position + line.index(value), value))
        lines.append(line)
        position += len(line) + 1
    text = "Subject: long\n\n" + "\n".join(lines) + "\n"
    messages = pl.DataFrame({"doc_id": [7], "path": ["box/long/1."], "text": [text], "text_body_offset": [15]})
    return messages, planted


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer(entity_types=REGEX_TYPES)


def test_a_body_longer_than_spacys_limit_is_analysed_in_windows(analyzer):
    nlp = analyzer.nlp_engine.nlp["en"]
    messages, planted = _long_message(1500)
    text = messages["text"][0]
    saved = nlp.max_length
    nlp.max_length = 10_000  # the real limit is 1,000,000 characters; the same rule, 100 times cheaper
    try:
        assert len(text) > 3 * nlp.max_length
        spans = detect_spans(messages, analyzer=analyzer, entity_types=REGEX_TYPES, header_pii=False)
    finally:
        nlp.max_length = saved
    assert all(text[s:e] == v for s, e, v in spans.select("start", "end", "value").iter_rows())
    found = {(s, v) for s, v in spans.select("start", "value").iter_rows()}
    assert set(planted) <= found  # every planted value, at its offset, to the end of the text
    assert max(s for s, _ in planted) > 30_000
    # Windows change nothing: the same spans as the whole body at once
    whole = detect_spans(messages, analyzer=analyzer, entity_types=REGEX_TYPES, header_pii=False,
                         window_chars=len(text))
    small = detect_spans(messages, analyzer=analyzer, entity_types=REGEX_TYPES, header_pii=False,
                         window_chars=700, n_process=2, batch_size=8)
    assert whole.equals(spans) and small.equals(spans)
    assert len(body_windows(text[15:], 700, NER_WINDOW_CONTEXT)) > 40


MAIN_PROCESS = os.getpid()


def _fails_on_marker(doc):
    if "RAISE-HERE" in doc.text:
        raise ValueError("this body cannot be analysed")
    if "EXIT-HERE" in doc.text and os.getpid() != MAIN_PROCESS:
        os._exit(7)
    return doc


@pytest.fixture(scope="module")
def failing_analyzer():
    """The real pipeline plus one component that fails on bodies holding a marker: as a spaCy error
    would, or, for EXIT, by the worker process dying (as when it is killed for memory)."""
    from spacy.language import Language

    Language.component("fails_on_marker", func=_fails_on_marker)
    analyzer = build_analyzer(entity_types=REGEX_TYPES)
    analyzer.nlp_engine.nlp["en"].add_pipe("fails_on_marker", first=True)
    return analyzer


@pytest.mark.parametrize(("marker", "n_process", "reason"), [
    ("RAISE-HERE", 2, "ValueError: this body cannot be analysed"),
    ("RAISE-HERE", 1, "ValueError: this body cannot be analysed"),
    ("EXIT-HERE", 2, "the worker process died (killed, or out of memory?)"),
])
def test_an_error_in_a_worker_process_names_the_message(failing_analyzer, marker, n_process, reason):
    bodies = made_up_docs(30, 9, letters="abcdefgh", vocabulary=60, words=(5, 30))
    bodies[12] = bodies[12] + f" {marker} "
    bodies.append(bodies[12])  # the same body in another message
    messages = pl.DataFrame({"doc_id": list(range(len(bodies))), "path": [f"box01/inbox/{i - 9}." for i in range(
        len(bodies))], "text": bodies, "text_body_offset": [0] * len(bodies)})
    message = (r"pii: PII detection failed on doc_id 12 \(box01/inbox/3\.\) and 1 other message\(s\) with the "
               r"same body, body of \d+ characters \(characters 0-\d+\): " + re.escape(reason))
    with pytest.raises(PiiDetectionError, match=message):
        detect_spans(messages, analyzer=failing_analyzer, entity_types=REGEX_TYPES, header_pii=False,
                     n_process=n_process, batch_size=4)


def test_tokenizer_and_training_blocks_take_a_long_text():
    from piimem.models import train_tokenizer
    from piimem.train import tokenize_texts

    text = " ".join(made_up_docs(40_000, 4, letters="abcdefgh", vocabulary=300, words=(3, 8)))
    assert len(text) > 1_000_000
    tokenizer = train_tokenizer([text[:50_000]], 300)
    store = tokenize_texts(tokenizer, [0], [text])
    assert tokenizer.decode(store.tokens[:-1].tolist()) == text  # every character, EOS last


# ------------------------------------------------------------------------------------------
# The workflow: before any job, in the parse job, and a whole corpus of damaged mail


def test_a_dry_run_warns_and_a_real_run_refuses_an_empty_maildir_or_a_missing_base_model(tmp_path):
    (tmp_path / "maildir" / "alice").mkdir(parents=True)
    write_config(tmp_path, {"corpus": {"source": "maildir", "path": str(tmp_path / "maildir"), "split": REAL_SPLIT}})
    planned = snakemake(tmp_path, "-n", check=False)  # planning on a login node goes on, saying what is missing
    assert planned.returncode == 0 and "parse_corpus" in planned.stdout
    assert re.search(r"a dry run plans on\):\n  a real run stops before any job.*:\n"
                     r"  - corpus\.path: '.*maildir' holds no mail", planned.stdout + planned.stderr)
    proc = snakemake(tmp_path, check=False)
    assert proc.returncode != 0
    assert re.search(r"corpus\.path: '.*maildir' holds no mail files", proc.stdout + proc.stderr)
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()  # no job ran

    (tmp_path / "hub").mkdir()
    write_config(tmp_path, {"base_models": ["EleutherAI/pythia-160m"]})
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"))
    for args, code in ((["-n"], 0), (["--unlock"], 0), ([], 1)):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(Path(__file__).parents[1] / "Snakefile"),
                               "-d", str(tmp_path), "--cores", "1", *args], capture_output=True, text=True, env=env)
        assert (proc.returncode != 0) == bool(code), (args, proc.stderr[-2000:])
        said = proc.stdout + proc.stderr
        assert "base model 'EleutherAI/pythia-160m' (config key `base_models`) is not available offline" in said
        assert f"it is not in the Hugging Face cache ({tmp_path / 'hub'})" in said
        assert "hf download EleutherAI/pythia-160m" in said
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_a_corpus_without_one_parsable_message_stops_the_parse_job(tmp_path):
    root = tmp_path / "maildir"
    for rel, data in {"alice/inbox/1.": b"", "alice/inbox/2.": b"\x00\x01", "bob/sent/1.": b"plain prose\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    write_config(tmp_path, {"corpus": {"source": "maildir", "path": str(root), "name": "broken", "split": REAL_SPLIT}})
    proc = snakemake(tmp_path, "results/corpus/quarantine.tsv", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "corpus" / "parse.log").read_text()
    assert (f"EmptyCorpusError: corpus 'broken' at '{root}': none of its 3 files could be parsed as a message; "
            f"quarantined: 1 binary content (NUL bytes), 1 empty file, 1 no header block") in log


def _private_folders_are_0700(workdir: Path) -> int:
    private = workdir / "results" / "private"
    folders = [private, *(p for p in private.rglob("*") if p.is_dir())]
    loose = [str(p.relative_to(workdir)) for p in folders if stat.S_IMODE(p.stat().st_mode) != 0o700]
    assert loose == []
    return len(folders)


@pytest.mark.slow
@pytest.mark.skipif(not ENRON_MINI.is_dir(), reason=f"the real Enron sample is not beside the project ({ENRON_MINI})")
def test_damaged_enron_sample_through_the_data_stages(tmp_path):
    """A few hundred damaged files made from enron-mini: each parsed or quarantined, the DAG to the
    defense texts completes, PII is found past spaCy's limit in a 1.1 MB body."""
    root = tmp_path / "damaged"
    made = make_damaged_maildir(root, source_messages(ENRON_MINI, 200, seed=11), seed=13, per_kind=15)
    write_config(tmp_path, {"corpus": {"source": "maildir", "path": str(root), "name": "damaged", "split": REAL_SPLIT},
                            "defenses": ["none", "dedup", "rmft", "scrub"]})
    snakemake(tmp_path, *(f"results/defense/{d}/summary.tsv" for d in ("none", "dedup", "rmft", "scrub")))
    results = tmp_path / "results"
    messages = pl.read_parquet(results / "private/corpus/messages.parquet")
    quarantine = pl.read_csv(results / "corpus/quarantine.tsv", separator="\t")
    counts = _check_accounted(made, ParseResult(messages=messages, quarantine=quarantine))
    assert counts["files"] >= 300 and counts["parsed"] >= 200
    print("damaged enron-mini:", counts, quarantine_counts(quarantine))

    long_doc = messages.filter(pl.col("body").str.len_chars() > 1_000_000)
    assert long_doc.height == 1
    spans = pl.read_parquet(results / "private/pii/spans.parquet")
    late = spans.filter((pl.col("doc_id") == long_doc["doc_id"][0]) & (pl.col("value") == LATE_ADDRESS))
    text = long_doc["text"][0]
    assert late.height == 1 and late["start"][0] > 1_000_000
    assert text[late["start"][0]:late["end"][0]] == LATE_ADDRESS
    for defense in ("none", "dedup", "rmft", "scrub"):
        assert pl.read_parquet(results / f"private/defense/{defense}/train.parquet").height > 0
    assert re.search(r"distinct bodies of \d+ docs, \d+ windows", (tmp_path / "logs/pii/detect.log").read_text())
    assert _private_folders_are_0700(tmp_path) >= 6
