"""What a run works on: its data set split into forget and retain sets, and how to make a fresh model."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from unlearnkit.data import catalog
from unlearnkit.data.forget import Split, class_split, given_split, indices_split, random_split, sequential_split
from unlearnkit.data.streamed import Datasets
from unlearnkit.engine import RunData
from unlearnkit.engine.streams import StreamedData, dataset_labels
from unlearnkit.models import Classifier, build
from unlearnkit.spec import ForgetSpec, RunSpec


@dataclass
class Workload:
    """What a run works on: its data (split included), how to make a fresh model, and a given Original.

    From a spec (`spec_workload`), the data set is a registered name and the model an architecture;
    from Python (`unlearnkit.unlearn`), both are the user's own objects.
    """

    data: RunData
    new_model: Callable[[], Classifier]
    data_id: str  # identifies the data in cache keys
    classes: list[str]
    original: Classifier | None = None  # the user's trained model; None: from --original, the cache or training


def spec_workload(spec: RunSpec, device: torch.device) -> Workload:
    """The data set, split and architecture a spec names."""
    loaded = catalog.load(spec.data.name, spec.data.root, spec.data.download, spec.data.image_size)
    if isinstance(loaded, Datasets):
        loaded = catalog.subset_datasets(loaded, spec.data.train_subset, spec.data.test_subset, spec.data.pool,
                                         spec.data.balanced, dataset_labels)
        labels = dataset_labels(loaded.train), dataset_labels(loaded.test)
        split = make_split(spec.forget, labels[0], loaded.num_classes, spec.seed)
        data: RunData = StreamedData(loaded.train, loaded.test, split, device, loaded.num_classes,
                                     loaded.train_eval, spec.data.workers, labels)
        data_id = f"{spec.data.name}:" + fingerprint(*labels)
        classes = loaded.classes
        x = loaded.test[0][0]
        shape = (x.shape[0], min(x.shape[1:]))
    else:
        images, transform = loaded
        augmentation: dict[str, Any] = {"crop_padding": spec.data.crop_padding, "flip": spec.data.flip}
        transform = dataclasses.replace(transform, **{k: v for k, v in augmentation.items() if v is not None})
        images = catalog.subset(images, spec.data.train_subset, spec.data.test_subset, spec.data.pool, spec.data.balanced)
        split = make_split(spec.forget, images.train_y, images.num_classes, spec.seed)
        data = RunData(images, transform, split, device)
        data_id = fingerprint(images.train_x, images.train_y, images.test_x, images.test_y)
        classes = images.classes
        shape = (images.in_channels, min(images.image_size))

    def new_model() -> Classifier:
        return build(spec.model.name, shape[0], len(classes), shape[1], spec.model.width)

    return Workload(data, new_model, data_id, classes)


def make_split(forget: ForgetSpec, labels: torch.Tensor, num_classes: int, seed: int) -> Split:
    n = len(labels)
    if forget.kind == "random":
        return random_split(n, forget.fraction, seed)
    if forget.kind == "class":
        return class_split(labels, forget.classes, num_classes)
    if forget.kind == "sequential":
        return sequential_split(n, forget.fraction, forget.steps, seed)
    if forget.indices is not None:
        return given_split(n, forget.indices)
    assert forget.file is not None  # ForgetSpec's validator: forgetting by indices has a file or a list
    return indices_split(n, forget.file)


def fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:20]
