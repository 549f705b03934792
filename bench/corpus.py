"""The synthetic corpus beside real Enron mail: every corpus statistic, at equal size, with the ratio.

    python bench/corpus.py [--sample 700] [--mailboxes 12 --messages 60]

Generates the synthetic corpus (config/config.yaml's generator settings unless given), parses it and
../shared/data/enron-mini, finds their PII with the project's PII stage, splits them as the workflow
does, and prints `piimem.corpus.stats.corpus_statistics` of both on samples of the same size, the ratio
synthetic / enron-mini per row, and whether the row meets its target (within a factor of 1.5; the
type-token ratio within 30 %). Prints counts and rates only: no text of the real sample.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENRON_MINI = ROOT.parent / "shared" / "data" / "enron-mini"
# Rows compared against a target, and their tolerance: a factor (ratio within 1/f..f) or a relative band.
TARGETS = {"type_token_ratio": ("band", 0.3)}
FACTOR = 1.5
# Rows that describe the sample rather than the corpus.
UNCOMPARED = ("messages", "distinct_bodies", "messages_sampled", "ttr_words_counted")
# The synthetic corpus plants SSNs and card numbers on purpose (the canaries); real mail has almost none.
CANARY_ROWS = ("/US_SSN", "/CREDIT_CARD")


def corpus_tables(maildir: Path, config: dict) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    from piimem.corpus.maildir import parse_maildir
    from piimem.corpus.splits import LinkConfig, assign_splits, link_messages
    from piimem.pii.detect import detect_spans

    messages = parse_maildir(maildir, text_headers=tuple(config["corpus"]["text_headers"])).messages
    split = config["corpus"]["split"]
    groups, _ = link_messages(messages, LinkConfig.from_config(split.get("link"), seed=split["seed"]))
    splits = assign_splits(messages, fractions=split["fractions"], seed=split["seed"], groups=groups)
    spans = detect_spans(messages, entity_types=config["pii"]["entity_types"], n_process=2,
                         text_headers=tuple(config["corpus"]["text_headers"]))
    return messages, spans, splits


def within_target(statistic: str, ratio: float) -> bool | None:
    if statistic in UNCOMPARED or ratio is None or math.isnan(ratio):
        return None
    kind, tolerance = TARGETS.get(statistic, ("factor", FACTOR))
    if kind == "band":
        return abs(ratio - 1) <= tolerance
    return 1 / tolerance <= ratio <= tolerance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=700, help="messages per sample (equal for both)")
    parser.add_argument("--mailboxes", type=int, help="corpus.synthetic.n_mailboxes (default: the config's)")
    parser.add_argument("--messages", type=int, help="corpus.synthetic.messages_per_mailbox")
    args = parser.parse_args()
    if not ENRON_MINI.is_dir():
        print(f"skipped: {ENRON_MINI} is not there (../shared beside the project holds the real Enron sample)")
        return 0

    from snakemake.utils import validate

    from piimem.corpus.stats import corpus_statistics
    from piimem.corpus.synthetic import SyntheticConfig, generate_maildir

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))  # every default filled in
    synthetic = dict(config["corpus"]["synthetic"])
    synthetic.update({k: v for k, v in (("n_mailboxes", args.mailboxes), ("messages_per_mailbox", args.messages))
                      if v is not None})
    cfg = SyntheticConfig.from_config(synthetic)  # as the workflow builds it: its canaries, the schema's defaults
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generate_maildir(Path(tmp) / "maildir", cfg)
        print(f"synthetic corpus generated in {time.perf_counter() - started:.1f} s")
        for name, maildir in (("synthetic", Path(tmp) / "maildir"), ("enron-mini", ENRON_MINI)):
            started = time.perf_counter()
            messages, spans, splits = corpus_tables(maildir, config)
            distinct = messages["body_hash"].n_unique()
            tables[name] = (messages, spans, splits, distinct)
            print(f"{name}: {messages.height} messages, {distinct} distinct bodies, {spans.height} PII spans "
                  f"({time.perf_counter() - started:.1f} s)")
    sample = min(args.sample, *(t[3] for t in tables.values()))
    stats = {name: corpus_statistics(*t[:3], sample_size=sample) for name, t in tables.items()}
    joined = stats["synthetic"].join(stats["enron-mini"], on="statistic", how="full", coalesce=True,
                                     suffix="_real", maintain_order="left")
    print(f"\nboth corpora sampled to {sample} distinct messages\n")
    print(f"{'statistic':34} {'synthetic':>11} {'enron-mini':>11} {'ratio':>7}  target")
    met = missed = 0
    for statistic, ours, real in joined.select("statistic", "value", "value_real").rows():
        ratio = ours / real if ours is not None and real not in (None, 0) else math.nan
        verdict = None if statistic.endswith(CANARY_ROWS) else within_target(statistic, ratio)
        met += verdict is True
        missed += verdict is False
        mark = ("canaries" if statistic.endswith(CANARY_ROWS) else "" if verdict is None
                else "ok" if verdict else "MISSED")
        print(f"{statistic:34} {_num(ours):>11} {_num(real):>11} {_num(ratio):>7}  {mark}")
    print(f"\n{met} rows within target, {missed} missed (factor {FACTOR}; type-token ratio within 30 %; "
          f"the planted canaries' rows not compared)")
    return 0


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"


if __name__ == "__main__":
    sys.exit(main())
