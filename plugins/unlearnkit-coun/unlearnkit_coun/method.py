"""CoUn: fine-tuning on the retain set with CE on one view of each batch and InfoNCE across two views of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit import Method, Range, TrainParams
from unlearnkit_coun.contrastive import ContrastiveParams, cross_view_infonce

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Classifier, Step, UnlearnRun


class CoUnParams(TrainParams, ContrastiveParams):
    """One `batch_size`, the paper's 256: the batch both terms are computed on."""

    epochs: int = Field(50, ge=0)
    lr: float = Field(0.01, gt=0, description="the paper searches [0.01, 0.1]")
    schedule: Literal["constant", "cosine", "multistep"] = Field("cosine", description="cosine decays to min_lr (1e-4)")


class CoUn(Method):
    """CoUn: fine-tune on D_r with CE on one view + lambda * cross-view InfoNCE; never reads D_u.

    Khalil, Setayesh, Li, "CoUn: Empowering Machine Unlearning via Contrastive
    Learning" (NeurIPS 2025). Paper setting: 50 epochs, SGD momentum 0.9, wd 5e-4,
    lr in [0.01, 0.1] with cosine decay to 1e-4, lambda in [0.1, 6], tau 0.1, batch 256,
    views by random crop (padding 4) and flip. As the paper (and PROTOCOL.md) has it, each
    retain batch I gives two views X = t(I) and X' = t'(I) under that augmentation, whatever
    the data set's own; CE trains on X, and L_CL compares Z = f(X) with Z' = f(X').
    Wrapping another method in coun-cl gives it the same term over a batch of coun-cl's own.
    """

    name = "coun"
    Params = CoUnParams
    params: CoUnParams
    # the paper's lr in [0.01, 0.1] and lambda in [0.1, 6], each widened (winners sat on their edges), as FT's
    # lr and coun-cl's lambda are, so that coun and ft+coun-cl search one space; tau stays at its best, 0.1
    search_space = {"lr": Range(0.003, 0.3, log=True), "lambda": Range(0.1, 20.0, log=True)}
    uses_forget = False

    def unlearn(self, run: UnlearnRun) -> None:
        p = self.params

        def loss(model: Classifier, step: Step) -> dict[str, torch.Tensor]:
            batch = step.retain
            assert batch is not None  # a stream over retain data has a retain batch in every step
            z1 = model.features(batch.view_with(p.crop_padding, p.flip))
            z2 = model.features(batch.view_with(p.crop_padding, p.flip))
            run.cost.trained(len(batch))  # the second view is trained too (the first replaces the step's own)
            return {"ce": F.cross_entropy(model.head(z1), batch.y), "cl": p.lambda_ * cross_view_infonce(z1, z2, p.tau)}

        run.train(loss, p, over="retain", label=self.name)
