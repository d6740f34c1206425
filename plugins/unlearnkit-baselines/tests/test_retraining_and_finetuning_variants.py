"""Retraining and fine-tuning variants (Retrain, RL, SalUn, l1-sparse, NoT) on tiny data and models (CPU, seconds)."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn
from unlearnkit_baselines import FineTune, L1Sparse, NegateThenTune, RandomLabel, Retrain, SalUn, relabel
from unlearnkit_baselines.negation import NegateThenTuneParams, default_layers, resolve_layers
from unlearnkit_baselines.relabel import (
    RandomLabelLoss,
    RandomLabelParams,
    SalUnParams,
    draw_random_labels,
    saliency_masks,
    saliency_scores,
)
from unlearnkit_baselines.retrain import RetrainParams
from unlearnkit_baselines.sparse import L1SparseParams, alpha_at, l1_norm

from unlearnkit import Method
from unlearnkit.api import TrainParams
from unlearnkit.engine.streams import steps
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import Classifier, resnet18, small_cnn, vgg16_bn
from unlearnkit.testing import tiny_data, tiny_model, tiny_run, trained_model

# --------------------------------------------------------------------------- helpers


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def accuracy(model, data, part: str) -> float:
    model.eval()
    right = sum((model(x).argmax(1) == y).sum().item() for x, y in data.eval_views(part))
    return right / len(data.indices(part))


def spy_steps(run):
    """Wrap run.train so that every Step the loss function sees, and the loss terms it returns, are recorded."""
    seen: list[tuple] = []
    original_train = run.train

    def train(loss_fn, params, over="retain", parameters=None, label=None, masks=None):
        def wrapped(model, step):
            before = l1_norm(model).item()
            terms = loss_fn(model, step)
            seen.append((step, terms, before))
            return terms

        return original_train(wrapped, params, over=over, parameters=parameters, label=label, masks=masks)

    run.train = train
    return seen


# --------------------------------------------------------------------------- retrain


def test_retrain_result_does_not_depend_on_the_starting_model():
    data = tiny_data()
    trained = tiny_run(Retrain, data, model=trained_model(data))
    torch.manual_seed(123)
    other = tiny_run(Retrain, tiny_data(), model=tiny_model())
    assert any(not torch.equal(a, b) for a, b in zip(trained.model.state_dict().values(), other.model.state_dict().values()))
    Retrain().unlearn(trained)
    Retrain().unlearn(other)
    for (key, a), b in zip(trained.model.state_dict().items(), other.model.state_dict().values()):
        assert torch.equal(a, b), key


def test_retrain_reinitialises_in_place_from_the_run_seed():
    data = tiny_data()
    start = state(trained_model(data))
    runs = [tiny_run(Retrain, tiny_data(), seed=s) for s in (0, 0, 1)]
    models = [run.model for run in runs]
    rng = torch.get_rng_state()
    for run in runs:
        Retrain(RetrainParams(epochs=0)).unlearn(run)  # re-initialisation only
    assert torch.equal(torch.get_rng_state(), rng)  # drawn from the run's generator, global RNG untouched
    assert all(run.model is model for run, model in zip(runs, models))  # edited in place
    a, b, c = (state(run.model) for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same initialisation
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())  # another seed, another one
    assert all(not torch.equal(a[k], start[k]) for k in a if k.endswith("weight") and a[k].dim() > 1)  # nothing kept
    assert runs[0].cost.forwards == 0


def test_retrain_trains_on_retain_only_with_the_recipe_epochs():
    data = tiny_data()
    run = tiny_run(Retrain, data)
    assert run.recipe.epochs == 2
    Retrain().unlearn(run)
    retain = data.split.retain.tolist()
    assert sorted(data.drawn) == sorted(retain * run.recipe.epochs)  # never a forget index
    assert run.cost.forwards == 3 * len(retain) * run.recipe.epochs


def test_retrain_params_override_single_recipe_fields():
    recipe = TrainParams(epochs=7, lr=0.05, batch_size=8, schedule="multistep")
    resolved = RetrainParams.model_validate({"epochs": 1}).resolve(recipe)  # what --set method.params.epochs=1 gives
    assert (resolved.epochs, resolved.lr, resolved.batch_size, resolved.schedule) == (1, 0.05, 8, "multistep")
    assert RetrainParams().resolve(recipe) == recipe
    data = tiny_data()
    run = tiny_run(Retrain, data)
    Retrain(RetrainParams(epochs=1)).unlearn(run)
    assert sorted(data.drawn) == sorted(data.split.retain.tolist())
    with pytest.raises(ValidationError):
        RetrainParams(epochs=-1)


def test_retrain_declarations_and_coun_cl_can_wrap_it():
    from unlearnkit_coun import ContrastiveAugmenter

    assert Retrain.trains_on_retain is True and Retrain.uses_forget is False
    assert ContrastiveAugmenter.cannot_wrap(Retrain) is None


# --------------------------------------------------------------------------- rl


def test_wrong_labels_never_equal_the_true_label_and_cover_the_others():
    true = torch.arange(4000) % 4
    wrong = draw_random_labels(true, 4, "wrong", torch.Generator().manual_seed(0))
    assert not (wrong == true).any()
    for c in range(4):
        counts = torch.bincount(wrong[true == c], minlength=4)
        assert counts[c] == 0 and (counts[torch.arange(4) != c] > 250).all()  # ~333 each
    anything = draw_random_labels(true, 4, "any", torch.Generator().manual_seed(0))
    assert 900 < (anything == true).sum() < 1100  # about 1/4 keep their label
    assert set(anything.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("rule", ["any", "wrong"])
def test_rl_forget_labels_are_fixed_across_epochs_and_retain_labels_kept(rule, monkeypatch):
    data = tiny_data()
    run = tiny_run(RandomLabel, data)
    seen = spy_steps(run)
    targets: list[torch.Tensor] = []

    def recording_ce(logits, target, **kwargs):
        targets.append(target.clone())
        return F.cross_entropy(logits, target, **kwargs)

    monkeypatch.setattr(relabel, "F", types.SimpleNamespace(cross_entropy=recording_ce))
    RandomLabel(RandomLabelParams(epochs=3, batch_size=8, labels=rule)).unlearn(run)

    forget = set(data.split.forget.tolist())
    used: dict[int, set[int]] = {}
    assert len(targets) == len(seen)  # one joint forward per step
    for (step, _, _), target in zip(seen, targets):
        n_retain = 0 if step.retain is None else len(step.retain)
        assert len(target) == len(step)
        if step.retain is not None:
            assert not set(step.retain.index.tolist()) & forget
            assert torch.equal(target[:n_retain], data.train_y[step.retain.index])  # retain keeps its labels
        if step.forget is not None:
            assert set(step.forget.index.tolist()) <= forget
            for i, label in zip(step.forget.index.tolist(), target[n_retain:].tolist()):
                used.setdefault(i, set()).add(label)
    assert set(used) == forget  # every forget sample was trained on
    assert all(len(labels) == 1 for labels in used.values())  # one label per sample, all 3 epochs
    fixed = {i: labels.pop() for i, labels in used.items()}
    if rule == "wrong":
        assert all(label != data.train_y[i].item() for i, label in fixed.items())
    # union: every sample once per epoch
    drawn_forget = [i for i in data.drawn if i in forget]
    assert sorted(drawn_forget) == sorted(list(forget) * 3)


def test_rl_loss_is_the_mean_ce_over_the_joint_batch():
    data = tiny_data()
    step = next(steps(data, "union", 40, 1, torch.Generator().manual_seed(0)))  # one step holding every sample
    assert len(step.retain) == 30 and len(step.forget) == 10
    forget = data.split.forget
    labels = (data.train_y[forget] + 1) % 4
    loss = RandomLabelLoss(forget, labels, len(data.train_y), data.device)
    model = trained_model(data).eval()
    terms = loss(model, step)
    assert set(terms) == {"retain_ce", "forget_ce"}
    position = {i: k for k, i in enumerate(forget.tolist())}
    forget_labels = labels[[position[i] for i in step.forget.index.tolist()]]
    joint = F.cross_entropy(model(torch.cat([step.retain.x, step.forget.x])), torch.cat([step.retain.y, forget_labels]))
    assert sum(terms.values()).item() == pytest.approx(joint.item(), rel=1e-5)
    want_retain = F.cross_entropy(model(step.retain.x), step.retain.y).item() * 30 / 40
    assert terms["retain_ce"].item() == pytest.approx(want_retain, rel=1e-5)


@pytest.mark.parametrize("rule", ["any", "wrong"])
def test_rl_lowers_forget_accuracy_and_the_random_labels_are_the_cause(rule, monkeypatch):
    params = RandomLabelParams(epochs=3, lr=0.05, batch_size=8, labels=rule)
    data = tiny_data(forget_classes=[1])
    run = tiny_run(RandomLabel, data)
    assert accuracy(run.model, data, "forget") == 1.0
    data.drawn.clear()
    RandomLabel(params).unlearn(run)
    assert run.cost.forwards == 3 * len(data.drawn) == 3 * 40 * 3
    assert accuracy(run.model, data, "forget") <= 0.25
    # control: the same training with the forget samples' true labels keeps them
    monkeypatch.setattr(relabel, "draw_random_labels", lambda true, k, r, g: true.clone())
    control_data = tiny_data(forget_classes=[1])
    control = tiny_run(RandomLabel, control_data)
    RandomLabel(params).unlearn(control)
    assert accuracy(control.model, control_data, "forget") == 1.0


def test_rl_defaults_and_declarations():
    p = RandomLabelParams()
    assert (p.lr, p.epochs, p.labels, p.schedule) == (0.01, 10, "any", "constant")
    assert RandomLabel.trains_on_retain and RandomLabel.uses_forget


# --------------------------------------------------------------------------- salun


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.77, 1.0])
def test_saliency_mask_keeps_exactly_the_asked_fraction_of_the_largest_scores(fraction):
    g = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(shape)) for shape in [(7, 3, 3, 3), (7,), (5, 7), (5,)]]
    scores = {p: torch.rand(p.shape, generator=g) for p in params}
    masks = saliency_masks(scores, fraction)
    assert set(masks) == set(params) and all(masks[p].shape == p.shape for p in params)
    total = sum(p.numel() for p in params)
    kept = torch.cat([masks[p].flatten() for p in params])
    flat = torch.cat([scores[p].flatten() for p in params])
    assert set(kept.unique().tolist()) <= {0.0, 1.0}
    assert kept.sum().item() == int(total * fraction)
    if fraction < 1:
        assert flat[kept == 1].min() > flat[kept == 0].max()  # the largest, globally


def test_saliency_mask_ranks_globally_not_per_layer():
    g = torch.Generator().manual_seed(0)
    loud, quiet = nn.Parameter(torch.zeros(30)), nn.Parameter(torch.zeros(70))
    scores = {loud: 10 + torch.rand(30, generator=g), quiet: torch.rand(70, generator=g)}
    masks = saliency_masks(scores, 0.3)
    assert masks[loud].sum() == 30 and masks[quiet].sum() == 0  # per-layer ranking would keep 9 and 21
    masks = saliency_masks(scores, 0.5)
    assert masks[loud].sum() == 30 and masks[quiet].sum() == 20


def test_saliency_scores_are_the_abs_forget_gradient_in_eval_mode(monkeypatch):
    data = tiny_data()
    run = tiny_run(SalUn, data)
    batches = [data.batch(data.split.forget[:6], torch.Generator().manual_seed(1)),
               data.batch(data.split.forget[6:], torch.Generator().manual_seed(2))]

    def forget_batches(part, batch_size):
        assert part == "forget"
        return iter(batches)

    monkeypatch.setattr(run, "batches", forget_batches)
    buffers = {k: v.clone() for k, v in run.model.named_buffers()}
    run.model.train()
    scores = saliency_scores(run, 6)
    assert run.model.training  # mode restored
    assert all(torch.equal(v, buffers[k]) for k, v in run.model.named_buffers())  # eval mode: BN stats untouched
    # by hand: sum of per-batch mean-CE gradients in eval mode, absolute value
    model = trained_model(data).eval()
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for b in batches:
        for acc, grad in zip(total, torch.autograd.grad(F.cross_entropy(model(b.x), b.y), params)):
            acc += grad
    assert list(scores) == list(run.model.parameters())  # every parameter is ranked, BN and biases included
    for s, t in zip(scores.values(), total):
        torch.testing.assert_close(s, t.abs())
    assert run.cost.forwards == 3 * 10  # forward + backward per forget sample
    assert all(p.grad is None for p in run.model.parameters())


def test_salun_moves_only_masked_weights(monkeypatch):
    data = tiny_data()
    run = tiny_run(SalUn, data)
    start = dict((name, p.detach().clone()) for name, p in run.model.named_parameters())
    captured = {}
    real_masks = relabel.saliency_masks

    def spy(scores, fraction):
        captured["masks"] = real_masks(scores, fraction)
        captured["fraction"] = fraction
        return captured["masks"]

    monkeypatch.setattr(relabel, "saliency_masks", spy)
    params = SalUnParams(mask_fraction=0.3, epochs=3, lr=0.05, batch_size=8, weight_decay=5e-3)
    SalUn(params).unlearn(run)
    masks = {name: captured["masks"][p] for name, p in run.model.named_parameters()}
    total = sum(m.numel() for m in masks.values())
    assert sum(m.sum().item() for m in masks.values()) == int(0.3 * total)
    moved_in = 0
    for name, p in run.model.named_parameters():
        frozen = masks[name] == 0
        assert torch.equal(p.detach()[frozen], start[name][frozen]), name  # bit-identical, weight decay included
        moved_in += (p.detach()[~frozen] != start[name][~frozen]).sum().item()
    assert moved_in > 0.9 * int(0.3 * total)
    # cost: the saliency pass (forward + backward per forget sample) plus the training samples
    assert run.cost.forwards == 3 * len(data.drawn) == 3 * (10 + 40 * 3)


def test_salun_defaults_and_bounds():
    p = SalUnParams()
    assert (p.mask_fraction, p.lr, p.epochs, p.labels) == (0.5, 0.01, 10, "any")
    for bad in (0.0, 1.5):
        with pytest.raises(ValidationError):
            SalUnParams(mask_fraction=bad)
    assert SalUn.trains_on_retain and SalUn.uses_forget


# --------------------------------------------------------------------------- l1-sparse


def test_alpha_decays_linearly_per_epoch_to_zero_after_the_phase():
    assert [alpha_at(e, 0.1, 4) for e in range(6)] == pytest.approx([0.1, 0.075, 0.05, 0.025, 0, 0])
    assert alpha_at(0, 0.1, 0) == 0  # no l1 phase: plain FT
    assert [alpha_at(e, 1.0, 10) for e in (0, 5, 9)] == pytest.approx([1.0, 0.5, 0.1])  # the code's default phase


@pytest.mark.parametrize("l1_epochs,weights", [(2, [0.04, 0.02, 0, 0]), (None, [0.04, 0.03, 0.02, 0.01])])
def test_l1_term_follows_the_schedule_during_training(l1_epochs, weights):
    data = tiny_data()
    run = tiny_run(L1Sparse, data)
    seen = spy_steps(run)
    L1Sparse(L1SparseParams(alpha=0.04, l1_epochs=l1_epochs, epochs=4, batch_size=8)).unlearn(run)
    assert len(seen) == 4 * 4
    for step, terms, norm in seen:
        assert set(terms) == {"ce", "l1"}
        want = weights[step.epoch]
        if want == 0:
            assert terms["l1"].item() == 0
        else:
            assert terms["l1"].item() == pytest.approx(want * norm, rel=1e-5)


def test_l1_sparse_with_a_large_alpha_ends_sparser_than_ft_from_the_same_start():
    params = {"epochs": 3, "lr": 0.05, "batch_size": 8}
    ft_data, l1_data = tiny_data(), tiny_data()
    ft, l1 = tiny_run(FineTune, ft_data), tiny_run(L1Sparse, l1_data)
    start = l1_norm(l1.model).item()
    FineTune(TrainParams(**params)).unlearn(ft)
    L1Sparse(L1SparseParams(alpha=0.05, **params)).unlearn(l1)
    assert ft_data.drawn == l1_data.drawn  # the same batches: only the penalty differs
    assert l1_norm(l1.model).item() < 0.9 * l1_norm(ft.model).item()
    assert l1_norm(l1.model).item() < start


def test_l1_sparse_reads_only_retain_data_and_costs_three_forwards_per_sample():
    data = tiny_data()
    run = tiny_run(L1Sparse, data)
    L1Sparse(L1SparseParams(epochs=2, batch_size=8)).unlearn(run)
    assert sorted(data.drawn) == sorted(data.split.retain.tolist() * 2)
    assert run.cost.forwards == 3 * 30 * 2
    p = L1SparseParams()
    assert (p.alpha, p.l1_epochs, p.lr, p.epochs) == (5e-4, None, 0.01, 10)
    assert 1e-4 <= p.alpha <= 1e-1
    assert L1Sparse.trains_on_retain and not L1Sparse.uses_forget


# --------------------------------------------------------------------------- not


class TinyViT(nn.Module):
    """Enough of a ViT (8x8 images, 4x4 patches) for the layer rule: a patch embedding and a positional embedding."""

    def __init__(self, linear_patch: bool = False):
        super().__init__()
        self.linear_patch = linear_patch
        if linear_patch:
            self.to_patch_embedding = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 8))
        else:
            self.patch_embed = nn.Conv2d(1, 8, 4, 4)
        self.pos_embed = nn.Parameter(torch.randn(1, 4, 8))
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        if self.linear_patch:
            patches = x.unfold(2, 4, 4).unfold(3, 4, 4).reshape(len(x), 4, 16)
            tokens = self.to_patch_embedding(patches)
        else:
            tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.norm(tokens + self.pos_embed).mean(1)


def test_default_layers_per_architecture():
    assert default_layers(small_cnn(1, 4, width=4)) == ["features.0.weight"]
    assert default_layers(resnet18(3, 10)) == ["features.0.weight"]
    assert default_layers(vgg16_bn(3, 10)) == ["features.0.weight"]
    assert default_layers(Classifier(TinyViT(), 8, 4)) == ["features.patch_embed.weight", "features.pos_embed"]
    assert default_layers(Classifier(TinyViT(linear_patch=True), 8, 4)) == [
        "features.to_patch_embedding.1.weight", "features.pos_embed"]
    with pytest.raises(UnlearnkitError, match="layers"):
        default_layers(Classifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 8)), 8, 4))


@pytest.mark.parametrize("linear_patch", [False, True])
def test_not_on_a_vit_negates_the_patch_and_positional_embeddings(linear_patch, monkeypatch):
    torch.manual_seed(0)
    model = Classifier(TinyViT(linear_patch), 8, 4)
    data = tiny_data()
    run = tiny_run(NegateThenTune, data, model=model)
    before = state(run.model)
    at_start = {}
    real_train = run.train
    monkeypatch.setattr(run, "train", lambda loss_fn, params, **kw: (at_start.update(state(run.model)),
                                                                     real_train(loss_fn, params, **kw)))
    NegateThenTune(NegateThenTuneParams(epochs=1, batch_size=8)).unlearn(run)
    patch = "features.to_patch_embedding.1.weight" if linear_patch else "features.patch_embed.weight"
    for key in before:
        negated = key in (patch, "features.pos_embed")
        assert torch.equal(at_start[key], -before[key] if negated else before[key]), key
    assert run.cost.forwards == 3 * 30


def test_not_negates_exactly_the_chosen_layer_before_fine_tuning(monkeypatch):
    data = tiny_data()
    run = tiny_run(NegateThenTune, data)
    before = state(run.model)
    at_start = {}
    real_train = run.train

    def train(loss_fn, params, over="retain", **kwargs):
        at_start.update(state(run.model))
        at_start["over"] = over
        return real_train(loss_fn, params, over=over, **kwargs)

    monkeypatch.setattr(run, "train", train)
    NegateThenTune(NegateThenTuneParams(epochs=2, batch_size=8)).unlearn(run)
    assert at_start.pop("over") == "retain"
    assert set(at_start) == set(before)
    for key, value in at_start.items():  # every parameter and buffer
        if key == "features.0.weight":
            assert torch.equal(value, -before[key])
        else:
            assert torch.equal(value, before[key]), key
    retain = data.split.retain.tolist()
    assert sorted(data.drawn) == sorted(retain * 2)  # never a forget index
    assert run.cost.forwards == 3 * 30 * 2
    assert not torch.equal(run.model.features[0].weight, -before["features.0.weight"])  # then fine-tuned


def test_not_layers_override_and_unknown_names(monkeypatch):
    data = tiny_data()
    run = tiny_run(NegateThenTune, data)
    before = state(run.model)
    monkeypatch.setattr(run, "train", lambda *a, **k: None)
    NegateThenTune(NegateThenTuneParams(layers=["head.weight", "features.3.weight"])).unlearn(run)
    after = state(run.model)
    for key in before:
        negated = key in ("head.weight", "features.3.weight")
        assert torch.equal(after[key], -before[key] if negated else before[key]), key
    with pytest.raises(UnlearnkitError) as error:
        resolve_layers(run.model, ["features.0.weight", "conv1.weight"])
    assert "conv1.weight" in error.value.message and "features.0.weight" in str(error.value.hint)
    assert resolve_layers(run.model, ["head.bias", "head.bias"]) == ["head.bias"]


def test_not_defaults_and_declarations():
    p = NegateThenTuneParams()
    assert (p.lr, p.epochs, p.layers) == (0.01, 10, None)
    assert NegateThenTune.trains_on_retain and not NegateThenTune.uses_forget
    assert NegateThenTuneParams.model_validate({"layers": ["features.0.weight"]}).layers == ["features.0.weight"]


# --------------------------------------------------------------------------- all five methods


@pytest.mark.parametrize("method_cls", [Retrain, RandomLabel, SalUn, L1Sparse, NegateThenTune])
def test_runs_via_tiny_run_and_counts_three_forwards_per_sample(method_cls):
    data = tiny_data(forget_classes=[1])
    run = tiny_run(method_cls, data)
    overrides = {} if method_cls is Retrain else {"epochs": 1, "batch_size": 8}
    method_cls(method_cls.Params.model_validate(overrides)).unlearn(run)
    assert data.drawn
    assert run.cost.forwards == 3 * len(data.drawn)
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    if not method_cls.uses_forget:
        assert not set(data.drawn) & set(data.split.forget.tolist())


def test_retrain_rl_salun_l1_sparse_and_not_are_registered():
    from unlearnkit.plugins import discover

    registry = discover(env={})
    for name, cls in (("retrain", Retrain), ("rl", RandomLabel), ("salun", SalUn), ("l1-sparse", L1Sparse),
                      ("not", NegateThenTune)):
        assert registry.get(Method, name) is cls
        assert cls.summary() and cls.__doc__.splitlines()[0] == cls.summary()


def test_rl_wrapped_by_coun_cl_reuses_the_joint_forward_for_retain_features():
    from unlearnkit_coun import ContrastiveAugmenter

    from unlearnkit.engine import AugmentedMethod

    data = tiny_data()
    method = AugmentedMethod(RandomLabel(RandomLabelParams(epochs=2, batch_size=8)),
                             [ContrastiveAugmenter(ContrastiveAugmenter.Params(batch_size=8))])
    run = tiny_run(method, data)
    seen = spy_steps(run)
    method.unlearn(run)
    want = 0
    for step, _, _ in seen:
        want += 3 * len(step)  # forward + backward of every sample
        if step.retain is not None:
            want += 3 * 2 * 8  # coun-cl's two back-propagated views of its own retain batch of 8
    assert any(s.retain is not None and s.forget is not None for s, _, _ in seen)
    assert run.cost.forwards == want
