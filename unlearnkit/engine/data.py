"""The run's data on its device, and the batch streams methods train on."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch

from unlearnkit.data.forget import Split
from unlearnkit.data.images import ImageSet, Transform

Over = Literal["all", "retain", "forget", "retain+forget", "union"]


@dataclass
class Batch:
    """Training samples: `x` is one augmented view, `view()` draws another of the same images."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor  # positions in the training set
    images: torch.Tensor  # the uint8 images the views are made from
    transform: Transform = field(repr=False)
    generator: torch.Generator = field(repr=False)

    def __len__(self) -> int:
        return len(self.y)

    def view(self) -> torch.Tensor:
        """Another independently augmented view (own crop and flip per sample)."""
        return self.transform.train_view(self.images, self.generator)


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

    def __init__(self, images: ImageSet, transform: Transform, split: Split, device: torch.device):
        self.images = images
        self.transform = transform
        self.split = split
        self.num_classes = images.num_classes
        self.train_x = images.train_x.to(device)
        self.train_y = images.train_y.to(device)
        self.test_x = images.test_x.to(device)
        self.test_y = images.test_y.to(device)
        self.test_index = _test_index(images, split)
        self.device = device

    def with_split(self, split: Split) -> RunData:
        """The same images on the same device, another forget/retain split (a step of sequential forgetting)."""
        data = copy.copy(self)
        data.split = split
        data.test_index = _test_index(self.images, split)
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
        index_dev = index.to(self.device)
        images = self.train_x[index_dev]
        x = self.transform.train_view(images, generator)
        return Batch(x, self.train_y[index_dev], index, images, self.transform, generator)

    def eval_views(self, part: str, batch_size: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Un-augmented (test-transform) images and labels of retain, forget, train or test samples."""
        if part == "test":
            x, y, index = self.test_x, self.test_y, self.test_index
        else:
            x, y, index = self.train_x, self.train_y, self.indices("all" if part == "train" else part)
        for chunk in index.split(batch_size):
            chunk = chunk.to(self.device)
            yield self.transform.test_view(x[chunk]), y[chunk]


def _test_index(images: ImageSet, split: Split) -> torch.Tensor:
    """The test samples TA uses: class-wise forgetting removes the forgotten classes from the test set as well."""
    keep = ~torch.isin(images.test_y, torch.tensor(split.classes, dtype=torch.long))
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


def steps_per_epoch(data: RunData, over: Over, batch_size: int) -> int:
    n = len(data.indices(_drawn_part(over)))
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


def steps(data: RunData, over: Over, batch_size: int, epochs: int, generator: torch.Generator) -> Iterator[Step]:
    """The step stream of a training run.

    - all / retain / forget: shuffled batches of that part;
    - retain+forget: every retain batch comes with a forget batch, forget batches cycled;
    - union: shuffled batches of retain and forget samples together, split into the two sides.
    """
    per_epoch = steps_per_epoch(data, over, batch_size)
    total = per_epoch * epochs
    forget_cycle: list[torch.Tensor] = []
    forget_set = data.split.forget
    part = data.indices(_drawn_part(over))
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
