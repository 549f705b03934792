"""Deduplication baseline: document-level MinHash-LSH, then exact-substring removal.

The paper's dedup defense (see docs/corpus.md, "Deduplication"):

1. Documents whose normalised text is identical (lower-cased if configured, whitespace collapsed)
   are exact duplicates. They are grouped by a SHA-1 of that text, without any sketching.
2. One document per exact group is MinHash-ed over its shingles (word n-grams of lower-cased
   whitespace tokens; the paper uses single words) and put into a datasketch `MinHashLSH`.
   Every LSH candidate pair is verified by its estimated Jaccard similarity (the share of equal
   signature slots, which is what `MinHash.jaccard` computes) before it may link two documents:
   LSH buckets only promise a *probability* of sharing a bucket, so without the check
   pairs well below the threshold would be merged (text-dedup skips this check by default).
3. Clusters are the connected components of exact and verified near pairs; the document with
   the lowest doc_id of each cluster is kept.
4. Exact-substring removal (Lee et al. 2022) runs on the kept documents: every byte string of at
   least `min_bytes` bytes that already occurred earlier in the (doc_id-ordered) kept corpus is
   cut out. See `remove_repeated_substrings` for the choice to keep the first occurrence.

Speed: the signatures are computed with numpy for thousands of documents at a time, using
datasketch's own permutation parameters and default hash function, so they are bit-identical to
`MinHash(num_perm, seed)` updated with each shingle's UTF-8 bytes (a test checks this), only
without a Python call per shingle. Each distinct shingle is hashed once per batch, and only one
document per exact-duplicate group is sketched.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32

from piimem.progress import Progress
from piimem.schema import check, default

log = logging.getLogger("piimem")

# datasketch's default permutation scheme since 2.0.0: 32-bit hash values, h -> a*h + b mod 2^32.
MINHASH_SCHEME = "affine32"
_EMPTY_SLOT = np.uint32(0xFFFFFFFF)  # value of an untouched signature slot (empty shingle set)

# Rows of the (shingle x permutation) matrix computed at once; bounds memory to ~32 MiB at 128 perms.
_SIGNATURE_CHUNK_ROWS = 1 << 16
# Documents shingled at once: bounds the shingle table (strings) held in memory.
_SIGNATURE_BATCH_DOCS = 4096
# A byte that never occurs in UTF-8 text; it ends every document in the substring search.
_SEPARATOR = 0xFF


@dataclass
class DedupConfig:
    """The `dedup` section of the workflow config (see `from_config` for the key names)."""

    num_perm: int = default("dedup.num_perm")
    threshold: float = default("dedup.threshold")
    shingle_words: int = default("dedup.shingle_words")  # word n-gram size; the paper: single lower-cased tokens
    lowercase: bool = default("dedup.lowercase")
    seed: int = default("dedup.seed")
    verify: bool = default("dedup.verify")
    substring_enabled: bool = default("dedup.substring.enabled")
    substring_min_bytes: int = default("dedup.substring.min_bytes")

    def __post_init__(self) -> None:
        check("dedup", {key: getattr(self, key) for key in
                        ("num_perm", "threshold", "shingle_words", "lowercase", "seed", "verify")})
        check("dedup.substring", {"enabled": self.substring_enabled, "min_bytes": self.substring_min_bytes})

    @classmethod
    def from_config(cls, section: dict) -> DedupConfig:
        """Build from the config's `dedup` mapping: num_perm, threshold, shingle_words, lowercase,
        seed, verify, substring: {enabled, min_bytes}. Missing keys take the defaults."""
        known = {"num_perm", "threshold", "shingle_words", "lowercase", "seed", "verify", "substring"}
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"dedup: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        kwargs = {k: v for k, v in section.items() if k != "substring"}
        substring = section.get("substring") or {}
        unknown = set(substring) - {"enabled", "min_bytes"}
        if unknown:
            raise ValueError(f"dedup.substring: unknown keys {sorted(unknown)}; expected enabled, min_bytes")
        if "enabled" in substring:
            kwargs["substring_enabled"] = substring["enabled"]
        if "min_bytes" in substring:
            kwargs["substring_min_bytes"] = substring["min_bytes"]
        return cls(**kwargs)


@dataclass
class ClusterStats:
    """Counts from `find_duplicate_clusters` (no text, safe to log and publish)."""

    docs: int = 0
    exact_groups: int = 0  # distinct normalised texts = documents that were MinHash-ed
    exact_duplicate_docs: int = 0  # documents whose normalised text occurred at a lower doc_id
    lsh_bands: int = 0
    lsh_rows: int = 0
    candidate_pairs: int = 0  # distinct pairs of MinHash-ed documents sharing an LSH bucket
    verified_pairs: int = 0  # candidates that link documents (all candidates when verify is off)
    rejected_pairs: int = 0  # candidates whose estimated Jaccard is below the threshold
    clusters_with_duplicates: int = 0
    kept_docs: int = 0
    removed_exact: int = 0
    removed_near: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class DedupResult:
    clusters: pl.DataFrame  # doc_id, cluster_id, kept, reason, jaccard_to_kept, cluster_size
    texts: pl.DataFrame  # kept documents only: doc_id, text, removed_bytes
    stats: dict  # ClusterStats fields plus the substring-removal counts


# --------------------------------------------------------------------------------------------
# Shingles and signatures


def normalize_for_exact(texts: pl.Series, lowercase: bool) -> pl.Series:
    """Text as compared for exact duplicates: optionally lower-cased, whitespace runs collapsed
    to one space, stripped."""
    if lowercase:
        texts = texts.str.to_lowercase()
    return texts.str.replace_all(r"\s+", " ").str.strip_chars()


def shingle_table(texts: pl.Series, shingle_words: int, lowercase: bool) -> pl.DataFrame:
    """One row per distinct (document row, shingle), sorted by row: columns `row` (UInt32,
    position in `texts`) and `shingle` (Utf8). Shingles are word n-grams of whitespace tokens
    joined by one space; a document with fewer than n tokens is one shingle of all its tokens;
    a document without tokens has no rows."""
    if lowercase:
        texts = texts.str.to_lowercase()
    rows = pl.int_range(0, len(texts), dtype=pl.UInt32, eager=True).alias("row")
    tokens = pl.DataFrame({"row": rows, "text": texts}).select(
        "row", pl.col("text").str.extract_all(r"\S+").alias("shingle")
    )
    n = shingle_words
    if n == 1:
        # explode keeps row order, so the table stays sorted by row without a sort.
        return tokens.with_columns(pl.col("shingle").list.unique()).explode("shingle").drop_nulls("shingle")
    flat = (
        tokens.explode("shingle").drop_nulls("shingle").with_columns(pl.len().over("row").alias("n_tokens"))
    )
    grams = (
        flat.filter(pl.col("n_tokens") >= n)
        .select(
            "row",
            pl.concat_str([pl.col("shingle").shift(-k).over("row") for k in range(n)], separator=" ")
            .alias("shingle"),
        )
        .drop_nulls("shingle")
    )
    short = (
        flat.filter(pl.col("n_tokens") < n)
        .group_by("row", maintain_order=True)
        .agg(pl.col("shingle").str.join(" "))
    )
    return pl.concat([grams, short]).unique().sort("row", "shingle")


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, which datasketch's affine32 scheme applies to each shingle
    hash before the permutations (uint32 arithmetic wraps, as intended)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def minhash_permutations(num_perm: int, seed: int) -> np.ndarray:
    """The (2, num_perm) uint32 parameters (a, b) datasketch draws for this num_perm and seed."""
    return MinHash(num_perm=num_perm, seed=seed, scheme=MINHASH_SCHEME).permutations


def minhash_signatures(
    shingles: pl.DataFrame, n_rows: int, num_perm: int, seed: int
) -> np.ndarray:
    """MinHash signatures, shape (n_rows, num_perm) uint32, from a `shingle_table`.

    Equal to datasketch's `MinHash(num_perm, seed)` updated with every shingle's UTF-8 bytes
    (default SHA-1 hash, affine32 scheme). Rows without shingles keep the empty value 2^32-1.
    """
    a, b = minhash_permutations(num_perm, seed)
    a, b = a[:, None], b[:, None]
    signatures = np.full((n_rows, num_perm), _EMPTY_SLOT, dtype=np.uint32)
    if shingles.height == 0:
        return signatures
    # Hash each distinct shingle once (vocabularies are much smaller than token streams).
    vocab = shingles["shingle"].unique()
    hashes = np.fromiter((sha1_hash32(s.encode("utf-8")) for s in vocab), dtype=np.uint32, count=len(vocab))
    shingle_hash = shingles["shingle"].replace_strict(vocab, pl.Series(hashes), return_dtype=pl.UInt32)
    rows = shingles["row"].to_numpy()
    mixed = _fmix32(shingle_hash.to_numpy())
    del vocab, hashes, shingle_hash
    # Start index of each row's run in the sorted table; chunks end on run boundaries.
    run_starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    run_rows = rows[run_starts]
    run_ends = np.r_[run_starts[1:], len(rows)]
    # Permutations x shingles, shingles contiguous: the per-document minimum (reduceat along the
    # last axis) is ~20x faster in this layout than with shingles as rows.
    buffer = np.empty((num_perm, min(_SIGNATURE_CHUNK_ROWS, len(rows))), dtype=np.uint32)
    first_run = 0
    while first_run < len(run_starts):
        last_run = int(np.searchsorted(run_ends, run_starts[first_run] + _SIGNATURE_CHUNK_ROWS, "right"))
        last_run = max(last_run, first_run + 1)
        lo, hi = run_starts[first_run], run_ends[last_run - 1]
        if hi - lo > buffer.shape[1]:  # one document with more shingles than a chunk
            buffer = np.empty((num_perm, hi - lo), dtype=np.uint32)
        permuted = buffer[:, : hi - lo]
        np.multiply(a, mixed[None, lo:hi], out=permuted)  # uint32 wraps: the mod 2^32 of affine32
        np.add(permuted, b, out=permuted)
        signatures[run_rows[first_run:last_run]] = np.minimum.reduceat(
            permuted, run_starts[first_run:last_run] - lo, axis=1
        ).T
        first_run = last_run
    return signatures


def text_signatures(
    texts: pl.Series, cfg: DedupConfig, batch_docs: int = _SIGNATURE_BATCH_DOCS
) -> np.ndarray:
    """MinHash signatures (len(texts), num_perm) of texts, in batches of documents so that the
    shingle tables stay small."""
    signatures = np.empty((len(texts), cfg.num_perm), dtype=np.uint32)
    with Progress(len(texts), "dedup: MinHash", unit="docs") as progress:
        for lo in range(0, len(texts), batch_docs):
            batch = texts.slice(lo, batch_docs)
            shingles = shingle_table(batch, cfg.shingle_words, cfg.lowercase)
            signatures[lo : lo + len(batch)] = minhash_signatures(
                shingles, len(batch), cfg.num_perm, cfg.seed
            )
            progress.update(len(batch))
    return signatures


def estimated_jaccard(signatures: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of row pairs (left[i], right[i]): share of equal signature slots, the
    estimator of `MinHash.jaccard`."""
    out = np.empty(len(left), dtype=np.float64)
    step = max(1, (1 << 22) // max(signatures.shape[1], 1))
    for lo in range(0, len(left), step):
        hi = lo + step
        equal = signatures[left[lo:hi]] == signatures[right[lo:hi]]
        out[lo:hi] = equal.sum(axis=1) / signatures.shape[1]
    return out


def verify_pairs(
    signatures: np.ndarray, left: np.ndarray, right: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(accepted mask, estimated Jaccard) of candidate pairs: accepted when Jaccard >= threshold."""
    jaccard = estimated_jaccard(signatures, left, right)
    return jaccard >= threshold, jaccard


def lsh_candidate_pairs(
    signatures: np.ndarray, threshold: float, num_perm: int, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Candidate pairs (left < right, row indices) sharing at least one LSH bucket, from a
    datasketch MinHashLSH with the given threshold; also its (bands, rows per band)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches = [LeanMinHash(seed=seed, hashvalues=sig, scheme=MINHASH_SCHEME) for sig in signatures]
    with (
        Progress(len(sketches), "dedup: LSH insert", unit="docs") as progress,
        lsh.insertion_session(buffer_size=max(len(sketches), 1)) as session,
    ):
        for row, sketch in enumerate(sketches):
            # Keys are unique row numbers, so the duplicate-key lookup can be skipped.
            session.insert(row, sketch, check_duplication=False)
            progress.update()
    left: list[int] = []
    right: list[int] = []
    with Progress(len(sketches), "dedup: LSH query", unit="docs") as progress:
        for row, sketch in enumerate(sketches):
            # Bucket sharing is symmetric, so each pair is taken once, from its lower row.
            for other in lsh.query(sketch):
                if other > row:
                    left.append(row)
                    right.append(other)
            progress.update()
    pairs_left = np.asarray(left, dtype=np.int64)
    pairs_right = np.asarray(right, dtype=np.int64)
    order = np.lexsort((pairs_right, pairs_left))
    return pairs_left[order], pairs_right[order], (lsh.b, lsh.r)


def connected_components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest member index) of each of n nodes."""
    parent = list(range(n))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for x, y in zip(left.tolist(), right.tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            # Smaller index becomes the root, so the label is the component's minimum.
            if rx < ry:
                parent[ry] = rx
            else:
                parent[rx] = ry
    return np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)


# --------------------------------------------------------------------------------------------
# Document-level clusters


def _check_inputs(doc_ids: Sequence[int], texts: Sequence[str]) -> tuple[np.ndarray, pl.Series]:
    ids = pl.Series("doc_id", doc_ids, dtype=pl.Int64)
    text = pl.Series("text", texts, dtype=pl.Utf8)
    if len(ids) != len(text):
        raise ValueError(f"dedup: doc_ids has {len(ids)} entries but texts has {len(text)}")
    if ids.null_count():
        raise ValueError("dedup: doc_ids must not contain nulls")
    if text.null_count():
        bad = ids.filter(text.is_null()).head(5).to_list()
        raise ValueError(f"dedup: texts must be strings, got null for doc_id(s) {bad}")
    if ids.n_unique() != len(ids):
        dup = ids.filter(ids.is_duplicated()).unique().sort().head(5).to_list()
        raise ValueError(f"dedup: doc_ids must be unique, repeated: {dup}")
    return ids.to_numpy(), text


class PhaseTimer:
    """Seconds per named phase of a stage (text-dedup's pattern): `with timer("lsh"): ...`; `seconds` holds
    each phase's wall time, rounded to milliseconds, in the order the phases ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = round(time.perf_counter() - started, 3)


@dataclass
class ExactGroups:
    """Documents (in doc_id order) grouped by their normalised text: one representative per group, the lowest
    doc_id. Representative i is the document at position rep_pos[i]; rep_of_doc[j] is the representative of
    document j."""

    rep_pos: np.ndarray
    rep_of_doc: np.ndarray

    @property
    def count(self) -> int:
        return len(self.rep_pos)


def find_duplicate_clusters(
    doc_ids: Sequence[int], texts: Sequence[str], cfg: DedupConfig
) -> tuple[pl.DataFrame, ClusterStats]:
    """Exact and near-duplicate clusters.

    Returns (clusters, stats). `clusters` has one row per input document, sorted by doc_id:
    doc_id Int64; cluster_id Int64 (doc_id of the kept document); kept Boolean (lowest doc_id of
    its cluster); reason Utf8: "unique" for every kept document (singleton or representative),
    "exact" when its normalised text equals the kept document's, "near" otherwise;
    jaccard_to_kept Float64 (estimated Jaccard to the kept document; 1.0 for exact, null for
    kept — a near member linked through a chain can be below the threshold); cluster_size Int64.

    Four phases, timed in stats.seconds: exact (`exact_groups`), minhash (`text_signatures` of the
    representatives), lsh (`near_pairs`) and cluster (`cluster_table`).
    """
    timer = PhaseTimer()
    with timer("exact"):
        ids, text = _check_inputs(doc_ids, texts)
        order = np.argsort(ids, kind="stable")
        ids, text = ids[order], text.gather(order)
        groups = exact_groups(text, cfg.lowercase)
    stats = ClusterStats(docs=len(ids), exact_groups=groups.count, exact_duplicate_docs=len(ids) - groups.count)
    with timer("minhash"):  # near duplicates among the representatives
        signatures = text_signatures(text.gather(groups.rep_pos), cfg)
    with timer("lsh"):
        left, right = near_pairs(signatures, cfg, stats)
    with timer("cluster"):
        clusters = cluster_table(ids, groups, connected_components(groups.count, left, right), signatures, stats)
    stats.seconds = timer.seconds
    log.info(
        "dedup: %d docs, %d exact duplicates, %d LSH candidate pairs, %d verified, %d rejected, "
        "%d kept",
        stats.docs, stats.exact_duplicate_docs, stats.candidate_pairs, stats.verified_pairs,
        stats.rejected_pairs, stats.kept_docs,
    )
    return clusters, stats


def exact_groups(text: pl.Series, lowercase: bool) -> ExactGroups:
    """Exact duplicates of texts in doc_id order: a SHA-1 of each normalised text (`normalize_for_exact`);
    the group's representative is its first document."""
    n = len(text)
    digests: list[bytes] = []
    for lo in range(0, n, _SIGNATURE_BATCH_DOCS):  # batches: the normalised copy stays small
        normalised = normalize_for_exact(text.slice(lo, _SIGNATURE_BATCH_DOCS), lowercase)
        digests.extend(hashlib.sha1(t.encode("utf-8")).digest() for t in normalised)
    group_of_doc = (
        pl.DataFrame({"digest": pl.Series(digests, dtype=pl.Binary)})
        .select(pl.col("digest").rank("dense").cast(pl.Int64) - 1)  # any stable group label
        .to_series()
        .to_numpy()
    )
    del digests
    n_groups = int(group_of_doc.max()) + 1 if n else 0
    # Docs are in doc_id order, so the first position of each group is its lowest doc_id.
    rep_pos = np.full(n_groups, n, dtype=np.int64)
    np.minimum.at(rep_pos, group_of_doc, np.arange(n))
    rep_pos.sort()  # representatives in doc_id order: rep index i <-> doc position rep_pos[i]
    rep_of_group = np.empty(n_groups, dtype=np.int64)
    rep_of_group[group_of_doc[rep_pos]] = np.arange(n_groups)
    return ExactGroups(rep_pos=rep_pos, rep_of_doc=rep_of_group[group_of_doc])


def near_pairs(signatures: np.ndarray, cfg: DedupConfig, stats: ClusterStats) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of representatives (row indices) that link as near duplicates: LSH candidates, each
    verified by its estimated Jaccard when cfg.verify. Fills the LSH and pair counts of `stats`."""
    left, right, (stats.lsh_bands, stats.lsh_rows) = lsh_candidate_pairs(
        signatures, cfg.threshold, cfg.num_perm, cfg.seed
    )
    stats.candidate_pairs = len(left)
    if cfg.verify:
        accepted, _ = verify_pairs(signatures, left, right, cfg.threshold)
        left, right = left[accepted], right[accepted]
    stats.verified_pairs = len(left)
    stats.rejected_pairs = stats.candidate_pairs - stats.verified_pairs
    return left, right


def cluster_table(ids: np.ndarray, groups: ExactGroups, kept_rep: np.ndarray, signatures: np.ndarray,
                  stats: ClusterStats) -> pl.DataFrame:
    """The clusters table of `find_duplicate_clusters` from each representative's component label
    (`kept_rep`: its kept representative); fills the kept and removed counts of `stats`."""
    n = len(ids)
    # Rep indices follow doc_id order, so a component's minimum rep is its lowest doc_id.
    rep_of_doc = groups.rep_of_doc
    kept_rep_of_doc = kept_rep[rep_of_doc] if n else np.empty(0, dtype=np.int64)
    kept_pos = groups.rep_pos[kept_rep_of_doc] if n else np.empty(0, dtype=np.int64)
    kept = kept_pos == np.arange(n)
    exact = ~kept & (rep_of_doc == kept_rep_of_doc)
    near = ~kept & ~exact
    jaccard = np.full(n, np.nan)
    jaccard[exact] = 1.0
    if near.any():
        jaccard[near] = estimated_jaccard(signatures, rep_of_doc[near], kept_rep_of_doc[near])
    reason = np.where(kept, "unique", np.where(exact, "exact", "near"))
    stats.kept_docs = int(kept.sum())
    stats.removed_exact = int(exact.sum())
    stats.removed_near = int(near.sum())
    stats.clusters_with_duplicates = int(np.unique(kept_pos[~kept]).size)
    return pl.DataFrame(
        {
            "doc_id": ids,
            "cluster_id": ids[kept_pos],
            "kept": kept,
            "reason": reason,
            "jaccard_to_kept": pl.Series(jaccard, dtype=pl.Float64, nan_to_null=True),
        },
        schema_overrides={"doc_id": pl.Int64, "cluster_id": pl.Int64},
    ).with_columns(pl.len().over("cluster_id").cast(pl.Int64).alias("cluster_size"))


# --------------------------------------------------------------------------------------------
# Exact-substring removal


def remove_repeated_substrings(texts: list[str], min_bytes: int) -> tuple[list[str], list[int]]:
    """Cut every byte string of >= min_bytes bytes that already occurred earlier in `texts`.

    The texts are UTF-8 encoded and concatenated in the given order, each followed by the byte
    0xFF, which never occurs in UTF-8; matches are cut at the first 0xFF so none spans two
    documents. A suffix array (pydivsufsort.divsufsort), its LCP array (kasai) and the longest
    previous factor array give, for each byte position p, the longest string starting at p
    that also starts at an earlier position. Every position where that length is >= min_bytes
    starts a repeat, and the union of [p, p + min_bytes) over these positions is exactly the
    union of all later occurrences of all repeated strings (occurrences may overlap: a run of
    200 equal bytes keeps only its first byte).

    Choice: the FIRST occurrence (lowest position, i.e. lowest doc_id when texts are in doc_id
    order) stays, so each repeated passage is still seen once in training. Lee et al.'s
    ExactSubstr tool instead removes every occurrence, including the first.

    A character is cut only when all its bytes are inside a cut range, so the result is valid
    UTF-8 (a repeat can start or end inside a multi-byte character that differs elsewhere).

    Returns (new texts, removed UTF-8 bytes per text).
    """
    from pydivsufsort import divsufsort, kasai, longest_previous_factor

    if min_bytes < 1:
        raise ValueError(f"dedup.substring.min_bytes: expected an integer >= 1, got {min_bytes!r}")
    encoded = [t.encode("utf-8") for t in texts]
    sep = bytes([_SEPARATOR])
    data = np.frombuffer(bytearray(sep.join(encoded) + sep), dtype=np.uint8)
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    starts = np.r_[0, np.cumsum(lengths + 1)[:-1]].astype(np.int64) if len(encoded) else lengths
    if int(lengths.sum()) < 2 * min_bytes:  # no room for a repeat
        return list(texts), [0] * len(texts)

    # Memory: peak about 30 bytes per input byte (suffix array, LCP, LPF and the masks below;
    # the index arrays are int32 below 2 GiB). 30 MB of text take ~7 s on one core.
    suffix_array = divsufsort(data)
    lcp = kasai(data, suffix_array)
    previous = longest_previous_factor(data, suffix_array, lcp)
    del suffix_array, lcp
    # A repeat starts at p if the longest earlier match is >= min_bytes and no separator lies in
    # [p, p + min_bytes) (a match that reaches a separator stops there: both copies hold it at
    # the same offset). Done in blocks to keep the int64 temporaries small.
    separators = np.flatnonzero(data == _SEPARATOR)
    repeat_start = np.zeros(len(data), dtype=bool)
    block = 1 << 24
    for lo in range(0, len(data), block):
        pos = np.arange(lo, min(lo + block, len(data)), dtype=np.int64)
        next_separator = separators[np.searchsorted(separators, pos)]
        repeat_start[lo : lo + block] = (previous[lo : lo + block] >= min_bytes) & (
            next_separator - pos >= min_bytes
        )
    del previous
    # Position p is covered if a repeat starts in (p - min_bytes, p].
    count_dtype = np.int32 if len(data) < 2**31 - 1 else np.int64
    started = np.zeros(len(data) + 1, dtype=count_dtype)
    np.cumsum(repeat_start, dtype=count_dtype, out=started[1:])
    del repeat_start
    covered = started[1:].copy()
    covered[min_bytes:] -= started[1 : len(data) + 1 - min_bytes]
    covered = covered > 0
    del started

    # Shrink to whole characters: a character goes only if all its bytes are covered.
    is_lead = (data & 0xC0) != 0x80
    lead_pos = np.flatnonzero(is_lead)
    char_all_covered = np.minimum.reduceat(covered.view(np.uint8), lead_pos) > 0
    del covered
    char_index = np.cumsum(is_lead, dtype=count_dtype) - 1
    cut = char_all_covered[char_index]
    del is_lead, char_index, lead_pos, char_all_covered

    cut_before = np.r_[0, np.cumsum(cut, dtype=np.int64)]
    removed = (cut_before[starts + lengths] - cut_before[starts]).astype(np.int64)
    if not removed.any():
        return list(texts), [0] * len(texts)
    kept_bytes = data[~cut].tobytes()
    pieces = kept_bytes.split(sep)[:-1]
    new_texts = [
        piece.decode("utf-8") if n_removed else original
        for piece, n_removed, original in zip(pieces, removed.tolist(), texts)
    ]
    return new_texts, removed.tolist()


# --------------------------------------------------------------------------------------------
# The whole stage


def deduplicate(doc_ids: Sequence[int], texts: Sequence[str], cfg: DedupConfig) -> DedupResult:
    """Clusters, then substring removal on the kept documents (in doc_id order) if enabled."""
    clusters, cluster_stats = find_duplicate_clusters(doc_ids, texts, cfg)
    by_id = pl.DataFrame(
        {"doc_id": pl.Series(doc_ids, dtype=pl.Int64), "text": pl.Series(texts, dtype=pl.Utf8)}
    )
    kept = (
        clusters.filter(pl.col("kept"))
        .select("doc_id")
        .join(by_id, on="doc_id", how="left")
        .sort("doc_id")
    )
    stats = asdict(cluster_stats)
    kept_texts = kept["text"].to_list()
    bytes_before = sum(len(t.encode("utf-8")) for t in kept_texts)
    if cfg.substring_enabled:
        timer = PhaseTimer()
        with timer("substring"):
            new_texts, removed = remove_repeated_substrings(kept_texts, cfg.substring_min_bytes)
        stats["seconds"].update(timer.seconds)
    else:
        new_texts, removed = kept_texts, [0] * len(kept_texts)
    stats.update(
        substring_enabled=cfg.substring_enabled,
        substring_min_bytes=cfg.substring_min_bytes,
        kept_bytes_before_substring=bytes_before,
        substring_removed_bytes=int(sum(removed)),
        substring_docs_changed=int(sum(1 for r in removed if r)),
    )
    log.info(
        "dedup: substring removal cut %d of %d bytes in %d documents",
        stats["substring_removed_bytes"], bytes_before, stats["substring_docs_changed"],
    )
    out = pl.DataFrame(
        {
            "doc_id": kept["doc_id"],
            "text": pl.Series(new_texts, dtype=pl.Utf8),
            "removed_bytes": pl.Series(removed, dtype=pl.Int64),
        }
    )
    return DedupResult(clusters=clusters, texts=out, stats=stats)


def dedup_summary(result: DedupResult) -> pl.DataFrame:
    """Public counts of the stage as (statistic, value) rows; timings stay in the log."""
    rows = [(k, int(v)) for k, v in result.stats.items() if isinstance(v, (int, bool)) and not isinstance(v, float)]
    return pl.DataFrame(rows, schema={"statistic": pl.Utf8, "value": pl.Int64}, orient="row")
