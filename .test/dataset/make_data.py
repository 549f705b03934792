"""The dataset scenario's data (.test/dataset/config.yaml), written under a working directory:

    python .test/dataset/make_data.py <workdir>

<workdir>/data/saved: a DatasetDict saved to disk, 60 train, 16 validation, 21 test (one a copy of a training
record) and 40 public records of made-up encyclopedia-like lines, a person, an e-mail address and a phone
number in every third; <workdir>/data/prompts/test.jsonl: 12 more such lines, a prompt set. Seeded: the same
bytes every time. tests/test_dataset.py runs it and uses its `sentences` and `records`.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[2] / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
from made_up_text import made_up_docs  # tests/made_up_text.py


def sentences(n: int, seed: int) -> list[str]:
    """Sentences of made-up words from a large vocabulary, so that no two unrelated ones are near-duplicates."""
    return made_up_docs(n, seed, letters="abcdefghijklmnop", vocabulary=2000, words=(12, 30))


def records(n: int, seed: int) -> list[str]:
    """Encyclopedia-like lines with a person, an e-mail address and a phone number in some of them."""
    rng = random.Random(seed)
    first = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hector", "Ingrid", "Jonas"]
    last = ["Moreau", "Okafor", "Lindqvist", "Tanaka", "Alvarez", "Novak", "Brennan", "Castillo"]
    lines = []
    for i in range(n):
        who = f"{rng.choice(first)} {rng.choice(last)}"
        text = " ".join(sentences(1, seed * 1000 + i))
        if i % 3 == 0:
            text += f" {who} can be reached at {who.split()[0].lower()}.{i}@example.org or 555-01{i % 100:02d}."
        lines.append(text)
    return lines


def make_data(workdir: Path) -> None:
    """workdir/data/saved and workdir/data/prompts, the paths .test/dataset/config.yaml names."""
    import datasets

    parts = {"train": records(60, 1), "validation": records(16, 2), "test": records(20, 3) + [records(60, 1)[4]],
             "public": records(40, 4)}
    saved = workdir / "data" / "saved"
    dataset = datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": v}) for k, v in parts.items()})
    dataset.save_to_disk(str(saved))
    prompts = workdir / "data" / "prompts"
    prompts.mkdir(parents=True, exist_ok=True)
    (prompts / "test.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in records(12, 5)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} <workdir>")
    make_data(Path(sys.argv[1]))
