"""Assign every message to a split (train / test / public) so that no body is on both sides.

Membership inference and extraction are only meaningful if a "non-member" text was really never
trained on, so messages with the same `body_hash` (copies in several folders, the same broadcast
received by several people) always land in the same split.

Units of assignment:

- ``by="message"``: all messages sharing a body_hash form one group.
- ``by="mailbox"``: each mailbox is one group, except messages whose body_hash occurs in more than one
  mailbox: those are taken out of their mailboxes and form one group per body_hash, which then joins
  the split that holds most of its messages' mailboxes (ties: the split listed first in `fractions`).
  Why not merge the mailboxes that share a body instead: company-wide announcements reach nearly
  every Enron mailbox, so merging glues almost all mailboxes into one group and the fractions
  become unreachable (already on the 4-mailbox enron-mini sample all four would merge).

Groups are shuffled with the seed and each goes to the split furthest below its target message
count (fraction x messages; ties: order of `fractions`), so realised fractions track the targets to
within about one group. A split with fraction 0 gets nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import polars as pl

SPLIT_BY = ("message", "mailbox")
SPLITS = ("train", "test", "public")


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validated copy of `fractions`; ValueError naming corpus.split.fractions otherwise."""
    if not isinstance(fractions, Mapping) or not fractions:
        raise ValueError(f"corpus.split.fractions must be a non-empty mapping of split name to fraction, "
                         f"got {fractions!r}")
    checked = {}
    for name, value in fractions.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(
                f"corpus.split.fractions: {name!r} must be a number between 0 and 1, got {value!r}"
            )
        checked[str(name)] = float(value)
    total = math.fsum(checked.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"corpus.split.fractions must sum to 1, got {total:g} ({checked})")
    return checked


def _pick(deficits: dict[str, float]) -> str:
    # max() keeps the first of equal keys, i.e. the order of `fractions`.
    return max(deficits, key=deficits.__getitem__)


def assign_splits(
    messages: pl.DataFrame,
    *,
    fractions: Mapping[str, float],
    by: str = "message",
    seed: int,
) -> pl.DataFrame:
    """Table (doc_id: Int64, split: Utf8), one row per message, sorted by doc_id.

    `messages` needs doc_id and body_hash, and mailbox when by="mailbox".
    """
    fractions = check_fractions(fractions)
    if by not in SPLIT_BY:
        raise ValueError(f"corpus.split.by must be one of {SPLIT_BY}, got {by!r}")
    needed = ["doc_id", "body_hash"] + (["mailbox"] if by == "mailbox" else [])
    missing = [c for c in needed if c not in messages.columns]
    if missing:
        raise ValueError(f"assign_splits(by={by!r}): messages table lacks column(s) {missing}")

    doc_ids = messages["doc_id"].to_list()
    hashes = messages["body_hash"].to_list()
    mailboxes = messages["mailbox"].to_list() if by == "mailbox" else None
    active = [name for name, fraction in fractions.items() if fraction > 0]

    # Group key per message; groups listed in order of first appearance by doc_id, so the
    # pre-shuffle order (and hence the result) depends only on the table's content and the seed.
    if by == "message":
        keys = [("hash", h) for h in hashes]
    else:
        homes: dict[str, set] = {}
        for h, mailbox in zip(hashes, mailboxes):
            homes.setdefault(h, set()).add(mailbox)
        shared = {h for h, boxes in homes.items() if len(boxes) > 1}
        keys = [("hash", h) if h in shared else ("mailbox", mb) for h, mb in zip(hashes, mailboxes)]
    members: dict[tuple, list[int]] = {}
    for row in sorted(range(len(doc_ids)), key=doc_ids.__getitem__):
        members.setdefault(keys[row], []).append(row)

    primary = [key for key in members if key[0] == ("hash" if by == "message" else "mailbox")]
    random.Random(seed).shuffle(primary)
    total = sum(len(members[key]) for key in primary)
    deficits = {name: fractions[name] * total for name in active}
    split_of_group: dict[tuple, str] = {}
    for key in primary:
        name = _pick(deficits)
        split_of_group[key] = name
        deficits[name] -= len(members[key])

    # by="mailbox": each cross-mailbox body follows the majority of its mailboxes.
    for key in members:
        if key in split_of_group:
            continue
        votes = {name: 0 for name in active}
        for row in members[key]:
            home = split_of_group.get(("mailbox", mailboxes[row]))
            if home is not None:
                votes[home] += 1
        split_of_group[key] = _pick(votes) if any(votes.values()) else _pick(deficits)
        deficits[split_of_group[key]] -= len(members[key])

    split = [split_of_group[key] for key in keys]
    return (
        pl.DataFrame({"doc_id": doc_ids, "split": split}, schema={"doc_id": pl.Int64, "split": pl.Utf8})
        .sort("doc_id")
    )


def split_texts(messages: pl.DataFrame, splits: pl.DataFrame, split: str) -> pl.DataFrame:
    """(doc_id, text) of the messages assigned to `split`, in doc_id order."""
    ids = splits.filter(pl.col("split") == split).select("doc_id")
    return messages.join(ids, on="doc_id", how="semi").select("doc_id", "text").sort("doc_id")


def corpus_summary(messages: pl.DataFrame, splits: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Public counts per split (and overall): messages, mailboxes, characters, folder copies."""
    table = messages.select(
        "doc_id", "mailbox", pl.col("text").str.len_chars().alias("chars"), pl.col("duplicate_of").is_not_null().alias("copy")
    ).join(splits, on="doc_id")

    def counts(df: pl.DataFrame) -> pl.DataFrame:
        return df.select(
            messages=pl.len(), mailboxes=pl.col("mailbox").n_unique(), characters=pl.col("chars").sum(),
            copies=pl.col("copy").sum(),
        ).cast(pl.Int64)

    rows = [counts(table.filter(pl.col("split") == name)).with_columns(split=pl.lit(name)) for name in SPLITS]
    rows.append(counts(table).with_columns(split=pl.lit("all")))
    rows.append(pl.DataFrame({"split": ["quarantined"], "messages": [quarantine.height]}, schema_overrides={"messages": pl.Int64}))
    return pl.concat(rows, how="diagonal").select("split", "messages", "mailboxes", "characters", "copies")
