"""The run's folder and its resumable state.

Fingerprint. run_dir/fingerprint.txt names the settings and inputs the run's files belong to; a call with
another fingerprint deletes what train() wrote there (`RUN_ENTRIES`) and starts over.

Resume. At every checkpoint, and besides at least every `state_every` (minutes of training and/or
optimizer steps, `StateEvery`), the trainer writes run_dir/state (trainable parameters by name, optimizer,
scheduler, grad scaler, step, RNG states, counters, the losses since the last checkpoint) through a
temporary directory and renames, so a killed run leaves either the old or the new state and loses at most
`state_every` of work (and the time one write takes: the state is copied to host memory at its step and
written while training goes on, `StateWriter`). A later call with the same fingerprint continues from it;
since the data order is a pure function of (seed, epoch, doc_id), the steps already done are skipped by
arithmetic and the result equals an uninterrupted run. When the run completes, manifest.json is written
and the state (optimizer moments: twice the trainable parameters) is deleted.

Randomness. Dropout draws from torch's global generator, which has no per-call seed, so train() seeds
the global torch, python and numpy generators from `seed` on a fresh start and restores them on resume.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from piimem.train.distributed import Processes

log = logging.getLogger("piimem")

# The resumable state's folder, the one being written and the one it replaces (see write_state).
STATE, STATE_TMP, STATE_OLD = "state", "state.tmp", "state.old"
# Files and directories train() owns inside run_dir; only these are deleted on a fingerprint change.
RUN_ENTRIES = ("checkpoints", STATE, STATE_TMP, STATE_OLD, "train_log.tsv", "manifest.json", "fingerprint.txt")


def prepare_run_dir(run_dir: Path, fingerprint: str) -> None:
    """Keep a run with the same fingerprint; otherwise delete what train() wrote there before."""
    fingerprint_file = run_dir / "fingerprint.txt"
    if fingerprint_file.is_file() and fingerprint_file.read_text() == fingerprint:
        return
    leftovers = [name for name in RUN_ENTRIES if (run_dir / name).exists()]
    if leftovers:
        log.info("train: %s holds a run with another fingerprint; starting over", run_dir)
        for name in leftovers:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(fingerprint)


def find_state(run_dir: Path) -> Path | None:
    for name in (STATE, STATE_OLD):  # state.old exists alone only after a kill between two renames
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


def remove_state(run_dir: Path) -> None:
    """Delete the resumable state of a completed run (optimizer moments: twice the trainable parameters)."""
    for name in (STATE, STATE_OLD, STATE_TMP):
        if (run_dir / name).exists():
            shutil.rmtree(run_dir / name)


def rng_states(device) -> dict:
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


def set_rng_states(states: dict, device) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device, lazily, without initialising CUDA


@dataclass
class StateSnapshot:
    """A resumable state copied to host memory at one step: exactly what `write_state` puts on disk."""

    trainable: dict  # parameter name -> tensor
    rest: dict  # optimizer, scheduler and gradient-scaler state dicts, "rng" (and "rng_ranks")
    counters: dict


def _host_copy(value):
    """`value` with every tensor in it copied to host memory (containers rebuilt, other leaves shared)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _host_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host_copy(v) for v in value)
    return value


def take_snapshot(trainable: list, optimizer, scheduler, scaler, rng: dict, counters: dict) -> StateSnapshot:
    """Copy the state as it is now; training may change the originals right after.

    `rng`: {"rng": states} for one process; with several also "rng_ranks", every rank's states.
    """
    return StateSnapshot(
        trainable={name: p.detach().to("cpu", copy=True).contiguous() for name, p in trainable},
        rest=_host_copy({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), **rng}),
        counters=copy.deepcopy(counters))


def write_state(run_dir: Path, snapshot: StateSnapshot) -> None:
    """run_dir/state, through state.tmp and renames: a kill at any moment leaves a whole state (the new
    one, or the previous one as state or state.old) or, before the first save, none."""
    import torch
    from safetensors.torch import save_file

    tmp, final, old = run_dir / STATE_TMP, run_dir / STATE, run_dir / STATE_OLD
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(snapshot.trainable, tmp / "trainable.safetensors")
    torch.save(snapshot.rest, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(snapshot.counters, indent=1))
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


class StateWriter:
    """Writes snapshots with `write_state` in a thread of its own, one at a time, while training goes on.

    Safe for resume because (1) a snapshot is a copy taken at its step, so it holds exactly what a
    synchronous save would have written; (2) checkpoints are written before the snapshot of their step
    is taken, so a state on disk never names a checkpoint that is not; (3) a new write starts only after
    the previous one ended, so the renames never interleave; (4) `wait()` is called before the run's
    manifest is written and the state deleted, before train() returns (also when it raises). A kill during
    a write leaves the previous state, as a kill during a synchronous save does; the resumed run redoes
    the steps since then and rewrites their checkpoints with the same contents.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, snapshot: StateSnapshot) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(snapshot,), name="piimem-state-writer")
        self._thread.start()

    def _write(self, snapshot: StateSnapshot) -> None:
        try:
            write_state(self.run_dir, snapshot)
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Until the state being written is on disk; a failed write raises here."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"train: writing the resumable state to {self.run_dir / 'state'} failed: "
                               f"{error}") from error


def load_state(state_dir: Path, trainable: list, optimizer, scheduler, scaler, device,
               processes: Processes) -> dict:
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
        set_rng_states(ranks[processes.rank], device)
    else:
        set_rng_states(rest["rng"], device)
    return json.loads((state_dir / "state.json").read_text())
