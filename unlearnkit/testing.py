"""Testing plugins: the conformance kit, and the small, fast fixtures it is built from.

A plugin author calls the kit from their own pytest suite::

    from unlearnkit.testing import check_method

    def test_my_method_conforms():
        check_method(MyMethod)

and writes tests of what defines their method with the fixtures (a learnable tiny
image set, a tiny model, a ready Workbench)::

    from unlearnkit.testing import tiny_run

    def test_my_method_lowers_forget_accuracy():
        run = tiny_run(MyMethod)
        MyMethod(MyMethod.Params(epochs=1)).unlearn(run)
        ...
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from unlearnkit.api import Augmenter, Method, Params, Registered, TrainParams
from unlearnkit.checkpoint import load_model, save_model
from unlearnkit.data.forget import Split, class_split, random_split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import AugmentedMethod, CostMeter, RunData, Workbench, fit, retain_cross_entropy
from unlearnkit.models import Classifier, small_cnn

TINY_TRANSFORM = Transform(mean=(0.5,), std=(0.25,), crop_padding=1, flip=True)


def tiny_images(n_train: int = 40, n_test: int = 16, classes: int = 4, size: int = 8, seed: int = 0) -> ImageSet:
    """Grey images whose brightness encodes the class, plus noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % classes
        level = labels.view(-1, 1, 1, 1) * (200 // max(classes - 1, 1))
        noise = torch.randint(0, 50, (n, 1, size, size), generator=g)
        return (level + noise).clamp(0, 255).to(torch.uint8), labels

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return ImageSet(train_x, train_y, test_x, test_y, [f"c{i}" for i in range(classes)])


class RecordingData(RunData):
    """RunData that records every training index it hands out: as training batches (`drawn`) and as
    evaluation views (`viewed`). `touched` is both: what a method that must not see D_u may never include."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drawn: list[int] = []
        self.viewed: list[int] = []

    @property
    def touched(self) -> set[int]:
        return set(self.drawn) | set(self.viewed)

    def batch(self, index, generator):
        self.drawn += index.tolist()
        return super().batch(index, generator)

    def eval_views(self, part, batch_size=1024):
        if part != "test":
            self.viewed += self.indices("all" if part == "train" else part).tolist()
        return super().eval_views(part, batch_size)


def tiny_data(
    images: ImageSet | None = None, forget_fraction: float = 0.25, forget_classes: Sequence[int] = (), seed: int = 0
) -> RecordingData:
    images = images or tiny_images()
    split: Split = (
        class_split(images.train_y, list(forget_classes), images.num_classes)
        if forget_classes
        else random_split(len(images.train_y), forget_fraction, seed)
    )
    return RecordingData(images, TINY_TRANSFORM, split, torch.device("cpu"))


def tiny_model(classes: int = 4, channels: int = 1) -> Classifier:
    return small_cnn(channels, classes, width=4)


_TRAINED: dict[tuple, dict[str, torch.Tensor]] = {}


def trained_model(data: RunData, epochs: int = 15) -> Classifier:
    """A tiny model trained on all of the data's training set (cached per data set shape within a process)."""
    assert data.images is not None and data.transform is not None and data.train_x is not None  # images in memory
    key = (tuple(data.train_x.shape), data.num_classes, epochs, data.train_y.sum().item())
    torch.manual_seed(0)
    model = tiny_model(data.num_classes, data.train_x.shape[1])
    if key not in _TRAINED:
        plain = RunData(data.images, data.transform, data.split, data.device)  # a RecordingData stays untouched
        fit(model, plain, "all", retain_cross_entropy,
            TrainParams(epochs=epochs, lr=0.05, batch_size=8), generator=torch.Generator().manual_seed(0), cost=CostMeter(1))
        _TRAINED[key] = copy.deepcopy(model.state_dict())
    model.load_state_dict(_TRAINED[key])
    return model


def tiny_run(method: type[Method] | Method, data: RunData | None = None, model: Classifier | None = None, seed: int = 0) -> Workbench:
    """An Workbench over tiny data, starting from a briefly trained tiny model, set up as the pipeline would."""
    data = data if data is not None else tiny_data()
    model = model if model is not None else trained_model(data)
    assert data.train_x is not None  # the tiny fixtures hold their images in memory
    classes, channels = data.num_classes, data.train_x.shape[1]
    return Workbench(
        model, data, recipe=TrainParams(epochs=2, lr=0.05, batch_size=8),
        new_model=lambda: tiny_model(classes, channels), cost=CostMeter(1), seed=seed,
        uses_forget=method.uses_forget, name=method.name,
    )


# --------------------------------------------------------------------------- the conformance kit


class ConformanceError(AssertionError):
    """A plugin broke a promise every plugin of its kind makes; the message names the run and the promise."""


def check_method(
    method: type[Method],
    params: Mapping[str, Any] | None = None,
    *,
    augmenters: Iterable[type[Augmenter]] | None = None,
    augmenter_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Run a method plugin through what every method must do; raise ConformanceError at the first failure.

    The method runs on a tiny model and data in each forget scenario it supports
    (random, class), alone and wrapped by each augmenter that can wrap it
    (`augmenters`, default: every installed augmenter plugin). Every run must
    leave finite weights with one output per class, count its cost, save as
    safetensors and reload to the same outputs, and give identical weights when
    repeated with the same seed. A method declaring `uses_forget = False` must
    never draw or view a forget sample; an augmenter wrapping a method that
    declares `trains_on_retain` must be handed retain batches.

    `params` override the method's defaults (merged over a short schedule: one
    epoch, batches of 8, where the Params have those fields); `augmenter_params`
    does the same per augmenter name. Returns the names of the runs checked.
    """
    if augmenters is None:
        augmenters = _installed_classes(Augmenter)
    _check_plugin_class(method, Method)
    wrappers = [a for a in augmenters if a.cannot_wrap(method) is None]
    checked = []
    for scenario in _scenarios(method):
        checked.append(_check_run(method, params, None, None, scenario))
        for augmenter in wrappers:
            extra = (augmenter_params or {}).get(augmenter.name)
            checked.append(_check_run(method, params, augmenter, extra, scenario))
    return checked


def check_augmenter(
    augmenter: type[Augmenter],
    params: Mapping[str, Any] | None = None,
    *,
    methods: Iterable[type[Method]] | None = None,
) -> list[str]:
    """Run an augmenter plugin wrapped around each method it can wrap (`methods`, default: every installed
    method plugin), with the checks of `check_method`. Returns the names of the runs checked."""
    if methods is None:
        methods = _installed_classes(Method)
    _check_plugin_class(augmenter, Augmenter)
    checked = []
    for method in methods:
        if augmenter.cannot_wrap(method) is None:
            for scenario in _scenarios(method):
                checked.append(_check_run(method, None, augmenter, params, scenario))
    if not checked:
        raise ConformanceError(f"augmenter '{augmenter.name}' can wrap none of the methods it was checked with")
    return checked


def _installed_classes(base: type[Registered]) -> list[Any]:
    from unlearnkit.plugins import discover

    return [entry.cls for entry in discover(env={}).entries(base)]


def _check_plugin_class(cls: type[Method] | type[Augmenter], base: type[Method] | type[Augmenter]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConformanceError(f"{cls!r} is not a subclass of unlearnkit.{base.__name__}")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise ConformanceError(f"{cls.__name__} has no `name`: set a class attribute name = '...'")
    if not cls.summary():
        raise ConformanceError(f"'{cls.name}' has no docstring: its first line is what `unlearn plugins` shows")
    try:
        cls.Params()
    except Exception as exc:
        raise ConformanceError(f"'{cls.name}': its Params cannot be built from their defaults: {exc}") from exc


def _scenarios(method: type[Method]) -> list[str]:
    found: list[str] = [s for s in ("random", "class") if s in method.scenarios]
    if not found:
        raise ConformanceError(f"'{method.name}' supports neither random nor class forgetting: nothing to check it on")
    return found


def _short(cls: type[Method] | type[Augmenter], given: Mapping[str, Any] | None) -> Params:
    """The plugin's params: a short schedule where it has one, then what the caller gave."""
    fields = cls.Params.model_fields
    short = {k: v for k, v in (("epochs", 1), ("batch_size", 8)) if k in fields}
    return cls.Params.model_validate({**short, **(given or {})})


def _check_run(
    method_cls: type[Method],
    method_params: Mapping[str, Any] | None,
    augmenter_cls: type[Augmenter] | None,
    augmenter_params: Mapping[str, Any] | None,
    scenario: str,
) -> str:
    label = "+".join([method_cls.name, *([augmenter_cls.name] if augmenter_cls else [])]) + f" ({scenario} forgetting)"

    def fail(promise: str) -> ConformanceError:
        return ConformanceError(f"{label}: {promise}")

    def unlearn_once() -> tuple[Workbench, RecordingData, list[int]]:
        data = tiny_data() if scenario == "random" else tiny_data(forget_classes=[1])
        method: Method = method_cls(_short(method_cls, method_params))
        retain_batches: list[int] = []
        if augmenter_cls is not None:
            augmenter = augmenter_cls(_short(augmenter_cls, augmenter_params))
            terms = augmenter.loss_terms

            def counted(model, batch, features):  # records that the method handed the augmenter a retain batch
                retain_batches.append(len(batch))
                return terms(model, batch, features)

            augmenter.loss_terms = counted  # type: ignore[method-assign]
            method = AugmentedMethod(method, [augmenter])
        run = tiny_run(method, data=data)
        torch.manual_seed(0)  # methods that draw from the global generator are repeatable too
        try:
            method.unlearn(run)
        except Exception as exc:
            raise fail(f"unlearn(run) raised {type(exc).__name__}: {exc}") from exc
        return run, data, retain_batches

    run, data, retain_batches = unlearn_once()
    state = run.model.state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise fail(f"left non-finite weights in {', '.join(bad[:3])}")
    if run.model.head.out_features != data.num_classes:
        raise fail(f"left a head with {run.model.head.out_features} outputs for {data.num_classes} classes")
    if run.cost.forwards <= 0:
        raise fail("counted no cost: train through run.train/run.fit, or count forwards with run.cost.forwarded(n)")
    if not method_cls.uses_forget and data.touched & set(data.split.forget.tolist()):
        raise fail("declares uses_forget = False, yet drew or viewed forget samples")
    if augmenter_cls is not None and method_cls.trains_on_retain and not retain_batches:
        raise fail("declares trains_on_retain, yet handed the augmenter no retain batch: train through run.train/run.fit")

    assert data.transform is not None and data.test_x is not None  # tiny_data holds its images in memory
    x = data.transform.test_view(data.test_x[:4])
    reloaded = tiny_model(data.num_classes)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        save_model(path, run.model)
        load_model(path, reloaded)
    run.model.eval(), reloaded.eval()
    with torch.no_grad():
        if not torch.equal(run.model(x), reloaded(x)):
            raise fail("the saved and reloaded model computes other outputs (state kept outside the state dict?)")

    again = unlearn_once()[0].model.state_dict()
    if any(not torch.equal(v, again[k]) for k, v in state.items()):
        raise fail("two runs with the same seed gave different weights: draw randomness from run.generator")
    return label
