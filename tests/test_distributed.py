"""Data parallelism: two gloo processes on this CPU train as one process on the whole batch."""

from __future__ import annotations

import os
from typing import Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from unlearnkit_coun.contrastive import cross_view_infonce

from unlearnkit.api import TrainParams
from unlearnkit.engine.cost import CostMeter
from unlearnkit.engine.streams import Batch, Step, shard
from unlearnkit.engine.distributed import World, gather_rows
from unlearnkit.engine.train import Trainer, retain_cross_entropy
from unlearnkit.models import Classifier


def linear_classifier() -> Classifier:
    torch.manual_seed(0)
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh()), 6, 3)


def batches(steps: int, size: int) -> list[Step]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(steps):
        x, y = torch.randn(size, 12, generator=g), torch.randint(0, 3, (size,), generator=g)
        second = x + 0.1 * torch.randn(size, 12, generator=g)
        out.append(Step(Batch(x, y, torch.arange(size), lambda second=second: second), None, 0, 1, i, steps))
    return out


def retain_pool(size: int) -> Callable[[int], Batch]:
    """Draws batches of a pool of retain samples, and noisy views of them, as every rank draws them."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(size, 12, generator=g), torch.randint(0, 3, (size,), generator=g)

    def draw(n: int) -> Batch:
        index = torch.randperm(size, generator=g)[:n]

        def view() -> torch.Tensor:
            return x[index] + 0.1 * torch.randn(len(index), 12, generator=g)

        return Batch(x[index], y[index], index, view, lambda crop_padding, flip: view())

    return draw


def train(steps: list[Step]) -> tuple[Classifier, CostMeter]:
    from unlearnkit_coun.contrastive import ContrastiveAugmenter, ContrastiveParams

    model, meter = linear_classifier(), CostMeter(1)
    params = TrainParams(epochs=1, lr=0.5, batch_size=8)
    # coun-cl's InfoNCE over its own global batch of 12, larger than the steps' 8
    trainer = Trainer(model, params, len(steps), meter, [ContrastiveAugmenter(ContrastiveParams(batch_size=12))],
                      retain_batches=retain_pool(20))
    for step in steps:
        trainer.step(retain_cross_entropy, step)
    return model, meter


def _worker(rank: int, init: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        model, meter = train(batches(4, 8))
        # a per-sample tensor split 3 + 2 over the ranks: gathered in rank order, gradients back to each rank
        mine = torch.full((3 - rank, 2), float(rank + 1), requires_grad=True)
        rows, start = gather_rows(mine)
        (rows * torch.arange(1.0, 6.0).view(-1, 1)).sum().backward()
        torch.save({"state": model.state_dict(), "flops": meter.flops, "rows": rows.detach(), "start": start,
                    "grad": mine.grad}, os.path.join(results, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(f"file://{folder / 'init'}", str(folder)), nprocs=2)
    return [torch.load(folder / f"{rank}.pt", weights_only=True) for rank in range(2)]


def test_two_ranks_train_the_weights_one_process_trains_on_the_whole_batch(two_ranks):
    alone, meter = train(batches(4, 8))
    for rank in two_ranks:
        for name, value in alone.state_dict().items():
            assert torch.allclose(rank["state"][name], value, atol=1e-5), name
    assert two_ranks[0]["flops"] == meter.flops  # costs count whole steps, not one rank's rows


def test_gathered_rows_come_in_rank_order_with_gradients_to_their_rank(two_ranks):
    first, second = two_ranks
    expected = torch.tensor([1.0, 1, 1, 2, 2]).view(-1, 1).expand(5, 2)
    assert torch.equal(first["rows"], expected) and torch.equal(second["rows"], expected)
    assert (first["start"], second["start"]) == (0, 3)
    # each rank's loss weights row k by k + 1; both ranks' losses reach each row: 2 (k + 1)
    assert torch.equal(first["grad"], torch.tensor([2.0, 4, 6]).view(-1, 1).expand(3, 2))
    assert torch.equal(second["grad"], torch.tensor([8.0, 10]).view(-1, 1).expand(2, 2))


def test_a_rank_takes_contiguous_rows_and_small_batches_stay_whole():
    assert [World(r, 2).rows(9) for r in range(2)] == [slice(0, 4), slice(4, 9)]
    assert World(0, 2).rows(3) is None and World(0, 1).rows(100) is None
    x = torch.arange(8.0).view(8, 1)
    batch = Batch(x, torch.zeros(8, dtype=torch.long), torch.arange(8), lambda: x * 10, lambda padding, flip: x * padding)
    mine = shard(Step(batch, None, 0, 1, 0, 1), World(1, 2))
    assert mine.retain is not None and mine.retain.index.tolist() == [4, 5, 6, 7]
    assert torch.equal(mine.retain.view(), x[4:] * 10)  # a further view: cut from the whole batch's
    assert torch.equal(mine.retain.view_with(3, True), x[4:] * 3)  # and one under another augmentation too


def test_the_contrastive_loss_of_one_process_is_unchanged_by_the_global_form():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    a, b = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)
    similarity = a @ b.T / 0.1
    targets = torch.arange(6)
    expected = nn.functional.cross_entropy(similarity, targets) + nn.functional.cross_entropy(similarity.T, targets)
    assert torch.equal(cross_view_infonce(z1, z2, 0.1), expected)
