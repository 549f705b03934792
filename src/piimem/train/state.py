"""The run's folder and its resumable state.

Fingerprint. run_dir/fingerprint.txt names the settings and inputs the run's files belong to; a call with
another fingerprint deletes what train() wrote there (`RUN_ENTRIES`) and starts over.

Resume. At every checkpoint, and besides at least every `state_every` (minutes of training and/or
optimizer steps, `StateEvery`), the trainer writes run_dir/state (trainable parameters by name, optimizer,
scheduler, grad scaler, step, RNG states, counters, the losses since the last checkpoint) through a
temporary directory and renames, so a killed run leaves either the old or the new state and loses at most
`state_every` of work. A later call with the same fingerprint continues from it; since the data order is a
pure function of (seed, epoch, doc_id), the steps already done are skipped by arithmetic and the result
equals an uninterrupted run. When the run completes, manifest.json is written and the state (optimizer
moments: twice the trainable parameters) is deleted.

Randomness. Dropout draws from torch's global generator, which has no per-call seed, so train() seeds
the global torch, python and numpy generators from `seed` on a fresh start and restores them on resume.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np

from piimem.train.distributed import Processes

log = logging.getLogger("piimem")

# Files and directories train() owns inside run_dir; only these are deleted on a fingerprint change.
RUN_ENTRIES = ("checkpoints", "state", "state.tmp", "state.old", "train_log.tsv", "manifest.json",
               "fingerprint.txt")


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
    for name in ("state", "state.old"):  # state.old exists alone only after a kill between two renames
        if (run_dir / name / "state.json").is_file():
            return run_dir / name
    return None


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


def save_state(run_dir: Path, trainable: list, optimizer, scheduler, scaler, rng: dict,
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
