"""Training settings: `TrainConfig` (config key `train`), `StateEvery` (`train.state_every`), the checkpoint
schedule, and the precision a device trains in.

Checkpoint k of an epoch with n optimizer steps is taken after step round(k / checkpoints_per_epoch * n) of
it (half rounds up; at least step 1), counted from the start of training; ids and epochs are known before
training (`checkpoint_schedule`), the steps once the epochs' sizes are (`checkpoint_steps`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from piimem.checks import is_int
from piimem.plan import checkpoint_ids
from piimem.schema import check, default

PACKINGS = ("blocks", "messages")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (defaults: the RMFT paper's GPT-2 setting). Invalid values raise
    ValueError naming `train.<key>`."""

    block_size: int = default("train.block_size")
    packing: str = default("train.packing")
    lr: float = default("train.lr")
    weight_decay: float = default("train.weight_decay")
    epochs: int = default("train.epochs")
    warmup_steps: int = default("train.warmup_steps")
    batch_size: int = default("train.batch_size")
    grad_accum: int = default("train.grad_accum")
    max_grad_norm: float = default("train.max_grad_norm")  # 0 disables clipping
    precision: str = default("train.precision")
    compile: bool = default("train.compile")
    checkpoints_per_epoch: int = default("train.checkpoints_per_epoch")
    seed: int = default("seeds")[0]  # a run's seed is one of `seeds`
    device: str = default("train.device")

    def __post_init__(self) -> None:
        check("train", {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "seed"})
        if not is_int(self.seed) or self.seed < 0:  # one of `seeds`, which the schema checks as a list
            raise ValueError(f"train.seed: expected an integer >= 0, got {self.seed!r}")

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
        check("train.state_every", {"minutes": self.minutes, "steps": self.steps})

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
    if not is_int(epochs) or epochs < 1:
        raise ValueError(f"train.epochs: expected a positive integer, got {epochs!r}")
    if not is_int(checkpoints_per_epoch) or checkpoints_per_epoch < 1:
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


def device_name(device) -> str:
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)

