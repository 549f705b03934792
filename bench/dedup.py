"""Benchmark: the dedup stage's near-duplicate search against a naive datasketch loop.

    python bench/dedup.py --docs 20000

Both methods run on the same seeded synthetic corpus (random words, no PII) with realistic
near-duplication: some documents are copies of an earlier one with a few words edited, some are
exact copies (with case and whitespace changed). Each method runs in its own subprocess, so
peak memory is measured fairly: `ru_maxrss` of that process (whole process: interpreter,
imports and corpus included) and the growth of the resident set over its value just before
the method started. Time is wall-clock of the method only (corpus generation excluded).

naive:  per document MinHash(num_perm, seed), update() per whitespace token (UTF-8 encoded),
        lsh.insert() one by one; then lsh.query() per document, candidates verified with
        MinHash.jaccard >= threshold, clusters by union-find.
stage:  piimem.dedup.find_duplicate_clusters (exact-hash groups, vectorised signatures,
        insertion session, verified candidates).

Agreement compares the partitions: the set of same-cluster document pairs of each method,
reported as |both| / |either|, and the set of removed documents.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

# text-dedup's README figure for its MinHash-LSH run (github.com/ChenghaoMou/text-dedup).
TEXT_DEDUP_DOCS = 88_803
TEXT_DEDUP_SECONDS = 15.0


def make_corpus(n_docs: int, seed: int) -> list[str]:
    """Random-word documents (Zipf-like word frequencies); ~20 % are edited copies of an earlier
    document (1-10 % of words replaced, inserted or deleted), ~5 % exact copies with changed
    case or spacing."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(30_000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    docs: list[str] = []
    for i in range(n_docs):
        roll = rng.random()
        if i > 0 and roll < 0.05:
            source = docs[rng.randrange(i)]
            docs.append(source.upper() if rng.random() < 0.5 else source.replace(" ", "  \n", 3))
        elif i > 0 and roll < 0.25:
            words = docs[rng.randrange(i)].split()
            for _ in range(max(1, int(len(words) * rng.uniform(0.01, 0.10)))):
                op, at = rng.random(), rng.randrange(len(words))
                if op < 0.6:
                    words[at] = rng.choice(vocab)
                elif op < 0.8:
                    words.insert(at, rng.choice(vocab))
                elif len(words) > 1:
                    del words[at]
            docs.append(" ".join(words))
        else:
            length = rng.randint(50, 400)
            docs.append(" ".join(rng.choices(vocab, weights=weights, k=length)))
    return docs


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _components(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def run_naive(docs: list[str], num_perm: int, threshold: float, seed: int) -> tuple[list[int], dict]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sketches = []
    for i, text in enumerate(docs):
        m = MinHash(num_perm=num_perm, seed=seed)
        for token in text.lower().split():
            m.update(token.encode("utf-8"))
        lsh.insert(i, m)
        sketches.append(m)
    candidates, pairs = 0, []
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j > i:
                candidates += 1
                if m.jaccard(sketches[j]) >= threshold:
                    pairs.append((i, j))
    return _components(len(docs), pairs), {"candidate_pairs": candidates, "verified_pairs": len(pairs)}


def run_stage(docs: list[str], num_perm: int, threshold: float, seed: int) -> tuple[list[int], dict]:
    from piimem.dedup import DedupConfig, find_duplicate_clusters

    cfg = DedupConfig(num_perm=num_perm, threshold=threshold, seed=seed)
    clusters, stats = find_duplicate_clusters(list(range(len(docs))), docs, cfg)
    return clusters["cluster_id"].to_list(), {
        "candidate_pairs": stats.candidate_pairs,
        "verified_pairs": stats.verified_pairs,
        "exact_duplicate_docs": stats.exact_duplicate_docs,
        "phase_seconds": stats.seconds,
    }


def worker(args: argparse.Namespace) -> None:
    import piimem.dedup  # noqa: F401  same imports in both workers, so the baselines match
    from datasketch import MinHash  # noqa: F401

    docs = make_corpus(args.docs, args.seed)
    rss_before = _rss_bytes()
    start = time.perf_counter()
    method = run_naive if args.worker == "naive" else run_stage
    labels, info = method(docs, args.num_perm, args.threshold, args.seed)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    with open(args.result, "w") as fh:
        json.dump(
            {
                "seconds": seconds,
                "peak_rss": peak,
                "rss_before": rss_before,
                "labels": labels,
                "info": info,
                "tokens": sum(len(d.split()) for d in docs),
            },
            fh,
        )


def same_cluster_pairs(labels: list[int]) -> set[tuple[int, int]]:
    members: dict[int, list[int]] = {}
    for doc, label in enumerate(labels):
        members.setdefault(label, []).append(doc)
    return {(a, b) for group in members.values() for i, a in enumerate(group) for b in group[i + 1 :]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--worker", choices=["naive", "stage"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("naive", "stage"):
            path = os.path.join(tmp, f"{method}.json")
            cmd = [sys.executable, __file__, "--worker", method, "--result", path, "--docs", str(args.docs),
                   "--seed", str(args.seed), "--num-perm", str(args.num_perm),
                   "--threshold", str(args.threshold)]
            subprocess.run(cmd, check=True)
            with open(path) as fh:
                results[method] = json.load(fh)

    n = args.docs
    mib = 1024 * 1024
    print(f"corpus: {n:,} docs, {results['stage']['tokens']:,} tokens, seed {args.seed}, "
          f"num_perm {args.num_perm}, threshold {args.threshold}, {os.cpu_count()} CPUs")
    print(f"{'method':<10}{'seconds':>10}{'docs/s':>12}{'peak RSS MiB':>15}{'RSS growth MiB':>17}"
          f"{'candidates':>12}{'verified':>10}{'removed':>9}")
    for method, r in results.items():
        removed = sum(1 for doc, label in enumerate(r["labels"]) if label != doc)
        print(f"{method:<10}{r['seconds']:>10.2f}{n / r['seconds']:>12,.0f}{r['peak_rss'] / mib:>15.0f}"
              f"{(r['peak_rss'] - r['rss_before']) / mib:>17.0f}{r['info']['candidate_pairs']:>12,}"
              f"{r['info']['verified_pairs']:>10,}{removed:>9,}")
    ratio = results["naive"]["seconds"] / results["stage"]["seconds"]
    print(f"speed-up stage / naive: {ratio:.1f}x")
    print(f"stage phases (s): {results['stage']['info']['phase_seconds']}; stage links "
          f"{results['stage']['info']['exact_duplicate_docs']:,} exact copies by hash, without LSH")
    ref = TEXT_DEDUP_DOCS / TEXT_DEDUP_SECONDS
    print(f"text-dedup reference: {TEXT_DEDUP_DOCS:,} docs in {TEXT_DEDUP_SECONDS:.0f} s = {ref:,.0f} docs/s "
          f"(other corpus and hardware); stage here: {n / results['stage']['seconds']:,.0f} docs/s")

    naive_pairs = same_cluster_pairs(results["naive"]["labels"])
    stage_pairs = same_cluster_pairs(results["stage"]["labels"])
    either = naive_pairs | stage_pairs
    agreement = 100.0 * len(naive_pairs & stage_pairs) / len(either) if either else 100.0
    naive_removed = {d for d, label in enumerate(results["naive"]["labels"]) if label != d}
    stage_removed = {d for d, label in enumerate(results["stage"]["labels"]) if label != d}
    removed_either = naive_removed | stage_removed
    removed_both = len(naive_removed & stage_removed)
    removed_agree = 100.0 * removed_both / len(removed_either) if removed_either else 100.0
    print(f"agreement: same-cluster pairs {agreement:.2f} % ({len(naive_pairs & stage_pairs):,} of "
          f"{len(either):,}); removed docs {removed_agree:.2f} %")
    print("memory: ru_maxrss of each method's own subprocess (peak RSS, whole process) and its growth "
          "over the RSS just before the method started")


if __name__ == "__main__":
    main()
