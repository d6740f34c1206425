"""The preflight of a user's own model and data, run by `unlearnkit.unlearn` before it builds or trains anything.

A mistake in them is one UnlearnkitError that names the argument (and the sample or the tensor), never a
library error or a plugin's fault later on. Nothing given is modified: the model is checked on a copy, which
is the copy the run then unlearns, and the Datasets are only read.

The first samples of each data set are read and passed through the model; labels are read whole (from a
`targets` or `labels` attribute when the Dataset has one, else sample by sample, each sample then checked).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, Subset

from unlearnkit.data.forget import given_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.adapt import as_classifier, evaluating
from unlearnkit.models.base import Classifier

PROBED = 2  # samples of each data set passed through the model
_PAIRS = "Make the Dataset's __getitem__ return (image tensor, integer label), as torchvision's data sets do."
_LABELS = "Labels are integer class indices 0, 1, 2, ... (not floats, strings or one-hot vectors)."


@dataclass(frozen=True)
class OwnInputs:
    """What the preflight found, so that the run reads and works out none of it again."""

    model: Classifier  # a copy of the user's network, split into features and head
    labels: tuple[torch.Tensor, torch.Tensor]  # every label of train_set and of test_set
    num_classes: int
    forget: torch.Tensor | str  # the training indices to forget (a mask turned into its indices), or the scenario given


def check_own_inputs(
    model: Any,
    train_set: Dataset,
    test_set: Dataset,
    forget: Any,
    *,
    num_classes: Any = None,
    head: Any = None,
    train_eval_set: Dataset | None = None,
) -> OwnInputs:
    """Check `unlearnkit.unlearn`'s model, data and forget arguments as the user gave them."""
    if not isinstance(model, nn.Module):
        raise UnlearnkitError(f"model must be a torch nn.Module, not {_kind(model)}",
                              "Pass the trained network itself, not its state dict or a path to it.")
    if head is not None and not isinstance(head, str):
        raise UnlearnkitError(f"head must be the path of a submodule, such as 'fc' or 'classifier.6', not {head!r}",
                              "Name the final nn.Linear as model.named_modules() does, as text.")
    check_finite_weights(model, "model")
    sets = {"train_set": train_set, "test_set": test_set}
    if train_eval_set is not None:
        sets["train_eval_set"] = train_eval_set
    batches = {name: _first_images(data, name) for name, data in sets.items()}
    if train_eval_set is not None and len(train_eval_set) != len(train_set):  # type: ignore[arg-type]
        raise UnlearnkitError(f"train_eval_set has {len(train_eval_set)} samples and train_set "  # type: ignore[arg-type]
                              f"{len(train_set)}: it must hold the same samples, in the same order",  # type: ignore[arg-type]
                              "Give train_eval_set the training samples with test-time transforms, or leave it out.")
    labels = labels_of(train_set, "train_set"), labels_of(test_set, "test_set")
    classes = _class_count(num_classes, labels)
    indices = _forget_indices(forget, len(labels[0]))
    network = copy.deepcopy(model)
    for name, images in batches.items():
        _check_logits(network, images, name, classes, given=num_classes is not None)
    return OwnInputs(as_classifier(network, head, batches["train_set"]), labels, classes, indices)


def check_finite_weights(model: nn.Module, what: str) -> None:
    """Every floating-point tensor of the model's state (parameters and buffers) is finite."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UnlearnkitError(f"{what}'s tensor '{key}' holds NaN or infinite values",
                                  "Unlearning starts from a trained model: check the weights or the training that made them.")


def labels_of(data: Dataset, name: str) -> torch.Tensor:
    """Every label of a Dataset, each a class index (a non-negative integer): from its `targets` or `labels`
    attribute when it has one, else read sample by sample (each sample then checked as a pair)."""
    given = _label_attribute(data)
    if given is None:
        return torch.tensor([_sample(data, name, i)[1] for i in range(len(data))], dtype=torch.long)  # type: ignore[arg-type]
    if given.dtype == torch.bool or given.is_floating_point() or given.is_complex():
        raise UnlearnkitError(f"{name} sample 0: the label is {given[0].item()!r}, not an integer class", _LABELS)
    negative = (given < 0).nonzero().flatten()
    if len(negative):
        raise UnlearnkitError(f"{name} sample {int(negative[0])}: the label is {int(given[negative[0]])}, a negative class",
                              _LABELS)
    return given.long()


def _label_attribute(data: Dataset) -> torch.Tensor | None:
    """The labels a Dataset holds as a one-dimensional `targets` or `labels` attribute (through Subsets), if it does."""
    if isinstance(data, Subset):
        inner = _label_attribute(data.dataset)
        return None if inner is None else inner[torch.as_tensor(data.indices, dtype=torch.long)]
    for attribute in ("targets", "labels"):
        values = getattr(data, attribute, None)
        if isinstance(values, (torch.Tensor, np.ndarray, Sequence)) and len(values) == len(data):  # type: ignore[arg-type]
            try:
                labels = torch.as_tensor(values)
            except (TypeError, ValueError, RuntimeError):
                return None  # not numbers: each sample's label is read and checked instead
            if labels.dim() == 1:
                return labels
    return None


def _first_images(data: Dataset, name: str) -> torch.Tensor:
    """The first images of a non-empty map-style Dataset, as one batch."""
    if isinstance(data, IterableDataset) or not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise UnlearnkitError(f"{name} must be a map-style torch Dataset (with __len__ and __getitem__), not {_kind(data)}",
                              _PAIRS)
    if len(data) == 0:
        raise UnlearnkitError(f"{name} is empty", "Give it the samples of the data set.")
    images = [_sample(data, name, i)[0] for i in range(min(PROBED, len(data)))]
    for i, image in enumerate(images):
        if image.shape != images[0].shape:
            raise UnlearnkitError(f"{name} sample {i}: the image has shape {tuple(image.shape)}, sample 0's "
                                  f"{tuple(images[0].shape)}", "A batch needs images of one shape: resize them in the Dataset.")
    return torch.stack(images)


def _sample(data: Dataset, name: str, i: int) -> tuple[torch.Tensor, int]:
    """Sample `i` of a Dataset as (image tensor with finite values, class index)."""
    try:
        item = data[i]
    except Exception as exc:  # the user's __getitem__, whatever it raises
        raise UnlearnkitError(f"reading {name} sample {i} fails: {type(exc).__name__}: {_first_line(exc)}", _PAIRS) from exc
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise UnlearnkitError(f"{name} sample {i} is {_kind(item)}, not an (image, label) pair", _PAIRS)
    image, label = item
    if not isinstance(image, torch.Tensor):
        raise UnlearnkitError(f"{name} sample {i}: the image is {_kind(image)}, not a tensor",
                              "Turn images into tensors in the Dataset, e.g. with torchvision.transforms.ToTensor().")
    if image.is_floating_point() and not torch.isfinite(image).all():
        raise UnlearnkitError(f"{name} sample {i}: the image holds NaN or infinite values", "Give images of finite values.")
    return image, _class_index(label, name, i)


def _class_index(label: Any, name: str, i: int) -> int:
    value = label
    if isinstance(label, torch.Tensor) and label.numel() == 1 or isinstance(label, (np.ndarray, np.generic)) and label.size == 1:
        value = label.item()  # a one-element tensor or array: its Python number
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnlearnkitError(f"{name} sample {i}: the label is {_shown(value)}, not an integer class", _LABELS)
    if value < 0:
        raise UnlearnkitError(f"{name} sample {i}: the label is {value}, a negative class", _LABELS)
    return value


def _class_count(num_classes: Any, labels: tuple[torch.Tensor, torch.Tensor]) -> int:
    """The classes the run has: `num_classes` when given (at least every label + 1), else the highest label + 1."""
    if num_classes is None:
        return max(int(y.max()) for y in labels) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise UnlearnkitError(f"num_classes must be an integer of at least 2, not {num_classes!r}",
                              "Pass the number of classes the model tells apart, or leave it out to count them from the labels.")
    count = int(num_classes)
    for y, name in zip(labels, ("train_set", "test_set")):
        above = (y >= count).nonzero().flatten()
        if len(above):
            raise UnlearnkitError(
                f"num_classes={count}, but {name} sample {int(above[0])} has label {int(y[above[0]])}",
                f"Labels are classes 0..num_classes-1: pass num_classes={max(int(y.max()) for y in labels) + 1} "
                "or more, or leave it out to count the classes from the labels.",
            )
    return count


def _forget_indices(forget: Any, n: int) -> torch.Tensor | str:
    """The training indices `forget` names (indices, or a boolean mask over the training set), or the scenario string."""
    if isinstance(forget, str):
        return forget
    try:
        values = torch.as_tensor(forget).flatten()
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise UnlearnkitError(f"forget must be training-set indices, a boolean mask or a scenario, not {_kind(forget)}",
                              "Give a list, array or tensor of indices, a mask with one bool per training sample, "
                              "or a scenario such as 'class:3' or 'random:0.1'.") from None
    if values.dtype == torch.bool:
        if len(values) != n:
            raise UnlearnkitError(f"forget is a boolean mask of {len(values)} values, but train_set has {n} samples",
                                  "A mask over the training set has one value per training sample.")
        if not values.any():
            raise UnlearnkitError("forget is a boolean mask that selects no sample", "Set True at the samples to forget.")
        values = values.nonzero().flatten()
    return given_split(n, values, "forget").forget


def _check_logits(network: nn.Module, images: torch.Tensor, name: str, classes: int, given: bool) -> None:
    """The network maps a batch of the data set's images to finite logits, one per class."""
    device = next((t.device for t in network.state_dict().values()), torch.device("cpu"))
    try:
        with evaluating(network):
            output = network(images.to(device))
    except Exception as exc:  # the user's forward on the user's images, whatever it raises
        raise _forward_failure(network, images, name, exc) from exc
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or len(output) != len(images):
        shown = f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else _kind(output)
        raise UnlearnkitError(f"model maps a batch of {len(images)} {name} images to {shown}, not to one row of logits each",
                              "Give a classifier whose forward returns a (batch, classes) tensor of logits.")
    width = output.shape[1]
    if width != classes:
        counted = f"num_classes={classes}" if given else f"its labels name classes 0..{classes - 1}"
        more = f", or pass num_classes={width} if the data lacks some of the model's classes" if width > classes else ""
        raise UnlearnkitError(f"model gives {width} logits per sample, but the data has {classes} classes ({counted})",
                              f"Give a model whose final layer has {classes} outputs{more}.")
    if not torch.isfinite(output).all():
        raise UnlearnkitError(f"model gives NaN or infinite logits on {name} samples 0 to {len(images) - 1}",
                              "Its weights and these images are finite: check its forward (a division by zero, an overflow).")


def _forward_failure(network: nn.Module, images: torch.Tensor, name: str, exc: Exception) -> UnlearnkitError:
    """What a failed forward pass means: images with the wrong number of channels for the first convolution,
    or, whatever else, the model's own error on these images."""
    first = next(((path, m) for path, m in network.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if first is not None and images.dim() > 1 and images.shape[1] != first[1].in_channels:
        path, conv = first
        return UnlearnkitError(
            f"model's first convolution '{path}' takes {conv.in_channels}-channel images, but {name}'s are "
            f"{images.shape[1]}-channel (shape {tuple(images.shape[1:])})",
            "Give images with the channels the model was built for (e.g. grey to RGB in the Dataset's transform), "
            "or a model built for these images.",
        )
    return UnlearnkitError(
        f"model fails on a batch of {len(images)} {name} images (shape {tuple(images.shape[1:])}, "
        f"{str(images.dtype).removeprefix('torch.')}): {type(exc).__name__}: {_first_line(exc)}",
        "Its forward must take a batch of the Dataset's images, as in the model's own training.",
    )


def _kind(value: Any) -> str:
    """What a value is, for a message: 'a dict', 'a tuple of 3 items', 'a PIL.Image.Image', 'None'."""
    if value is None:
        return "None"
    cls = type(value)
    named = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
    return f"a {named}" + (f" of {len(value)} items" if isinstance(value, (tuple, list)) else "")


def _shown(value: Any) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    return repr(value)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
