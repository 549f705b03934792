"""Benchmark: training throughput of piimem.train.train() against the Hugging Face Trainer.

    python bench/train.py                         # tiny GPT-2 (2 layers, 128 wide), 300 steps
    python bench/train.py --model DIR --steps 200 --precision auto --repeats 3
    python bench/train.py --dp --repeats 3        # and DP-SGD (the dp defense) on the same blocks

Both sides get the same model (the same initial weights, loaded from one saved directory), the same
blocks (piimem's epoch-0 blocks of a seeded corpus of made-up words, no PII), batch size, gradient
accumulation, learning rate, linear warm-up and decay, weight decay, clipping, precision and number of
optimizer steps. Each run is its own subprocess (no warm caches or allocator state carried over), and
with --repeats the two alternate, so background load hits both alike; the median is reported.

Timing:
  piimem   wall-clock of the `train()` call: tokenization, the training loop and the one checkpoint at the
           end (checkpoints_per_epoch=1); "loop" also reports the loop alone (manifest seconds minus
           checkpoint seconds).
  Trainer  wall-clock of `trainer.train()` with its own overheads switched off: save_strategy="no",
           eval_strategy="no", logging_strategy="no", report_to=[], no progress bar. Its data is already
           tokenized; building the Trainer is not timed.
  DP-SGD   (--dp) piimem's `train()` with the dp defense at epsilon 8 (piimem.train.dp): the same blocks
           and steps, each step Poisson-sampling its blocks (as many on average), per-example gradients,
           clipping and noise; what per-example gradients cost against plain training.
Tokens: the non-padding tokens of the blocks trained on, the same count for both (DP-SGD: those it sampled).
On a CUDA GPU also model-FLOPs utilisation: 6 x parameters x tokens/s / peak FLOP/s (attention FLOPs not
counted); peak from --peak-tflops or a table of dense bf16/fp16 (or fp32) peaks for H100/H200/A100.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Dense (no sparsity) peak TFLOP/s by device-name fragment: (bf16/fp16 tensor cores, plain fp32).
# Vendor datasheets; the first fragment found in the device name wins, so specific names come first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0, 51.0),
    ("H100 NVL", 835.0, 60.0),
    ("H200", 989.0, 67.0),
    ("H100", 989.0, 67.0),  # SXM
    ("A100", 312.0, 19.5),
)


def made_up_words(rng: random.Random, n: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(n)]


def make_documents(n_tokens: int, tokenizer, seed: int) -> list[str]:
    """E-mail-sized documents of made-up words (Zipf-like frequencies) until they hold n_tokens tokens."""
    rng = random.Random(seed)
    vocab = made_up_words(rng, 5000)
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    docs, total = [], 0
    while total < n_tokens:
        batch = [" ".join(rng.choices(vocab, weights, k=rng.randint(30, 400))) for _ in range(50)]
        for doc, ids in zip(batch, tokenizer(batch, add_special_tokens=False)["input_ids"]):
            if total >= n_tokens:
                break
            docs.append(doc)
            total += len(ids) + 1  # and the EOS that joins it to the next
    return docs


def prepare(args, work: Path) -> dict:
    """Save the model, tokenizer, texts and the Trainer's blocks under `work`; return the run spec."""
    import numpy as np
    import polars as pl
    import torch
    from transformers import AutoTokenizer

    from piimem.models import init_tiny_gpt2, train_tokenizer
    from piimem.train import TrainConfig, build_plans

    model_dir = work / "model"
    if args.model:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model_dir = Path(args.model)
    else:
        rng = random.Random(args.seed)
        vocab = made_up_words(rng, 5000)
        tokenizer = train_tokenizer((" ".join(rng.choices(vocab, k=200)) for _ in range(2000)), args.vocab)
        model = init_tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4,
                               n_positions=max(256, args.block_size), seed=args.seed)
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)

    per_step = args.batch_size * args.grad_accum
    docs = make_documents(args.steps * per_step * args.block_size, tokenizer, args.seed + 1)
    texts = pl.DataFrame({"epoch": [0] * len(docs), "doc_id": list(range(len(docs))), "text": docs},
                         schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})
    texts.write_parquet(work / "texts.parquet")  # made-up words only: no privacy concern

    cfg = TrainConfig(block_size=args.block_size, batch_size=args.batch_size, grad_accum=args.grad_accum,
                      epochs=1, seed=args.seed)
    plan = build_plans(tokenizer, texts, cfg)[0]
    steps = -(-plan.n_examples // per_step)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Every block padded to block_size (only the last is short): the Trainer's default collator stacks them.
    ids = np.full((plan.n_examples, args.block_size), pad_id, dtype=np.int64)
    mask = np.zeros((plan.n_examples, args.block_size), dtype=np.int64)
    for i in range(plan.n_examples):
        block = plan.example_tokens(i)
        ids[i, :len(block)], mask[i, :len(block)] = block, 1
    torch.save({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)},
               work / "blocks.pt")
    return {"model_dir": str(model_dir), "work": str(work), "steps": steps, "tokens": int(mask.sum()),
            "block_size": args.block_size, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
            "lr": args.lr, "warmup_steps": args.warmup_steps, "precision": args.precision,
            "device": args.device, "compile": args.compile, "seed": args.seed}


def load_model(spec: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def run_piimem(spec: dict, out_dir: Path, dp: dict | None = None) -> dict:
    import polars as pl

    from piimem.train import TrainConfig, train

    model, tokenizer = load_model(spec)
    texts = pl.read_parquet(Path(spec["work"]) / "texts.parquet")
    cfg = TrainConfig(block_size=spec["block_size"], lr=spec["lr"], weight_decay=0.01, epochs=1,
                      warmup_steps=spec["warmup_steps"], batch_size=spec["batch_size"],
                      grad_accum=spec["grad_accum"], max_grad_norm=1.0, precision=spec["precision"],
                      compile=spec["compile"], checkpoints_per_epoch=1, seed=spec["seed"],
                      device=spec["device"])
    start = time.perf_counter()
    manifest = train(model, tokenizer, texts, cfg, out_dir, fingerprint=f"bench-{time.time_ns()}", dp=dp)
    wall = time.perf_counter() - start
    losses = [float(line.split("\t")[2]) for line in (out_dir / "train_log.tsv").read_text().splitlines()[1:]]
    return {"seconds": wall, "loop_seconds": manifest["seconds"] - manifest["checkpoint_seconds"],
            "steps": manifest["steps"], "tokens": manifest["tokens"], "mean_loss": sum(losses) / len(losses),
            "device": manifest["device"], "precision": manifest["precision"],
            "parameters": manifest["parameters"]}


class _Blocks:
    def __init__(self, path: Path):
        import torch

        data = torch.load(path, weights_only=True)
        self.ids, self.mask = data["input_ids"], data["attention_mask"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        ids, mask = self.ids[i], self.mask[i]
        return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def run_trainer(spec: dict, out_dir: Path) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments, default_data_collator

    from piimem.scoring import resolve_device
    from piimem.train import resolve_precision

    model, _ = load_model(spec)
    device = resolve_device(spec["device"])
    precision = resolve_precision(spec["precision"], device)
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"], learning_rate=spec["lr"], weight_decay=0.01,
        max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=spec["warmup_steps"],
        max_steps=spec["steps"], seed=spec["seed"], bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=device.type == "cpu", torch_compile=spec["compile"],
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Blocks(Path(spec["work"]) / "blocks.pt"),
                      data_collator=default_data_collator)
    start = time.perf_counter()
    result = trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"seconds": wall, "loop_seconds": wall, "steps": result.global_step, "tokens": spec["tokens"],
            "mean_loss": result.training_loss, "device": str(device), "precision": precision,
            "parameters": sum(p.numel() for p in model.parameters())}


def peak_tflops(device_name: str, precision: str, override: float | None) -> float | None:
    if override:
        return override
    for fragment, tensor_peak, fp32_peak in PEAK_TFLOPS:
        if fragment in device_name:
            return fp32_peak if precision == "fp32" else tensor_peak
    return None


def worker(method: str, spec_path: Path, result_path: Path) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars; not timed, only noise
    spec = json.loads(spec_path.read_text())
    with tempfile.TemporaryDirectory(prefix=f"bench-{method}-") as tmp:
        run = {"piimem": run_piimem, "trainer": run_trainer,
               "dp": lambda spec, out: run_piimem(spec, out, dp={"epsilon": 8.0})}[method]
        result = run(spec, Path(tmp) / "run")
    if result["device"].startswith("cuda"):
        import torch

        result["device_name"] = torch.cuda.get_device_name()
    result_path.write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a local model directory (save_pretrained format); "
                                        "default: a tiny GPT-2")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps (about; whole blocks)")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=30)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile on both sides")
    parser.add_argument("--vocab", type=int, default=2000, help="tokenizer size of the tiny GPT-2")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per method, alternating; the median is reported")
    parser.add_argument("--peak-tflops", type=float, help="peak TFLOP/s of the GPU for MFU (default: table)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dp", action="store_true", help="also DP-SGD (epsilon 8) on the same blocks")
    parser.add_argument("--worker", choices=("piimem", "trainer", "dp"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": ""}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        spec = prepare(args, work)
        (work / "spec.json").write_text(json.dumps(spec))
        print(f"data: {spec['steps']} steps x {args.batch_size * args.grad_accum} blocks of "
              f"{args.block_size} tokens, {spec['tokens']:,} tokens; precision {args.precision}, "
              f"device {args.device}")
        results: dict[str, list[dict]] = {"piimem": [], "trainer": [], **({"dp": []} if args.dp else {})}
        for _ in range(args.repeats):
            for method in results:
                out = work / f"{method}.json"
                subprocess.run([sys.executable, __file__, "--worker", method,
                                "--spec", str(work / "spec.json"), "--result", str(out)], check=True, env=env)
                results[method].append(json.loads(out.read_text()))

    def rate(runs: list[dict], key: str) -> float:
        return statistics.median(r["tokens"] / r[key] for r in runs)

    ours, theirs = results["piimem"][0], results["trainer"][0]
    if ours["steps"] != theirs["steps"]:
        print(f"warning: steps differ (piimem {ours['steps']}, Trainer {theirs['steps']})")
    ours_rate = rate(results["piimem"], "seconds")
    ours_loop = rate(results["piimem"], "loop_seconds")
    theirs_rate = rate(results["trainer"], "seconds")

    def median_of(method: str, key: str) -> float:
        return statistics.median(r[key] for r in results[method])

    print(f"device {ours.get('device_name', ours['device'])}, precision {ours['precision']}, "
          f"{ours['parameters']:,} parameters, {ours['steps']} steps, median of {args.repeats}")
    print(f"{'method':<22}{'tokens/s':>12}{'seconds':>10}{'mean loss':>11}")
    print(f"{'piimem train()':<22}{ours_rate:>12,.0f}{median_of('piimem', 'seconds'):>10.2f}"
          f"{ours['mean_loss']:>11.4f}")
    print(f"{'  (loop only)':<22}{ours_loop:>12,.0f}{median_of('piimem', 'loop_seconds'):>10.2f}")
    print(f"{'HF Trainer':<22}{theirs_rate:>12,.0f}{median_of('trainer', 'seconds'):>10.2f}"
          f"{theirs['mean_loss']:>11.4f}")
    for method in results:
        rates = ", ".join(f"{r['tokens'] / r['seconds']:,.0f}" for r in results[method])
        print(f"all runs, {method}: {rates} tokens/s")
    print(f"ratio piimem / Trainer: {ours_rate / theirs_rate:.2f} (loop only: {ours_loop / theirs_rate:.2f})")
    if args.dp:
        private_rate, private_loop = rate(results["dp"], "seconds"), rate(results["dp"], "loop_seconds")
        print(f"{'DP-SGD (epsilon 8)':<22}{private_rate:>12,.0f}{median_of('dp', 'seconds'):>10.2f}"
              f"{results['dp'][0]['mean_loss']:>11.4f}")
        print(f"ratio DP-SGD / piimem train(): {private_rate / ours_rate:.2f} (loop only: "
              f"{private_loop / ours_loop:.2f})")
    if "device_name" in ours:
        peak = peak_tflops(ours["device_name"], ours["precision"], args.peak_tflops)
        if peak is None:
            print(f"MFU: unknown peak for {ours['device_name']!r}; give --peak-tflops")
        else:
            for name, value in (("piimem", ours_rate), ("Trainer", theirs_rate)):
                print(f"MFU {name}: {100 * 6 * ours['parameters'] * value / (peak * 1e12):.1f} % "
                      f"(peak {peak:g} TFLOP/s)")


if __name__ == "__main__":
    main()
