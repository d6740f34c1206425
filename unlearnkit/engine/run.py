"""What a method works with: the `Workbench` (the engine's `unlearnkit.UnlearnRun`), and the wrapper that lets
augmenters join any method."""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cached_property
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from unlearnkit.api import Augmenter, Method, TrainParams
from unlearnkit.contract import Batch, LossFn, Part, RepresentationTerms, Schedule, Step, UnlearnRun
from unlearnkit.engine.compute import FP32, Compute
from unlearnkit.engine.cost import CostMeter
from unlearnkit.engine.streams import RunData, retain_batch, shuffled, steps, steps_per_epoch
from unlearnkit.engine.train import OnLog, Trainer
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import Classifier
from unlearnkit.plugins import plugin_code
from unlearnkit.progress import SILENT, Progress


def fit(
    model: Classifier,
    data: RunData,
    over: Part,
    loss_fn: LossFn,
    params: TrainParams,
    *,
    generator: torch.Generator,
    cost: CostMeter,
    progress: Progress = SILENT,
    label: str = "training",
    augmenters: Sequence[RepresentationTerms] = (),
    compute: Compute = FP32,
    on_log: OnLog | None = None,
    log_every: int | None = None,
) -> None:
    """Train `model` for `params.epochs` over a part of the data with the shared loop (Original, Retrain);
    `on_log` receives its loss at each epoch's end (and every `log_every` steps)."""
    total = steps_per_epoch(data, over, params.batch_size) * params.epochs
    schedule = ((loss_fn, step) for step in steps(data, over, params.batch_size, params.epochs, generator))
    trainer = Trainer(model, params, total, cost, augmenters, compute=compute,
                      retain_batches=lambda size: retain_batch(data, size, generator), on_log=on_log, log_every=log_every)
    _drive(trainer, schedule, total, progress, label)


#: steps between two looks at whether the loss is still finite (each look waits for the device)
FINITE_CHECK_EVERY = 32


def _drive(trainer: Trainer, schedule: Schedule, total: int, progress: Progress, label: str,
           check: Callable[[Step], None] = lambda step: None) -> None:
    """The loop itself: one optimisation step per scheduled step, with progress; a loss that turns
    non-finite stops it within FINITE_CHECK_EVERY steps, and at its end at the latest."""
    with progress.task(label, total) as advance:
        for i, (loss_fn, step) in enumerate(schedule, 1):
            check(step)
            advance(trainer.step(loss_fn, step))
            if i % FINITE_CHECK_EVERY == 0:
                trainer.check_finite(label)
    trainer.check_finite(label)
    trainer.finish_log()


class Workbench:
    """The engine's `UnlearnRun` (unlearnkit.contract): what `Method.unlearn` is handed.

    `model` starts as a copy of the original model; the method edits it in
    place. Training goes through `train` (one loss over one stream) or `fit` (a
    method's own schedule of steps), which add the run's augmenter terms and count
    cost. Methods that declare `uses_forget = False` get a run whose steps, batches
    and training refuse forget data.
    """

    def __init__(
        self,
        model: Classifier,
        data: RunData,
        *,
        recipe: TrainParams,
        new_model: Callable[[], Classifier],
        cost: CostMeter,
        seed: int,
        progress: Progress = SILENT,
        uses_forget: bool = True,
        name: str = "unlearn",
        compute: Compute = FP32,
        on_log: OnLog | None = None,
        log_every: int | None = None,
    ):
        self.model = model
        self.on_log = on_log  # every training of the method logs its loss terms here
        self.log_every = log_every
        self._logged = (0, 0)  # epochs and steps its trainings logged so far: a second training continues the count
        self.data = data
        self.recipe = recipe  # the original training recipe (what Retrain uses)
        self.new_model = new_model  # a freshly initialised model of the same architecture
        self.cost = cost
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.progress = progress
        self.augmenters: list[RepresentationTerms] = []
        self.uses_forget = uses_forget
        self.name = name
        self.compute = compute
        self._original_state = copy.deepcopy(model.state_dict())

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def forget_classes(self) -> tuple[int, ...]:
        return self.data.split.classes

    @cached_property
    def original(self) -> Classifier:
        """A frozen copy of the original model (a teacher, a reference), in eval mode."""
        frozen = self.compute.prepare(self.new_model())
        frozen.load_state_dict(self._original_state)
        frozen.eval().requires_grad_(False)
        return frozen

    def _check(self, over: str) -> None:
        if not self.uses_forget and over != "retain":
            raise UnlearnkitError(f"{self.name} declares that it does not use the forget set, yet asked for '{over}' data")

    def _check_index(self, index: torch.Tensor) -> None:
        if not self.uses_forget and torch.isin(index.cpu(), self.data.split.forget.cpu()).any():
            raise UnlearnkitError(f"{self.name} declares that it does not use the forget set, yet drew forget samples")

    def _check_step(self, step: Step) -> None:
        if step.forget is not None:
            self._check_index(step.forget.index)
        if step.retain is not None:
            self._check_index(step.retain.index)

    def steps(self, over: Part, batch_size: int, epochs: int, among: torch.Tensor | None = None) -> Iterator[Step]:
        """The engine's step stream (see `unlearnkit.engine.streams.steps`), drawn with the run's generator;
        `among` limits it to some training positions."""
        self._check(over)
        return steps(self.data, over, batch_size, epochs, self.generator, among)

    def steps_per_epoch(self, over: Part, batch_size: int, among: torch.Tensor | None = None) -> int:
        return steps_per_epoch(self.data, over, batch_size, among)

    def batch(self, index: torch.Tensor) -> Batch:
        """A training batch of the given training positions, drawn with the run's generator (for own schedules)."""
        self._check_index(index)
        return self.data.batch(index, self.generator)

    def batches(self, part: str, batch_size: int) -> Iterator[Batch]:
        """One shuffled pass over retain, forget or all training samples (for statistics such as saliency)."""
        self._check(part)
        shuffler = self.data.shuffle_generator(self.generator)
        chunks = shuffled(self.data.indices(part), batch_size, shuffler)
        for _, batch in self.data.read(((None, chunk) for chunk in chunks), shuffler):
            yield batch

    def train(
        self,
        loss_fn: LossFn,
        params: TrainParams,
        over: Part = "retain",
        parameters: Iterable[nn.Parameter] | None = None,
        label: str | None = None,
        masks: Mapping[nn.Parameter, torch.Tensor] | None = None,
    ) -> None:
        """Train `self.model` for `params.epochs` over a part of the data with one loss."""
        total = self.steps_per_epoch(over, params.batch_size) * params.epochs
        schedule = ((loss_fn, step) for step in self.steps(over, params.batch_size, params.epochs))
        self.fit(schedule, params, total, parameters=parameters, label=label, masks=masks)

    def fit(
        self,
        schedule: Schedule,
        params: TrainParams,
        total_steps: int,
        *,
        parameters: Iterable[nn.Parameter] | None = None,
        label: str | None = None,
        masks: Mapping[nn.Parameter, torch.Tensor] | None = None,
    ) -> None:
        """Train `self.model` over a method's own schedule of (loss, step) pairs, in the order given.

        For methods whose steps do not follow one stream (SCRUB's max- and min-phases, CU's
        forget batch repeated with fresh retain batches): build the steps with `steps` and
        `batch`, and hand them here. One optimiser and one learning-rate schedule run over
        `total_steps`; the run's augmenters add their terms to every step with a retain
        batch; cost is counted; `parameters` (default: the model's) are what is optimised,
        and `masks` freezes entries of them. A method that declares `uses_forget = False`
        gets an error for any step holding forget samples.
        """
        epochs, taken = self._logged
        on_log, log = None, self.on_log
        if log is not None:
            on_log = lambda record: log(replace(record, epoch=record.epoch + epochs, step=record.step + taken))  # noqa: E731
        trainer = Trainer(self.model, params, total_steps, self.cost, self.augmenters, parameters, masks, self.compute,
                          retain_batches=lambda size: retain_batch(self.data, size, self.generator),
                          on_log=on_log, log_every=self.log_every)
        _drive(trainer, schedule, total_steps, self.progress, label or self.name, self._check_step)
        self._logged = (epochs + trainer.epochs_logged, taken + trainer.steps_done)


class AugmentedMethod(Method):
    """A method wrapped by augmenters, in the order given; built per run, never global."""

    def __init__(self, inner: Method, augmenters: Sequence[Augmenter]):
        super().__init__(inner.params)
        self.inner = inner
        self.augmenters = list(augmenters)
        self.name = "+".join([inner.name, *(a.name for a in self.augmenters)])
        self.trains_on_retain = inner.trains_on_retain
        self.uses_forget = inner.uses_forget
        self.scenarios = inner.scenarios

    def unlearn(self, run: UnlearnRun) -> None:
        run.augmenters.extend(self.augmenters)
        with plugin_code(self.inner, *self.augmenters):  # the augmenters' hooks run inside the method's training
            self.inner.unlearn(run)
