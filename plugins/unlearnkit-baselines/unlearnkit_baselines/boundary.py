"""Boundary Unlearning (Chen, Gao, Wang, Ye, CVPR 2023): boundary shrink and boundary expanding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit import Method, Range, TrainParams, UnlearnkitError

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Classifier, Step, Transform, UnlearnRun


class BoundaryParams(TrainParams):
    """The authors' public code: plain SGD, lr 1e-5, momentum 0.9, no weight decay, 10 passes over D_u, batch 64."""

    lr: float = Field(
        1e-5, gt=0,
        description="authors' code: 1e-5; the OPTML (SalUn) scripts use 5e-6 (CIFAR-10) and 1e-6 (SVHN)",
    )
    epochs: int = Field(10, ge=0, description="passes over the forget set (authors' code: 10)")
    batch_size: int = Field(64, ge=1, description="authors' code: 64")
    weight_decay: float = Field(0.0, ge=0, description="authors' code: none")


class BoundaryShrinkParams(BoundaryParams):
    bound: float = Field(
        0.1, gt=0, le=1,
        description="FGSM step (= L-inf bound) in [0, 1] pixel space, before normalisation (paper/code: 0.1)",
    )


def _pixel_stats(transform: Transform, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = torch.tensor(transform.mean, device=x.device, dtype=x.dtype).view(shape)
    std = torch.tensor(transform.std, device=x.device, dtype=x.dtype).view(shape)
    return mean, std


def fgsm(frozen: nn.Module, x: torch.Tensor, y: torch.Tensor, transform: Transform, bound: float) -> torch.Tensor:
    """One untargeted FGSM step on the normalised input `x`, taken in [0, 1] pixel space.

    As in the authors' code: the sign of the gradient of CE(frozen(x), y) (the true
    label's loss goes up), a step of `bound` per pixel in un-normalised [0, 1] space,
    clamped to [0, 1], rounded to the 1/255 grid, normalised again. Returns the
    normalised adversarial input (detached).
    """
    mean, std = _pixel_stats(transform, x)
    with torch.enable_grad():
        probe = x.detach().clone().requires_grad_(True)
        # summed, so that no sample's gradient underflows; the sign is per sample anyway (frozen is in eval mode)
        loss = F.cross_entropy(frozen(probe), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, probe)
    pixels = x.detach() * std + mean
    adversarial = (pixels + bound * grad.sign()).clamp(0.0, 1.0)
    adversarial = torch.round(adversarial * 255) / 255
    return (adversarial - mean) / std


@torch.no_grad()
def predict(frozen: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return frozen(x).argmax(dim=1)


def neighbour_labels(frozen: nn.Module, x: torch.Tensor, y: torch.Tensor, transform: Transform, bound: float) -> torch.Tensor:
    """The frozen model's prediction on the FGSM input: each sample's nearest-but-(usually)-wrong class.

    When the attack fails and the prediction is still the true label, that label is
    kept, as the authors' code does (it takes the argmax unconditionally).
    """
    return predict(frozen, fgsm(frozen, x, y, transform, bound))


class BoundaryShrink(Method):
    """boundary-shrink: relabel each forget sample to the original model's prediction after one FGSM step; fine-tune on those.

    Chen, Gao, Wang, Ye, "Boundary Unlearning: Rapid Forgetting of Deep Networks
    via Shifting the Decision Space", CVPR 2023.

    Each step takes a batch of forget samples (one augmented view, drawn fresh every
    pass); a frozen copy of the original model takes one untargeted FGSM step on it
    (step = bound = 0.1 in [0, 1] pixel space: the input is un-normalised, stepped,
    clamped, rounded to 1/255 and normalised again, as in the authors' adversary
    code) and its prediction on the adversarial input becomes the sample's label: the
    "nearest" class across the decision boundary. The model is then trained with CE
    toward those labels on the clean (same augmented) view. The labels are computed
    per batch, on the fly, on the augmented view, as in the authors' code (so they
    may differ from pass to pass). If the attack fails and the prediction is still
    the true label, it is used anyway (the code takes the argmax unconditionally).
    No retain data is touched (augmenters cannot wrap it).

    Params (defaults from the authors' public code; PROTOCOL.md gives only the
    FGSM step): lr 1e-5 (the OPTML/SalUn scripts use 5e-6 on CIFAR-10 and 1e-6 on
    SVHN), 10 epochs over D_u, batch 64, SGD momentum 0.9, no weight decay,
    constant lr, bound 0.1. No search range is published.

    Scenarios: the paper evaluates class-wise forgetting only, but the step is
    defined per sample, so random and index forgetting are allowed too (the
    OPTML/SalUn code base runs it on random forgetting as well).

    The model trains in train mode on forget-only batches, as in the authors'
    code, so BatchNorm running statistics drift toward the forget set's; with
    many epochs on small or easy data this alone can cost retain accuracy.

    Cost: per forget sample and step, 3 forwards of training (counted by the
    trainer), 3 more for the FGSM forward + backward on the frozen copy and 1 for
    its prediction on the adversarial input.
    """

    name = "boundary-shrink"
    Params = BoundaryShrinkParams
    params: BoundaryShrinkParams
    search_space = {"lr": Range(1e-6, 1e-4, log=True)}  # a decade either side of the authors' 1e-5
    trains_on_retain = False

    def unlearn(self, run: UnlearnRun) -> None:
        p = self.params
        frozen, transform = run.original, run.data.transform
        if transform is None:
            raise UnlearnkitError(
                "boundary-shrink steps in pixel space, so it needs in-memory images with a known normalisation",
                "Use a data set loaded as (ImageSet, Transform), not streamed torch Datasets.",
            )

        def loss(model: Classifier, step: Step) -> torch.Tensor:
            batch = step.forget
            assert batch is not None  # a stream over "forget": every step has a forget batch
            labels = neighbour_labels(frozen, batch.x, batch.y, transform, p.bound)
            run.cost.trained(len(batch))  # FGSM: forward + backward through the frozen copy
            run.cost.forwarded(len(batch))  # its prediction on the adversarial input
            return F.cross_entropy(model(batch.x), labels)

        run.train(loss, p, over="forget")


class BoundaryExpand(Method):
    """boundary-expand: add a shadow output neuron, train the forget samples into it, then prune it (class-wise).

    Chen, Gao, Wang, Ye, "Boundary Unlearning: Rapid Forgetting of Deep Networks
    via Shifting the Decision Space", CVPR 2023 ("boundary expanding").

    The linear head (K outputs) is widened to K + 1: the K trained rows are copied
    and the new "shadow" row is initialised as the authors' code does (their
    `init_params` on the widened layer: weight ~ N(0, 0.001^2), bias 0). The whole
    network (feature extractor + widened head) is trained with CE on the forget set,
    every forget sample labelled with the shadow class K. Then the shadow neuron is
    dropped: the head keeps the first K rows of the trained widened head, the
    feature extractor keeps its training, so the model has K outputs again and the
    forget samples' features sit where only the pruned neuron would have claimed
    them.

    Params (the authors' public code; PROTOCOL.md gives none): lr 1e-5, 10 epochs
    over D_u, batch 64, SGD momentum 0.9, no weight decay, constant lr. The OPTML
    (SalUn) scripts use lr 5e-6 (CIFAR-10) and 1e-6 (SVHN). No search range is
    published.

    Class-wise only, as in the paper (a shadow class stands in for a whole forgotten
    class); a spec asking for random or index forgetting fails at validation.
    Like boundary-shrink it trains in train mode on forget-only batches (the
    authors' code does), so BatchNorm running statistics drift toward the forget
    class's.
    No retain data is touched (augmenters cannot wrap it).
    """

    name = "boundary-expand"
    Params = BoundaryParams
    params: BoundaryParams
    search_space = {"lr": Range(1e-6, 1e-4, log=True)}  # a decade either side of the authors' 1e-5
    trains_on_retain = False
    scenarios = ("class",)

    #: standard deviation of the shadow row's weights (authors' init_params for nn.Linear)
    shadow_std = 1e-3

    def unlearn(self, run: UnlearnRun) -> None:
        model = run.model
        head: nn.Linear = model.head
        k = head.out_features
        widened = nn.Linear(head.in_features, k + 1, bias=head.bias is not None)
        widened = widened.to(device=head.weight.device, dtype=head.weight.dtype)
        with torch.no_grad():
            shadow = torch.randn(head.in_features, generator=run.generator) * self.shadow_std
            widened.weight[:k] = head.weight
            widened.weight[k] = shadow.to(widened.weight)
            if head.bias is not None:
                widened.bias[:k] = head.bias
                widened.bias[k] = 0.0
        model.head = widened

        def loss(model: Classifier, step: Step) -> torch.Tensor:
            batch = step.forget
            assert batch is not None  # a stream over "forget": every step has a forget batch
            shadow_class = torch.full_like(batch.y, k)
            return F.cross_entropy(model(batch.x), shadow_class)

        try:
            run.train(loss, self.params, over="forget")
        finally:
            pruned = nn.Linear(widened.in_features, k, bias=widened.bias is not None)
            pruned = pruned.to(device=widened.weight.device, dtype=widened.weight.dtype)
            with torch.no_grad():
                pruned.weight.copy_(widened.weight[:k])
                if widened.bias is not None:
                    pruned.bias.copy_(widened.bias[:k])
            model.head = pruned
