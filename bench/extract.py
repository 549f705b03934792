"""Benchmark: batched generation (left padding, KV cache) against one prompt at a time, and PII inference
scoring (a candidate set per masked window) batched on one cached prefix pass against one candidate at a time.

    python bench/extract.py                              # tiny GPT-2 (2 layers, 128 wide), 256 prompts
    python bench/extract.py --model DIR --prompts 512 --batch-size 64 --device cuda
    python bench/extract.py --part inference --windows 20 --candidates 100

Both ways run piimem.extraction.generate_token_ids on the same model and the same prompts (seeded made-up
words, no PII), greedy, `--new-tokens` new tokens each; only the batch size differs (--batch-size vs 1).
The untrained tiny GPT-2 is built here from a tokenizer trained on the same made-up words (weights seeded);
`--model` loads a save_pretrained directory instead. Timed: the generate call (tokenisation, padding, decoding
loop), after one untimed warm-up batch. Tokens: the new tokens produced (up to EOS), counted per run.
Agreement: the share of prompts whose greedy continuation is identical both ways (left padding and masking
must not change the result; float rounding in padded batches can flip a near-tie now and then).

Inference (`piimem.extraction.inference.filled_window_scores`): `--windows` made-up windows (a prefix of
`--min-words`..`--max-words` words, a suffix of 8), each with `--candidates` made-up fillings; three ways on the
same model: one filling at a time without a cache (the usual way: the whole window per candidate), all of a
window's fillings in batches of `--batch-size` without a cache, and batched on one cached prefix pass (the
default). Printed: seconds, windows per second, the ratios, the largest score difference against one at a
time (either batched way) and in how many
windows every candidate's rank is the same both ways.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def made_up_prompts(n: int, seed: int, min_words: int, max_words: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(2000)]
    return [" ".join(rng.choices(vocab, k=rng.randint(min_words, max_words))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="save_pretrained directory (default: a tiny GPT-2 built here)")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--min-words", type=int, default=8)
    parser.add_argument("--max-words", type=int, default=40)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", choices=("generation", "inference", "both"), default="both")
    parser.add_argument("--windows", type=int, default=20, help="inference: masked windows scored")
    parser.add_argument("--candidates", type=int, default=100, help="inference: fillings per window")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args()

    import torch

    from piimem.scoring import resolve_device

    if args.model:
        from piimem.models import load_base_model

        model, tokenizer = load_base_model(args.model, models_dir=Path("."))
        name = args.model
    else:
        from piimem.models import init_tiny_gpt2, train_tokenizer

        tokenizer = train_tokenizer(made_up_prompts(2000, args.seed + 1, 8, 40), 2000)
        model = init_tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4, n_positions=256, seed=args.seed)
        name = "tiny-gpt2 (untrained, 2x128)"
    device = resolve_device(args.device)
    model.to(device).eval()

    result = {"model": name,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)}
    if args.part in ("generation", "both"):
        result["generation"] = bench_generation(args, model, tokenizer, device)
    if args.part in ("inference", "both"):
        result["inference"] = bench_inference(args, model, tokenizer, device)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def bench_generation(args, model, tokenizer, device) -> dict:
    import torch

    from piimem.extraction.generation import generate_token_ids

    prompts = made_up_prompts(args.prompts, args.seed, args.min_words, args.max_words)

    def run(batch_size: int) -> tuple[list[list[int]], float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens=args.new_tokens, batch_size=batch_size,
                                 device=str(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return ids, time.perf_counter() - start

    generate_token_ids(model, tokenizer, prompts[: args.batch_size], max_new_tokens=4,
                       batch_size=args.batch_size, device=str(device))  # warm-up: kernels, allocator
    batched, t_batched = run(args.batch_size)
    single, t_single = run(1)
    n_batched, n_single = sum(map(len, batched)), sum(map(len, single))
    agree = sum(a == b for a, b in zip(batched, single))
    result = {
        "prompts": len(prompts),
        "new_tokens": args.new_tokens,
        "batch_size": args.batch_size,
        "batched_s": round(t_batched, 3),
        "batched_tokens_per_s": round(n_batched / t_batched, 1),
        "single_s": round(t_single, 3),
        "single_tokens_per_s": round(n_single / t_single, 1),
        "speedup": round((n_batched / t_batched) / (n_single / t_single), 2),
        "greedy_agreement_pct": round(100.0 * agree / len(prompts), 2),
    }
    print(f"generation on {device}: {len(prompts)} prompts x {args.new_tokens} new tokens")
    print(f"  batched (batch {args.batch_size}): {t_batched:8.2f} s  {result['batched_tokens_per_s']:10,.1f} tokens/s")
    print(f"  one at a time:      {t_single:8.2f} s  {result['single_tokens_per_s']:10,.1f} tokens/s")
    print(f"  speed-up {result['speedup']:.2f}x; identical greedy continuations: {agree}/{len(prompts)} "
          f"({result['greedy_agreement_pct']:.1f} %)")
    return result


def bench_inference(args, model, tokenizer, device) -> dict:
    from piimem.extraction.inference import filled_window_scores, rank_of_truth

    # Distinct fillings, as a candidate set holds: equal strings would tie and make rank comparisons moot.
    texts = list(dict.fromkeys(made_up_prompts(args.windows * args.candidates * 2, args.seed + 2, 1, 3)))
    windows = [(made_up_prompts(1, args.seed + 10 + i, args.min_words, args.max_words)[0],
                [" " + t for t in texts[i * args.candidates:(i + 1) * args.candidates]],
                " " + made_up_prompts(1, args.seed + 5000 + i, 8, 8)[0]) for i in range(args.windows)]

    def run(batch_size: int, cached: bool) -> tuple[list[list[float]], float]:
        start = time.perf_counter()
        if batch_size == 1:
            scores = [[filled_window_scores(model, tokenizer, p, [f], s, cached=cached, device=str(device))[0]
                       for f in fillings] for p, fillings, s in windows]
        else:
            scores = [filled_window_scores(model, tokenizer, p, fillings, s, batch_size=batch_size, cached=cached,
                                           device=str(device)) for p, fillings, s in windows]
        return scores, time.perf_counter() - start

    run(args.batch_size, True)  # warm-up
    cached, t_cached = run(args.batch_size, True)
    batched, t_batched = run(args.batch_size, False)
    single, t_single = run(1, False)
    difference = max(abs(a - b) for ways in (cached, batched) for x, y in zip(ways, single) for a, b in zip(x, y))
    same_ranks = sum([rank_of_truth(x, i) for i in range(len(x))] == [rank_of_truth(y, i) for i in range(len(y))]
                     for x, y in zip(cached, single))
    result = {"windows": args.windows, "candidates": args.candidates, "batch_size": args.batch_size,
              "cached_batched_s": round(t_cached, 3), "batched_s": round(t_batched, 3),
              "single_s": round(t_single, 3), "speedup_batched": round(t_single / t_batched, 2),
              "speedup_cached_batched": round(t_single / t_cached, 2), "max_score_difference": difference,
              "windows_with_identical_ranks": same_ranks}
    print(f"PII inference scoring on {device}: {args.windows} windows x {args.candidates} candidates")
    print(f"  batched, cached prefix (batch {args.batch_size}): {t_cached:8.2f} s  "
          f"{args.windows / t_cached:8.2f} windows/s")
    print(f"  batched, no cache:            {t_batched:8.2f} s  {args.windows / t_batched:8.2f} windows/s")
    print(f"  one candidate at a time:      {t_single:8.2f} s  {args.windows / t_single:8.2f} windows/s")
    print(f"  speed-up {result['speedup_cached_batched']:.2f}x cached+batched, {result['speedup_batched']:.2f}x "
          f"batched; largest score difference {difference:.2e} nats/token; every candidate's rank identical in "
          f"{same_ranks} of {args.windows} windows")
    return result


if __name__ == "__main__":
    main()
