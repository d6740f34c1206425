"""SSD: dampen the parameters that matter far more to the forget set than to the whole training set. No training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from torch import nn

from unlearnkit import Method, Params, Range

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import UnlearnRun


def importances(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Diagonal Fisher estimate per parameter entry: the squared gradient of the batch-mean CE, averaged over batches.

    As SSD's public code computes it: for each batch, grad(mean CE)^2 is added,
    and the sum is divided by the number of batches. The model is used in the
    mode it is in (SSD puts it in eval mode first); its `.grad` fields are not touched.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    result = {name: torch.zeros_like(p) for name, p in named}
    count = 0
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        for (name, _), grad in zip(named, grads):
            if grad is not None:
                result[name] += grad.detach().pow(2)
        count += 1
    for value in result.values():
        value /= max(count, 1)
    return result


@torch.no_grad()
def dampen(
    model: nn.Module,
    full: Mapping[str, torch.Tensor],
    forget: Mapping[str, torch.Tensor],
    alpha: float,
    lam: float,
) -> int:
    """Multiply every entry with I_u > alpha * I_D by min(lam * I_D / I_u, 1); leave the rest untouched.

    `full` holds I_D, `forget` holds I_u (by parameter name). Returns how many
    entries were selected.
    """
    selected = 0
    for name, p in model.named_parameters():
        if name not in forget:
            continue
        i_d, i_u = full[name], forget[name]
        where = i_u > alpha * i_d
        if where.any():
            factor = (lam * i_d[where] / i_u[where]).clamp(max=1.0)
            p[where] = p[where] * factor
            selected += int(where.sum())
    return selected


class SSDParams(Params):
    model_config = ConfigDict(populate_by_name=True)

    alpha: float = Field(
        10.0, gt=0, description="selection weighting: dampen entries with I_u > alpha * I_D (PROTOCOL: 10)"
    )
    lambda_: float = Field(
        1.0, alias="lambda", ge=0, description="dampening constant: scale by min(lambda * I_D / I_u, 1) (PROTOCOL: 1)"
    )
    batch_size: int = Field(128, ge=1, description="batch size of the two importance passes (public code: 128)")


class SelectiveSynapticDampening(Method):
    """SSD: dampen weights far more important to D_u than to D (diagonal Fisher ratio); no training.

    Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining
    Through Selective Synaptic Dampening", AAAI 2024.

    1. Importances (a diagonal Fisher estimate): I_D over the whole training set
       D and I_u over the forget set D_u, each the squared gradient of the
       batch-mean cross-entropy summed over batches and divided by the number of
       batches, as the public code (github.com/if-loops/selective-synaptic-dampening)
       does. The model is in eval mode for both passes (as in the public code:
       BatchNorm uses its running statistics and is not updated), and the images
       are un-augmented (test-time transform; the public code's unlearning
       transform has no augmentation either).
    2. Every parameter entry with I_u > alpha * I_D is multiplied by
       min(lambda * I_D / I_u, 1); every other entry is left bit-identical.
       Buffers (BatchNorm running statistics) are not parameters and stay as they are.

    Params: alpha ("selection weighting") 10 and lambda ("dampening constant")
    1 (PROTOCOL.md, the paper's ResNet-18 setting); batch size 128 (public
    code). No search ranges are fixed by PROTOCOL; a larger alpha selects fewer
    entries, a smaller lambda dampens harder.

    It takes no optimisation steps, so augmenters (coun-cl) cannot wrap it.
    Cost: each importance pass is a forward and a backward per sample, 3 forwards
    by the convention, so 3 x (|D| + |D_u|).
    """

    name = "ssd"
    Params = SSDParams
    params: SSDParams
    search_space = {"alpha": Range(1.0, 100.0, log=True)}  # no training, so no lr: a decade either side of alpha 10
    trains_on_retain = False

    def unlearn(self, run: UnlearnRun) -> None:
        p = self.params
        model = run.model
        was_training = model.training
        model.eval()
        try:
            forget = importances(model, self._counted(run, "forget"))
            full = importances(model, self._counted(run, "train"))
        finally:
            model.train(was_training)
        dampen(model, full, forget, p.alpha, p.lambda_)

    def _counted(self, run: UnlearnRun, part: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in run.data.eval_views(part, self.params.batch_size):
            run.cost.trained(len(y))
            yield x, y
