"""Fine-tuning (FT) and gradient ascent (GA, NegGrad, NegGrad+) on a tiny model and tiny data (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from unlearnkit_baselines import FineTune, GradientAscent, NegGrad, NegGradPlus
from unlearnkit_baselines.ascent import GradientAscentParams, NegGradPlusParams, weighted_difference
from unlearnkit_baselines.finetune import retain_cross_entropy

from unlearnkit import Method
from unlearnkit.api import TrainParams
from unlearnkit.data.forget import random_split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import CostMeter, RunData, Workbench, fit
from unlearnkit.engine.streams import steps
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import small_cnn
from unlearnkit.testing import RecordingData

# --------------------------------------------------------------------------- helpers

N_TRAIN, CLASSES = 40, 4
TRANSFORM = Transform(mean=(0.5,), std=(0.25,), crop_padding=1, flip=True)


def tiny_images() -> ImageSet:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(N_TRAIN) % CLASSES
    # learnable: a class-dependent brightness plus noise
    x = (labels.view(-1, 1, 1, 1) * 50 + torch.randint(0, 80, (N_TRAIN, 1, 8, 8), generator=g)).clamp(0, 255)
    test_labels = torch.arange(12) % CLASSES
    test_x = (test_labels.view(-1, 1, 1, 1) * 50 + torch.randint(0, 80, (12, 1, 8, 8), generator=g)).clamp(0, 255)
    return ImageSet(x.to(torch.uint8), labels, test_x.to(torch.uint8), test_labels, ["a", "b", "c", "d"])


def tiny_data() -> RecordingData:
    return RecordingData(tiny_images(), TRANSFORM, random_split(N_TRAIN, 0.25, seed=0), torch.device("cpu"))


_ORIGINAL: dict[str, torch.Tensor] = {}


def original_model():
    """A small CNN trained briefly on all of D (the same start for every test)."""
    torch.manual_seed(0)
    model = small_cnn(1, CLASSES, width=4)
    if not _ORIGINAL:
        fit(model, tiny_data(), "all", lambda m, s: F.cross_entropy(m(s.retain.x), s.retain.y),
            TrainParams(epochs=15, lr=0.05, batch_size=8), generator=torch.Generator().manual_seed(0), cost=CostMeter(1))
        _ORIGINAL.update({k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(_ORIGINAL)
    return model


def make_run(method_cls, data: RunData | None = None, model=None) -> Workbench:
    return Workbench(
        model if model is not None else original_model(), data if data is not None else tiny_data(),
        recipe=TrainParams(), new_model=lambda: small_cnn(1, CLASSES, width=4), cost=CostMeter(1), seed=0,
        uses_forget=method_cls.uses_forget, name=method_cls.name,
    )


@torch.no_grad()
def ce(model, data: RunData, part: str) -> float:
    model.eval()
    losses = [F.cross_entropy(model(x), y, reduction="sum") for x, y in data.eval_views(part)]
    return float(sum(losses)) / len(data.indices(part) if part != "test" else data.test_index)


# --------------------------------------------------------------------------- GA


def test_ga_raises_the_forget_loss_and_reads_only_forget_data():
    data = tiny_data()
    run = make_run(GradientAscent, data)
    before = ce(run.model, data, "forget")
    GradientAscent(GradientAscentParams(epochs=3, lr=0.05, batch_size=4)).unlearn(run)
    after = ce(run.model, data, "forget")
    assert after > before + 0.1
    forget = data.split.forget.tolist()
    assert set(data.drawn) == set(forget)
    assert sorted(data.drawn) == sorted(forget * 3)  # every forget sample once per epoch, nothing else
    assert run.cost.forwards == 3 * len(forget) * 3


def test_ga_defaults_and_declarations():
    p = GradientAscentParams()
    assert (p.lr, p.epochs) == (5e-4, 5)
    assert 1e-4 <= p.lr <= 1e-3
    assert GradientAscent.trains_on_retain is False and GradientAscent.uses_forget is True


# --------------------------------------------------------------------------- NegGrad / NegGrad+


def fixed_step(data: RunData):
    return next(steps(data, "retain+forget", 8, 1, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("beta", [0.999, 0.9, 0.5])
def test_weighted_difference_weights_retain_by_beta_and_forget_by_one_minus_beta(beta):
    data = tiny_data()
    model = original_model().eval()
    step = fixed_step(data)
    terms = weighted_difference(beta, 1 - beta)(model, step)
    ce_r = F.cross_entropy(model(step.retain.x), step.retain.y)
    ce_u = F.cross_entropy(model(step.forget.x), step.forget.y)
    assert set(terms) == {"retain_ce", "forget_ce"}
    assert terms["retain_ce"].item() == pytest.approx(beta * ce_r.item(), rel=1e-6)
    assert terms["forget_ce"].item() == pytest.approx(-(1 - beta) * ce_u.item(), rel=1e-6, abs=1e-12)
    assert sum(terms.values()).item() == pytest.approx(beta * ce_r.item() - (1 - beta) * ce_u.item(), rel=1e-5)


@pytest.mark.parametrize("method,weights", [(NegGradPlus(NegGradPlusParams(beta=0.95)), (0.95, 0.05)), (NegGrad(), (1.0, 1.0))])
def test_neggrad_methods_train_the_weighted_difference_over_retain_plus_forget(method, weights, monkeypatch):
    data = tiny_data()
    run = make_run(type(method), data)
    captured = {}

    def fake_train(loss_fn, params, over="retain", parameters=None, label=None):
        captured.update(loss_fn=loss_fn, params=params, over=over)

    monkeypatch.setattr(run, "train", fake_train)
    method.unlearn(run)
    assert captured["over"] == "retain+forget"
    assert captured["params"] is method.params
    model = original_model().eval()
    step = fixed_step(data)
    got = captured["loss_fn"](model, step)
    want = weighted_difference(*weights)(model, step)
    assert {k: v.item() for k, v in got.items()} == pytest.approx({k: v.item() for k, v in want.items()})


def test_neggrad_plus_raises_the_forget_loss_relative_to_ft_from_the_same_start():
    params = {"epochs": 3, "lr": 0.05, "batch_size": 8}
    ft_data = tiny_data()
    ft = make_run(FineTune, ft_data)
    FineTune(TrainParams(**params)).unlearn(ft)
    ng_data = tiny_data()
    ng = make_run(NegGradPlus, ng_data)
    NegGradPlus(NegGradPlusParams(beta=0.7, **params)).unlearn(ng)
    assert ce(ng.model, ng_data, "forget") > ce(ft.model, ft_data, "forget") + 0.1
    # it did read the forget set: a forget batch with every retain batch
    forget = set(ng_data.split.forget.tolist())
    assert set(ng_data.drawn) & forget == forget
    assert run_cost_matches_samples(ng, ng_data)


def test_neggrad_plus_forget_term_alone_makes_the_difference():
    # beta = 1 is fine-tuning on exactly the same step stream; a smaller beta ends with a higher forget loss
    params = {"epochs": 3, "lr": 0.05, "batch_size": 8}
    forget_ce = {}
    for beta in (1.0, 0.8):
        data = tiny_data()
        run = make_run(NegGradPlus, data)
        NegGradPlus(NegGradPlusParams(beta=beta, **params)).unlearn(run)
        forget_ce[beta] = ce(run.model, data, "forget")
    assert forget_ce[0.8] > forget_ce[1.0]


def run_cost_matches_samples(run, data) -> bool:
    return run.cost.forwards == 3 * len(data.drawn)


def test_neggrad_plus_defaults():
    p = NegGradPlusParams()
    assert 0.95 <= p.beta <= 0.9999
    assert NegGradPlus.trains_on_retain and NegGradPlus.uses_forget


# --------------------------------------------------------------------------- FT


def test_ft_never_draws_a_forget_sample_and_costs_three_forwards_per_trained_sample():
    data = tiny_data()
    run = make_run(FineTune, data)
    assert FineTune.uses_forget is False
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    FineTune(TrainParams(epochs=2, lr=0.01, batch_size=8)).unlearn(run)
    retain = data.split.retain.tolist()
    assert sorted(data.drawn) == sorted(retain * 2)
    assert run.cost.forwards == 3 * len(retain) * 2
    assert any(not torch.equal(start[k], v) for k, v in run.model.state_dict().items())


def test_ft_lowers_the_retain_loss():
    data = tiny_data()
    run = make_run(FineTune, data, model=small_cnn(1, CLASSES, width=4))
    before = ce(run.model, data, "retain")
    FineTune(TrainParams(epochs=10, lr=0.05, batch_size=8)).unlearn(run)
    assert ce(run.model, data, "retain") < before


def test_retain_cross_entropy_reads_only_the_retain_side():
    data = tiny_data()
    model = original_model().eval()
    step = fixed_step(data)
    step.forget = None
    assert retain_cross_entropy(model, step).item() == pytest.approx(
        F.cross_entropy(model(step.retain.x), step.retain.y).item()
    )


def test_sealed_run_refuses_a_method_that_asks_for_forget_data():
    data = tiny_data()
    run = Workbench(
        original_model(), data, recipe=TrainParams(), new_model=lambda: small_cnn(1, CLASSES, width=4),
        cost=CostMeter(1), seed=0, uses_forget=False, name="ga",
    )
    with pytest.raises(UnlearnkitError):
        GradientAscent(GradientAscentParams(epochs=1)).unlearn(run)
    assert data.drawn == []


@pytest.mark.parametrize("method_cls", [FineTune, GradientAscent, NegGrad, NegGradPlus])
def test_cost_is_three_forwards_per_sample_drawn(method_cls):
    data = tiny_data()
    run = make_run(method_cls, data)
    method_cls(method_cls.Params.model_validate({"epochs": 2, "batch_size": 8, "lr": 1e-3})).unlearn(run)
    assert data.drawn
    assert run.cost.forwards == 3 * len(data.drawn)
    per_epoch = {FineTune: 30, GradientAscent: 10, NegGrad: 30 + 8 + 2 + 8 + 2, NegGradPlus: 30 + 8 + 2 + 8 + 2}
    assert run.cost.forwards == 3 * per_epoch[method_cls] * 2


def test_ft_ga_neggrad_and_neggrad_plus_are_registered():
    from unlearnkit.plugins import discover

    registry = discover(env={})
    for name, cls in (("ft", FineTune), ("ga", GradientAscent), ("neggrad", NegGrad), ("neggrad+", NegGradPlus)):
        assert registry.get(Method, name) is cls
