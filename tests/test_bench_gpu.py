"""bench/gpu.py on small CPU shapes: every part runs and prints its figures, ratios and agreement checks.

The figures themselves are GPU figures; here only the script is checked (its structure and the checks that
do not depend on speed: greedy tokens identical, NLL sums equal, the projection's arithmetic)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"
NUMBER = r"[\d,]+(?:\.\d+)?"


def test_bench_gpu_runs_every_part_on_small_cpu_shapes():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="")
    done = subprocess.run([sys.executable, str(BENCH), "--cpu-small"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "small shapes: a check of this script, not a GPU figure" in out
    for shape in ("12x768", "24x1024"):
        assert re.search(rf"^train {shape} \(small: 2x\d+\): [\d,]+ parameters", out, re.M), shape
    for method in ("piimem train\\(\\), steady", "piimem train\\(\\), loop", "piimem train\\(\\), whole call",
                   "HF Trainer, steady", "HF Trainer, whole call"):
        assert len(re.findall(rf"^  {method} +{NUMBER} +n/a", out, re.M)) == 2, method
    assert len(re.findall(rf"ratio piimem / HF Trainer, steady: {NUMBER} eager", out)) == 2
    assert len(re.findall(rf"ratio whole call / loop: {NUMBER} \(call", out)) == 2
    # scoring: piimem's NLLs are the plain loop's
    differences = [float(x) for x in
                   re.findall(r"same NLL sums \(max relative difference ([\d.e+-]+)\)", out)]
    assert len(differences) == 2 and max(differences) < 1e-5
    ratios = rf"ratio piimem LOSS / plain loop: {NUMBER}; all attacks / plain loop: {NUMBER}"
    assert len(re.findall(ratios, out)) == 2
    # generation: every greedy continuation identical to plain model.generate, both caches
    agreement = re.findall(r"^  (piimem generate, \w+ cache|plain model.generate, input order) +"
                           rf"{NUMBER} +{NUMBER} +(\d+)/(\d+)$", out, re.M)
    assert len(agreement) == 6 and all(same == total for _, same, total in agreement), agreement
    # projection: the per-run lines and a total
    assert "projection: config/paper-rmft.yaml" in out
    assert re.search(r"per run: fine-tuning [\d.]+ (h|min) \(3 epochs, 30 checkpoints\)", out)
    assert len(re.findall(r"per run: (perplexity|membership inference|extraction)", out)) == 3
    assert re.search(r"total, 4 runs \(none, dedup, rmft, scrub\) one after another: [\d.]+ (h|min)", out)
    assert re.search(r"targets of issue 11 \(small CPU shapes: not comparable\)", out)
    assert re.search(r"time per part: train \d+ s, scoring \d+ s, generation \d+ s, projection \d+ s", out)
