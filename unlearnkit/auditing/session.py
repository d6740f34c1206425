"""`unlearn audit` below the command line: which setting and variants a spec names, the audit's folder, the run.

A bench spec (one with `base:`) gives the setting, the methods and their params (its budgets); a run spec
gives the setting and its own method. Either way every variant shares one data set, model, recipe and
targets, so the shadow models are the same for all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.auditing.epsilon import EpsilonResult, check_run_count, epsilon_audit
from unlearnkit.auditing.ulira import AuditResult, ShadowDesign, Variant, check_shadow_count, shadow_design, ulira, variants_of
from unlearnkit.bench.executors import Executor
from unlearnkit.bench.grid import expand, read_bench_spec, scenario_label, spec_key
from unlearnkit.errors import UnlearnkitError, few
from unlearnkit.files import atomic_write_json, check_writable
from unlearnkit.plugins import installed
from unlearnkit.progress import Reporter
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import cache_key
from unlearnkit.resolve import ResolvedRun
from unlearnkit.runs import check_run_inputs
from unlearnkit.spec import DEFAULT_METHOD
from unlearnkit.spec_input import read_spec_file, set_path

#: U-LiRA (shadow models on random halves) or the challenge's epsilon score (runs and Retrains of one Original)
KINDS = ("ulira", "epsilon")
#: the scenarios whose forget set an audit can take as its targets
AUDITED_SCENARIOS = ("random", "class")
#: what an audit writes in its folder
AUDIT_ENTRIES = {"shadows", "runs", "setting.json", "audit.json", "audit.md", "roc.png", "vulnerability.png"}


@dataclass
class AuditRequest:
    """What the command line asks: a spec, the variants, K, the scenario and seed of the targets, the folder."""

    spec_file: Path
    methods: str | None = None  # comma-separated; default: the spec's
    augment: str | None = None  # comma-separated settings, none or NAME(+NAME); default: the spec's
    shadows: int = 16
    scenario: str | None = None  # default: the bench spec's first random or class scenario, or the run spec's
    seed: int = 0
    overrides: tuple[str, ...] = ()
    out: Path | None = None
    kind: str = "ulira"  # ulira | epsilon
    runs: int = 8  # epsilon: runs of each method and Retrains from the one Original


def variants(request: AuditRequest) -> tuple[dict[str, ResolvedRun], str]:
    """Each variant's resolved run (same setting, targets and seed for all), and the scenario audited."""
    raw = read_spec_file(request.spec_file)
    for assignment in request.overrides:
        set_path(raw, assignment)
    if "base" not in raw:
        raw = _as_bench_spec(raw)
    scenario = request.scenario or next((s for s in raw.get("scenarios") or ["random:0.1"]
                                         if s.partition(":")[0] in AUDITED_SCENARIOS), "random:0.1")
    if scenario.partition(":")[0] not in AUDITED_SCENARIOS:
        raise UnlearnkitError(f"--scenario {scenario}: an audit takes its targets from a random or class scenario",
                              "Use --scenario random:0.1 or class:N.")
    raw.update({"scenarios": [scenario], "seeds": [request.seed], "out": None})
    if request.methods is not None:
        raw["methods"] = [m.strip() for m in request.methods.split(",") if m.strip()]
    if request.augment is not None:
        raw["augment"] = [a.strip() for a in request.augment.split(",") if a.strip()]
    spec = read_bench_spec(raw, str(request.spec_file))
    grid = expand(spec, installed())
    if not grid.cells:
        raise UnlearnkitError("no variant to audit: " + (few(grid.skipped) if grid.skipped else "the spec names none"),
                              "Check --methods, --augment and --scenario.")
    return {cell.variant: grid.resolved[cell] for cell in grid.cells}, scenario


def _as_bench_spec(run: dict[str, Any]) -> dict[str, Any]:
    """A run spec as the bench spec of its one variant: its method and augmenters with their params."""
    def named(entry: Any) -> tuple[Any, Any]:
        return (entry, {}) if not isinstance(entry, dict) else (entry.get("name"), entry.get("params") or {})

    method, params = named(run.get("method") or DEFAULT_METHOD)
    augment = [named(a) for a in run.get("augment") or [] if a != "none"]
    variant = "+".join([str(method), *(str(name) for name, _ in augment)])
    overlay: dict[str, Any] = {"method": {"params": params}}
    if augment:
        overlay["augment"] = [{"name": name, "params": given} for name, given in augment]
    return {"base": {k: v for k, v in run.items() if k not in ("method", "augment", "output")}, "methods": [method],
            "augment": ["+".join(str(name) for name, _ in augment) or "none"], "params": {variant: overlay},
            "scenarios": [_scenario_of(run.get("forget") or {})]}


def _scenario_of(forget: dict[str, Any]) -> str:
    kind = forget.get("kind", "random")
    if kind == "random":
        return f"random:{forget.get('fraction', 0.1)}"
    if kind == "class":
        return "class:" + ",".join(str(c) for c in forget.get("classes", []))
    raise UnlearnkitError(f"forget.kind {kind}: an audit takes its targets from a random or class scenario",
                          "Give the spec random or class forgetting, or --scenario random:0.1.")


def check_folder(folder: Path, setting: dict[str, Any]) -> None:
    """An audit resumes in its own folder; one of another setting (recipe, targets, K) or of other files is refused."""
    check_writable(folder, f"the audit in {folder}", "Choose another --out.")
    try:
        entries = {p.name for p in folder.iterdir()}
    except FileNotFoundError:
        return
    strangers = sorted(e for e in entries - AUDIT_ENTRIES if not e.startswith("."))
    if strangers:
        raise UnlearnkitError(f"{folder} is not an audit folder: it holds {few(strangers)}",
                              "Choose another --out: a new folder, or one an earlier audit wrote to resume it.")
    try:
        recorded = json.loads((folder / "setting.json").read_text())
    except (OSError, ValueError):
        return  # nothing recorded yet: a fresh folder, or one stopped before its first record
    if recorded != setting:
        differs = sorted(k for k in setting if recorded.get(k) != setting[k]) if isinstance(recorded, dict) else ["all"]
        raise UnlearnkitError(f"{folder} holds an audit of another setting (its {', '.join(differs)} differ)",
                              "Choose another --out for this setting, or rerun the command that wrote it to resume.")


def open_folder(folder: Path, run: ProtocolRun, scenario: str, seed: int, kind: str, models: int) -> None:
    """Check the audit's folder against what it will compute (the Original's setting, targets, K or N) and record it."""
    setting = {"setting": cache_key(run, "original"), "scenario": scenario, "seed": seed, "kind": kind, "models": models}
    check_folder(folder, setting)
    atomic_write_json(folder / "setting.json", setting)


def default_folder(run: ProtocolRun, scenario: str, seed: int, kind: str, models: int) -> Path:
    return Path("audit") / spec_key(cache_key(run, "original"), scenario, seed, kind, models)[:10]


def audit(request: AuditRequest, reporter: Reporter,
          executor: Executor | None = None) -> tuple[AuditResult | EpsilonResult, Path]:
    """The audit the request asks for (U-LiRA, or the challenge's epsilon score), computing only what its
    folder lacks; U-LiRA's shadows on the executor's workers."""
    if request.kind not in KINDS:
        raise UnlearnkitError(f"--kind {request.kind} is not one of {', '.join(KINDS)}")
    if request.kind == "ulira":
        check_shadow_count(request.shadows)
    else:
        check_run_count(request.runs)
    resolved, scenario = variants(request)
    first = next(iter(resolved.values()))
    if first.spec.original is not None and request.kind == "ulira":
        raise UnlearnkitError("a U-LiRA audit trains its own shadow Originals, so it cannot start from --original",
                              "Leave `original` out of the spec, or use --kind epsilon.")
    check_run_inputs(first.spec)
    with reporter.progress() as progress:
        run = ProtocolRun(first, progress=progress, log=reporter.log)
        count = request.shadows if request.kind == "ulira" else request.runs
        folder = request.out or default_folder(run, scenario, request.seed, request.kind, count)
        open_folder(folder, run, scenario, request.seed, request.kind, count)
        targets = f"{len(run.split.forget)} {'targets' if request.kind == 'ulira' else 'forget samples'}"
        models = f"{count} shadow models" if request.kind == "ulira" else f"{count} runs and {count} Retrains"
        reporter.err.print(f"auditing {', '.join(resolved)} on {scenario_label(scenario)} ({targets}) with {models}; "
                           f"records in {folder} (rerun to resume)")
        result: AuditResult | EpsilonResult
        if request.kind == "ulira":
            design = shadow_design(len(run.data.train_y), run.split.forget, request.shadows, request.seed)
            result = ulira(run, design, variants_of(resolved), folder, reporter.log, executor)
        else:
            methods = [Variant(name, one) for name, one in resolved.items()]
            result = epsilon_audit(run, methods, request.runs, folder, reporter.log)
    result.scenario = scenario
    return result, folder


__all__ = ["AuditRequest", "ShadowDesign", "Variant", "audit", "check_folder", "variants"]
