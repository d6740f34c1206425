"""An example third-party unlearnkit plugin: the method `finetune-head`.

Copy this package to start your own plugin. The three things unlearnkit needs:

1. a `Method` subclass with a unique `name`, a pydantic `Params` model and `unlearn(run)`;
2. a hook, marked with `@hookimpl`, that registers the class (`register_methods`,
   `register_augmenters` or `register_evaluators`: see `unlearnkit.hookspecs`);
3. an entry point in the group `unlearnkit` naming this module (see pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from pydantic import Field

from unlearnkit import Method, TrainParams, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import Classifier, Step, UnlearnRun


class FinetuneHeadParams(TrainParams):
    """Params a run spec may set under `method.params`; unknown keys are rejected.

    Inherits the SGD recipe (epochs, lr, batch_size, momentum, ...); only the defaults change.
    """

    epochs: int = Field(5, ge=0, description="passes over the retain set")
    lr: float = Field(0.01, gt=0, description="learning rate of the head")


def head_cross_entropy(model: Classifier, step: Step) -> torch.Tensor:
    """Cross-entropy on a retain batch, through a frozen feature extractor.

    The trainer puts the whole model in train mode before each step; switching the
    feature extractor back to eval mode keeps its BatchNorm statistics unchanged,
    and `no_grad` skips the backward pass through it.
    """
    retain = step.retain
    assert retain is not None  # a stream over "retain": every step has a retain batch
    model.features.eval()
    with torch.no_grad():
        features = model.features(retain.x)
    return F.cross_entropy(model.head(features), retain.y)


class FinetuneHead(Method):
    """finetune-head: fine-tune only the classifier head on the retain set (the features stay frozen).

    A cheap baseline: the last layer is re-fit to the retain set, so what the head
    encoded about the forget set fades while the representation is untouched.
    """

    name = "finetune-head"
    Params = FinetuneHeadParams
    params: FinetuneHeadParams
    # It never reads the forget set: the run it gets has that set sealed.
    uses_forget = False
    # Its steps train the head on frozen features, so augmenters (which add loss
    # terms on the features of retain batches) would have nothing to train.
    trains_on_retain = False

    def unlearn(self, run: UnlearnRun) -> None:
        run.train(head_cross_entropy, self.params, over="retain", parameters=run.model.head.parameters())


@hookimpl
def register_methods(register: Callable[[type], None]) -> None:
    register(FinetuneHead)


__all__ = ["FinetuneHead", "FinetuneHeadParams", "head_cross_entropy"]
