"""One run of the protocol at one forget request: its data, device and compute, and what it does to a model.

`ProtocolRun` unlearns one step and measures one model; the sequence that strings these together
(Original, each step's Retrain, the method) is `unlearnkit.sequence`, the references `unlearnkit.references`.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import torch

from unlearnkit.api import Method
from unlearnkit.devices import select_device
from unlearnkit.engine import CostMeter, Workbench, forward_flops
from unlearnkit.engine.compute import Compute, repeatable_kernels
from unlearnkit.engine.distributed import main_first
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

    def unlearn(self, original: Classifier, method: Method) -> tuple[Classifier, dict[str, Any]]:
        """Run `method` (already wrapped by its augmenters) on a copy of `original`; returns the model and its cost."""
        model = copy.deepcopy(original)
        meter = CostMeter(self.flops_per_forward)
        torch.manual_seed(self.spec.seed)
        run = Workbench(
            model, self.method_data, recipe=self.spec.train, new_model=self.workload.new_model, cost=meter,
            seed=self.spec.seed, progress=self.progress, uses_forget=method.uses_forget, name=method.name,
            compute=self.compute, on_log=self.events.training("unlearned", self.step), log_every=self.spec.log_every,
        )
        start = time.perf_counter()
        with plugin_code(method):
            method.unlearn(run)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return run.model, {"flops": meter.flops, "seconds": time.perf_counter() - start}

    def subject(self, name: str, model: Classifier, cost: dict[str, Any]) -> Subject:
        return Subject(name, model, self.data, cost["flops"], cost["seconds"])

    def measure(self, subject: Subject, reference: Subject | None, with_reference: bool = True) -> dict:
        """Run the spec's evaluators in order on `subject`; `reference` is Retrain, already measured (None for
        Retrain). Without a Retrain (`with_reference` false) those that compare with it are left out."""
        evaluators = [e for e in self.resolved.evaluators if with_reference or not e.needs_reference]
        with self.progress.task(f"evaluating {subject.name}", len(evaluators)) as advance:
            for evaluator in evaluators:
                with plugin_code(evaluator):
                    subject.metrics.update(evaluator.evaluate(subject, reference))
                advance()
        self.events.evaluation(subject.name, self.step, subject.metrics)
        return subject.metrics
