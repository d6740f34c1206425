"""Retrain as a method: re-initialise the model and train it on the retain set with the original recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from unlearnkit import Method, Params, TrainParams, retain_cross_entropy

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit import UnlearnRun


class RetrainParams(Params):
    """Overrides of the run's original recipe; every field left at None is taken from `run.recipe`."""

    epochs: int | None = Field(None, ge=0, description="None = the recipe's epochs")
    lr: float | None = Field(None, gt=0, description="None = the recipe's initial learning rate")
    batch_size: int | None = Field(None, ge=1, description="None = the recipe's batch size")
    momentum: float | None = Field(None, ge=0, lt=1, description="None = the recipe's momentum")
    weight_decay: float | None = Field(None, ge=0, description="None = the recipe's weight decay")
    schedule: Literal["constant", "cosine", "multistep"] | None = Field(None, description="None = the recipe's schedule")
    min_lr: float | None = Field(None, ge=0, description="None = the recipe's cosine floor")
    milestones: tuple[float, ...] | None = Field(None, description="None = the recipe's multistep milestones")

    def resolve(self, recipe: TrainParams) -> TrainParams:
        """The recipe with the fields set here replaced."""
        overrides = self.model_dump(exclude_none=True)
        return TrainParams.model_validate({**recipe.model_dump(include=set(TrainParams.model_fields)), **overrides})


def fresh_state(run: UnlearnRun) -> dict[str, torch.Tensor]:
    """The state of a freshly initialised model, drawn with a seed taken from `run.generator`.

    The global torch RNG is forked, so the draw is reproducible from the run's seed and
    leaves the caller's RNG state untouched.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=run.generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return run.new_model().state_dict()


class Retrain(Method):
    """Retrain: re-initialise the model and train it from scratch on D_r with the original recipe.

    Exact unlearning, the gold standard every method is measured against
    (PROTOCOL.md). The pipeline already trains (and caches) the Retrain reference;
    this method exposes the same procedure as a method, so that it can be wrapped by
    an augmenter (retrain + coun-cl), run with another budget
    (``--set method.params.epochs=5``), or run with another seed to measure the
    seed-to-seed spread of Retrain itself.

    What it does: loads a freshly initialised state of the same architecture
    (``run.new_model()``, drawn with a seed from ``run.generator``) into
    ``run.model`` in place, so nothing of the original model survives, then trains
    it on D_r with cross-entropy. It never reads D_u.

    Params: every field of the training recipe (epochs, lr, batch_size, momentum,
    weight_decay, schedule, min_lr, milestones), each optional: None (the default)
    takes the value from the run's original recipe (``run.recipe``: the CIFAR
    recipe is SGD lr 0.1, momentum 0.9, wd 5e-4, batch 256, 182 epochs, lr x0.1 at
    50% and 75%).

    Note: the initialisation and the batch order are drawn from the unlearning
    run's generator, not from the pipeline's Retrain seed, so `retrain` run as a
    method is an independent draw of Retrain: its gap to the reference is the
    seed noise floor, not zero.
    """

    name = "retrain"
    Params = RetrainParams
    params: RetrainParams
    trains_on_retain = True
    uses_forget = False

    def unlearn(self, run: UnlearnRun) -> None:
        recipe = self.params.resolve(run.recipe)
        run.model.load_state_dict(fresh_state(run))
        run.train(retain_cross_entropy, recipe, over="retain")
