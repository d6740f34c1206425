"""Running a grid: one Protocol per (scenario, seed), cached references, one JSON record per finished cell."""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from unlearnkit.bench.grid import Cell, Grid, scenario_label, spec_key
from unlearnkit.errors import UnlearnkitError
from unlearnkit.pipeline import Protocol, environment
from unlearnkit.progress import SILENT, Progress
from unlearnkit.spec import ResolvedRun

RECORD_FORMAT = 1
REFERENCES = ("retrain", "original")


class CellStore:
    """Finished cells as `cells/<key>.json`. A record is written whole (temp file + rename) or not at all."""

    def __init__(self, folder: Path):
        self.folder = Path(folder) / "cells"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads((self.folder / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None  # absent (or unreadable): computed again
        return record if record.get("format") == RECORD_FORMAT else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")  # one per writer
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps({"format": RECORD_FORMAT, "key": key, **record}, indent=1))
            os.replace(temporary, self.folder / f"{key}.json")
        finally:
            Path(temporary).unlink(missing_ok=True)


def _identity(resolved: ResolvedRun, *drop: str) -> dict[str, Any]:
    """What determines a cell's numbers: the spec, less where it runs and where it writes.

    Plugin params count as validated, defaults left out, so a param written out at its
    default value (a tuning that chose the default, say) names the same cell as one left unset.
    """
    identity = resolved.spec.model_dump(mode="json", exclude={"device", "cache", "output", *drop})
    plugins = {"method": [resolved.method], "augment": resolved.augmenters, "evaluate": resolved.evaluators}
    for section, chosen in plugins.items():
        if section in identity:
            entries = identity[section] if isinstance(identity[section], list) else [identity[section]]
            for entry, plugin in zip(entries, chosen):
                entry["params"] = plugin.params.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return identity


def cell_key(resolved: ResolvedRun) -> str:
    return spec_key("unlearned", _identity(resolved))


def reference_key(resolved: ResolvedRun, kind: str) -> str:
    return spec_key(kind, _identity(resolved, "method", "augment"))


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
    failures: list[str] = field(default_factory=list)
    error: Exception | None = None  # a user error (UnlearnkitError) that stopped the grid
    seconds: float = 0.0
    interrupted: bool = False


def run_grid(
    grid: Grid,
    store: CellStore,
    progress: Progress = SILENT,
    log: Callable[[str], None] = lambda line: None,
    after_group: Callable[[list[dict[str, Any]]], None] = lambda records: None,
    after_references: Callable[[list[dict[str, Any]]], None] = lambda records: None,
) -> Outcome:
    """Run every cell not yet on disk, in two phases.

    1. References: each (scenario, seed) group's Original and Retrain are trained (or taken
       from the model cache) and measured; `after_references` then receives their records,
       so the regime can be checked before any method runs.
    2. Cells, group by group; `after_group` receives the records finished so far after each.

    A cell that raises is reported and skipped, so one broken method does not stop a grid;
    KeyboardInterrupt stops it, with the finished cells kept (`Outcome.interrupted`).
    """
    started = time.perf_counter()
    outcome = Outcome()
    keys = Keys(grid)
    groups: dict[tuple[str, int], list[Cell]] = defaultdict(list)
    for cell in grid.cells:
        groups[(cell.scenario, cell.seed)].append(cell)
    pending = {group: [c for c in cells if store.get(keys.cell[c]) is None] for group, cells in groups.items()}
    total = sum(len(p) for p in pending.values())
    if total < len(grid.cells):
        log(f"{len(grid.cells) - total} of {len(grid.cells)} cells already finished: resuming")
    broken: set[tuple[str, int]] = set()  # groups whose Original or Retrain failed

    def each_group(work: Callable[[Cell, list[Cell]], None], wanted: Callable[[tuple[str, int]], bool]) -> bool:
        """Apply `work` to the groups that want it; False when a user error stopped the grid."""
        for (scenario, seed), cells in groups.items():
            if (scenario, seed) in broken or not wanted((scenario, seed)):
                continue
            try:
                work(cells[0], pending[(scenario, seed)])
            except UnlearnkitError as exc:  # the same for every group (missing data, say): stop and say it
                outcome.error = exc
                return False
            except Exception as exc:  # noqa: BLE001 - Original or Retrain failed: the group's cells cannot run
                broken.add((scenario, seed))
                outcome.failures.append(f"{scenario_label(scenario)}, seed {seed}: Original or Retrain failed: "
                                        f"{type(exc).__name__}: {exc}")
                log(outcome.failures[-1])
                _debug_traceback()
        return True

    def references_missing(group: tuple[str, int]) -> bool:
        return any(store.get(k) is None for k in keys.references[groups[group][0]].values())

    try:
        if each_group(lambda first, _: _group_protocol(grid, keys, first, store, progress, log), references_missing):
            after_references(finished(grid, keys, store, references_only=True))
            with progress.task("grid: cells", total) as advance:
                def run_cells(first: Cell, cells: list[Cell]) -> None:
                    protocol, original, retrain = _group_protocol(grid, keys, first, store, progress, log)
                    _run_cells(grid, keys, protocol, original, retrain, cells, store, log, advance, outcome)
                    after_group(finished(grid, keys, store))

                each_group(run_cells, lambda group: bool(pending[group]))
    except KeyboardInterrupt:
        outcome.interrupted = True
    outcome.seconds = time.perf_counter() - started
    outcome.records = finished(grid, keys, store)
    return outcome


class Keys:
    """Each cell's record key and its group's reference keys, hashed once per grid."""

    def __init__(self, grid: Grid):
        self.cell = {c: cell_key(grid.resolved[c]) for c in grid.cells}
        self.references = {c: {kind: reference_key(grid.resolved[c], kind) for kind in REFERENCES} for c in grid.cells}


def finished(grid: Grid, keys: Keys, store: CellStore, references_only: bool = False) -> list[dict[str, Any]]:
    """The records on disk for the grid's cells, each (scenario, seed) group's Retrain and Original first.

    A cell's record may have been written by another grid sharing the folder (another tuning
    with other trial numbers): it is labelled as the cell of this grid.
    """
    records, seen = [], set()
    for cell in grid.cells:
        for key in keys.references[cell].values():
            if key not in seen and (record := store.get(key)):
                records.append(record)
            seen.add(key)
        if references_only:
            continue
        key = keys.cell[cell]
        if key not in seen and (record := store.get(key)):
            records.append({**record, "trial": cell.trial, "variant": cell.label})
        seen.add(key)
    return records


def _debug_traceback() -> None:
    if os.environ.get("UNLEARNKIT_DEBUG", "") not in ("", "0"):
        traceback.print_exc()


def _group_protocol(grid, keys: Keys, first: Cell, store, progress, log):
    """The group's Protocol, Original and measured Retrain; their records are stored if missing."""
    references = keys.references[first]
    where = f"{scenario_label(first.scenario)}, seed {first.seed}"
    protocol = Protocol(grid.resolved[first], progress=progress, log=lambda line: log(f"{where}: {line}"))
    original, original_cost, _ = protocol.reference_model("original")
    retrain_model, retrain_cost, _ = protocol.reference_model("retrain")
    retrain = protocol.subject("retrain", retrain_model, retrain_cost)
    protocol.measure(retrain, None)
    base = _record_base(protocol, first)
    if store.get(references["retrain"]) is None:
        store.put(references["retrain"], {**base, "kind": "retrain", "variant": "Retrain", "metrics": retrain.metrics})
    if store.get(references["original"]) is None:
        subject = protocol.subject("original", original, original_cost)
        protocol.measure(subject, retrain)
        store.put(references["original"], {**base, "kind": "original", "variant": "Original", "metrics": subject.metrics})
    return protocol, original, retrain


def _record_base(protocol: Protocol, cell: Cell) -> dict[str, Any]:
    return {"scenario": cell.scenario, "seed": cell.seed, "forget_count": len(protocol.split.forget),
            "retain_count": len(protocol.split.retain), "environment": environment(protocol.device)}


def _run_cells(grid, keys: Keys, protocol: Protocol, original, retrain, pending: list[Cell], store, log, advance,
               outcome) -> None:
    for cell in pending:
        where = f"{scenario_label(cell.scenario)}, seed {cell.seed}"
        resolved = grid.resolved[cell]
        if store.get(keys.cell[cell]) is not None:  # finished meanwhile by another process on the same folder
            advance()
            continue
        try:
            model, cost = protocol.unlearn(original, resolved.wrapped_method())
            metrics = protocol.measure(protocol.subject("unlearned", model, cost), retrain)
        except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the grid
            line = f"{cell.label} ({where}) failed: {type(exc).__name__}: {exc}"
            outcome.failures.append(line)
            log(line)
            _debug_traceback()
            advance()
            continue
        store.put(keys.cell[cell], {
            **_record_base(protocol, cell), "kind": "unlearned", "variant": cell.label, "method": cell.method,
            "augment": list(cell.augment), "trial": cell.trial, "overlay": json.loads(cell.overlay),
            "params": plugin_params(resolved), "metrics": metrics,
        })
        outcome.computed += 1
        log(f"{where}: {cell.label}: Avg Gap {metrics.get('avg_gap', float('nan')):.2f} in {cost['seconds']:.1f} s")
        advance()
