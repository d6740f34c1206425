"""The images a run uses: the evaluation pool (the fixed subsets results report), the tuning pool apart from it,
and class-balanced subsets."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.bench.grid import BenchSpec, expand
from unlearnkit.bench.keys import cell_key
from unlearnkit.bench.tune import on_tuning_pool, tuning_grid
from unlearnkit.data import Datasets, catalog
from unlearnkit.errors import SpecError, UnlearnkitError
from unlearnkit.plugins import installed
from unlearnkit.protocol import ProtocolRun
from unlearnkit import cache
from unlearnkit.references import _identity, cache_key
from unlearnkit.resolve import resolve

pytestmark = pytest.mark.usefixtures("private_cache")

TINY = {"data": {"name": "digits", "train_subset": 240, "test_subset": 80}, "train": {"epochs": 1}, "device": "cpu"}


def with_data(**data):
    return {**TINY, "data": {**TINY["data"], **data}}


def digits():
    images, _ = catalog.load("digits", None, False, 32)
    return images


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_the_evaluation_pool_is_the_subset_every_earlier_version_took(monkeypatch):
    images = digits()
    gen = torch.Generator().manual_seed(0)  # the earlier choice: the first n of a seed-0 permutation, train then test
    train = torch.randperm(len(images.train_y), generator=gen)[:240].sort().values
    test = torch.randperm(len(images.test_y), generator=gen)[:80].sort().values
    chosen = catalog.subset(images, 240, 80)
    assert torch.equal(chosen.train_x, images.train_x[train]) and torch.equal(chosen.test_y, images.test_y[test])
    # the keys models and cells were stored under before the pool existed (cache format 1; format 2 changed the
    # trainer, not what identifies a model; the CPU thread count joined the key later)
    monkeypatch.setattr("unlearnkit.cache.FORMAT", 1)
    run = ProtocolRun(resolve(TINY, installed()))
    earlier = {kind: cache.cache_key(kind, **{k: v for k, v in _identity(run, kind).items() if k != "torch_threads"})
               for kind in ("original", "retrain")}
    assert earlier == {"original": "original-f3aa1d9cb43cd0757621", "retrain": "retrain-2a61bee8f5b00b94cd97"}
    keys = set()
    for base in (TINY, with_data(pool="evaluation", balanced=False)):
        grid = expand(BenchSpec(base=base, methods=["ft"], augment=["none"], scenarios=["random:0.1"], seeds=1),
                      installed())
        resolved = grid.resolved[grid.cells[0]]
        keys.add(cell_key(resolved))
        assert set(resolved.spec.model_dump()["data"]).isdisjoint({"pool", "balanced"})  # a cell's identity
    assert len(keys) == 1


def test_a_model_trained_with_another_thread_count_is_cached_apart():
    """One CPU thread and two split floating-point sums differently and train another model: neither is reused for the
    other, so what a command prints never depends on which thread count filled the cache before it."""
    run = ProtocolRun(resolve(TINY, installed()))
    before = torch.get_num_threads()
    try:
        keys = {}
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            keys.setdefault(threads, set()).add(cache_key(run, "original"))
    finally:
        torch.set_num_threads(before)
    assert len(keys[1]) == len(keys[2]) == 1 and keys[1] != keys[2]


@pytest.mark.parametrize("balanced", [False, True])
def test_no_tuning_image_is_an_evaluation_image(balanced):
    evaluation = ProtocolRun(resolve(with_data(balanced=balanced), installed()))
    tuned = ProtocolRun(resolve(with_data(pool="tuning", balanced=balanced), installed()))
    for part in ("train_x", "test_x"):
        ours, theirs = getattr(evaluation.data, part), getattr(tuned.data, part)
        assert len(ours) == len(theirs) == (240 if part == "train_x" else 80)
        # digits holds a few identical images under different indices: compare the indices chosen as well
        assert len(rows(ours) & rows(theirs)) <= 1
    images = digits()
    for n, size, what in ((240, len(images.train_y), "train"), (80, len(images.test_y), "test")):
        gens = [torch.Generator().manual_seed(0) for _ in range(2)]
        if what == "test":  # the test permutation follows the training one's draw
            for gen in gens:
                torch.randperm(len(images.train_y), generator=gen)
        y = images.train_y if what == "train" else images.test_y
        picks = [catalog.choose(size, n, gen, pool, balanced, lambda y=y: y, images.classes, what)
                 for gen, pool in zip(gens, ("evaluation", "tuning"))]
        assert not set(picks[0].tolist()) & set(picks[1].tolist())
    # a cached Original of one pool is never taken for the other's
    assert cache_key(evaluation, "original") != cache_key(tuned, "original")


def test_balanced_subsets_take_an_equal_share_of_each_class_or_say_why_not():
    run = ProtocolRun(resolve(with_data(balanced=True), installed()))
    assert run.data.train_y.bincount().tolist() == [24] * 10 and run.data.test_y.bincount().tolist() == [8] * 10
    with pytest.raises(UnlearnkitError, match="train_subset 245 cannot be balanced over 10 classes") as caught:
        catalog.subset(digits(), 245, None, balanced=True)
    assert "240 or 250" in caught.value.hint
    # digits' smallest test class has 35 images: a balanced pool of 40 a class reaches none
    with pytest.raises(UnlearnkitError, match="test_subset 400 balanced takes 40 images of each class") as caught:
        catalog.subset(digits(), None, 400, balanced=True)
    assert "at most 350" in caught.value.hint
    with pytest.raises(UnlearnkitError, match="the tuning pool needs 1000 images apart"):
        catalog.subset(digits(), 1000, 80, pool="tuning")


def test_a_pool_needs_subsets_to_be_apart_from():
    with pytest.raises(SpecError, match="needs both train_subset and test_subset"):
        resolve({"data": {"name": "digits", "train_subset": 240, "pool": "tuning"}}, installed())
    with pytest.raises(SpecError, match="balanced applies to subsets"):
        resolve({"data": {"name": "digits", "balanced": True}}, installed())


def test_torch_datasets_take_the_same_pools():
    images = digits()
    data = Datasets(torch.utils.data.TensorDataset(images.train_x.float(), images.train_y),
                    torch.utils.data.TensorDataset(images.test_x.float(), images.test_y), images.classes)
    labels = lambda dataset: dataset.tensors[1]  # noqa: E731
    plain = catalog.subset(images, 240, 80)
    assert torch.equal(catalog.subset_datasets(data, 240, 80).train.dataset.tensors[1][
        catalog.subset_datasets(data, 240, 80).train.indices], plain.train_y)
    pools = [catalog.subset_datasets(data, 240, 80, pool, True, labels) for pool in ("evaluation", "tuning")]
    assert not set(pools[0].train.indices) & set(pools[1].train.indices)
    assert not set(pools[0].test.indices) & set(pools[1].test.indices)
    assert images.train_y[pools[1].train.indices].bincount().tolist() == [24] * 10


def test_tuning_trains_on_the_tuning_pool_unless_the_spec_names_one():
    base, said = on_tuning_pool(TINY)
    assert base["data"]["pool"] == "tuning" and "tuning pool: 240 training and 80 test images" in said
    grid = tuning_grid(base, "ft", (), "random:0.1", [100], {0: {}}, installed())
    assert {r.spec.data.pool for r in grid.resolved.values()} == {"tuning"}
    assert on_tuning_pool(with_data(pool="evaluation"))[0]["data"]["pool"] == "evaluation"
    whole, said = on_tuning_pool({"data": {"name": "digits"}})
    assert "pool" not in whole["data"] and "the evaluation's images" in said
