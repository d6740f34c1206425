"""`unlearn reproduce BUNDLE`: run a result bundle (or a bench folder, cell by cell) again from what it recorded,
and say whether it reproduces.

The bundle's results.json holds the resolved spec (method and augmenter params included), the seed, the forget
set and the environment. The run is made again from them (Original and Retrain trained again unless the cache
is allowed), and every metric of every model, the forget set and the unlearned weights are compared:
identical, within tolerance, or different. Where something differs, the environments are compared too, since
a torch version, a device or a thread count is the usual reason.

A bench folder records its spec (bench.json) and a record per cell (cells/): its finished cells are run again
into a scratch store, one after another, and each cell's metrics are compared with its record.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from rich import box
from rich.table import Table

from unlearnkit.bench.executors import Serial
from unlearnkit.bench.grid import Grid, expand, read_bench_spec, resolve_cells, scenario_label
from unlearnkit.bench.keys import Keys
from unlearnkit.bench.runner import CellStore, run_grid
from unlearnkit.bundle import FORGET, FORMAT, RESULTS, WEIGHTS, contents_checksum
from unlearnkit.checkpoint import read_state
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import user_network
from unlearnkit.plugins import installed
from unlearnkit.progress import Progress
from unlearnkit.protocol import ProtocolRun
from unlearnkit.resolve import resolve
from unlearnkit.runs import check_run_inputs
from unlearnkit.sequence import run_protocol

IDENTICAL, WITHIN, DIFFERENT = "identical", "within tolerance", "different"
#: metrics that measure time, not the model: reported, never judged
TIMINGS = {"seconds"}
#: what in the environment decides whether a run repeats bit for bit
DECISIVE = ("unlearnkit", "torch", "numpy", "python", "device", "platform", "plugins", "source", "determinism",
            "compute", "distributed")


@dataclass
class Comparison:
    what: str  # e.g. "unlearned UA", "forget set", "unlearned weights"
    recorded: Any
    now: Any
    verdict: str


@dataclass
class Reproduction:
    comparisons: list[Comparison]
    environment: list[str]  # "torch: 2.14.1 -> 2.13.0", for each decisive difference
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    source: str = "the bundle"  # where the recorded values come from, for the table's title

    @property
    def reproduces(self) -> bool:
        return all(c.verdict != DIFFERENT for c in self.comparisons)


def read_bundle(folder: Path) -> dict[str, Any]:
    """results.json of a bundle this version can run again; one message for anything else."""
    path = Path(folder) / RESULTS
    try:
        results = json.loads(path.read_text())
    except OSError as exc:
        raise UnlearnkitError(f"cannot read {path}: {exc.strerror}", "Give the folder of a bundle unlearn run wrote.") from None
    except ValueError:
        raise UnlearnkitError(f"{path} is not JSON", "Give the folder of a bundle unlearn run wrote.") from None
    if not isinstance(results, dict) or "spec" not in results or results.get("weights") != WEIGHTS:
        raise UnlearnkitError(f"{folder} is not a result bundle unlearn run wrote", "Give the folder of one.")
    written = results.get("format", 1)  # bundles from before the format field are format 1
    if not isinstance(written, int) or written > FORMAT:
        raise UnlearnkitError(f"{folder} is a bundle of format {written}, newer than this unlearnkit reads ({FORMAT})",
                              f"Reproduce it with the unlearnkit that wrote it ({results.get('unlearnkit')}) or newer.")
    if "checksum" in results and results["checksum"] != contents_checksum(results):
        raise UnlearnkitError(f"{path} was edited after it was written: its contents no longer match their checksum",
                              "Reproduce the bundle as unlearn run wrote it; to run another setting, use unlearn run.")
    if results.get("command") is None and "checksum" in results:
        raise UnlearnkitError(f"{folder} was written by unlearnkit.unlearn on a model and Datasets of your own, "
                              "which the bundle does not hold", "Run the same call again in Python to reproduce it.")
    return results


def reproduce(folder: Path, tolerance: float, cache: bool, progress: Progress,
              log: Callable[[str], None] = lambda line: None) -> Reproduction:
    """The bundle's run made again and compared with what it recorded (metrics within `tolerance` points)."""
    results = read_bundle(folder)
    spec = {**results["spec"], "cache": cache, "output": {}, "track": []}  # followed once, when it ran
    resolved = resolve(spec, installed(), f"{folder}/{RESULTS}")
    check_run_inputs(resolved.spec)
    started = time.perf_counter()
    again = run_protocol(ProtocolRun(resolved, progress=progress, log=log))
    comparisons = [_forget_set(folder, again.split.forget)]
    recorded_steps = results.get("steps") or [{"step": None, "metrics": results["metrics"]}]
    for recorded, step in zip(recorded_steps, again.steps):
        prefix = f"step {step.step}: " if step.step is not None else ""
        for model, metrics in recorded["metrics"].items():
            for key, value in metrics.items():
                if key not in TIMINGS:
                    now = step.metrics.get(model, {}).get(key)
                    comparisons.append(Comparison(f"{prefix}{model} {key}", value, now, _judge(value, now, tolerance)))
    comparisons.append(_weights(folder, user_network(again.unlearned).state_dict()))
    reproduction = Reproduction(comparisons, _environment_differences(results.get("environment", {}), again.environment),
                                time.perf_counter() - started)
    if any(source == "cached" for source in again.sources.values()):
        reproduction.notes.append("Original or Retrain came from the model cache (--cache): only the unlearning was run again")
    return reproduction


BENCH_SPEC = "bench.json"


def is_bench_folder(folder: Path) -> bool:
    return (Path(folder) / BENCH_SPEC).is_file() and (Path(folder) / "cells").is_dir()


def reproduce_bench(folder: Path, tolerance: float, cache: bool, progress: Progress,
                    log: Callable[[str], None] = lambda line: None, cells: int | None = None) -> Reproduction:
    """A bench folder's finished cells (the first `cells` of them, spread over its variants, when given) run again
    from its bench.json into a scratch store, and each compared with its record: one comparison per cell, and one
    per group's Original and Retrain."""
    folder = Path(folder)
    try:
        raw = json.loads((folder / BENCH_SPEC).read_text())
    except (OSError, ValueError) as exc:
        raise UnlearnkitError(f"cannot read {folder / BENCH_SPEC}: {exc}", "Give the folder unlearn bench wrote.") from None
    spec = read_bench_spec(raw, str(folder / BENCH_SPEC))
    registry = installed()
    grid = expand(spec, registry)
    store, keys = CellStore(folder), Keys(grid)
    done = [cell for cell in grid.cells if not store.missing(keys.cell[cell])]
    if not done:
        raise UnlearnkitError(f"{folder} holds no finished cell of the grid its bench.json describes",
                              "Run unlearn bench on it first; cells written by another unlearnkit version have other keys.")
    chosen = _spread(done, cells) if cells else done
    again = Grid(chosen)
    resolve_cells(again, {**grid.base, "cache": cache}, registry)
    for cell in chosen:
        check_run_inputs(again.resolved[cell].spec)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unlearnkit-reproduce-") as scratch:
        fresh = CellStore(Path(scratch))
        outcome = run_grid(again, fresh, progress=progress, log=log, executor=Serial())
        if outcome.error is not None:
            raise outcome.error
        comparisons, environments = [], []
        again_keys = Keys(again)
        compared: set[str] = set()
        for cell in chosen:
            where = f"{scenario_label(cell.scenario)}, seed {cell.seed}"
            for references in again_keys.references[cell]:
                for kind, key in references.items():
                    if key not in compared:
                        compared.add(key)
                        comparisons.append(_record(f"{kind} ({where})", store.get(key), fresh.get(key), tolerance))
            for key in again_keys.cell[cell]:
                recorded, now = store.get(key), fresh.get(key)
                comparisons.append(_record(f"{cell.label} ({where})", recorded, now, tolerance))
                if recorded and now:
                    environments += _environment_differences(recorded.get("environment", {}), now.get("environment", {}))
    reproduction = Reproduction(comparisons, list(dict.fromkeys(environments)), time.perf_counter() - started,
                                source="the bench folder")
    if cells and len(chosen) < len(done):
        reproduction.notes.append(f"{len(chosen)} of the {len(done)} finished cells were run again (--cells)")
    if not cache:
        reproduction.notes.append("Original and Retrain were trained again (pass --cache to take them from the model cache)")
    return reproduction


def _spread(cells: list, count: int) -> list:
    """`count` cells taking each variant in turn, so that a sample covers the variants before repeating one."""
    by_variant: dict[str, list] = {}
    for cell in cells:
        by_variant.setdefault(cell.label, []).append(cell)
    rounds = [cell for i in range(max(map(len, by_variant.values()))) for group in by_variant.values()
              for cell in group[i:i + 1]]
    return rounds[:count]


def _record(what: str, recorded: dict[str, Any] | None, now: dict[str, Any] | None, tolerance: float) -> Comparison:
    """One record against the one made again: its worst metric's verdict, and its largest difference in points."""
    if recorded is None or now is None:
        return Comparison(what, "recorded" if recorded else "missing", "made" if now else "not made", DIFFERENT)
    verdicts = {key: _judge(value, now["metrics"].get(key), tolerance)
                for key, value in recorded["metrics"].items() if key not in TIMINGS}
    differences = {key: abs(value - now["metrics"][key]) for key, value in recorded["metrics"].items()
                   if verdicts.get(key) == WITHIN or (verdicts.get(key) == DIFFERENT and key != "flops"
                   and isinstance(value, (int, float)) and isinstance(now["metrics"].get(key), (int, float)))}
    moved = [key for key, verdict in verdicts.items() if verdict != IDENTICAL]
    worst = max(differences, key=lambda key: differences[key], default=None)
    shown = ("no difference" if not moved else f"largest difference: {worst} {differences[worst]:.3g}" if worst
             else "differs: " + ", ".join(moved))
    verdict = DIFFERENT if DIFFERENT in verdicts.values() else WITHIN if WITHIN in verdicts.values() else IDENTICAL
    return Comparison(what, f"{len(verdicts)} metrics", shown, verdict)


def _judge(recorded: Any, now: Any, tolerance: float) -> str:
    if recorded == now:
        return IDENTICAL
    if isinstance(recorded, (int, float)) and isinstance(now, (int, float)) and math.isfinite(recorded - now) \
            and abs(recorded - now) <= tolerance:
        return WITHIN
    return DIFFERENT


def _forget_set(folder: Path, forget: torch.Tensor) -> Comparison:
    try:
        recorded = [int(line) for line in (Path(folder) / FORGET).read_text().split()]
    except (OSError, ValueError):
        recorded = []
    now = forget.tolist()
    return Comparison("forget set", f"{len(recorded)} samples", f"{len(now)} samples",
                      IDENTICAL if recorded == now else DIFFERENT)


def _weights(folder: Path, now: dict[str, torch.Tensor]) -> Comparison:
    """The unlearned weights: identical, or the largest difference of any entry (within 1e-4 counts as rounding)."""
    recorded, _ = read_state(Path(folder) / WEIGHTS)
    if set(recorded) != set(now) or any(recorded[k].shape != now[k].shape for k in now):
        return Comparison("unlearned weights", "another architecture", "", DIFFERENT)
    largest = max((float((recorded[k].double() - now[k].double().cpu()).abs().max()) for k in now
                   if now[k].is_floating_point() and now[k].numel()), default=0.0)
    verdict = IDENTICAL if largest == 0 else WITHIN if largest <= 1e-4 else DIFFERENT
    return Comparison("unlearned weights", "", f"largest difference {largest:.3g}", verdict)


def _environment_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [f"{key}: {recorded.get(key)} -> {now.get(key)}" for key in DECISIVE
            if key in recorded or key in now if recorded.get(key) != now.get(key)]


def reproduction_table(found: Reproduction) -> Table:
    """`unlearn reproduce`: each comparison, and a verdict in the caption."""
    counts = {verdict: sum(c.verdict == verdict for c in found.comparisons) for verdict in (IDENTICAL, WITHIN, DIFFERENT)}
    table = Table(title=f"recorded in {found.source} against the run made again", box=box.SIMPLE_HEAD,
                  caption=f"{'reproduces' if found.reproduces else 'does not reproduce'}: "
                          + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()))
    for column in ("what", "recorded", "now", "verdict"):
        table.add_column(column, justify="left" if column in ("what", "verdict") else "right")
    for c in found.comparisons:
        colour = {IDENTICAL: "green", WITHIN: "yellow", DIFFERENT: "red"}[c.verdict]
        table.add_row(c.what, _shown(c.recorded), _shown(c.now), f"[{colour}]{c.verdict}[/]")
    return table


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "n/a" if value is None else str(value)
