"""Benchmark: every GPU figure of issue 11 in one run, each beside the usual way measured in the same process.

    python bench/gpu.py                 # on a CUDA GPU: GPT-2 shapes, 32,000-token vocabulary, bf16
    python bench/gpu.py --cpu-small     # the same code on small shapes (automatic without CUDA): a check
                                        # of the script (tests/test_bench_gpu.py), not a GPU figure

Parts (--parts, default all), randomly initialised GPT-2 models (seeded), made-up words (no PII):
  train       piimem `train()` and the Hugging Face Trainer on the same blocks and schedule, for the 12x768
              (32 x 512 tokens per step) and 24x1024 (16 x 1024) shapes; piimem eager and with
              train.compile (compiled blocks; compile time printed apart, --no-compile skips it).
              steady     tokens/s of the steps after the run's first checkpoint (warm-up, compilation and
                         the first checkpoint behind it): train_log.tsv's windows for piimem, a step
                         callback for the Trainer
              loop       the whole training loop of the call (manifest seconds less checkpoint and state
                         saving)
              call       the whole `train()` call: tokenization, set-up, the loop, one checkpoint with its
                         state; against the loop: what the call costs beyond training. The Trainer's
                         blocks are tokenized beforehand and building it is not timed (as bench/train.py)
              MFU        6 x parameters x tokens/s / the GPU's dense bf16 peak (bench/train.py's table)
  scoring     512 texts of <= 512 tokens (12x768): piimem `token_nll` (LOSS) and `example_statistics`
              (the statistics of every single-model attack), against a plain loop over the texts in input
              order (padded batches, model(...).logits, cross-entropy); the NLLs must agree
  generation  128 prompts x 32 new tokens, batch 128 (12x768): piimem `generate_token_ids` with the
              dynamic and the static key/value cache against plain `model.generate` on the same batches
              in input order; greedy continuations compared token for token
  projection  config/paper-rmft.yaml on one GPU: its training (GPT-2 12x768, vocabulary 50,257, 8 x 128
              tokens per step, fp16), scoring (batch 16, 128 tokens) and generation (batch 32, 64-token
              prompts, 64 new tokens) rates measured here, times the work of 4 runs x 30 checkpoints; the
              corpus size is an assumption (--paper-messages, --paper-tokens-per-message)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

# name -> (layers, width, heads, sequences per step, tokens per sequence, measured steps)
GPU_SHAPES = {"12x768": (12, 768, 12, 32, 512, 60), "24x1024": (24, 1024, 16, 16, 1024, 40)}
SMALL_SHAPES = {"12x768": (2, 64, 2, 4, 64, 16), "24x1024": (2, 96, 2, 4, 64, 12)}
# The other parts' sizes: scoring (texts, max_length), generation (prompts, new tokens, batch), and for the
# projection training steps, scoring texts, generation prompts and new tokens at the paper's shape.
GPU_SIZES = {"scoring": (512, 512), "generation": (128, 32, 128), "paper": (300, 2048, 256, 64)}
SMALL_SIZES = {"scoring": (64, 64), "generation": (32, 8, 32), "paper": (12, 64, 16, 16)}
PAPER = {"layers": 12, "width": 768, "heads": 12, "vocab": 50257, "batch": 8, "block": 128, "epochs": 3,
         "checkpoints": 30, "runs": 4, "train_share": 0.8, "test_share": 0.2, "precision": "fp16",
         "mia_texts": 400, "prompts": 4 * 2500, "prompt_tokens": 64, "new_tokens": 64}


def _load(name: str):
    """Another bench script as a module (made-up text and the peak table live there)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Setup:
    """What every part shares: device, sizes, the tokenizer, timing."""

    def __init__(self, args):
        import torch

        self.small = args.cpu_small or not torch.cuda.is_available()
        if self.small:
            torch.set_num_threads(1)  # small shapes gain nothing from threads, and a shared CPU stalls them
        self.device = torch.device("cpu" if self.small else "cuda")
        self.cuda = self.device.type == "cuda"
        self.shapes = SMALL_SHAPES if self.small else GPU_SHAPES
        self.sizes = SMALL_SIZES if self.small else GPU_SIZES
        self.vocab = 1024 if self.small else 32000
        self.precision = "fp32" if self.small else "bf16"
        self.compile = args.compile if args.compile is not None else not self.small
        self.args = args
        self.bench_train, self.bench_extract, self.bench_mia = _load("train"), _load("extract"), _load("mia")
        from piimem.models import train_tokenizer

        rng = random.Random(args.seed)
        words = self.bench_train.made_up_words(rng, 5000)
        self.tokenizer = train_tokenizer((" ".join(rng.choices(words, k=200)) for _ in range(2000)),
                                         512 if self.small else 8000)
        self.device_name = torch.cuda.get_device_name() if self.cuda else "cpu"
        self.peak = self.bench_train.peak_tflops(self.device_name, self.precision, args.peak_tflops)

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def gpt2(self, layers: int, width: int, heads: int, *, vocab: int | None = None, positions: int = 1024):
        """A seeded random GPT-2 of this shape on the CPU (copied per run, so every method starts equal)."""
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel

        tok = self.tokenizer
        config = GPT2Config(vocab_size=vocab or self.vocab, n_positions=positions, n_embd=width,
                            n_layer=layers, n_head=heads, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(self.args.seed)
        model = GPT2LMHeadModel(config)
        model.config._attn_implementation = "sdpa"
        return model

    def mfu(self, parameters: int, rate: float) -> str:
        if not self.peak:
            return "n/a"
        return f"{100 * 6 * parameters * rate / (self.peak * 1e12):.1f}"

    def free(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------
# Training


def _train_texts(setup: Setup, tokens: int):
    import polars as pl

    docs = setup.bench_train.make_documents(tokens, setup.tokenizer, setup.args.seed + 1)
    return pl.DataFrame({"epoch": [0] * len(docs), "doc_id": list(range(len(docs))), "text": docs},
                        schema={"epoch": pl.Int64, "doc_id": pl.Int64, "text": pl.String})


def _steady(rows: list[tuple[int, float]], after_step: int, tokens_per_step: int) -> float:
    """tokens/s of the logged steps after `after_step`, from train_log rows (step, window rate): every
    row of a window carries the window's rate, so its time is its tokens over that rate."""
    later = [rate for step, rate in rows if step > after_step]
    seconds = sum(tokens_per_step / rate for rate in later if rate > 0)
    return len(later) * tokens_per_step / seconds if seconds > 0 else float("nan")


def run_piimem(setup: Setup, model, texts, batch: int, block: int, steps: int, *, compile: bool,
               precision: str) -> dict:
    """One train() call of `steps` full steps (one checkpoint half-way, stopped before the epoch's
    short last step, which would need a second compilation)."""
    from piimem.train import StateEvery, TrainConfig, read_train_log, train

    cfg = TrainConfig(block_size=block, batch_size=batch, lr=1e-4, warmup_steps=10, epochs=1,
                      precision=precision, compile=compile, checkpoints_per_epoch=2, seed=setup.args.seed,
                      device=str(setup.device))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        setup.sync()
        start = time.perf_counter()
        manifest = train(model, setup.tokenizer, texts, cfg, Path(tmp) / "run", fingerprint=f"bench-{start}",
                         stop_after_step=steps, state_every=StateEvery(minutes=None))
        setup.sync()
        wall = time.perf_counter() - start
        log = read_train_log(Path(tmp) / "run" / "train_log.tsv")
    first_checkpoint = manifest["checkpoints"][0]["step"]
    loop = manifest["seconds"] - manifest["checkpoint_seconds"] - manifest["state_seconds"]
    return {"steady": _steady(list(zip(log["step"], log["tokens_per_s"])), first_checkpoint, batch * block),
            "loop": manifest["tokens"] / loop, "call": manifest["tokens"] / wall, "wall": wall,
            "compile": manifest["compile_seconds"], "checkpoint": manifest["checkpoint_seconds"],
            "setup": wall - manifest["seconds"], "steps": manifest["steps"],
            "first_checkpoint": first_checkpoint,
            "tokens": manifest["tokens"], "loss": float(log["loss"][-1])}


def run_trainer(setup: Setup, model, texts, batch: int, block: int, steps: int, after_step: int) -> dict:
    """The Hugging Face Trainer on piimem's blocks (the same order), same schedule and settings."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback

    from piimem.train import TrainConfig, build_plans

    plan = build_plans(setup.tokenizer, texts, TrainConfig(block_size=block, batch_size=batch, epochs=1,
                                                           seed=setup.args.seed))[0]
    ids = torch.from_numpy(np.stack([plan.example_tokens(i) for i in range(steps * batch)])).long()

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]), "labels": ids[i]}

    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            setup.sync()
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="bench-gpu-trainer-") as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, learning_rate=1e-4, weight_decay=0.01,
            max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=10, max_steps=steps,
            seed=setup.args.seed, bf16=setup.precision == "bf16", use_cpu=not setup.cuda, save_strategy="no",
            eval_strategy="no", logging_strategy="no", report_to=[], disable_tqdm=True,
            remove_unused_columns=False, dataloader_num_workers=0, data_seed=setup.args.seed)
        trainer = Trainer(model=model, args=args, train_dataset=Blocks(), data_collator=default_data_collator,
                          callbacks=[StepTimes()])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        setup.sync()
        start = time.perf_counter()
        result = trainer.train()
        setup.sync()
        wall = time.perf_counter() - start
    tokens = steps * batch * block
    steady_steps = steps - after_step
    steady = steady_steps * batch * block / (times[-1] - times[after_step - 1])
    return {"steady": steady, "call": tokens / wall, "wall": wall, "steps": result.global_step,
            "loss": result.training_loss}


def part_train(setup: Setup) -> dict:
    rates = {}
    for name, (layers, width, heads, batch, block, steps) in setup.shapes.items():
        label = name if not setup.small else f"{name} (small: {layers}x{width})"
        base = setup.gpt2(layers, width, heads, positions=max(1024, block))
        parameters = sum(p.numel() for p in base.parameters())
        texts = _train_texts(setup, (steps + 2) * batch * block)
        print(f"\ntrain {label}: {parameters:,} parameters, vocabulary {setup.vocab:,}, {batch} x {block} "
              f"tokens per step, {steps} steps, {setup.precision}", flush=True)
        ours = run_piimem(setup, copy.deepcopy(base), texts, batch, block, steps, compile=False,
                          precision=setup.precision)
        setup.free()
        compiled = None
        if setup.compile:
            compiled = run_piimem(setup, copy.deepcopy(base), texts, batch, block, steps, compile=True,
                                  precision=setup.precision)
            setup.free()
        theirs = run_trainer(setup, copy.deepcopy(base), texts, batch, block, steps, ours["first_checkpoint"])
        setup.free()
        print(f"  {'method':<34}{'tokens/s':>12}{'MFU %':>8}{'seconds':>9}")
        rows = [("piimem train(), steady", ours["steady"], None),
                ("piimem train(), loop", ours["loop"], None),
                ("piimem train(), whole call", ours["call"], ours["wall"])]
        if compiled:
            rows += [("piimem compiled, steady", compiled["steady"], None),
                     ("piimem compiled, whole call", compiled["call"], compiled["wall"])]
        rows += [("HF Trainer, steady", theirs["steady"], None),
                 ("HF Trainer, whole call", theirs["call"], theirs["wall"])]
        for what, rate, seconds in rows:
            print(f"  {what:<34}{rate:>12,.0f}{setup.mfu(parameters, rate):>8}"
                  f"{'' if seconds is None else f'{seconds:.1f}':>9}")
        best = max(ours["steady"], compiled["steady"] if compiled else 0.0)
        print(f"  ratio piimem / HF Trainer, steady: {ours['steady'] / theirs['steady']:.2f} eager"
              + (f", {compiled['steady'] / theirs['steady']:.2f} compiled" if compiled else ""))
        print(f"  ratio whole call / loop: {ours['call'] / ours['loop']:.2f} (call {ours['wall']:.1f} s = "
              f"loop {ours['tokens'] / ours['loop']:.1f} s + checkpoint and state {ours['checkpoint']:.1f} s "
              f"+ tokenization and set-up {ours['setup']:.1f} s)")
        if compiled:
            print(f"  compile time (first step, outside the steady rate): {compiled['compile']:.1f} s")
        print(f"  last step loss: piimem {ours['loss']:.3f}, Trainer mean {theirs['loss']:.3f}")
        rates[name] = {"mfu": setup.mfu(parameters, best), "call_over_loop": ours["call"] / ours["loop"]}
        del base
        setup.free()
    return rates


# ---------------------------------------------------------------------------------------------------------
# Scoring


def _plain_scoring(setup: Setup, model, texts: list[str], max_length: int, batch_size: int) -> list[float]:
    """The usual way: batches in input order, padded by the tokenizer, logits, float32 cross-entropy."""
    import torch
    import torch.nn.functional as F

    tok = setup.tokenizer
    sums = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tok(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_length).to(setup.device)
            logits = model(**enc).logits
            targets = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
            nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, reduction="none")
            sums += nll.sum(dim=1).tolist()
    return sums


def part_scoring(setup: Setup, *, texts_n: int, max_length: int, batch_size: int, label: str) -> float:
    from piimem.scoring import example_statistics, token_nll

    layers, width, heads = setup.shapes["12x768"][:3]
    model = setup.gpt2(layers, width, heads).to(setup.device).eval()
    texts = setup.bench_mia.made_up_texts(texts_n, setup.args.seed)
    kw = dict(max_length=max_length, batch_size=batch_size, device=str(setup.device))
    token_nll(model, setup.tokenizer, texts[:batch_size], **kw)  # warm-up: kernels, allocator
    _plain_scoring(setup, model, texts[:batch_size], max_length, batch_size)

    def timed(run):
        setup.sync()
        start = time.perf_counter()
        result = run()
        setup.sync()
        return result, time.perf_counter() - start

    scores, t_loss = timed(lambda: token_nll(model, setup.tokenizer, texts, **kw))
    _, t_stats = timed(lambda: example_statistics(model, setup.tokenizer, texts, lowercase=False, **kw))
    plain, t_plain = timed(lambda: _plain_scoring(setup, model, texts, max_length, batch_size))
    n = int(scores["n_tokens"].sum())
    gap = max(abs(a - b) / max(abs(b), 1.0) for a, b in zip(scores["nll_sum"].to_list(), plain))
    print(f"\nscoring {label}: {len(texts)} texts, {n:,} scored tokens, max_length {max_length}, "
          f"batch {batch_size}, float32")
    print(f"  {'method':<44}{'tokens/s':>12}{'seconds':>9}")
    for what, seconds in (("piimem token_nll (LOSS)", t_loss),
                          ("piimem example_statistics (all attacks)", t_stats),
                          ("plain forward loop, input order", t_plain)):
        print(f"  {what:<44}{n / seconds:>12,.0f}{seconds:>9.2f}")
    print(f"  ratio piimem LOSS / plain loop: {t_plain / t_loss:.2f}; all attacks / plain loop: "
          f"{t_plain / t_stats:.2f}; same NLL sums (max relative difference {gap:.1e})")
    del model
    setup.free()
    return n / t_loss


# ---------------------------------------------------------------------------------------------------------
# Generation


def _plain_generate(setup: Setup, model, prompts: list[str], new_tokens: int,
                    batch_size: int) -> list[list[int]]:
    """The usual way: model.generate on left-padded batches in input order, greedy."""
    import torch

    tok = setup.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                enc = tok(prompts[start:start + batch_size], return_tensors="pt", padding=True)
                enc = enc.to(setup.device)
                seqs = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
                for row in seqs[:, enc["input_ids"].shape[1]:].tolist():
                    out.append(row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row)
    finally:
        tok.padding_side = side
    return out


def part_generation(setup: Setup, *, prompts_n: int, words: tuple[int, int], new_tokens: int, batch_size: int,
                    label: str, prompt_tokens: int | None = None) -> float:
    from piimem.extraction.generation import generate_token_ids

    layers, width, heads = setup.shapes["12x768"][:3]
    model = setup.gpt2(layers, width, heads).to(setup.device).eval()
    prompts = setup.bench_extract.made_up_prompts(prompts_n, setup.args.seed, *words)
    if prompt_tokens:  # cut to exactly that many tokens, as extraction prompts are
        tok = setup.tokenizer
        prompts = [tok.decode(tok(p, add_special_tokens=False)["input_ids"][:prompt_tokens]) for p in prompts]
    kw = dict(max_new_tokens=new_tokens, batch_size=batch_size, device=str(setup.device))
    generate_token_ids(model, setup.tokenizer, prompts[:batch_size], **{**kw, "max_new_tokens": 4})  # warm-up
    _plain_generate(setup, model, prompts[:batch_size], 4, batch_size)
    results = {}
    for what, run in (("piimem generate, dynamic cache",
                       lambda: generate_token_ids(model, setup.tokenizer, prompts, **kw)),
                      ("piimem generate, static cache",
                       lambda: generate_token_ids(model, setup.tokenizer, prompts, cache="static", **kw)),
                      ("plain model.generate, input order",
                       lambda: _plain_generate(setup, model, prompts, new_tokens, batch_size))):
        setup.sync()
        start = time.perf_counter()
        ids = run()
        setup.sync()
        results[what] = (ids, time.perf_counter() - start)
    reference = results["plain model.generate, input order"][0]
    print(f"\ngeneration {label}: {len(prompts)} prompts x {new_tokens} new tokens, batch {batch_size}, "
          f"greedy")
    print(f"  {'method':<36}{'new tokens/s':>14}{'seconds':>9}   identical to plain")
    for what, (ids, seconds) in results.items():
        same = sum(a == b for a, b in zip(ids, reference))
        print(f"  {what:<36}{sum(map(len, ids)) / seconds:>14,.0f}{seconds:>9.2f}   {same}/{len(prompts)}")
    plain_rate = sum(map(len, reference)) / results["plain model.generate, input order"][1]
    rate = {w: sum(map(len, ids)) / s for w, (ids, s) in results.items()}
    print(f"  ratio piimem / plain: {rate['piimem generate, dynamic cache'] / plain_rate:.2f} dynamic, "
          f"{rate['piimem generate, static cache'] / plain_rate:.2f} static")
    del model
    setup.free()
    return max(rate["piimem generate, dynamic cache"], rate["piimem generate, static cache"])


# ---------------------------------------------------------------------------------------------------------
# Projection of config/paper-rmft.yaml


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def part_projection(setup: Setup) -> None:
    args, p = setup.args, dict(PAPER)
    if setup.small:
        layers, width, heads = setup.shapes["12x768"][:3]
        p.update(layers=layers, width=width, heads=heads, vocab=setup.vocab, precision="fp32")
    steps, score_texts, prompts, new_tokens = setup.sizes["paper"]
    base = setup.gpt2(p["layers"], p["width"], p["heads"], vocab=p["vocab"])
    texts = _train_texts(setup, (steps + 2) * p["batch"] * p["block"])
    trained = run_piimem(setup, base, texts, p["batch"], p["block"], steps, compile=False,
                         precision=p["precision"])
    del base
    setup.free()
    train_rate, checkpoint_s = trained["steady"], trained["checkpoint"]  # one checkpoint (and its state)
    score_rate = part_scoring(setup, texts_n=score_texts, max_length=p["block"],
                              batch_size=16, label="at the paper's shape")
    gen_rate = part_generation(setup, prompts_n=prompts, words=(60, 80), new_tokens=new_tokens,
                               batch_size=32, label="at the paper's shape",
                               prompt_tokens=p["prompt_tokens"])

    messages = args.paper_messages
    train_tokens = p["train_share"] * messages * args.paper_tokens_per_message
    scored_per_message = min(args.paper_tokens_per_message, p["block"])
    per_run_train = p["epochs"] * train_tokens / train_rate + p["checkpoints"] * checkpoint_s
    per_checkpoint = {
        "perplexity (every test message)": p["test_share"] * messages * scored_per_message / score_rate,
        "membership inference (members, non-members, lower-cased)":
            2 * p["mia_texts"] * p["block"] / score_rate,
        "extraction (4 prompt sets x 2,500 prompts)": p["prompts"] * p["new_tokens"] / gen_rate,
    }
    per_run = per_run_train + p["checkpoints"] * sum(per_checkpoint.values())
    print(f"\nprojection: config/paper-rmft.yaml on one {setup.device_name}"
          + (" (small shapes on CPU: a check of the arithmetic, not a figure)" if setup.small else ""))
    print(f"  assumed corpus: {messages:,} messages x {args.paper_tokens_per_message} tokens "
          f"(--paper-messages, --paper-tokens-per-message); train share {p['train_share']}, "
          f"test {p['test_share']}")
    print(f"  measured: training {train_rate:,.0f} tokens/s ({p['batch']} x {p['block']}, {p['precision']}), "
          f"{checkpoint_s:.1f} s per checkpoint; scoring {score_rate:,.0f} tokens/s; "
          f"generation {gen_rate:,.0f} new tokens/s")
    print(f"  per run: fine-tuning {_duration(per_run_train)} ({p['epochs']} epochs, "
          f"{p['checkpoints']} checkpoints)")
    for what, seconds in per_checkpoint.items():
        print(f"  per run: {what}: {_duration(p['checkpoints'] * seconds)} ({seconds:.1f} s per checkpoint)")
    print(f"  total, {p['runs']} runs (none, dedup, rmft, scrub) one after another: "
          f"{_duration(p['runs'] * per_run)}")


def summary(figures: dict, small: bool) -> None:
    """The issue's targets beside this run's figures (on small CPU shapes they mean nothing)."""
    lines = []
    for name, target in (("24x1024", 40), ("12x768", 30)):
        if name in figures.get("train", {}):
            got = figures["train"][name]
            lines.append(f"train MFU {name} {got['mfu']} % (target >= {target} %), whole call / loop "
                         f"{got['call_over_loop']:.2f} (target >= 0.90)")
    if "scoring" in figures:
        lines.append(f"scoring {figures['scoring']:,.0f} tokens/s (target >= 1,500,000)")
    if "generation" in figures:
        lines.append(f"generation {figures['generation']:,.0f} new tokens/s (target >= 100,000)")
    if lines:
        print("\ntargets of issue 11" + (" (small CPU shapes: not comparable)" if small else "") + ": "
              + "; ".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-small", action="store_true",
                        help="small shapes on the CPU (automatic without CUDA)")
    parser.add_argument("--parts", default="train,scoring,generation,projection",
                        help="comma-separated: train, scoring, generation, projection")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None,
                        help="also train with train.compile (default on a GPU)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--paper-messages", type=int, default=517_401,
                        help="messages of the corpus the projection assumes (CMU Enron: 517,401 files)")
    parser.add_argument("--paper-tokens-per-message", type=int, default=400,
                        help="GPT-2 tokens per message the projection assumes (an estimate)")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's dense bf16 peak (default: bench/train.py's table)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"train", "scoring", "generation", "projection"})
    if unknown:
        parser.error(f"--parts: unknown part(s) {unknown}")

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    setup = Setup(args)
    import torch

    print(f"bench/gpu.py on {setup.device_name}: torch {torch.__version__}, precision {setup.precision}, "
          f"peak {setup.peak or 'unknown'} TFLOP/s"
          + (", small shapes: a check of this script, not a GPU figure" if setup.small else ""))
    timings, figures = {}, {}
    for part in parts:
        begun = time.perf_counter()
        if part == "train":
            figures["train"] = part_train(setup)
        elif part == "scoring":
            n, length = setup.sizes["scoring"]
            figures["scoring"] = part_scoring(setup, texts_n=n, max_length=length, batch_size=16,
                                              label="12x768")
        elif part == "generation":
            n, new, batch = setup.sizes["generation"]
            figures["generation"] = part_generation(setup, prompts_n=n, words=(8, 40), new_tokens=new,
                                                    batch_size=batch, label="12x768")
        else:
            part_projection(setup)
        timings[part] = time.perf_counter() - begun
    summary(figures, setup.small)
    total = time.perf_counter() - started
    print("\ntime per part: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {total:.0f} s"
          + ("" if setup.small else f" (budget 360 s){' OVER' if total > 360 else ''}"))


if __name__ == "__main__":
    main()
