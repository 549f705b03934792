"""The audit canaries (piimem.audit, step 1): short mail messages each holding one random e-mail address, each
included with probability 1/2 from the config's seed, and the PII stage's spans of them."""

from __future__ import annotations

import random

import polars as pl

from piimem.audit import CANARY_SCHEMA, DOC_ID_BASE

# What the canary message says around the address: a lead-in sentence, then the address. Several lead-ins, so
# that the canaries share no 100-byte substring (exact-substring deduplication would cut it) and are no
# near-duplicates of each other (tests/test_audit.py checks both with the dedup stage).
LEAD_INS = (
    "Please use my personal address from now on:",
    "You can reach me at home at",
    "My new e-mail is",
    "Send the signed copy to",
    "For anything urgent write to",
    "Forward the schedule to my other account,",
)

def make_canaries(m: int, seed: int) -> pl.DataFrame:
    """`m` audit canary messages (CANARY_SCHEMA), each included with probability 1/2, all from `seed`.

    A message: "Subject: ..." and two or three prose sentences, the lead-in and the address, a closing
    sentence. Addresses are distinct; doc ids are DOC_ID_BASE + canary_id."""
    from piimem.corpus.synthetic import canary_email, prose

    if m < 0:
        raise ValueError(f"audit.canaries: expected a count >= 0, got {m}")
    rng = random.Random(f"audit:{seed}")
    lexicon = prose.Lexicon(prose.wordnet_words(), seed)
    rows, seen = [], set()
    for canary_id in range(m):
        value = canary_email(rng)
        while value in seen:
            value = canary_email(rng)
        seen.add(value)
        before = " ".join(prose.sentences(rng, rng.randint(2, 3), lexicon))
        lead = f"Subject: {prose.subject(rng)}\n\n{before} {rng.choice(LEAD_INS)} "
        after = prose.sentences(rng, 1, lexicon)[0]
        included = rng.random() < 0.5
        rows.append((canary_id, DOC_ID_BASE + canary_id, included, f"{lead}{value}.\n{after}\n", len(lead), value))
    return pl.DataFrame(rows, schema=CANARY_SCHEMA, orient="row")

def as_messages(canaries: pl.DataFrame) -> pl.DataFrame:
    """The canaries as rows of the messages table the PII detector reads (doc_id, text, text_body_offset)."""
    return canaries.select("doc_id", "text", text_body_offset=pl.col("text").str.find("\n\n", literal=True) + 2)

def canary_spans(canaries: pl.DataFrame, pii: dict) -> pl.DataFrame:
    """The PII stage's spans of the canary messages (`piimem.pii.detect.detect_spans` with the config's `pii`
    section): what RMFT and scrubbing rewrite in them, as in any training message."""
    from piimem.pii.detect import detect_spans

    return detect_spans(as_messages(canaries), entity_types=pii["entity_types"],
                        score_threshold=pii["score_threshold"], batch_size=pii["batch_size"],
                        spacy_model=pii["spacy_model"], ignore=pii["ignore"], header_pii=False)

def canary_summary(canaries: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """Public counts: canaries, how many are included, and how many addresses the PII stage found (exactly)."""
    found = spans.filter(pl.col("entity_type") == "EMAIL_ADDRESS").join(
        canaries.select("doc_id", "start", "value"), on=["doc_id", "start"], how="inner")
    found = found.filter(pl.col("end") - pl.col("start") == pl.col("value").str.len_chars())
    return pl.DataFrame({"canaries": [canaries.height], "included": [int(canaries["included"].sum())],
                         "held_out": [int((~canaries["included"]).sum())],
                         "addresses_detected": [found["doc_id"].n_unique()],
                         "other_spans": [spans.height - found.height]})
