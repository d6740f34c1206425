"""The core's evaluators, registered through the `unlearnkit` entry point like any other plugin."""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import Field

from unlearnkit.api import Evaluator, Params
from unlearnkit.contract import Subject
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.mia import mia_efficacy
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
    """

    name = "premise"
    metrics = ("premise",)
    needs_reference = True

    def evaluate(self, subject: Subject, reference: Subject | None) -> dict[str, float | None]:
        retrain = reference if reference is not None else subject
        predictions = retrain.outputs("forget")[0].argmax(1)
        return {"premise": premise_agreement(subject.features("retain"), subject.features("forget")[0], predictions)}


@hookimpl
def register_evaluators(register: Callable[[type], None]) -> None:
    for evaluator in (Accuracy, MembershipInference, AverageGap, Premise, Cost):
        register(evaluator)
