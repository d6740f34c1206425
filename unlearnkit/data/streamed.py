"""A data set given as map-style torch Datasets, read sample by sample with their own transforms."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass
class Datasets:
    """Training and test Datasets whose items are (image tensor, integer label).

    `train` carries the training transforms (random views); `train_eval`, optional, the same
    samples in the same order with test-time transforms, for measuring RA, UA and MIA.
    """

    train: Dataset
    test: Dataset
    classes: list[str]
    train_eval: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)
