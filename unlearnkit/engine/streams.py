"""The run's data on its device, and the batch streams methods train on.

Two kinds of data: images held in memory as uint8 tensors, whose views are made
on whole batches at once (`RunData`), and a user's map-style torch Datasets,
read sample by sample with the user's own transforms, through a DataLoader whose
worker processes read ahead of training (`StreamedData`).
"""

from __future__ import annotations

import copy
import random
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from unlearnkit.contract import Batch, Part, Step
from unlearnkit.data.forget import Split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine.distributed import World

Tag = TypeVar("Tag")


def shard(step: Step, world: World) -> Step:
    """This rank's rows of each side of a step (a side too small to split stays whole on every rank)."""
    if world.size == 1:
        return step
    sides = []
    for batch in (step.retain, step.forget):
        rows = world.rows(len(batch)) if batch is not None else None
        sides.append(batch.rows(rows) if batch is not None and rows is not None else batch)
    return Step(sides[0], sides[1], step.epoch, step.epochs, step.iteration, step.iterations)


class RunData:
    """Train and test images on the run's device, the forget/retain split, and the test indices TA uses."""

    # None in StreamedData, which reads a user's Datasets through their own transforms
    images: ImageSet | None
    transform: Transform | None
    train_x: torch.Tensor | None
    test_x: torch.Tensor | None

    def __init__(self, images: ImageSet, transform: Transform, split: Split, device: torch.device):
        self.images = images
        self.transform = transform
        self.split = split
        self.num_classes = images.num_classes
        self.train_x = images.train_x.to(device)
        self.train_y = images.train_y.to(device)
        self.test_x = images.test_x.to(device)
        self.test_y = images.test_y.to(device)
        self.test_index = _test_index(self.test_y, split)
        self.device = device

    def with_split(self, split: Split) -> RunData:
        """The same images on the same device, another forget/retain split (a step of sequential forgetting)."""
        data = copy.copy(self)
        data.split = split
        data.test_index = _test_index(self.test_y, split)
        return data

    def indices(self, part: str) -> torch.Tensor:
        """Training-set positions of a part: all (retain and forget), retain or forget.

        "all" is what this split holds, not every sample: after earlier sequential requests,
        the samples they removed are part of neither side.
        """
        if part == "all":
            return torch.cat([self.split.retain, self.split.forget]).sort().values
        return {"retain": self.split.retain, "forget": self.split.forget}[part]

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> Batch:
        transform, train_x = self.transform, self.train_x
        assert transform is not None and train_x is not None  # set in __init__; StreamedData overrides this
        index_dev = index.to(self.device)
        images = train_x[index_dev]
        x = transform.train_view(images, generator)

        def redraw_with(crop_padding: int, flip: bool) -> torch.Tensor:
            return replace(transform, crop_padding=crop_padding, flip=flip).train_view(images, generator)

        return Batch(x, self.train_y[index_dev], index, lambda: transform.train_view(images, generator), redraw_with)

    def shuffle_generator(self, generator: torch.Generator) -> torch.Generator:
        """The generator a batch stream shuffles with: the run's own, as batches are made when a step asks."""
        return generator

    def read(self, requests: Iterable[tuple[Tag, torch.Tensor]], generator: torch.Generator) -> Iterator[tuple[Tag, Batch]]:
        """The batches of a stream of (tag, training positions) requests, in order, each with its tag."""
        for tag, index in requests:
            yield tag, self.batch(index, generator)

    def eval_views(self, part: str, batch_size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented (test-transform) images and labels of retain, forget, train or test samples."""
        transform = self.transform
        assert transform is not None and self.train_x is not None and self.test_x is not None  # StreamedData overrides this
        x: torch.Tensor
        if part == "test":
            x, y, index = self.test_x, self.test_y, self.test_index
        else:
            x, y, index = self.train_x, self.train_y, self.indices("all" if part == "train" else part)
        for chunk in index.split(batch_size):
            chunk = chunk.to(self.device)
            yield transform.test_view(x[chunk]), y[chunk]


class StreamedData(RunData):
    """A user's map-style Datasets, each item (image tensor, label), read with the user's transforms.

    `train` gives training views: its random transforms draw a fresh view at every read. That is
    also what `Batch.view_with` gives here (coun-cl's views): its crop and flip cannot act on images
    the Dataset has already transformed, so it reads again through the Dataset's own transforms.
    `train_eval`, when given, holds the same samples with test-time transforms for measuring RA,
    UA and MIA (else `train` is used).

    Training streams and evaluation passes go through a DataLoader with `workers` processes, which
    read batches ahead of the steps. Each batch is read under its own seed (torch's, numpy's and
    Python's global generators, which transforms draw from), drawn in order from the stream's
    private generator; so a run repeats bitwise whatever the number of workers, and however far
    ahead they read. Once a method has asked for a second view of a streamed batch, the workers
    read one along with each later batch.
    """

    def __init__(
        self,
        train: Dataset,
        test: Dataset,
        split: Split,
        device: torch.device,
        num_classes: int,
        train_eval: Dataset | None = None,
        workers: int = 0,
        labels: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        self.images = None
        self.transform = None
        self.train_set, self.test_set, self.train_eval = train, test, train_eval or train
        self.split = split
        self.num_classes = num_classes
        # the caller has usually read them already, to draw the split (reading may mean loading every image)
        self.train_y, self.test_y = labels or (dataset_labels(train), dataset_labels(test))
        self.train_x = self.test_x = None
        self.test_index = _test_index(self.test_y, split)
        self.device = device
        self.workers = workers
        # set at a method's first view of a streamed batch: from then on, read one ahead with each batch
        self.second_views = False

    def shuffle_generator(self, generator: torch.Generator) -> torch.Generator:
        """A private generator seeded from the run's: the loader draws from it ahead of the steps,
        and must not shift what the method itself draws from the run's generator meanwhile."""
        return torch.Generator().manual_seed(_draw_seed(generator))

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> Batch:
        """A batch read in this process (a method's own schedule asks for one batch at a time)."""
        read = _Read(index, _draw_seed(generator), 1)
        return self._batch(read, _read_views(self.train_set, read), streamed=False)

    def read(self, requests: Iterable[tuple[Tag, torch.Tensor]], generator: torch.Generator) -> Iterator[tuple[Tag, Batch]]:
        tags: list[Tag] = []  # the loader hands back results in request order

        def reads() -> Iterator[_Read]:
            for tag, index in requests:
                tags.append(tag)
                yield _Read(index, _draw_seed(generator), 2 if self.second_views else 1)

        loader = DataLoader(_BatchReader(self.train_set), sampler=reads(), batch_size=None, collate_fn=_as_read,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda")
        for read, views in loader:
            yield tags.pop(0), self._batch(read, views, streamed=True)

    def _batch(self, read: _Read, views: list[torch.Tensor], streamed: bool) -> Batch:
        """A batch of views read under seeds read.seed, read.seed + 1, ...; further views read on demand."""
        x, *ahead = (v.to(self.device, non_blocking=True) for v in views)
        drawn = 0

        def redraw() -> torch.Tensor:
            nonlocal drawn
            drawn += 1
            self.second_views |= streamed
            if ahead:
                return ahead.pop(0)
            return _read_views(self.train_set, _Read(read.positions, read.seed + drawn, 1))[0].to(self.device)

        # the Dataset's images come out of its own transforms: a view under another augmentation is a second read
        return Batch(x, self.train_y[read.positions].to(self.device), read.positions, redraw,
                     lambda crop_padding, flip: redraw())

    def eval_views(self, part: str, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if part == "test":
            source, index = self.test_set, self.test_index
        else:
            source, index = self.train_eval, self.indices("all" if part == "train" else part)
        loader = DataLoader(Subset(source, index.tolist()), batch_size=batch_size, num_workers=self.workers)
        for x, y in loader:
            yield x.to(self.device), torch.as_tensor(y).to(self.device)


class _Read(NamedTuple):
    """One batch to read: its training positions, its seed, and how many views."""

    positions: torch.Tensor
    seed: int
    views: int


def _draw_seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _read_views(dataset: Dataset, read: _Read) -> list[torch.Tensor]:
    """The batch's views, the k-th read under seed + k, whichever process reads it."""
    views = []
    for k in range(read.views):
        with _seeded(read.seed + k):
            views.append(default_collate([dataset[i][0] for i in read.positions.tolist()]))
    return views


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seeds torch's, numpy's and Python's global generators, and restores them afterwards."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


class _BatchReader(Dataset):
    """Reads a whole batch per request, in a loader's worker (module level, so spawned workers can unpickle it)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, read: _Read) -> tuple[_Read, list[torch.Tensor]]:
        return read, _read_views(self.dataset, read)


def _as_read(item: Any) -> Any:
    """The loader's collate step: a batch comes out of `_BatchReader` already collated."""
    return item


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """Every label of a Dataset: its `targets` or `labels` attribute when it has one (torchvision's do), else read."""
    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        # torch's Dataset declares no __len__; map-style data sets have one
        if isinstance(values, (torch.Tensor, Sequence)) and len(values) == len(dataset):  # type: ignore[arg-type]
            return torch.as_tensor(values, dtype=torch.long).flatten()
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]


def _test_index(test_y: torch.Tensor, split: Split) -> torch.Tensor:
    """The test samples TA uses: class-wise forgetting removes the forgotten classes from the test set as well."""
    keep = ~torch.isin(test_y.cpu(), torch.tensor(split.classes, dtype=torch.long))
    return keep.nonzero().flatten()


def tail_joins(rest: int, batch_size: int) -> bool:
    """Whether a pass's trailing batch of `rest` samples joins the batch before it.

    It does when it holds one sample (BatchNorm needs two) or fewer than a quarter of the batch size:
    BatchNorm's statistics over a handful of samples are noise, and its running averages, which the
    model is measured with, take a tenth of that noise at every epoch's last step (420 retain samples
    at batch 32 left a batch of 4 and cost Retrain 3 to 6 points of RA per seed). The pass still covers every sample.
    """
    return batch_size > 1 and 0 < rest < max(2, batch_size / 4)


def shuffled(index: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled pass in batches; a trailing batch too small for BatchNorm joins the one before (`tail_joins`)."""
    chunks = list(index[torch.randperm(len(index), generator=generator)].split(batch_size))
    if len(chunks) > 1 and tail_joins(len(chunks[-1]), batch_size):
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def retain_batch(data: RunData, size: int, generator: torch.Generator) -> Batch:
    """`size` retain samples (all of them when D_r has fewer), drawn without replacement, with their views."""
    retain = data.split.retain
    return data.batch(retain[torch.randperm(len(retain), generator=generator)[:size]], generator)


def _drawn_part(over: Part) -> str:
    """The part whose shuffled passes set an epoch: retain for retain+forget, all for union."""
    return {"retain+forget": "retain", "union": "all"}.get(over, over)


def _drawn(data: RunData, over: Part, among: torch.Tensor | None) -> torch.Tensor:
    """The training positions whose shuffled passes make an epoch: `among` when given, else the stream's part."""
    return data.indices(_drawn_part(over)) if among is None else among


def steps_per_epoch(data: RunData, over: Part, batch_size: int, among: torch.Tensor | None = None) -> int:
    n = len(_drawn(data, over, among))
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and (full == 0 or not tail_joins(rest, batch_size)) else 0)


class _Side(NamedTuple):
    """Where a requested batch goes: a side of step `iteration`, and whether it completes that step."""

    epoch: int
    iteration: int
    side: str
    last: bool


def steps(
    data: RunData, over: Part, batch_size: int, epochs: int, generator: torch.Generator, among: torch.Tensor | None = None
) -> Iterator[Step]:
    """The step stream of a training run.

    - all / retain / forget: shuffled batches of that part;
    - retain+forget: every retain batch comes with a forget batch, forget batches cycled;
    - union: shuffled batches of retain and forget samples together, split into the two sides.

    `among` (training positions) replaces the part whose passes make an epoch: a union over
    a subset of D_r with all of D_u, say.
    """
    total = steps_per_epoch(data, over, batch_size, among) * epochs
    shuffler = data.shuffle_generator(generator)
    sides: dict[str, Batch] = {}
    for where, batch in data.read(_requests(data, over, batch_size, epochs, shuffler, among), shuffler):
        sides[where.side] = batch
        if where.last:
            yield Step(sides.get("retain"), sides.get("forget"), where.epoch, epochs, where.iteration, total)
            sides = {}


def _requests(
    data: RunData, over: Part, batch_size: int, epochs: int, generator: torch.Generator, among: torch.Tensor | None
) -> Iterator[tuple[_Side, torch.Tensor]]:
    """The batches a step stream reads, in order: each step's retain side, then its forget side.

    Drawn lazily: for data in memory, shuffles and views come from one generator in the order
    the steps ask for them.
    """
    forget_cycle: list[torch.Tensor] = []
    forget_set = data.split.forget
    part = _drawn(data, over, among)
    i = 0
    for epoch in range(epochs):
        for chunk in shuffled(part, batch_size, generator):
            if over == "forget":
                yield _Side(epoch, i, "forget", True), chunk
            elif over == "union":
                is_forget = torch.isin(chunk, forget_set)
                if (~is_forget).any():
                    yield _Side(epoch, i, "retain", not is_forget.any()), chunk[~is_forget]
                if is_forget.any():
                    yield _Side(epoch, i, "forget", True), chunk[is_forget]
            else:
                yield _Side(epoch, i, "retain", over != "retain+forget"), chunk
                if over == "retain+forget":
                    if not forget_cycle:
                        forget_cycle = shuffled(forget_set, batch_size, generator)
                    yield _Side(epoch, i, "forget", True), forget_cycle.pop(0)
            i += 1
