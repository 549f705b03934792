"""Benchmark: cost of all membership-inference attacks from one statistics pass vs the LOSS attack alone.

    python bench/mia.py                                   # tiny GPT-2 (2 layers, 128 wide), 256 texts
    python bench/mia.py --model DIR [--reference DIR] --texts 512 --max-length 128 --device cuda

Timed (wall-clock, the minimum over --repeats, the least disturbed by other load on a shared machine;
the variants alternate so background load hits all alike; one untimed warm-up of each first):
  loss       token_nll over the texts, then -nll_sum / n_tokens: what LOSS alone needs
  shared     example_statistics(lowercase=False) + attack_scores for loss, zlib, min_k, min_k_pp: the one
             pass (with the Min-K%++ vocabulary moments from the same logits) and every attack reading it
  lowercase  example_statistics(lowercase=True) minus shared's pass: the extra loop over the lower-cased
             texts the lowercase attack needs (reported separately: it is a second set of texts)
  reference  example_statistics of the reference model (lowercase=False) + the ref attack: a second
             model, so a second pass by construction (reported separately)
The ratio shared / loss is the overhead of running every single-model attack instead of LOSS alone.
Texts are made-up words (no PII). The tiny model's reference is a second tiny GPT-2 with other weights;
with --model the reference defaults to the same directory (timing only).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def made_up_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    texts = []
    for _ in range(n):
        words = rng.choices(vocab, weights, k=rng.randint(20, 150))
        # Some capitals, so that lower-casing changes part of the texts as in real e-mail
        texts.append(" ".join(w.capitalize() if rng.random() < 0.15 else w for w in words) + ".")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="local directory of a causal LM (save_pretrained); default: tiny GPT-2")
    parser.add_argument("--reference", help="local directory of the reference model (default: see above)")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from piimem.mia import attack_scores
    from piimem.models import init_tiny_gpt2, train_tokenizer
    from piimem.scoring import example_statistics, resolve_device, token_nll

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # nothing here is random in torch; fixed anyway for the record
    texts = made_up_texts(args.texts, args.seed)
    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True, dtype=torch.float32)
        reference = AutoModelForCausalLM.from_pretrained(args.reference or args.model, local_files_only=True,
                                                         dtype=torch.float32)
        name, reference_name = args.model, args.reference or args.model
    else:
        tokenizer = train_tokenizer(made_up_texts(2000, args.seed + 1), 4096)
        model = init_tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4, n_positions=max(256, args.max_length),
                               seed=1)
        reference = init_tiny_gpt2(tokenizer, n_layer=2, n_embd=128, n_head=4,
                                   n_positions=max(256, args.max_length), seed=2)
        name, reference_name = "tiny-gpt2 (2x128, vocab 4096)", "tiny-gpt2 seed 2"
    device = resolve_device(args.device)
    kw = dict(max_length=args.max_length, batch_size=args.batch_size, device=str(device))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def loss_alone():
        scores = token_nll(model, tokenizer, texts, **kw)
        return scores.select(-(scores["nll_sum"] / scores["n_tokens"]))

    def shared():
        stats = example_statistics(model, tokenizer, texts, lowercase=False, **kw)
        return attack_scores(stats, None, ["loss", "zlib", "min_k", "min_k_pp"], k=0.2)

    def with_lowercase():
        stats = example_statistics(model, tokenizer, texts, lowercase=True, **kw)
        return attack_scores(stats, None, ["loss", "zlib", "min_k", "min_k_pp", "lowercase"], k=0.2)

    target_stats = example_statistics(model, tokenizer, texts, lowercase=False, **kw)

    def reference_pass():
        stats = example_statistics(reference, tokenizer, texts, lowercase=False, **kw)
        return attack_scores(target_stats, stats, ["ref"], reference=reference_name)

    variants = {"loss": loss_alone, "shared": shared, "lowercase": with_lowercase, "reference": reference_pass}
    times: dict[str, list[float]] = {v: [] for v in variants}
    for repeat in range(args.repeats + 1):
        for label, run in variants.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            if repeat:  # the first round warms up caches and kernels
                times[label].append(time.perf_counter() - start)
    median = {label: min(t) for label, t in times.items()}  # min: see the docstring
    n_tokens = int(target_stats["n_tokens"].sum())
    print(f"model {name} on {device} ({torch.get_num_threads()} CPU threads), {len(texts)} texts, "
          f"{n_tokens:,} scored tokens, max_length {args.max_length}, batch {args.batch_size}, "
          f"min of {args.repeats} repeats")
    print(f"  LOSS alone (token_nll + score)                 {median['loss']:8.3f} s")
    print(f"  shared pass + loss, zlib, min_k, min_k_pp      {median['shared']:8.3f} s   "
          f"ratio {median['shared'] / median['loss']:.2f}")
    print(f"  + lowercase (extra loop over lower-cased text) {median['lowercase'] - median['shared']:8.3f} s   "
          f"(all single-model attacks: ratio {median['lowercase'] / median['loss']:.2f})")
    print(f"  Ref: reference model's pass + score            {median['reference']:8.3f} s   "
          f"(second model: {reference_name})")


if __name__ == "__main__":
    main()
