"""Running a grid: each (scenario, seed) group's references first, then its cells, one JSON record per finished cell.

The driver here hands the work out as Tasks to an executor (this process, worker processes, Ray) and
is the only writer of the result store, so a grid resumes the same way whichever executor ran it.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unlearnkit.bench.executors import Executor, Serial
from unlearnkit.bench.grid import Cell, Grid
from unlearnkit.bench.keys import Keys
from unlearnkit.bench.work import Done, Task
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import atomic_write_json, file_stamp, set_aside
from unlearnkit.progress import SILENT, Progress
from unlearnkit.resolve import error_lines

RECORD_FORMAT = 1


class CellStore:
    """Finished cells as `cells/<key>.json`, each written whole or not at all (unlearnkit.files).

    A record that does not parse (truncated, overwritten) or lacks what the tables read (RecordShape: a metric
    that is text, say) is reported with its path (a StorageWarning), set aside as NAME.damaged and computed
    again; one from another RECORD_FORMAT is computed again.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder) / "cells"

    def missing(self, keys: Iterable[str]) -> bool:
        """Whether any of these records is not on disk (a sequential cell is done only with every step)."""
        return any(self.get(key) is None for key in keys)

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        seen = file_stamp(path)
        if seen is None:
            return None
        problem: str | None
        try:
            record = json.loads(path.read_bytes())
        except FileNotFoundError:  # set aside or replaced meanwhile by another process on the same folder
            return None
        except OSError as exc:
            raise UnlearnkitError(f"cannot read bench cell {path}: {exc.strerror}",
                                  "Check that the folder is readable, or choose another --out.") from None
        except ValueError as exc:  # JSON or UTF-8 that does not decode: a truncated or overwritten file
            problem = f"not valid JSON: {exc}"
        else:
            if isinstance(record, dict) and record.get("format") != RECORD_FORMAT:
                return None  # written by another version: computed again
            problem = _record_problem(record, key)
        if problem is None:
            return record
        set_aside(path, seen, problem)
        return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        if isinstance(record.get("metrics"), dict):  # JSON has no NaN, and `get` refuses one: stored as n/a (null)
            record = {**record, "metrics": {k: None if isinstance(v, float) and not math.isfinite(v) else v
                                            for k, v in record["metrics"].items()}}
        atomic_write_json(self.folder / f"{key}.json", {"format": RECORD_FORMAT, "key": key, **record})


class RecordShape(BaseModel):
    """The fields the tables and tunings read from a record, with their types: a record that breaks them (edited by
    hand, say) is set aside like a damaged one, so no summary meets a metric that is text or missing."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")

    kind: Literal["retrain", "original", "unlearned"]
    scenario: str
    variant: str
    seed: int = Field(ge=0)
    step: int | None = Field(None, ge=1)
    forget_count: int = Field(ge=0)
    retain_count: int = Field(ge=0)
    # every evaluator reports at least one metric: an empty mapping would show as n/a, or break Avg Gap
    metrics: dict[str, float | None] = Field(min_length=1)
    method: str | None = None
    augment: list[str] = Field(default_factory=list)
    overlay: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    trial: int | None = None


def _record_problem(record: Any, key: str) -> str | None:
    """What makes a parsed record unusable, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    if record.get("key") != key:
        return f"it holds the record of {record.get('key')!r}"
    try:
        RecordShape.model_validate(record)
    except ValidationError as exc:
        return "; ".join(error_lines(exc)[:3])
    return None


@dataclass
class Outcome:
    records: list[dict[str, Any]] = field(default_factory=list)  # every cell and reference of the grid that is done
    computed: int = 0  # cells run by this call (the rest were already on disk)
    done: int = 0  # cells of the grid finished, by this call or earlier (a sequential cell has a record per step)
    failures: list[str] = field(default_factory=list)
    error: Exception | None = None  # a user error (UnlearnkitError) that stopped the grid
    seconds: float = 0.0
    interrupted: bool = False


def run_grid(
    grid: Grid,
    store: CellStore,
    progress: Progress = SILENT,
    log: Callable[[str], None] = lambda line: None,
    after_group: Callable[[list[dict[str, Any]]], object] = lambda records: None,
    after_references: Callable[[list[dict[str, Any]]], object] = lambda records: None,
    executor: Executor | None = None,
    after_cell: Callable[[list[dict[str, Any]], list[dict[str, Any]]], object] = lambda records, events: None,
) -> Outcome:
    """Run every cell not yet on disk, in two phases.

    1. References: each (scenario, seed) group's Original and Retrain (a Retrain per step in
       sequential forgetting) are trained (or taken from the model cache) and measured;
       `after_references` then receives their records, so the regime can be checked before
       any method runs.
    2. Cells; `after_group` receives the records finished so far each time a group's cells are
       all done. A sequential cell runs its whole chain and writes a record per step.

    A cell that raises is reported and skipped, so one broken method does not stop a grid;
    KeyboardInterrupt stops it, with the finished cells kept (`Outcome.interrupted`).
    `executor` runs the tasks (default: one after another in this process). `after_cell` receives each cell
    computed now, as it arrives: its records (one per forget step) and its event log.
    """
    started = time.perf_counter()
    executor = executor or Serial()
    outcome = Outcome()
    keys = Keys(grid)
    groups: dict[Cell, list[Cell]] = defaultdict(list)  # by each (scenario, seed) group's first cell
    first: dict[tuple[str, int], Cell] = {}
    for cell in grid.cells:
        groups[first.setdefault((cell.scenario, cell.seed), cell)].append(cell)
    pending = {group: [c for c in cells if store.missing(keys.cell[c])] for group, cells in groups.items()}
    total = sum(len(p) for p in pending.values())
    if total < len(grid.cells):
        log(f"{len(grid.cells) - total} of {len(grid.cells)} cells already finished: resuming")
    broken: set[Cell] = set()  # groups whose Original or Retrain failed
    files: dict[Cell, Any] = {}  # references shipped to workers that do not share the cache (executor.share's)

    def absorb(done: Done) -> None:
        for line in done.lines:
            log(line)
        for key, record in done.records:
            if done.task.cell is not None or store.get(key) is None:
                store.put(key, record)
        if done.error is not None:
            raise UnlearnkitError(*done.error)
        if done.failure is not None:
            outcome.failures.append(done.failure)
            if done.task.cell is None:
                broken.add(done.task.group)
        elif done.task.cell is not None:
            outcome.computed += 1
            after_cell([record for _, record in done.records], done.events)
        if done.files:
            files[done.task.group] = executor.share(done.files)

    def reference_tasks() -> list[list[Task]]:
        """The groups' reference tasks, in two waves when they run at once: groups sharing an Original
        (same seed, other scenario) would otherwise all train it together."""
        waves: list[list[Task]] = [[], []]
        seeds: set[int] = set()
        for group in groups:
            missing = tuple(k for step in keys.references[group] for k in step.values() if store.get(k) is None)
            # cells running at once must find their models cached (or shipped), measured or not
            if missing or (executor.parallel and pending[group]):
                waves[executor.parallel and group.seed in seeds].append(
                    Task(grid.base, group, keys.references[group], wanted=missing, ship=executor.ships))
                seeds.add(group.seed)
        return waves

    left = {group: len(cells) for group, cells in pending.items() if cells}  # cells each group still has to run

    def cell_finished(group: Cell, advance: Callable[[], None]) -> None:
        advance()
        left[group] -= 1
        if not left[group]:
            after_group(finished(grid, keys, store))

    def cell_tasks(advance: Callable[[], None]) -> Iterator[Task]:
        """Taken one at a time as the executor has room: a cell another process sharing the folder has
        finished meanwhile is skipped."""
        for group, cells in pending.items():
            for cell in cells if group not in broken else []:
                if store.missing(keys.cell[cell]):
                    yield Task(grid.base, group, keys.references[group], cell, keys.cell[cell])
                else:
                    cell_finished(group, advance)

    try:
        if executor.parallel and not all(resolved.spec.cache for resolved in grid.resolved.values()):
            raise UnlearnkitError("cells running at once share their group's Original and Retrain through the model "
                                  "cache, which this grid turns off (cache: false)",
                                  "Remove cache: false from the base spec, or run the cells one at a time.")
        waves = reference_tasks()
        with progress.task("grid: references", sum(len(wave) for wave in waves)) as advance:
            for wave in waves:
                for done in executor.run(grid, wave, progress, log, files):
                    absorb(done)
                    advance()
        after_references(finished(grid, keys, store, references_only=True))
        with progress.task("grid: cells", sum(n for group, n in left.items() if group not in broken)) as advance:
            for done in executor.run(grid, cell_tasks(advance), progress, log, files):
                absorb(done)
                cell_finished(done.task.group, advance)
    except UnlearnkitError as exc:
        outcome.error = exc  # the same for every group (missing data, say): stop and say it
    except KeyboardInterrupt:
        outcome.interrupted = True  # whoever made the executor stops its workers
    outcome.seconds = time.perf_counter() - started
    outcome.records = finished(grid, keys, store)
    outcome.done = sum(not store.missing(keys.cell[c]) for c in grid.cells)
    return outcome


def finished(grid: Grid, keys: Keys, store: CellStore, references_only: bool = False) -> list[dict[str, Any]]:
    """The records on disk for the grid's cells, each (scenario, seed) group's Retrain and Original first.

    A cell's record may have been written by another grid sharing the folder (another tuning
    with other trial numbers): it is labelled as the cell of this grid.
    """
    records, seen = [], set()
    for cell in grid.cells:
        for key in (key for step in keys.references[cell] for key in step.values()):
            if key not in seen and (record := store.get(key)):
                records.append(record)
            seen.add(key)
        if references_only:
            continue
        for key in keys.cell[cell]:
            if key not in seen and (record := store.get(key)):
                records.append({**record, "trial": cell.trial, "variant": cell.label})
            seen.add(key)
    return records
