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


class ContrastiveAugmenter(Augmenter):
    """coun-cl: adds lambda * cross-view InfoNCE on penultimate features of two views of each retain batch.

    View 1 is the batch the wrapped method already trains on (its features are
    reused); view 2 is drawn per sample with the data set's training transform
    (random crop + flip). Gradients flow through both views.
    """

    name = "coun-cl"
    Params = ContrastiveParams
    params: ContrastiveParams
    extra_views = 1
    search_space = {"lambda": Range(0.1, 6.0, log=True)}

    @classmethod
    def cannot_wrap(cls, method: type[Method]) -> str | None:
        if method.name == "coun":
            return "method 'coun' is ft wrapped by coun-cl already; wrap ft instead"
        return super().cannot_wrap(method)

    def loss_terms(self, model: Classifier, batch: Batch, features: torch.Tensor) -> dict[str, torch.Tensor]:
        second = model.features(batch.view())
        return {"cl": self.params.lambda_ * cross_view_infonce(features, second, self.params.tau)}
