"""Bad model, data and forget arguments to `unlearnkit.unlearn`, listed and generated.

Each case must be refused before any training: one UnlearnkitError naming the argument (and the sample or
the tensor), never a PluginFault or a library's error; the user's model and Datasets left as they were, and
nothing written to the working directory. The preflight (`check_own_inputs`) is checked directly as well.
No model is trained here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import unlearnkit as uk
from unlearnkit.errors import PluginFault, UnlearnkitError
from unlearnkit.inputs import check_own_inputs

FAST = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
N_TRAIN, N_TEST, CLASSES = 24, 8, 4


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(autouse=True)
def no_training(monkeypatch, tmp_path):
    """Every case here must be refused before training: a backward pass fails the test at once. The working
    directory is the test's own, so that anything written there shows."""
    def trained(*args, **kwargs):
        raise RuntimeError("training started before the input checks refused the arguments")

    monkeypatch.setattr(torch.autograd, "backward", trained)
    monkeypatch.chdir(tmp_path)


def images(n: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, 4, 4, generator=torch.Generator().manual_seed(seed))


def labels(n: int) -> torch.Tensor:
    return torch.arange(n) % CLASSES


def network(outputs: int = CLASSES) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, outputs))


def arguments(**changes: Any) -> dict[str, Any]:
    """Good arguments, with some replaced."""
    given = dict(model=network(), train_set=TensorDataset(images(N_TRAIN), labels(N_TRAIN)),
                 test_set=TensorDataset(images(N_TEST, seed=1), labels(N_TEST)), forget=[0, 1, 2])
    return given | changes


def refused(**changes: Any) -> str:
    """The message `unlearn` refuses the arguments with, after checking that the preflight gives the same one,
    that it blames the user, not a plugin, and that the arguments and the working directory are untouched."""
    given = arguments(**changes)
    snapshot = copy.deepcopy(given)
    with pytest.raises(UnlearnkitError) as direct:
        check_own_inputs(**given)
    rest = dict(given)
    with pytest.raises(UnlearnkitError) as caught:
        uk.unlearn(rest.pop("model"), rest.pop("train_set"), rest.pop("forget"), **rest)
    assert not isinstance(caught.value, PluginFault)
    assert caught.value.message == direct.value.message and caught.value.hint
    assert all(same(snapshot[k], given[k]) for k in given), "an argument was modified"
    assert not any(Path.cwd().iterdir()), "something was written to the working directory"
    return caught.value.message


def same(a: Any, b: Any) -> bool:
    """A model's tensors and modes, or a TensorDataset's tensors, are as they were."""
    if isinstance(a, nn.Module):
        return (a.state_dict().keys() == b.state_dict().keys()
                and all(equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
                and [m.training for m in a.modules()] == [m.training for m in b.modules()])
    if isinstance(a, TensorDataset):
        return all(equal(x, y) for x, y in zip(a.tensors, b.tensors))
    return True


def equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal, NaN where the other has NaN (a case's bad values included)."""
    return a.shape == b.shape and torch.equal(a.nan_to_num(), b.nan_to_num())


# --------------------------------------------------------------------------- every kind of mistake, listed


class Items(Dataset):
    """A Dataset whose samples are whatever `make(i)` returns."""

    def __init__(self, n: int, make):
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.make(i)


class Targets(TensorDataset):
    """A TensorDataset with its labels as a `targets` attribute too (as torchvision's data sets have)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__(x, y)
        self.targets = y


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield from zip(images(4), labels(4))


def nan_weight() -> nn.Module:
    model = network()
    with torch.no_grad():
        model[3].bias[1] = float("inf")
    return model


def nan_image() -> TensorDataset:
    x = images(N_TRAIN)
    x[5, 0, 1, 1] = float("nan")
    return TensorDataset(x, labels(N_TRAIN))


def with_labels(y: torch.Tensor, dataset=TensorDataset) -> Dataset:
    return dataset(images(len(y)), y)


def conv_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))


class Squashed(nn.Module):
    """A classifier whose output is not its final layer's: no features / head split describes it."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(16, CLASSES)

    def forward(self, x):
        return torch.tanh(self.out(x.flatten(1)))


def no_read(i: int):
    raise KeyError(i)


CASES = {
    # the model
    "a state dict for a model": (lambda: {"model": network().state_dict()},
                                 "model must be a torch nn.Module, not a collections.OrderedDict"),
    "too few logits": (lambda: {"model": network(3)}, "model gives 3 logits per sample, but the data has 4 classes"),
    "too many logits": (lambda: {"model": network(10)}, "model gives 10 logits per sample, but the data has 4 classes"),
    "a non-finite weight": (lambda: {"model": nan_weight()}, "model's tensor '3.bias' holds NaN or infinite values"),
    "images with other channels": (lambda: {"model": conv_network()},
                                   "model's first convolution '0' takes 3-channel images, but train_set's are 1-channel"),
    "a forward that fails": (lambda: {"model": nn.Sequential(nn.Linear(16, CLASSES))},
                             "model fails on a batch of 2 train_set images (shape (1, 4, 4), float32): RuntimeError"),
    "an output no nn.Linear gives": (lambda: {"model": Squashed()}, "its output on a batch of samples is not an nn.Linear's output"),
    # the head
    "a head that is not there": (lambda: {"head": "classifier.6"},
                                 "model has no submodule 'classifier.6' (its top-level children are: 0, 1, 2 and 1 more)"),
    "a head below a leaf": (lambda: {"head": "3.weight"}, "model has no submodule '3.weight' (the children of '3': none)"),
    "a head that is not linear": (lambda: {"head": "2"}, "the module at '2' is a ReLU, not the final nn.Linear"),
    "a head that is not the last layer": (lambda: {"head": "1"},
                                          "the model's output is not what its layer '1' gives: the output comes from '3'"),
    "a head that is no path": (lambda: {"head": 3}, "head must be the path of a submodule"),
    # the data
    "an empty train set": (lambda: {"train_set": TensorDataset(images(0), labels(0))}, "train_set is empty"),
    "an empty test set": (lambda: {"test_set": TensorDataset(images(0), labels(0))}, "test_set is empty"),
    "an iterable data set": (lambda: {"test_set": Stream()}, "test_set must be a map-style torch Dataset"),
    "samples that are dicts": (lambda: {"train_set": Items(N_TRAIN, lambda i: {"image": images(1)[0], "label": 0})},
                               "train_set sample 0 is a dict, not an (image, label) pair"),
    "samples of three items": (lambda: {"test_set": Items(N_TEST, lambda i: (images(1)[0], 0, "x"))},
                               "test_set sample 0 is a tuple of 3 items, not an (image, label) pair"),
    "a sample that cannot be read": (lambda: {"train_set": Items(N_TRAIN, no_read)}, "reading train_set sample 0 fails: KeyError: 0"),
    "an image that is no tensor": (lambda: {"train_set": Items(N_TRAIN, lambda i: (np.zeros((1, 4, 4)), 0))},
                                   "train_set sample 0: the image is a numpy.ndarray, not a tensor"),
    "an image with NaN": (lambda: {"train_set": nan_image()}, "train_set sample 5: the image holds NaN or infinite values"),
    "a negative label": (lambda: {"train_set": with_labels(labels(N_TRAIN) - (torch.arange(N_TRAIN) == 7).long() * 9)},
                         "train_set sample 7: the label is -"),
    "a negative target": (lambda: {"test_set": with_labels(torch.tensor([0, 1, 2, -1, 0, 1, 2, 3]), Targets)},
                          "test_set sample 3: the label is -1, a negative class"),
    "float labels": (lambda: {"train_set": with_labels(labels(N_TRAIN).float())},
                     "train_set sample 0: the label is 0.0, not an integer class"),
    "float targets": (lambda: {"test_set": with_labels(labels(N_TEST) + 0.5, Targets)},
                      "test_set sample 0: the label is 0.5, not an integer class"),
    "one-hot labels": (lambda: {"train_set": with_labels(nn.functional.one_hot(labels(N_TRAIN)))},
                       "train_set sample 0: the label is a Tensor of shape (4,), not an integer class"),
    "num_classes below the labels": (lambda: {"num_classes": 2}, "num_classes=2, but train_set sample 2 has label 2"),
    "num_classes above the model's": (lambda: {"num_classes": 6},
                                      "model gives 4 logits per sample, but the data has 6 classes (num_classes=6)"),
    "num_classes not a count": (lambda: {"num_classes": 1.5}, "num_classes must be an integer of at least 2, not 1.5"),
    "a short train_eval_set": (lambda: {"train_eval_set": TensorDataset(images(3), labels(3))},
                               "train_eval_set has 3 samples and train_set 24"),
    # the forget argument
    "an empty list": (lambda: {"forget": []}, "forget is empty: it names no training sample"),
    "an empty array": (lambda: {"forget": np.array([], dtype=np.int64)}, "forget is empty: it names no training sample"),
    "a short mask": (lambda: {"forget": torch.ones(3, dtype=torch.bool)},
                     "forget is a boolean mask of 3 values, but train_set has 24 samples"),
    "an empty mask": (lambda: {"forget": np.zeros(N_TRAIN, dtype=bool)}, "forget is a boolean mask that selects no sample"),
    "a full mask": (lambda: {"forget": [True] * N_TRAIN}, "forget names every training sample"),
    "floats": (lambda: {"forget": np.array([1.0, 2.5])}, "forget must be integers, not float64"),
    "an index outside": (lambda: {"forget": torch.tensor([3, 24])}, "forget must name indices in 0..23: 24 at position 1"),
    "a negative index": (lambda: {"forget": [-1]}, "forget must name indices in 0..23: -1 at position 0"),
    "an index twice": (lambda: {"forget": [5, 2, 5]}, "forget: index 5 is named twice (positions 0 and 2)"),
    "None": (lambda: {"forget": None}, "forget must be training-set indices, a boolean mask or a scenario, not None"),
    "a set": (lambda: {"forget": {1, 2}}, "forget must be training-set indices, a boolean mask or a scenario, not a set"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_mistake_is_one_message_naming_it_before_training(case):
    changes, expected = CASES[case]
    assert expected in refused(**changes())


def test_good_arguments_pass_and_give_what_the_run_needs():
    given = arguments(forget=np.arange(N_TRAIN) % 6 == 0, train_set=with_labels(labels(N_TRAIN), Targets))
    model = given["model"]
    checked = check_own_inputs(**given)
    assert checked.forget.tolist() == [0, 6, 12, 18] and checked.num_classes == CLASSES
    assert torch.equal(checked.labels[0], labels(N_TRAIN)) and torch.equal(checked.labels[1], labels(N_TEST))
    assert checked.model.head_path == "3" and checked.model.network() is not model  # a copy: the model is the user's
    assert check_own_inputs(**given | {"forget": "class:1", "num_classes": np.int64(CLASSES)}).forget == "class:1"
    x = images(2)
    with torch.no_grad():
        assert torch.equal(checked.model(x), model(x))


def test_the_users_model_keeps_its_modes_and_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, CLASSES)).train()
    model[2].eval()  # a frozen BatchNorm of the user's
    statistics = copy.deepcopy(model.state_dict())
    checked = check_own_inputs(**arguments(model=model))
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    assert [m.training for m in checked.model.network().modules()] == [True, True, True, False, True]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in statistics.items())


# --------------------------------------------------------------------------- generated


def forget_oracle(values: list[Any], mask: bool) -> str | list[int]:
    """What the preflight must make of a forget list: the start of its message, or the indices it names."""
    if mask:
        if len(values) != N_TRAIN:
            return "forget is a boolean mask of"
        chosen = [i for i, v in enumerate(values) if v]
        return "forget is a boolean mask that selects no sample" if not chosen else (
            "forget names every training sample" if len(chosen) == N_TRAIN else chosen)
    if not values:
        return "forget is empty"
    if any(isinstance(v, float) for v in values):
        return "forget must be integers"
    if any(not 0 <= v < N_TRAIN for v in values):
        return "forget must name indices in 0..23"
    if len(set(values)) < len(values):
        return "forget: index"
    return sorted(values) if len(values) < N_TRAIN else "forget names every training sample"


INDICES = st.lists(st.integers(-3, N_TRAIN + 3), max_size=8) | st.lists(st.floats(-1, 30, allow_nan=False), min_size=1, max_size=3)
MASKS = st.lists(st.booleans(), min_size=N_TRAIN - 2, max_size=N_TRAIN + 1)
AS = st.sampled_from([list, np.array, torch.tensor])


@FAST
@given(st.one_of(INDICES.map(lambda v: (v, False)), MASKS.map(lambda v: (v, True))), AS)
def test_generated_forget_arguments_are_named_exactly_or_refused_naming_the_fault(case, form):
    values, mask = case
    expected = forget_oracle(values, mask)
    given = arguments(forget=form(values) if values else form([]))
    if isinstance(expected, list):
        assert check_own_inputs(**given).forget.tolist() == expected
        return
    message = refused(forget=given["forget"])
    assert message.startswith(expected), message


@FAST
@given(st.lists(st.integers(-2, CLASSES + 1) | st.floats(0, 3), min_size=N_TEST, max_size=N_TEST),
       st.sampled_from([TensorDataset, Targets]), st.none() | st.integers(0, CLASSES + 2))
def test_generated_labels_and_class_counts_are_checked_sample_by_sample(values, dataset, num_classes):
    floats = any(isinstance(v, float) for v in values)  # then the whole label tensor is floats
    y = torch.tensor(values, dtype=torch.float32 if floats else torch.long)
    changes: dict[str, Any] = {"test_set": dataset(images(N_TEST), y), "num_classes": num_classes}
    ints = [int(v) for v in values]
    negative = next((i for i, v in enumerate(ints) if v < 0), None)
    above = next((i for i, v in enumerate(ints) if num_classes is not None and v >= num_classes), None)
    if floats:
        assert refused(**changes).startswith("test_set sample 0: the label is")
    elif negative is not None:
        assert refused(**changes).startswith(f"test_set sample {negative}: the label is {ints[negative]}, a negative class")
    elif num_classes is not None and num_classes < 2:
        assert refused(**changes).startswith("num_classes must be an integer of at least 2")
    elif num_classes is not None and num_classes < CLASSES:  # the training labels reach 3
        assert refused(**changes).startswith(f"num_classes={num_classes}, but train_set sample {num_classes} has label")
    elif above is not None:
        assert refused(**changes).startswith(f"num_classes={num_classes}, but test_set sample {above} has label")
    elif (num_classes or max(CLASSES, max(ints) + 1)) != CLASSES:
        assert refused(**changes).startswith("model gives 4 logits per sample, but the data has")
    else:
        assert check_own_inputs(**arguments(**changes)).num_classes == CLASSES
