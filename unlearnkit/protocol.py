"""One run of the protocol at one forget request: its data, device and compute, and what it does to a model.

`ProtocolRun` unlearns one step and measures one model; the sequence that strings these together
(Original, each step's Retrain, the method) is `unlearnkit.sequence`, the references `unlearnkit.references`.
"""

from __future__ import annotations

import copy
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from unlearnkit.api import Evaluator, Method
from unlearnkit.devices import select_device
from unlearnkit.engine import CostMeter, Workbench, forward_flops
from unlearnkit.engine.compute import Compute, repeatable_kernels
from unlearnkit.engine.distributed import broadcast_state, main_first, world
from unlearnkit.engine.train import Logged, OnLog
from unlearnkit.evaluation.subject import Subject
from unlearnkit.events import EventLog
from unlearnkit.models import Classifier
from unlearnkit.plugins import plugin_code
from unlearnkit.progress import SILENT, Progress
from unlearnkit.resolve import ResolvedRun
from unlearnkit.workload import Workload, spec_workload


class ProtocolRun:
    """A resolved run set up on its device: its workload, compute settings and FLOP count per forward pass.

    Sequential forgetting is a chain of steps, one per request: `steps()` gives the run at each
    (its split, data and Retrain are those after that request).

    Under torchrun every rank sets one up and trains together; rank 0 alone reads and writes the
    model cache and evaluates.
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
        self.data = workload.data
        self.split = self.data.split
        self.method_data = self.data  # what the method is given; differs at a step of sequential forgetting
        self.step: int | None = None
        self.events = EventLog()  # the loss terms of every training and each evaluation, shared by its steps
        sample = next(self.data.eval_views("test", 1))[0]
        self.flops_per_forward = forward_flops(workload.new_model(), sample)

    def steps(self) -> list[ProtocolRun]:
        """The run at each forget request: itself, or one per request of sequential forgetting."""
        return [self.at_step(i) for i in range(1, len(self.split.requests) + 1)] or [self]

    def at_step(self, step: int) -> ProtocolRun:
        """The run after request `step` of sequential forgetting.

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

    def unlearn(self, original: Classifier, method: Method,
                reference: Subject | None = None) -> tuple[Classifier, dict[str, Any]]:
        """Run `method` (already wrapped by its augmenters) on a copy of `original`; returns the model and its cost.

        With `eval_every` the model is also measured during its training, against `reference` (the step's Retrain,
        measured; None without one), and with `keep` the weights best by its criterion are the ones returned. The
        cost's flops and seconds are then the method's alone; what measuring cost is `measured` (`DuringTraining`).
        """
        model = copy.deepcopy(original)
        meter = CostMeter(self.flops_per_forward)
        torch.manual_seed(self.spec.seed)
        on_log = self.events.training("unlearned", self.step)
        during = DuringTraining(self, reference, meter, lambda: run.model) if self.spec.eval_every else None
        run = Workbench(
            model, self.method_data, recipe=self.spec.train, new_model=self.workload.new_model, cost=meter,
            seed=self.spec.seed, progress=self.progress, uses_forget=method.uses_forget, name=method.name,
            compute=self.compute, on_log=on_log if during is None else during.following(on_log),
            log_every=self.spec.log_every,
        )
        start = time.perf_counter()
        with plugin_code(method):
            method.unlearn(run)
        self.synchronize()
        cost: dict[str, Any] = {"flops": meter.flops, "seconds": time.perf_counter() - start}
        if during is not None:
            cost["seconds"] -= during.seconds
            cost["measured"] = during.settle(method.name)
        return run.model, cost

    def synchronize(self) -> None:
        """Wait for the device's queued work, so that a clock read next counts it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def subject(self, name: str, model: Classifier, cost: dict[str, Any]) -> Subject:
        return Subject(name, model, self.data, cost["flops"], cost["seconds"])

    def evaluate(self, subject: Subject, reference: Subject | None, with_reference: bool = True,
                 advance: Callable[[], None] = lambda: None) -> dict:
        """Run the spec's evaluators in order on `subject`; `reference` is Retrain, already measured (None for
        Retrain). Without a Retrain (`with_reference` false) those that compare with it are left out."""
        for evaluator in self.evaluators(with_reference):
            with plugin_code(evaluator):
                subject.metrics.update(evaluator.evaluate(subject, reference))
            advance()
        return subject.metrics

    def evaluators(self, with_reference: bool) -> list[Evaluator]:
        return [e for e in self.resolved.evaluators if with_reference or not e.needs_reference]

    def measure(self, subject: Subject, reference: Subject | None, with_reference: bool = True,
                also: Mapping[str, Any] | None = None) -> dict:
        """`evaluate` with progress, then the metrics `also` adds (what measuring during training cost, say),
        logged as the model's evaluation."""
        with self.progress.task(f"evaluating {subject.name}", len(self.evaluators(with_reference))) as advance:
            self.evaluate(subject, reference, with_reference, advance)
        subject.metrics.update(also or {})
        self.events.evaluation(subject.name, self.step, subject.metrics)
        return subject.metrics


@dataclass
class Candidate:
    """Weights `keep` may return: those after `epoch`, and their value by its criterion (None: not measured)."""

    epoch: int
    value: float | None
    state: dict[str, torch.Tensor]


class DuringTraining:
    """The unlearned model measured every `eval_every` epochs of the method's training (its trainings count epochs
    on from one another), each measurement an evaluation event with its epoch; with `keep`, the weights best by
    its criterion among the measured epochs and the final model.

    What the method computes does not change: the model is measured in eval mode and put back in the mode it was
    in, and the random number generators are restored after each measurement. Its forwards are counted apart
    (1 per sample, the engine's convention for inference), and its time is left out of the method's.
    """

    def __init__(self, run: ProtocolRun, reference: Subject | None, method_cost: CostMeter,
                 model: Callable[[], Classifier]):
        self.run, self.reference, self.method_cost, self.model = run, reference, method_cost, model
        self.every = run.spec.eval_every or 1
        self.criterion = run.spec.keep_criterion
        self.cost = CostMeter(run.flops_per_forward)
        self.started = time.perf_counter()
        self.seconds = 0.0  # spent measuring
        self.epochs = 0  # trained so far
        self.last: Candidate | None = None  # with keep: the last measured epoch's weights
        self.best: Candidate | None = None

    def following(self, on_log: OnLog) -> OnLog:
        """`on_log`, and a measurement at every `eval_every`-th epoch's end."""

        def logged(record: Logged) -> None:
            on_log(record)
            if record.epoch_end:
                self.epochs = record.epoch
                if record.epoch % self.every == 0 and world().rank == 0:  # rank 0 alone evaluates
                    self.measure(record.epoch)

        return logged

    def measure(self, epoch: int) -> None:
        model, run = self.model(), self.run
        run.synchronize()
        began = time.perf_counter()
        was_training = model.training
        subject = Subject("unlearned", model, run.data, self.method_cost.flops, began - self.started - self.seconds)
        with _generators_restored(run.device):
            metrics = run.evaluate(subject, self.reference, self.reference is not None)
        model.train(was_training)
        self.cost.forwarded(subject.forwarded)
        run.events.evaluation("unlearned", run.step, metrics, epoch)
        if self.criterion is not None:
            value = metrics.get(self.criterion.metric)
            self.last = Candidate(epoch, value, {k: v.detach().clone() for k, v in model.state_dict().items()})
            if self.best is None or self._better(self.last, self.best):
                self.best = self.last
        self.seconds += time.perf_counter() - began

    def _better(self, candidate: Candidate, than: Candidate) -> bool:
        """At least as good (ties go to the later weights); a value that was not measured is never better."""
        if candidate.value is None or than.value is None:
            return than.value is None
        assert self.criterion is not None
        lower = self.criterion.lower_is_better
        return candidate.value <= than.value if lower else candidate.value >= than.value

    def settle(self, method: str) -> dict[str, Any]:
        """Once the method is done: with `keep`, the final model weighed against the best measured epoch (measured
        itself unless it is the last one measured) and the better one's weights left in the model. Returns what
        the run reports of it: eval_flops, and kept_epoch (the final model counts as the last epoch)."""
        run, model = self.run, self.model()
        if self.epochs < self.every:
            run.log(f"eval_every {self.every}: {method} trained "
                    + (f"{self.epochs} epoch{'s' * (self.epochs != 1)}, fewer than {self.every}" if self.epochs else
                       "no epochs through the trainer (it changes the model otherwise)")
                    + ", so it was not measured during unlearning")
        measured: dict[str, Any] = {"eval_flops": self.cost.flops}
        if self.criterion is None:
            return measured
        kept = self.epochs or None
        if self.best is not None and world().rank == 0:
            if not _same(model.state_dict(), self.last):
                self.measure(self.epochs)  # the final model is a candidate too
            if self.best is not self.last:
                if _same_layout(model.state_dict(), self.best.state):
                    model.load_state_dict(self.best.state)
                    kept = self.best.epoch
                else:
                    run.log(f"keep: {method} reshapes the model after training, so no epoch's weights can replace "
                            "the final model's; the final model is kept")
            measured["eval_flops"] = self.cost.flops
        if world().size > 1:
            broadcast_state(model)  # every rank goes on from the weights rank 0 kept
        measured["kept_epoch"] = kept
        return measured


def _same_layout(state: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> bool:
    return state.keys() == other.keys() and all(state[k].shape == other[k].shape for k in state)


def _same(state: Mapping[str, torch.Tensor], candidate: Candidate | None) -> bool:
    """Whether `state` holds exactly the candidate's weights."""
    return candidate is not None and _same_layout(state, candidate.state) \
        and all(torch.equal(state[k], candidate.state[k]) for k in state)


@contextmanager
def _generators_restored(device: torch.device) -> Iterator[None]:
    """Whatever the block draws (a DataLoader's seed, an evaluator's numpy or Python draws), the global generators
    are left as they were: the training around it draws the same numbers as without it."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    np.random.set_state(numpy_state)
    random.setstate(python_state)
