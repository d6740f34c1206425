"""Relabelling methods: RL (random labels on D_u, trained jointly with D_r) and SalUn (RL on salient weights only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Mapping

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit import Method, Range, TrainParams

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Classifier, Step, UnlearnRun

LabelRule = Literal["any", "wrong"]


def draw_random_labels(true: torch.Tensor, num_classes: int, rule: LabelRule, generator: torch.Generator) -> torch.Tensor:
    """One random label per sample: uniform over all classes ("any") or over the classes other than the true one ("wrong")."""
    true = true.cpu()
    if rule == "any":
        return torch.randint(0, num_classes, true.shape, generator=generator)
    if num_classes < 2:
        raise ValueError("'wrong' random labels need at least two classes")
    # uniform over the K-1 other classes: draw from 0..K-2 and skip over the true label
    drawn = torch.randint(0, num_classes - 1, true.shape, generator=generator)
    return drawn + (drawn >= true).long()


class RandomLabelLoss:
    """The RL loss of a step: CE with the true labels on the retain side, CE with fixed random labels on the forget side.

    The random labels are held in a table indexed by training-set position, so a
    forget sample gets the same label every time it is drawn. Both sides go through
    one forward of the joint batch (BatchNorm statistics over D_r and D_u together,
    as the reference code's single loader over relabelled D_u + D_r); the two named
    terms are each side's summed CE divided by the joint batch size, so their sum
    is the mean CE over the joint batch.
    """

    def __init__(self, forget_index: torch.Tensor, labels: torch.Tensor, size: int, device: torch.device):
        self.table = torch.full((size,), -1, dtype=torch.long)
        self.table[forget_index.cpu()] = labels
        self.table = self.table.to(device)

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index.to(self.table.device)]

    def __call__(self, model: Classifier, step: Step) -> dict[str, torch.Tensor]:
        parts = [(name, batch) for name, batch in (("retain", step.retain), ("forget", step.forget)) if batch is not None]
        targets = [b.y if name == "retain" else self.labels(b.index) for name, b in parts]
        # one forward over the joint batch: BatchNorm sees the statistics of D_r and D_u mixed, as in one loader
        losses = F.cross_entropy(model(step.joint_x()), torch.cat(targets), reduction="none")
        n = len(losses)
        terms: dict[str, torch.Tensor] = {}
        start = 0
        for (name, _), target in zip(parts, targets):
            terms[f"{name}_ce"] = losses[start : start + len(target)].sum() / n
            start += len(target)
        return terms


def random_label_training(
    run: UnlearnRun, params: TrainParams, rule: LabelRule, masks: Mapping[torch.nn.Parameter, torch.Tensor] | None = None
) -> RandomLabelLoss:
    """Draw the forget samples' random labels once, then train over D_r and D_u together (`union`)."""
    forget = run.data.split.forget
    true = run.data.train_y[forget.to(run.data.train_y.device)]
    labels = draw_random_labels(true, run.num_classes, rule, run.generator)
    loss = RandomLabelLoss(forget, labels, len(run.data.train_y), run.device)
    run.train(loss, params, over="union", masks=masks)
    return loss


class RandomLabelParams(TrainParams):
    lr: float = Field(0.01, gt=0, description="PROTOCOL.md: ~0.01; the SalUn paper searches [0.01, 0.1]")
    epochs: int = Field(10, ge=0, description="10, as in the OPTML (SalUn / Unlearn-Sparse) code")
    labels: LabelRule = Field(
        "any",
        description="random labels uniform over all classes ('any', as the SalUn code) or over the other classes ('wrong')",
    )


class RandomLabel(Method):
    """RL: give each forget sample a fixed random label and train on it jointly with the retain set.

    Random labelling: Golatkar et al., "Eternal Sunshine of the Spotless Net"
    (CVPR 2020) and Hayase et al.; as run in the OPTML code of Fan et al.,
    "SalUn" (ICLR 2024). Each forget sample gets one random label, drawn once per
    run from ``run.generator``; training runs over shuffled batches of D_r and D_u
    together (``over="union"``): CE with the true labels on retain samples, CE
    with the fixed random labels on forget samples, averaged over the joint batch.

    Params (defaults): lr 0.01 (PROTOCOL.md; search [0.01, 0.1]), 10 epochs
    (the OPTML code's ``--unlearn_epochs`` default), batch 256, constant lr
    (the OPTML code's multistep milestones at epochs 91/136 never fire in 10
    epochs), momentum 0.9, wd 5e-4; ``labels`` = "any" (uniform over all K
    classes, so 1/K of them keep the true label) or "wrong" (uniform over the
    K-1 other classes).

    Choices against the public code: (1) ``labels="any"`` is the default because
    the SalUn code draws ``randint(0, num_classes)`` in random and class-wise
    forgetting alike (no exclusion of the true or the forgotten classes).
    (2) The code redraws the random labels every epoch (CIFAR-100/TinyImageNet:
    one loader over relabelled D_u + D_r) or every batch (CIFAR-10/SVHN: a pass
    over D_u with fresh labels, then a separate pass over D_r); unlearnkit draws
    them once per run and always trains on the joint shuffled stream, the
    random-label objective as the papers state it. (3) Each step is one
    forward of the joint batch, so BatchNorm normalises forget samples with
    statistics of D_r and D_u together, as the code's joint loader does (in
    class-wise forgetting, forget-only forwards would normalise a single class
    with its own statistics and erase what separates it). The joint forward uses
    `step.joint_x()`, so an augmenter such as coun-cl gets the retain rows'
    features from it without an extra forward.
    """

    name = "rl"
    Params = RandomLabelParams
    params: RandomLabelParams
    search_space = {"lr": Range(0.003, 0.3, log=True)}  # the SalUn paper's [0.01, 0.1] for RL, widened as FT's
    trains_on_retain = True
    uses_forget = True

    def unlearn(self, run: UnlearnRun) -> None:
        random_label_training(run, self.params, self.params.labels)


# --------------------------------------------------------------------------- SalUn


def saliency_scores(run: UnlearnRun, batch_size: int) -> dict[torch.nn.Parameter, torch.Tensor]:
    """|sum over forget batches of grad CE| per parameter, with the model in eval mode (SalUn step 1).

    Counted as training cost: one forward and one backward per forget sample.
    """
    model = run.model
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    try:
        for batch in run.batches("forget", batch_size):
            loss = F.cross_entropy(model(batch.x), batch.y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(total, grads):
                if g is not None:
                    acc.add_(g)
            run.cost.trained(len(batch))
    finally:
        model.train(was_training)
    return {p: acc.abs_() for p, acc in zip(params, total)}


def saliency_masks(scores: dict[torch.nn.Parameter, torch.Tensor], fraction: float) -> dict[torch.nn.Parameter, torch.Tensor]:
    """0/1 masks keeping the `fraction` of entries with the largest score, ranked globally over all parameters.

    Exactly floor(fraction * N) entries are kept (ties at the threshold broken by
    position), as the SalUn code's ``int(len(all_elements) * ratio)``.
    """
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(len(flat) * fraction)
    keep = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    if k > 0:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    masks: dict[torch.nn.Parameter, torch.Tensor] = {}
    start = 0
    for p, s in scores.items():
        masks[p] = keep[start : start + s.numel()].view_as(s).to(s.dtype)
        start += s.numel()
    return masks


class SalUnParams(RandomLabelParams):
    mask_fraction: float = Field(
        0.5, gt=0, le=1,
        description="fraction of all weights (ranked globally by forget-gradient magnitude) that may move; search [0.1, 1.0]",
    )
    lr: float = Field(0.01, gt=0, description="as rl (PROTOCOL.md ~0.01); the public README example uses 0.1")


class SalUn(Method):
    """SalUn: random-label training (rl) in which only the weights most salient to the forget loss move.

    Fan, Liu, Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via
    Gradient-based Weight Saliency in Both Image Classification and Generation"
    (ICLR 2024). (1) Saliency: with the model in eval mode, accumulate the gradient
    of the forget cross-entropy over one pass of D_u, take absolute values, rank
    them globally over every parameter of the model (conv and linear weights,
    biases, BatchNorm affine parameters: all of ``model.parameters()``, as the
    public code's ``named_parameters()``), and keep the top ``mask_fraction`` as a
    0/1 mask. The pass is counted as training cost (forward + backward per forget
    sample). (2) Unlearning: ``rl``'s training (fixed random labels on D_u, joint
    with D_r) with every update restricted to the masked-in entries.

    Params: ``mask_fraction`` 0.5 (PROTOCOL.md; search [0.1, 1.0]), and rl's:
    lr 0.01, 10 epochs, batch 256 (also the saliency pass's batch), labels "any".
    The public README runs SalUn with lr 0.1; 0.01 keeps SalUn and RL on the same
    recipe so that they differ only by the mask (tune lr in [0.01, 0.1]).

    Choices against the public code: the code multiplies the gradients by the mask
    but leaves the optimizer's weight decay on, so masked-out weights still decay
    slightly each step; unlearnkit adds weight decay to the gradient before the
    mask, so masked-out weights stay exactly fixed, as PROTOCOL.md asks ("only
    masked weights move"). The code's mask file is made by a separate script from
    the (augmented) forget loader; here it is computed in the run. rl's choices
    (labels drawn once per run, joint shuffled stream) apply too.
    """

    name = "salun"
    Params = SalUnParams
    params: SalUnParams
    search_space = {"lr": Range(0.003, 0.3, log=True), "mask_fraction": Range(0.1, 1.0)}  # lr as RL's
    trains_on_retain = True
    uses_forget = True

    def unlearn(self, run: UnlearnRun) -> None:
        scores = saliency_scores(run, self.params.batch_size)
        masks = saliency_masks(scores, self.params.mask_fraction)
        random_label_training(run, self.params, self.params.labels, masks=masks)
