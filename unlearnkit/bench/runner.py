"""Running a grid: one Protocol per (scenario, seed), cached references, one JSON record per finished cell."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from unlearnkit.api import Plugin

from unlearnkit.bench.grid import Cell, Grid, scenario_label, spec_key, step_scenario
from unlearnkit.errors import PluginFault, UnlearnkitError
from unlearnkit.evaluation.subject import Subject
from unlearnkit.files import atomic_write_json, identity, set_aside
from unlearnkit.models import Classifier
from unlearnkit.pipeline import Protocol, environment
from unlearnkit.progress import SILENT, Progress
from unlearnkit.spec import ComputeSpec, ResolvedRun

RECORD_FORMAT = 1
REFERENCES = ("retrain", "original")


class CellStore:
    """Finished cells as `cells/<key>.json`, each written whole or not at all (unlearnkit.files).

    A record that does not parse (truncated, overwritten) is reported with its path (a StorageWarning),
    set aside as NAME.damaged and computed again; one from another RECORD_FORMAT is computed again.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder) / "cells"

    def missing(self, keys: Iterable[str]) -> bool:
        """Whether any of these records is not on disk (a sequential cell is done only with every step)."""
        return any(self.get(key) is None for key in keys)

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        seen = identity(path)
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
        atomic_write_json(self.folder / f"{key}.json", {"format": RECORD_FORMAT, "key": key, **record})


def _record_problem(record: Any, key: str) -> str | None:
    """What makes a parsed record unusable, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record"
    if record.get("key") != key:
        return f"it holds the record of {record.get('key')!r}"
    if not isinstance(record.get("metrics"), dict):
        return "it has no metrics"
    return None


def _identity(resolved: ResolvedRun, *drop: str) -> dict[str, Any]:
    """What determines a cell's numbers: the spec, less where it runs and where it writes.

    Plugin params count as validated, defaults left out, so a param written out at its
    default value (a tuning that chose the default, say) names the same cell as one left unset.
    """
    # Neither how many processes read the data nor the Retrain switch (a bench always trains Retrain) changes a number.
    exclude: dict[str, Any] = {key: True for key in ("device", "cache", "output", "retrain", *drop)}
    identity = resolved.spec.model_dump(mode="json", exclude={**exclude, "data": {"workers"}})
    if identity["forget"].get("indices") is None:  # absent unless given, so that other scenarios keep their keys
        identity["forget"].pop("indices", None)
    if identity.get("compute") == ComputeSpec().model_dump(mode="json"):  # absent unless set: older cells keep their keys
        identity.pop("compute")
    plugins: dict[str, Sequence[Plugin]] = {
        "method": [resolved.method], "augment": resolved.augmenters, "evaluate": resolved.evaluators,
    }
    for section, chosen in plugins.items():
        if section in identity:
            entries = identity[section] if isinstance(identity[section], list) else [identity[section]]
            for entry, plugin in zip(entries, chosen):
                entry["params"] = plugin.params.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return identity


def forget_steps(resolved: ResolvedRun) -> list[int | None]:
    """The steps a cell writes a record for: 1..k in sequential forgetting, else one (None)."""
    forget = resolved.spec.forget
    return list(range(1, forget.steps + 1)) if forget.kind == "sequential" else [None]


def _key(kind: str, identity: dict[str, Any], step: int | None) -> str:
    return spec_key(kind, identity) if step is None else spec_key(kind, identity, {"step": step})


def cell_key(resolved: ResolvedRun, step: int | None = None) -> str:
    return _key("unlearned", _identity(resolved), step)


def reference_key(resolved: ResolvedRun, kind: str, step: int | None = None) -> str:
    return _key(kind, _identity(resolved, "method", "augment"), step)


def plugin_params(resolved: ResolvedRun) -> dict[str, Any]:
    """The params the method and each augmenter ran with: recorded beside the metrics."""
    return {
        "method": resolved.method.params.model_dump(mode="json", by_alias=True),
        "augment": {a.name: a.params.model_dump(mode="json", by_alias=True) for a in resolved.augmenters},
    }


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
) -> Outcome:
    """Run every cell not yet on disk, in two phases.

    1. References: each (scenario, seed) group's Original and Retrain (a Retrain per step in
       sequential forgetting) are trained (or taken from the model cache) and measured;
       `after_references` then receives their records, so the regime can be checked before
       any method runs.
    2. Cells, group by group; `after_group` receives the records finished so far after each.
       A sequential cell runs its whole chain and writes a record per step.

    A cell that raises is reported and skipped, so one broken method does not stop a grid;
    KeyboardInterrupt stops it, with the finished cells kept (`Outcome.interrupted`).
    """
    started = time.perf_counter()
    outcome = Outcome()
    keys = Keys(grid)
    groups: dict[tuple[str, int], list[Cell]] = defaultdict(list)
    for cell in grid.cells:
        groups[(cell.scenario, cell.seed)].append(cell)
    pending = {group: [c for c in cells if store.missing(keys.cell[c])] for group, cells in groups.items()}
    total = sum(len(p) for p in pending.values())
    if total < len(grid.cells):
        log(f"{len(grid.cells) - total} of {len(grid.cells)} cells already finished: resuming")
    broken: set[tuple[str, int]] = set()  # groups whose Original or Retrain failed

    def each_group(work: Callable[[Cell, list[Cell]], object], wanted: Callable[[tuple[str, int]], bool]) -> bool:
        """Apply `work` to the groups that want it; False when a user error stopped the grid."""
        for (scenario, seed), cells in groups.items():
            if (scenario, seed) in broken or not wanted((scenario, seed)):
                continue
            try:
                work(cells[0], pending[(scenario, seed)])
            except Exception as exc:  # noqa: BLE001 - Original or Retrain failed: the group's cells cannot run
                if isinstance(exc, UnlearnkitError) and not isinstance(exc, PluginFault):
                    outcome.error = exc  # the same for every group (missing data, say): stop and say it
                    return False
                broken.add((scenario, seed))
                outcome.failures.append(f"{scenario_label(scenario)}, seed {seed}: Original or Retrain failed: {_reason(exc)}")
                log(outcome.failures[-1])
                _debug_traceback()
        return True

    def references_missing(group: tuple[str, int]) -> bool:
        return any(store.missing(step.values()) for step in keys.references[groups[group][0]])

    try:
        if each_group(lambda first, _: _group_protocol(grid, keys, first, store, progress, log), references_missing):
            after_references(finished(grid, keys, store, references_only=True))
            with progress.task("grid: cells", total) as advance:
                def run_cells(first: Cell, cells: list[Cell]) -> None:
                    protocol, original, retrains = _group_protocol(grid, keys, first, store, progress, log)
                    _run_cells(grid, keys, protocol, original, retrains, cells, store, log, advance, outcome)
                    after_group(finished(grid, keys, store))

                each_group(run_cells, lambda group: bool(pending[group]))
    except KeyboardInterrupt:
        outcome.interrupted = True
    outcome.seconds = time.perf_counter() - started
    outcome.records = finished(grid, keys, store)
    outcome.done = sum(not store.missing(keys.cell[c]) for c in grid.cells)
    return outcome


class Keys:
    """Each cell's record keys and its group's reference keys, one per forget step, hashed once per grid."""

    def __init__(self, grid: Grid):
        self.cell: dict[Cell, list[str]] = {}
        self.references: dict[Cell, list[dict[str, str]]] = {}
        for cell in grid.cells:
            resolved = grid.resolved[cell]
            steps = forget_steps(resolved)
            self.cell[cell] = [cell_key(resolved, step) for step in steps]
            self.references[cell] = [{kind: reference_key(resolved, kind, step) for kind in REFERENCES} for step in steps]


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


def _reason(exc: Exception) -> str:
    """Why a cell or group failed, on one line; a plugin's fault names the plugin and its distribution."""
    return exc.message if isinstance(exc, PluginFault) else f"{type(exc).__name__}: {exc}"


def _debug_traceback() -> None:
    if os.environ.get("UNLEARNKIT_DEBUG", "") not in ("", "0"):
        traceback.print_exc()


def _group_protocol(grid, keys: Keys, first: Cell, store, progress, log) -> tuple[Protocol, Classifier, list[Subject]]:
    """The group's Protocol, Original and the measured Retrain of each forget step (one, except in sequential
    forgetting); their records are stored if missing. The Original is measured against each step's Retrain."""
    where = f"{scenario_label(first.scenario)}, seed {first.seed}"
    protocol = Protocol(grid.resolved[first], progress=progress, log=lambda line: log(f"{where}: {line}"))
    original, original_cost, _ = protocol.reference_model("original")
    retrains = []
    for step, references in zip(protocol.steps(), keys.references[first]):
        retrain_model, retrain_cost, _ = step.reference_model("retrain")
        retrain = step.subject("retrain", retrain_model, retrain_cost)
        step.measure(retrain, None)
        base = _record_base(step, first)
        if store.get(references["retrain"]) is None:
            store.put(references["retrain"], {**base, "kind": "retrain", "variant": "Retrain", "metrics": retrain.metrics})
        if store.get(references["original"]) is None:
            subject = step.subject("original", original, original_cost)
            step.measure(subject, retrain)
            store.put(references["original"],
                      {**base, "kind": "original", "variant": "Original", "metrics": subject.metrics})
        retrains.append(retrain)
    return protocol, original, retrains


def _record_base(protocol: Protocol, cell: Cell) -> dict[str, Any]:
    """What every record of a (scenario, seed) step shares; `protocol` is the protocol at that step."""
    base = {"scenario": step_scenario(cell.scenario, protocol.step), "seed": cell.seed,
            "forget_count": len(protocol.split.forget), "retain_count": len(protocol.split.retain),
            "environment": environment(protocol.device, protocol.compute)}
    return base if protocol.step is None else {**base, "step": protocol.step}


def _run_cells(grid, keys: Keys, protocol: Protocol, original: Classifier, retrains: list[Subject], pending: list[Cell],
               store, log, advance, outcome) -> None:
    for cell in pending:
        where = f"{scenario_label(cell.scenario)}, seed {cell.seed}"
        resolved = grid.resolved[cell]
        if not store.missing(keys.cell[cell]):  # finished meanwhile by another process on the same folder
            advance()
            continue
        records, seconds = [], 0.0
        try:  # every step, each from the model the step before left; stored only once all are done
            for (step, model, cost), retrain in zip(protocol.unlearn_in_turn(original, resolved.wrapped_method()), retrains):
                metrics = step.measure(step.subject("unlearned", model, cost), retrain)
                records.append({
                    **_record_base(step, cell), "kind": "unlearned", "variant": cell.label, "method": cell.method,
                    "augment": list(cell.augment), "trial": cell.trial, "overlay": json.loads(cell.overlay),
                    "params": plugin_params(resolved), "metrics": metrics,
                })
                seconds += cost["seconds"]
        except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the grid (a plugin's sys.exit arrives as a PluginFault)
            line = f"{cell.label} ({where}) failed: {_reason(exc)}"
            outcome.failures.append(line)
            log(line)
            _debug_traceback()
            advance()
            continue
        for key, record in zip(keys.cell[cell], records):
            store.put(key, record)
        outcome.computed += 1
        gaps = ", ".join(f"{r['metrics'].get('avg_gap', float('nan')):.2f}" for r in records)
        log(f"{where}: {cell.label}: Avg Gap {gaps} in {seconds:.1f} s")
        advance()
