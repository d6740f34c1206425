"""A spec validated once against the installed plugins: every bad field reported together, each plugin's
params checked against its own `Params` model, and how the plugins combine (an augmenter that cannot wrap
the method, a scenario the method does not support, evaluators out of order). Builds plugin objects only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import ValidationError

from unlearnkit.api import Augmenter, Configurable, Evaluator, Method, Tracker
from unlearnkit.errors import SpecError
from unlearnkit.plugins import Registry, plugin_code
from unlearnkit.spec import DEFAULT_METHOD, PluginSpec, RunSpec


def error_lines(error: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if p not in ("function-after", "function-before"))
        where = ".".join(p for p in (prefix, loc) if p)
        lines.append(f"{where or '(top level)'}: {item['msg']}")
    return lines


@dataclass
class ResolvedRun:
    """A validated spec with its plugins instantiated."""

    spec: RunSpec
    method: Method
    augmenters: list[Augmenter]
    evaluators: list[Evaluator]
    trackers: list[Tracker]

    @property
    def name(self) -> str:
        """method+augmenter+..., as tables and bundles show it."""
        return "+".join([self.method.name, *(a.name for a in self.augmenters)])


#: the spec's plugin sections and the base class of what each names
PLUGIN_SECTIONS: dict[str, type[Configurable]] = {"method": Method, "augment": Augmenter, "evaluate": Evaluator,
                                                  "track": Tracker}


def _plugin_refs(raw: dict[str, Any] | RunSpec) -> dict[str, Sequence[PluginSpec | None]]:
    """The plugin sections, read leniently, so their params are checked even when other fields are wrong."""
    if isinstance(raw, RunSpec):
        return {"method": [raw.method], "augment": raw.augment, "evaluate": raw.evaluate, "track": raw.track}
    defaults = RunSpec.model_construct()
    refs: dict[str, Sequence[PluginSpec | None]] = {}
    for section in PLUGIN_SECTIONS:
        value = raw.get(section, getattr(defaults, section) if section != "method" else DEFAULT_METHOD)
        values = value if isinstance(value, list) else [value]
        parsed: list[PluginSpec | None] = []
        for item in values:
            try:
                parsed.append(PluginSpec.model_validate(item))
            except ValidationError:
                parsed.append(None)  # RunSpec validation reports it
        refs[section] = parsed
    return refs


def resolve(raw: dict[str, Any] | RunSpec, registry: Registry, source: str = "spec") -> ResolvedRun:
    """Validate a spec once, reporting every bad field together: its own fields and each plugin's params.

    Then check how the plugins combine: augmenters that cannot wrap the method,
    a forget scenario the method does not support, evaluators out of order.
    """
    errors: list[str] = []
    spec = raw if isinstance(raw, RunSpec) else None
    if spec is None:
        try:
            spec = RunSpec.model_validate(raw)
        except ValidationError as exc:
            errors += error_lines(exc)

    plugins: dict[str, list[Any]] = {}
    for section, refs in _plugin_refs(raw).items():
        plugins[section] = []
        for i, ref in enumerate(refs):
            if ref is None or (section == "augment" and ref.name == "none"):
                continue
            cls = registry.get(PLUGIN_SECTIONS[section], ref.name)  # an unknown name stops here, with close matches
            where = section if section == "method" else f"{section}.{i}"
            try:
                params = cls.Params.model_validate(ref.params)
                with plugin_code(cls):  # a constructor that raises or exits is its plugin's fault
                    plugins[section].append(cls(params))
            except ValidationError as exc:
                errors += error_lines(exc, f"{where}.params")
    if errors or spec is None:
        raise SpecError(errors, source)

    method, augmenters, evaluators, trackers = plugins["method"][0], plugins["augment"], plugins["evaluate"], plugins["track"]
    for section, chosen in (("augment", augmenters), ("evaluate", evaluators), ("track", trackers)):
        names = [p.name for p in chosen]
        errors += [f"{section}: '{n}' is listed twice" for n in sorted(set(names)) if names.count(n) > 1]
    for i, augmenter in enumerate(augmenters):
        with plugin_code(augmenter):
            reason = augmenter.cannot_wrap(type(method))
        if reason:
            errors.append(f"augment.{i}: {reason}")
    if spec.forget.kind not in method.scenarios:
        errors.append(
            f"forget.kind: method '{method.name}' supports {', '.join(method.scenarios)} forgetting, "
            f"not '{spec.forget.kind}'"
        )
    produced: set[str] = set()
    for i, evaluator in enumerate(evaluators):
        missing = [m for m in evaluator.needs() if m not in produced]
        if missing:
            errors.append(f"evaluate.{i}: '{evaluator.name}' needs {', '.join(missing)} from evaluators listed before it")
        produced.update(evaluator.metrics)
    if not spec.retrain and "evaluate" in spec.model_fields_set:  # asked for by name, it would be dropped silently
        errors += [f"evaluate.{i}: '{e.name}' compares with Retrain, and this run trains none (retrain: false, "
                   "--no-retrain)" for i, e in enumerate(evaluators) if e.needs_reference]
    errors += _keep_errors(spec, evaluators)
    if errors:
        raise SpecError(errors, source)
    return ResolvedRun(spec, method, augmenters, evaluators, trackers)


def _keep_errors(spec: RunSpec, evaluators: Sequence[Evaluator]) -> list[str]:
    """`keep` chooses among the epochs `eval_every` measures, by a metric one of the run's evaluators produces."""
    chosen = spec.keep_criterion
    if chosen is None:
        return []
    if spec.eval_every is None:
        return [f"keep: {spec.keep} chooses among the epochs eval_every measures, and it is not set: add "
                "--eval-every K (eval_every: K)"]
    producers = [e for e in evaluators if chosen.metric in e.metrics]
    if not producers:
        produced = ", ".join(m for e in evaluators for m in e.metrics)
        return [f"keep: no evaluator of this run produces '{chosen.metric}' (they produce {produced or 'nothing'})"]
    if not spec.retrain and all(e.needs_reference for e in producers):
        return [f"keep: '{chosen.metric}' ({producers[0].name}) compares with Retrain, and this run trains none "
                "(retrain: false, --no-retrain); keep by a metric measured without it, e.g. best:max:TA"]
    return []


def json_schema(registry: Registry) -> dict[str, Any]:
    """The run spec's JSON schema, with every installed plugin's params schema beside it."""
    schema = RunSpec.model_json_schema()
    schema["x-plugins"] = {
        base.kind: {name: registry.get(base, name).Params.model_json_schema() for name in registry.names(base)}
        for base in PLUGIN_SECTIONS.values()
    }
    return schema
