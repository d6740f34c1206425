"""The protocol, end to end: data and split, original and Retrain (cached), the method, evaluation."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.distributed as dist

from unlearnkit import __version__, cache
from unlearnkit.checkpoint import load_model, read_checked
from unlearnkit.data import catalog
from unlearnkit.data.forget import Split, check_classes, class_split, given_split, indices_split, random_split, sequential_split
from unlearnkit.data.streamed import Datasets
from unlearnkit.api import Method
from unlearnkit.engine import CostMeter, RunData, UnlearnRun, fit, forward_flops, retain_cross_entropy
from unlearnkit.engine.compute import Compute, kernel_settings, repeatable_kernels
from unlearnkit.engine.data import Over, StreamedData, dataset_labels
from unlearnkit.engine.distributed import agreed, broadcast_state, main_first, world
from unlearnkit.errors import DataNotFoundError, UnlearnkitError
from unlearnkit.evaluation.subject import Subject
from unlearnkit.models import Classifier, build, user_network
from unlearnkit.plugins import Registry, plugin_code
from unlearnkit.progress import SILENT, Progress
from unlearnkit.spec import ForgetSpec, ResolvedRun, RunSpec

SUBJECTS = ("original", "retrain", "unlearned")


@dataclass
class StepResult:
    """The protocol after one forget request: its split (forget = every request so far) and metrics."""

    step: int | None  # 1..k in sequential forgetting, else None
    split: Split
    metrics: dict[str, dict[str, float | None]]
    sources: dict[str, str]


@dataclass
class RunResult:
    """A run; `split`, `metrics` and `sources` are those of its last (in most scenarios its only) step."""

    spec: RunSpec
    method: str
    split: Split
    metrics: dict[str, dict[str, float | None]]
    sources: dict[str, str]
    unlearned: Classifier
    environment: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnlearnkitError(f"device '{name}' was asked for but no CUDA device is available", "Use --device cpu or auto.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UnlearnkitError("device 'mps' was asked for but is not available", "Use --device cpu or auto.")
    return torch.device(name)


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
        loaded = catalog.subset_datasets(loaded, spec.data.train_subset, spec.data.test_subset)
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
        images = catalog.subset(images, spec.data.train_subset, spec.data.test_subset)
        split = make_split(spec.forget, images.train_y, images.num_classes, spec.seed)
        data = RunData(images, transform, split, device)
        data_id = fingerprint(images.train_x, images.train_y, images.test_x, images.test_y)
        classes = images.classes
        shape = (images.in_channels, min(images.image_size))

    def new_model() -> Classifier:
        return build(spec.model.name, shape[0], len(classes), shape[1], spec.model.width)

    return Workload(data, new_model, data_id, classes)


def check_inputs(spec: RunSpec, registry: Registry) -> None:
    """What a run reads before it trains, checked without loading the data: the data set and the model exist,
    the files the spec names can be read, and what needs the data (the forget set, the model built for it,
    --original's names and shapes) fits the data set's outline. A data set known only once loaded (a plugin's
    without an outline) has that part checked when it loads."""
    catalog.check(spec.data.name, registry)
    root = spec.data.root
    if not catalog.names_a_folder(spec.data.name) and root is not None and not spec.data.download \
            and not Path(root).expanduser().exists():
        # a source that reads `root` fails at once, as in the run, with its own hint; one that ignores it loads
        catalog.load(spec.data.name, root, False, spec.data.image_size, registry)
    registry.get_variant("model", spec.model.name)
    if spec.original is not None:
        _check_readable(spec.original, "the original model's weights",
                        "Pass --original the path of a .safetensors, .pt or .pth file.")
    if spec.forget.kind == "indices" and spec.forget.file is not None:
        _check_readable(spec.forget.file, "the forget index file",
                        "Give a file of training indices: a JSON list, or integers one per line.")

    try:
        found = catalog.outline(spec.data.name, spec.data.root, spec.data.image_size, registry)
    except DataNotFoundError:
        if not spec.data.download:
            raise
        found = None  # the run downloads it: what needs the data is checked once it has loaded
    if found is None:
        if spec.original is not None:
            read_checked(spec.original)  # its format, checksum and contents; names and shapes wait for the data
        return
    shape = found.shape
    if spec.forget.kind == "class":
        check_classes(spec.forget.classes, shape.num_classes)
    elif found.train_size is not None:
        n = min(found.train_size, spec.data.train_subset or found.train_size)
        make_split(spec.forget, torch.zeros(n, dtype=torch.long), shape.num_classes, spec.seed)  # labels unused here
    model = build(spec.model.name, shape.in_channels, shape.num_classes, shape.image_size, spec.model.width, registry)
    if spec.original is not None:
        load_model(spec.original, user_network(model))


def _check_readable(path: Path, what: str, hint: str) -> None:
    try:
        with open(path, "rb"):  # as the run opens it: a literal ~ is not expanded there either
            pass
    except OSError as exc:
        raise UnlearnkitError(f"cannot read {what} {path}: {exc.strerror}", hint) from None


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


class Unlearned(NamedTuple):
    """The model a method left after one step, with the protocol of that step and what the step cost."""

    protocol: Protocol
    model: Classifier
    cost: dict[str, Any]


class Protocol:
    """One run of the protocol; each phase is a method so tests and benchmarks can drive it piece by piece.

    Sequential forgetting is a chain of steps, one per request: `steps()` gives the protocol at
    each (its split, data and Retrain are those after that request), `unlearn_in_turn` the chain.

    Under torchrun every rank runs it and trains together; rank 0 alone reads and writes the model
    cache and evaluates (the other ranks' results have no metrics).
    """

    def __init__(
        self,
        resolved: ResolvedRun,
        progress: Progress = SILENT,
        log: Callable[[str], None] = lambda s: None,
        workload: Workload | None = None,
        device: torch.device | None = None,
    ):
        """`device` replaces the spec's (under torchrun: this rank's GPU)."""
        self.resolved = resolved
        self.spec = spec = resolved.spec
        self.progress = progress
        self.log = log
        self.device = device or select_device(spec.device)
        self.compute = Compute.choose(self.device, spec.compute.precision, spec.compute.channels_last, spec.compute.compile)
        repeatable_kernels(self.device)
        if workload is None:
            with main_first():  # a download is made once, by rank 0
                workload = spec_workload(spec, self.device)
        self.workload = workload
        self.data = self.workload.data
        self.split = self.data.split
        self.classes = self.workload.classes
        self.new_model = self.workload.new_model
        self.method_data = self.data  # what the method is given; differs at a step of sequential forgetting
        self.step: int | None = None
        self.data_id = self.workload.data_id
        sample = next(self.data.eval_views("test", 1))[0]
        self.flops_per_forward = forward_flops(self.new_model(), sample)

    def _identity(self, kind: str) -> dict[str, Any]:
        identity = {
            "data": self.data_id,
            "model": self.spec.model.model_dump(),
            "recipe": self.spec.train.model_dump(mode="json"),
            "views": dataclasses.asdict(self.data.transform) if self.data.transform else None,
            "seed": self.spec.seed,
        }
        if kind == "retrain":
            identity["forget"] = fingerprint(self.split.forget)
        if self.compute.precision != "fp32" or self.compute.channels_last or self.compute.compile:
            identity["compute"] = {"precision": self.compute.precision, "channels_last": self.compute.channels_last,
                                   "compile": self.compute.compile}  # fp32 models keep the keys they always had
        if world().size > 1:  # each rank's BatchNorm normalises its own rows: not the model one process trains
            identity["world_size"] = world().size
        return identity

    def cache_key(self, kind: str) -> str:
        """The model cache's name for this run's original or Retrain model."""
        return cache.cache_key(kind, **self._identity(kind))

    def reference_model(self, kind: str) -> tuple[Classifier, dict[str, Any], str]:
        """The original (trained on D) or Retrain (trained on D_r) model: from --original, the cache, or training.

        Returns the model, its cost {flops, seconds} and where it came from.
        """
        if kind == "original" and self.workload.original is not None:
            return self.compute.prepare(self.workload.original), {"flops": None, "seconds": None}, "given"
        model = self.compute.prepare(self.new_model())
        if kind == "original" and self.spec.original is not None:
            meta = load_model(self.spec.original, user_network(model))  # a torchvision model's file has its own keys
            cost = {"flops": _float(meta.get("flops")), "seconds": _float(meta.get("seconds"))}
            return model, cost, str(self.spec.original)
        key = self.cache_key(kind)
        main = world().rank == 0
        if self.spec.cache:
            # rank 0 alone reads the cache; the other ranks take its answer (so all train, or none) and its weights
            cached = cache.fetch(key, model) if main else None
            if agreed(cached is not None):
                if world().size > 1:
                    broadcast_state(model)
                self.log(f"{kind}: cached ({key})")
                meta = cached or {}  # the other ranks have no cost: they compute no metrics
                return model, {"flops": _float(meta.get("flops")), "seconds": _float(meta.get("seconds"))}, "cached"
        torch.manual_seed(self.spec.seed)
        model = self.compute.prepare(self.new_model())
        meter = CostMeter(self.flops_per_forward)
        generator = torch.Generator().manual_seed(self.spec.seed + (1 if kind == "retrain" else 0))
        over: Over = "retain" if kind == "retrain" else "all"
        start = time.perf_counter()
        fit(model, self.data, over, retain_cross_entropy, self.spec.train, generator=generator, cost=meter,
            progress=self.progress, label=kind, compute=self.compute)
        cost = {"flops": meter.flops, "seconds": time.perf_counter() - start}
        if self.spec.cache and main:
            cache.store(key, model, {**cost, "identity": self._identity(kind)})
        return model, cost, "trained"

    def steps(self) -> list[Protocol]:
        """The protocol at each forget request: itself, or one per request of sequential forgetting."""
        return [self.at_step(i) for i in range(1, len(self.split.requests) + 1)] or [self]

    def at_step(self, step: int) -> Protocol:
        """The protocol after request `step` of sequential forgetting.

        It is measured on U (requests 1..step) and R (the rest) against a Retrain trained on R,
        while the method unlearns request `step` alone, retaining R.
        """
        view = copy.copy(self)
        view.step = step
        view.split = self.split.after(step)
        view.data = self.data.with_split(view.split)
        view.method_data = self.data.with_split(self.split.request(step))
        view.log = lambda line: self.log(f"step {step}: {line}")
        return view

    def unlearn_in_turn(self, original: Classifier, method: Method) -> Iterator[Unlearned]:
        """Each step's model, unlearned from the model the step before left (the first from `original`)."""
        model = original
        for step in self.steps():
            model, cost = step.unlearn(model, method)
            yield Unlearned(step, model, cost)

    def unlearn(self, original: Classifier, method: Method) -> tuple[Classifier, dict[str, Any]]:
        """Run `method` (already wrapped by its augmenters) on a copy of `original`; returns the model and its cost."""
        model = copy.deepcopy(original)
        meter = CostMeter(self.flops_per_forward)
        torch.manual_seed(self.spec.seed)
        run = UnlearnRun(
            model, self.method_data, recipe=self.spec.train, new_model=self.new_model, cost=meter,
            seed=self.spec.seed, progress=self.progress, uses_forget=method.uses_forget, name=method.name,
            compute=self.compute,
        )
        start = time.perf_counter()
        with plugin_code(method):
            method.unlearn(run)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return run.model, {"flops": meter.flops, "seconds": time.perf_counter() - start}

    def subject(self, name: str, model: Classifier, cost: dict[str, Any]) -> Subject:
        return Subject(name, model, self.data, cost["flops"], cost["seconds"])

    def evaluators(self, with_reference: bool) -> list:
        """The spec's evaluators; without a Retrain, those that compare with it are left out."""
        return [e for e in self.resolved.evaluators if with_reference or not e.needs_reference]

    def measure(self, subject: Subject, reference: Subject | None, advance: Callable[[], None] = lambda: None,
                with_reference: bool = True) -> dict:
        """Run the evaluators in order on `subject`; `reference` is Retrain, already measured (None for Retrain)."""
        for evaluator in self.evaluators(with_reference):
            with plugin_code(evaluator):
                subject.metrics.update(evaluator.evaluate(subject, reference))
            advance()
        return subject.metrics

    def evaluate(self, models: dict[str, tuple[Classifier, dict[str, Any]]]) -> dict[str, dict[str, float | None]]:
        """Metrics of each model; Retrain, when among `models`, is measured first and is every other's reference."""
        subjects = {name: self.subject(name, model, cost) for name, (model, cost) in models.items()}
        has_retrain = "retrain" in subjects
        order = (["retrain"] if has_retrain else []) + [n for n in subjects if n != "retrain"]
        with self.progress.task("evaluating", len(order) * len(self.evaluators(has_retrain))) as advance:
            for name in order:
                reference = subjects["retrain"] if has_retrain and name != "retrain" else None
                self.measure(subjects[name], reference, advance, has_retrain)
        return {name: subjects[name].metrics for name in models}

    def run(self) -> RunResult:
        original, original_cost, original_source = self.reference_model("original")
        results = []
        for step, unlearned, unlearned_cost in self.unlearn_in_turn(original, self.resolved.wrapped_method()):
            models = {"original": (original, original_cost)}
            sources = {"original": original_source}
            if self.spec.retrain:
                retrain, retrain_cost, sources["retrain"] = step.reference_model("retrain")
                models["retrain"] = (retrain, retrain_cost)
            # metrics once, on rank 0: evaluation uses no collectives, and the other ranks report nothing
            metrics = step.evaluate({**models, "unlearned": (unlearned, unlearned_cost)}) if world().rank == 0 else {}
            results.append(StepResult(step.step, step.split, metrics, sources))
        last = results[-1]
        return RunResult(
            spec=self.spec, method=self.resolved.name, split=last.split, metrics=last.metrics, sources=last.sources,
            unlearned=unlearned, environment=environment(self.device, self.compute), steps=results,
        )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def environment(device: torch.device, compute: Compute | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "unlearnkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if compute is not None:
        env["compute"] = {"precision": compute.precision, "channels_last": compute.channels_last, "compile": compute.compile}
    env["numpy"] = np.__version__
    env["determinism"] = kernel_settings(device)
    here = world()
    if here.size > 1:  # `device` is rank 0's; rank r ran on cuda:r (one machine) or the CPU
        env["distributed"] = {"world_size": here.size, "backend": dist.get_backend()}
    return env
