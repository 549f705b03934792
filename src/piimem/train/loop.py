"""The training loop: `train()` sets a run up (plan, optimizer, resume), runs its optimizer steps, and writes
the train log, checkpoints, resumable states and the manifest on the way."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from piimem.checks import is_int
from piimem.metric_names import DP_EPSILON, TRAIN_LOSS
from piimem.progress import Progress
from piimem.scoring import resolve_device
from piimem.train.checkpoints import save_checkpoint
from piimem.train.config import StateEvery, TrainConfig, device_name, resolve_precision
from piimem.train.data import RunPlan, collate, micro_batches, plan_run
from piimem.train.distributed import (
    Processes,
    Silent,
    barrier,
    broadcast_model,
    from_rank0,
    process_seed,
    rank0_decides,
    start_processes,
    sum_across_processes,
)
from piimem.train.dp import DPConfig, PrivateStep, epsilon_spent, plan_dp
from piimem.train.loss import example_mean_nll, micro_batch_nll, output_head
from piimem.train.state import (
    StateWriter,
    find_state,
    load_state,
    prepare_run_dir,
    remove_state,
    rng_states,
    seed_everything,
    take_snapshot,
)
from piimem.train.train_log import start_log, write_log_rows

log = logging.getLogger("piimem")

_LOG_EVERY_S = 30.0  # how often buffered losses are synchronised, written and logged


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
    dp: DPConfig | Mapping | None = None,
) -> dict:
    """Fine-tune `model` (a plain model or a PeftModel; only parameters with requires_grad are optimised)
    on `texts` (epoch, doc_id, text) and return the manifest, also written to run_dir/manifest.json.

    See the package docstring for data order, checkpoints and resume. `stop_after_step` ends the call
    after that step (after its checkpoint or state, if it has one) without writing the manifest, as a kill
    would; the returned dict then has complete = False. `state_every`: a StateEvery or its mapping
    (default: every 5 minutes).

    Manifest: complete, fingerprint, checkpoints [{id, epoch, step, path (relative to run_dir),
    train_loss (mean step loss since the previous checkpoint; null when it shares the previous one's
    step)}], steps, total_steps, steps_per_epoch, examples_per_epoch, documents, tokens (non-padding
    input tokens trained on), seconds (training loop and checkpoint saving, summed over resumed calls;
    tokenization excluded), checkpoint_seconds, state_saves and state_seconds (resumable states saved
    between checkpoints, and the time training waited for them: copying, not writing, see StateWriter),
    compile_seconds (with train.compile: the first step of each call, compilation included; it has a
    train_log window of its own), tokens_per_s, device, precision (resolved), parameters,
    trainable_parameters, resumed_at_steps, processes, config. Each checkpoint directory also holds
    checkpoint.json (its manifest entry) and consumed.parquet.

    Under a launcher with WORLD_SIZE > 1 every process calls train() with the same arguments (see
    `piimem.train.distributed`); all of them return rank 0's manifest.

    `dp`: train with DP-SGD (a DPConfig or its mapping, see `piimem.train.dp`): Poisson-sampled steps,
    per-example clipping and noise; the manifest then has `dp` (the DPPlan: noise multiplier, sampling
    rate, δ, ...) and every checkpoint `dp_epsilon`, the ε spent up to its step, and `train_loss` is the mean
    over the sampled examples of their mean token NLL. One process only.
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"train: cfg must be a TrainConfig, got {type(cfg).__name__}")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("train: fingerprint must be a non-empty string")
    if stop_after_step is not None and (not is_int(stop_after_step) or stop_after_step < 1):
        raise ValueError(f"train: stop_after_step must be a positive integer or None, "
                         f"got {stop_after_step!r}")
    if not isinstance(state_every, StateEvery):
        state_every = StateEvery.from_dict(state_every)
    if dp is not None and not isinstance(dp, DPConfig):
        dp = DPConfig(**dp)
    if dp is not None and cfg.compile:
        raise ValueError("train.compile: not with DP-SGD (the per-example gradient hooks need the eager model)")
    processes, device = start_processes(cfg)
    if dp is not None and processes.world > 1:
        raise ValueError(f"dp: DP-SGD trains in one process, this run has {processes.world} (train.gpus): its "
                         f"sampling, noise and accounting are for one process's batch; set train.gpus to 1")
    return _train(model, tokenizer, texts, cfg, Path(run_dir), fingerprint, stop_after_step, processes,
                  device, state_every, dp)


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


def _transformer_blocks(model) -> list:
    """The model's repeated layers: the largest ModuleList of modules of one class (GPT-2's transformer.h,
    Llama's model.layers, GPT-NeoX's gpt_neox.layers), whatever PEFT wrappers sit around it."""
    import torch

    best: list = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best) \
                and len({type(m) for m in module}) == 1:
            best = list(module)
    return best


@contextlib.contextmanager
def _compiled(model, enabled: bool):
    """`train.compile`: the model to call, with each transformer block compiled in place (regional
    compilation: one block's graph serves all of them, so it compiles in a fraction of the whole model's
    time, and the model's state dict and save_pretrained stay as they are; the whole model wrapped when no
    blocks are found). The blocks are plain again afterwards."""
    import torch

    blocks = _transformer_blocks(model) if enabled else []
    if enabled and not blocks:
        yield torch.compile(model)
        return
    for block in blocks:
        block.compile()
    try:
        yield model
    finally:
        for block in blocks:
            block._compiled_call_impl = None  # what nn.Module.compile set


@dataclass
class _Optimisation:
    """What an optimizer step needs besides the model: the trainable parameters and their optimizer,
    learning-rate schedule, gradient scaler (fp16 only) and autocast dtype (None: no autocast)."""

    trainable: list  # (name, parameter) of every parameter with requires_grad, in model order
    optimizer: object
    scheduler: object
    scaler: object
    autocast_dtype: object

    @property
    def params(self) -> list:
        return [p for _, p in self.trainable]


def _optimisation(model, cfg: TrainConfig, precision: str, device, total_steps: int) -> _Optimisation:
    import torch
    from transformers import get_linear_schedule_with_warmup

    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("train: the model has no parameter with requires_grad=True; nothing to train")
    # Fused AdamW: one kernel per step on GPU, and ~4x faster than the default (foreach) one on CPU too
    # (measured on the tiny GPT-2); the HF Trainer's default is the same since torch 2.8.
    optimizer = torch.optim.AdamW(_param_groups(trainable, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999),
                                  eps=1e-8, fused=True if device.type in ("cuda", "cpu") else None)
    return _Optimisation(
        trainable=trainable, optimizer=optimizer,
        scheduler=get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        autocast_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision))


def _new_counters() -> dict:
    """What a run counts across calls; saved in the state (state.json), reported in the manifest."""
    return {"step": 0, "tokens": 0, "seconds": 0.0, "checkpoint_seconds": 0.0, "checkpoints": [],
            "resumed_at_steps": [], "state_saves": 0, "state_seconds": 0.0, "compile_seconds": 0.0}


def _manifest(complete: bool, counters: dict, plan: RunPlan, cfg: TrainConfig, fingerprint: str, device,
              precision: str, model, opt: _Optimisation, world: int, dp_plan) -> dict:
    seconds = counters["seconds"]
    return {
        "complete": complete,
        "fingerprint": fingerprint,
        "checkpoints": counters["checkpoints"],
        "steps": counters["step"] if not complete else plan.total_steps,
        "total_steps": plan.total_steps,
        "steps_per_epoch": plan.steps_per_epoch,
        "examples_per_epoch": [p.n_examples for p in plan.epochs],
        "documents": len(plan.epochs[0].trained_doc_ids),
        "tokens": counters["tokens"],
        "seconds": round(seconds, 3),
        "checkpoint_seconds": round(counters["checkpoint_seconds"], 3),
        "state_saves": counters.get("state_saves", 0),
        "state_seconds": round(counters.get("state_seconds", 0.0), 3),
        "compile_seconds": round(counters.get("compile_seconds", 0.0), 3),
        "tokens_per_s": round(counters["tokens"] / seconds, 1) if seconds > 0 else None,
        "device": device_name(device),
        "precision": precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in opt.params),
        "resumed_at_steps": counters["resumed_at_steps"],
        "processes": world,
        "config": dataclasses.asdict(cfg),
        **({"dp": dataclasses.asdict(dp_plan)} if dp_plan is not None else {}),
    }


@dataclass
class _LossWindow:
    """Step losses not yet synchronised with the device, written to train_log.tsv and logged in windows
    (every _LOG_EVERY_S, at checkpoints and at the end): one device sync per window, not per step."""

    log_path: Path
    total_steps: int
    main: bool  # rank 0 writes and logs; every process keeps the losses
    since_checkpoint: list[float]  # step losses since the last checkpoint (its train_loss)
    pending: list[tuple] = field(default_factory=list)  # (step, epoch, loss tensor, lr)
    tokens: int = 0  # tokens trained on in this window
    started: float = field(default_factory=time.perf_counter)
    last_flush: float = field(default_factory=time.monotonic)

    def restart(self) -> None:
        """Start a new timing window (after time that is not training, e.g. saving)."""
        self.tokens, self.started = 0, time.perf_counter()

    def due(self) -> bool:
        return time.monotonic() - self.last_flush >= _LOG_EVERY_S

    def flush(self, counters: dict) -> None:
        import torch

        if not self.pending:
            return
        losses = torch.stack([row[2] for row in self.pending]).float().cpu().tolist()  # one sync
        elapsed = time.perf_counter() - self.started
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        counters["seconds"] += elapsed
        rows = [(s, ep, loss, lr, rate) for (s, ep, _, lr), loss in zip(self.pending, losses)]
        self.since_checkpoint.extend(losses)  # every process: the losses are summed over processes already
        s, ep, loss, lr, _ = rows[-1]
        if self.main:
            write_log_rows(self.log_path, rows)
            log.info("train: step %d/%d (epoch %.2f), loss %.4f, lr %.3g, %s tokens/s",
                     s, self.total_steps, ep, loss, lr, f"{rate:,.0f}")
        self.pending.clear()
        self.restart()
        self.last_flush = time.monotonic()

    def take_train_loss(self) -> float | None:
        """The mean step loss since the last checkpoint (None: no step since), and start a new span."""
        losses = self.since_checkpoint
        train_loss = sum(losses) / len(losses) if losses else None
        losses.clear()
        return train_loss


def _train(model, tokenizer, texts, cfg: TrainConfig, run_dir: Path, fingerprint: str,
           stop_after_step: int | None, processes: Processes, device, state_every: StateEvery,
           dp: DPConfig | None) -> dict:
    # A different process count changes the global batch, hence every step: never resume across it.
    run_fingerprint = fingerprint if processes.world == 1 else f"{fingerprint} (processes: {processes.world})"
    if processes.main:
        prepare_run_dir(run_dir, run_fingerprint)
    barrier(processes)
    done = _completed_manifest(run_dir)
    if done is not None:
        if processes.main:
            log.info("train: %s is already complete (same fingerprint); nothing to do", run_dir)
        return done
    run = _Run(model, tokenizer, texts, cfg, run_dir, fingerprint, processes, device, state_every, dp)
    try:
        stopped = run.run_steps(stop_after_step)
    finally:
        run.close()
    return run.finish(stopped, stop_after_step)


def _completed_manifest(run_dir: Path) -> dict | None:
    """The manifest of a run that completed with this fingerprint and still has its checkpoints."""
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("complete") and all((run_dir / c["path"]).is_dir() for c in manifest["checkpoints"]):
        return manifest
    return None


class _Run:
    """One call of train(): the set-up (plan, DP plan, optimizer, resumed or fresh state) and the named steps
    of its loop. Every process of a data-parallel run holds one; rank 0 writes the files."""

    def __init__(self, model, tokenizer, texts, cfg: TrainConfig, run_dir: Path, fingerprint: str,
                 processes: Processes, device, state_every: StateEvery, dp: DPConfig | None):
        self.model, self.tokenizer, self.cfg, self.run_dir = model, tokenizer, cfg, run_dir
        self.fingerprint, self.processes, self.state_every = fingerprint, processes, state_every
        self.main, self.world = processes.main, processes.world
        self.device = device if device is not None else resolve_device(cfg.device, key="train.device")
        self.precision = resolve_precision(cfg.precision, self.device)
        if dp is not None and self.precision == "fp16":
            raise ValueError("train.precision: fp16 is not supported with DP-SGD (its loss scaling would scale the "
                             "per-example gradients before clipping); use bf16 or fp32")
        self.plan = plan_run(tokenizer, texts, cfg, self.world, poisson=dp is not None,
                             examples_per_step=dp.batch_size if dp is not None else None)
        self.dp_plan = self._plan_dp(dp)
        if self.main and any(n < cfg.checkpoints_per_epoch for n in self.plan.steps_per_epoch):
            log.warning("train: an epoch has fewer optimizer steps (%s) than train.checkpoints_per_epoch (%d); "
                        "some checkpoints share a step", self.plan.steps_per_epoch, cfg.checkpoints_per_epoch)
        self.consumed_all = self.plan.consumed()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

        _check_context_length(model, cfg.block_size)
        model.to(self.device)
        if self.world > 1:
            broadcast_model(model)
        self.opt = _optimisation(model, cfg, self.precision, self.device, self.plan.total_steps)
        self.counters = self._start_or_resume()
        self.start_step = self.counters["step"]
        self.window = _LossWindow(log_path=run_dir / "train_log.tsv", total_steps=self.plan.total_steps,
                                  main=self.main, since_checkpoint=self.counters.pop("since_checkpoint", []))
        if self.main:
            start_log(self.window.log_path, self.start_step)
        # None: the loss from full logits (piimem.train.loss); DP-SGD's hooks must see the output layer's call
        self.head = output_head(model) if dp is None else None
        self.private = PrivateStep(model, self.opt.optimizer, self.dp_plan, self.device) if self.dp_plan else None
        model.train()
        self.writer = StateWriter(run_dir) if self.main else None
        self.last_state_step, self.last_state_time = self.start_step, time.monotonic()

    def _plan_dp(self, dp: DPConfig | None):
        if dp is None:
            return None
        sizes = {p.n_examples for p in self.plan.epochs}
        if len(sizes) > 1:
            raise ValueError(f"dp: the epochs have {sorted(sizes)} examples; DP-SGD's accounting needs one "
                             f"training set (texts re-drawn per epoch are not supported)")
        plan = plan_dp(dp, examples=sizes.pop(), expected_batch=self.plan.examples_per_step,
                       steps=self.plan.total_steps)
        if self.main:
            log.info("train: DP-SGD, noise multiplier %.4f, sampling rate %.4f (%d examples, %d steps), clipping "
                     "norm %g, delta %.3g, target epsilon %s (%s accountant)", plan.noise_multiplier,
                     plan.sample_rate, plan.examples, plan.steps, plan.max_grad_norm, plan.delta,
                     "n/a" if plan.epsilon_target is None else f"{plan.epsilon_target:g}", plan.accountant)
        return plan

    def _start_or_resume(self) -> dict:
        """The counters of a resumed run (its state loaded into the optimizer and generators), or fresh ones
        with every generator seeded."""
        total_steps = self.plan.total_steps
        state_dir = find_state(self.run_dir)
        if state_dir is not None:
            opt = self.opt
            counters = load_state(state_dir, opt.trainable, opt.optimizer, opt.scheduler, opt.scaler, self.device,
                                  self.processes)
            counters["resumed_at_steps"].append(counters["step"])
            if self.main:
                log.info("train: resuming %s at step %d of %d", self.run_dir, counters["step"], total_steps)
        else:
            seed_everything(process_seed(self.cfg.seed, self.processes.rank))
            counters = _new_counters()
        if counters.get("total_steps", total_steps) != total_steps:
            raise ValueError(f"{self.run_dir}: the saved state is for {counters['total_steps']} steps, this run has "
                             f"{total_steps}; the fingerprint should have changed")
        counters["total_steps"] = total_steps
        return counters

    def to_device(self, array: np.ndarray):
        import torch

        tensor = torch.from_numpy(array)
        return tensor.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" \
            else tensor.to(self.device)

    # -- resumable state ------------------------------------------------------------------------------

    def save_run_state(self) -> None:
        """Every process: its RNG states to rank 0, which copies the state and writes it while training
        goes on (StateWriter); the others wait until rank 0 has its copy."""
        rng = {"rng": rng_states(self.device)}
        if self.world > 1:
            import torch.distributed as dist

            gathered = [None] * self.world if self.main else None
            dist.gather_object(rng["rng"], gathered, dst=0)
            rng["rng_ranks"] = gathered
        if self.main:
            opt = self.opt
            self.writer.save(take_snapshot(opt.trainable, opt.optimizer, opt.scheduler, opt.scaler, rng,
                                           {**self.counters, "since_checkpoint": self.window.since_checkpoint}))
        barrier(self.processes)
        self.last_state_step, self.last_state_time = self.counters["step"], time.monotonic()

    def state_due(self, step: int) -> bool:
        """Whether state_every asks for a save after `step` (the same answer on every process)."""
        every = self.state_every
        due = every.steps is not None and step - self.last_state_step >= every.steps
        if every.minutes is not None:
            late = time.monotonic() - self.last_state_time >= 60 * every.minutes
            due = due or rank0_decides(late, self.processes, self.device)  # clocks differ between processes
        return due

    # -- one optimizer step ---------------------------------------------------------------------------

    def train_step(self, forward, examples: list[np.ndarray]):
        """One optimizer step on this process's share of `examples` through `forward` (the model or its
        compiled form); returns the step loss (a tensor)."""
        import torch

        cfg, opt = self.cfg, self.opt
        # Loss = mean over the real target tokens of the whole (global) step, so micro-batches and
        # processes weigh by their tokens; each example of n tokens has n - 1 targets.
        n_targets = sum(len(x) - 1 for x in examples)
        opt.optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=self.device)
        for batch in micro_batches(examples, cfg.batch_size, self.processes.rank, self.world):
            ids_np, mask_np = collate(batch, self.pad_id)
            # No padding (full blocks): no mask, so attention can use its causal kernels.
            mask = None if mask_np.all() else self.to_device(mask_np)
            nll = micro_batch_nll(forward, self.to_device(ids_np), mask, head=self.head,
                                  autocast_dtype=opt.autocast_dtype)
            loss = nll / max(n_targets, 1)
            opt.scaler.scale(loss).backward()
            step_loss += loss.detach()
        if self.world > 1:
            step_loss = sum_across_processes(opt.params, step_loss)
        if cfg.max_grad_norm > 0:
            opt.scaler.unscale_(opt.optimizer)
            torch.nn.utils.clip_grad_norm_(opt.params, cfg.max_grad_norm)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        return step_loss

    def private_step(self, forward, examples: list[np.ndarray], step: int):
        """One DP-SGD step on the Poisson-sampled `examples` (see piimem.train.dp); returns the mean of
        their mean token NLLs."""
        import torch

        private = self.private
        private.zero_grad()
        step_loss = torch.zeros((), device=self.device)
        for batch in micro_batches(examples, self.cfg.batch_size):
            ids_np, mask_np = collate(batch, self.pad_id)
            ids = self.to_device(ids_np)
            losses = example_mean_nll(forward, ids, None if mask_np.all() else self.to_device(mask_np),
                                      position_ids=private.position_ids(ids),
                                      autocast_dtype=self.opt.autocast_dtype)
            losses.sum().backward()
            private.accumulate(len(batch))
            step_loss += losses.detach().sum()
        private.step(self.cfg.seed, step)
        self.opt.scheduler.step()
        return step_loss / max(len(examples), 1)

    # -- checkpoints and the loop ---------------------------------------------------------------------

    def take_checkpoints(self, step: int, due: list) -> None:
        started = time.perf_counter()
        train_loss = self.window.take_train_loss()
        consumed = self.consumed_all.filter(pl.col("first_step") <= step)
        for checkpoint in due:
            record = {"id": checkpoint.id, "epoch": checkpoint.epoch, "step": step,
                      "path": f"checkpoints/{checkpoint.id}", TRAIN_LOSS: train_loss}
            if self.dp_plan is not None:
                record[DP_EPSILON] = epsilon_spent(self.dp_plan, step)
            if self.main:
                save_checkpoint(self.model, self.tokenizer, self.run_dir, checkpoint, record, consumed)
                log.info("train: checkpoint %s at step %d (epoch %g), train_loss %s, %d documents consumed",
                         checkpoint.id, step, checkpoint.epoch,
                         "n/a" if train_loss is None else f"{train_loss:.4f}", consumed.height)
            self.counters["checkpoints"].append(record)
        self.counters["checkpoint_seconds"] += time.perf_counter() - started
        self.counters["seconds"] += time.perf_counter() - started
        self.save_run_state()

    def save_state_between_checkpoints(self) -> None:
        self.window.flush(self.counters)
        started = time.perf_counter()
        self.counters["state_saves"] = self.counters.get("state_saves", 0) + 1
        self.save_run_state()
        self.counters["state_seconds"] = self.counters.get("state_seconds", 0.0) + time.perf_counter() - started
        self.counters["seconds"] += time.perf_counter() - started
        self.window.restart()

    def run_steps(self, stop_after_step: int | None) -> bool:
        """The optimizer steps from start_step on; True when stopped early (stop_after_step)."""
        cfg, plan, window, counters = self.cfg, self.plan, self.window, self.counters
        total_steps = plan.total_steps
        with (Progress(total_steps - self.start_step, "train", unit="step") if self.main else Silent()) as progress, \
                _compiled(self.model, cfg.compile) as forward:
            for step in range(self.start_step + 1, total_steps + 1):
                _, epoch_after, examples = plan.step_examples(step)
                lr = self.opt.scheduler.get_last_lr()[0]
                started = time.perf_counter()
                step_loss = (self.train_step(forward, examples) if self.private is None
                             else self.private_step(forward, examples, step))
                step_tokens = sum(len(x) for x in examples)
                window.tokens += step_tokens
                counters["tokens"] += step_tokens
                counters["step"] = step
                window.pending.append((step, epoch_after, step_loss, lr))
                progress.update()
                compiling = cfg.compile and step == self.start_step + 1  # the first step compiles the blocks

                due = plan.checkpoints_at.get(step, [])
                if due or step == stop_after_step or window.due() or compiling:
                    window.flush(counters)  # after the compiling step: its own window, so later rates are clean
                if compiling:
                    counters["compile_seconds"] = (counters.get("compile_seconds", 0.0)
                                                   + time.perf_counter() - started)
                if due:
                    self.take_checkpoints(step, due)
                    window.restart()
                elif step < total_steps and self.state_due(step):
                    self.save_state_between_checkpoints()
                if step == stop_after_step and step < total_steps:
                    return True
        return False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.wait()  # a state being written is finished, also when training failed
        if self.private is not None:
            self.private.close()

    def finish(self, stopped: bool, stop_after_step: int | None) -> dict:
        """The manifest: written (and the resumable state removed) when the run completed."""
        self.window.flush(self.counters)
        manifest = _manifest(not stopped, self.counters, self.plan, self.cfg, self.fingerprint, self.device,
                             self.precision, self.model, self.opt, self.world, self.dp_plan)
        if stopped:
            if self.main:
                log.info("train: stopped after step %d as asked (stop_after_step)", stop_after_step)
            return from_rank0(self.processes, manifest)
        if self.main:
            manifest_path = self.run_dir / "manifest.json"
            tmp = manifest_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(manifest, indent=1))
            tmp.rename(manifest_path)
            remove_state(self.run_dir)
            log.info("train: done, %d steps, %s tokens in %.1f s (%s tokens/s)", self.plan.total_steps,
                     f"{self.counters['tokens']:,}", self.counters["seconds"], manifest["tokens_per_s"])
        return from_rank0(self.processes, manifest)
