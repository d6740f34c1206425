"""Every installed method, alone and wrapped by every augmenter that can wrap it, and every installed augmenter
pass the conformance kit third parties use (unlearnkit.testing). A new plugin is checked the moment it registers;
the kit itself is shown to catch each broken promise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unlearnkit import Augmenter, Method, TrainParams
from unlearnkit.plugins import discover
from unlearnkit.testing import ConformanceError, check_augmenter, check_method

REGISTRY = discover(env={})


@pytest.mark.parametrize("name", [e.name for e in REGISTRY.entries(Method)])
def test_every_installed_method_conforms(name):
    method = REGISTRY.get(Method, name)
    checked = check_method(method)
    wrappers = [a for a in REGISTRY.entries(Augmenter) if a.cls.cannot_wrap(method) is None]
    scenarios = [s for s in ("random", "class") if s in method.scenarios]
    assert len(checked) == len(scenarios) * (1 + len(wrappers))


@pytest.mark.parametrize("name", [e.name for e in REGISTRY.entries(Augmenter)])
def test_every_installed_augmenter_conforms(name):
    fine_tuning = [REGISTRY.get(Method, "ft")]  # every method was checked under it above
    assert check_augmenter(REGISTRY.get(Augmenter, name), methods=fine_tuning)


# --------------------------------------------------------------------------- the kit catches broken promises


def retain_ce(model, step):
    return F.cross_entropy(model(step.retain.x), step.retain.y)


class Sound(Method):
    """sound: fine-tunes on retain batches through the run."""

    name = "sound"
    Params = TrainParams

    def unlearn(self, run):
        run.train(retain_ce, self.params)


class Peeks(Sound):
    """peeks: says it never reads D_u, then looks at it."""

    name = "peeks"
    uses_forget = False

    def unlearn(self, run):
        run.train(retain_ce, self.params)
        run.data.batch(run.data.split.forget, run.generator)  # behind the run's back


class Unseeded(Sound):
    """unseeded: noise from a generator the run does not own."""

    name = "unseeded"
    trains_on_retain = False

    def unlearn(self, run):
        with torch.no_grad():
            for p in run.model.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(torch.seed() % 2**31)) * 1e-3)
        run.cost.forwarded(1)


class OwnLoop(Sound):
    """own-loop: declares retain steps, but steps an optimiser of its own, so augmenters never join."""

    name = "own-loop"

    def unlearn(self, run):
        optimiser = torch.optim.SGD(run.model.parameters(), lr=0.01)
        for step in run.steps("retain", 8, 1):
            optimiser.zero_grad()
            retain_ce(run.model, step).backward()
            optimiser.step()
            run.cost.trained(len(step))


class Free(Sound):
    """free: trains without counting what it costs."""

    name = "free"
    trains_on_retain = False

    def unlearn(self, run):
        with torch.no_grad():
            run.model.head.bias.add_(0.1)


class Exploding(Sound):
    """exploding: leaves infinite weights."""

    name = "exploding"

    def unlearn(self, run):
        run.train(retain_ce, self.params)
        with torch.no_grad():
            run.model.head.weight.fill_(float("inf"))


class Nameless(Method):
    Params = TrainParams

    def unlearn(self, run):
        run.train(retain_ce, self.params)


class Doubler(Augmenter):
    """doubler: a term on the retain features."""

    name = "doubler"

    def loss_terms(self, model, batch, features):
        return {"norm": 1e-3 * features.pow(2).mean()}


def test_the_kit_passes_a_sound_method_and_augmenter():
    checked = check_method(Sound, augmenters=[Doubler])
    assert checked == [f"{name} ({s} forgetting)" for s in ("random", "class") for name in ("sound", "sound+doubler")]
    assert check_augmenter(Doubler, methods=[Sound, Free]) == ["sound+doubler (random forgetting)",
                                                              "sound+doubler (class forgetting)"]


@pytest.mark.parametrize("method,promise", [
    (Peeks, "peeks (random forgetting): declares uses_forget = False, yet drew or viewed forget samples"),
    (Unseeded, "unseeded (random forgetting): two runs with the same seed gave different weights"),
    (OwnLoop, "own-loop+doubler (random forgetting): declares trains_on_retain, yet handed the augmenter no retain"),
    (Free, "free (random forgetting): counted no cost"),
    (Exploding, "exploding (random forgetting): left non-finite weights in head.weight"),
    (Nameless, "Nameless has no `name`"),
])
def test_the_kit_names_the_broken_promise(method, promise):
    with pytest.raises(ConformanceError) as broken:
        check_method(method, augmenters=[Doubler])
    assert str(broken.value).startswith(promise)


def test_an_augmenter_that_can_wrap_nothing_given_fails():
    with pytest.raises(ConformanceError, match="can wrap none"):
        check_augmenter(Doubler, methods=[Free])
