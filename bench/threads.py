"""Benchmark: one training job with two threads against two one-thread jobs side by side (`model_threads`).

    python bench/threads.py [--steps 50] [--width 256] [--threads 2]

Full fine-tuning steps of the embedded default's tiny GPT-2 shape (2 layers, `--width` wide, a 4,096-token
vocabulary, 8 blocks of 128 tokens, AdamW), each job its own process, after 10 untimed warm-up steps:
  one job    torch with `--threads` threads, alone on the machine
  side by side   `--threads` processes with one thread each, started together
Prints tokens/s of each way and the ratio. Random token ids: the speed of a step does not depend on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

WARMUP = 10
STEP = """
import sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel
threads, steps, width = map(int, sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=4096, n_positions=256, n_embd=width, n_layer=2, n_head=4))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(0, 4096, (8, 128))
for step in range(steps + {warmup}):
    if step == {warmup}:
        started = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
print(8 * 128 * steps / (time.perf_counter() - started))
""".format(warmup=WARMUP)


def run_jobs(n_jobs: int, threads: int, steps: int, width: int) -> list[float]:
    """Tokens/s of each of `n_jobs` processes started together."""
    jobs = [subprocess.Popen([sys.executable, "-c", STEP, str(threads), str(steps), str(width)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(n_jobs)]
    rates = []
    for job in jobs:
        out, _ = job.communicate()
        if job.returncode:
            raise SystemExit(f"a benchmark process failed with exit code {job.returncode}")
        rates.append(float(out.split()[-1]))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per job")
    parser.add_argument("--width", type=int, default=256, help="n_embd of the tiny GPT-2 (the default's: 256)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one job = jobs side by side")
    args = parser.parse_args()
    started = time.perf_counter()
    alone = run_jobs(1, args.threads, args.steps, args.width)[0]
    side_by_side = run_jobs(args.threads, 1, args.steps, args.width)
    print(f"one job, {args.threads} threads:       {alone:8,.0f} tokens/s")
    print(f"{args.threads} one-thread jobs together: {sum(side_by_side):8,.0f} tokens/s "
          f"({' + '.join(f'{r:,.0f}' for r in side_by_side)})")
    print(f"ratio side by side / one job: {sum(side_by_side) / alone:.2f} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
