"""Throughput of PII detection: per-document Presidio calls vs the batched stage, and its process scaling.

    python bench/pii.py --docs 400 --processes 1 2

Documents: the synthetic corpus (generated into a temporary directory), or the Enron sample under
../shared/data/enron-mini (--source enron-mini), parsed by piimem; the first N messages, never
repeated, so the stage gains only from the duplication the corpus really has. Prints only counts,
seconds and rates: never document text or PII.

Measured in one run, on the same documents:
  naive   - Presidio as documented: NlpEngineProvider (full spaCy pipeline), default registry,
            `AnalyzerEngine.analyze(text, language="en", entities=...)` once per document;
  stage   - `detect_spans(..., n_process=p)` for each p given: spaCy nlp.pipe in batches without the
            parser, only the recognizers needed, each distinct body once, plus the header rules
            (with --no-header-pii only Presidio).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import polars as pl  # noqa: E402

from piimem.pii import ENTITY_TYPES  # noqa: E402
from piimem.pii.detect import DEFAULT_SPACY_MODEL, LANGUAGE, build_analyzer, detect_spans  # noqa: E402

ENRON_MINI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "enron-mini"


def synthetic_messages(seed: int) -> pl.DataFrame | None:
    try:
        from piimem.corpus.maildir import parse_maildir
        from piimem.corpus.synthetic import SyntheticConfig, generate_maildir
    except ImportError as exc:
        print(f"synthetic corpus unavailable ({exc}); trying the Enron sample", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory(prefix="piimem-bench-") as tmp:
        generate_maildir(Path(tmp) / "maildir", SyntheticConfig(seed=seed))
        return parse_maildir(Path(tmp) / "maildir").messages


def enron_mini_messages(root: Path) -> pl.DataFrame | None:
    if not root.is_dir():
        return None
    from piimem.corpus.maildir import parse_maildir

    return parse_maildir(root).messages


def load_documents(n_docs: int, source: str, seed: int) -> tuple[str, pl.DataFrame]:
    """The first `n_docs` messages of the source, never repeated: repeats would flatter the stage,
    which analyses each distinct body once."""
    messages, name = None, source
    if source in ("auto", "synthetic"):
        messages, name = synthetic_messages(seed), "synthetic"
    if messages is None and source in ("auto", "enron-mini"):
        messages, name = enron_mini_messages(ENRON_MINI), "enron-mini"
    if messages is None or messages.height == 0:
        raise SystemExit(f"no documents: source {source!r} gave none (enron-mini looked for at {ENRON_MINI})")
    if messages.height < n_docs:
        print(f"{name} has {messages.height} messages; using all of them instead of {n_docs}")
    return name, messages.head(n_docs)


def naive_analyzer(entity_types: list[str]):
    """Presidio as its documentation sets it up: the full spaCy pipeline and the default registry."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": LANGUAGE, "model_name": DEFAULT_SPACY_MODEL}],
    })
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=[LANGUAGE])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=400, help="number of documents (default 400)")
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 2], help="n_process values (default 1 2)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--source", choices=["auto", "synthetic", "enron-mini"], default="auto")
    parser.add_argument("--entity-types", nargs="+", default=list(ENTITY_TYPES))
    parser.add_argument("--no-header-pii", action="store_true", help="stage runs Presidio only")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.docs < 1 or any(p < 1 for p in args.processes):
        parser.error("--docs and --processes must be positive")

    source, messages = load_documents(args.docs, args.source, args.seed)
    bodies = [t[o:] for t, o in zip(messages["text"].to_list(), messages["text_body_offset"].to_list())]
    mean_chars = sum(map(len, bodies)) / len(bodies)
    print(
        f"documents: {len(bodies)} from {source} ({len(set(bodies))} distinct bodies), "
        f"mean body length {mean_chars:,.0f} chars, "
        f"{os.cpu_count()} CPU(s), entity types {' '.join(args.entity_types)}"
    )

    t0 = time.perf_counter()
    analyzer = build_analyzer(entity_types=args.entity_types)
    naive = naive_analyzer(args.entity_types)
    print(f"analyzers built in {time.perf_counter() - t0:.1f} s")
    for body in bodies[:5]:  # warm-up: recognizers load lazily on first use
        naive.analyze(text=body, language=LANGUAGE, entities=args.entity_types)

    results: list[tuple[str, int, float, int]] = []
    t0 = time.perf_counter()
    n_found = 0
    for body in bodies:
        n_found += len(
            naive.analyze(text=body, language=LANGUAGE, entities=args.entity_types, score_threshold=0.4)
        )
    results.append(("naive analyze", 1, time.perf_counter() - t0, n_found))

    for n_process in args.processes:
        t0 = time.perf_counter()
        spans = detect_spans(
            messages,
            analyzer=analyzer,
            entity_types=args.entity_types,
            batch_size=args.batch_size,
            n_process=n_process,
            header_pii=not args.no_header_pii,
        )
        results.append(("detect_spans", n_process, time.perf_counter() - t0, spans.height))

    naive_rate = len(bodies) / results[0][2]
    first_stage_rate = len(bodies) / results[1][2] if len(results) > 1 else None
    row = "{:<15}{:>10}{:>10}{:>10}{:>8}{:>10}{:>12}"
    print("\n" + row.format("mode", "n_process", "seconds", "docs/s", "found", "vs naive", "vs first p"))
    for mode, n_process, seconds, n_found in results:
        rate = len(bodies) / seconds
        scaling = f"{rate / first_stage_rate:.2f}x" if mode == "detect_spans" and first_stage_rate else "-"
        print(
            row.format(
                mode,
                n_process,
                f"{seconds:.1f}",
                f"{rate:.1f}",
                n_found,
                f"{rate / naive_rate:.2f}x",
                scaling,
            )
        )


if __name__ == "__main__":
    main()
