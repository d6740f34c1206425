"""`unlearn audit`: U-LiRA, a per-example test of whether the forget set really left the model (AUDIT.md).

K shadow Originals are trained, each on a seeded half S_k of the training set, so that every sample
is in exactly K/2 of them. Shadow k forgets the audit targets it saw (F_k = T and S_k) with the method
under audit; the statistic phi of every target on every unlearned shadow then gives, per target, the
values of models that saw it and unlearned it, and of models that never saw it. An attacker fitted on
the other K - 1 models scores each model's targets (unlearnkit.evaluation.privacy). Two calibration
rows stand beside every method: `none` (the shadow Originals themselves, no unlearning) and `retrain`
(a model trained from scratch on S_k minus F_k, which must come out near AUC 0.5).

The shadow Originals and Retrains are cached like every reference model, and each variant's phi on
each shadow is a record in the audit folder: a second method reuses the shadows, an interrupted
audit resumes, and audit.json holds every phi so that anyone can recompute every figure.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from unlearnkit.bench.executors import Executor, Serial
from unlearnkit.data.forget import Split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.privacy import AttackFigures, attack_figures, lira_scores, logit_confidence, per_sample_vulnerability
from unlearnkit.evaluation.subject import Subject
from unlearnkit.files import atomic_write_json
from unlearnkit.models import Classifier
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import reference_model
from unlearnkit.plugins import installed
from unlearnkit.resolve import ResolvedRun, resolve
from unlearnkit.sequence import wrapped_method

#: the calibration rows: no unlearning at all (the attack's upper bound), and retraining from scratch (its floor)
NONE, RETRAIN = "none", "retrain"
CALIBRATIONS = (NONE, RETRAIN)
#: a Retrain calibration whose AUC's interval lies wholly above this is reported as a broken audit
RETRAIN_ALARM = 0.6


@dataclass(frozen=True)
class ShadowDesign:
    """Which training samples each of K shadow models sees: every sample in exactly K/2 of the halves."""

    targets: torch.Tensor  # T: the training positions audited (the scenario's forget set), sorted
    members: torch.Tensor  # [K, n] bool: members[k, i] when sample i is in S_k
    seed: int

    @property
    def shadows(self) -> int:
        return len(self.members)

    def shadow_seed(self, k: int) -> int:
        """The seed shadow k trains and unlearns with."""
        return self.seed + k

    def target_members(self) -> np.ndarray:
        """[K, T] bool: which shadows saw each target (and so unlearned it)."""
        return self.members[:, self.targets].numpy()


def check_shadow_count(shadows: int) -> None:
    """Each target is in K/2 models; leaving one out must leave 2 on each side to fit a Gaussian: K even, 6 or more."""
    if shadows < 6 or shadows % 2:
        raise UnlearnkitError(f"--shadows {shadows}: a U-LiRA audit needs an even number of shadow models, 6 or more "
                              "(each target is in half of them, and the attacker fits 2 or more on each side)",
                              "Give an even K: 64 is the usual choice, 8 to 16 a first look.")


def shadow_design(n: int, targets: torch.Tensor, shadows: int, seed: int) -> ShadowDesign:
    """Halves drawn as LiRA draws them: for each sample, a random K/2 of the K models include it."""
    check_shadow_count(shadows)
    generator = torch.Generator().manual_seed(seed)
    rank = torch.rand(shadows, n, generator=generator).argsort(dim=0).argsort(dim=0)  # each sample's model order
    return ShadowDesign(targets.sort().values, rank < shadows // 2, seed)


def shadow_run(run: ProtocolRun, design: ShadowDesign, k: int) -> ProtocolRun:
    """Shadow k as a run of the protocol: its data is S_k, split into F_k (the targets it saw) and the rest."""
    members = design.members[k]
    forget = design.targets[members[design.targets]]
    keep = members.clone()
    keep[forget] = False
    view = copy.copy(run)
    view.spec = run.spec.model_copy(update={"seed": design.shadow_seed(k)})
    view.split = Split(forget=forget, retain=keep.nonzero().flatten(), classes=run.split.classes)
    view.data = view.method_data = run.data.with_split(view.split)
    view.log = lambda line: run.log(f"shadow {k}: {line}")
    return view


def target_phi(run: ProtocolRun, design: ShadowDesign, model: Classifier) -> np.ndarray:
    """phi of every audit target under `model`, on test-time views."""
    every = torch.ones(len(design.members[0]), dtype=torch.bool)
    every[design.targets] = False
    data = run.data.with_split(Split(forget=design.targets, retain=every.nonzero().flatten()))
    logits, labels = Subject("audited", model, data, None, None).outputs("forget")
    return logit_confidence(logits, labels).numpy()


@dataclass
class Variant:
    """An audited row: a calibration (`resolved` None) or a method with its augmenters."""

    name: str
    resolved: ResolvedRun | None = None

    @property
    def identity(self) -> dict[str, Any] | None:
        """What its numbers depend on beyond the audit's setting: the method's and augmenters' params as validated."""
        if self.resolved is None:
            return None
        return {plugin.name: plugin.params.model_dump(mode="json", by_alias=True)
                for plugin in (self.resolved.method, *self.resolved.augmenters)}


class PhiRecords:
    """Each variant's phi (and what else was measured) on each model, one JSON file apiece: what an interrupted
    audit resumes from. `design` identifies what the records are of; a record of another design is not used."""

    def __init__(self, folder: Path, design: dict[str, Any], count: int, variants: list[Variant]):
        self.folder = folder
        self.design = design
        self.count = count  # phi values per record
        self.identity = {v.name: v.identity for v in variants}  # a record of other params is not this variant's

    def path(self, variant: str, k: int) -> Path:
        return self.folder / variant / f"{k}.json"

    def get(self, variant: str, k: int) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path(variant, k).read_text())
        except (OSError, ValueError):
            return None  # absent or damaged: computed again
        phi = record.get("phi") if isinstance(record, dict) else None
        if record.get("design") != self.design or not isinstance(phi, list) or len(phi) != self.count \
                or record.get("variant") != self.identity.get(variant):
            return None
        return record

    def put(self, variant: str, k: int, phi: np.ndarray, cost: dict[str, Any], **measured: Any) -> None:
        atomic_write_json(self.path(variant, k), {"design": self.design, "variant": self.identity.get(variant),
                                                  "phi": phi.tolist(), "cost": cost, **measured})


def shadow_records(folder: Path, design: ShadowDesign, variants: list[Variant]) -> PhiRecords:
    identity = {"targets": design.targets.tolist(), "seed": design.seed, "shadows": design.shadows}
    return PhiRecords(folder / "shadows", identity, len(design.targets), variants)


@dataclass
class VariantResult:
    """One row of the audit: its figures and what they rest on."""

    name: str
    phi: np.ndarray  # [K, T]
    scores: np.ndarray  # [K, T], NaN where a (model, target) is neither positive nor negative
    figures: AttackFigures
    vulnerability: np.ndarray  # [T]: each target's own AUC
    cost: dict[str, float] = field(default_factory=dict)


@dataclass
class AuditResult:
    design: ShadowDesign
    rows: list[VariantResult]
    scenario: str
    trained: int  # models trained by this invocation (shadow Originals and Retrains)
    seconds: float

    def row(self, name: str) -> VariantResult:
        return next(r for r in self.rows if r.name == name)


@dataclass(frozen=True)
class ShadowTask:
    """Shadow k's missing variants as a worker process or a Ray task can compute them: specs, not objects."""

    base: dict[str, Any]  # the audit's run spec: its setting and targets
    variants: tuple[tuple[str, dict[str, Any] | None], ...]  # (name, its run spec; None for a calibration)
    design: tuple[int, tuple[int, ...], int, int]  # shadow_design's arguments: n, targets, K, seed
    k: int


@dataclass
class ShadowDone:
    """Shadow k's phi of the targets under each variant computed, with what each cost."""

    k: int
    phi: dict[str, list[float]]
    cost: dict[str, dict[str, Any]]
    trained: int  # models trained (its Original, its Retrain)
    source: str  # where its Original came from: trained or cached


#: the audit's run in this process, set up once per process (its data loaded once) and reused by its tasks
_runs: dict[str, ProtocolRun] = {}


def _run_of(spec: dict[str, Any]) -> ProtocolRun:
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _runs:
        _runs.clear()
        _runs[key] = ProtocolRun(resolve(spec, installed()))
    return _runs[key]


def compute_shadow(task: ShadowTask) -> ShadowDone:
    """What a task asks of shadow k: its Original (cached or trained), each variant's u_k, and their phi."""
    run = _run_of(task.base)
    design = shadow_design(task.design[0], torch.tensor(task.design[1]), task.design[2], task.design[3])
    shadow = shadow_run(run, design, task.k)
    original, _, source = reference_model(shadow, "original")
    done = ShadowDone(task.k, {}, {}, int(source == "trained"), source)
    for name, spec in task.variants:
        model, cost = _variant_model(shadow, original, Variant(name, None if spec is None else resolve(spec, installed())))
        done.trained += cost.pop("trained", False)
        done.phi[name], done.cost[name] = target_phi(run, design, model).tolist(), cost
    return done


def ulira(run: ProtocolRun, design: ShadowDesign, variants: list[Variant], folder: Path,
          log: Callable[[str], None] = lambda line: None, executor: Executor | None = None) -> AuditResult:
    """Every variant's phi on every shadow (computing what the records lack, shadows in parallel on the
    executor's workers), then the U-LiRA figures."""
    started = time.perf_counter()
    records = shadow_records(folder, design, variants)
    base = run.resolved.spec.model_dump(mode="json")
    _runs.clear()
    _runs[json.dumps(base, sort_keys=True, default=str)] = run  # tasks in this process use the run as it is
    specs = {v.name: None if v.resolved is None else v.resolved.spec.model_dump(mode="json") for v in variants}
    arguments = (len(design.members[0]), tuple(design.targets.tolist()), design.shadows, design.seed)
    tasks = [ShadowTask(base, tuple((v.name, specs[v.name]) for v in missing), arguments, k)
             for k in range(design.shadows) if (missing := [v for v in variants if records.get(v.name, k) is None])]
    trained = 0
    for done in (executor or Serial()).map(compute_shadow, tasks):
        for name, phi in done.phi.items():
            records.put(name, done.k, np.array(phi), done.cost[name])
        trained += done.trained
        log(f"shadow {done.k + 1} of {design.shadows} ({done.source} Original): {', '.join(done.phi)}")
    rows = [_score(variant.name, records, design) for variant in variants]
    return AuditResult(design, rows, "", trained, time.perf_counter() - started)


def _variant_model(shadow: ProtocolRun, original: Classifier, variant: Variant) -> tuple[Classifier, dict[str, Any]]:
    """The model u_k a variant leaves on shadow k, and what making it cost."""
    if variant.name == NONE:
        return original, {"flops": 0, "seconds": 0.0}
    if variant.name == RETRAIN:
        model, cost, source = reference_model(shadow, "retrain")
        return model, {**cost, "trained": source == "trained"}
    assert variant.resolved is not None  # a method's variant carries its resolved run
    return shadow.unlearn(original, wrapped_method(variant.resolved))


def _score(name: str, records: PhiRecords, design: ShadowDesign) -> VariantResult:
    found = [records.get(name, k) for k in range(design.shadows)]
    phi = np.array([record["phi"] for record in found if record is not None], dtype=float)
    seen = design.target_members()
    scores = lira_scores(phi, seen, ~seen)
    cost = {key: float(sum((r or {}).get("cost", {}).get(key) or 0 for r in found)) for key in ("flops", "seconds")}
    return VariantResult(name, phi, scores, attack_figures(scores, seen, ~seen, seed=design.seed),
                         per_sample_vulnerability(scores, seen, ~seen), cost)


def variants_of(resolved_runs: dict[str, ResolvedRun]) -> list[Variant]:
    """The calibration rows, then each method variant by name."""
    return [Variant(NONE), Variant(RETRAIN), *(Variant(name, resolved) for name, resolved in resolved_runs.items())]


def iter_rows(result: AuditResult) -> Iterator[VariantResult]:
    """Calibrations first, then methods in the order asked."""
    yield from (r for r in result.rows if r.name in CALIBRATIONS)
    yield from (r for r in result.rows if r.name not in CALIBRATIONS)
