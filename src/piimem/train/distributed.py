"""Several processes (data parallel, one run).

When the environment says WORLD_SIZE > 1 (set by `accelerate launch` or `torchrun`), train() joins the
process group (NCCL on CUDA, each process on the GPU of its LOCAL_RANK; gloo on the CPU), or uses the one
its caller started, and:
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

    accelerate launch --multi_gpu --num_processes N --num_machines 1 --mixed_precision no \\
        --dynamo_backend no --main_process_port 0 -m piimem.train_run --config run.json

(or `torchrun --standalone --nproc_per_node N -m piimem.train_run --config run.json`); see
piimem.train_run for run.json and `launch_command`. Without WORLD_SIZE > 1 nothing of this applies.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from dataclasses import dataclass

from piimem.train.config import TrainConfig

_BUCKET_ELEMENTS = 1 << 25  # gradients are summed across processes in flat fp32 buckets of <= 128 MiB


@dataclass
class Processes:
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


def start_processes(cfg: TrainConfig):
    """(Processes, device or None). world == 1: (single, None), the device resolved as before."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Processes(), None
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
    return Processes(rank=rank, world=world), device


def rank0_decides(flag: bool, processes: Processes, device) -> bool:
    """Rank 0's `flag` on every process (one small broadcast); the flag itself with one process."""
    if processes.world == 1:
        return flag
    import torch
    import torch.distributed as dist

    box = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.broadcast(box, src=0)
    return bool(box.item())


def barrier(processes: Processes) -> None:
    if processes.world > 1:
        import torch.distributed as dist

        dist.barrier()


def process_seed(seed: int, rank: int) -> int:
    """Rank 0 draws as a single process would; the others from their own, unrelated streams."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:rank:{rank}".encode()).digest()[:4], "big")


def broadcast_model(model) -> None:
    """Start every process from rank 0's weights (an initialisation that draws random numbers, e.g. a
    soft prompt, could otherwise differ between processes)."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def sum_across_processes(params: list, step_loss):
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


class Silent:
    """Progress for processes other than rank 0: counts nothing, prints nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc) -> None:
        pass


def from_rank0(processes: Processes, manifest: dict) -> dict:
    """Rank 0's manifest on every process, once rank 0 has written its files (a barrier)."""
    if processes.world == 1:
        return manifest
    import torch.distributed as dist

    box = [manifest if processes.main else None]
    dist.broadcast_object_list(box, src=0)  # also waits for rank 0, which writes before it sends
    return box[0]
