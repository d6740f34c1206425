"""What a grid is: the bench spec, forget scenarios, and the cells they expand to."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from unlearnkit.api import Augmenter, Method
from unlearnkit.errors import SpecError, UnknownPluginError, UnlearnkitError
from unlearnkit.plugins import Registry, _close_matches
from unlearnkit.resolve import ResolvedRun, error_lines, resolve
from unlearnkit.spec import PluginSpec, Section
from unlearnkit.spec_input import build_spec

# The paper's three settings: random 10%, random 50% and one class.
DEFAULT_SCENARIOS = ["random:0.1", "random:0.5", "class:0"]


def scenario_overrides(scenario: str) -> list[str]:
    """random:0.1 | class:3 (or class:3,5) | sequential:0.1x5 -> the spec's forget fields, as --set assignments.

    The spec checks the rest (a sequential fraction x steps below 1, say).
    """
    kind, _, arg = scenario.partition(":")
    try:
        if kind == "random" and 0 < float(arg) < 1:
            return ["forget.kind=random", f"forget.fraction={float(arg)}"]
        if kind == "class" and [int(c) for c in arg.split(",")]:
            return ["forget.kind=class", f"forget.classes=[{arg}]"]
        fraction, times, steps = arg.partition("x")
        if kind == "sequential" and times and 0 < float(fraction) < 1 and int(steps) >= 2:
            return ["forget.kind=sequential", f"forget.fraction={float(fraction)}", f"forget.steps={int(steps)}"]
    except ValueError:
        pass
    raise UnlearnkitError(f"scenario '{scenario}' is not understood",
                          "Use random:FRACTION with 0 < FRACTION < 1 (random:0.1), class:N (class:3, class:3,5) "
                          "or sequential:FRACTIONxSTEPS with 2 or more steps (sequential:0.1x5).")


#: a larger seed count is taken for a typo: such a grid would train two models per seed before any cell runs
MAX_SEEDS = 1000


def parse_seeds(value: Any) -> int | list[int]:
    """3 -> 3 (seeds 0, 1, 2); '0,4' -> [0, 4]."""
    try:
        if isinstance(value, str):
            parts = [int(p) for p in value.split(",") if p.strip()]
            value = parts[0] if len(parts) == 1 else parts
        if isinstance(value, bool):
            raise ValueError
        if (isinstance(value, int) and 1 <= value <= MAX_SEEDS) or (isinstance(value, list) and value and min(value) >= 0):
            repeated = sorted({seed for seed in value if value.count(seed) > 1}) if isinstance(value, list) else []
            if not repeated:
                return value
            # a seed twice is the same run twice: counted twice in the means (and a tuning trial never completes)
            raise UnlearnkitError(f"seeds {value} repeat {', '.join(map(str, repeated))}", "Give each seed once.")
    except (TypeError, ValueError):
        pass
    raise UnlearnkitError(f"seeds '{value}' is not understood",
                          f"Give a count up to {MAX_SEEDS} (3 = seeds 0, 1, 2) or a list (0,4,7).")


def scenario_label(scenario: str) -> str:
    """random:0.1 -> 'random 10%'; class:3 -> 'class 3'; sequential:0.1x5@2 -> 'sequential 10% x5, step 2'."""
    scenario, _, step = scenario.partition("@")
    kind, _, arg = scenario.partition(":")
    if kind == "random":
        label = f"random {float(arg) * 100:g}%"
    elif kind == "sequential":
        fraction, _, steps = arg.partition("x")
        label = f"sequential {float(fraction) * 100:g}% x{steps}"
    else:
        label = f"{kind} {arg}"
    return f"{label}, step {step}" if step else label


def step_scenario(scenario: str, step: int | None) -> str:
    """The scenario of one step's records: sequential:0.1x5@2 for step 2 (tables are per scenario)."""
    return scenario if step is None else f"{scenario}@{step}"


class Budget(Section):
    """The band each method's cost should land in, as a share of Retrain's FLOPs on the same seeds."""

    low: float = Field(ge=0, description="the lowest share, e.g. 0.2 for 20% of Retrain's FLOPs")
    high: float = Field(gt=0, description="the highest share, e.g. 0.4")

    @model_validator(mode="after")
    def _ordered(self) -> Budget:
        if self.low >= self.high:
            raise ValueError(f"budget low {self.low:g} must be below high {self.high:g}")
        return self


class BenchSpec(Section):
    """A grid: `base` is a run spec (data, model, train, evaluate, device); the rest say what varies."""

    base: dict[str, Any] = Field(default_factory=dict, description="a run spec every cell starts from")
    methods: list[str] | Literal["all"] = Field("all", description="method names, or all installed")
    exclude: list[str] = Field(default_factory=list, description="methods left out of 'all'")
    augment: list[str] = Field(["none", "coun-cl"], description="augmenter settings: none, or names joined by +")
    scenarios: list[str] = Field(default_factory=lambda: list(DEFAULT_SCENARIOS),
                                 description="random:F, class:N or sequential:FxK")
    seeds: int | list[int] = Field(3, description="a count (seeds 0..n-1) or the seeds themselves")
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per method or per variant (ft+coun-cl): a partial run spec merged into that cell's, "
        "e.g. {coun: {method: {params: {epochs: 10}}}}",
    )
    out: Path | None = Field(None, description="results folder (default bench/<hash of the grid>)")
    budget: Budget | None = Field(None, description="the band of each method's FLOPs as a share of Retrain's, "
                                  "{low: 0.2, high: 0.4}: the bench warns of every variant and scenario outside it")

    @field_validator("methods", "augment", "scenarios", "exclude", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) and value != "all" else value

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        try:
            return parse_seeds(value)
        except UnlearnkitError as exc:
            raise ValueError(f"{exc.message}. {exc.hint}") from None

    @field_validator("base")
    @classmethod
    def _named_augmenters(cls, value: dict[str, Any]) -> dict[str, Any]:
        # the rest of base is checked with each cell's spec; an unnamed augmenter would be dropped before that
        _check_augment(value.get("augment"), "base.augment")
        return value

    @field_validator("params")
    @classmethod
    def _method_fields_only(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # other fields (train, data) would change the group's shared Original and Retrain
        for name, overlay in value.items():
            other = sorted(set(overlay) - {"method", "augment"})
            if other:
                raise ValueError(f"params.{name} may set method and augment only, not {', '.join(other)}; "
                                 "change the data, model or recipe of every cell in base")
            _check_augment(overlay.get("augment"), f"params.{name}.augment")
        return value

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


_AUGMENT = TypeAdapter(list[PluginSpec])


def _check_augment(entries: Any, where: str) -> None:
    """The `augment` of a partial run spec: augmenter names or {name, params}, merged by name, so each needs one."""
    if entries in (None, "none"):
        return
    try:
        _AUGMENT.validate_python(entries)
    except ValidationError as exc:
        raise ValueError("; ".join(error_lines(exc, where)) + " (give each augmenter as NAME or {name: NAME, "
                         "params: {...}})") from None


def read_bench_spec(raw: dict[str, Any], source: str = "bench spec") -> BenchSpec:
    try:
        return BenchSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(error_lines(exc), source) from None


def _name(plugin: Any) -> Any:
    return plugin.get("name") if isinstance(plugin, dict) else plugin


def merge(into: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a partial run spec: mappings merge, `augment` lists merge by plugin name, values replace."""
    out = copy.deepcopy(into)
    for key, value in overlay.items():
        if key == "augment" and isinstance(value, list):
            merged: dict[Any, Any] = {}
            current = out.get("augment")
            for item in [*(current if isinstance(current, list) else []), *value]:
                item = item if isinstance(item, dict) else {"name": item}
                # an entry without a name matches none: kept apart, for the spec's check to refuse it by place
                slot = item.get("name") if isinstance(item.get("name"), str) else object()
                merged[slot] = merge(merged.get(slot, {}), item)
            out["augment"] = list(merged.values())
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def spec_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One method variant (method + augmenters + params) unlearning one (scenario, seed)."""

    scenario: str
    seed: int
    method: str
    augment: tuple[str, ...] = ()
    overlay: str = "{}"  # a partial run spec (JSON) merged into the base: the params this cell sets
    trial: int | None = None  # the tuning trial it belongs to

    @property
    def variant(self) -> str:
        """ft, ft+coun-cl: how tables name the row."""
        return "+".join([self.method, *self.augment])

    @property
    def label(self) -> str:
        """The variant, and the tuning trial when there is one: `ft #3`."""
        return self.variant if self.trial is None else f"{self.variant} #{self.trial}"

    def run_spec(self, base: dict[str, Any]) -> dict[str, Any]:
        """The cell's complete run spec: base, the method and augmenters, the overlay, the scenario and seed."""
        spec = build_spec(base, method=self.method, augment=list(self.augment))
        spec = merge(spec, json.loads(self.overlay))
        # an overlay may carry params for augmenters this variant does not use (ft's, shared with ft+coun-cl)
        spec["augment"] = [a for a in spec.get("augment") or [] if _name(a) in self.augment]
        spec = build_spec(spec, overrides=[*scenario_overrides(self.scenario), f"seed={self.seed}"])
        spec.pop("output", None)
        return spec


@dataclass
class Grid:
    """The cells to run, the variants left out (and why), and the resolved runs by cell."""

    cells: list[Cell]
    resolved: dict[Cell, ResolvedRun] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    base: dict[str, Any] = field(default_factory=dict)  # the run spec each cell's own completes (Cell.run_spec)


def method_names(spec: BenchSpec, registry: Registry) -> list[str]:
    """The grid's methods. An unknown name in methods, exclude or params stops here, with close matches:
    ignored, it would run methods meant to be left out, or without the params meant for them."""
    names = registry.names(Method) if spec.methods == "all" else list(spec.methods)
    for field_, listed in (("methods", names), ("exclude", spec.exclude)):
        for name in listed:
            try:
                registry.entry(Method, name)
            except UnknownPluginError as exc:
                raise UnknownPluginError(f"{field_}: {exc.message}", exc.hint) from None
    for name in spec.params:
        _check_variant(name, registry)
    return [n for n in names if n not in spec.exclude]


def _check_variant(name: str, registry: Registry) -> None:
    """A params key names a method or a variant as Cell.variant does: METHOD+AUGMENTER(+...), neggrad++coun-cl for
    neggrad+. A variant this grid leaves out (of `methods` or `augment`) is allowed: one spec serves many grids."""
    augmenters = registry.names(Augmenter)
    for method in registry.names(Method):
        rest = name[len(method) + 1:].split("+") if name.startswith(method + "+") else None
        if name == method or (rest is not None and all(a in augmenters for a in rest)):
            return
    variants = [*registry.names(Method), *(f"{m}+{a}" for m in registry.names(Method) for a in augmenters)]
    raise UnknownPluginError(f"params.{name}: '{name}' is no method or variant" + _close_matches(name, variants),
                             "Name a method (ft) or a method and its augmenters (ft+coun-cl); `unlearn plugins` "
                             "lists what is installed.")


def expand(spec: BenchSpec, registry: Registry) -> Grid:
    """Every (scenario, seed, method, augmenters) cell, validated now so a bad param fails before any training.

    Variants that cannot exist (a method without that scenario, an augmenter that cannot
    wrap the method) are left out and listed in `skipped`.
    """
    grid = Grid([])
    for scenario in spec.scenarios:
        scenario_overrides(scenario)
        kind = scenario.partition(":")[0]
        for method in method_names(spec, registry):
            cls = registry.get(Method, method)
            for setting in spec.augment:
                augment = tuple(a for a in setting.split("+") if a and a != "none")
                variant = "+".join([method, *augment])
                if kind not in cls.scenarios:
                    grid.skipped.append(f"{variant} ({scenario_label(scenario)}): '{method}' supports "
                                        f"{', '.join(cls.scenarios)} forgetting")
                    continue
                reasons = [registry.get(Augmenter, a).cannot_wrap(cls) for a in augment]
                if any(reasons):
                    if scenario == spec.scenarios[0]:
                        grid.skipped.append(f"{variant}: {next(r for r in reasons if r)}")
                    continue
                overlay = merge(spec.params.get(method, {}), spec.params.get(variant, {}))
                for seed in spec.seed_list():
                    grid.cells.append(Cell(scenario, seed, method, augment, json.dumps(overlay, sort_keys=True)))
    resolve_cells(grid, spec.base, registry)
    return grid


def resolve_cells(grid: Grid, base: dict[str, Any], registry: Registry) -> None:
    grid.base = base
    for cell in grid.cells:
        grid.resolved[cell] = resolve_cell(cell, base, registry)
        if not grid.resolved[cell].evaluators:  # its records would hold no metrics, which the store refuses
            raise UnlearnkitError("base.evaluate is empty: the grid's cells would measure nothing",
                                  "Leave evaluate out for the defaults, or name evaluators (unlearn plugins lists them).")


def resolve_cell(cell: Cell, base: dict[str, Any], registry: Registry) -> ResolvedRun:
    """The cell's run spec, validated against the plugins of `registry`; errors name the variant and scenario."""
    return resolve(cell.run_spec(base), registry, f"{cell.variant} ({scenario_label(cell.scenario)})")
