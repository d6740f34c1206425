"""What a bench worker does: a (scenario, seed) group's references, or one cell, given as a picklable Task.

Workers compute and return records; only the driver (runner.run_grid) writes the result store. A
worker may therefore be this process, another process on this machine or a Ray task on another
machine, and a killed worker loses at most the cell it was computing.
"""

from __future__ import annotations

import json
import os
import signal
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from unlearnkit import cache
from unlearnkit.bench.grid import Cell, resolve_cell, scenario_label, step_scenario
from unlearnkit.bench.keys import cell_keys, reference_keys
from unlearnkit.devices import environment
from unlearnkit.errors import PluginFault, UnlearnkitError
from unlearnkit.files import atomic_write_bytes
from unlearnkit.plugins import installed
from unlearnkit.progress import SILENT, Progress
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import cache_key
from unlearnkit.resolve import ResolvedRun
from unlearnkit.sequence import References, unlearn_steps


@dataclass(frozen=True)
class Task:
    """One unit of a grid: the references of `group`'s (scenario, seed), or one cell of that group."""

    base: dict[str, Any]  # the grid's base run spec; a cell's run spec is Cell.run_spec(base)
    group: Cell  # the group's first cell: its spec names the group's Original and Retrain
    references: tuple[dict[str, str], ...]  # the driver's keys of the group's records, a {retrain, original} per step
    cell: Cell | None = None  # None: the references only
    cell_keys: tuple[str, ...] = ()  # the driver's keys of the cell's records, one per step
    wanted: tuple[str, ...] = ()  # reference records the store lacks (others are not measured again)
    ship: bool = False  # return the references' model-cache files, for workers that do not share the cache

    @property
    def where(self) -> str:
        return f"{scenario_label(self.group.scenario)}, seed {self.group.seed}"


@dataclass
class Done:
    """What a task produced: records for the store, log lines, and what failed."""

    task: Task
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (key, record)
    lines: list[str] = field(default_factory=list)  # log lines of a worker that cannot print to the driver's console
    events: list[dict[str, Any]] = field(default_factory=list)  # a cell's event log, for the command's trackers
    failure: str | None = None  # why the cell, or the group's references, failed
    error: tuple[str, str | None] | None = None  # a user error (message, hint) that is the same for every cell: stop
    files: dict[str, bytes] = field(default_factory=dict)  # shipped references: cache key -> entry file


Resolver = Callable[[Task, Cell], ResolvedRun]


class Worker:
    """Performs tasks, keeping the last group's References (its Original and measured Retrains) for its next cell."""

    def __init__(self, resolve: Resolver, progress: Progress = SILENT, log: Callable[[str], None] | None = None):
        self.resolve = resolve
        self.progress = progress
        self.log = log  # None: lines are returned in Done.lines
        self._group: tuple[tuple[dict[str, str], ...], References] | None = None

    def perform(self, task: Task, files: Mapping[str, bytes] | None = None) -> Done:
        done = Done(task)
        say = self.log or done.lines.append
        try:
            _install(files or {})
            references = self._references(task, done, say)
            if task.ship and references.run.spec.cache:
                done.files = _cached_references(references.run)
        except Exception as exc:  # noqa: BLE001 - reported for the group; the grid goes on with the others
            if isinstance(exc, UnlearnkitError) and not isinstance(exc, PluginFault):
                done.error = (exc.message, exc.hint)  # missing data, say: the same for every group
            else:
                done.failure = f"{task.where}: Original or Retrain failed: {_reason(exc)}"
                say(done.failure)
                _debug_traceback()
            return done
        if task.cell is not None:
            self._cell(task, task.cell, references, done, say)
        return done

    def _references(self, task: Task, done: Done, say: Callable[[str], None]) -> References:
        """The group's Original and measured Retrain of each forget step; records for the wanted keys."""
        log = lambda line: say(f"{task.where}: {line}")  # noqa: E731
        if self._group is not None and self._group[0] == task.references and not task.wanted:
            references = self._group[1]  # resolved and checked when it was built, for these same references
            references.run.log = log  # this task's, not the one that built it
            return references
        self._group = None  # freed before the next group's models are loaded
        resolved = self.resolve(task, task.group)
        _same_keys(reference_keys(resolved), task.references, task.where)
        # every cell is scored against Retrain, whatever the base spec's `retrain` says
        references = References(ProtocolRun(resolved, progress=self.progress, log=log), retrain=True)
        for index, keys in enumerate(task.references):
            step = references.step(index)
            assert step.retrain is not None
            base = record_base(step.run, task.group)
            if keys["retrain"] in task.wanted:
                done.records.append((keys["retrain"],
                                     {**base, "kind": "retrain", "variant": "Retrain", "metrics": step.retrain.metrics}))
            if keys["original"] in task.wanted:
                done.records.append((keys["original"], {**base, "kind": "original", "variant": "Original",
                                                        "metrics": references.measure_original(step)}))
        self._group = (task.references, references)
        return references

    def _cell(self, task: Task, cell: Cell, references: References, done: Done, say: Callable[[str], None]) -> None:
        """Every forget step of the cell, each from the model the step before left; records only once all are done."""
        records, seconds = [], 0.0
        references.run.events.take()  # the references' own (the cell's log starts with its unlearning)
        try:
            resolved = self.resolve(task, cell)
            _same_keys(cell_keys(resolved), task.cell_keys, f"{cell.label} ({task.where})")
            for unlearned in unlearn_steps(references, resolved):
                records.append({
                    **record_base(unlearned.reference.run, cell), "kind": "unlearned", "variant": cell.label,
                    "method": cell.method, "augment": list(cell.augment), "trial": cell.trial,
                    "overlay": json.loads(cell.overlay), "params": plugin_params(resolved), "metrics": unlearned.metrics,
                })
                seconds += unlearned.cost["seconds"]
        except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the grid (a plugin's sys.exit arrives as a PluginFault)
            done.failure = f"{cell.label} ({task.where}) failed: {_reason(exc)}"
            say(done.failure)
            _debug_traceback()
            return
        done.records += list(zip(task.cell_keys, records))
        done.events = references.run.events.take()
        gaps = ", ".join(f"{r['metrics'].get('avg_gap', float('nan')):.2f}" for r in records)
        say(f"{task.where}: {cell.label}: Avg Gap {gaps} in {seconds:.1f} s")


def record_base(run: ProtocolRun, cell: Cell) -> dict[str, Any]:
    """What every record of a (scenario, seed) step shares; `run` is the protocol run at that step."""
    base = {"scenario": step_scenario(cell.scenario, run.step), "seed": cell.seed,
            "forget_count": len(run.split.forget), "retain_count": len(run.split.retain),
            "environment": environment(run.device, run.compute)}
    return base if run.step is None else {**base, "step": run.step}


def plugin_params(resolved: ResolvedRun) -> dict[str, Any]:
    """The params the method and each augmenter ran with: recorded beside the metrics."""
    return {
        "method": resolved.method.params.model_dump(mode="json", by_alias=True),
        "augment": {a.name: a.params.model_dump(mode="json", by_alias=True) for a in resolved.augmenters},
    }


def _same_keys(here: Any, driver: Any, what: str) -> None:
    """Refuse to compute records the driver would file under other keys (the two resolve the cell differently)."""
    if here != driver:
        raise UnlearnkitError(f"{what}: this worker resolves the cell differently from the command that started the grid",
                              "Install the same unlearnkit and plugin versions on every machine of the cluster.")


def _cached_references(run: ProtocolRun) -> dict[str, bytes]:
    """The group's Original and Retrains as model-cache files (cache key -> bytes), for another machine's cache."""
    keys = [cache_key(step, "retrain") for step in run.steps()]
    if run.spec.original is None:  # a given --original file is read where the cell runs
        keys.append(cache_key(run, "original"))
    return {key: cache.entry(key).read_bytes() for key in keys if cache.entry(key).exists()}


def _install(files: Mapping[str, bytes]) -> None:
    """Shipped references into this machine's model cache (entries carry checksums, checked when read)."""
    for key, data in files.items():
        if not cache.entry(key).exists():
            atomic_write_bytes(cache.entry(key), data)


def _reason(exc: Exception) -> str:
    """Why a cell or group failed, on one line; a plugin's fault names the plugin and its distribution."""
    return exc.message if isinstance(exc, PluginFault) else f"{type(exc).__name__}: {exc}"


def _debug_traceback() -> None:
    if os.environ.get("UNLEARNKIT_DEBUG", "") not in ("", "0"):
        traceback.print_exc()


# --- in a worker process ------------------------------------------------------------------------

_process_worker: Worker | None = None


def perform(task: Task, files: Mapping[str, bytes] | None = None) -> Done:
    """Perform a task in a worker process: its cells resolved against the plugins installed here.

    Whatever goes wrong comes back as the task's failure, never as an exception the driver would have to read.
    """
    global _process_worker
    try:
        if _process_worker is None:
            _process_worker = Worker(_resolve_installed)
        return _process_worker.perform(task, files)
    except Exception as exc:  # noqa: BLE001 - a fault outside a cell's and a group's own (the plugins failed to load, say)
        return Done(task, failure=f"{task.where}: the worker failed: {_reason(exc)}")


def _resolve_installed(task: Task, cell: Cell) -> ResolvedRun:
    return resolve_cell(cell, task.base, installed())


def start_process(threads: int, ignore_ctrl_c: bool = False) -> None:
    """A worker process's start: the torch threads its share of the cores allows. A local worker leaves Ctrl-C
    to the command that started it, which stops it (the terminal sends Ctrl-C to every process of the command)."""
    import torch

    if ignore_ctrl_c:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
