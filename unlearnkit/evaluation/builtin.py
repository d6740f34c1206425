"""The core's evaluators, registered through the `unlearnkit` entry point like any other plugin."""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from pydantic import Field

from unlearnkit.api import Evaluator, Params
from unlearnkit.contract import Subject
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.mia import attack_features, mia_efficacy
from unlearnkit.evaluation.privacy import rmia_scores, roc_auc
from unlearnkit.evaluation.representation import premise_agreement
from unlearnkit.hookspecs import hookimpl


class Accuracy(Evaluator):
    """RA, UA and TA: accuracy on retain, 100 - accuracy on forget, accuracy on test (percent)."""

    name = "accuracy"
    metrics = ("RA", "UA", "TA")

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        return {
            "RA": subject.accuracy("retain"),
            "UA": 100.0 - subject.accuracy("forget"),
            "TA": subject.accuracy("test"),
        }


class MIAParams(Params):
    feature: Literal["confidence", "correctness", "entropy", "m_entropy", "prob"] = Field(
        "confidence", description="attack feature; 'confidence' (true-class probability) is the paper's MIA-efficacy"
    )


class MembershipInference(Evaluator):
    """MIA-efficacy: % of forget samples an SVC attack on retain-vs-test outputs calls non-members."""

    name = "mia"
    metrics = ("MIA",)
    Params = MIAParams
    params: MIAParams

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        value = mia_efficacy(
            subject.outputs("retain"), subject.outputs("test"), subject.outputs("forget"), self.params.feature
        )
        return {"MIA": value}


class AvgGapParams(Params):
    over: tuple[str, ...] = Field(("RA", "UA", "TA", "MIA"), description="metrics whose gaps are averaged")


class AverageGap(Evaluator):
    """Avg Gap: mean absolute difference to Retrain over RA, UA, TA and MIA (0 for Retrain itself)."""

    name = "avg-gap"
    metrics = ("avg_gap",)
    needs_reference = True
    Params = AvgGapParams
    params: AvgGapParams

    def needs(self) -> tuple[str, ...]:
        return self.params.over

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        if reference is None:
            return {"avg_gap": 0.0}
        gaps = []
        for k in self.params.over:
            ours, retrain = subject.metrics[k], reference.metrics[k]
            if ours is None or retrain is None:
                raise UnlearnkitError(f"avg-gap: metric '{k}' has no value for {subject.name} or Retrain",
                                      "Average over metrics that every model has (RA, UA, TA, MIA).")
            gaps.append(abs(ours - retrain))
        return {"avg_gap": sum(gaps) / len(gaps)}


class Cost(Evaluator):
    """FLOPs to obtain the model (2 x MACs per forward, 3 forwards per trained sample) and wall seconds.

    Both are None for a model brought with --original whose file does not record them.
    """

    name = "cost"
    metrics = ("flops", "seconds")

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        return {"flops": subject.flops, "seconds": subject.seconds}


class Premise(Evaluator):
    """Premise: % of forget samples whose nearest retain-class centroid, in this model's features, is Retrain's prediction.

    CoUn's premise is that Retrain classifies a forget sample like the retain class
    nearest to it in representation space; for Retrain itself this measures how
    often that holds, for other models how well their space matches Retrain's outputs.
    Centroids are means of penultimate features of the retain set (test-time views).
    Premise control is the same statistic on test samples, which no model trained on:
    the agreement any unseen sample gives, against which the forget samples' is read.
    """

    name = "premise"
    metrics = ("premise", "premise_control")
    needs_reference = True

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        retrain = reference if reference is not None else subject
        retain = subject.features("retain")

        def agreement(part: str) -> float:
            return premise_agreement(retain, subject.features(part)[0], retrain.outputs(part)[0].argmax(1))

        return {"premise": agreement("forget"), "premise_control": agreement("test")}


class RMIAParams(Params):
    a: float = Field(0.3, ge=0, le=1, description="offline correction: Pr(x) = (1+a)/2 Pr_Retrain(x) + (1-a)/2")
    gamma: float = Field(1.0, gt=0, description="a population sample z counts when ratio(x) / ratio(z) >= gamma")


class RMIA(Evaluator):
    """RMIA: AUC (percent) of a per-example attack telling forget samples from held-out test samples, 50 at chance.

    Each sample's true-class probability under the model is divided by its probability under Retrain, which
    saw neither (RMIA's offline reference, Zarifzadeh et al. 2024), and scored by the share of a population
    of test samples whose ratio it beats. The test set splits in two by position: even positions are the
    population, odd ones the held-out negatives. None for Retrain itself, its own reference.
    """

    name = "rmia"
    metrics = ("RMIA",)
    needs_reference = True
    Params = RMIAParams
    params: RMIAParams

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        if reference is None:
            return {"RMIA": None}

        def probabilities(model: Subject) -> dict[str, np.ndarray]:
            return {part: attack_features(*model.outputs(part), "confidence")[:, 0].numpy() for part in ("forget", "test")}

        ours, retrain = probabilities(subject), probabilities(reference)
        if len(ours["test"]) < 2:
            raise UnlearnkitError("rmia needs at least 2 test samples: a population and held-out negatives",
                                  "Use a larger test set, or leave rmia out of the evaluate list.")

        def forget_then_held_out(p: dict[str, np.ndarray]) -> np.ndarray:
            return np.r_[p["forget"], p["test"][1::2]]

        scores = rmia_scores(forget_then_held_out(ours), forget_then_held_out(retrain)[None],
                             ours["test"][::2], retrain["test"][None, ::2], a=self.params.a, gamma=self.params.gamma)
        forgotten = len(ours["forget"])
        return {"RMIA": 100.0 * roc_auc(scores[:forgotten], scores[forgotten:])}


@hookimpl
def register_evaluators(register: Callable[[type], None]) -> None:
    for evaluator in (Accuracy, MembershipInference, RMIA, AverageGap, Premise, Cost):
        register(evaluator)
