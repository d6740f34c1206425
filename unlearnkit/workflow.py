"""`unlearnkit.unlearn` and `unlearnkit.audit`: a user's own model and torch Datasets, from Python.

It builds a run spec from its arguments and runs the same protocol sequence as `unlearn run`
(`unlearnkit.sequence.run_protocol`), and with `out` writes the same result bundle; only the workload
differs: the user's model is the Original, their Datasets the data.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from rich.table import Table
from torch.utils.data import Dataset

from unlearnkit.auditing import report as audit_report
from unlearnkit.auditing.session import open_folder
from unlearnkit.auditing.ulira import AuditResult, check_shadow_count, shadow_design, ulira, variants_of
from unlearnkit.bench.grid import scenario_overrides
from unlearnkit.bundle import check_destination, write_bundle
from unlearnkit.devices import select_device
from unlearnkit.engine.streams import StreamedData
from unlearnkit.evaluation.privacy import AttackFigures
from unlearnkit.errors import UnlearnkitError
from unlearnkit.inputs import OwnInputs, check_own_inputs
from unlearnkit.models import fresh_copy, user_network
from unlearnkit.plugins import Registry, installed
from unlearnkit.progress import SILENT, Progress
from unlearnkit.protocol import ProtocolRun
from unlearnkit.report import markdown_table, rich_table
from unlearnkit.resolve import resolve
from unlearnkit.sequence import RunResult, run_protocol
from unlearnkit.spec import RunSpec
from unlearnkit.spec_input import set_path
from unlearnkit.workload import Workload, fingerprint, make_split


@dataclass
class UnlearnResult:
    """What `unlearn` returns. `model` is the user's network, unlearned (a copy; the given model is untouched)."""

    model: nn.Module
    run: RunResult
    bundle: Path | None = None  # the result bundle, when `out` was given

    @property
    def metrics(self) -> dict[str, float | None]:
        """The unlearned model's RA, UA, TA, MIA, flops, seconds (and Avg Gap and Premise with Retrain)."""
        return self.run.metrics["unlearned"]

    @property
    def original_metrics(self) -> dict[str, float | None]:
        return self.run.metrics["original"]

    @property
    def retrain_metrics(self) -> dict[str, float | None] | None:
        """None unless retrain=True."""
        return self.run.metrics.get("retrain")

    def table(self):
        """The result as a rich table (Original, Retrain when trained, the method)."""
        return rich_table(self.run.metrics, self.run.method)

    def _repr_markdown_(self) -> str:  # how a notebook shows the result
        return markdown_table(self.run.metrics, self.run.method)


def unlearn(
    model: nn.Module,
    train_set: Dataset,
    forget: Sequence[int] | torch.Tensor | str,
    *,
    test_set: Dataset,
    method: str = "ft",
    augment: str | Sequence[str] = (),
    params: Mapping[str, Mapping[str, Any]] | None = None,
    retrain: bool = False,
    train: Mapping[str, Any] | None = None,
    train_eval_set: Dataset | None = None,
    num_classes: int | None = None,
    head: str | None = None,
    seed: int = 0,
    device: str = "auto",
    workers: int = 0,
    progress: bool = False,
    registry: Registry | None = None,
    out: str | Path | None = None,
    eval_every: int | None = None,
    keep: str | None = None,
) -> UnlearnResult:
    """Unlearn `forget` from `model`, a classifier trained on `train_set`.

    - `forget`: training-set indices, or a scenario as the CLI writes it (``"class:3"``, ``"random:0.1"``).
    - `method`, `augment`: registered plugin names (`unlearn plugins`); `params` holds each one's params,
      the method's under ``"method"`` and an augmenter's under its name: ``{"method": {"lr": 0.01}, "coun-cl": {"lambda": 1}}``.
    - `retrain=True` also trains Retrain on the retain set (with the `train` recipe: epochs, lr, ...) and
      scores the gap to it; otherwise only the reference-free metrics are measured.
    - `train_eval_set`: the training samples with test-time transforms, for RA, UA and MIA (default: `train_set`).
    - `head`: the path of the model's final nn.Linear when it is not one the toolkit finds (e.g. ``"classifier.6"``).
    - `out`: a folder to write the result bundle to, as `unlearn run --out` writes it; a folder that is
      neither missing nor empty is refused before any training.
    - `eval_every`, `keep`: as `unlearn run --eval-every K --keep best:...`: measure the model every K epochs of the
      method's training (`result.run.events`), and keep the best weights by the criterion (``"best:max:TA"``;
      ``"best:avg_gap"`` needs `retrain=True`).
    """
    # the user's model, data and forget argument first: every mistake in them is one message, before anything runs
    inputs = check_own_inputs(model, train_set, test_set, forget, num_classes=num_classes, head=head,
                              train_eval_set=train_eval_set)
    raw = _own_spec(type(model).__name__, inputs.forget, method, augment, params, retrain, train, seed, device, workers)
    raw.update(eval_every=eval_every, keep=keep)
    resolved = resolve(raw, registry or installed(), "unlearnkit.unlearn")
    if out is not None:
        check_destination(Path(out), overwrite=False)
    workload = _own_workload(inputs, resolved.spec, train_set, test_set, train_eval_set)
    with Progress() if progress else SILENT as bars:
        result = run_protocol(ProtocolRun(resolved, progress=bars, workload=workload))
    bundle = write_bundle(result, Path(out)) if out is not None else None
    return UnlearnResult(model=user_network(result.unlearned), run=result, bundle=bundle)


@dataclass
class AuditReport:
    """What `audit` returns: the U-LiRA figures of the method and of both calibrations (`result.rows`, each
    with its `figures`), shown as a table; `folder` holds audit.json, audit.md and the PNGs when `out` was given."""

    result: AuditResult
    folder: Path | None = None

    def figures(self, variant: str) -> AttackFigures:
        """The figures of one row: the method's name, `none` or `retrain`."""
        return self.result.row(variant).figures

    def table(self) -> Table:
        return audit_report.table(self.result)

    def _repr_markdown_(self) -> str:  # how a notebook shows the result
        return audit_report.markdown(self.result, "unlearnkit.audit")


def audit(
    model: nn.Module | Callable[[], nn.Module],
    train_set: Dataset,
    forget: Sequence[int] | torch.Tensor | str,
    *,
    test_set: Dataset,
    method: str = "ft",
    augment: str | Sequence[str] = (),
    params: Mapping[str, Mapping[str, Any]] | None = None,
    shadows: int = 16,
    train: Mapping[str, Any] | None = None,
    train_eval_set: Dataset | None = None,
    num_classes: int | None = None,
    head: str | None = None,
    seed: int = 0,
    device: str = "auto",
    workers: int = 0,
    progress: bool = False,
    registry: Registry | None = None,
    out: str | Path | None = None,
) -> AuditReport:
    """U-LiRA on the user's own architecture and data: did `method` make the `forget` samples look never seen?

    `shadows` models of `model`'s architecture (a module, whose weights are re-initialised and never used, or a
    function that builds one) are trained with the `train` recipe on random halves of `train_set`; each forgets
    the targets it saw with `method` (and `augment`, `params` as in `unlearn`). Beside the method, two
    calibration rows: `none` (no unlearning) and `retrain` (trained without the targets: near AUC 0.5).
    `out`: a folder for audit.json (every phi), audit.md and the pictures; it also lets an interrupted audit
    resume. Without it nothing is written (the records live in a temporary folder).
    """
    check_shadow_count(shadows)
    network = model() if callable(model) and not isinstance(model, nn.Module) else model
    inputs = check_own_inputs(network, train_set, test_set, forget, num_classes=num_classes, head=head,
                              train_eval_set=train_eval_set)
    raw = _own_spec(type(network).__name__, inputs.forget, method, augment, params, True, train, seed, device, workers)
    resolved = resolve(raw, registry or installed(), "unlearnkit.audit")
    if resolved.spec.forget.kind == "sequential":
        raise UnlearnkitError("an audit takes its targets from one forget set, not a sequence of requests",
                              "Give indices, 'random:0.1' or 'class:3'.")
    workload = _own_workload(inputs, resolved.spec, train_set, test_set, train_eval_set)
    workload.original = None  # every shadow trains its own Original from scratch
    with contextlib.ExitStack() as stack:
        folder = Path(out) if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        bars = stack.enter_context(Progress() if progress else SILENT)
        run = ProtocolRun(resolved, progress=bars, workload=workload)
        scenario = forget if isinstance(forget, str) else "indices"
        open_folder(folder, run, scenario, seed, "ulira", shadows)
        design = shadow_design(len(inputs.labels[0]), run.split.forget, shadows, seed)
        result = ulira(run, design, variants_of({resolved.name: resolved}), folder)
        result.scenario = scenario
        if out is not None:
            audit_report.write(result, folder, "unlearnkit.audit")
    return AuditReport(result, Path(out) if out is not None else None)


def _own_spec(model_name: str, forget: torch.Tensor | str, method: str, augment: str | Sequence[str],
              params: Mapping[str, Mapping[str, Any]] | None, retrain: bool, train: Mapping[str, Any] | None,
              seed: int, device: str, workers: int) -> dict[str, Any]:
    """The run spec of `unlearn`'s arguments, as a spec file would write it."""
    params = {k: dict(v) for k, v in (params or {}).items()}
    augmenters = [augment] if isinstance(augment, str) else list(augment)
    raw: dict[str, Any] = {
        "method": {"name": method, "params": params.pop("method", {})},
        "augment": [{"name": a, "params": params.pop(a, {})} for a in augmenters],
        "train": dict(train or {}),
        "seed": seed, "device": device, "retrain": retrain, "cache": False,
        "data": {"name": "(given torch Datasets)", "workers": workers},
        "model": {"name": f"(given {model_name})"},
    }
    _set_forget(raw, forget)
    if params:
        raise UnlearnkitError(
            f"params for {', '.join(sorted(params))}, which is neither 'method' nor an augmenter of this run",
            "Key params by 'method' or by an augmenter's name given in `augment`.",
        )
    return raw


def _own_workload(inputs: OwnInputs, spec: RunSpec, train_set: Dataset, test_set: Dataset,
                  train_eval_set: Dataset | None) -> Workload:
    """The user's Datasets split as the spec says, and their model (already a copy) as the Original."""
    labels, classes = inputs.labels, inputs.num_classes
    split = make_split(spec.forget, labels[0], classes, spec.seed)
    template = copy.deepcopy(inputs.model)
    return Workload(
        data=StreamedData(train_set, test_set, split, select_device(spec.device), classes, train_eval_set,
                          spec.data.workers, labels),
        new_model=lambda: fresh_copy(template),
        data_id="given:" + fingerprint(*labels),
        classes=[str(c) for c in range(classes)],
        original=inputs.model,
    )


def _set_forget(raw: dict[str, Any], forget: torch.Tensor | str) -> None:
    """The spec's forget section: a scenario read as the bench reads it, or the (checked) indices."""
    if isinstance(forget, str):
        try:
            assignments = scenario_overrides(forget)
        except UnlearnkitError:
            raise UnlearnkitError(f"forget={forget!r} is not a scenario",
                                  "Give indices, 'random:0.1', 'class:3' (or 'class:3,5') or 'sequential:0.1x3'.") from None
        for assignment in assignments:
            set_path(raw, assignment)
        return
    raw["forget"] = {"kind": "indices", "indices": forget.tolist()}
