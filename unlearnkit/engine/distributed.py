"""Data parallelism across processes (`torchrun --nproc-per-node N -m unlearnkit ...`).

Every rank runs the same protocol with the same seed, so every rank draws the same step
stream: the same shuffles, the same augmented views. The Trainer then hands each rank
its own rows of each batch (`Step.shard`), and averages the gradients over the ranks
before the optimiser steps, so the weights stay identical everywhere and the update is
the one the whole batch would give. Everything else (statistics passes such as
saliency, evaluation) sees whole batches. Methods need no change: their losses see a
smaller batch. BatchNorm buffers are taken from rank 0 after every step, as
DistributedDataParallel does before every forward.

With one process (no process group set up) the Trainer calls none of this, and `gather_rows`
returns its tensor as it is.

`launched` starts and stops the process group for `unlearn run` under torchrun; `agreed` and
`main_first` keep the ranks' decisions alike where only rank 0 reads or writes files (the model
cache, downloads).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from unlearnkit.errors import UnlearnkitError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run."""

    rank: int = 0
    size: int = 1

    def rows(self, n: int) -> slice | None:
        """This rank's contiguous rows of an n-row batch; None (all rows, every rank) when n is too small
        to split with at least two rows per rank (BatchNorm needs two)."""
        if self.size == 1 or n < 2 * self.size:
            return None
        bounds = torch.linspace(0, n, self.size + 1).round().long().tolist()
        return slice(bounds[self.rank], bounds[self.rank + 1])


SINGLE = World()


def world() -> World:
    """The current process group's rank and size (one rank when none is set up)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return SINGLE


def launcher() -> World:
    """The rank and size torchrun's environment gives this process, before any process group exists
    (one rank when WORLD_SIZE is unset or 1)."""
    try:
        size = int(os.environ.get("WORLD_SIZE") or 1)
        return World(int(os.environ["RANK"]), size) if size > 1 else SINGLE
    except (KeyError, ValueError):
        raise UnlearnkitError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} and RANK={os.environ.get('RANK')} do not describe one process of a launch",
            "Start several processes with torchrun --nproc-per-node N -m unlearnkit run ..., or unset WORLD_SIZE.",
        ) from None


@contextmanager
def launched(device: str) -> Iterator[str]:
    """Under torchrun (WORLD_SIZE > 1): the process group started, and the device this rank runs on;
    the group is stopped on the way out, errors included.

    CUDA runs put rank LOCAL_RANK on GPU LOCAL_RANK and use NCCL; CPU runs use gloo. Not launched:
    `device` as it is, and nothing else happens.
    """
    if launcher().size == 1:
        yield device
        return
    if device == "mps":
        raise UnlearnkitError("torchrun runs unlearnkit on CUDA GPUs (NCCL) or on the CPU (gloo), not on mps",
                              "Use --device cuda or --device cpu, or run without torchrun.")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        per_node, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", 1)), torch.cuda.device_count()
        if per_node > gpus:  # every rank sees the same counts, so every rank refuses alike
            raise UnlearnkitError(f"torchrun started {per_node} processes on this machine, which has {gpus} GPU(s)",
                                  f"Use --nproc-per-node {gpus} or fewer: one process per GPU.")
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)  # NCCL's collectives and broadcast_object_list use the current GPU
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def agreed(value: T) -> T:
    """Rank 0's value on every rank (the value itself in one process): for choices every rank must make alike,
    such as training a model or taking it from the cache, or the collectives would wait for ever."""
    if world().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the other ranks do, so that only it writes what they then read (a download).

    Rank 0 lets the others go even when it fails: they meet the same error and end too.
    """
    here = world()
    if here.size > 1 and here.rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if here.size > 1 and here.rank == 0:
            dist.barrier()


def average_gradients(parameters: Iterable[nn.Parameter], size: int) -> None:
    """Replace each gradient with its mean over the ranks, in one flat all-reduce.

    A parameter without a gradient on this rank joins as zeros (every rank runs the same code,
    so it has none anywhere, and it is left without one).
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    _copy_back(flat, grads)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank: sent after every step, so in one
    flat broadcast per dtype rather than one per buffer."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for buffer in model.buffers():
        by_dtype.setdefault(buffer.dtype, []).append(buffer)
    for buffers in by_dtype.values():
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.broadcast(flat, 0)
        _copy_back(flat, buffers)


def _copy_back(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Each tensor's values from its slice of `flat`, which holds them end to end in order."""
    offset = 0
    for tensor in tensors:
        n = tensor.numel()
        tensor.copy_(flat[offset: offset + n].view_as(tensor))
        offset += n


def broadcast_state(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (models start equal even if a draw differed)."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, 0)


class _GatherRows(torch.autograd.Function):
    """all_gather with gradients: each rank's rows get the sum of every rank's gradients for them.

    Ours, as torch.distributed.nn's all_gather is deprecated; an all-reduce in backward works on every backend.
    """

    @staticmethod
    def forward(ctx, padded: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(padded) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, padded.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows of a per-sample tensor, in rank order, and where this rank's rows start.

    Gradients flow back to the rank that computed each row (as SimCLR-style losses over a
    global batch need). With one rank: the tensor itself, from row 0.
    """
    here = world()
    if here.size == 1:
        return tensor, 0
    counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(here.size)]
    dist.all_gather(counts, torch.tensor([len(tensor)], device=tensor.device))
    sizes = [int(c) for c in counts]
    longest = max(sizes)
    padded = torch.cat([tensor, tensor.new_zeros(longest - len(tensor), *tensor.shape[1:])])  # all_gather wants equal shapes
    parts = _GatherRows.apply(padded)
    rows = torch.cat([part[:n] for part, n in zip(parts, sizes)])
    return rows, sum(sizes[: here.rank])
