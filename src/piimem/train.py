"""Fine-tuning with checkpoints at fixed fractions of an epoch, resumable, one data order for all defenses.

Data order. The Seen Extraction Rate compares defenses on "the PII of the training documents consumed up
to checkpoint c", so every defense must see the documents in the same order. Each epoch orders documents
by sha256(seed, epoch, doc_id): a document's position relative to any other document depends only on the
two ids, never on which other documents exist (deduplication removes some, RMFT changes their text).

Examples. packing="blocks": the epoch's documents, in that order, are tokenized, each followed by EOS,
joined into one stream and cut into `block_size`-token blocks; the last, shorter block is kept (padded), so
every document is trained on in every epoch. packing="messages": one example per document (its tokens and
EOS, truncated to `block_size`). Micro-batches are padded on the right to their longest example; padding
is masked out of attention and loss.

Steps. One optimizer step takes `batch_size * grad_accum` examples (the last step of an epoch may take
fewer); the loss of a step is the mean NLL over its real target tokens, so padding and short final steps
weigh correctly. Steps per epoch can differ between epochs when texts are redrawn per epoch (RMFT).
Checkpoint k of an epoch with n steps is taken after step round(k / checkpoints_per_epoch * n) of it
(half rounds up; at least step 1), counted from the start of training.

Consumed documents. Each checkpoint directory holds consumed.parquet (doc_id, first_step): the documents
at least one of whose tokens was in a step <= the checkpoint's step, and the first such step. A document
split across blocks counts as consumed once its first block was trained on.

Resume. At every checkpoint, and besides at least every `state_every` (minutes of training and/or
optimizer steps, `StateEvery`), the trainer writes run_dir/state (trainable parameters by name, optimizer,
scheduler, grad scaler, step, RNG states, counters, the losses since the last checkpoint) through a
temporary directory and renames, so a killed run leaves either the old or the new state and loses at most
`state_every` of work. A later call with the same fingerprint continues from it; since the data order is a
pure function of (seed, epoch, doc_id), the steps already done are skipped by arithmetic and the result
equals an uninterrupted run. train_log.tsv is appended to, never truncated: a resumed (or restarted) call
first writes a line "# resumed at step N" (or "# restarted at step 0" when no state had been saved yet),
so the rows of an interrupted attempt stay; `read_train_log` reads it. A different fingerprint deletes the
previous run's files first. When the run completes, manifest.json is written and the state (optimizer
moments: twice the trainable parameters) is deleted.

Randomness. Dropout draws from torch's global generator, which has no per-call seed, so train() seeds
the global torch, python and numpy generators from `seed` on a fresh start and restores them on resume.

Several processes (data parallel, one run). When the environment says WORLD_SIZE > 1 (set by
`accelerate launch` or `torchrun`), train() joins the process group (NCCL on CUDA, each process on the
GPU of its LOCAL_RANK; gloo on the CPU), or uses the one its caller started, and:
  * one optimizer step takes batch_size x processes x grad_accum examples (the global batch), so steps,
    checkpoints and consumed documents are those of one process with that many examples per step;
  * the step's examples, cut into micro-batches of batch_size in training order, are dealt round-robin:
    micro-batch m goes to process m mod processes (a process may get none in an epoch's short last step);
  * every process divides its summed NLL by the target-token count of the whole global step (known to all
    from the deterministic plan), and the gradients and the step loss are summed across processes (one
    all-reduce per step, after the backward passes): the step's gradient is exactly the single-process
    one, up to the order of float additions;
  * rank 0's parameters are broadcast at the start; rank 0 alone writes run_dir (fingerprint, checkpoints,
    state, train_log.tsv, manifest.json) while the others wait at a barrier; every process reads the state
    on resume; each process has its own RNG streams (rank 0 seeded with `seed`, rank r from a hash of
    (seed, r)), all saved in the state and restored per rank;
  * the run's fingerprint is extended with the process count, so changing it starts the run over (the
    global batch changed); a process group train() starts lives until the process exits (later calls
    in the same process reuse it).
run_dir must be on a filesystem every process sees (one machine: any). Launch, on one machine with N GPUs:

    accelerate launch --multi_gpu --num_processes N --num_machines 1 --mixed_precision no \
        --dynamo_backend no --main_process_port 0 -m piimem.train_run --config run.json

(or `torchrun --standalone --nproc_per_node N -m piimem.train_run --config run.json`); see
piimem.train_run for run.json and `launch_command`. Without WORLD_SIZE > 1 nothing of this applies.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from piimem.config import checkpoint_ids
from piimem.io import write_table
from piimem.progress import Progress
from piimem.scoring import resolve_device, shifted_token_nll

log = logging.getLogger("piimem")

PACKINGS = ("blocks", "messages")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# Files and directories train() owns inside run_dir; only these are deleted on a fingerprint change.
_RUN_ENTRIES = ("checkpoints", "state", "state.tmp", "state.old", "train_log.tsv", "manifest.json",
                "fingerprint.txt")
_LOG_EVERY_S = 30.0  # how often buffered losses are synchronised, written and logged
_TOKENIZE_BATCH = 1000


# ---------------------------------------------------------------------------------------------------------
# Configuration


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (defaults: the RMFT paper's GPT-2 setting). Invalid values raise
    ValueError naming `train.<key>`."""

    block_size: int = 128
    packing: str = "blocks"
    lr: float = 2e-5
    weight_decay: float = 0.01
    epochs: int = 3
    warmup_steps: int = 500
    batch_size: int = 8
    grad_accum: int = 1
    max_grad_norm: float = 1.0  # 0 disables clipping
    precision: str = "auto"
    compile: bool = False
    checkpoints_per_epoch: int = 10
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        for key in ("block_size", "epochs", "batch_size", "grad_accum", "checkpoints_per_epoch"):
            value = getattr(self, key)
            if not _is_int(value) or value < 1:
                raise ValueError(f"train.{key}: expected a positive integer, got {value!r}")
        if self.block_size < 2:
            raise ValueError(f"train.block_size: expected at least 2 (one context and one target token), "
                             f"got {self.block_size}")
        for key in ("warmup_steps", "seed"):
            value = getattr(self, key)
            if not _is_int(value) or value < 0:
                raise ValueError(f"train.{key}: expected an integer >= 0, got {value!r}")
        if not _is_number(self.lr) or self.lr <= 0:
            raise ValueError(f"train.lr: expected a number > 0, got {self.lr!r}")
        for key in ("weight_decay", "max_grad_norm"):
            value = getattr(self, key)
            if not _is_number(value) or value < 0:
                raise ValueError(f"train.{key}: expected a number >= 0, got {value!r}")
        if self.packing not in PACKINGS:
            raise ValueError(f"train.packing: expected one of {PACKINGS}, got {self.packing!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"train.compile: expected true or false, got {self.compile!r}")
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise ValueError(f"train.device: expected auto, cpu, cuda, cuda:N or mps, got {self.device!r}")

    @classmethod
    def from_dict(cls, values: Mapping) -> TrainConfig:
        """From the config's `train` mapping; unknown keys are an error naming `train.<key>`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"train.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        return cls(**dict(values))


@dataclass(frozen=True)
class StateEvery:
    """How often training saves its resumable state besides at checkpoints (config key train.state_every):
    once `minutes` of training or `steps` optimizer steps have passed since the last save, whichever comes
    first; None turns that limit off. It changes no result, so it is not part of a run's fingerprint."""

    minutes: float | None = 5.0
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.minutes is not None and (not _is_number(self.minutes) or self.minutes <= 0):
            raise ValueError(f"train.state_every.minutes: expected a number > 0 or null, got {self.minutes!r}")
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise ValueError(f"train.state_every.steps: expected a positive integer or null, got {self.steps!r}")

    @classmethod
    def from_dict(cls, values: Mapping | None) -> StateEvery:
        """From the config's `train.state_every` mapping (None: the defaults)."""
        values = dict(values or {})
        unknown = sorted(set(values) - {"minutes", "steps"})
        if unknown:
            raise ValueError(f"train.state_every.{unknown[0]}: unknown key (known: minutes, steps)")
        return cls(**values)


@dataclass(frozen=True)
class Checkpoint:
    id: str  # "c01", ...
    epoch: float  # training progress in epochs when it is taken: 0.1, 0.2, ... 3.0


def checkpoint_schedule(epochs: int, checkpoints_per_epoch: int) -> list[Checkpoint]:
    """The checkpoints of a run, known before training: ids c01.. and their position in epochs."""
    if not _is_int(epochs) or epochs < 1:
        raise ValueError(f"train.epochs: expected a positive integer, got {epochs!r}")
    if not _is_int(checkpoints_per_epoch) or checkpoints_per_epoch < 1:
        raise ValueError(f"train.checkpoints_per_epoch: expected a positive integer, "
                         f"got {checkpoints_per_epoch!r}")
    ids = checkpoint_ids(epochs, checkpoints_per_epoch)
    # k / K rounded so that 3 / 10 prints as 0.3 rather than 0.30000000000000004.
    return [Checkpoint(id=cid, epoch=round(k / checkpoints_per_epoch, 9))
            for k, cid in enumerate(ids, start=1)]


def checkpoint_steps(steps_per_epoch: list[int], checkpoints_per_epoch: int) -> list[int]:
    """Global optimizer step (1-based) after which each checkpoint is taken, in schedule order.

    Checkpoint j (1..K) of epoch e is at round_half_up(j / K * n_e) steps into that epoch, at least 1.
    When an epoch has fewer steps than checkpoints, several checkpoints share a step.
    """
    steps, before = [], 0
    for n in steps_per_epoch:
        for j in range(1, checkpoints_per_epoch + 1):
            # Integer round-half-up of j * n / K (Python's round() rounds halves to even).
            within = (2 * j * n + checkpoints_per_epoch) // (2 * checkpoints_per_epoch)
            steps.append(before + max(1, within))
        before += n
    return steps


# ---------------------------------------------------------------------------------------------------------
# Data order and examples


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

    @property
    def n_examples(self) -> int:
        if self.packing == "messages":
            return len(self.doc_ids)
        return -(-int(self.stream_starts[-1]) // self.block_size)

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
        first, last, _, _ = self._doc_range(i)
        return self.doc_ids[first:last + 1]

    def first_example_of_docs(self) -> np.ndarray:
        """For each ordered document, the first example holding one of its tokens."""
        if self.packing == "messages":
            return np.arange(len(self.doc_ids), dtype=np.int64)
        return self.stream_starts[:-1] // self.block_size


def plan_epoch(store: TokenizedTexts, *, epoch: int, packing: str, block_size: int, seed: int) -> EpochPlan:
    ordered = document_order(store.doc_ids, seed=seed, epoch=epoch)
    positions = np.searchsorted(store.doc_ids, ordered)  # store.doc_ids is ascending
    lengths = store.offsets[positions + 1] - store.offsets[positions]
    starts = np.zeros(len(ordered) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return EpochPlan(epoch=epoch, packing=packing, block_size=block_size, doc_ids=ordered,
                     doc_offsets=store.offsets[positions], doc_lengths=lengths, stream_starts=starts,
                     tokens=store.tokens)


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
            best = dict(zip(plan.doc_ids.tolist(), steps.tolist()))
        else:
            for d, s in zip(plan.doc_ids.tolist(), steps.tolist()):
                if s < best[d]:
                    best[d] = s
        before += -(-plan.n_examples // examples_per_step)
    return (pl.DataFrame({"doc_id": list(best), "first_step": list(best.values())},
                         schema={"doc_id": pl.Int64, "first_step": pl.Int64})
            .sort("first_step", "doc_id"))


# ---------------------------------------------------------------------------------------------------------
# Device and precision


def resolve_precision(precision: str, device) -> str:
    """"auto": bf16 on a GPU that has it, else fp16 (with loss scaling) on GPU, fp32 elsewhere."""
    if precision == "auto":
        if device.type == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"train.precision: fp16 needs a CUDA GPU (loss scaling), the device is "
                         f"{device.type}; use fp32 or bf16")
    if precision == "bf16" and device.type == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"train.precision: bf16 is not supported by "
                             f"{torch.cuda.get_device_name(device)}; use fp16 or auto")
    return precision


def _device_name(device) -> str:
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


# ---------------------------------------------------------------------------------------------------------
# Run directory, state, checkpoints


def _prepare_run_dir(run_dir: Path, fingerprint: str) -> None:
    """Keep a run with the same fingerprint; otherwise delete what train() wrote there before."""
    fingerprint_file = run_dir / "fingerprint.txt"
    if fingerprint_file.is_file() and fingerprint_file.read_text() == fingerprint:
        return
    leftovers = [name for name in _RUN_ENTRIES if (run_dir / name).exists()]
    if leftovers:
        log.info("train: %s holds a run with another fingerprint; starting over", run_dir)
        for name in leftovers:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(fingerprint)


def _state_dir(run_dir: Path) -> Path | None:
    for name in ("state", "state.old"):  # state.old exists alone only after a kill between two renames
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def _rng_states(device) -> dict:
    import torch

    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)  # the training device only: GPU counts may differ
    return states


def _set_rng_states(states: dict, device) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device, lazily, without initialising CUDA


def _save_state(run_dir: Path, trainable: list, optimizer, scheduler, scaler, rng: dict,
                counters: dict) -> None:
    """`rng`: {"rng": states} for one process; with several also "rng_ranks", every rank's states."""
    import torch
    from safetensors.torch import save_file

    tmp, final, old = run_dir / "state.tmp", run_dir / "state", run_dir / "state.old"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({name: p.detach().to("cpu").contiguous() for name, p in trainable},
              tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), **rng}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(counters, indent=1))
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _load_state(state_dir: Path, trainable: list, optimizer, scheduler, scaler, device,
                processes: _Processes) -> dict:
    import torch
    from safetensors.torch import load_file

    saved = load_file(state_dir / "trainable.safetensors")
    names = [name for name, _ in trainable]
    if sorted(saved) != sorted(names):
        raise ValueError(f"{state_dir}: the saved trainable parameters ({len(saved)}) do not match the "
                         f"model's ({len(names)}); the fingerprint should change with the model or tuning")
    with torch.no_grad():
        for name, p in trainable:
            p.copy_(saved[name].to(p.device))
    rest = torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(rest["optimizer"])
    scheduler.load_state_dict(rest["scheduler"])
    scaler.load_state_dict(rest["scaler"])
    if processes.world > 1:
        ranks = rest.get("rng_ranks") or []
        if len(ranks) != processes.world:
            raise ValueError(f"{state_dir}: the saved state holds the RNG states of {len(ranks) or 1} "
                             f"process(es), this run has {processes.world}; the fingerprint should have "
                             f"changed")
        _set_rng_states(ranks[processes.rank], device)
    else:
        _set_rng_states(rest["rng"], device)
    return json.loads((state_dir / "state.json").read_text())


@contextlib.contextmanager
def _hf_progress_bars_off():
    """save_pretrained draws a one-item "Writing model shards" bar per checkpoint: noise in rule logs."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _save_checkpoint(model, tokenizer, run_dir: Path, checkpoint: Checkpoint, record: dict,
                     consumed: pl.DataFrame) -> None:
    final = run_dir / "checkpoints" / checkpoint.id
    tmp = run_dir / "checkpoints" / f".{checkpoint.id}.tmp"
    for path in (tmp, final):
        if path.exists():
            shutil.rmtree(path)
    tmp.mkdir(parents=True)
    with _hf_progress_bars_off():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_table(consumed, tmp / "consumed.parquet")  # doc ids only, no text
    (tmp / "checkpoint.json").write_text(json.dumps(record, indent=1))
    tmp.rename(final)


# ---------------------------------------------------------------------------------------------------------
# Several processes (data parallel)

_BUCKET_ELEMENTS = 1 << 25  # gradients are summed across processes in flat fp32 buckets of <= 128 MiB


@dataclass
class _Processes:
    """Where this process stands in a data-parallel run; world == 1: a single process, no collectives."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"train: environment variable {name}={value!r} is not an integer") from None


def _start_processes(cfg: TrainConfig):
    """(_Processes, device or None). world == 1: (single, None), the device resolved as before."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _Processes(), None
    import torch
    import torch.distributed as dist

    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    name = cfg.device
    if name.startswith("cuda:") and int(name.split(":")[1]) != local_rank:
        raise ValueError(f"train.device: {name!r} names one GPU, but each of the {world} processes trains "
                         f"on the GPU of its LOCAL_RANK; use auto or cuda")
    if name == "mps":
        raise ValueError("train.device: mps does not support several processes; use auto, cuda or cpu")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise ValueError(f"train.device: {name!r} asks for a CUDA GPU but none is visible "
                             f"(use auto or cpu)")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"train: process {rank} has LOCAL_RANK {local_rank} but only "
                             f"{torch.cuda.device_count()} GPU(s) are visible; launch at most that many "
                             f"processes")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
        # Kept for the life of the process, so a second train() call reuses it: tearing a group down
        # and building a new one on the launcher's store can hang the gloo rendezvous (seen on CPU).
        atexit.register(dist.destroy_process_group)
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError(f"train: the process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
                         f"the environment says RANK={rank} of WORLD_SIZE={world}")
    return _Processes(rank=rank, world=world), device


def _rank0_decides(flag: bool, processes: _Processes, device) -> bool:
    """Rank 0's `flag` on every process (one small broadcast); the flag itself with one process."""
    if processes.world == 1:
        return flag
    import torch
    import torch.distributed as dist

    box = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.broadcast(box, src=0)
    return bool(box.item())


def _barrier(processes: _Processes) -> None:
    if processes.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _process_seed(seed: int, rank: int) -> int:
    """Rank 0 draws as a single process would; the others from their own, unrelated streams."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:rank:{rank}".encode()).digest()[:4], "big")


def _broadcast_model(model) -> None:
    """Start every process from rank 0's weights (an initialisation that draws random numbers, e.g. a
    soft prompt, could otherwise differ between processes)."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def _sum_across_processes(params: list, step_loss):
    """Sum every parameter's gradient and the step loss over the processes; returns the summed loss.

    Each process's loss is already divided by the global step's target tokens, so the sums are the
    single-process gradient and loss. A gradient absent on one process (it had no examples this step)
    counts as zero; absent on all, it stays None, as it would in one process (AdamW then skips it).
    """
    import torch
    import torch.distributed as dist

    device = step_loss.device
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    head = torch.cat([step_loss.reshape(1).float(), present])
    buckets: list[list[int]] = [[]]
    size = 0
    for i, p in enumerate(params):
        if buckets[-1] and size + p.numel() > _BUCKET_ELEMENTS:
            buckets.append([])
            size = 0
        buckets[-1].append(i)
        size += p.numel()
    for b, bucket in enumerate(buckets):
        parts = [head] if b == 0 else []  # the loss and presence flags ride with the first bucket
        for i in bucket:
            grad = params[i].grad
            parts.append(torch.zeros(params[i].numel(), dtype=torch.float32, device=device) if grad is None
                         else grad.reshape(-1).float())
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        offset = 0
        if b == 0:
            head = flat[:len(head)].clone()
            offset = len(head)
            has_grad = (head[1:] > 0).tolist()  # one device sync, not one per parameter
        for i in bucket:
            p = params[i]
            n = p.numel()
            if has_grad[i]:
                summed = flat[offset:offset + n].view_as(p).to(p.dtype)
                if p.grad is None:
                    p.grad = summed.clone()
                else:
                    p.grad.copy_(summed)
            else:
                p.grad = None
            offset += n
    return head[0]


class _Silent:
    """Progress for processes other than rank 0: counts nothing, prints nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------
# Training


def _param_groups(trainable: list, weight_decay: float) -> list[dict]:
    # Vectors are biases and LayerNorm/RMSNorm scales: decaying them towards 0 only hurts (as in GPT-2/BERT
    # recipes and the HF Trainer); matrices, embeddings and soft prompts are decayed.
    decay = [p for _, p in trainable if p.ndim >= 2]
    no_decay = [p for _, p in trainable if p.ndim < 2]
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def _check_context_length(model, block_size: int) -> None:
    """A block must fit the model's positions, virtual tokens of prompt-based PEFT methods included."""
    config = getattr(model, "config", None)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    peft_config = getattr(model, "active_peft_config", None)
    virtual = peft_config.num_virtual_tokens if getattr(peft_config, "is_prompt_learning", False) else 0
    if isinstance(limit, int) and block_size + virtual > limit:
        extra = f" + {virtual} virtual tokens" if virtual else ""
        raise ValueError(f"train.block_size: {block_size}{extra} exceeds the model's {limit} positions")


def _write_log_rows(path: Path, rows: list[tuple]) -> None:
    with path.open("a") as fh:
        for step, epoch, loss, lr, rate in rows:
            fh.write(f"{step}\t{epoch:.6f}\t{loss:.6f}\t{lr:.6g}\t{rate:.1f}\n")


_LOG_HEADER = "step\tepoch\tloss\tlr\ttokens_per_s\n"
_LOG_MARKER = re.compile(r"^# (?:resumed|restarted) at step (\d+)")


def _start_log(path: Path, start_step: int) -> None:
    """A new log gets its header; an existing one (an earlier attempt) a marker line, never a cut."""
    if not path.exists():
        path.write_text(_LOG_HEADER)
        return
    with path.open("a") as fh:
        if start_step:
            fh.write(f"# resumed at step {start_step}: rows above for later steps are from the interrupted "
                     f"attempt, done again below\n")
        else:
            fh.write("# restarted at step 0: no state had been saved by the interrupted attempt above\n")


def read_train_log(path: Path, *, latest: bool = True) -> pl.DataFrame:
    """train_log.tsv as a table (step, epoch, loss, lr, tokens_per_s, attempt: 1 for the first call).

    `latest`: only the rows that made the final weights, i.e. without the rows an interrupted attempt
    wrote after the step the next attempt resumed from (every step then appears once); False: every row.
    """
    rows: list[tuple] = []
    attempt = 1
    for line in Path(path).read_text().splitlines()[1:]:
        marker = _LOG_MARKER.match(line)
        if marker:
            attempt += 1
            if latest:
                resumed_at = int(marker.group(1))
                rows = [row for row in rows if row[0] <= resumed_at]
            continue
        if not line.strip() or line.startswith("#"):
            continue
        step, epoch, loss, lr, rate = line.split("\t")
        rows.append((int(step), float(epoch), float(loss), float(lr), float(rate), attempt))
    return pl.DataFrame(rows, orient="row", schema={"step": pl.Int64, "epoch": pl.Float64, "loss": pl.Float64,
                                                    "lr": pl.Float64, "tokens_per_s": pl.Float64,
                                                    "attempt": pl.Int64})


def train(
    model,
    tokenizer,
    texts: pl.DataFrame,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    fingerprint: str,
    stop_after_step: int | None = None,
    state_every: StateEvery | Mapping | None = None,
) -> dict:
    """Fine-tune `model` (a plain model or a PeftModel; only parameters with requires_grad are optimised)
    on `texts` (epoch, doc_id, text) and return the manifest, also written to run_dir/manifest.json.

    See the module docstring for data order, checkpoints and resume. `stop_after_step` ends the call
    after that step (after its checkpoint or state, if it has one) without writing the manifest, as a kill
    would; the returned dict then has complete = False. `state_every`: a StateEvery or its mapping
    (default: every 5 minutes).

    Manifest: complete, fingerprint, checkpoints [{id, epoch, step, path (relative to run_dir),
    train_loss (mean step loss since the previous checkpoint; null when it shares the previous one's
    step)}], steps, total_steps, steps_per_epoch, examples_per_epoch, documents, tokens (non-padding
    input tokens trained on), seconds (training loop and checkpoint saving, summed over resumed calls;
    tokenization excluded), checkpoint_seconds, state_saves and state_seconds (resumable states saved
    between checkpoints, and the time they took), tokens_per_s, device, precision (resolved), parameters,
    trainable_parameters, resumed_at_steps, processes, config. Each checkpoint directory also holds
    checkpoint.json (its manifest entry) and consumed.parquet.

    Under a launcher with WORLD_SIZE > 1 every process calls train() with the same arguments (see the
    module docstring); all of them return rank 0's manifest.
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"train: cfg must be a TrainConfig, got {type(cfg).__name__}")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("train: fingerprint must be a non-empty string")
    if stop_after_step is not None and (not _is_int(stop_after_step) or stop_after_step < 1):
        raise ValueError(f"train: stop_after_step must be a positive integer or None, "
                         f"got {stop_after_step!r}")
    if not isinstance(state_every, StateEvery):
        state_every = StateEvery.from_dict(state_every)
    processes, device = _start_processes(cfg)
    return _train(model, tokenizer, texts, cfg, Path(run_dir), fingerprint, stop_after_step, processes,
                  device, state_every)


def _train(model, tokenizer, texts, cfg: TrainConfig, run_dir: Path, fingerprint: str,
           stop_after_step: int | None, processes: _Processes, device, state_every: StateEvery) -> dict:
    import torch
    from transformers import get_linear_schedule_with_warmup

    rank, world, main = processes.rank, processes.world, processes.main
    # A different process count changes the global batch, hence every step: never resume across it.
    run_fingerprint = fingerprint if world == 1 else f"{fingerprint} (processes: {world})"
    if main:
        _prepare_run_dir(run_dir, run_fingerprint)
    _barrier(processes)
    manifest_path = run_dir / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("complete") and all((run_dir / c["path"]).is_dir() for c in manifest["checkpoints"]):
            if main:
                log.info("train: %s is already complete (same fingerprint); nothing to do", run_dir)
            return manifest

    if device is None:
        device = resolve_device(cfg.device, key="train.device")
    precision = resolve_precision(cfg.precision, device)
    plans = build_plans(tokenizer, texts, cfg)
    per_step = cfg.batch_size * cfg.grad_accum * world  # the global batch
    steps_per_epoch = [-(-p.n_examples // per_step) for p in plans]
    total_steps = sum(steps_per_epoch)
    epoch_starts = np.concatenate([[0], np.cumsum(steps_per_epoch)]).astype(np.int64)
    schedule = checkpoint_schedule(cfg.epochs, cfg.checkpoints_per_epoch)
    at_step: dict[int, list[Checkpoint]] = {}
    for checkpoint, step in zip(schedule, checkpoint_steps(steps_per_epoch, cfg.checkpoints_per_epoch)):
        at_step.setdefault(step, []).append(checkpoint)
    if main and any(n < cfg.checkpoints_per_epoch for n in steps_per_epoch):
        log.warning("train: an epoch has fewer optimizer steps (%s) than train.checkpoints_per_epoch (%d); "
                    "some checkpoints share a step", steps_per_epoch, cfg.checkpoints_per_epoch)
    consumed_all = first_steps(plans, per_step)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    _check_context_length(model, cfg.block_size)
    model.to(device)
    if world > 1:
        _broadcast_model(model)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("train: the model has no parameter with requires_grad=True; nothing to train")
    n_trainable = sum(p.numel() for _, p in trainable)
    n_params = sum(p.numel() for p in model.parameters())
    # Fused AdamW: one kernel per step on GPU, and ~4x faster than the default (foreach) one on CPU too
    # (measured on the tiny GPT-2); the HF Trainer's default is the same since torch 2.8.
    optimizer = torch.optim.AdamW(_param_groups(trainable, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999),
                                  eps=1e-8, fused=True if device.type in ("cuda", "cpu") else None)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    state_dir = _state_dir(run_dir)
    if state_dir is not None:
        counters = _load_state(state_dir, trainable, optimizer, scheduler, scaler, device, processes)
        counters["resumed_at_steps"].append(counters["step"])
        if main:
            log.info("train: resuming %s at step %d of %d", run_dir, counters["step"], total_steps)
    else:
        _seed_everything(_process_seed(cfg.seed, rank))
        counters = {"step": 0, "tokens": 0, "seconds": 0.0, "checkpoint_seconds": 0.0, "checkpoints": [],
                    "resumed_at_steps": [], "state_saves": 0, "state_seconds": 0.0}
    if counters.get("total_steps", total_steps) != total_steps:
        raise ValueError(f"{run_dir}: the saved state is for {counters['total_steps']} steps, this run has "
                         f"{total_steps}; the fingerprint should have changed")
    counters["total_steps"] = total_steps
    start_step = counters["step"]
    log_path = run_dir / "train_log.tsv"
    if main:
        _start_log(log_path, start_step)

    forward = torch.compile(model) if cfg.compile else model
    model.train()
    pin = device.type == "cuda"

    def to_device(array: np.ndarray):
        tensor = torch.from_numpy(array)
        return tensor.pin_memory().to(device, non_blocking=True) if pin else tensor.to(device)

    def manifest(complete: bool) -> dict:
        seconds = counters["seconds"]
        return {
            "complete": complete,
            "fingerprint": fingerprint,
            "checkpoints": counters["checkpoints"],
            "steps": counters["step"] if not complete else total_steps,
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "examples_per_epoch": [p.n_examples for p in plans],
            "documents": len(plans[0].doc_ids),
            "tokens": counters["tokens"],
            "seconds": round(seconds, 3),
            "checkpoint_seconds": round(counters["checkpoint_seconds"], 3),
            "state_saves": counters.get("state_saves", 0),
            "state_seconds": round(counters.get("state_seconds", 0.0), 3),
            "tokens_per_s": round(counters["tokens"] / seconds, 1) if seconds > 0 else None,
            "device": _device_name(device),
            "precision": precision,
            "parameters": n_params,
            "trainable_parameters": n_trainable,
            "resumed_at_steps": counters["resumed_at_steps"],
            "processes": world,
            "config": dataclasses.asdict(cfg),
        }

    pending: list[tuple] = []  # (step, epoch, loss tensor, lr) not yet synchronised
    # Step losses since the last checkpoint (its train_loss); saved with the state, which may fall between.
    since_checkpoint: list[float] = counters.pop("since_checkpoint", [])
    window_tokens, window_start = 0, time.perf_counter()
    last_flush = time.monotonic()
    last_state_step, last_state_time = start_step, time.monotonic()

    def save_state() -> None:
        """Every process: its RNG states to rank 0, which writes the state; all wait until it is on disk."""
        nonlocal last_state_step, last_state_time
        rng = {"rng": _rng_states(device)}
        if world > 1:
            import torch.distributed as dist

            gathered = [None] * world if main else None
            dist.gather_object(rng["rng"], gathered, dst=0)
            rng["rng_ranks"] = gathered
        if main:
            _save_state(run_dir, trainable, optimizer, scheduler, scaler, rng,
                        {**counters, "since_checkpoint": since_checkpoint})
        _barrier(processes)  # the others continue once the state is on disk
        last_state_step, last_state_time = counters["step"], time.monotonic()

    def state_due(step: int) -> bool:
        """Whether state_every asks for a save after `step` (the same answer on every process)."""
        due = state_every.steps is not None and step - last_state_step >= state_every.steps
        if state_every.minutes is not None:
            late = time.monotonic() - last_state_time >= 60 * state_every.minutes
            due = due or _rank0_decides(late, processes, device)  # clocks differ between processes
        return due

    def flush() -> None:
        nonlocal window_tokens, window_start, last_flush
        if not pending:
            return
        losses = torch.stack([row[2] for row in pending]).float().cpu().tolist()  # one sync for the window
        now = time.perf_counter()
        elapsed = now - window_start
        rate = window_tokens / elapsed if elapsed > 0 else 0.0
        counters["seconds"] += elapsed
        rows = [(s, ep, loss, lr, rate) for (s, ep, _, lr), loss in zip(pending, losses)]
        since_checkpoint.extend(losses)  # every process: the losses are summed over processes already
        s, ep, loss, lr, _ = rows[-1]
        if main:
            _write_log_rows(log_path, rows)
            log.info("train: step %d/%d (epoch %.2f), loss %.4f, lr %.3g, %s tokens/s",
                     s, total_steps, ep, loss, lr, f"{rate:,.0f}")
        pending.clear()
        window_tokens, window_start, last_flush = 0, time.perf_counter(), time.monotonic()

    stopped = False
    with (Progress(total_steps - start_step, "train", unit="step") if main else _Silent()) as progress:
        for step in range(start_step + 1, total_steps + 1):
            e = int(np.searchsorted(epoch_starts, step - 1, side="right")) - 1
            local = step - 1 - int(epoch_starts[e])
            plan = plans[e]
            first = local * per_step
            examples = [plan.example_tokens(i) for i in range(first, min(first + per_step, plan.n_examples))]
            # Micro-batches in training order, dealt round-robin to the processes (all to one alone).
            micro = [collate(examples[m:m + cfg.batch_size], pad_id)
                     for m in range(rank * cfg.batch_size, len(examples), world * cfg.batch_size)]
            # Loss = mean over the real target tokens of the whole (global) step, so micro-batches and
            # processes weigh by their tokens; each example of n tokens has n - 1 targets.
            n_targets = sum(len(x) - 1 for x in examples)
            step_tokens = sum(len(x) for x in examples)
            lr = scheduler.get_last_lr()[0]
            optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=device)
            for ids_np, mask_np in micro:
                ids, mask = to_device(ids_np), to_device(mask_np)
                with (torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype
                      else contextlib.nullcontext()):
                    logits = forward(input_ids=ids, attention_mask=mask, use_cache=False).logits
                nll, _ = shifted_token_nll(logits, ids, mask)
                loss = nll.sum() / max(n_targets, 1)
                scaler.scale(loss).backward()
                step_loss += loss.detach()
            window_tokens += step_tokens
            counters["tokens"] += step_tokens
            if world > 1:
                step_loss = _sum_across_processes([p for _, p in trainable], step_loss)
            if cfg.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for _, p in trainable], cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            counters["step"] = step
            pending.append((step, e + (local + 1) / steps_per_epoch[e], step_loss, lr))
            progress.update()

            due = at_step.get(step, [])
            if due or step == stop_after_step or time.monotonic() - last_flush >= _LOG_EVERY_S:
                flush()
            if due:
                started = time.perf_counter()
                train_loss = sum(since_checkpoint) / len(since_checkpoint) if since_checkpoint else None
                since_checkpoint.clear()
                consumed = consumed_all.filter(pl.col("first_step") <= step)
                for checkpoint in due:
                    record = {"id": checkpoint.id, "epoch": checkpoint.epoch, "step": step,
                              "path": f"checkpoints/{checkpoint.id}", "train_loss": train_loss}
                    if main:
                        _save_checkpoint(model, tokenizer, run_dir, checkpoint, record, consumed)
                        log.info("train: checkpoint %s at step %d (epoch %g), train_loss %s, "
                                 "%d documents consumed",
                                 checkpoint.id, step, checkpoint.epoch,
                                 "n/a" if train_loss is None else f"{train_loss:.4f}", consumed.height)
                    counters["checkpoints"].append(record)
                counters["checkpoint_seconds"] += time.perf_counter() - started
                counters["seconds"] += time.perf_counter() - started
                save_state()
                window_tokens, window_start = 0, time.perf_counter()
            elif step < total_steps and state_due(step):
                flush()
                started = time.perf_counter()
                counters["state_saves"] = counters.get("state_saves", 0) + 1
                save_state()
                counters["state_seconds"] = counters.get("state_seconds", 0.0) + time.perf_counter() - started
                counters["seconds"] += time.perf_counter() - started
                window_tokens, window_start = 0, time.perf_counter()
            if step == stop_after_step and step < total_steps:
                stopped = True
                break
    flush()
    if stopped:
        if main:
            log.info("train: stopped after step %d as asked (stop_after_step)", stop_after_step)
        return _from_rank0(processes, manifest(complete=False))

    result = manifest(complete=True)
    if main:
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.rename(manifest_path)
        for name in ("state", "state.old", "state.tmp"):
            if (run_dir / name).exists():
                shutil.rmtree(run_dir / name)
        log.info("train: done, %d steps, %s tokens in %.1f s (%s tokens/s)", total_steps,
                 f"{counters['tokens']:,}", counters["seconds"], result["tokens_per_s"])
    return _from_rank0(processes, result)


def _from_rank0(processes: _Processes, manifest: dict) -> dict:
    """Rank 0's manifest on every process, once rank 0 has written its files (a barrier)."""
    if processes.world == 1:
        return manifest
    import torch.distributed as dist

    box = [manifest if processes.main else None]
    dist.broadcast_object_list(box, src=0)  # also waits for rank 0, which writes before it sends
    return box[0]
