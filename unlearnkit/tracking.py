"""Trackers following a command's runs: one fan-out over the trackers a spec selects (`track:`, `--track`).

Every call into a tracker is guarded: one that raises (or exits) is reported once, as a warning naming it and
its plugin, and is switched off for the rest of the command. Trackers only follow: what they fail to log never
costs a run its results, which the command writes whatever they do.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from unlearnkit.api import Tracker
from unlearnkit.plugins import failure, plugin_code


class TrackerWarning(UserWarning):
    """A tracker failed and was switched off; the command goes on (the CLI shows it as one line)."""


def _warning(line: str) -> None:
    warnings.warn(line, TrackerWarning, stacklevel=3)


@dataclass
class Ending:
    """How a tracked run ends: finished, unless the command says otherwise (an interrupted grid, say)."""

    status: str = "finished"


class Tracking:
    """The selected trackers, called together; `warn` receives one line per tracker that fails."""

    def __init__(self, trackers: Sequence[Tracker] = (), warn: Callable[[str], None] = _warning):
        self.active = list(trackers)
        self.warn = warn
        self.where: list[str] = []  # how to look at what each tracker logs, from `prepare`
        self._open: list[str] = []  # the names of the runs open, the innermost last

    def prepare(self, folder: Path) -> None:
        """Before any training: each tracker checks it can log (an error here stops the command: the user's to fix)."""
        for tracker in self.active:
            with plugin_code(tracker):
                line = tracker.prepare(Path(folder))
            if line:
                self.where.append(line)

    def _each(self, call: Callable[[Tracker], object]) -> None:
        for tracker in list(self.active):
            try:
                with plugin_code(tracker):
                    call(tracker)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a tracker raises, the run goes on without it
                self.active.remove(tracker)
                self.warn(f"{failure(tracker, exc)}; it follows nothing more of this command, whose results are "
                          "written all the same")

    @contextmanager
    def run(self, name: str, tags: Mapping[str, Any] | None = None) -> Iterator[Ending]:
        """A run from start to end, a child of the run open around it (a bench's, for a cell). It ends `failed` or
        `interrupted` when the block raises, else with the status the block sets on what it is given."""
        parent = self._open[-1] if self._open else None
        self._each(lambda t: t.start(name, parent, {k: str(v) for k, v in (tags or {}).items() if v is not None}))
        self._open.append(name)
        ending = Ending()
        try:
            yield ending
        except KeyboardInterrupt:
            ending.status = "interrupted"
            raise
        except BaseException:
            ending.status = "failed"
            raise
        finally:
            self._open.pop()
            self._each(lambda t: t.end(ending.status))

    def params(self, params: Mapping[str, Any]) -> None:
        flat = flatten(params)
        if flat:
            self._each(lambda t: t.log_params(flat))

    def event(self, event: Mapping[str, Any]) -> None:
        """One event of a run's log (unlearnkit.events) as the metrics it holds."""
        metrics, step = event_metrics(event)
        if metrics:
            self._each(lambda t: t.log_metrics(metrics, step))

    def artifacts(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self._each(partial(_log_artifact, path=Path(path)))


def _log_artifact(tracker: Tracker, path: Path) -> None:
    tracker.log_artifact(path)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: {"method": {"params": {"lr": 0.1}}} -> {"method.params.lr": 0.1}; None left out."""
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {} if value is None else {prefix: value if isinstance(value, (int, float, str)) else str(value)}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return flat


def event_metrics(event: Mapping[str, Any]) -> tuple[dict[str, float], int]:
    """The metrics an event holds, named by model (`unlearned/loss`, `step2/retrain/ra`), and the step they are at:
    the epoch for an epoch's loss terms, the optimisation step for `log_every`'s, the forget step (or 0) for
    an evaluation, its epoch for one made during training (`eval_every`: `unlearned/epochs/RA`)."""
    prefix = event["model"] if event.get("forget_step") is None else f"step{event['forget_step']}/{event['model']}"
    if event["event"] == "evaluation" and "epoch" in event:
        values, step, prefix = event["metrics"], event["epoch"], f"{prefix}/epochs"
    elif event["event"] == "evaluation":
        values, step = event["metrics"], event.get("forget_step") or 0
    else:
        prefix += "/steps" if event["event"] == "steps" else ""
        values, step = {**event["terms"], "lr": event["lr"]}, event["step" if event["event"] == "steps" else "epoch"]
    return {f"{prefix}/{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and math.isfinite(v)}, int(step)
