"""Text of made-up words for tiny-model tests: seeded, and free of anything that looks like PII."""

import random


def made_up_docs(n: int, seed: int, *, letters: str, vocabulary: int, words: tuple[int, int]) -> list[str]:
    """`n` sentences of `words[0]`..`words[1]` words drawn from `vocabulary` made-up words over `letters`."""
    rng = random.Random(seed)
    pool = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 6))) for _ in range(vocabulary)]
    return [" ".join(rng.choice(pool) for _ in range(rng.randint(*words))) + "." for _ in range(n)]
