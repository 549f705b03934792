"""The data plan: which tokens every optimizer step trains on, known before training.

Data order. The Seen Extraction Rate compares defenses on "the PII of the training documents consumed up
to checkpoint c", so every defense must see the documents in the same order. Each epoch orders documents
by sha256(seed, epoch, doc_id): a document's position relative to any other document depends only on the
two ids, never on which other documents exist (deduplication removes some, RMFT changes their text).

Examples. packing="blocks": the epoch's documents, in that order, are tokenized, each followed by EOS,
joined into one stream and cut into `block_size`-token blocks; the last, shorter block is kept (padded), so
every document is trained on in every epoch; audit canaries (`piimem.audit`) are examples of their own
between the blocks (`plan_epoch`). packing="messages": one example per document (its tokens and
EOS, truncated to `block_size`). Micro-batches are padded on the right to their longest example; padding
is masked out of attention and loss (a micro-batch without padding, e.g. full blocks, needs no mask).

Steps. One optimizer step takes `batch_size * grad_accum` examples (times the processes, see
`piimem.train.distributed`; the last step of an epoch may take fewer); the loss of a step is the mean NLL
over its real target tokens, so padding and short final steps weigh correctly. Steps per epoch can differ
between epochs when texts are redrawn per epoch (RMFT). Checkpoints: `piimem.train.config`.

Consumed documents. Each checkpoint directory holds consumed.parquet (doc_id, first_step): the documents
at least one of whose tokens was in a step <= the checkpoint's step, and the first such step. A document
split across blocks counts as consumed once its first block was trained on.

Poisson sampling (DP-SGD, `piimem.train.dp`): a step takes each example of its epoch independently with
probability examples_per_step / examples instead of the next examples_per_step in order; the steps per
epoch stay the same, and a document counts as consumed at the first step that samples one of its examples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from piimem.progress import Progress
from piimem.train.config import Checkpoint, TrainConfig, checkpoint_schedule, checkpoint_steps

_TOKENIZE_BATCH = 1000


def document_order(doc_ids, *, seed: int, epoch: int) -> np.ndarray:
    """`doc_ids` in training order for `epoch`: sorted by sha256 of (seed, epoch, doc_id), ties by doc_id.

    hashlib, not hash(): Python's string hashing is salted per process.
    """
    ids = np.asarray(doc_ids, dtype=np.int64)
    def key(doc_id: int) -> int:
        return int.from_bytes(hashlib.sha256(f"{seed}:{epoch}:{doc_id}".encode()).digest()[:8], "big")

    keys = np.fromiter((key(d) for d in ids.tolist()), dtype=np.uint64, count=len(ids))
    return ids[np.lexsort((ids, keys))]


@dataclass
class TokenizedTexts:
    """Every document's tokens followed by EOS, flat; document i is tokens[offsets[i]:offsets[i + 1]]."""

    doc_ids: np.ndarray  # int64, ascending
    offsets: np.ndarray  # int64, len(doc_ids) + 1
    tokens: np.ndarray  # int32


def tokenize_texts(tokenizer, doc_ids, texts, *, desc: str = "tokenize") -> TokenizedTexts:
    """Tokenize without special tokens and append EOS to each document (the separator in the stream)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("train: the tokenizer has no eos_token_id; documents are joined with EOS")
    ids = np.asarray(doc_ids, dtype=np.int64)
    texts = list(texts)
    sort = np.argsort(ids, kind="stable")
    pieces: list[np.ndarray] = []
    with Progress(len(texts), desc, unit="doc") as progress:
        for start in range(0, len(sort), _TOKENIZE_BATCH):
            batch = [texts[i] for i in sort[start:start + _TOKENIZE_BATCH].tolist()]
            encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                                verbose=False)["input_ids"]
            for seq in encoded:
                pieces.append(np.append(np.asarray(seq, dtype=np.int32), np.int32(eos)))
            progress.update(len(batch))
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    return TokenizedTexts(doc_ids=ids[sort], offsets=offsets, tokens=tokens)


@dataclass
class EpochPlan:
    """The examples of one epoch, built on demand from the tokenized documents in training order."""

    epoch: int
    packing: str
    block_size: int
    doc_ids: np.ndarray  # training order
    doc_offsets: np.ndarray  # where each (ordered) document starts in `tokens`
    doc_lengths: np.ndarray  # its token count, EOS included
    stream_starts: np.ndarray  # blocks: where each ordered document starts in the joined stream (len n + 1)
    tokens: np.ndarray  # shared with TokenizedTexts, never copied
    # Blocks packing with audit canaries (`piimem.audit.is_canary_doc`): those documents, in training order,
    # each an example of its own outside the stream, and `slots`, per example, its block (>= 0) or -1 - j for
    # the j-th of them. None without any: the examples are the blocks.
    alone_ids: np.ndarray | None = None
    alone_offsets: np.ndarray | None = None
    alone_lengths: np.ndarray | None = None
    slots: np.ndarray | None = None

    @property
    def n_examples(self) -> int:
        if self.packing == "messages":
            return len(self.doc_ids)
        if self.slots is not None:
            return len(self.slots)
        return self._n_blocks

    @property
    def _n_blocks(self) -> int:
        return -(-int(self.stream_starts[-1]) // self.block_size)

    @property
    def trained_doc_ids(self) -> np.ndarray:
        """Every document of the epoch: the ordered documents, then those trained alone."""
        return self.doc_ids if self.alone_ids is None else np.concatenate([self.doc_ids, self.alone_ids])

    def _doc_range(self, i: int) -> tuple[int, int, int, int]:
        """(first, last) ordered documents of block i and the block's stream span [lo, hi)."""
        lo = i * self.block_size
        hi = min(lo + self.block_size, int(self.stream_starts[-1]))
        first = int(np.searchsorted(self.stream_starts, lo, side="right")) - 1
        last = int(np.searchsorted(self.stream_starts, hi - 1, side="right")) - 1
        return first, last, lo, hi

    def example_tokens(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_examples:
            raise IndexError(f"epoch {self.epoch} has {self.n_examples} examples, asked for {i}")
        if self.packing == "messages":
            start = int(self.doc_offsets[i])
            return self.tokens[start:start + min(int(self.doc_lengths[i]), self.block_size)]
        if self.slots is not None:
            slot = int(self.slots[i])
            if slot < 0:
                start = int(self.alone_offsets[-1 - slot])
                return self.tokens[start:start + min(int(self.alone_lengths[-1 - slot]), self.block_size)]
            i = slot
        first, last, lo, hi = self._doc_range(i)
        parts = []
        for p in range(first, last + 1):
            a = max(lo, int(self.stream_starts[p])) - int(self.stream_starts[p])
            b = min(hi, int(self.stream_starts[p + 1])) - int(self.stream_starts[p])
            parts.append(self.tokens[int(self.doc_offsets[p]) + a:int(self.doc_offsets[p]) + b])
        return np.concatenate(parts)

    def example_doc_ids(self, i: int) -> np.ndarray:
        """The documents whose tokens example i holds."""
        if not 0 <= i < self.n_examples:
            raise IndexError(f"epoch {self.epoch} has {self.n_examples} examples, asked for {i}")
        if self.packing == "messages":
            return self.doc_ids[i:i + 1]
        if self.slots is not None:
            slot = int(self.slots[i])
            if slot < 0:
                return self.alone_ids[-1 - slot:-slot]
            i = slot
        first, last, _, _ = self._doc_range(i)
        return self.doc_ids[first:last + 1]

    def first_example_of_docs(self) -> np.ndarray:
        """For each document of `trained_doc_ids`, the first example holding one of its tokens."""
        if self.packing == "messages":
            return np.arange(len(self.doc_ids), dtype=np.int64)
        blocks = self.stream_starts[:-1] // self.block_size
        if self.slots is None:
            return blocks
        return np.concatenate([np.flatnonzero(self.slots >= 0)[blocks], np.flatnonzero(self.slots < 0)])


def plan_epoch(store: TokenizedTexts, *, epoch: int, packing: str, block_size: int, seed: int) -> EpochPlan:
    """The epoch's examples. Blocks packing trains each audit canary alone (`piimem.audit`), placed in the
    order of the epoch right before the first block that starts after the stream position where it would
    have been, so that adding or removing one changes no other example (one DP privacy unit each)."""
    from piimem.audit import is_canary_doc

    ordered = document_order(store.doc_ids, seed=seed, epoch=epoch)
    alone = is_canary_doc(ordered) if packing == "blocks" else np.zeros(len(ordered), dtype=bool)

    def located(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.searchsorted(store.doc_ids, ids)  # store.doc_ids is ascending
        return store.offsets[positions], store.offsets[positions + 1] - store.offsets[positions]

    packed = ordered[~alone]
    offsets, lengths = located(packed)
    starts = np.zeros(len(packed) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    plan = EpochPlan(epoch=epoch, packing=packing, block_size=block_size, doc_ids=packed, doc_offsets=offsets,
                     doc_lengths=lengths, stream_starts=starts, tokens=store.tokens)
    if alone.any():
        plan.alone_ids = ordered[alone]
        plan.alone_offsets, plan.alone_lengths = located(plan.alone_ids)
        # The blocks complete before each canary's place: the packed documents ahead of it in the order.
        ahead = np.cumsum(~alone)[alone]
        before_block = starts[ahead] // block_size
        blocks = np.arange(plan._n_blocks)
        # Sort blocks and canaries together: canary j before block b when before_block[j] <= b.
        keys = np.concatenate([blocks * 2 + 1, before_block * 2])
        slots = np.concatenate([blocks, -1 - np.arange(len(plan.alone_ids))])
        plan.slots = slots[np.argsort(keys, kind="stable")]
    return plan


def _texts_per_epoch(texts: pl.DataFrame, epochs: int) -> list[pl.DataFrame]:
    """Validated (doc_id, text) frame of each training epoch (epoch 0's when only epoch 0 is given)."""
    if not isinstance(texts, pl.DataFrame):
        raise ValueError(f"train: texts must be a polars DataFrame (epoch, doc_id, text), "
                         f"got {type(texts).__name__}")
    missing = [c for c in ("epoch", "doc_id", "text") if c not in texts.columns]
    if missing:
        raise ValueError(f"train: texts lacks column(s) {missing} (expected epoch, doc_id, text)")
    for column in ("epoch", "doc_id"):
        if not texts[column].dtype.is_integer():
            raise ValueError(f"train: texts.{column} must be an integer column, got {texts[column].dtype}")
    if texts["text"].dtype != pl.String:
        raise ValueError(f"train: texts.text must be a string column, got {texts['text'].dtype}")
    if texts.height == 0:
        raise ValueError("train: texts is empty; there is nothing to train on")
    nulls = [c for c in ("epoch", "doc_id", "text") if texts[c].null_count()]
    if nulls:
        raise ValueError(f"train: texts has missing values in column(s) {nulls}")
    present = sorted(texts["epoch"].unique().to_list())
    if present == [0]:
        per_epoch = [texts] * epochs
    elif present == list(range(epochs)):
        per_epoch = [texts.filter(pl.col("epoch") == e) for e in range(epochs)]
    else:
        raise ValueError(f"train: texts has epochs {present}; expected epoch 0 only (the same texts every "
                         f"epoch) or exactly 0..{epochs - 1} (train.epochs = {epochs})")
    reference = None
    for e, frame in enumerate(per_epoch):
        if frame["doc_id"].n_unique() != frame.height:
            raise ValueError(f"train: texts has duplicate doc_id values in epoch {e}")
        ids = frame["doc_id"].sort()
        if reference is None:
            reference = ids
        elif not ids.equals(reference):
            raise ValueError(f"train: texts of epoch {e} cover different doc_ids than epoch 0 "
                             f"(every epoch must hold the same documents)")
    return [frame.select("doc_id", "text") for frame in per_epoch]


def build_plans(tokenizer, texts: pl.DataFrame, cfg: TrainConfig) -> list[EpochPlan]:
    """One plan per training epoch; identical texts are tokenized once."""
    frames = _texts_per_epoch(texts, cfg.epochs)
    stores: dict[int, TokenizedTexts] = {}
    plans = []
    for e, frame in enumerate(frames):
        key = id(frame)
        if key not in stores:
            stores[key] = tokenize_texts(tokenizer, frame["doc_id"].to_numpy(), frame["text"].to_list(),
                                         desc=f"tokenize epoch {e}" if len(frames) > 1 else "tokenize")
        plans.append(plan_epoch(stores[key], epoch=e, packing=cfg.packing, block_size=cfg.block_size,
                                seed=cfg.seed))
    return plans


def collate(examples: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (input_ids, attention_mask), int64, as wide as the longest example."""
    width = max(len(x) for x in examples)
    ids = np.full((len(examples), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(examples), width), dtype=np.int64)
    for r, x in enumerate(examples):
        ids[r, :len(x)] = x
        mask[r, :len(x)] = 1
    return ids, mask


def first_steps(plans: list[EpochPlan], examples_per_step: int) -> pl.DataFrame:
    """(doc_id, first_step): the first optimizer step that trains on a token of each document."""
    best: dict[int, int] | None = None
    before = 0
    for plan in plans:
        steps = before + plan.first_example_of_docs() // examples_per_step + 1
        if best is None:
            best = dict(zip(plan.trained_doc_ids.tolist(), steps.tolist()))
        else:
            for d, s in zip(plan.trained_doc_ids.tolist(), steps.tolist()):
                if s < best[d]:
                    best[d] = s
        before += -(-plan.n_examples // examples_per_step)
    return (pl.DataFrame({"doc_id": list(best), "first_step": list(best.values())},
                         schema={"doc_id": pl.Int64, "first_step": pl.Int64})
            .sort("first_step", "doc_id"))


@dataclass
class RunPlan:
    """Every optimizer step of a run: its examples, its epoch, the checkpoints after it."""

    epochs: list[EpochPlan]
    examples_per_step: int  # the global batch: batch_size x processes x grad_accum (Poisson: its expectation)
    steps_per_epoch: list[int]
    epoch_starts: np.ndarray  # int64, the steps done before each epoch (len: epochs + 1)
    checkpoints_at: dict[int, list[Checkpoint]]  # step -> the checkpoints taken after it
    poisson_seed: int | None = None  # Poisson sampling of each step's examples from this seed; None: in order

    @property
    def total_steps(self) -> int:
        return int(self.epoch_starts[-1])

    def sample_rate(self, epoch: int) -> float:
        """Poisson sampling: each example's probability to be in a step of `epoch`."""
        return min(1.0, self.examples_per_step / self.epochs[epoch].n_examples)

    def _locate(self, step: int) -> tuple[int, int]:
        e = int(np.searchsorted(self.epoch_starts, step - 1, side="right")) - 1
        return e, step - 1 - int(self.epoch_starts[e])

    def step_indices(self, step: int) -> np.ndarray:
        """The indices, within its epoch, of the examples the 1-based global `step` trains on."""
        e, local = self._locate(step)
        n = self.epochs[e].n_examples
        if self.poisson_seed is not None:
            from piimem.train.dp import poisson_sample

            return poisson_sample(n, self.sample_rate(e), seed=self.poisson_seed, step=step)
        first = local * self.examples_per_step
        return np.arange(first, min(first + self.examples_per_step, n))

    def step_examples(self, step: int) -> tuple[int, float, list[np.ndarray]]:
        """(epoch index, training progress in epochs after the step, the step's examples in order) of the
        1-based global `step`."""
        e, local = self._locate(step)
        plan = self.epochs[e]
        examples = [plan.example_tokens(int(i)) for i in self.step_indices(step)]
        return e, e + (local + 1) / self.steps_per_epoch[e], examples

    def consumed(self) -> pl.DataFrame:
        """(doc_id, first_step) of every document the run trains on: `first_steps` of the run, or with
        Poisson sampling the first step that samples one of the document's examples."""
        if self.poisson_seed is None:
            return first_steps(self.epochs, self.examples_per_step)
        first: dict[int, int] = {}
        for step in range(1, self.total_steps + 1):
            plan = self.epochs[self._locate(step)[0]]
            for i in self.step_indices(step).tolist():
                for doc_id in plan.example_doc_ids(i).tolist():
                    first.setdefault(doc_id, step)
        return (pl.DataFrame({"doc_id": list(first), "first_step": list(first.values())},
                             schema={"doc_id": pl.Int64, "first_step": pl.Int64})
                .sort("first_step", "doc_id"))


def plan_run(tokenizer, texts: pl.DataFrame, cfg: TrainConfig, processes: int = 1, *,
             poisson: bool = False, examples_per_step: int | None = None) -> RunPlan:
    """Tokenize the texts and lay out every step and checkpoint of the run (`processes` data-parallel
    processes share each step); `poisson`: each step samples its examples (DP-SGD), seeded by cfg.seed;
    `examples_per_step`: the (expected) batch, if not batch_size x grad_accum x processes."""
    epochs = build_plans(tokenizer, texts, cfg)
    per_step = examples_per_step or cfg.batch_size * cfg.grad_accum * processes
    steps_per_epoch = [-(-p.n_examples // per_step) for p in epochs]
    at: dict[int, list[Checkpoint]] = {}
    for checkpoint, step in zip(checkpoint_schedule(cfg.epochs, cfg.checkpoints_per_epoch),
                                checkpoint_steps(steps_per_epoch, cfg.checkpoints_per_epoch)):
        at.setdefault(step, []).append(checkpoint)
    return RunPlan(epochs=epochs, examples_per_step=per_step, steps_per_epoch=steps_per_epoch,
                   epoch_starts=np.concatenate([[0], np.cumsum(steps_per_epoch)]).astype(np.int64),
                   checkpoints_at=at, poisson_seed=cfg.seed if poisson else None)


def micro_batches(examples: list[np.ndarray], batch_size: int, rank: int = 0,
                  processes: int = 1) -> list[list[np.ndarray]]:
    """A step's examples cut into micro-batches of `batch_size` in training order, dealt round-robin to
    the processes: this process's share (micro-batch m goes to process m mod processes)."""
    starts = range(rank * batch_size, len(examples), processes * batch_size)
    return [examples[m:m + batch_size] for m in starts]
