"""CoUn = fine-tuning on the retain set wrapped by the coun-cl augmenter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from unlearnkit_baselines.finetune import FineTune

from unlearnkit import AugmentedMethod, Method, Range, TrainParams
from unlearnkit_coun.contrastive import ContrastiveAugmenter, ContrastiveParams

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import UnlearnRun


class CoUnParams(TrainParams, ContrastiveParams):
    """One `batch_size`, the paper's 256, for both terms: CE's batch and the retain batch of L_CL."""

    epochs: int = Field(50, ge=0)
    lr: float = Field(0.01, gt=0, description="the paper searches [0.01, 0.1]")
    schedule: Literal["constant", "cosine", "multistep"] = Field("cosine", description="cosine decays to min_lr (1e-4)")


class CoUn(Method):
    """CoUn: fine-tune on D_r with CE on one view + lambda * cross-view InfoNCE; never reads D_u.

    Khalil, Setayesh, Li, "CoUn: Empowering Machine Unlearning via Contrastive
    Learning" (NeurIPS 2025). Paper setting: 50 epochs, SGD momentum 0.9, wd 5e-4,
    lr in [0.01, 0.1] with cosine decay to 1e-4, lambda in [0.1, 6], tau 0.1, batch 256,
    views by random crop (padding 4) and flip. CE trains on each step's batch as the data
    set augments it; coun-cl draws its own batch of the same size and its two views.
    """

    name = "coun"
    Params = CoUnParams
    params: CoUnParams
    search_space = {"lr": Range(0.01, 0.1, log=True), "lambda": Range(0.1, 6.0, log=True)}  # tau stays at its best, 0.1
    uses_forget = False

    def unlearn(self, run: UnlearnRun) -> None:
        p = self.params
        fine_tune = FineTune(TrainParams(**p.model_dump(include=set(TrainParams.model_fields))))
        augmenter = ContrastiveAugmenter(ContrastiveParams(**p.model_dump(include=set(ContrastiveParams.model_fields))))
        AugmentedMethod(fine_tune, [augmenter]).unlearn(run)
