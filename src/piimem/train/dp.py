"""DP-SGD (Abadi et al. 2016) with Opacus: Poisson sampling, per-example gradient clipping, Gaussian noise
calibrated to a target (ε, δ), and the ε spent up to every checkpoint.

The privacy unit is one training example: a `train.block_size`-token block (packing `blocks`) or one
message (packing `messages`). Each optimizer step draws every example of the epoch independently with
probability q = batch_size x grad_accum / examples (Poisson sampling, the assumption behind the
accountants' amplification by subsampling); the steps per epoch are the plain run's, so an epoch still
trains on as many examples on average. A step's sample is a pure function of (seed, step), and so is its
noise, so a resumed run draws exactly what an uninterrupted one does and no sampler or generator state has
to be saved.

Per step: Opacus's GradSampleModule computes each example's gradient of its mean token NLL (its hooks;
functorch for layers without a grad sampler, such as transformers' Conv1D in GPT-2; a tied input embedding
and output layer get both layers' contributions summed); after each micro-batch Opacus's DPOptimizer clips
every example's gradient to `max_grad_norm` and adds it to the step's sum; at the step's end it adds
N(0, (noise_multiplier x max_grad_norm)^2) noise, the sum is divided by the expected batch size and the
wrapped optimizer steps. The noise multiplier is Opacus's `get_noise_multiplier` for the run's q, steps and
δ (or given); `epsilon_spent` is the accountant's ε after k steps.

The noise is seeded from the config for reproducibility: it is secret only as long as the seed is, so the
ε here is the guarantee of a research run, not of a deployment (Opacus's `secure_mode` addresses the
floating-point side of that; it is not used).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from piimem.checks import is_number
from piimem.schema import check, default

ACCOUNTANTS = ("prv", "rdp")


@dataclass(frozen=True)
class DPConfig:
    """A `dp` defense variant's settings (config block `dp`): the target ε (or a noise multiplier that
    overrides it), δ (None: 1 / number of training examples), the per-example clipping norm, the accountant,
    the expected batch of the Poisson sampling (None: train.batch_size x grad_accum)."""

    epsilon: float | None = default("dp.epsilon")
    delta: float | None = default("dp.delta")
    max_grad_norm: float = default("dp.max_grad_norm")
    accountant: str = default("dp.accountant")
    noise_multiplier: float | None = None  # not a config key: set, it replaces the calibration to epsilon
    batch_size: int | None = default("dp.batch_size")

    def __post_init__(self) -> None:
        if self.epsilon is None and self.noise_multiplier is None:
            raise ValueError("dp: set dp.epsilon (the target) or dp.noise_multiplier")
        if self.noise_multiplier is not None and not (is_number(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ValueError(f"dp.noise_multiplier: expected a number >= 0, got {self.noise_multiplier!r}")
        keys = ("epsilon", "delta", "max_grad_norm", "batch_size", "accountant")
        # epsilon None: the noise multiplier is given instead (not a config key)
        check("dp", {key: getattr(self, key) for key in keys if key != "epsilon" or self.epsilon is not None})


@dataclass(frozen=True)
class DPPlan:
    """What a DP run does, known before its first step (written to the manifest as `dp`)."""

    epsilon_target: float | None
    delta: float
    max_grad_norm: float
    accountant: str
    noise_multiplier: float
    sample_rate: float  # q: each example's probability to be in a step
    expected_batch: float  # q x examples
    examples: int  # privacy units per epoch
    steps: int


def plan_dp(cfg: DPConfig, *, examples: int, expected_batch: int, steps: int) -> DPPlan:
    """The noise multiplier and sampling rate of a run of `steps` steps over `examples` examples."""
    if examples < 1:
        raise ValueError("dp: the run has no training example")
    rate = min(1.0, expected_batch / examples)
    delta = cfg.delta if cfg.delta is not None else 1.0 / examples
    if cfg.noise_multiplier is not None:
        sigma = float(cfg.noise_multiplier)
    else:
        from opacus.accountants.utils import get_noise_multiplier

        sigma = float(get_noise_multiplier(target_epsilon=cfg.epsilon, target_delta=delta, sample_rate=rate,
                                           steps=steps, accountant=cfg.accountant, epsilon_tolerance=0.01))
    return DPPlan(epsilon_target=cfg.epsilon if cfg.noise_multiplier is None else None, delta=delta,
                  max_grad_norm=float(cfg.max_grad_norm), accountant=cfg.accountant, noise_multiplier=sigma,
                  sample_rate=rate, expected_batch=rate * examples, examples=examples, steps=steps)


def epsilon_spent(plan: DPPlan, steps: int) -> float | None:
    """ε after `steps` steps at the plan's noise multiplier, sampling rate and δ (Opacus's accountant);
    None without noise (no finite guarantee), 0 before the first step."""
    if steps <= 0:
        return 0.0
    if plan.noise_multiplier == 0:
        return None
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=plan.accountant)
    accountant.history = [(plan.noise_multiplier, plan.sample_rate, int(steps))]
    return float(accountant.get_epsilon(delta=plan.delta))


def _step_seed(seed: int, step: int, purpose: str) -> int:
    digest = hashlib.sha256(f"dp:{purpose}:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # torch's manual_seed takes a non-negative int64


def poisson_sample(examples: int, rate: float, *, seed: int, step: int) -> np.ndarray:
    """The examples (indices, ascending) that the 1-based `step` trains on: each independently with
    probability `rate`."""
    rng = np.random.default_rng(_step_seed(seed, step, "sample"))
    return np.flatnonzero(rng.random(examples) < rate)


def noise_seed(seed: int, step: int) -> int:
    """The seed of a step's noise generator."""
    return _step_seed(seed, step, "noise")


class PrivateStep:
    """One DP-SGD optimizer step's machinery around a model and its optimizer: per-example gradients
    (Opacus GradSampleModule), their clipping and noise (Opacus DPOptimizer's). Each micro-batch's
    per-example gradients are clipped and summed as soon as it is backpropagated (`accumulate`), so memory
    holds one micro-batch of them, as Opacus's BatchMemoryManager does; `step` adds the noise, divides by the
    expected batch and steps the wrapped optimizer. `close()` removes the hooks."""

    def __init__(self, model, optimizer, plan: DPPlan, device):
        import torch
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        # "sum": the loss the loop backpropagates is the sum of the examples' mean token NLLs, so each
        # example's gradient is its own.
        self.module = GradSampleModule(model, batch_first=True, loss_reduction="sum", strict=False)
        self.generator = torch.Generator(device=device)
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=plan.noise_multiplier,
                                     max_grad_norm=plan.max_grad_norm, expected_batch_size=None,
                                     loss_reduction="sum", generator=self.generator)
        self.expected_batch = plan.expected_batch
        self.named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        peft_config = getattr(model, "active_peft_config", None)
        self.virtual_tokens = bool(getattr(peft_config, "is_prompt_learning", False))

    def position_ids(self, ids):
        """Explicit positions, one row per example: a model that broadcasts one row of positions over the
        batch would give its position embedding one gradient for the whole batch, not one per example.
        None for prompt-based PEFT models, which place their virtual tokens themselves (and train no
        position embedding)."""
        if self.virtual_tokens:
            return None
        import torch

        return torch.arange(ids.shape[1], device=ids.device).expand_as(ids)

    def check_per_example(self, n: int) -> None:
        """Every trainable parameter got one gradient per example of the micro-batch just backpropagated;
        otherwise a layer shares the parameter across the batch and clipping could not bound one example's
        influence (ValueError naming it)."""
        for name, p in self.named:
            sample = getattr(p, "grad_sample", None)
            if sample is None or sample.shape[0] != n:
                got = "no per-example gradient" if sample is None else f"{sample.shape[0]} gradients"
                raise ValueError(f"dp: parameter {name} got {got} for a micro-batch of {n} examples: its layer "
                                 f"shares it across the batch, so DP-SGD cannot clip one example's gradient")

    def per_example_norms(self):
        """Each example's whole-gradient L2 norm before clipping, of the micro-batch just backpropagated."""
        import torch

        norms = [p.grad_sample.reshape(len(p.grad_sample), -1).norm(2, dim=-1) for _, p in self.named]
        return torch.stack(norms, dim=1).norm(2, dim=1)

    def zero_grad(self) -> None:
        for _, p in self.named:
            p.grad_sample = p.summed_grad = p.grad = None

    def accumulate(self, n: int) -> None:
        """Clip each of the `n` examples' gradients of the micro-batch just backpropagated to max_grad_norm
        and add them to the step's sum."""
        self.check_per_example(n)
        self.optimizer.clip_and_accumulate()
        for _, p in self.named:
            p.grad_sample = None

    def step(self, seed: int, step: int) -> None:
        """Add this step's noise to the sum of clipped gradients, divide by the expected batch (an unbiased
        mean under Poisson sampling; a step that sampled no example is noise alone), step the optimizer."""
        for _, p in self.named:
            if p.summed_grad is None:
                p.summed_grad = p.new_zeros(p.shape)
        self.generator.manual_seed(noise_seed(seed, step))
        self.optimizer.add_noise()  # p.grad = sum + N(0, (noise_multiplier x max_grad_norm)^2)
        for _, p in self.named:
            p.grad /= self.expected_batch
        self.optimizer.original_optimizer.step()

    def close(self) -> None:
        self.module._close()
