"""Canaries with power: the generator's grid (cells, types, hosts, e-mail canaries the PII stage finds), candidates
from the canary's own space, the extrapolated exposure and the per-canary records."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm, skewnorm

from piimem.corpus.synthetic import (
    CANARY_TYPES,
    MAX_CANARIES_PER_MESSAGE,
    SyntheticConfig,
    canary_name_parts,
    generate_maildir,
)
from piimem.corpus.synthetic.world import FREE_MAIL
from piimem.extraction.canaries import (
    CANARY_RECORD_SCHEMA,
    MAX_SHAPE,
    canary_contexts,
    canary_exposures,
    extrapolated_exposure,
    random_candidates,
    rank_exposure,
)

GRID = SyntheticConfig(seed=5, n_mailboxes=4, messages_per_mailbox=45, canary_types=CANARY_TYPES,
                       canary_repetitions=(1, 2, 4, 8), canary_per_cell=3)
CANARY_EMAIL = re.compile(r"(?P<first>[a-z]+)\.(?P<last>[a-z]+)@(?P<domain>[a-z.]+)")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid") / "maildir"
    truth = generate_maildir(root, GRID)
    files = {p.relative_to(root).as_posix(): p.read_bytes().decode("ascii") for p in sorted(root.rglob("*"))
             if p.is_file()}
    return root, truth, files


def test_every_cell_holds_per_cell_canaries_each_in_exactly_r_files(grid):
    _, truth, files = grid
    canaries = truth.filter(pl.col("is_canary"))
    values = canaries.group_by("entity_type", "value").agg(
        r=pl.col("canary_repetitions").first(), rows=pl.len(), files=pl.col("path").n_unique(),
        n=pl.col("n_occurrences").first())
    cells = Counter(values.select("entity_type", "r").rows())
    assert cells == {(t, r): 3 for t in CANARY_TYPES for r in (1, 2, 4, 8)}
    for row in values.iter_rows(named=True):
        holding = [p for p, text in files.items() if row["value"] in text]
        assert len(holding) == row["r"] == row["rows"] == row["files"] == row["n"], row
        assert sum(files[p].count(row["value"]) for p in holding) == row["r"]


def test_a_host_holds_at_most_two_canaries_of_different_types_and_is_no_notice_or_forward(grid):
    _, truth, files = grid
    per_file = truth.filter(pl.col("is_canary")).group_by("path").agg(pl.col("entity_type"))
    assert per_file["entity_type"].list.len().max() == MAX_CANARIES_PER_MESSAGE
    assert all(len(set(types)) == len(types) for types in per_file["entity_type"].to_list())
    def notice(text: str) -> bool:
        return re.search(r"^Subject: Notice \d", text, re.M) is not None

    def forward(text: str) -> bool:  # its own quote block is a forward's, not a reply's (a reply may quote one)
        marks = [m for m in ("---------------------- Forwarded by ", "-----Original Message-----") if m in text]
        return bool(marks) and min(marks, key=text.index).startswith("-" * 22 + " Forwarded")

    hosts = [files[path] for path in per_file["path"]]
    assert not [text for text in hosts if notice(text) or forward(text)]
    # the corpus has both: notices and forwards are left out, not absent
    assert any(map(notice, files.values())) and any(map(forward, files.values()))


def test_email_canaries_come_from_their_own_space_and_collide_with_no_address_of_the_corpus(grid):
    _, truth, _ = grid
    emails = truth.filter(pl.col("entity_type") == "EMAIL_ADDRESS")
    canaries = emails.filter(pl.col("is_canary"))["value"].unique().to_list()
    first, last = (set(n.lower() for n in names) for names in canary_name_parts())
    for value in canaries:
        parts = CANARY_EMAIL.fullmatch(value)
        assert parts and parts["first"] in first and parts["last"] in last and parts["domain"] in FREE_MAIL, value
    real = set(emails.filter(~pl.col("is_canary"))["value"].str.to_lowercase())
    assert not real & set(canaries)
    # the corpus's people never write first.last at a free-mail host, so no candidate is a real address either
    candidates = {c for v in canaries for c in random_candidates(v, "EMAIL_ADDRESS", 200, seed=1)}
    assert len(candidates) > 1000 and not candidates & real


def test_the_email_canaries_are_found_by_the_pii_stage_as_addresses(grid):
    from piimem.corpus.maildir import parse_maildir
    from piimem.pii.detect import build_analyzer, detect_spans

    root, truth, _ = grid
    canaries = truth.filter(pl.col("is_canary") & (pl.col("entity_type") == "EMAIL_ADDRESS"))
    messages = parse_maildir(root).messages
    hosts = messages.filter(pl.col("path").is_in(canaries["path"].unique().to_list()))
    spans = detect_spans(hosts, entity_types=["EMAIL_ADDRESS"], analyzer=build_analyzer(entity_types=["EMAIL_ADDRESS"]))
    found = set(spans.join(hosts.select("doc_id", "path"), on="doc_id").select("path", "value").rows())
    planted = set(canaries.select("path", "value").rows())
    assert len(planted) == 3 * (1 + 2 + 4 + 8) and planted <= found


def test_the_canary_grid_changes_nothing_else_of_the_corpus(tmp_path):
    def rest(cfg: SyntheticConfig) -> list[tuple]:
        truth = generate_maildir(tmp_path / str(len(list(tmp_path.iterdir()))), cfg)
        return truth.filter(~pl.col("is_canary")).select("path", "field", "entity_type", "value").rows()

    small = dict(seed=5, n_mailboxes=2, messages_per_mailbox=30)
    assert rest(SyntheticConfig(**small, canary_types=())) == rest(
        SyntheticConfig(**small, canary_types=("EMAIL_ADDRESS", "US_SSN"), canary_repetitions=(1, 3),
                        canary_per_cell=2))


@pytest.mark.parametrize("canaries, message", [
    (dict(canary_repetitions=(60,)), r"canaries\.repetitions: the largest repetition count \(60\) exceeds the \d+"),
    (dict(canary_repetitions=(10, 20), canary_per_cell=2), r"per_cell x sum\(repetitions\) = 2 x 30 = 60 .*\(one "
                                                            r"of each type per message\)"),
    (dict(canary_repetitions=(2, 4), canary_per_cell=3), r"72 canary occurrences \(4 types x 18\) exceed the 35 "
                                                          r"host messages x 2"),
    (dict(canary_repetitions=(2, 2)), r"canaries\.repetitions: expected distinct repetition counts"),
    (dict(canary_per_cell=0), r"canaries\.per_cell: expected an integer >= 1"),
    (dict(canary_types=("IBAN",)), r"canaries\.types: expected distinct types among"),
])
def test_a_grid_the_corpus_cannot_host_fails_naming_the_key(tmp_path, canaries, message):
    cfg = SyntheticConfig(**{"seed": 5, "n_mailboxes": 2, "messages_per_mailbox": 30, "canary_types": CANARY_TYPES,
                             **canaries})
    with pytest.raises(ValueError, match=message):
        generate_maildir(tmp_path / "m", cfg)


def test_from_config_reads_the_canary_section():
    cfg = SyntheticConfig.from_config({"seed": 3, "canaries": {"types": ["EMAIL_ADDRESS"], "repetitions": [1, 4],
                                                               "per_cell": 7}})
    assert (cfg.canary_types, cfg.canary_repetitions, cfg.canary_per_cell) == (("EMAIL_ADDRESS",), (1, 4), 7)


# ------------------------------------------------------------------------------------------
# Candidates


def test_email_candidates_share_the_canary_domain_and_its_space():
    canary = "maria.lopez@juno.com"
    candidates = random_candidates(canary, "EMAIL_ADDRESS", 300, seed=9)
    assert candidates == random_candidates(canary, "EMAIL_ADDRESS", 300, seed=9)
    assert len(set(candidates)) == 300 and canary not in candidates
    first, last = (set(n.lower() for n in names) for names in canary_name_parts())
    for candidate in candidates:
        parts = CANARY_EMAIL.fullmatch(candidate)
        assert parts and parts["domain"] == "juno.com" and parts["first"] in first and parts["last"] in last
    # uniform over the lists: no first name takes a large share of 300 draws from about 690
    assert max(Counter(c.split(".")[0] for c in candidates).values()) <= 4
    with pytest.raises(ValueError, match="must read local@domain"):
        random_candidates("maria.lopez", "EMAIL_ADDRESS", 3, seed=1)


# ------------------------------------------------------------------------------------------
# Exposure


def _true_exposure(x: float, shape: float, loc: float, scale: float) -> float:
    return -float(skewnorm.logcdf(x, shape, loc, scale)) / math.log(2)


@pytest.mark.parametrize("shape", [0.0, 3.0, -3.0])
def test_extrapolated_exposure_recovers_the_true_tail_within_30_percent(shape):
    """1,000 candidates from a known skew-normal (a normal at shape 0); a canary k = 2..5 standard deviations below
    the mean gets -log2 F(canary) of the true F within 30 % (over 30 seeds the worst case at shape 3 is 43 %,
    the 90th percentile 26 %: the tail is extrapolated from a sample)."""
    scores = skewnorm.rvs(shape, loc=50, scale=6, size=1000, random_state=np.random.default_rng(0))
    mean, var = skewnorm.stats(shape, loc=50, scale=6, moments="mv")
    for k in (2, 3, 4, 5):
        canary = float(mean - k * math.sqrt(var))
        exposure, fit = extrapolated_exposure(canary, scores)
        assert fit == "skewnorm"
        assert exposure == pytest.approx(_true_exposure(canary, shape, 50, 6), rel=0.3), k


def test_extrapolated_exposure_agrees_with_the_rank_exposure_below_its_ceiling():
    scores = np.sort(np.random.default_rng(1).normal(40, 5, 100))
    for below in (5, 10, 25, 50):  # the canary between the 5th and 6th best candidates, ...
        canary = float((scores[below - 1] + scores[below]) / 2)
        rank = rank_exposure(canary, scores)
        assert rank == pytest.approx(math.log2(101 / (below + 1)))
        extrapolated, _ = extrapolated_exposure(canary, scores)
        assert abs(extrapolated - rank) < 0.6, below


def test_extrapolated_exposure_keeps_growing_past_the_rank_ceiling():
    scores = np.random.default_rng(2).normal(40, 5, 100)
    ceiling = math.log2(101)
    values = []
    for k in (4, 6, 8, 12, 40):  # 40 sd: scipy's CDF underflows to 0, the integrated tail does not
        canary = float(scores.mean() - k * scores.std())
        assert rank_exposure(canary, scores) == ceiling
        exposure, fit = extrapolated_exposure(canary, scores)
        assert fit == "skewnorm" and math.isfinite(exposure)
        values.append(exposure)
    assert values[0] > ceiling and values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] > 1000  # about (40 sd)^2 / 2 / ln 2 bits


def test_extrapolated_exposure_falls_back_and_says_so():
    rng = np.random.default_rng(3)
    # a half-normal: the skew-normal's shape runs past MAX_SHAPE, the normal is fitted instead
    half = np.abs(rng.normal(size=100)) + 10
    exposure, fit = extrapolated_exposure(9.5, half)
    assert fit == "normal" and exposure == pytest.approx(-math.log2(norm.cdf(9.5, half.mean(), half.std(ddof=1))))
    assert MAX_SHAPE == 20.0
    assert extrapolated_exposure(1.0, rng.normal(size=10))[1] == "normal"  # too few to fit three parameters
    assert extrapolated_exposure(1.0, [2.0] * 50) == (math.log2(51), "rank")  # nothing to fit
    assert extrapolated_exposure(3.0, [2.0] * 50) == (0.0, "rank")


# ------------------------------------------------------------------------------------------
# Records


def test_canary_records_hold_ids_and_numbers_only():
    from made_up_text import made_up_docs
    from tiny_models import overfit_tiny_gpt2

    canary = "maria.lopez@juno.com"
    sentence = f"My home e-mail is {canary} if the server is down again."
    filler = made_up_docs(30, 5, letters="klmnopqrst", vocabulary=40, words=(4, 12))
    tok, model = overfit_tiny_gpt2([sentence, *filler[:6]], [sentence] * 20 + filler, steps=250)
    truth = pl.DataFrame({"entity_type": ["EMAIL_ADDRESS", "EMAIL_ADDRESS"], "value": [canary, canary],
                          "is_canary": [True, True], "canary_repetitions": [2, 2]})
    messages = pl.DataFrame({"doc_id": [0, 1], "text": [sentence, "Hello. " + sentence]})
    contexts = canary_contexts(truth, messages, train_doc_ids=[0, 1], tokenizer=tok, context_tokens=6)
    records = canary_exposures(model, tok, contexts, n_candidates=40, seed=1, device="cpu")
    assert records.columns == [*CANARY_RECORD_SCHEMA, "max_exposure"]
    assert dict(records.schema) == {**CANARY_RECORD_SCHEMA, "max_exposure": pl.Float64}
    row = records.row(0, named=True)
    assert (row["canary_id"], row["entity_type"], row["repetitions"], row["train_occurrences"]) == (
        0, "EMAIL_ADDRESS", 2, 2)
    # the over-fitted address ranks first of 41; the extrapolated exposure goes past the ceiling
    assert row["exposure"] == row["max_exposure"] == math.log2(41) and row["n_candidates"] == 40
    assert row["exposure_extrapolated"] > row["exposure"] and row["exposure_fit"] in ("skewnorm", "normal")
    assert not any(canary in str(v) for v in row.values())
