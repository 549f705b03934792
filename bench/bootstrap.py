"""Benchmark: the report's vectorised bootstraps against the usual way, side by side in one run.

    python bench/bootstrap.py                      # the embedded default's sizes, 1,000 resamples
    python bench/bootstrap.py --strings 20000 --members 2000 --resamples 1000

Timed (wall-clock, the minimum over --repeats; variants alternate so background load hits all alike):
  ter        paired bootstrap of TER reductions: 4 runs x 3 checkpoints over --strings true PII strings.
             piimem: draw counts per string, every run's rates as one matrix product per chunk
             (piimem.report.comparisons); usual: a loop over resamples indexing the strings drawn.
  auc        stratified bootstrap of the ROC AUC over --members members and as many non-members.
             piimem: piimem.metrics.bootstrap_aucs (prefix sums of draw counts); usual: a loop over
             resamples calling roc_auc on the drawn examples; scipy: scipy.stats.bootstrap of the
             Mann-Whitney statistic, vectorised, in batches.
  compare    the whole comparison table of a finished run (--results, default results/ when it exists):
             what the `comparisons` rule adds to a run.
Each line prints the seconds and the ratio usual / piimem. Data are random (no corpus text).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strings", type=int, default=1712, help="true PII strings (default: the default run's)")
    parser.add_argument("--members", type=int, default=85, help="members, and as many non-members")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", default="results", help="a finished run's results folder for `compare`")
    args = parser.parse_args()

    from scipy import stats

    from piimem.intervals import resample_counts
    from piimem.metrics import bootstrap_aucs, reductions_vs_baseline, roc_auc

    rng = np.random.default_rng(0)
    extracted = rng.random((4, 3, args.strings)) < 0.02  # 4 runs x 3 checkpoints
    n, b = args.strings, args.resamples

    def ter_piimem():
        flat = extracted.reshape(-1, n).T.astype(np.float64)
        rates = np.concatenate([(w.astype(np.float64) @ flat).reshape(len(w), 4, 3) / n
                                for w in resample_counts(np.random.default_rng(1), n, b)])
        return reductions_vs_baseline(rates[:, 1:], rates[:, :1])

    def ter_usual():
        draws = np.random.default_rng(1)
        out = []
        for _ in range(b):
            index = draws.integers(0, n, n)
            rates = extracted[:, :, index].mean(axis=2)
            out.append(reductions_vs_baseline(rates[1:], rates[:1]))
        return np.asarray(out)

    labels = np.arange(2 * args.members) < args.members
    scores = rng.normal(0, 1, 2 * args.members) + 0.5 * labels

    def auc_usual():
        draws = np.random.default_rng(1)
        members, others = np.flatnonzero(labels), np.flatnonzero(~labels)
        out = []
        for _ in range(b):
            index = np.r_[draws.choice(members, len(members)), draws.choice(others, len(others))]
            out.append(roc_auc(scores[index], labels[index]))
        return np.asarray(out)

    def mann_whitney(m, o, axis=-1):
        return (np.mean(m[..., :, None] > o[..., None, :], axis=(-2, -1))
                + 0.5 * np.mean(m[..., :, None] == o[..., None, :], axis=(-2, -1)))

    def auc_scipy():
        return stats.bootstrap((scores[labels], scores[~labels]), mann_whitney, n_resamples=b, method="percentile",
                               vectorized=True, batch=max(1, 2_000_000 // (args.members ** 2)),
                               rng=np.random.default_rng(1))

    rows = []
    timings = {"ter piimem": ter_piimem, "ter usual": ter_usual, "auc piimem": lambda: bootstrap_aucs(
        scores, labels, n=b, seed=1), "auc usual": auc_usual, "auc scipy": auc_scipy}
    measured = {name: [] for name in timings}
    for _ in range(args.repeats):
        for name, function in timings.items():
            measured[name].append(best(function, 1))
    seconds = {name: min(values) for name, values in measured.items()}
    rows.append(f"ter      {n} strings x 4 runs x 3 checkpoints, {b} resamples: piimem {seconds['ter piimem']:.3f} "
                f"s, usual loop {seconds['ter usual']:.3f} s ({seconds['ter usual'] / seconds['ter piimem']:.1f}x)")
    rows.append(f"auc      {args.members} + {args.members} examples, {b} resamples: piimem "
                f"{seconds['auc piimem']:.3f} s, usual loop {seconds['auc usual']:.3f} s "
                f"({seconds['auc usual'] / seconds['auc piimem']:.1f}x), scipy.stats.bootstrap "
                f"{seconds['auc scipy']:.3f} s ({seconds['auc scipy'] / seconds['auc piimem']:.1f}x)")
    results = Path(args.results)
    if (results / "metrics.parquet").is_file():
        import polars as pl

        from piimem.report.comparisons import Settings, compare, item_files, read_items

        metrics = pl.read_parquet(results / "metrics.parquet")
        paths = [p for p in item_files(sorted(map(str, results.glob("runs/*/*/*/c*.tsv")))) if Path(p).is_file()]
        start = time.perf_counter()
        table = compare(metrics, read_items(paths), Settings(resamples=b))
        rows.append(f"compare  {results}: {len(paths)} per-item records -> {table.height} comparison rows, "
                    f"{b} resamples: {time.perf_counter() - start:.2f} s")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
