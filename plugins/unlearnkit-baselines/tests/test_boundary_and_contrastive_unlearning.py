"""Decision-boundary (boundary-shrink, boundary-expand) and contrastive (cu) unlearning on tiny data (CPU, seconds)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from unlearnkit_baselines import BoundaryExpand, BoundaryShrink, ContrastiveUnlearning, contrastive_unlearning
from unlearnkit_baselines.boundary import BoundaryParams, BoundaryShrinkParams
from unlearnkit_baselines.contrastive_unlearning import (
    ContrastiveUnlearningParams,
    ProjectionClassifier,
    ProjectionHead,
    contrastive_unlearning_loss,
    fit_projection_head,
)
from unlearnkit_coun import ContrastiveAugmenter
from unlearnkit_coun.contrastive import ContrastiveParams

from unlearnkit import Method
from unlearnkit.api import TrainParams
from unlearnkit.data.forget import Split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import AugmentedMethod, CostMeter, RunData, Workbench
from unlearnkit.engine.streams import Step
from unlearnkit.errors import SpecError
from unlearnkit.models import Classifier
from unlearnkit.plugins import discover
from unlearnkit.resolve import resolve
from unlearnkit.testing import RecordingData, tiny_data, tiny_model, tiny_run

PLAIN = Transform(mean=(0.5,), std=(0.25,))  # no crop, no flip: the training view is the normalised image


@torch.no_grad()
def accuracy(model, data, part) -> float:
    model.eval()
    hits = total = 0
    for x, y in data.eval_views(part):
        hits += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return hits / total


class TrainingTargets:
    """Records (logits shape, targets) of every cross-entropy computed on `model`'s own output."""

    def __init__(self, model: nn.Module, monkeypatch):
        self.calls: list[tuple[tuple[int, ...], torch.Tensor, nn.Module]] = []
        self.outputs: list[torch.Tensor] = []
        model.register_forward_hook(lambda m, i, o: self.outputs.append(o))
        original = F.cross_entropy

        def recording(input, target, *args, **kwargs):
            if any(input is o for o in self.outputs):
                self.calls.append((tuple(input.shape), target.detach().clone(), model.head))
            return original(input, target, *args, **kwargs)

        monkeypatch.setattr(F, "cross_entropy", recording)


# --------------------------------------------------------------------------- boundary-shrink


class Brightness(nn.Module):
    """Mean pixel brightness in [0, 1] of a normalised image (PLAIN's mean 0.5, std 0.25)."""

    def forward(self, x):
        return (x * 0.25 + 0.5).mean(dim=(1, 2, 3)).unsqueeze(1)


CENTROIDS = (0.2, 0.4, 0.6, 0.8)


def nearest_centroid_model() -> Classifier:
    """logit_k = 50 * (2 mu_k b - mu_k^2) = 50 * (b^2 - (b - mu_k)^2): predicts the centroid nearest to brightness b."""
    model = Classifier(Brightness(), 1, len(CENTROIDS))
    mu = torch.tensor(CENTROIDS)
    with torch.no_grad():
        model.head.weight.copy_(50 * 2 * mu.view(-1, 1))
        model.head.bias.copy_(-50 * mu**2)
    return model


def constant_images(levels: list[int], labels: list[int]) -> ImageSet:
    x = torch.tensor(levels, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    y = torch.tensor(labels)
    return ImageSet(x, y, x[-4:], y[-4:], [f"c{i}" for i in range(4)])


def test_boundary_shrink_relabels_each_forget_sample_to_its_adversarial_neighbour(monkeypatch):
    # Uniform images at known brightness, a nearest-centroid model with centroids 0.2/0.4/0.6/0.8:
    # FGSM raises the true class's loss by moving the brightness toward the more probable
    # neighbour centroid, by `bound` (0.15), so the neighbour each sample lands in is known.
    forget_levels = [51, 204, 110, 143, 94, 5]  # /255: 0.200, 0.800, 0.431, 0.561, 0.369, 0.020
    forget_labels = [0, 3, 1, 2, 1, 0]
    # 0.20 -> up 0.35 -> 1; 0.80 -> down 0.65 -> 2; 0.431 (nearer 0.6 than 0.2) -> up 0.581 -> 2;
    # 0.561 (nearer 0.4 than 0.8) -> down 0.411 -> 1; 0.369 (nearer 0.2) -> down 0.219 -> 0;
    # 0.020 -> up 0.170 -> still 0: the attack fails and the true label is kept, as in the authors' code.
    expected = torch.tensor([1, 2, 2, 1, 0, 0])
    images = constant_images(forget_levels + [51, 102, 153, 204], forget_labels + [0, 1, 2, 3])
    split = Split(forget=torch.arange(6), retain=torch.arange(6, 10))
    data = RecordingData(images, PLAIN, split, torch.device("cpu"))
    run = Workbench(
        nearest_centroid_model(), data, recipe=TrainParams(), new_model=nearest_centroid_model,
        cost=CostMeter(1), seed=0, name="boundary-shrink",
    )
    assert run.original(data.transform.test_view(images.train_x[:6])).argmax(1).tolist() == forget_labels
    targets = TrainingTargets(run.model, monkeypatch)
    BoundaryShrink(BoundaryShrinkParams(bound=0.15, epochs=2, batch_size=6, lr=1e-3)).unlearn(run)
    assert len(targets.calls) == 2  # one (shuffled) batch of the six forget samples per epoch
    for epoch, (_, trained_toward, _) in enumerate(targets.calls):
        order = torch.tensor(data.drawn[6 * epoch:6 * epoch + 6])
        assert torch.equal(trained_toward, expected[order])


def direct_fgsm_labels(frozen, x, y, mean, std, bound):
    """FGSM written out independently: pixel space, one signed step, clamp, 1/255 grid, the frozen model's argmax."""
    x = x.detach().clone().requires_grad_(True)
    F.cross_entropy(frozen(x), y).backward()
    pixels = x.detach() * std + mean
    stepped = torch.round((pixels + bound * x.grad.sign()).clamp(0, 1) * 255) / 255
    with torch.no_grad():
        return frozen((stepped - mean) / std).argmax(1)


def test_boundary_shrink_trains_on_the_augmented_view_with_the_frozen_copys_fgsm_labels(monkeypatch):
    data = tiny_data()
    run = tiny_run(BoundaryShrink, data)
    data.drawn.clear()  # the original model's training drew from it too
    inputs: list[torch.Tensor] = []
    run.model.register_forward_hook(lambda m, i, o: inputs.append(i[0]))
    targets = TrainingTargets(run.model, monkeypatch)
    BoundaryShrink(BoundaryShrinkParams(epochs=2, batch_size=4, lr=1e-3)).unlearn(run)
    forget = data.split.forget.tolist()
    assert sorted(data.drawn) == sorted(forget * 2)  # forget samples only, once per epoch
    assert len(targets.calls) == len(inputs) == 6  # 10 forget samples in batches of 4, 4, 2; two epochs
    relabelled, start = 0, 0
    for x, (_, trained_toward, _) in zip(inputs, targets.calls):
        y = data.train_y[torch.tensor(data.drawn[start:start + len(x)])]
        start += len(x)
        want = direct_fgsm_labels(run.original, x, y, 0.5, 0.25, 0.1)
        assert torch.equal(trained_toward, want)
        relabelled += (want != y).sum().item()
    assert relabelled > 0  # the attack does move samples across the boundary
    # cost: 3 training forwards + 3 for the FGSM forward/backward + 1 for the prediction, per forget sample and step
    assert run.cost.forwards == 7 * len(forget) * 2


def test_boundary_shrink_declarations_and_defaults():
    p = BoundaryShrinkParams()
    assert (p.lr, p.epochs, p.batch_size, p.momentum, p.weight_decay, p.bound) == (1e-5, 10, 64, 0.9, 0.0, 0.1)
    assert BoundaryShrink.trains_on_retain is False and BoundaryShrink.uses_forget is True
    assert set(BoundaryShrink.scenarios) == {"random", "class", "indices", "sequential"}
    with pytest.raises(ValueError):
        BoundaryShrinkParams(bound=0)
    registry = discover(env={})
    with pytest.raises(SpecError, match="takes none"):
        resolve({"method": "boundary-shrink", "augment": ["coun-cl"]}, registry)


# --------------------------------------------------------------------------- boundary-expand


def test_boundary_expand_trains_forget_samples_into_a_shadow_class_then_prunes_it(monkeypatch):
    data = tiny_data(forget_classes=(3,))
    run = tiny_run(BoundaryExpand, data)
    data.drawn.clear()  # the original model's training drew from it too
    k = run.num_classes
    original_head = {n: v.clone() for n, v in run.model.head.state_dict().items()}
    original_features = {n: v.clone() for n, v in run.model.features.state_dict().items()}
    seen: list[dict[str, torch.Tensor]] = []
    run.model.register_forward_pre_hook(lambda m, i: seen.append({n: v.clone() for n, v in m.head.state_dict().items()}))
    targets = TrainingTargets(run.model, monkeypatch)
    BoundaryExpand(BoundaryParams(epochs=3, batch_size=4, lr=0.01)).unlearn(run)

    # during training: K + 1 outputs, every forget sample trained toward the shadow class K
    assert targets.calls
    for shape, trained_toward, _ in targets.calls:
        assert shape[1] == k + 1
        assert (trained_toward == k).all()
    assert sorted(data.drawn) == sorted(data.split.forget.tolist() * 3)
    # the widened head started as the original rows plus a small new row (bias 0)
    first = seen[0]
    assert torch.equal(first["weight"][:k], original_head["weight"])
    assert torch.equal(first["bias"][:k], original_head["bias"])
    assert first["bias"][k] == 0 and 0 < first["weight"][k].abs().max() < 0.01

    # after: K outputs again, taken from the trained widened head; the feature extractor kept its training
    widened = targets.calls[-1][2]
    assert widened.out_features == k + 1
    head = run.model.head
    assert isinstance(head, nn.Linear) and head.out_features == k
    assert torch.equal(head.weight, widened.weight[:k]) and torch.equal(head.bias, widened.bias[:k])
    assert not torch.equal(head.weight, original_head["weight"])
    assert any(not torch.equal(v, run.model.features.state_dict()[n]) for n, v in original_features.items())
    # the model still works: K finite logits, and it is an ordinary K-class model of the architecture
    x = next(data.eval_views("retain"))[0]
    run.model.eval()
    logits = run.model(x)
    assert logits.shape == (len(x), k) and torch.isfinite(logits).all()
    assert torch.allclose(logits, widened(run.model.features(x))[:, :k])
    fresh = tiny_model(k)
    fresh.load_state_dict(run.model.state_dict())  # strict: the shapes are the architecture's again
    assert run.cost.forwards == 3 * len(data.split.forget) * 3  # forget samples x epochs, nothing extra


def test_boundary_expand_is_class_wise_only_and_says_so_at_validation():
    registry = discover(env={})
    with pytest.raises(SpecError) as error:
        resolve({"method": "boundary-expand", "forget": {"kind": "random"}}, registry)
    message = str(error.value)
    assert "boundary-expand" in message and "supports class forgetting" in message and "'random'" in message
    resolved = resolve({"method": "boundary-expand", "forget": {"kind": "class", "classes": [3]}}, registry)
    assert isinstance(resolved.method, BoundaryExpand)
    assert BoundaryExpand.scenarios == ("class",) and BoundaryExpand.trains_on_retain is False
    p = BoundaryParams()
    assert (p.lr, p.epochs, p.batch_size, p.momentum, p.weight_decay) == (1e-5, 10, 64, 0.9, 0.0)


def test_boundary_expand_is_reproducible_from_the_seed():
    states = []
    for _ in range(2):
        data = tiny_data(forget_classes=(1,))
        run = tiny_run(BoundaryExpand, data)
        data.drawn.clear()  # the original model's training drew from it too
        BoundaryExpand(BoundaryParams(epochs=1, batch_size=4, lr=0.01)).unlearn(run)
        states.append(run.model.state_dict())
    assert all(torch.equal(states[0][n], states[1][n]) for n in states[0])


# --------------------------------------------------------------------------- cu


def hand_loss(zu, yu, zr, yr, tau):
    """L_UL written out with Python floats: per anchor, log sum_{same class} e^{s} - mean_{other class} s."""
    losses = []
    for a, ya in zip(zu, yu):
        s = [sum(p * q for p, q in zip(a, b)) / tau for b in zr]
        positives = [v for v, yb in zip(s, yr) if yb != ya]
        negatives = [v for v, yb in zip(s, yr) if yb == ya]
        if not positives:
            continue
        push = math.log(sum(math.exp(v) for v in negatives)) if negatives else 0.0
        losses.append(push - sum(positives) / len(positives))
    return sum(losses) / len(losses)


def unit(*v):
    n = math.sqrt(sum(c * c for c in v))
    return [c / n for c in v]


def test_cu_loss_matches_a_hand_computation():
    zu = [unit(1, 0, 0), unit(0, 1, 1)]
    zr = [unit(1, 1, 0), unit(0, 0, 1), unit(1, 0, 1), unit(-1, 2, 0)]
    tau = 0.7
    for yu, yr in (
        ([0, 1], [0, 1, 2, 0]),  # anchor 0: 2 negatives, 2 positives; anchor 1: 1 negative, 3 positives
        ([0, 1], [2, 2, 2, 3]),  # no same-class retain sample (class-wise forgetting): denominator 1
        ([0, 1], [0, 0, 0, 0]),  # anchor 0 has no positive: skipped
    ):
        got = contrastive_unlearning_loss(torch.tensor(zu), torch.tensor(yu), torch.tensor(zr), torch.tensor(yr), tau)
        assert got.item() == pytest.approx(hand_loss(zu, yu, zr, yr, tau), rel=1e-5)
    # the class-wise case is exactly -mean similarity to the other classes
    got = contrastive_unlearning_loss(torch.tensor(zu), torch.tensor([0, 1]), torch.tensor(zr), torch.tensor([2, 2, 2, 3]), tau)
    assert got.item() == pytest.approx(-(torch.tensor(zu) @ torch.tensor(zr).T / tau).mean().item(), rel=1e-6)
    # no anchor with a positive: zero, still differentiable
    z = torch.tensor(zu, requires_grad=True)
    zero = contrastive_unlearning_loss(z, torch.tensor([0, 0]), torch.tensor(zr), torch.tensor([0, 0, 0, 0]), tau)
    zero.backward()
    assert zero.item() == 0 and torch.equal(z.grad, torch.zeros_like(z))


class Lookup(nn.Module):
    """Learnable features per training sample: image pixel value = the sample's index."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, x):
        return self.table[torch.round((x[:, 0, 0, 0] * 0.25 + 0.5) * 255).long()]


@pytest.mark.parametrize("seed", range(5))
def test_a_cu_step_pulls_forget_anchors_toward_other_classes_and_pushes_them_from_their_own(seed):
    g = torch.Generator().manual_seed(seed)
    k, dim, per_class = 3, 8, 6
    y = torch.arange(k * per_class) % k
    table = torch.randn(k, dim, generator=g)[y] + 0.5 * torch.randn(k * per_class, dim, generator=g)
    x = torch.arange(k * per_class, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    split = Split(forget=torch.arange(2 * k), retain=torch.arange(2 * k, k * per_class))
    data = RunData(ImageSet(x, y, x[:k], y[:k], ["a", "b", "c"]), PLAIN, split, torch.device("cpu"))
    model = Classifier(Lookup(table), dim, k)
    forget, retain = data.batch(split.forget, g), data.batch(split.retain, g)
    same = forget.y[:, None] == retain.y[None, :]

    def similarities():
        with torch.no_grad():
            s = F.normalize(model.features(forget.x), dim=1) @ F.normalize(model.features(retain.x), dim=1).T
        return s[~same].mean().item(), s[same].mean().item()

    other_before, own_before = similarities()
    method = ContrastiveUnlearning(ContrastiveUnlearningParams(lambda_ce=0.0))
    terms = method.loss_fn(nn.Identity())(model, Step(retain, forget, 0, 1, 0, 1))
    assert terms["ce"].item() == 0
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    terms["ul"].backward()
    optimizer.step()
    other_after, own_after = similarities()
    assert other_after > other_before
    assert own_after < own_before


def test_cu_step_stream_uses_each_forget_batch_omega_times_with_fresh_retain_batches():
    data = tiny_data()
    run = tiny_run(ContrastiveUnlearning, data)
    data.drawn.clear()  # the original model's training drew from it too
    omega, epochs = 3, 2
    method = ContrastiveUnlearning(ContrastiveUnlearningParams(omega=omega, epochs=epochs, batch_size=4))
    steps = list(method.steps(run, 999))
    per_epoch = run.steps_per_epoch("forget", 4)  # 10 forget samples: 4, 4, 2
    assert per_epoch == 3 and len(steps) == per_epoch * omega * epochs
    forget_set, retain_set = set(data.split.forget.tolist()), set(data.split.retain.tolist())
    retain_seen = []
    for group in range(0, len(steps), omega):
        chunk = steps[group:group + omega]
        assert all(s.forget is chunk[0].forget for s in chunk)  # the same forget batch (same view), omega times
        assert len({id(s.retain) for s in chunk}) == omega
        for s in chunk:
            assert len(s.retain) == len(s.forget)
            assert set(s.forget.index.tolist()) <= forget_set and set(s.retain.index.tolist()) <= retain_set
            retain_seen += s.retain.index.tolist()
    for epoch in range(epochs):
        batches = [s.forget for s in steps if s.epoch == epoch][::omega]
        assert sorted(i for b in batches for i in b.index.tolist()) == sorted(forget_set)
    # retain batches walk through shuffled passes of D_r: 60 draws from 30 samples = every sample twice
    assert sorted(retain_seen) == sorted(list(retain_set) * 2)
    assert [s.iteration for s in steps] == list(range(len(steps)))


def test_cu_runs_counts_cost_and_trains_its_projection_head(monkeypatch):
    data = tiny_data()
    run = tiny_run(ContrastiveUnlearning, data)
    data.drawn.clear()  # the original model's training drew from it too
    heads = []
    original = ContrastiveUnlearning.projection_head

    def capture(self, run, dim):
        head = original(self, run, dim)
        heads.append((head, {n: v.clone() for n, v in head.state_dict().items()}))
        return head

    monkeypatch.setattr(ContrastiveUnlearning, "projection_head", capture)
    start = {n: v.clone() for n, v in run.model.state_dict().items()}
    ContrastiveUnlearning(ContrastiveUnlearningParams(epochs=2, omega=2, batch_size=4, lr=0.01)).unlearn(run)
    (head, head_start), = heads
    assert isinstance(head, ProjectionHead) and head[-1].out_features == 128
    assert any(not torch.equal(v, head.state_dict()[n]) for n, v in head_start.items())
    assert any(not torch.equal(v, run.model.state_dict()[n]) for n, v in start.items())
    # the head's fit forwards the Original once per training sample; then every step trains a forget batch
    # and an equally large retain batch: 3 forwards per sample, nothing else
    n_forget = len(data.split.forget)
    forget_draws = sum(i in set(data.split.forget.tolist()) for i in data.drawn)
    assert forget_draws == n_forget * 2  # each forget batch drawn once per epoch (then reused omega times)
    assert len(data.drawn) - forget_draws == n_forget * 2 * 2  # a retain sample per forget sample, step and epoch
    assert run.cost.forwards == len(data.train_y) + 3 * 2 * n_forget * 2 * 2  # D + 3 x (forget + retain) x omega x epochs


def clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: v.detach().clone() for n, v in module.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


@torch.no_grad()
def projection_cross_entropy(head, classifier, features, labels) -> float:
    return F.cross_entropy(classifier(F.normalize(head(features), dim=1)), labels).item()


def record_cu_phases(monkeypatch, run, data) -> dict:
    """What CU's head looks like when drawn, right after its fit, and at the first unlearning step."""
    seen: dict = {}
    draw_head, fit_head, build_loss = ContrastiveUnlearning.projection_head, fit_projection_head, ContrastiveUnlearning.loss_fn

    def drawn_head(self, run, dim):
        head = draw_head(self, run, dim)
        seen["random head"] = clone_state(head)
        return head

    def fitted_head(head, classifier, features, labels, recipe, epochs, generator):
        before = projection_cross_entropy(head, classifier, features, labels)
        fit_head(head, classifier, features, labels, recipe, epochs, generator)
        seen["fit"] = {
            "ce before": before, "ce after": projection_cross_entropy(head, classifier, features, labels),
            "features": features, "labels": labels, "recipe": recipe, "epochs": epochs,
            "forwards": run.cost.forwards, "drawn": list(data.drawn), "model": clone_state(run.model),
        }
        seen["fitted head"] = clone_state(head)

    def loss_recording_the_first_head(self, head):
        loss = build_loss(self, head)

        def recording(model, step):
            seen.setdefault("first step head", clone_state(head))
            return loss(model, step)

        return recording

    monkeypatch.setattr(ContrastiveUnlearning, "projection_head", drawn_head)
    monkeypatch.setattr(contrastive_unlearning, "fit_projection_head", fitted_head)
    monkeypatch.setattr(ContrastiveUnlearning, "loss_fn", loss_recording_the_first_head)
    return seen


def test_cu_starts_unlearning_from_a_head_fitted_on_the_frozen_original(monkeypatch):
    data = tiny_data()
    run = tiny_run(ContrastiveUnlearning, data)
    data.drawn.clear()  # the original model's training drew from it too
    data.viewed.clear()
    original = clone_state(run.model)
    seen = record_cu_phases(monkeypatch, run, data)
    ContrastiveUnlearning(ContrastiveUnlearningParams(epochs=1, omega=2, batch_size=4, lr=0.01)).unlearn(run)
    fit = seen["fit"]
    # fitted with the Original's recipe on every training sample the Original saw, forget samples included,
    # from un-augmented views: one forward each, nothing drawn or trained, the model untouched
    every = data.indices("all")
    assert sorted(data.viewed) == every.tolist() and set(data.split.forget.tolist()) <= set(data.viewed)
    assert fit["recipe"] is run.recipe and fit["epochs"] == run.recipe.epochs
    assert fit["forwards"] == len(every) and fit["drawn"] == []
    assert same_state(fit["model"], original)
    with torch.no_grad():
        expected = torch.cat([run.original.features(x) for x, _ in RunData.eval_views(data, "train")])
    assert torch.allclose(fit["features"], expected) and torch.equal(fit["labels"], data.train_y[every])
    # by cross-entropy through a classifier on the normalised projection
    assert fit["ce after"] < fit["ce before"]
    # and unlearning starts from that head, not from the random one
    assert not same_state(seen["fitted head"], seen["random head"])
    assert same_state(seen["first step head"], seen["fitted head"])


def test_cu_head_epochs_zero_starts_from_the_random_head_at_no_cost(monkeypatch):
    data = tiny_data()
    run = tiny_run(ContrastiveUnlearning, data)
    data.drawn.clear()  # the original model's training drew from it too
    data.viewed.clear()
    seen = record_cu_phases(monkeypatch, run, data)
    ContrastiveUnlearning(ContrastiveUnlearningParams(epochs=1, omega=2, batch_size=4, lr=0.01, head_epochs=0)).unlearn(run)
    assert "fit" not in seen and data.viewed == []
    assert same_state(seen["first step head"], seen["random head"])
    assert run.cost.forwards == 3 * 2 * len(data.split.forget) * 2  # the unlearning steps only


def test_fit_projection_head_learns_classes_on_the_normalised_projection_with_the_recipe():
    g = torch.Generator().manual_seed(0)
    classes, dim, per_class = 3, 8, 20
    labels = torch.arange(classes * per_class) % classes
    features = 3 * torch.randn(classes, dim, generator=g)[labels] + torch.randn(classes * per_class, dim, generator=g)
    torch.manual_seed(0)
    head, classifier = ProjectionHead(dim, 4), ProjectionClassifier(4, classes)
    start = clone_state(head)

    def accuracy_and_loss():
        with torch.no_grad():
            logits = classifier(F.normalize(head(features), dim=1))
        return (logits.argmax(1) == labels).float().mean().item(), F.cross_entropy(logits, labels).item()

    _, loss_before = accuracy_and_loss()
    recipe = TrainParams(epochs=30, lr=0.1, batch_size=16, schedule="multistep")
    fit_projection_head(head, classifier, features, labels, recipe, recipe.epochs, torch.Generator().manual_seed(0))
    accuracy_after, loss_after = accuracy_and_loss()
    assert accuracy_after == 1.0 and loss_after < loss_before / 2
    # zero epochs leave the head as it is
    fitted = clone_state(head)
    fit_projection_head(head, classifier, features, labels, recipe, 0, torch.Generator().manual_seed(0))
    assert same_state(clone_state(head), fitted) and not same_state(fitted, start)


def test_cu_forgets_a_class_and_keeps_the_rest():
    data = tiny_data(forget_classes=(3,))
    run = tiny_run(ContrastiveUnlearning, data)
    data.drawn.clear()  # the original model's training drew from it too
    assert accuracy(run.model, data, "forget") == 1.0
    # from a head already fitted to separate the classes, forgetting takes more steps than from a random one
    ContrastiveUnlearning(ContrastiveUnlearningParams(epochs=10, batch_size=4, lr=0.03)).unlearn(run)
    assert accuracy(run.model, data, "forget") <= 0.8
    assert accuracy(run.model, data, "retain") >= 0.9


def test_cu_is_reproducible_from_the_seed():
    states = []
    for _ in range(2):
        run = tiny_run(ContrastiveUnlearning, tiny_data())
        ContrastiveUnlearning(ContrastiveUnlearningParams(epochs=1, batch_size=4, lr=0.01)).unlearn(run)
        states.append(run.model.state_dict())
    assert all(torch.equal(states[0][n], states[1][n]) for n in states[0])


def test_coun_cl_can_wrap_cu_and_sees_every_retain_batch():
    resolved = resolve({"method": "cu", "augment": ["coun-cl"]}, discover(env={}))
    assert isinstance(resolved.method, ContrastiveUnlearning)
    data = tiny_data()
    run = tiny_run(ContrastiveUnlearning, data)
    data.drawn.clear()  # the original model's training drew from it too
    augmenter = ContrastiveAugmenter(ContrastiveParams(tau=0.1, batch_size=4))
    seen = []
    original = augmenter.loss_terms
    augmenter.loss_terms = lambda model, batch, features: (seen.append(batch), original(model, batch, features))[1]
    cu = ContrastiveUnlearning(ContrastiveUnlearningParams(epochs=1, omega=2, batch_size=4, lr=0.01))
    AugmentedMethod(cu, [augmenter]).unlearn(run)
    n_forget = len(data.split.forget)
    assert len(seen) == 3 * 2 and sum(len(b) for b in seen) == 2 * n_forget
    # the head's fit: one forward of the Original per training sample; per step: 3 x (forget + retain) trained
    # + coun-cl's back-propagated second view (3 forwards); view 1's retain features come from CU's own joint
    # forward, so no extra forward
    assert run.cost.forwards == len(data.train_y) + 3 * 2 * 2 * n_forget + 3 * 2 * 4 * len(seen)


def test_cu_declarations_and_defaults():
    p = ContrastiveUnlearningParams()
    assert (p.tau, p.omega, p.lambda_ul, p.lambda_ce, p.lr, p.epochs) == (0.7, 4, 3.0, 1.0, 1e-3, 3)
    assert (p.momentum, p.weight_decay, p.batch_size, p.schedule) == (0.9, 0.0, 128, "constant")
    assert ContrastiveUnlearning.trains_on_retain and ContrastiveUnlearning.uses_forget
    assert set(ContrastiveUnlearning.scenarios) == {"random", "class", "indices", "sequential"}


def test_boundary_shrink_boundary_expand_and_cu_are_registered():
    registry = discover(env={})
    for name, cls in (("boundary-shrink", BoundaryShrink), ("boundary-expand", BoundaryExpand), ("cu", ContrastiveUnlearning)):
        assert registry.get(Method, name) is cls
        assert cls.summary() and len(cls.summary()) < 120
