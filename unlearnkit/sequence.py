"""The protocol sequence, written once: the Original, then each forget step's Retrain measured, then the
method unlearned step by step and measured against that step's Retrain.

`References` holds what every method of a (data, scenario, seed) shares; `unlearn_steps` unlearns and
measures one method from them. `unlearn run` and `unlearnkit.unlearn` consume both through
`run_protocol`; a bench worker keeps one `References` for all the cells of a group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from unlearnkit.api import Method
from unlearnkit.data.forget import Split
from unlearnkit.devices import environment
from unlearnkit.engine.distributed import world
from unlearnkit.engine.run import AugmentedMethod
from unlearnkit.evaluation.subject import Subject
from unlearnkit.models import Classifier
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import reference_model
from unlearnkit.resolve import ResolvedRun
from unlearnkit.spec import RunSpec

Metrics = dict[str, float | None]


@dataclass
class StepReference:
    """A forget step's run and its Retrain, measured (None without Retrain), with where Retrain came from."""

    run: ProtocolRun
    retrain: Subject | None
    source: str | None


class References:
    """The Original and, as each step is first asked for, that step's Retrain trained (or read) and measured.

    `retrain`: whether there is a Retrain (a run's spec may leave it out). Under torchrun every rank trains
    them; rank 0 alone measures (the others' metrics are empty).
    """

    def __init__(self, run: ProtocolRun, retrain: bool):
        self.run = run
        self.retrain = retrain
        self.original, self.original_cost, self.original_source = reference_model(run, "original")
        self._runs = run.steps()
        self._steps: list[StepReference] = []

    def __len__(self) -> int:
        return len(self._runs)

    def step(self, index: int) -> StepReference:
        """Step `index` (from 0), its Retrain made and measured on first use; steps are asked for in order."""
        while len(self._steps) <= index:
            self._steps.append(self._reference(self._runs[len(self._steps)]))
        return self._steps[index]

    def _reference(self, step: ProtocolRun) -> StepReference:
        if not self.retrain:
            return StepReference(step, None, None)
        model, cost, source = reference_model(step, "retrain")
        retrain = step.subject("retrain", model, cost)
        if evaluates():
            step.measure(retrain, None)
        return StepReference(step, retrain, source)

    def measure_original(self, step: StepReference) -> Metrics:
        """The Original's metrics at `step`, on that step's forget and retain sets, against its Retrain."""
        subject = step.run.subject("original", self.original, self.original_cost)
        return step.run.measure(subject, step.retrain, step.retrain is not None) if evaluates() else {}


@dataclass
class Unlearned:
    """The model a method left after one step, what the step cost, and its metrics against the step's Retrain."""

    reference: StepReference
    model: Classifier
    cost: dict[str, Any]
    metrics: Metrics


def wrapped_method(resolved: ResolvedRun) -> Method:
    """The resolved method wrapped by its augmenters, built for one run (the method itself when there are none)."""
    return AugmentedMethod(resolved.method, resolved.augmenters) if resolved.augmenters else resolved.method


def unlearn_steps(references: References, resolved: ResolvedRun) -> Iterator[Unlearned]:
    """The resolved method (wrapped by its augmenters) at each step, from the model the step before left (the
    first from the Original), measured against that step's Retrain."""
    method = wrapped_method(resolved)
    model = references.original
    for index in range(len(references)):
        step = references.step(index)
        model, cost = step.run.unlearn(model, method, step.retrain)
        subject = step.run.subject("unlearned", model, cost)
        # beside the method's cost: what measuring it during training cost, and the epoch `keep` kept
        also = cost.get("measured")
        metrics = step.run.measure(subject, step.retrain, step.retrain is not None, also) if evaluates() else {}
        yield Unlearned(step, model, cost, metrics)


def evaluates() -> bool:
    """Metrics are computed once, on rank 0: evaluation uses no collectives, and the other ranks report nothing."""
    return world().rank == 0


@dataclass
class StepResult:
    """The protocol after one forget request: its split (forget = every request so far) and metrics."""

    step: int | None  # 1..k in sequential forgetting, else None
    split: Split
    metrics: dict[str, Metrics]
    sources: dict[str, str]


@dataclass
class RunResult:
    """A run; `split`, `metrics` and `sources` are those of its last (in most scenarios its only) step."""

    spec: RunSpec
    method: str
    split: Split
    metrics: dict[str, Metrics]
    sources: dict[str, str]
    unlearned: Classifier
    environment: dict[str, Any] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # the run's event log (unlearnkit.events)


def run_protocol(run: ProtocolRun) -> RunResult:
    """The whole sequence for one method: every step's Original, Retrain and unlearned model, measured."""
    references = References(run, run.spec.retrain)
    results = []
    for unlearned in unlearn_steps(references, run.resolved):
        step = unlearned.reference
        sources = {"original": references.original_source}
        metrics = {"original": references.measure_original(step)}
        if step.retrain is not None:
            sources["retrain"] = step.source or ""
            metrics["retrain"] = step.retrain.metrics
        metrics["unlearned"] = unlearned.metrics
        results.append(StepResult(step.run.step, step.run.split, metrics if evaluates() else {}, sources))
    last = results[-1]
    return RunResult(
        spec=run.spec, method=run.resolved.name, split=last.split, metrics=last.metrics, sources=last.sources,
        unlearned=unlearned.model, environment=environment(run.device, run.compute), steps=results,
        events=run.events.events,
    )
