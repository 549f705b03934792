"""Benchmark: what one fine-tuning run of a tuning method costs on a base model, measured on a few steps.

    python bench/tuning_cost.py                                  # SmolLM2-135M, LoRA and prefix, 8 steps each
    python bench/tuning_cost.py --methods full lora prefix --steps 12 --run-tokens 300000

For each method: piimem's `train()` on the method's model (`piimem.tuning.apply_tuning`, the paper's options)
for --steps optimizer steps of --batch-size blocks of --block-size tokens (made-up words, bench/train.py's
documents) on --threads threads; it reports trainable parameters, seconds per step after the first
(warm-up) step, tokens/s, and what a run over --run-tokens tokens per epoch for --epochs epochs would take
at that rate (the default: 3 epochs of the embedded default's training split, about 98,000 tokens each by
its runs' manifests). The SmolLM2 model is exported from its wheel once, under --models-dir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train import make_documents  # noqa: E402  (bench/train.py: the same made-up documents)


def measure(model_dir: Path, method: str, args, work: Path) -> dict:
    import polars as pl
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from piimem.train import TrainConfig, train
    from piimem.tuning import apply_tuning, learning_rate, method_options, trainable_parameters

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    options = method_options(method)
    model = apply_tuning(model, method, options, seed=42, tokenizer=tokenizer)
    docs = make_documents((args.steps + 1) * args.batch_size * args.block_size, tokenizer, 7)
    texts = pl.DataFrame({"epoch": [0] * len(docs), "doc_id": list(range(len(docs))), "text": docs},
                         schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})
    cfg = TrainConfig(block_size=args.block_size, batch_size=args.batch_size, epochs=1, warmup_steps=1,
                      lr=learning_rate(method, options, 5e-5), checkpoints_per_epoch=1, seed=42, device="cpu")
    started = time.perf_counter()
    manifest = train(model, tokenizer, texts, cfg, work / method, fingerprint=method, stop_after_step=1)
    first = time.perf_counter() - started
    started = time.perf_counter()
    manifest = train(model, tokenizer, texts, cfg, work / method, fingerprint=method)
    rest = time.perf_counter() - started
    steps = manifest["steps"] - 1
    per_step = rest / steps
    run_steps = args.epochs * args.run_tokens / (args.batch_size * args.block_size)
    trainable = sum(p.numel() for p in trainable_parameters(model).values())
    return {"method": method, "trainable": trainable, "first_step_s": round(first, 1),
            "s_per_step": round(per_step, 2), "tokens_per_s": round(args.batch_size * args.block_size / per_step),
            "run_minutes": round(run_steps * per_step / 60, 1), "run_steps": round(run_steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m or a local model directory")
    parser.add_argument("--models-dir", default="results/models")
    parser.add_argument("--methods", nargs="+", default=["lora", "prefix"])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--run-tokens", type=int, default=100_000)
    args = parser.parse_args()
    model_dir = Path(args.model)
    if args.model == "smollm2-135m":
        from piimem.models import export_smollm2

        model_dir = Path(args.models_dir) / "smollm2-135m"
        export_smollm2(model_dir)
    with tempfile.TemporaryDirectory() as folder:
        for method in args.methods:
            print(json.dumps(measure(model_dir, method, args, Path(folder))), flush=True)


if __name__ == "__main__":
    main()
