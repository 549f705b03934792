"""How many canaries per cell (`corpus.synthetic.canaries.per_cell`) the canary claims need, from a pilot.

    python bench/canary_power.py [--results results] [--base tiny-gpt2] [--seed 42] [--checkpoint c03]

Reads the per-canary records (`canaries/{checkpoint}.canaries.parquet`, the last checkpoint unless given) of a
pilot's `none-full` and `rmft-full` runs and sizes, at `--alpha` (two-sided) and `--power`:

- the paired claim "RMFT lowers the exposure of repeated canaries": e-mail canaries (the type the paper-scope
  RMFT rewrites) with at least `--min-train` training occurrences, difference d = exposure(none) -
  exposure(rmft) per canary. The paired test's normal approximation gives n = ((z_{1-a/2} + z_power) sd / mean)^2
  canaries; a simulation checks it: `--simulations` samples of n differences, drawn with replacement from the
  pilot's and from a normal with the pilot's mean and sd, each tested with the paired t-test, the exact Wilcoxon
  signed-rank test and the percentile bootstrap interval of the mean (its 1-a interval excluding 0); power = the
  share of samples that reject, and n is the smallest with every test at `--power` under both models.
- the trend claim "canary exposure grows with repetition": Spearman's rho between a canary's training
  occurrences and its exposure over the none run's canaries; n = 3 + 1.06 ((z_{1-a/2} + z_power) / atanh(rho))^2
  canaries (Fieller, Hartley & Pearson's variance of atanh of Spearman's rho); the simulation draws `per_cell`
  canaries per (type, planted repetition) cell with replacement from the pilot's cell (training occurrences and
  exposure together) and tests rho > 0.

Canaries per cell: the paired claim's n over the e-mail canaries that qualify per unit of per_cell (the share of
each repetition count's canaries with `--min-train` training occurrences, the pilot's or the binomial one at
`--train-fraction`, whichever sums smaller), and the trend's smallest simulated per_cell; the larger one is the
answer. Both exposures are sized: the extrapolated one (the claims') and the rank one
(which saturates at log2 |R| and is printed for comparison). Prints numbers only (no canary value).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

N_MAX = 40  # the largest number of paired canaries simulated


def read_records(results: Path, base: str, run: str, checkpoint: str | None) -> pl.DataFrame:
    folder = results / "runs" / base / run / "canaries"
    files = sorted(folder.glob("*.canaries.parquet"))
    if not files:
        raise SystemExit(f"{folder}: no per-canary records (*.canaries.parquet); run the pilot first (see --help)")
    chosen = [f for f in files if f.name.split(".")[0] == checkpoint] if checkpoint else files[-1:]
    if not chosen:
        raise SystemExit(f"{folder}: no records of checkpoint {checkpoint!r} (has {[f.name for f in files]})")
    return pl.read_parquet(chosen[0])


def z(p: float) -> float:
    return float(stats.norm.ppf(p))


def paired_n(differences: np.ndarray, alpha: float, power: float) -> float:
    mean, sd = float(differences.mean()), float(differences.std(ddof=1))
    return ((z(1 - alpha / 2) + z(power)) * sd / mean) ** 2 if mean else math.inf


def trend_n(rho: float, alpha: float, power: float) -> float:
    return 3 + 1.06 * ((z(1 - alpha / 2) + z(power)) / math.atanh(rho)) ** 2 if rho > 0 else math.inf


def paired_power(draws: np.ndarray, alpha: float, rng: np.random.Generator, resamples: int = 400) -> dict[str, float]:
    """Share of the simulated samples (rows of `draws`, paired differences) in which each test rejects at alpha:
    the paired t-test, the exact Wilcoxon signed-rank test, and the percentile bootstrap interval of the mean
    difference excluding 0."""
    simulations, n = draws.shape
    t_reject = stats.ttest_1samp(draws, 0.0, axis=1).pvalue < alpha
    wilcoxon = stats.wilcoxon(draws, axis=1).pvalue < alpha
    index = rng.integers(0, n, size=(simulations, resamples, n))
    means = draws[np.arange(simulations)[:, None, None], index].mean(axis=2)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=1)
    bootstrap = (low > 0) | (high < 0)
    return {"t": float(t_reject.mean()), "wilcoxon": float(wilcoxon.mean()), "bootstrap": float(bootstrap.mean())}


def qualifying_share(r: int, train_fraction: float, min_train: int) -> float:
    """P(at least min_train of a canary's r hosts fall into the training split), hosts split independently."""
    return float(stats.binom.sf(min_train - 1, r, train_fraction))


def trend_power(records: pl.DataFrame, column: str, per_cell: int, alpha: float, simulations: int,
                rng: np.random.Generator) -> float:
    """Share of simulated grids (per_cell canaries per cell, drawn from the pilot's cell) whose Spearman rho of
    training occurrences and exposure is significantly > 0 (one-sided at alpha / 2, the two-sided test's
    rejection)."""
    cells = [part.select("train_occurrences", column).to_numpy()
             for _, part in records.group_by("entity_type", "repetitions")]
    reject = 0
    for _ in range(simulations):
        drawn = np.concatenate([cell[rng.integers(0, len(cell), per_cell)] for cell in cells])
        result = stats.spearmanr(drawn[:, 0], drawn[:, 1], alternative="greater")
        reject += bool(result.pvalue < alpha / 2)
    return reject / simulations


def paired_claim(d: np.ndarray, shares: list[float], label: str, args, rng: np.random.Generator) -> int | None:
    """Print the paired claim's sample size (formula, simulated power per n) and return the smallest per_cell
    whose expected power, over the random number of qualifying canaries it gives, reaches args.power."""
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    n_formula = paired_n(d, args.alpha, args.power)
    print(f"[{label} exposure] paired none - rmft over {d.size} e-mail canaries: mean {mean:.2f} bits, sd {sd:.2f}, "
          f"median {np.median(d):.2f}, {int((d > 0).sum())} of {d.size} positive")
    print(f"  normal approximation: n = ((z + z) sd / mean)^2 = {n_formula:.1f} canaries")
    table = {}  # n -> the smallest power over the tests and the two models
    for n in range(3, N_MAX + 1):
        # two models of the differences: resampled from the pilot's (its shape, but never a sign the pilot
        # lacks; a negligible jitter breaks the resampling's ties, so the exact Wilcoxon test applies as it does
        # to real canaries, whose differences do not tie) and normal with the pilot's mean and sd
        powers = {"resampled": paired_power(rng.choice(d, size=(args.simulations, n))
                                            + rng.normal(0, 1e-9 * sd, (args.simulations, n)), args.alpha, rng),
                  "normal": paired_power(rng.normal(mean, sd, size=(args.simulations, n)), args.alpha, rng)}
        table[n] = min(min(p.values()) for p in powers.values())
        if n <= 12 or n % 4 == 0:
            print(f"  simulated, n = {n:3d}: " + "; ".join(
                f"{name} t {p['t']:.2f}, Wilcoxon {p['wilcoxon']:.2f}, bootstrap {p['bootstrap']:.2f}"
                for name, p in powers.items()))
    needed = next((n for n in sorted(table) if table[n] >= args.power), None)
    print(f"  smallest n with every test at power >= {args.power} under both models: {needed}")
    for per_cell in range(1, 11):
        # the qualifying canaries of a grid are random: per planted count, Binomial(per_cell, share)
        counts = sum(rng.binomial(per_cell, q, size=args.simulations) for q in shares)
        power = float(np.mean([table.get(min(int(c), N_MAX), 0.0) for c in counts]))
        print(f"  per_cell {per_cell}: {counts.mean():.1f} qualifying canaries on average, expected power "
              f"{power:.2f}")
        if power >= args.power:
            return per_cell
    return None


def trend_claim(none: pl.DataFrame, column: str, cells: int, args, rng: np.random.Generator) -> int | None:
    """Print the trend claim's sample size (formula, simulated power per per_cell) and return the smallest
    per_cell whose power reaches args.power."""
    rho = float(stats.spearmanr(none["train_occurrences"], none[column]).statistic)
    n_trend = trend_n(rho, args.alpha, args.power)
    print(f"  trend: Spearman rho(training occurrences, exposure) over the none run's {none.height} canaries = "
          f"{rho:.2f}; n = 3 + 1.06 ((z + z) / atanh rho)^2 = {n_trend:.1f} canaries = {n_trend / cells:.2f} per cell")
    for per_cell in (1, 2, 3, 4):
        power = trend_power(none, column, per_cell, args.alpha, args.simulations, rng)
        print(f"  simulated, per_cell {per_cell}: power {power:.2f}")
        if power >= args.power:
            return per_cell
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the pilot's results directory")
    parser.add_argument("--base", default="tiny-gpt2")
    parser.add_argument("--seed", type=int, default=42, help="the runs' seed (none-full-s<seed>, rmft-full-s<seed>)")
    parser.add_argument("--checkpoint", help="checkpoint id (default: the last)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--power", type=float, default=0.8)
    parser.add_argument("--min-train", type=int, default=2, help="training occurrences of a paired canary")
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--train-fraction", type=float, default=0.6, help="corpus.split.fractions.train")
    args = parser.parse_args()
    none = read_records(args.results, args.base, f"none-full-s{args.seed}", args.checkpoint)
    rmft = read_records(args.results, args.base, f"rmft-full-s{args.seed}", args.checkpoint)
    rng = np.random.default_rng(args.seed)
    planted = none.group_by("entity_type", "repetitions").len()
    pilot_per_cell = int(planted["len"].max())
    print(f"pilot: {none.height} canaries, {planted.height} cells of up to {pilot_per_cell}, checkpoint "
          f"{none['checkpoint'][0] if 'checkpoint' in none.columns else '?'}; alpha {args.alpha} two-sided, power "
          f"{args.power}\n")

    emails = none.filter(pl.col("entity_type") == "EMAIL_ADDRESS")
    qualifying = emails.group_by("repetitions").agg(
        share=(pl.col("train_occurrences") >= args.min_train).mean()).sort("repetitions")
    binomial = [qualifying_share(r, args.train_fraction, args.min_train) for r in qualifying["repetitions"]]
    # per planted count, the smaller of the pilot's share and the binomial one: the conservative guess
    shares = [min(s, b) for s, b in zip(qualifying["share"], binomial)]
    print(f"e-mail canaries with >= {args.min_train} training occurrences, share per planted count r (pilot; "
          f"binomial at train fraction {args.train_fraction}): " + ", ".join(
              f"r={r}: {s:.2f} ({b:.2f})" for (r, s), b in zip(qualifying.rows(), binomial)))
    print(f"  -> {sum(shares):.2f} qualifying canaries per unit of per_cell (the smaller share of each)\n")
    pairs = (none.join(rmft, on="canary_id", suffix="_rmft")
             .filter((pl.col("entity_type") == "EMAIL_ADDRESS") & (pl.col("train_occurrences") >= args.min_train)))
    answers = {}
    for column in ("exposure_extrapolated", "exposure"):
        label = "extrapolated" if column == "exposure_extrapolated" else "rank"
        d = (pairs[column] - pairs[f"{column}_rmft"]).to_numpy()
        paired_cell = paired_claim(d, shares, label, args, rng)
        trend_cell = trend_claim(none, column, planted.height, args, rng)
        answers[label] = (paired_cell, trend_cell)
        print()
    paired_cell, trend_cell = answers["extrapolated"]
    chosen = [c for c in (paired_cell, trend_cell) if c is not None]
    print(f"per_cell for the extrapolated exposure: paired claim {paired_cell}, trend claim {trend_cell}; "
          f"take {max(chosen) if chosen else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
