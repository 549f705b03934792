"""Benchmark: the synthetic corpus generator alone at growing sizes (docs/performance.md, "Synthetic corpus at
scale").

    python bench/synthetic_scale.py --sizes 1000 4000 16000 64000 [--per-mailbox 100]

Each size n runs in a fresh process under /usr/bin/time -v: n / per-mailbox mailboxes of per-mailbox messages,
every other generator setting at its default, the maildir and its ground truth (parquet, as the rule writes it)
in a temporary directory that is removed afterwards. Prints wall, user and system seconds and peak RSS per size,
and the growth exponents log(t2 / t1) / log(n2 / n1) of wall and user time and of peak RSS between consecutive
sizes. The generator's own start (imports, the spaCy word lists) is about 2 s of every size. Prints counts only.
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

FIELDS = {"wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", "user": r"User time \(seconds\): (\S+)",
          "sys": r"System time \(seconds\): (\S+)", "rss_mib": r"Maximum resident set size \(kbytes\): (\d+)"}


def child(n_mailboxes: int, per_mailbox: int, out: Path) -> None:
    from piimem.corpus.synthetic import SyntheticConfig, generate_maildir

    cfg = SyntheticConfig(n_mailboxes=n_mailboxes, messages_per_mailbox=per_mailbox)
    truth = generate_maildir(out / "maildir", cfg)
    truth.write_parquet(out / "truth.parquet")
    print(f"rows={truth.height}")


def measure(n: int, per_mailbox: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="synthetic_scale_"))
    try:
        cmd = [sys.executable, __file__, "--child", str(max(1, n // per_mailbox)), str(per_mailbox), str(out)]
        proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if proc.returncode != 0:
            raise RuntimeError(f"the generator failed at {n} messages:\n{proc.stderr[-4000:]}")
        files = sum(1 for p in (out / "maildir").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    found = {k: re.search(pattern, proc.stderr).group(1) for k, pattern in FIELDS.items()}
    wall = sum(float(part) * 60**i for i, part in enumerate(reversed(found["wall"].split(":"))))
    return {"messages": max(1, n // per_mailbox) * per_mailbox, "files": files,
            "rows": int(re.search(r"rows=(\d+)", proc.stdout).group(1)), "wall": wall, "user": float(found["user"]),
            "sys": float(found["sys"]), "rss_mib": int(found["rss_mib"]) / 1024}


def exponent(smaller: dict[str, float], larger: dict[str, float], key: str) -> float:
    """log(t2 / t1) / log(n2 / n1) of `key` between two sizes: 1 for linear growth, 2 for quadratic."""
    return math.log(larger[key] / smaller[key]) / math.log(larger["messages"] / smaller["messages"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--per-mailbox", type=int, default=100)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), Path(args.child[2]))
        return
    print(f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'messages':>9} {'files':>7} {'rows':>9} {'wall_s':>7} {'user_s':>7} {'sys_s':>6} {'rss_MiB':>8}"
          f" {'exp_wall':>8} {'exp_user':>8} {'exp_rss':>7}")
    previous = None
    for n in sorted(args.sizes):
        r = measure(n, args.per_mailbox)
        exps = ["" if previous is None else f"{exponent(previous, r, k):.2f}" for k in ("wall", "user", "rss_mib")]
        print(f"{r['messages']:>9} {r['files']:>7} {r['rows']:>9} {r['wall']:>7.1f} {r['user']:>7.1f} {r['sys']:>6.1f}"
              f" {r['rss_mib']:>8.0f} {exps[0]:>8} {exps[1]:>8} {exps[2]:>7}  (load {os.getloadavg()[0]:.2f})",
              flush=True)
        previous = r


if __name__ == "__main__":
    main()
