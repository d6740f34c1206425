"""Tuning: trials whose cells are one method variant under different params; the lowest Avg Gap wins.

Ranges come from each plugin's `search_space` (the paper's ranges, declared by the plugin)
or from the user as `PLUGIN.PARAM=LOW:HIGH[:log]` or `PLUGIN.PARAM=V1,V2,...`. `unlearn tune`
searches them with an Optuna study kept in SQLite beside the cells (so it resumes and can be
shared by several workers); `unlearn tune --bench` gives every variant of a bench spec its own study of as many trials.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sqlite3
import statistics
import warnings
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from unlearnkit.api import Augmenter, Choice, Method, Range, SearchRange
from unlearnkit.bench.grid import BenchSpec, Cell, Grid, merge, method_names, resolve_cells, scenario_overrides
from unlearnkit.bench.summary import ACCURACIES
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import file_stamp, set_aside
from unlearnkit.plugins import Registry
from unlearnkit.spec_input import build_spec


def parse_range(text: str) -> tuple[str, SearchRange]:
    """'ft.lr=0.01:0.1:log' -> Range; 'neggrad+.beta=0.99,0.999' -> Choice."""
    key, sep, value = text.partition("=")
    plugin, dot, param = key.strip().rpartition(".")
    if not sep or not dot or not plugin or not param or not value:
        raise UnlearnkitError(f"--range '{text}' is not understood",
                              "Use PLUGIN.PARAM=LOW:HIGH[:log] (ft.lr=0.01:0.1:log) or PLUGIN.PARAM=V1,V2 (neggrad+.beta=0.99,0.999).")
    try:
        if ":" in value:
            parts = value.split(":")
            log = len(parts) == 3 and parts[2] == "log"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
                raise ValueError
            low, high = float(parts[0]), float(parts[1])
            if not (math.isfinite(low) and math.isfinite(high)):
                raise UnlearnkitError(f"--range '{text}': bounds must be finite numbers, e.g. ft.lr=0.01:0.1:log")
            if low > high:
                raise UnlearnkitError(f"--range '{text}': LOW {low:g} is above HIGH {high:g}",
                                      "Give the smaller bound first, e.g. ft.lr=0.01:0.1.")
            if log and low <= 0:
                raise UnlearnkitError(f"--range '{text}': a log range needs LOW > 0")
            return key.strip(), Range(low, high, log)
        values = tuple(_number(v) for v in value.split(","))
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise UnlearnkitError(f"--range '{text}': values must be finite numbers")
        return key.strip(), Choice(values)
    except ValueError:
        raise UnlearnkitError(f"--range '{text}': bounds must be numbers, e.g. ft.lr=0.01:0.1:log") from None


def _number(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def search_space(method: str, augment: tuple[str, ...], registry: Registry, given: list[str]) -> dict[str, SearchRange]:
    """The declared ranges of the method and its augmenters, replaced or extended by --range."""
    space: dict[str, SearchRange] = {}
    plugins: dict[str, type[Method] | type[Augmenter]] = {method: registry.get(Method, method)}
    plugins.update({a: registry.get(Augmenter, a) for a in augment})
    for name, cls in plugins.items():
        space.update({f"{name}.{param}": r for param, r in cls.search_space.items()})
    for text in given:
        key, search = parse_range(text)
        if key.rpartition(".")[0] not in plugins:
            raise UnlearnkitError(f"--range {key}: '{key.rpartition('.')[0]}' is not part of this run",
                                  f"Tune params of {', '.join(plugins)}.")
        space[key] = search
    if not space:
        raise UnlearnkitError(f"'{'+'.join([method, *augment])}' declares no search space",
                              "Give one with --range PLUGIN.PARAM=LOW:HIGH[:log], e.g. --range scrub.lr=0.0001:0.001:log.")
    return space


def range_probes(space: dict[str, SearchRange]) -> dict[int, dict[str, Any]]:
    """One assignment per value at the edge of the space (each range's ends, each choice), so that a value the
    plugin's params refuse (--range ft.lr=abc) is refused before a study or any result file is written."""
    edges = [(key, value) for key, values in grid_axes(space, 2).items() for value in values]
    return {i: {key: value} for i, (key, value) in enumerate(edges)}


def grid_trials(space: dict[str, SearchRange], points: int) -> list[dict[str, Any]]:
    """Every assignment of the full grid: `points` per range, every choice."""
    axes = grid_axes(space, points)
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def grid_axes(space: dict[str, SearchRange], points: int) -> dict[str, list[Any]]:
    """The values a grid tries per key: `points` per range, every choice."""
    return {k: list(dict.fromkeys(_round(v) for v in r.grid(points))) for k, r in space.items()}


def _round(value: Any) -> Any:
    return float(f"{value:.4g}") if isinstance(value, float) else value


def overlay(method: str, assignment: dict[str, Any]) -> dict[str, Any]:
    """{'ft.lr': 0.03, 'coun-cl.lambda': 2} -> {method: {params: {lr: 0.03}}, augment: [{name: coun-cl, params: ...}]}."""
    out: dict[str, Any] = {}
    for key, value in assignment.items():
        plugin, _, param = key.rpartition(".")
        if plugin == method:
            out.setdefault("method", {"params": {}})["params"][param] = value
        else:
            augment = out.setdefault("augment", [])
            entry = next((a for a in augment if a["name"] == plugin), None) or {"name": plugin, "params": {}}
            if entry not in augment:
                augment.append(entry)
            entry["params"][param] = value
    return out


def on_tuning_pool(base: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The run spec tuning trains on: its subsets taken from the tuning pool, images the evaluation never uses
    (unless the spec names a pool itself), and a line saying which images those are."""
    data: dict[str, Any] = base["data"] if isinstance(base.get("data"), dict) else {}
    if data.get("pool") is not None:
        return base, f"on the {data['pool']} pool, as the spec says"
    if data.get("train_subset") is None or data.get("test_subset") is None:
        return base, "on the evaluation's images (the spec takes no train and test subsets to set a pool apart from)"
    return merge(base, {"data": {"pool": "tuning"}}), (f"on the tuning pool: {data['train_subset']} training and "
                                                        f"{data['test_subset']} test images the evaluation never uses")


def tuning_grid(
    base: dict[str, Any], method: str, augment: tuple[str, ...], scenario: str, seeds: list[int],
    assignments: Mapping[int, dict[str, Any]], registry: Registry,
) -> Grid:
    """The cells of the given trials (keyed by trial number), one per tuning seed."""
    scenario_overrides(scenario)
    if scenario.startswith("sequential"):
        raise UnlearnkitError(f"tuning on '{scenario}' is not supported: its steps would be averaged as if they were seeds",
                              "Tune on the scenario of its first request (random:FRACTION) and bench the sequential one.")
    grid = Grid([Cell(scenario, seed, method, augment, json.dumps(overlay(method, a), sort_keys=True), trial=i)
                 for i, a in assignments.items() for seed in seeds])
    resolve_cells(grid, base, registry)
    return grid


def ranking(
    records: list[dict[str, Any]], assignments: Mapping[int, dict[str, Any]] | Sequence[dict[str, Any]], seeds: int
) -> list[dict[str, Any]]:
    """Trials finished on all `seeds`, best first by the paper's Avg Gap: the gap between the trial's seed means
    and Retrain's seed means (the mean of per-seed gaps is kept beside it as `seed_gap`)."""
    retrain = {r["seed"]: r["metrics"] for r in records if r.get("kind") == "retrain"}
    by_trial: dict[int, list[dict]] = {}
    for record in records:
        if record.get("trial") is not None:
            by_trial.setdefault(record["trial"], []).append(record)
    rows = []
    for trial, cells in by_trial.items():
        if len(cells) < seeds or any(c["seed"] not in retrain for c in cells):
            continue
        means = {k: statistics.fmean(c["metrics"][k] for c in cells) for k in ACCURACIES}
        reference = {k: statistics.fmean(retrain[c["seed"]][k] for c in cells) for k in ACCURACIES}
        per_seed = [c["metrics"]["avg_gap"] for c in cells]
        rows.append({"trial": trial, "assignment": assignments[trial], "seeds": len(cells), **means,
                     "avg_gap": statistics.fmean(abs(means[k] - reference[k]) for k in ACCURACIES),
                     "seed_gap": statistics.fmean(per_seed),
                     "seed_gap_std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0})
    return sorted(rows, key=lambda r: (r["avg_gap"], r["trial"]))


@dataclass(frozen=True)
class Variant:
    """A bench variant to tune: the run spec its trials start from (the bench's base and budget) and its joint space."""

    name: str
    method: str
    augment: tuple[str, ...]
    base: dict[str, Any]
    space: dict[str, SearchRange]


def bench_variants(spec: BenchSpec, scenario: str, registry: Registry) -> tuple[list[Variant], list[str]]:
    """Every variant of a bench spec with its joint search space: its method's declared ranges (its lr and main
    parameter) and its augmenters' (coun-cl's lambda), searched together, so that a wrapped variant chooses its lr
    with the CL term on. Each starts from the bench's params of its variant (the budget), so winners are chosen at
    the budgets they will run with. Returns them, and a line per variant that is not tuned, saying why."""
    scenario_overrides(scenario)
    kind = scenario.partition(":")[0]
    variants, untuned, any_cell = [], [], False
    for method in method_names(spec, registry):
        cls = registry.get(Method, method)
        for setting in spec.augment:
            augment = tuple(a for a in setting.split("+") if a and a != "none")
            if any(registry.get(Augmenter, a).cannot_wrap(cls) for a in augment):
                continue
            any_cell = True
            name = "+".join([method, *augment])
            if kind not in cls.scenarios:
                untuned.append(f"{name} (supports {', '.join(cls.scenarios)} forgetting only)")
                continue
            space = search_space(method, augment, registry, []) if cls.search_space else {}
            if not space:
                untuned.append(f"{name} (declares no search space: it keeps the bench spec's params)")
                continue
            budget = merge(spec.params.get(method, {}), spec.params.get(name, {}))
            variants.append(Variant(name, method, augment, merge(build_spec(spec.base, method=method,
                                                                            augment=list(augment)), budget), space))
    if not any_cell:  # as `unlearn bench` refuses this spec: tuning it would write a tuned.yaml that sets nothing
        raise UnlearnkitError("the grid has no cells", "Check methods, exclude and augment in the bench spec.")
    return variants, untuned


def edge_notes(space: Mapping[str, SearchRange], assignment: Mapping[str, Any]) -> list[str]:
    """A note per chosen value on an edge of its range (within its outer 5%, on the log scale for a log range; the
    first or last of three or more numbers): the best value may lie beyond it."""
    notes = []
    for key, value in assignment.items():
        r = space.get(key)
        if isinstance(r, Range) and r.high > r.low:
            scale = math.log if r.log else float
            at = (scale(value) - scale(r.low)) / (scale(r.high) - scale(r.low))
            if at <= 0.05 or at >= 0.95:
                notes.append(f"{key}={value:g} is at the {'low' if at <= 0.05 else 'high'} edge of {r}: "
                             "the best value may lie beyond it")
        elif isinstance(r, Choice) and len(r.values) > 2 and all(isinstance(v, (int, float)) for v in r.values):
            if value in (min(r.values), max(r.values)):
                notes.append(f"{key}={value:g} is the {'lowest' if value == min(r.values) else 'highest'} of "
                             f"{r}: the best value may lie beyond it")
    return notes


# --- the Optuna study behind `unlearn tune` ---------------------------------------------------------

#: a trial whose heartbeat is older than GRACE_SECONDS belonged to a killed worker: it is failed, then retried
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60
#: TPE draws this many trials at random before it models the results (Optuna's 10 would make short tunings random)
TPE_STARTUP = 4


class TrialFailed(Exception):
    """A trial some of whose cells raised (already reported): Optuna records it as failed and goes on."""


def load_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UnlearnkitError("unlearn tune searches with Optuna, which is not installed",
                              "pip install 'unlearnkit[tune]'") from None
    # our own lines report trials; Optuna's would repeat them (a failed trial's with its traceback)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # the heartbeat that finds killed workers' trials is marked experimental (Optuna < 4 says so at every trial)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_study(folder: Path, name: str, search: str, space: dict[str, SearchRange], points: int, seed: int) -> Any:
    """The study `name` in `folder`/study.db, created or loaded; failed trials are queued again, so a rerun retries them."""
    optuna = load_optuna()
    path = folder / "study.db"
    if path.exists() and not path.is_file():
        raise UnlearnkitError(f"{path} is not a file, so the study cannot be kept there",
                              "Choose another --out, or move that folder away.")
    _set_aside_if_damaged(path)
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{folder.resolve() / 'study.db'}", heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
        engine_kwargs={"connect_args": {"timeout": 60}})  # workers sharing the file wait for its lock
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize", load_if_exists=True)
    optuna.storages.fail_stale_trials(study)  # a killed worker's trials, so that they are retried below
    study.sampler = _sampler(optuna, search, space, points, seed)
    trials = study.get_trials(deepcopy=False)
    queued = {_key(t) for t in trials if t.state != optuna.trial.TrialState.FAIL}
    for trial in trials:  # interrupted, killed or failed: its params once more (its finished cells are reused)
        if trial.state == optuna.trial.TrialState.FAIL and _key(trial) not in queued:
            study.enqueue_trial(trial.params)
            queued.add(_key(trial))
    return study


def _set_aside_if_damaged(path: Path) -> None:
    """A study file SQLite cannot read (truncated, overwritten) is reported and set aside, and a new study begins:
    the trials' cells are kept beside it, so the new study's trials reuse them instead of running again."""
    seen = file_stamp(path)
    if seen is None:
        return
    try:
        with closing(sqlite3.connect(path, timeout=60)) as db:
            found = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError:  # locked or busy, not damaged: Optuna waits for it or says so
        return
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        problem = f"not a readable SQLite database: {exc}"
    else:
        if found == [("ok",)]:
            return
        problem = f"SQLite finds it damaged: {'; '.join(str(row[0]) for row in found[:3])}"
    for suffix in ("-journal", "-wal"):  # SQLite would replay a journal left behind into the new study
        with suppress(OSError):
            os.replace(f"{path}{suffix}", f"{path}.damaged{suffix}")
    set_aside(path, seen, problem, "a new study begins, reusing the finished cells beside it")


def _sampler(optuna: Any, search: str, space: dict[str, SearchRange], points: int, seed: int) -> Any:
    """Optuna's sampler for `search`. Random and TPE draw each trial with seed + the trial's number: a lone worker
    (or a resumed one) repeats its draws, and workers sharing a study, numbered apart by it, never share them."""
    if search == "grid":  # its seed orders the grid, so it stays one; trial n takes grid point n, then unvisited ones
        return optuna.samplers.GridSampler(grid_axes(space, points), seed=seed)

    def make(seed: int) -> Any:
        if search == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=TPE_STARTUP, seed=seed)

    class TrialSeeded(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = make(seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.inner = make(seed + trial.number)
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self.inner.sample_independent(study, trial, name, distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

    return TrialSeeded()


def _key(trial: Any) -> str:
    return json.dumps(trial.params or trial.system_attrs.get("fixed_params", {}), sort_keys=True)  # queued: fixed_params


def suggest(trial: Any, space: dict[str, SearchRange], search: str, points: int) -> dict[str, Any]:
    """A trial's assignment: a point of the grid, or a draw from each range (floats) and choice."""
    if search == "grid":
        values = {k: trial.suggest_categorical(k, axis) for k, axis in grid_axes(space, points).items()}
    else:
        values = {k: trial.suggest_float(k, r.low, r.high, log=r.log) if isinstance(r, Range)
                  else trial.suggest_categorical(k, list(r.values)) for k, r in space.items()}
    return {k: _round(v) for k, v in values.items()}


def finished_trials(study: Any) -> dict[int, dict[str, Any]]:
    """The assignments of the study's complete trials, by trial number."""
    optuna = load_optuna()
    return {t.number: {k: _round(v) for k, v in t.params.items()}
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
