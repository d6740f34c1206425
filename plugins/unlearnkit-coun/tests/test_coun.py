"""CoUn: the cross-view InfoNCE, the coun-cl augmenter, and the method that never reads the forget set."""

from __future__ import annotations

import math
import types
from dataclasses import replace

import pydantic
import pytest
import torch
import torch.nn.functional as F
from unlearnkit_baselines import FineTune, GradientAscent, NegGrad, NegGradPlus
from unlearnkit_coun import ContrastiveAugmenter, CoUn, contrastive, cross_view_infonce
from unlearnkit_coun.contrastive import ContrastiveParams
from unlearnkit_coun import method as method_module
from unlearnkit_coun.method import CoUnParams

from unlearnkit import Augmenter, Batch, Method
from unlearnkit.api import TrainParams
from unlearnkit.data.forget import random_split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import AugmentedMethod, CostMeter, RunData, Workbench
from unlearnkit.engine.streams import retain_batch, steps
from unlearnkit.models import small_cnn
from unlearnkit.testing import RecordingData

# --------------------------------------------------------------------------- helpers

N_TRAIN, CLASSES = 40, 4
TRANSFORM = Transform(mean=(0.5,), std=(0.25,), crop_padding=2, flip=True)


def tiny_images(seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(
        torch.randint(0, 256, (N_TRAIN, 1, 8, 8), generator=g, dtype=torch.uint8),
        torch.arange(N_TRAIN) % CLASSES,
        torch.randint(0, 256, (12, 1, 8, 8), generator=g, dtype=torch.uint8),
        torch.arange(12) % CLASSES,
        ["a", "b", "c", "d"],
    )


def tiny_data(images: ImageSet | None = None) -> RunData:
    return RunData(images or tiny_images(), TRANSFORM, random_split(N_TRAIN, 0.25, seed=0), torch.device("cpu"))


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return small_cnn(1, CLASSES, width=4)


def make_run(data: RunData, model=None, uses_forget: bool = False, seed: int = 0) -> Workbench:
    return Workbench(
        model if model is not None else tiny_model(), data, recipe=TrainParams(),
        new_model=lambda: small_cnn(1, CLASSES, width=4), cost=CostMeter(1), seed=seed,
        uses_forget=uses_forget, name="coun",
    )


# --------------------------------------------------------------------------- cross-view InfoNCE


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def hand_infonce(z1, z2, tau):
    n = len(z1)

    def term(anchors, others):
        total = 0.0
        for i in range(n):
            logits = [cos(anchors[i], others[j]) / tau for j in range(n)]
            total += -math.log(math.exp(logits[i]) / sum(math.exp(v) for v in logits))
        return total / n

    return term(z1, z2) + term(z2, z1)


def test_cross_view_infonce_matches_a_hand_computation():
    z1 = [[1.0, 0.0], [0.6, 0.8], [-1.0, 2.0]]
    z2 = [[2.0, 0.5], [0.0, 1.0], [-0.5, -1.0]]
    got = cross_view_infonce(torch.tensor(z1, dtype=torch.float64), torch.tensor(z2, dtype=torch.float64), 0.5)
    assert got.item() == pytest.approx(hand_infonce(z1, z2, 0.5), rel=1e-12)


def test_cross_view_infonce_uses_both_directions():
    # the two directions differ here; the loss is their sum, not twice one of them
    z1 = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    z2 = [[1.0, 0.2], [1.0, 1.0], [-1.0, 0.3]]
    t1 = torch.tensor(z1, dtype=torch.float64)
    t2 = torch.tensor(z2, dtype=torch.float64)
    got = cross_view_infonce(t1, t2, 0.1).item()
    assert got == pytest.approx(hand_infonce(z1, z2, 0.1), rel=1e-12)
    assert got == pytest.approx(cross_view_infonce(t2, t1, 0.1).item(), rel=1e-12)
    one_way = F.cross_entropy(F.normalize(t1) @ F.normalize(t2).T / 0.1, torch.arange(3)).item()
    assert abs(got - 2 * one_way) > 1e-3


def test_cross_view_infonce_ignores_same_view_negatives_and_scale():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    base = cross_view_infonce(z1, z2, 0.2)
    # cosine similarity: rescaling the features changes nothing
    assert cross_view_infonce(3 * z1, 0.5 * z2, 0.2).item() == pytest.approx(base.item(), rel=1e-12)
    # perfectly aligned, well separated views give a small loss; tau sharpens it
    eye = torch.eye(4, dtype=torch.float64)
    assert cross_view_infonce(eye, eye, 0.1).item() < 0.01
    assert cross_view_infonce(eye, eye, 0.1) < cross_view_infonce(eye, eye, 0.3)


def test_gradients_flow_through_both_views():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(4, 3, generator=g, requires_grad=True)
    z2 = torch.randn(4, 3, generator=g, requires_grad=True)
    cross_view_infonce(z1, z2, 0.1).backward()
    assert z1.grad is not None and z1.grad.abs().sum() > 0
    assert z2.grad is not None and z2.grad.abs().sum() > 0


# --------------------------------------------------------------------------- the augmenter


def handed(batch: Batch, data: RunData, generator: torch.Generator) -> Batch:
    """The retain batch as the Trainer hands it to an augmenter: able to draw retain batches of its own."""
    return replace(batch, draw_retain=lambda size: retain_batch(data, size, generator))


def test_loss_terms_are_lambda_times_infonce_on_two_views_of_its_own_batch():
    data = tiny_data()
    model = tiny_model().train()
    generator = torch.Generator().manual_seed(0)
    batch = next(steps(data, "retain", 8, 1, generator)).retain
    features = model.features(batch.x)
    # replay the generator to know the batch and the two views the augmenter will draw
    replay = torch.Generator()
    replay.set_state(generator.get_state())
    retain = data.split.retain
    images = data.train_x[retain[torch.randperm(len(retain), generator=replay)[:16]]]
    TRANSFORM.train_view(images, replay)  # the drawn batch's own x, which the augmenter does not use
    own = replace(TRANSFORM, crop_padding=3, flip=False)
    first, second = own.train_view(images, replay), own.train_view(images, replay)
    assert not torch.equal(first, second)

    aug = ContrastiveAugmenter(ContrastiveParams(tau=0.2, batch_size=16, crop_padding=3, flip=False, **{"lambda": 2.5}))
    terms = aug.loss_terms(model, handed(batch, data, generator), features)
    assert set(terms) == {"cl"}
    expected = 2.5 * cross_view_infonce(model.features(first), model.features(second), 0.2)
    assert terms["cl"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms["cl"].backward()
    assert all(p.grad is not None for p in model.features.parameters())
    assert ContrastiveAugmenter.extra_views == 2
    assert aug.parameters() == []  # no projection head


def test_views_come_from_its_own_transform_not_the_datas():
    # the data set augments nothing (a memorising regime); coun-cl's views still differ by their crops
    plain = Transform(mean=(0.5,), std=(0.25,))
    data = RunData(tiny_images(), plain, random_split(N_TRAIN, 0.25, seed=0), torch.device("cpu"))
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(0)
    batch = next(steps(data, "retain", 8, 1, generator)).retain
    seen: list[torch.Tensor] = []
    handle = model.features.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    aug = ContrastiveAugmenter(ContrastiveParams(batch_size=12, crop_padding=2, flip=False))
    with torch.no_grad():
        aug.loss_terms(model, handed(batch, data, generator), model.features(batch.x))
    handle.remove()
    _, first, second = seen
    assert len(first) == len(second) == 12
    assert not torch.equal(first, second)
    # a view the data's own transform drew would be the plain image; crops move most of them
    unaugmented = [plain.test_view(data.train_x[i : i + 1])[0] for i in data.split.retain.tolist()]
    for view in (first, second):
        moved = sum(not any(torch.equal(v, u) for u in unaugmented) for v in view)
        assert moved >= 6


def test_loss_terms_draw_a_fresh_batch_and_views_each_call():
    data = tiny_data()
    model = tiny_model().eval()
    generator = torch.Generator().manual_seed(0)
    batch = handed(next(steps(data, "retain", 8, 1, generator)).retain, data, generator)
    aug = ContrastiveAugmenter()
    with torch.no_grad():
        features = model.features(batch.x)
        first = aug.loss_terms(model, batch, features)["cl"]
        second = aug.loss_terms(model, batch, features)["cl"]
    assert first.item() != pytest.approx(second.item(), rel=1e-9)


def infonce_sizes(monkeypatch) -> list[int]:
    """The number of samples each InfoNCE the augmenter computes compares."""
    sizes: list[int] = []

    def recording(z1, z2, tau):
        sizes.append(len(z1))
        return cross_view_infonce(z1, z2, tau)

    monkeypatch.setattr(contrastive, "cross_view_infonce", recording)
    return sizes


@pytest.mark.parametrize("batch_size, compared", [(16, 16), (100, 30)])  # D_r holds 30 samples
def test_its_batch_size_is_its_own(monkeypatch, batch_size, compared):
    sizes = infonce_sizes(monkeypatch)
    run = make_run(tiny_data())
    aug = ContrastiveAugmenter(ContrastiveParams(batch_size=batch_size))
    AugmentedMethod(FineTune(TrainParams(epochs=1, batch_size=8)), [aug]).unlearn(run)
    assert sizes == [compared] * 4  # the method's 4 steps of 8 retain samples
    assert run.cost.forwards == 3 * 30 + 3 * 2 * compared * 4  # FT's samples, and both views of each own batch


def test_cannot_wrap_methods_without_retain_steps():
    reason = ContrastiveAugmenter.cannot_wrap(GradientAscent)
    assert reason and "coun-cl" in reason and "ga" in reason
    for method in (NegGrad, NegGradPlus, FineTune):
        assert ContrastiveAugmenter.cannot_wrap(method) is None


# --------------------------------------------------------------------------- params


def test_params_accept_lambda_by_alias_and_by_name():
    assert ContrastiveParams.model_validate({"lambda": 3.0}).lambda_ == 3.0
    assert ContrastiveParams(lambda_=0.5).lambda_ == 0.5
    p = CoUnParams.model_validate({"lambda": 4.0, "tau": 0.05, "epochs": 2})
    assert (p.lambda_, p.tau, p.epochs) == (4.0, 0.05, 2)
    defaults = CoUnParams()
    assert (defaults.epochs, defaults.schedule, defaults.tau, defaults.lr, defaults.min_lr) == (50, "cosine", 0.1, 0.01, 1e-4)
    # the paper's batch and views
    assert (defaults.batch_size, defaults.crop_padding, defaults.flip) == (256, 4, True)
    cl = ContrastiveParams()
    assert (cl.batch_size, cl.crop_padding, cl.flip) == (256, 4, True)


@pytest.mark.parametrize("bad", [{"tau": 0.5}, {"tau": 0.0}, {"lambda": -1.0}, {"lamda": 1.0}, {"crop_padding": -1}])
def test_params_reject_out_of_range_and_unknown_keys(bad):
    with pytest.raises(pydantic.ValidationError):
        CoUnParams.model_validate(bad)
    with pytest.raises(pydantic.ValidationError):
        ContrastiveParams.model_validate(bad)


# --------------------------------------------------------------------------- the method


def coun(**params) -> CoUn:
    return CoUn(CoUnParams.model_validate({"epochs": 1, "batch_size": 8, "lr": 0.05, **params}))


def test_coun_never_reads_a_forget_sample():
    data = RecordingData(tiny_images(), TRANSFORM, random_split(N_TRAIN, 0.25, seed=0), torch.device("cpu"))
    run = make_run(data, uses_forget=CoUn.uses_forget)
    assert CoUn.uses_forget is False
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    coun(epochs=2).unlearn(run)
    forget = set(data.split.forget.tolist())
    assert data.drawn and not data.touched & forget  # no batch (its own, coun-cl's), no evaluation view
    assert set(data.drawn) == set(data.split.retain.tolist())
    assert any(not torch.equal(start[k], v) for k, v in run.model.state_dict().items())


def test_coun_result_does_not_depend_on_the_forget_samples():
    images = tiny_images()
    scrambled = tiny_images()
    forget = random_split(N_TRAIN, 0.25, seed=0).forget
    scrambled.train_x[forget] = 255 - scrambled.train_x[forget]
    scrambled.train_y[forget] = (scrambled.train_y[forget] + 1) % CLASSES
    results = []
    for imgs in (images, scrambled):
        run = make_run(tiny_data(imgs), model=tiny_model(seed=3))
        coun().unlearn(run)
        results.append(run.model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_coun_trains_ce_on_view_one_of_the_batch_whose_two_views_its_cl_term_compares(monkeypatch):
    run = make_run(tiny_data())
    logits_seen, checked = [], []
    real_infonce = method_module.cross_view_infonce

    def ce(logits, labels):
        logits_seen.append(logits)
        return F.cross_entropy(logits, labels)

    def infonce(z1, z2, tau):
        # CE was computed first, on h(Z) of the same view 1 of the same batch
        checked.append(torch.allclose(logits_seen[-1], run.model.head(z1)) and len(z1) == len(z2) == len(logits_seen[-1]))
        return real_infonce(z1, z2, tau)

    monkeypatch.setattr(method_module, "F", types.SimpleNamespace(cross_entropy=ce))
    monkeypatch.setattr(method_module, "cross_view_infonce", infonce)
    coun(**{"lambda": 2.0, "tau": 0.2}).unlearn(run)
    assert checked == [True] * 4  # 30 retain samples, batches of 8 -> 4 steps
    # each retain sample trained on two views: the first as the step's own, the second counted by coun
    assert run.cost.forwards == 3 * 2 * 30


def test_coun_views_are_its_own_transform_not_the_datas():
    # the data set's own augmentation is none at all; coun's views must still differ (crops and flips)
    plain = replace(TRANSFORM, crop_padding=0, flip=False)
    states = []
    for crop, flip in ((0, False), (4, True)):
        run = make_run(RunData(tiny_images(), plain, random_split(N_TRAIN, 0.25, seed=0), torch.device("cpu")),
                       model=tiny_model(seed=5))
        coun(crop_padding=crop, flip=flip, epochs=1).unlearn(run)
        states.append(run.model.state_dict())
    # without its own augmentation both views are the same image: L_CL then differs, and so do the weights
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_coun_wrapped_by_another_augmenter_keeps_both():
    data = tiny_data()
    run = make_run(data)
    extra = ContrastiveAugmenter(ContrastiveParams(tau=0.3))
    wrapped = AugmentedMethod(coun(), [extra])
    assert wrapped.name == "coun+coun-cl" and wrapped.uses_forget is False
    wrapped.unlearn(run)
    assert run.augmenters == [extra]
    # coun's two views of each of its 30 retain samples; the features of each step's own view, which augmenters
    # are handed (coun's forwards are of its views, not of it); the extra augmenter's views of all 30, in 4 steps
    assert run.cost.forwards == 3 * 2 * 30 + 3 * 30 + 3 * 2 * 30 * 4


def test_coun_repeats_bit_for_bit_for_a_seed():
    states = []
    for seed in (7, 7, 8):
        run = make_run(tiny_data(), model=tiny_model(seed=5), seed=seed)
        coun(epochs=2).unlearn(run)
        states.append(run.model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_registered_through_the_plugin_host():
    from unlearnkit.plugins import discover

    registry = discover(env={})
    assert registry.get(Method, "coun") is CoUn
    assert registry.get(Augmenter, "coun-cl") is ContrastiveAugmenter
