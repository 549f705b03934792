"""Deduplication baseline: MinHash-LSH clusters and exact-substring removal."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash

from piimem.dedup import (
    DedupConfig,
    deduplicate,
    find_duplicate_clusters,
    minhash_signatures,
    remove_repeated_substrings,
    shingle_table,
    verify_pairs,
)


def _words(n: int, seed: int) -> list[str]:
    """n distinct made-up words (no PII), seeded."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)))
    return sorted(out)


def _doc(n_words: int, seed: int) -> str:
    words = _words(n_words, seed)
    random.Random(seed).shuffle(words)
    return " ".join(words)


# ------------------------------------------------------------------------------------------
# Signatures


def test_signatures_equal_datasketch_minhash_per_shingle():
    texts = ["Hello world, hello again", "Ünïcode wörds ÄND more", "", "   ", "one"]
    shingles = shingle_table(pl.Series(texts), 1, True)
    signatures = minhash_signatures(shingles, len(texts), 64, 7)
    for row, text in enumerate(texts):
        reference = MinHash(num_perm=64, seed=7)
        for token in text.lower().split():
            reference.update(token.encode("utf-8"))
        assert np.array_equal(signatures[row], reference.hashvalues), row


def test_shingle_table_word_ngrams():
    table = shingle_table(pl.Series(["A b c d", "x y", "", "a b c a b c"]), 3, True)
    got = {(r, s) for r, s in table.iter_rows()}
    assert got == {(0, "a b c"), (0, "b c d"), (1, "x y"), (3, "a b c"), (3, "b c a"), (3, "c a b")}


# ------------------------------------------------------------------------------------------
# Clusters


def test_exact_duplicates_form_one_cluster():
    base = _doc(60, 1)
    texts = [base, "  " + base.upper().replace(" ", " \n\t ") + "\n", _doc(60, 2)]
    clusters, stats = find_duplicate_clusters([0, 1, 2], texts, DedupConfig())
    rows = {r["doc_id"]: r for r in clusters.iter_rows(named=True)}
    assert rows[0] == {"doc_id": 0, "cluster_id": 0, "kept": True, "reason": "unique",
                       "jaccard_to_kept": None, "cluster_size": 2}
    assert rows[1] == {"doc_id": 1, "cluster_id": 0, "kept": False, "reason": "exact",
                       "jaccard_to_kept": 1.0, "cluster_size": 2}
    assert rows[2]["kept"] and rows[2]["cluster_size"] == 1
    assert stats.exact_duplicate_docs == 1 and stats.exact_groups == 2
    assert clusters.schema == pl.Schema({"doc_id": pl.Int64, "cluster_id": pl.Int64, "kept": pl.Boolean,
                                         "reason": pl.String, "jaccard_to_kept": pl.Float64,
                                         "cluster_size": pl.Int64})


def test_near_duplicate_one_word_changed_in_200():
    base = _doc(200, 3)
    words = base.split()
    words[100] = "replacement"
    edited = " ".join(words)
    texts = [_doc(200, 4), edited, base]
    clusters, stats = find_duplicate_clusters([10, 11, 12], texts, DedupConfig())
    near = clusters.filter(pl.col("doc_id") == 12).row(0, named=True)
    assert near["cluster_id"] == 11 and not near["kept"] and near["reason"] == "near"
    assert near["jaccard_to_kept"] >= 0.8
    # the true Jaccard is 199/201; the estimate is close to it
    assert abs(near["jaccard_to_kept"] - 199 / 201) < 0.05
    assert clusters.filter(pl.col("doc_id") == 10)["cluster_size"].item() == 1
    assert stats.candidate_pairs == 1 and stats.verified_pairs == 1 and stats.removed_near == 1


def test_dissimilar_documents_stay_unique():
    texts = [_doc(120, seed) for seed in range(20, 30)]
    clusters, stats = find_duplicate_clusters(list(range(10)), texts, DedupConfig())
    assert clusters["kept"].all()
    assert clusters["reason"].to_list() == ["unique"] * 10
    assert clusters["cluster_id"].to_list() == list(range(10))
    assert clusters["jaccard_to_kept"].null_count() == 10
    assert stats.kept_docs == 10 and stats.verified_pairs == 0


def test_kept_is_lowest_doc_id_whatever_the_input_order():
    base = _doc(100, 5)
    words = base.split()
    words[3] = "changed"
    texts = [base, _doc(100, 6), " ".join(words), base]
    clusters, _ = find_duplicate_clusters([50, 9, 23, 70], texts, DedupConfig())
    assert clusters["doc_id"].to_list() == [9, 23, 50, 70]
    by_id = {r["doc_id"]: r for r in clusters.iter_rows(named=True)}
    assert by_id[23]["kept"] and by_id[23]["cluster_size"] == 3
    assert (by_id[50]["cluster_id"], by_id[50]["reason"]) == (23, "near")
    # 70 is an exact copy of 50, but not of the kept document 23
    assert (by_id[70]["cluster_id"], by_id[70]["reason"]) == (23, "near")
    assert by_id[9]["kept"] and by_id[9]["cluster_id"] == 9


def test_verify_pairs_thresholds_estimated_jaccard():
    signatures = np.arange(4 * 128, dtype=np.uint32).reshape(4, 128)
    signatures[1] = signatures[0]
    signatures[1, :64] += 1000  # half the slots differ: 0.5
    signatures[2] = signatures[0]
    signatures[2, :18] += 1000  # 110 of 128 equal: 0.859
    accepted, jaccard = verify_pairs(signatures, np.array([0, 0, 0]), np.array([1, 2, 3]), 0.8)
    assert accepted.tolist() == [False, True, False]
    assert jaccard.tolist() == [0.5, 110 / 128, 0.0]
    # same estimator as datasketch's MinHash.jaccard
    m0, m2 = (MinHash(num_perm=128, seed=1, hashvalues=signatures[i], scheme="affine32") for i in (0, 2))
    assert m0.jaccard(m2) == jaccard[1]


def test_verification_rejects_lsh_candidates_below_threshold():
    # Few permutations and a low threshold make LSH buckets catch many weakly similar pairs
    # (shared half of their words: true Jaccard 1/3).
    rng = random.Random(8)
    vocab = _words(4000, 8)
    texts = []
    for _ in range(30):
        shared = rng.sample(vocab, 30)
        texts.append(" ".join(shared + rng.sample(vocab, 30)))
        texts.append(" ".join(shared + rng.sample(vocab, 30)))
    ids = list(range(len(texts)))
    strict, strict_stats = find_duplicate_clusters(ids, texts, DedupConfig(num_perm=16, threshold=0.5))
    loose, loose_stats = find_duplicate_clusters(
        ids, texts, DedupConfig(num_perm=16, threshold=0.5, verify=False)
    )
    assert strict_stats.candidate_pairs == loose_stats.candidate_pairs > 0
    assert strict_stats.rejected_pairs > 0
    assert strict_stats.verified_pairs == strict_stats.candidate_pairs - strict_stats.rejected_pairs
    assert loose_stats.verified_pairs == loose_stats.candidate_pairs and loose_stats.rejected_pairs == 0
    assert strict["kept"].sum() > loose["kept"].sum()
    # every pair linked directly under verification is at or above the threshold
    direct = strict.filter(~pl.col("kept") & (pl.col("cluster_size") == 2))
    assert (direct["jaccard_to_kept"] >= 0.5).all()


def test_same_seed_same_result_other_seed_other_signatures():
    rng = random.Random(11)
    base = _doc(80, 11)
    texts = [base] + [" ".join(w if rng.random() > 0.05 else "x" for w in base.split()) for _ in range(6)]
    texts += [_doc(80, s) for s in range(40, 46)]
    ids = list(range(len(texts)))
    first, _ = find_duplicate_clusters(ids, texts, DedupConfig(seed=3))
    second, _ = find_duplicate_clusters(ids, texts, DedupConfig(seed=3))
    assert first.equals(second)
    table = shingle_table(pl.Series(texts), 1, True)
    assert not np.array_equal(minhash_signatures(table, len(texts), 128, 3),
                              minhash_signatures(table, len(texts), 128, 4))


def test_bad_input_and_config_are_named():
    with pytest.raises(ValueError, match="doc_ids must be unique.*\\[1\\]"):
        find_duplicate_clusters([1, 1], ["a", "b"], DedupConfig())
    with pytest.raises(ValueError, match="doc_ids has 2 entries but texts has 1"):
        find_duplicate_clusters([1, 2], ["a"], DedupConfig())
    with pytest.raises(ValueError, match="dedup.threshold: expected a number in \\(0, 1\\], got 1.5"):
        DedupConfig(threshold=1.5)
    with pytest.raises(ValueError, match="dedup.substring: unknown keys \\['min_len'\\]"):
        DedupConfig.from_config({"substring": {"min_len": 5}})
    cfg = DedupConfig.from_config({"num_perm": 64, "substring": {"enabled": False, "min_bytes": 50}})
    got = (cfg.num_perm, cfg.substring_enabled, cfg.substring_min_bytes, cfg.threshold)
    assert got == (64, False, 50, 0.8)


# ------------------------------------------------------------------------------------------
# Exact-substring removal

SENTENCE_150 = ("The quarterly pipeline review moved to the large meeting room on the third floor, "
                "so please bring the printed capacity charts along with you today. OK")


def test_sentence_150_bytes_stays_only_in_first_document():
    assert len(SENTENCE_150.encode()) == 150
    texts = ["Alpha:" + SENTENCE_150 + "|one", "Beta;" + SENTENCE_150 + "#two",
             "Gamma!" + SENTENCE_150 + "&3",
             "unrelated short text"]
    new, removed = remove_repeated_substrings(texts, 100)
    assert new == [texts[0], "Beta;#two", "Gamma!&3", texts[3]]
    assert removed == [0, 150, 150, 0]


def test_repeat_of_99_bytes_stays_at_min_bytes_100():
    repeat = SENTENCE_150[:99]
    texts = ["<" + repeat + ">", "[" + repeat + "]", "{" + repeat + "}"]
    assert remove_repeated_substrings(texts, 100) == (texts, [0, 0, 0])
    # one byte lower and it goes
    new, removed = remove_repeated_substrings(texts, 99)
    assert new == [texts[0], "[]", "{}"] and removed == [0, 99, 99]


def test_non_ascii_repeat_cut_on_character_boundaries():
    repeat = "Grüße aus Zürich, Ærøskøbing und 東京: die Größe des Übertrags ist unverändert geblieben — ça va."
    assert len(repeat.encode()) >= 100
    # é (C3 A9) / © (C2 A9) share their last byte, ê (C3 AA) / é share their first: the byte-level
    # repeat starts and ends inside these characters, which must stay whole.
    texts = ["é" + repeat + "é", "©" + repeat + "ê", "plain"]
    new, removed = remove_repeated_substrings(texts, 100)
    assert new == [texts[0], "©ê", "plain"]
    assert removed == [0, len(repeat.encode()), 0]
    for t in new:
        t.encode("utf-8").decode("utf-8")


def test_repeat_inside_one_document_and_no_match_across_documents():
    block = SENTENCE_150[:120]
    new, removed = remove_repeated_substrings(["1" + block + "2" + block + "3"], 100)
    assert new == ["1" + block + "23"] and removed == [120]
    # 60 + 60 bytes: adjacent documents never form a 120-byte match across their boundary
    left, right = SENTENCE_150[:60], SENTENCE_150[60:120]
    texts = [left, right, "x" + left + right + "y"]
    assert remove_repeated_substrings(texts, 100) == (texts, [0, 0, 0])


def test_deduplicate_end_to_end():
    base = _doc(150, 21)
    tail = " ".join(_words(30, 22))
    texts = [base, base.upper(), _doc(150, 23) + " " + SENTENCE_150,
             _doc(150, 24) + "\n" + SENTENCE_150, tail]
    result = deduplicate([4, 5, 6, 7, 8], texts, DedupConfig())
    assert result.clusters.filter(~pl.col("kept"))["doc_id"].to_list() == [5]
    assert result.texts["doc_id"].to_list() == [4, 6, 7, 8]
    by_id = {r["doc_id"]: r for r in result.texts.iter_rows(named=True)}
    assert by_id[6]["text"] == texts[2] and by_id[6]["removed_bytes"] == 0
    assert by_id[7]["text"] == texts[3][: -len(SENTENCE_150)] and by_id[7]["removed_bytes"] == 150
    assert result.stats["substring_removed_bytes"] == 150 and result.stats["substring_docs_changed"] == 1
    assert result.stats["removed_exact"] == 1 and result.stats["kept_docs"] == 4
    off = deduplicate([4, 5, 6, 7, 8], texts, DedupConfig(substring_enabled=False))
    assert off.texts["removed_bytes"].sum() == 0 and off.texts["text"].to_list()[2] == texts[3]


def _removal_by_brute_force(texts: list[str], min_bytes: int) -> tuple[list[str], list[int]]:
    """The definition, spelled out: a byte goes if it lies in a string of >= min_bytes bytes that
    also starts at an earlier position (not across documents); a character goes if all its
    bytes go."""
    encoded = [t.encode() for t in texts]
    data = b"\xff".join(encoded) + b"\xff"
    covered = [False] * len(data)
    for start in range(len(data)):
        longest = 0
        for earlier in range(start):
            length = 0
            while data[start + length] != 0xFF and data[earlier + length] == data[start + length]:
                length += 1
            longest = max(longest, length)
        if longest >= min_bytes:
            covered[start : start + longest] = [True] * longest
    out, removed, offset = [], [], 0
    for enc in encoded:
        kept, cut, i = bytearray(), 0, 0
        while i < len(enc):
            width = 1 if enc[i] < 0x80 else 2 if enc[i] < 0xE0 else 3 if enc[i] < 0xF0 else 4
            if all(covered[offset + i : offset + i + width]):
                cut += width
            else:
                kept += enc[i : i + width]
            i += width
        out.append(kept.decode())
        removed.append(cut)
        offset += len(enc) + 1
    return out, removed


def test_substring_removal_matches_brute_force_on_small_random_texts():
    rng = random.Random(5)
    alphabet = ["a", "b", "é", "©", "ê", "東"]  # shared lead and continuation bytes
    for _ in range(150):
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
                 for _ in range(rng.randint(1, 4))]
        min_bytes = rng.randint(1, 6)
        assert remove_repeated_substrings(texts, min_bytes) == _removal_by_brute_force(texts, min_bytes), (
            texts, min_bytes)
