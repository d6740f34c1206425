"""CoUn's contrastive-learning module, as an augmenter that wraps any method training on retain data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field

from unlearnkit import Augmenter, Params, Range, gather_rows

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Batch, Classifier, Method


def cross_view_infonce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """L_CL = mean_n l(z_n, Z') + mean_n l(z'_n, Z), with l(z_n, Z') = -log softmax_j(cos(z_n, z'_j) / tau)[n].

    Negatives are the other samples of the *other* view only; the positive stays in
    the denominator; no projection head. In a distributed run Z and Z' are the global
    batch's (every rank's rows, gradients flowing back to each): this rank's anchors
    against all candidates, so the ranks' averaged gradient is the global batch's.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    all1, start = gather_rows(z1)
    all2, _ = gather_rows(z2)
    targets = torch.arange(start, start + len(z1), device=z1.device)
    similarity = z1 @ all2.T / tau
    # in one process the second direction is the transpose (the same numbers, bit for bit, as always)
    reverse = similarity.T if all1 is z1 else z2 @ all1.T / tau
    return F.cross_entropy(similarity, targets) + F.cross_entropy(reverse, targets)


class ContrastiveParams(Params):
    model_config = ConfigDict(populate_by_name=True)

    lambda_: float = Field(1.0, alias="lambda", ge=0, description="weight of L_CL; the paper searches [0.1, 6]")
    tau: float = Field(0.1, gt=0, le=0.3, description="temperature in (0, 0.3]; the paper's best is 0.1")
    batch_size: int = Field(256, ge=2, description="retain samples L_CL compares per step (all of D_r when fewer); the paper's 256")
    crop_padding: int = Field(4, ge=0, description="zero padding of each view's random crop (0: no crop); the paper's 4")
    flip: bool = Field(True, description="flip each view horizontally half the time, as the paper does")


class ContrastiveAugmenter(Augmenter):
    """coun-cl: adds lambda * cross-view InfoNCE on penultimate features of two views of a retain batch of its own.

    As the paper draws them: at every step a batch of `batch_size` retain samples, drawn
    with the run's generator, and two views of it, X = t(I) and X' = t'(I), each sample with
    its own random crop (zero padding `crop_padding`) and flip. The views come from this
    transform, not from the data's training augmentation (which a memorising Original may
    train without crops), and the batch is not the wrapped method's (often smaller) one.
    The method's own loss, CE for coun, keeps its own batch and view. Gradients flow
    through both views.
    """

    name = "coun-cl"
    Params = ContrastiveParams
    params: ContrastiveParams
    extra_views = 2
    search_space = {"lambda": Range(0.1, 20.0, log=True)}  # the paper's [0.1, 6], widened as coun's

    @classmethod
    def cannot_wrap(cls, method: type[Method]) -> str | None:
        if method.name == "coun":
            return "method 'coun' is ft wrapped by coun-cl already; wrap ft instead"
        return super().cannot_wrap(method)

    def loss_terms(self, model: Classifier, batch: Batch, features: torch.Tensor) -> dict[str, torch.Tensor]:
        p = self.params
        own = batch.retain_batch(p.batch_size)
        z1 = model.features(own.view_with(p.crop_padding, p.flip))
        z2 = model.features(own.view_with(p.crop_padding, p.flip))
        return {"cl": p.lambda_ * cross_view_infonce(z1, z2, p.tau)}
