"""Tuning: a grid whose cells are one method variant under different params; the lowest Avg Gap wins.

Ranges come from each plugin's `search_space` (the paper's ranges, declared by the plugin)
or from the user as `PLUGIN.PARAM=LOW:HIGH[:log]` or `PLUGIN.PARAM=V1,V2,...`.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
from typing import Any

from unlearnkit.api import Choice, Range, SearchRange
from unlearnkit.bench.grid import BenchSpec, Cell, Grid, merge, method_names, resolve_cells, scenario_overrides
from unlearnkit.bench.summary import ACCURACIES
from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import Registry


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
            if log and low <= 0:
                raise UnlearnkitError(f"--range '{text}': a log range needs LOW > 0")
            return key.strip(), Range(low, high, log)
        return key.strip(), Choice(tuple(_number(v) for v in value.split(",")))
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
    plugins = {method: registry.get_class("method", method), **{a: registry.get_class("augmenter", a) for a in augment}}
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


def trials(space: dict[str, SearchRange], search: str, points: int, count: int, seed: int) -> list[dict[str, Any]]:
    """Assignments to try: the full grid (`points` per range, every choice), or `count` random draws."""
    keys = list(space)
    if search == "grid":
        axes = [[_round(v) for v in space[k].grid(points)] for k in keys]
        found = [dict(zip(keys, values)) for values in itertools.product(*axes)]
    else:
        rng = random.Random(seed)
        found = [{k: _round(space[k].sample(rng)) for k in keys} for _ in range(count)]
    unique = {json.dumps(a, sort_keys=True): a for a in found}  # the same params are one cell, however drawn
    return list(unique.values())


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


def tuning_grid(
    base: dict[str, Any], method: str, augment: tuple[str, ...], scenario: str, seeds: list[int],
    assignments: list[dict[str, Any]], registry: Registry,
) -> Grid:
    scenario_overrides(scenario)
    if scenario.startswith("sequential"):
        raise UnlearnkitError(f"tuning on '{scenario}' is not supported: its steps would be averaged as if they were seeds",
                              "Tune on the scenario of its first request (random:FRACTION) and bench the sequential one.")
    grid = Grid([Cell(scenario, seed, method, augment, json.dumps(overlay(method, a), sort_keys=True), trial=i)
                 for i, a in enumerate(assignments) for seed in seeds])
    resolve_cells(grid, base, registry)
    return grid


def ranking(records: list[dict[str, Any]], assignments: list[dict[str, Any]], seeds: int) -> list[dict[str, Any]]:
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


def bench_tuning_grid(
    spec: BenchSpec, wrapped: bool, scenario: str, seeds: list[int], points: int, registry: Registry
) -> tuple[list[str], Grid]:
    """The trials that tune a bench spec's unwrapped variants (`wrapped` False) or its wrapped ones.

    Tuning runs in two phases: first every method over its declared search space, then
    every wrapped variant over its augmenters' spaces only. A wrapped variant inherits its
    method's params (the bench merges `params[method]` into `params[method+augmenter]`), so
    once the first phase's choices are merged into `spec.params` the second phase runs with
    them. Each trial carries the bench spec's params of its variant (the budgets), so winners
    are chosen at the budgets they will run with. Returns the tuned variants and the grid.
    """
    scenario_overrides(scenario)
    names, cells = [], []
    for method in method_names(spec, registry):
        cls = registry.get_class("method", method)
        for setting in spec.augment:
            augment = tuple(a for a in setting.split("+") if a and a != "none")
            if bool(augment) != wrapped or any(registry.get_class("augmenter", a).cannot_wrap(cls) for a in augment):
                continue
            plugins = [registry.get_class("augmenter", a) for a in augment] if wrapped else [cls]
            space = {f"{p.name}.{param}": r for p in plugins for param, r in p.search_space.items()}
            if not space:
                continue  # nothing declared: the variant keeps the bench spec's params
            variant = "+".join([method, *augment])
            budget = merge(spec.params.get(method, {}), spec.params.get(variant, {}))
            names.append(variant)
            for i, assignment in enumerate(trials(space, "grid", points, 0, 0)):
                trial = json.dumps(merge(budget, overlay(method, assignment)), sort_keys=True)
                cells += [Cell(scenario, seed, method, augment, trial, trial=i) for seed in seeds]
    grid = Grid(cells)
    resolve_cells(grid, spec.base, registry)
    return names, grid


def chosen_params(variant: str, records: list[dict[str, Any]], grid: Grid, seeds: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The tuned part of the best trial of one variant (None until every trial has every seed), and its ranking row."""
    cells = [c for c in grid.cells if c.variant == variant]
    assignments: dict[int, dict[str, Any]] = {c.trial: json.loads(c.overlay) for c in cells}
    own = [r for r in records if r.get("kind") != "unlearned" or r["variant"].rpartition(" #")[0] == variant]
    ranked = ranking(own, [assignments[i] for i in range(len(assignments))], seeds)
    if len(ranked) < len(assignments):
        return None
    best = ranked[0]
    return best["assignment"], best
