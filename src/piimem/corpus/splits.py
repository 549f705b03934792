"""Assign every message to a split (train / validation / test / public) so that no text is on two sides.

Membership inference and extraction are only meaningful if a "non-member" text was really never
trained on. Messages with the same `body_hash` (copies in several folders, the same broadcast received
by several people) always land in the same split, and so do messages LINKED by a shared part: a reply
quotes its parent, a forward carries the forwarded message, a re-sent draft repeats most of an earlier
one. `link_messages` splits every body into its parts (`message_segments`: its own text, and each quoted
or forwarded message after an "Original Message" or "Forwarded by" marker, a Notes "... on 01/02/2001
10:12 AM" header line, or a block of ">" lines) and joins two messages into one group when

- a part of one is a near duplicate of a part of the other (MinHash-LSH, Jaccard of word n-grams; parts
  of at least `min_words` words), or
- a part of one lies mostly inside a part of the other (`contained_parts`: containment of its word
  n-grams, short parts included). Only distinctive n-grams count as inside: one that occurs in more than
  `max_parts` bodies is a template's or a signature's ("let me know if you have any questions"), and
  counting it would glue every automated report, and every message with the same sign-off, into one group.

`texts_inside_split` audits the result: the test messages most of whose word n-grams (all of them,
templates included) lie inside one training message.

Units of assignment:

- ``by="message"``: each linked group (or, without links, each body_hash) is one unit.
- ``by="mailbox"``: each mailbox is one group, except units spanning more than one mailbox: those are
  taken out of their mailboxes and form their own group, which then joins the split that holds most of
  its messages' mailboxes (ties: the split listed first in `fractions`).
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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from piimem.checks import is_number
from piimem.schema import default

SPLIT_BY = ("message", "mailbox")
SPLITS = ("train", "validation", "test", "public")


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validated copy of `fractions`; ValueError naming corpus.split.fractions otherwise."""
    if not isinstance(fractions, Mapping) or not fractions:
        raise ValueError(f"corpus.split.fractions must be a non-empty mapping of split name to fraction, "
                         f"got {fractions!r}")
    checked = {}
    for name, value in fractions.items():
        if not is_number(value) or not 0 <= value <= 1:
            raise ValueError(
                f"corpus.split.fractions: {name!r} must be a number between 0 and 1, got {value!r}"
            )
        checked[str(name)] = float(value)
    total = math.fsum(checked.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"corpus.split.fractions must sum to 1, got {total:g} ({checked})")
    return checked


# A line that starts a quoted or forwarded message: Outlook's "-----Original Message-----", Lotus Notes'
# "----- Forwarded by ..." and "Name@ENRON on 01/02/2001 10:12 AM" headers, Gmail's "Forwarded message".
# A Notes header ends in the time: a sentence such as "the server is down on 1/2/01 from 5 to 10" is text.
_QUOTE_START = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*Original Message[ \t]*-{2,}|-{3,}[ \t]*Forwarded (?:by|message)\b"
    r"|\S[^\n]*[ \t]on[ \t]+\d{1,2}/\d{1,2}/\d{2,4}[ \t]+\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]*[AP]M)?"
    r"(?:[ \t]+[A-Z]{2,4})?[ \t]*$)", re.IGNORECASE)
# Header lines at the top of a quoted message ("From:", "Sent:", "To:", "cc:", "Subject:", "Date:").
_QUOTED_HEADER = re.compile(r"^[ \t]*(?:From|Sent|To|Cc|Bcc|Subject|Date)[ \t]*:", re.IGNORECASE)


def message_segments(body: str) -> list[str]:
    """The parts of a message body: its own text first, then each quoted or forwarded message.

    A part starts at a `_QUOTE_START` line (the marker line and the header lines right after it are
    dropped, since they are the quoting mail program's, not the quoted message's); lines beginning with
    ">" are collected, without their ">" marks, into one part of their own. Parts with no text are
    dropped.
    """
    parts: list[list[str]] = [[]]
    quoted: list[str] = []
    in_header = False
    for line in body.splitlines():
        if line.lstrip().startswith(">"):
            quoted.append(line.lstrip().lstrip(">").strip())
            continue
        if _QUOTE_START.match(line):
            parts.append([])
            in_header = True
            continue
        if in_header and (not line.strip() or _QUOTED_HEADER.match(line)):
            continue
        in_header = False
        parts[-1].append(line)
    parts.append(quoted)
    return [text for text in ("\n".join(p).strip() for p in parts) if text]


def quotes_a_message(body: str) -> bool:
    """Whether the body quotes or forwards another message (a `_QUOTE_START` line or a ">" line)."""
    return any(_QUOTE_START.match(line) or line.lstrip().startswith(">") for line in body.splitlines())


@dataclass(frozen=True)
class LinkConfig:
    """`corpus.split.link`: which messages share a part and therefore a split."""

    enabled: bool = default("corpus.split.link.enabled")
    threshold: float = default("corpus.split.link.threshold")  # Jaccard at which two parts are the same text
    shingle_words: int = default("corpus.split.link.shingle_words")  # quoted text is verbatim: its n-grams recur
    min_words: int = default("corpus.split.link.min_words")  # shorter parts are no near-duplicates ...
    containment: float = default("corpus.split.link.containment")  # ... but may lie inside another part
    containment_words: int = default("corpus.split.link.containment_words")
    min_ngrams: int = default("corpus.split.link.min_ngrams")  # fewer n-grams ("Thanks, John") link nothing
    max_parts: int = default("corpus.split.link.max_parts")  # n-grams of more bodies are generic
    num_perm: int = 128  # not a config key: the linking's MinHash precision
    seed: int = default("corpus.split.seed")

    @classmethod
    def from_config(cls, section: Mapping | None, seed: int) -> LinkConfig:
        return cls(**{**(section or {}), "seed": seed})


_WORD = re.compile(r"\w+")


def word_ngrams(texts: list[str], n: int, chunk: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    """(row, key): one entry per distinct word n-gram of each text (lower-cased \\w+ words, so that re-wrapped
    and re-punctuated quotes still match), sorted by row; key is a 64-bit hash of the n-gram. A text of
    fewer than n words has none. Texts are hashed `chunk` at a time: the words and n-grams as strings take
    some 100 times the 16 bytes an entry keeps, so the whole corpus at once would hold gigabytes."""
    rows, keys = [], []
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        words = pl.DataFrame({"row": np.arange(start, start + len(part), dtype=np.int64), "text": part},
                             schema={"row": pl.Int64, "text": pl.Utf8}).select(
            "row", pl.col("text").str.to_lowercase().str.extract_all(_WORD.pattern).alias("word")).explode("word")
        grams = words.drop_nulls("word").select(
            "row", pl.concat_str([pl.col("word").shift(-k).over("row") for k in range(n)], separator=" ").alias("gram"))
        table = grams.drop_nulls("gram").select("row", pl.col("gram").hash(seed=0).alias("key")).unique().sort(
            "row", "key")
        rows.append(table["row"].to_numpy())
        keys.append(table["key"].to_numpy())
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
    return np.concatenate(rows), np.concatenate(keys)


def _pairs_sharing(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (rows[i], rows[j]), i != j, of entries with the same key, repeated once per key
    they share. Entries are sorted by key first; a key held by k entries gives k(k-1) pairs."""
    order = np.argsort(keys, kind="stable")
    keys, rows = keys[order], rows[order]
    left, right = [], []
    for offset in range(1, len(keys)):
        same = np.flatnonzero(keys[offset:] == keys[:-offset])
        if same.size == 0:
            break  # sorted: no key is held by more than `offset` entries
        left += [rows[same], rows[same + offset]]
        right += [rows[same + offset], rows[same]]
    if not left:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(left), np.concatenate(right)


def contained_parts(parts: list[str], owners: list[int], cfg: LinkConfig) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) index pairs of `parts` (owners[a] != owners[b]) where part a lies mostly inside part b: at least
    `cfg.containment` of a's word n-grams (`cfg.containment_words` words) are n-grams of b held by at most
    `cfg.max_parts` owners (distinctive), and a has at least `cfg.min_ngrams` n-grams.

    Exact, by an index of n-gram hashes: sorting the (part, n-gram) entries costs O(N log N) in the N
    n-grams of the corpus, and each distinctive n-gram gives at most max_parts^2 pairs, so the cost stays
    near-linear where a quote's n-grams are rare and templates' are dropped (about 80M entries, some GB, for
    Enron's 500k messages).
    """
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rows, keys = word_ngrams(parts, cfg.containment_words)
    owner = np.asarray(owners, dtype=np.int64)
    n_grams = np.bincount(rows, minlength=len(parts))
    # Distinctive: held by 2 .. max_parts owners (one owner's parts may repeat an n-gram). Counted on the
    # entries sorted by (key, owner), in numpy: a hash table of the distinct pairs took 8 times the memory.
    order = np.lexsort((owner[rows], keys))
    key, by = keys[order], owner[rows][order]
    new_key = np.r_[True, key[1:] != key[:-1]]
    key_id = np.cumsum(new_key) - 1
    owners_of = np.bincount(key_id, weights=new_key | np.r_[True, by[1:] != by[:-1]])[key_id]
    shared = np.empty(len(keys), dtype=bool)
    shared[order] = (owners_of >= 2) & (owners_of <= cfg.max_parts)
    del key, by, key_id, owners_of
    left, right = _pairs_sharing(keys[shared], rows[shared])
    other = owner[left] != owner[right]
    pair, count = np.unique(left[other] * len(parts) + right[other], return_counts=True)
    a, b = pair // len(parts), pair % len(parts)
    inside = (n_grams[a] >= cfg.min_ngrams) & (count >= cfg.containment * n_grams[a])
    return a[inside], b[inside]


def link_messages(messages: pl.DataFrame, cfg: LinkConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """(doc_id, group) for every message, and counts: messages with the same body_hash, a near-duplicate
    part or a part that lies inside a part of the other (`message_segments`, `LinkConfig`,
    `contained_parts`) have the same group, the lowest doc_id among them (connected components).
    `messages` needs doc_id, body, body_hash."""
    from piimem.dedup import DedupConfig, connected_components, find_duplicate_clusters

    table = messages.select("doc_id", "body", "body_hash").sort("doc_id")
    doc_ids = table["doc_id"].to_numpy()
    # Messages are first joined by their body: index of the first message with the same body_hash.
    first_of_body = table.with_row_index("row").group_by("body_hash", maintain_order=True).agg(
        pl.col("row").first().alias("first"), pl.col("row"))
    body_rows = first_of_body["first"].to_list()
    left, right = [], []
    for rows in first_of_body["row"].to_list():
        left += [rows[0]] * (len(rows) - 1)
        right += rows[1:]
    counts = {"messages": table.height, "distinct_bodies": len(body_rows), "parts": 0, "parts_compared": 0,
              "parts_linked": 0, "part_links": 0, "parts_inside_another": 0, "containment_links": 0}
    if cfg.enabled and body_rows:
        owners, parts = [], []
        for row in body_rows:
            for part in message_segments(table["body"][row]):
                owners.append(row)
                parts.append(part)
        long = [i for i, part in enumerate(parts) if len(part.split()) >= cfg.min_words]
        counts.update(parts=len(parts), parts_compared=len(long))
        if long:
            dedup = DedupConfig(num_perm=cfg.num_perm, threshold=cfg.threshold, shingle_words=cfg.shingle_words,
                                seed=cfg.seed, substring_enabled=False)
            clusters, _ = find_duplicate_clusters(list(range(len(long))), [parts[i] for i in long], dedup)
            clusters = clusters.sort("doc_id")
            cluster_of = clusters["cluster_id"].to_numpy()
            long_owners = np.asarray([owners[i] for i in long])
            linked = cluster_of != np.arange(len(long))
            counts["parts_linked"] = clusters.filter(pl.col("cluster_size") > 1).height
            for part in np.flatnonzero(linked):
                if long_owners[part] != long_owners[cluster_of[part]]:
                    left.append(int(long_owners[cluster_of[part]]))
                    right.append(int(long_owners[part]))
                    counts["part_links"] += 1
        inner, outer = contained_parts(parts, owners, cfg)
        counts["parts_inside_another"] = len(np.unique(inner))
        counts["containment_links"] = len(inner)
        left += [owners[i] for i in inner]
        right += [owners[i] for i in outer]
    edges = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    component = connected_components(table.height, *edges) if table.height else np.empty(0, dtype=np.int64)
    groups = pl.DataFrame({"doc_id": doc_ids, "group": doc_ids[component]},
                          schema={"doc_id": pl.Int64, "group": pl.Int64})
    sizes = groups.group_by("group").len()
    counts.update(groups=sizes.height, largest_group=int(sizes["len"].max() or 0),
                  messages_in_linked_groups=int(sizes.filter(pl.col("len") > 1)["len"].sum() or 0))
    return groups, counts


def texts_inside_split(messages: pl.DataFrame, splits: pl.DataFrame, *, words: int, level: float,
                       max_bodies: int | None = None, a: str = "train", b: str = "test") -> int:
    """How many messages of split `b` (test) have at least `level` of their body's word n-grams (`words`
    words) inside the body of one message of split `a` (train): the audit of the split, independent of the
    linker's parts. Every n-gram counts, templates' too, unless `max_bodies`: then only those held by at most
    that many distinct bodies of `messages` count as inside (the linker's distinctive n-grams)."""
    return split_audit(messages, splits, words=words, level=level, max_bodies=[max_bodies], a=a, b=b)[0]


def split_audit(messages: pl.DataFrame, splits: pl.DataFrame, *, words: int, level: float,
                max_bodies: Sequence[int | None], a: str = "train", b: str = "test") -> list[int]:
    """`texts_inside_split` for each of `max_bodies`, from one pass over the distinct bodies' n-grams
    (messages.parquet's folder copies and broadcasts share a body, and so share the answer).

    Exact, and without pairing every message with every holder of a template's n-grams: a message of n
    n-grams, c of them counted, lies `level` inside a message T only if T holds at least ceil(level n) of the
    c, so T misses at most c - ceil(level n) of them and holds one of any c - ceil(level n) + 1 (the prefix
    filter of set-similarity joins). `_inside_one` takes the rarest such n-grams (fewest holders in `a`) and
    checks their holders a block at a time, stopping at the first T that holds enough.
    """
    bodies = messages.select("body_hash", "body").unique("body_hash", keep="first").sort("body_hash")
    body_rows, body_keys = word_ngrams(bodies["body"].to_list(), words)
    of_body = messages.select("doc_id", "body_hash").join(splits.select("doc_id", "split"), on="doc_id").join(
        bodies.with_row_index("body_row").select("body_hash", "body_row"), on="body_hash")

    def entries(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, key) of the split's distinct bodies, rows renumbered from 0, and each body's messages."""
        held = of_body.filter(pl.col("split") == split).group_by("body_row").len().sort("body_row")
        chosen = held["body_row"].to_numpy().astype(np.int64)
        mask = np.isin(body_rows, chosen)
        return np.searchsorted(chosen, body_rows[mask]), body_keys[mask], held["len"].to_numpy()

    (rows, keys, copies), (their_rows, their_keys, their_copies) = entries(b), entries(a)
    n_grams = np.bincount(rows, minlength=len(copies))
    in_theirs = np.isin(keys, their_keys)
    theirs_index = _HolderIndex(their_rows, their_keys, len(their_copies))
    starts = np.searchsorted(rows, np.arange(len(copies) + 1))
    held, times = np.unique(body_keys, return_counts=True) if any(m is not None for m in max_bodies) else (None, None)
    counts = []
    for most in max_bodies:
        counted = in_theirs if most is None else in_theirs & np.isin(keys, held[times <= most])
        # Only bodies whose n-grams lie at least `level` inside the whole split can lie that far inside one.
        hits = np.bincount(rows[counted], minlength=len(copies))
        candidates = np.flatnonzero((n_grams > 0) & (hits >= level * n_grams))
        counts.append(int(sum(copies[r] for r in candidates if _inside_one(
            keys[starts[r]:starts[r + 1]][counted[starts[r]:starts[r + 1]]], int(n_grams[r]), level, theirs_index))))
    return counts


@dataclass
class _HolderIndex:
    """The n-grams of split `a`'s distinct bodies ("messages" here) two ways: each one's keys (sorted by row, as
    `word_ngrams` returns them) and each key's holders (sorted by key)."""

    rows: np.ndarray
    keys: np.ndarray
    messages: int

    def __post_init__(self) -> None:
        self.starts = np.searchsorted(self.rows, np.arange(self.messages + 1))
        order = np.argsort(self.keys, kind="stable")
        self.by_key, self.holder = self.keys[order], self.rows[order]

    def holders(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.searchsorted(self.by_key, keys, "left"), np.searchsorted(self.by_key, keys, "right")

    def shared(self, messages: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """How many of `keys` each of `messages` holds."""
        lengths = self.starts[messages + 1] - self.starts[messages]
        offsets = np.repeat(self.starts[messages] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return np.bincount(np.repeat(np.arange(len(messages)), lengths), weights=np.isin(self.keys[offsets], keys),
                           minlength=len(messages))


_BLOCK = 1_024  # candidate messages checked at once (a template's n-gram may be held by thousands)


def _inside_one(keys: np.ndarray, n_grams: int, level: float, theirs: _HolderIndex) -> bool:
    """Whether one message of `theirs` holds at least level x n_grams of `keys` (a message's counted
    n-grams; it has n_grams in all)."""
    lo, hi = theirs.holders(keys)
    # T holds at least ceil(level x n_grams) of `keys` (the comparison below, in the same floats), so misses at
    # most len(keys) minus that: one of any that many plus one is T's.
    probes = len(keys) - math.ceil(level * n_grams) + 1
    if probes <= 0:
        return False
    rarest = np.argsort(hi - lo, kind="stable")[:probes]
    tried, pending, size = np.empty(0, dtype=np.int64), [], 0
    for start, stop in zip(lo[rarest], hi[rarest]):
        for block in range(start, stop, _BLOCK):
            pending.append(theirs.holder[block:min(stop, block + _BLOCK)])
            size += len(pending[-1])
            if size >= _BLOCK:
                if _holds_enough(pending, tried, keys, level * n_grams, theirs):
                    return True
                tried, pending, size = np.union1d(tried, np.concatenate(pending)), [], 0
    return bool(pending) and _holds_enough(pending, tried, keys, level * n_grams, theirs)


def _holds_enough(pending: list[np.ndarray], tried: np.ndarray, keys: np.ndarray, need: float,
                  theirs: _HolderIndex) -> bool:
    messages = np.setdiff1d(np.concatenate(pending), tried)
    return bool(messages.size) and theirs.shared(messages, keys).max() >= need


def cross_split_links(groups: pl.DataFrame, splits: pl.DataFrame, a: str = "train", b: str = "test") -> int:
    """How many messages of split `b` share a group with a message of split `a` (0 for splits made from
    these groups): under a body-only split, the non-members that would hold training text."""
    table = groups.join(splits, on="doc_id")
    in_a = table.filter(pl.col("split") == a).select("group").unique()
    return table.filter(pl.col("split") == b).join(in_a, on="group", how="semi").height


def _pick(deficits: dict[str, float]) -> str:
    # max() keeps the first of equal keys, i.e. the order of `fractions`.
    return max(deficits, key=deficits.__getitem__)


def assign_splits(
    messages: pl.DataFrame,
    *,
    fractions: Mapping[str, float],
    by: str = "message",
    seed: int,
    groups: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Table (doc_id: Int64, split: Utf8), one row per message, sorted by doc_id.

    `messages` needs doc_id and body_hash, and mailbox when by="mailbox". `groups` (doc_id, group, from
    `link_messages`) joins linked messages into one unit; without it each body_hash is one.
    """
    fractions = check_fractions(fractions)
    if by not in SPLIT_BY:
        raise ValueError(f"corpus.split.by must be one of {SPLIT_BY}, got {by!r}")
    needed = ["doc_id", "body_hash"] + (["mailbox"] if by == "mailbox" else [])
    missing = [c for c in needed if c not in messages.columns]
    if missing:
        raise ValueError(f"assign_splits(by={by!r}): messages table lacks column(s) {missing}")

    if groups is not None:
        messages = messages.drop("body_hash").join(
            groups.select("doc_id", pl.col("group").cast(pl.Utf8).alias("body_hash")), on="doc_id", how="left")
        if messages["body_hash"].null_count():
            raise ValueError(f"assign_splits: {messages['body_hash'].null_count()} message(s) have no link group")
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


# results/corpus/splits.parquet: each message's split and its link group (the lowest doc_id of the messages it
# shares text with: copies, a thread's quotes), which membership inference resamples and keeps in one fold.
SPLITS_SCHEMA = {"doc_id": pl.Int64, "split": pl.Utf8, "group": pl.Int64}


def with_groups(splits: pl.DataFrame, groups: pl.DataFrame) -> pl.DataFrame:
    """The splits table (SPLITS_SCHEMA): `splits` (doc_id, split) with each message's `group` (doc_id, group,
    from `link_messages`); ValueError when a message has no group."""
    table = splits.select("doc_id", "split").join(groups.select("doc_id", "group"), on="doc_id", how="left")
    if table["group"].null_count():
        raise ValueError(f"splits: {table['group'].null_count()} message(s) have no link group")
    return table.cast(SPLITS_SCHEMA).sort("doc_id")


# What `split_texts` reads of messages.parquet: its other columns (bodies, headers) would triple the memory.
TEXT_COLUMNS = ["doc_id", "text"]


def split_texts(messages: pl.DataFrame, splits: pl.DataFrame, split: str) -> pl.DataFrame:
    """(doc_id, text) of the messages assigned to `split`, in doc_id order."""
    ids = splits.filter(pl.col("split") == split).select("doc_id")
    return messages.join(ids, on="doc_id", how="semi").select(TEXT_COLUMNS).sort("doc_id")


def corpus_summary(messages: pl.DataFrame, splits: pl.DataFrame, quarantine: pl.DataFrame) -> pl.DataFrame:
    """Public counts per split (and overall): messages, mailboxes, characters, folder copies."""
    table = messages.select(
        "doc_id", "mailbox", pl.col("text").str.len_chars().alias("chars"),
        pl.col("duplicate_of").is_not_null().alias("copy"),
    ).join(splits, on="doc_id")

    def counts(df: pl.DataFrame) -> pl.DataFrame:
        return df.select(
            messages=pl.len(), mailboxes=pl.col("mailbox").n_unique(), characters=pl.col("chars").sum(),
            copies=pl.col("copy").sum(),
        ).cast(pl.Int64)

    rows = [counts(table.filter(pl.col("split") == name)).with_columns(split=pl.lit(name)) for name in SPLITS]
    rows.append(counts(table).with_columns(split=pl.lit("all")))
    rows.append(pl.DataFrame({"split": ["quarantined"], "messages": [quarantine.height]},
                             schema_overrides={"messages": pl.Int64}))
    return pl.concat(rows, how="diagonal").select("split", "messages", "mailboxes", "characters", "copies")
