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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


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


def average_gradients(parameters: Iterable[nn.Parameter], size: int) -> None:
    """Replace each gradient with its mean over the ranks, in one flat all-reduce.

    A parameter without a gradient on this rank joins as zeros (every rank runs the same code,
    so it has none anywhere, and it is left without one).
    """
    params = list(parameters)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is not None:
            p.grad.copy_(flat[offset: offset + n].view_as(g))
        offset += n


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank."""
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def broadcast_state(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (models start equal even if a draw differed)."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, 0)


def gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's rows of a per-sample tensor, in rank order, and where this rank's rows start.

    Gradients flow back to the rank that computed each row (as SimCLR-style losses over a
    global batch need). With one rank: the tensor itself, from row 0.
    """
    here = world()
    if here.size == 1:
        return tensor, 0
    from torch.distributed.nn.functional import all_gather

    counts = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(here.size)]
    dist.all_gather(counts, torch.tensor([len(tensor)], device=tensor.device))
    sizes = [int(c) for c in counts]
    longest = max(sizes)
    padded = torch.cat([tensor, tensor.new_zeros(longest - len(tensor), *tensor.shape[1:])])  # all_gather wants equal shapes
    parts = all_gather(padded)
    rows = torch.cat([part[:n] for part, n in zip(parts, sizes)])
    return rows, sum(sizes[: here.rank])
