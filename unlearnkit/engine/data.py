"""The run's data on its device, and the batch streams methods train on.

Two kinds of data: images held in memory as uint8 tensors, whose views are made
on whole batches at once (`RunData`), and a user's map-style torch Datasets,
read sample by sample with the user's own transforms (`StreamedData`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from unlearnkit.data.forget import Split
from unlearnkit.data.images import ImageSet, Transform

Over = Literal["all", "retain", "forget", "retain+forget", "union"]


@dataclass
class Batch:
    """Training samples: `x` is one augmented view, `view()` draws another of the same samples."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the training set
    redraw: Callable[[], torch.Tensor] = field(repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def view(self) -> torch.Tensor:
        """Another independently augmented view of the same samples (their own random transforms)."""
        return self.redraw()


@dataclass
class Step:
    """One optimisation step's data. Either side may be None, depending on what the method trains over."""

    retain: Batch | None
    forget: Batch | None
    epoch: int
    epochs: int
    iteration: int
    iterations: int
    _joint: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def joint_x(self) -> torch.Tensor:
        """The retain then the forget samples' views in one tensor (made once per step).

        For methods that forward both sides together, so that BatchNorm normalises
        them as one batch; the trainer recognises this tensor and hands augmenters
        the features of its retain rows, with no extra forward.
        """
        if self._joint is None:
            parts = [b.x for b in (self.retain, self.forget) if b is not None]
            self._joint = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self._joint

    @property
    def progress(self) -> float:
        """Fraction of training done before this step, in [0, 1)."""
        return self.iteration / max(self.iterations, 1)

    def __len__(self) -> int:
        return sum(len(b) for b in (self.retain, self.forget) if b is not None)


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
        return Batch(x, self.train_y[index_dev], index, lambda: transform.train_view(images, generator))

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

    `train` gives training views (its random transforms draw a fresh view at every read, which is
    also the second view coun-cl asks for); `train_eval`, when given, holds the same samples with
    test-time transforms for measuring RA, UA and MIA (else `train` is used). Evaluation passes go
    through a DataLoader with `workers` processes; training batches are read in this process, so
    that the run's seed fixes them.
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

    def _read(self, index: torch.Tensor) -> torch.Tensor:
        return default_collate([self.train_set[i][0] for i in index.tolist()]).to(self.device)

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> Batch:
        return Batch(self._read(index), self.train_y[index].to(self.device), index, lambda: self._read(index))

    def eval_views(self, part: str, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if part == "test":
            source, index = self.test_set, self.test_index
        else:
            source, index = self.train_eval, self.indices("all" if part == "train" else part)
        loader = DataLoader(Subset(source, index.tolist()), batch_size=batch_size, num_workers=self.workers)
        for x, y in loader:
            yield x.to(self.device), torch.as_tensor(y).to(self.device)


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


def shuffled(index: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled pass in batches; a trailing batch of one sample joins the one before (BatchNorm needs two)."""
    chunks = list(index[torch.randperm(len(index), generator=generator)].split(batch_size))
    if batch_size > 1 and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _drawn_part(over: Over) -> str:
    """The part whose shuffled passes set an epoch: retain for retain+forget, all for union."""
    return {"retain+forget": "retain", "union": "all"}.get(over, over)


def _drawn(data: RunData, over: Over, among: torch.Tensor | None) -> torch.Tensor:
    """The training positions whose shuffled passes make an epoch: `among` when given, else the stream's part."""
    return data.indices(_drawn_part(over)) if among is None else among


def steps_per_epoch(data: RunData, over: Over, batch_size: int, among: torch.Tensor | None = None) -> int:
    n = len(_drawn(data, over, among))
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


def steps(
    data: RunData, over: Over, batch_size: int, epochs: int, generator: torch.Generator, among: torch.Tensor | None = None
) -> Iterator[Step]:
    """The step stream of a training run.

    - all / retain / forget: shuffled batches of that part;
    - retain+forget: every retain batch comes with a forget batch, forget batches cycled;
    - union: shuffled batches of retain and forget samples together, split into the two sides.

    `among` (training positions) replaces the part whose passes make an epoch: a union over
    a subset of D_r with all of D_u, say.
    """
    per_epoch = steps_per_epoch(data, over, batch_size, among)
    total = per_epoch * epochs
    forget_cycle: list[torch.Tensor] = []
    forget_set = data.split.forget
    part = _drawn(data, over, among)
    i = 0
    for epoch in range(epochs):
        for chunk in shuffled(part, batch_size, generator):
            retain = forget = None
            if over == "forget":
                forget = data.batch(chunk, generator)
            elif over == "union":
                is_forget = torch.isin(chunk, forget_set)
                if (~is_forget).any():
                    retain = data.batch(chunk[~is_forget], generator)
                if is_forget.any():
                    forget = data.batch(chunk[is_forget], generator)
            else:
                retain = data.batch(chunk, generator)
                if over == "retain+forget":
                    if not forget_cycle:
                        forget_cycle = shuffled(forget_set, batch_size, generator)
                    forget = data.batch(forget_cycle.pop(0), generator)
            yield Step(retain, forget, epoch, epochs, i, total)
            i += 1
