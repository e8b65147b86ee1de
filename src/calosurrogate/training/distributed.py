"""Data-parallel training over several processes: launched by ``torchrun`` (or ``calo train --nproc N``).

Each process trains a copy of the model on its own share of the training file; before every
optimiser step the gradients of that step's parameter group are averaged over the processes,
which is the reduction PyTorch's ``DistributedDataParallel`` performs (Li et al. 2020,
arXiv:2006.15704). It is done in the loop's ``update`` rather than by wrapping the model in
``DistributedDataParallel``, because the families take their optimiser steps inside
``training_step`` (the WGAN two per batch: critic and generator), where DDP's forward hook never
runs. With the same global batch the averaged gradient equals one process's gradient on the whole
batch (every family's loss is a mean over showers).

The processes find each other through the environment ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo on CPUs, nccl on CUDA.
Everything the loop decides (when to stop, how long the cosine cycle is) is taken from process
0, so all processes take the same number of steps and never wait on each other forever.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes.

    Attributes:
        rank: Index of this process (0 writes checkpoints, logs and the model).
        world_size: Number of processes.
        local_rank: Index on this machine (picks the CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def share(self, start: int, stop: int, rank: int | None = None) -> tuple[int, int]:
        """The contiguous part of the rows ``[start, stop)`` that process ``rank`` (default: this one) reads."""
        rank = self.rank if rank is None else rank
        n = stop - start
        return start + rank * n // self.world_size, start + (rank + 1) * n // self.world_size

    def average_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its mean over the processes (one all-reduce per call).

        A parameter without a gradient counts as a zero gradient, so that every process sends
        the same tensor whatever its batch touched.
        """
        if not self.parallel:
            return
        params = list(parameters)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p)  # views of one buffer: no copy per step
            offset += n

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Each value summed over the processes."""
        if not self.parallel:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def from_main(self, value: float, device: torch.device) -> float:
        """Process 0's value, on every process (decisions that depend on a clock)."""
        if not self.parallel:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def copy_from_main(self, module: torch.nn.Module) -> None:
        """Process 0's parameters and buffers in every process (as DDP does when it wraps a model)."""
        if not self.parallel:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()


SINGLE = Processes()


def from_environment() -> Processes:
    """This process's place from ``torchrun``'s environment (one process without ``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    return Processes(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def join(processes: Processes, device: torch.device) -> bool:
    """Join the process group (gloo for CPU training, nccl for CUDA); returns whether this call
    started it (the caller then ends it with :func:`leave`).

    Raises:
        ValueError: A CUDA run with more processes on this machine than GPUs.
    """
    if not processes.parallel or dist.is_initialized():
        return False
    if device.type == "cuda" and processes.local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"process {processes.rank} of {processes.world_size}: local rank {processes.local_rank} but "
            f"{torch.cuda.device_count()} CUDA device(s) here; start at most one process per GPU"
        )
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def leave(started: bool) -> None:
    """End the process group :func:`join` started."""
    if started and dist.is_initialized():
        dist.destroy_process_group()


__all__ = ["SINGLE", "Processes", "from_environment", "join", "leave"]
