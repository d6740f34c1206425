"""Methods that push the forget loss up: GA alone, and with retain descent (NegGrad, NegGrad+)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit import Choice, Method, Range, TrainParams

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Classifier, Step, UnlearnRun


class GradientAscentParams(TrainParams):
    lr: float = Field(5e-4, gt=0, description="search range 1e-4..1e-3")
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(64, ge=1)


class GradientAscent(Method):
    """GA: gradient ascent on the forget set only (minimise -CE on D_u).

    Thudi et al. 2022 / Graves et al. 2021; ranges as in the OPTML (SalUn) code:
    lr 1e-4..1e-3, 5 epochs. It never sees retain data, so augmenters cannot wrap it.
    """

    name = "ga"
    Params = GradientAscentParams
    params: GradientAscentParams
    search_space = {"lr": Range(1e-5, 1e-3, log=True)}  # the paper's [1e-4, 1e-3] and a decade below: winners sat at 1e-4
    trains_on_retain = False

    def unlearn(self, run: UnlearnRun) -> None:
        run.train(forget_ascent, self.params, over="forget")


def forget_ascent(model: Classifier, step: Step) -> torch.Tensor:
    """GA's loss: -CE on the step's forget batch."""
    forget = step.forget
    assert forget is not None  # a stream over "forget": every step has a forget batch
    return -F.cross_entropy(model(forget.x), forget.y)


def weighted_difference(retain_weight: float, forget_weight: float) -> Callable[[Classifier, Step], dict[str, torch.Tensor]]:
    """Loss of a step with a retain batch and a forget batch: w_r * CE_r - w_u * CE_u."""

    def loss(model: Classifier, step: Step) -> dict[str, torch.Tensor]:
        retain, forget = step.retain, step.forget
        assert retain is not None and forget is not None  # a stream over "retain+forget": both sides every step
        return {
            "retain_ce": retain_weight * F.cross_entropy(model(retain.x), retain.y),
            "forget_ce": -forget_weight * F.cross_entropy(model(forget.x), forget.y),
        }

    return loss


class NegGradParams(TrainParams):
    lr: float = Field(1e-3, gt=0, description="ascent is unbounded: keep it small")
    epochs: int = Field(5, ge=0)


class NegGrad(Method):
    """NegGrad (gradient difference): descend CE on retain and ascend CE on forget, equally weighted.

    Each step pairs a retain batch with a forget batch (forget batches cycled, as
    in Kurmanji et al.'s NegGrad+ code) and minimises CE_r - CE_u: the
    "gradient difference" of Liu et al. 2022, NegGrad+ with the two terms at
    equal weight. Use `neggrad+` for the weighted form the CoUn paper compares to.
    """

    name = "neggrad"
    Params = NegGradParams
    params: NegGradParams
    search_space = {"lr": Range(1e-4, 1e-2, log=True)}  # a decade either side of its 1e-3: ascent is unbounded

    def unlearn(self, run: UnlearnRun) -> None:
        run.train(weighted_difference(1.0, 1.0), self.params, over="retain+forget")


class NegGradPlusParams(NegGradParams):
    lr: float = Field(0.01, gt=0)
    beta: float = Field(0.999, ge=0, le=1, description="retain weight; the paper searches [0.95, 0.9999]")


class NegGradPlus(Method):
    """NegGrad+: beta * CE on a retain batch - (1 - beta) * CE on a cycled forget batch, every step.

    Kurmanji et al. 2023 ("Towards Unbounded Machine Unlearning"). Their public
    code cycles the (smaller) forget loader while iterating over the retain
    loader; an epoch is one pass over the retain set. beta in [0.95, 0.9999].
    """

    name = "neggrad+"
    Params = NegGradPlusParams
    params: NegGradPlusParams
    # lr as FT's; beta: the paper's [0.95, 0.9999], dense near 1, and 0.9 below it (winners sat at 0.95)
    search_space = {"lr": Range(0.003, 0.3, log=True), "beta": Choice((0.9, 0.95, 0.99, 0.999, 0.9999))}

    def unlearn(self, run: UnlearnRun) -> None:
        beta = self.params.beta
        run.train(weighted_difference(beta, 1 - beta), self.params, over="retain+forget")
