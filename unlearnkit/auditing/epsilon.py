"""Forget quality as the NeurIPS 2023 unlearning challenge scores it (`unlearn audit --kind epsilon`, AUDIT.md).

One Original and one forget set; N runs of each method from that Original and N Retrains, each with its
own seed. For each forget sample, the N values of phi under the method and the N under Retrain give its
epsilon (how well a threshold tells the two apart); the bucketed mean is the forget quality F, and the score
F x RA/RA* x TA/TA* weighs it by the utility kept. With N models a side, epsilon is not resolved beyond
`epsilon_ceiling(N)`, printed with every score.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unlearnkit.auditing.ulira import PhiRecords, Variant
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.privacy import challenge_score, epsilon_ceiling, epsilons, forget_quality, logit_confidence
from unlearnkit.models import Classifier
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import cache_key, reference_model
from unlearnkit.sequence import wrapped_method

RETRAIN = "retrain"


def check_run_count(runs: int) -> None:
    if runs < 2 or runs % 2:
        raise UnlearnkitError(f"--runs {runs}: the epsilon score needs an even number of runs a side, 2 or more",
                              "Give an even N: 32 or more resolves epsilon to about ln N; 4 to 8 is a first look.")


@dataclass
class EpsilonRow:
    name: str
    eps: np.ndarray  # per forget sample
    forget_quality: float
    ra: float  # mean over the runs, percent
    ta: float
    score: float | None  # None for Retrain itself
    phi: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))  # [N, U]


@dataclass
class EpsilonResult:
    runs: int
    ceiling: float
    forget: list[int]
    rows: list[EpsilonRow]
    seeds: list[int]
    scenario: str = ""
    trained: int = 0
    seconds: float = 0.0


def seeded(run: ProtocolRun, seed: int) -> ProtocolRun:
    """The same run (data, split, Original) with another seed for what it trains: a Retrain, a method's run."""
    view = copy.copy(run)
    view.spec = run.spec.model_copy(update={"seed": seed})
    return view


def _measured(run: ProtocolRun, model: Classifier) -> tuple[np.ndarray, float, float]:
    """phi of every forget sample, RA and TA."""
    subject = run.subject("audited", model, {"flops": None, "seconds": None})
    logits, labels = subject.outputs("forget")
    return logit_confidence(logits, labels).numpy(), subject.accuracy("retain"), subject.accuracy("test")


def epsilon_audit(run: ProtocolRun, variants: list[Variant], runs: int, folder: Path,
                  log: Callable[[str], None] = lambda line: None) -> EpsilonResult:
    """N method runs and N Retrains (computing what the records lack), then each variant's epsilons and score."""
    check_run_count(runs)
    started = time.perf_counter()
    seeds = [run.spec.seed + i for i in range(runs)]
    forget: list[int] = run.split.forget.tolist()
    design = {"original": cache_key(run, "original"), "forget": forget, "seeds": seeds}
    records = PhiRecords(folder / "runs", design, len(run.split.forget), [Variant(RETRAIN), *variants])
    original: Classifier | None = None
    trained = 0
    for i, seed in enumerate(seeds):
        view = seeded(run, seed)
        for variant in [Variant(RETRAIN), *variants]:
            if records.get(variant.name, i) is not None:
                continue
            if variant.name == RETRAIN:
                model, cost, source = reference_model(view, "retrain")
                trained += source == "trained"
            else:
                if original is None:
                    original, _, source = reference_model(run, "original")
                    trained += source == "trained"
                assert variant.resolved is not None
                model, cost = view.unlearn(original, wrapped_method(variant.resolved))
            phi, ra, ta = _measured(run, model)
            records.put(variant.name, i, phi, {k: cost.get(k) for k in ("flops", "seconds")}, RA=ra, TA=ta)
        log(f"run {i + 1} of {runs} (seed {seed}) done")
    return _scores(records, [RETRAIN, *(v.name for v in variants)], runs, seeds, forget, trained,
                   time.perf_counter() - started)


def _scores(records: PhiRecords, names: list[str], runs: int, seeds: list[int], forget: list[int], trained: int,
            seconds: float) -> EpsilonResult:
    found = {name: [records.get(name, i) for i in range(runs)] for name in names}
    phi = {name: np.array([r["phi"] for r in rs if r is not None], dtype=float) for name, rs in found.items()}
    utility = {name: (float(np.mean([r["RA"] for r in rs if r])), float(np.mean([r["TA"] for r in rs if r])))
               for name, rs in found.items()}
    ra_star, ta_star = utility[RETRAIN]
    rows = []
    for name in names:
        eps = epsilons(phi[name], phi[RETRAIN])
        quality = forget_quality(eps)
        ra, ta = utility[name]
        score = None if name == RETRAIN else challenge_score(quality, ra, ra_star, ta, ta_star)
        rows.append(EpsilonRow(name, eps, quality, ra, ta, score, phi[name]))
    return EpsilonResult(runs, epsilon_ceiling(runs), forget, rows, seeds, trained=trained, seconds=seconds)


def as_record(result: EpsilonResult) -> dict[str, Any]:
    """Every phi (per variant, [N][U]), the seeds, and the figures."""
    return {
        "kind": "epsilon", "scenario": result.scenario, "runs": result.runs, "epsilon_ceiling": result.ceiling,
        "seeds": result.seeds, "forget": result.forget,
        "variants": {row.name: {"phi": row.phi.tolist(), "epsilon": row.eps.tolist(), "forget_quality": row.forget_quality,
                                "RA": row.ra, "TA": row.ta, "score": row.score} for row in result.rows},
    }

