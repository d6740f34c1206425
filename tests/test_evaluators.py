"""The built-in evaluators (RA/UA/TA, MIA-efficacy, Avg Gap, Cost) against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.svm import SVC
from torch import nn

from unlearnkit.data.forget import Split, class_split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import RunData
from unlearnkit.errors import UnlearnkitError
from unlearnkit.evaluation.builtin import (
    Accuracy,
    AverageGap,
    AvgGapParams,
    Cost,
    MembershipInference,
    MIAParams,
    Premise,
    RMIA,
)
from unlearnkit.evaluation.mia import FEATURES, attack_features, mia_efficacy
from unlearnkit.evaluation.representation import class_centroids, nearest_centroid_class, project
from unlearnkit.evaluation.subject import Subject

# --------------------------------------------------------------------------- helpers


def subject_with_outputs(outputs: dict[str, tuple[torch.Tensor, ...]], **kw) -> Subject:
    """A Subject whose per-part (logits, labels) or (features, logits, labels) are fixed: no model, no data."""
    subject = Subject(kw.pop("name", "unlearned"), None, None, kw.pop("flops", 0), kw.pop("seconds", 0.0), **kw)
    subject._outputs.update({part: (None, *out) if len(out) == 2 else out for part, out in outputs.items()})
    return subject


def one_hot_logits(predicted: list[int], classes: int) -> torch.Tensor:
    logits = torch.zeros(len(predicted), classes)
    logits[torch.arange(len(predicted)), torch.tensor(predicted)] = 5.0
    return logits


class PixelCode(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        code = x[:, 0, 0, 0] * 255 / 10  # undo the test-time normalisation: pixel / 255
        return -(code[:, None] - torch.arange(self.classes, dtype=x.dtype)) ** 2


class PixelCodeModel(nn.Module):
    """Predicts the class written into pixel (0, 0) of the image as value 10 * class (mean 0, std 1 transform).

    Its "features" are already the logits; the head passes them on."""

    def __init__(self, classes: int):
        super().__init__()
        self.features = PixelCode(classes)
        self.head = nn.Identity()

    @property
    def calls(self) -> int:
        return self.features.calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def coded_images(predicted: list[int]) -> torch.Tensor:
    images = torch.zeros(len(predicted), 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.tensor(predicted, dtype=torch.uint8) * 10
    return images


# --------------------------------------------------------------------------- Accuracy


def test_accuracy_from_known_logits_is_exact():
    retain_y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])  # 6 of 8 right -> RA 75
    retain_pred = [0, 1, 2, 0, 1, 2, 2, 0]
    forget_y = torch.tensor([0, 1, 2, 1, 0])  # 1 of 5 right -> UA 80
    forget_pred = [0, 0, 0, 0, 1]
    test_y = torch.tensor([2, 2, 1, 0])  # 3 of 4 right -> TA 75
    test_pred = [2, 2, 1, 1]
    subject = subject_with_outputs({
        "retain": (one_hot_logits(retain_pred, 3), retain_y),
        "forget": (one_hot_logits(forget_pred, 3), forget_y),
        "test": (one_hot_logits(test_pred, 3), test_y),
    })
    metrics = Accuracy().evaluate(subject, None)
    assert metrics == pytest.approx({"RA": 75.0, "UA": 80.0, "TA": 75.0})
    assert tuple(metrics) == Accuracy.metrics


def test_accuracy_through_a_real_subject_uses_each_part_and_drops_forgotten_test_classes():
    # 12 training samples, labels 0..2; the model's prediction is written into the pixels.
    train_y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    train_pred = [0, 1, 2, 0, 0, 2, 1, 1, 2, 0, 2, 1]
    test_y = torch.tensor([0, 1, 2, 2, 2, 1])
    test_pred = [0, 1, 1, 1, 1, 0]
    images = ImageSet(coded_images(train_pred), train_y, coded_images(test_pred), test_y, ["a", "b", "c"])
    transform = Transform(mean=(0.0,), std=(1.0,), crop_padding=2, flip=True)  # augmentation must not be used

    # explicit split: forget positions 4, 6, 7
    forget = torch.tensor([4, 6, 7])
    retain = torch.tensor([i for i in range(12) if i not in (4, 6, 7)])
    data = RunData(images, transform, Split(forget, retain), torch.device("cpu"))
    subject = Subject("unlearned", PixelCodeModel(3), data, 0, 0.0)
    right = [p == y for p, y in zip(train_pred, train_y.tolist())]
    ra = 100 * sum(right[i] for i in retain.tolist()) / len(retain)
    ua = 100 - 100 * sum(right[i] for i in forget.tolist()) / len(forget)
    ta = 100 * 2 / 6
    assert Accuracy().evaluate(subject, None) == pytest.approx({"RA": ra, "UA": ua, "TA": ta})

    # class-wise forgetting of class 2: TA is measured on test samples of classes 0 and 1 only
    split = class_split(train_y, [2], 3)
    data = RunData(images, transform, split, torch.device("cpu"))
    subject = Subject("unlearned", PixelCodeModel(3), data, 0, 0.0)
    metrics = Accuracy().evaluate(subject, None)
    assert metrics["TA"] == pytest.approx(100 * 2 / 3)  # test samples 0, 1, 5: right, right, wrong
    assert metrics["UA"] == pytest.approx(100 - 100 * 3 / 4)  # class-2 training samples 2, 5, 8, 11: 3 right


def test_subject_outputs_are_computed_once_and_shared():
    images = ImageSet(coded_images([0, 1, 1, 0]), torch.tensor([0, 1, 1, 0]), coded_images([1, 0]), torch.tensor([1, 1]), ["a", "b"])
    data = RunData(images, Transform((0.0,), (1.0,)), Split(torch.tensor([0]), torch.tensor([1, 2, 3])), torch.device("cpu"))
    model = PixelCodeModel(2)
    subject = Subject("unlearned", model, data, 0, 0.0)
    Accuracy().evaluate(subject, None)
    calls = model.calls
    Accuracy().evaluate(subject, None)
    logits, labels = subject.outputs("retain")
    assert model.calls == calls == 3  # one batch per part, never recomputed
    assert labels.tolist() == [1, 1, 0]
    assert logits.shape == (3, 2)


# --------------------------------------------------------------------------- attack features


def softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]]
LABELS = [0, 0, 2]  # right, wrong, right


@pytest.mark.parametrize("kind", FEATURES)
def test_attack_features_by_hand(kind):
    probs = [softmax(r) for r in LOGITS]
    if kind == "confidence":
        expected = [[p[y]] for p, y in zip(probs, LABELS)]
    elif kind == "correctness":
        expected = [[float(max(range(3), key=p.__getitem__) == y)] for p, y in zip(probs, LABELS)]
        assert expected == [[1.0], [0.0], [1.0]]
    elif kind == "entropy":
        expected = [[-sum(q * math.log(q) for q in p)] for p in probs]
    elif kind == "m_entropy":
        # Song & Mittal: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
        expected = [
            [-(1 - p[y]) * math.log(p[y]) - sum(p[i] * math.log(1 - p[i]) for i in range(3) if i != y)]
            for p, y in zip(probs, LABELS)
        ]
    else:
        expected = probs
    got = attack_features(torch.tensor(LOGITS), torch.tensor(LABELS), kind)
    assert got.shape == (3, 3 if kind == "prob" else 1)
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=1e-9, atol=1e-12)


def test_attack_features_reject_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown attack feature"):
        attack_features(torch.tensor(LOGITS), torch.tensor(LABELS), "loss")


# --------------------------------------------------------------------------- MIA-efficacy


def two_class_outputs(confidences: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose true-class softmax probability is exactly `confidences` (label 0 everywhere)."""
    c = torch.tensor(confidences, dtype=torch.float64)
    logits = torch.stack([torch.log(c), torch.log1p(-c)], dim=1).float()
    return logits, torch.zeros(len(c), dtype=torch.long)


def test_mia_forget_like_test_samples_is_all_non_members_and_like_members_is_none():
    rng = np.random.default_rng(0)
    members = two_class_outputs(rng.uniform(0.95, 0.999, 30))
    test = two_class_outputs(rng.uniform(0.05, 0.4, 30))
    like_test = two_class_outputs(rng.uniform(0.1, 0.35, 20))
    like_members = two_class_outputs(rng.uniform(0.96, 0.995, 20))
    assert mia_efficacy(members, test, like_test) == pytest.approx(100.0)
    assert mia_efficacy(members, test, like_members) == pytest.approx(0.0)
    # a forget set that is one quarter test-like, three quarters member-like -> 25 %
    mixed = tuple(torch.cat([a[:5], b[:15]]) for a, b in zip(like_test, like_members))
    assert mia_efficacy(members, test, mixed) == pytest.approx(25.0)


def test_mia_members_are_the_first_test_size_retain_samples():
    rng = np.random.default_rng(1)
    test = two_class_outputs(rng.uniform(0.05, 0.4, 10))
    # the first |D_t| = 10 retain samples are confident; the 40 after them look like test samples
    retain = two_class_outputs(np.concatenate([rng.uniform(0.95, 0.999, 10), rng.uniform(0.05, 0.4, 40)]))
    forget = two_class_outputs(rng.uniform(0.1, 0.35, 10))
    # with the first 10 as members, low confidence is clearly "non-member"
    assert mia_efficacy(retain, test, forget) == pytest.approx(100.0)


def test_mia_with_fewer_retain_than_test_samples_fits_equal_classes():
    # 10 confident members; 40 test samples, every other one as confident as the members (an overfitted model)
    retain = two_class_outputs(np.full(10, 0.999))
    test = two_class_outputs(np.tile([0.999, 0.3], 20))
    forget = two_class_outputs(np.full(5, 0.999))
    # fitted on 10 members vs 40 non-members, the confident region holds twice as many non-members: all "non-member";
    # on 10 vs the first 10 test samples it holds twice as many members
    assert mia_efficacy(retain, test, forget) == pytest.approx(0.0)


@pytest.mark.parametrize("kind", FEATURES)
def test_mia_equals_a_direct_svc_computation(kind):
    gen = torch.Generator().manual_seed(3)
    retain = (torch.randn(60, 4, generator=gen) * 2, torch.randint(0, 4, (60,), generator=gen))
    test = (torch.randn(25, 4, generator=gen), torch.randint(0, 4, (25,), generator=gen))
    forget = (torch.randn(40, 4, generator=gen) * 1.5, torch.randint(0, 4, (40,), generator=gen))

    def feature(logits, labels):
        probs = torch.softmax(logits.double(), 1)
        if kind == "confidence":
            return probs[torch.arange(len(labels)), labels][:, None].numpy()
        return attack_features(logits, labels, kind).numpy()

    n = len(test[1])
    x = np.concatenate([feature(retain[0][:n], retain[1][:n]), feature(*test)])
    y = np.array([1] * n + [0] * n)
    svc = SVC(C=3, gamma="auto").fit(x, y)
    expected = 100.0 * float((svc.predict(feature(*forget)) == 0).mean())
    assert mia_efficacy(retain, test, forget, kind) == pytest.approx(expected)
    if kind == "confidence":
        assert 0 < expected < 100  # a non-trivial case, so the comparison means something


def test_membership_inference_evaluator_reads_subject_outputs_and_feature_param():
    gen = torch.Generator().manual_seed(4)
    outputs = {
        "retain": (torch.randn(30, 3, generator=gen) * 3, torch.randint(0, 3, (30,), generator=gen)),
        "test": (torch.randn(20, 3, generator=gen), torch.randint(0, 3, (20,), generator=gen)),
        "forget": (torch.randn(15, 3, generator=gen) * 2, torch.randint(0, 3, (15,), generator=gen)),
    }
    subject = subject_with_outputs(outputs)
    for kind in ("confidence", "entropy"):
        got = MembershipInference(MIAParams(feature=kind)).evaluate(subject, None)
        assert got == pytest.approx({"MIA": mia_efficacy(outputs["retain"], outputs["test"], outputs["forget"], kind)})
    assert MembershipInference().params.feature == "confidence"


# --------------------------------------------------------------------------- Avg Gap and Cost


def test_avg_gap_reproduces_the_papers_coun_row():
    retrain = subject_with_outputs({}, name="retrain", metrics={"RA": 100.00, "UA": 4.81, "TA": 94.67, "MIA": 11.02})
    coun = subject_with_outputs({}, metrics={"RA": 99.99, "UA": 4.12, "TA": 94.57, "MIA": 10.81})
    gap = AverageGap().evaluate(coun, retrain)["avg_gap"]
    assert gap == pytest.approx((0.01 + 0.69 + 0.10 + 0.21) / 4)
    assert gap == pytest.approx(0.2525)
    assert AverageGap().needs() == ("RA", "UA", "TA", "MIA")


def test_avg_gap_is_zero_for_retrain_and_follows_over():
    retrain = subject_with_outputs({}, name="retrain", metrics={"RA": 100.0, "UA": 4.81, "TA": 94.67, "MIA": 11.02})
    assert AverageGap().evaluate(retrain, None) == {"avg_gap": 0.0}
    subject = subject_with_outputs({}, metrics={"RA": 90.0, "UA": 10.0, "TA": 80.0, "MIA": 0.0})
    gap = AverageGap(AvgGapParams(over=("RA", "TA"))).evaluate(
        subject, subject_with_outputs({}, name="retrain", metrics={"RA": 100.0, "UA": 0.0, "TA": 84.0, "MIA": 50.0})
    )
    assert gap == {"avg_gap": pytest.approx((10 + 4) / 2)}


def test_cost_returns_the_subjects_flops_and_seconds():
    subject = subject_with_outputs({}, flops=123_456_789_000, seconds=12.5)
    assert Cost().evaluate(subject, None) == {"flops": 123_456_789_000, "seconds": 12.5}
    unknown = subject_with_outputs({}, flops=None, seconds=None)  # an --original file that records no cost
    assert Cost().evaluate(unknown, None) == {"flops": None, "seconds": None}


# --------------------------------------------------------------------------- the premise diagnostic


def test_nearest_centroid_uses_retain_class_means():
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    classes, centroids = class_centroids(features, torch.tensor([3, 3, 7, 7]))
    assert classes.tolist() == [3, 7]
    assert centroids.tolist() == [[1.0, 0.0], [11.0, 10.0]]
    # (6, 5) is nearer (1, 0) by a hair: the distance, not the nearest single sample, decides
    queries = torch.tensor([[5.9, 4.9], [6.1, 5.1], [-4.0, 0.0]])
    assert nearest_centroid_class(queries, classes, centroids).tolist() == [3, 7, 3]


def premise_subjects():
    """Retain features: class 0 near the origin, class 1 near (10, 0), class 2 near (0, 10). Four forget samples."""
    retain = (torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0], [0.0, 10.0], [0.0, 11.0]]),
              torch.tensor([0, 0, 1, 1, 2, 2]))
    forget_features = torch.tensor([[9.0, 1.0], [1.0, 1.0], [0.0, 9.0], [8.0, 0.0]])  # nearest: 1, 0, 2, 1
    forget_labels = torch.tensor([0, 0, 2, 1])
    retrain_predicts = one_hot_logits([1, 0, 1, 1], 3)
    unlearned_predicts = one_hot_logits([0, 0, 2, 1], 3)
    # two test samples, nearest 1 and 0, which every model predicts as 1 and 2: the control agrees on one of two
    test = (torch.tensor([[10.0, 1.0], [0.0, 1.0]]), one_hot_logits([1, 2], 3), torch.tensor([1, 2]))

    def subject(name, predicts):
        logits_retain = one_hot_logits(retain[1].tolist(), 3)
        return subject_with_outputs(
            {"retain": (retain[0], logits_retain, retain[1]), "forget": (forget_features, predicts, forget_labels),
             "test": test},
            name=name,
        )

    return subject("retrain", retrain_predicts), subject("unlearned", unlearned_predicts)


def test_premise_compares_each_models_nearest_centroid_with_retrains_prediction():
    retrain, unlearned = premise_subjects()
    # Retrain predicts 1, 0, 1, 1; nearest centroids are 1, 0, 2, 1: three of four agree
    assert Premise().evaluate(retrain, None) == {"premise": pytest.approx(75.0), "premise_control": pytest.approx(50.0)}
    # the unlearned model's own predictions (0, 0, 2, 1) do not matter: Retrain's do
    assert Premise().evaluate(unlearned, retrain) == {"premise": pytest.approx(75.0),
                                                      "premise_control": pytest.approx(50.0)}
    moved = subject_with_outputs({
        "retain": unlearned._outputs["retain"],
        "forget": (torch.tensor([[9.0, 1.0], [1.0, 1.0], [9.0, 0.0], [8.0, 0.0]]), *unlearned.outputs("forget")),
        "test": unlearned._outputs["test"],
    })
    assert Premise().evaluate(moved, retrain) == {"premise": pytest.approx(100.0), "premise_control": pytest.approx(50.0)}


def test_premise_ignores_classes_without_retain_samples():
    """Class-wise forgetting: the forgotten class has no retain centroid, so it is never the nearest."""
    retain = (torch.tensor([[0.0, 0.0], [10.0, 0.0]]), torch.tensor([0, 1]))
    subject = subject_with_outputs({
        "retain": (retain[0], one_hot_logits([0, 1], 3), retain[1]),
        "forget": (torch.tensor([[9.0, 0.0], [1.0, 0.0]]), one_hot_logits([1, 0], 3), torch.tensor([2, 2])),
        "test": (torch.tensor([[1.0, 0.0]]), one_hot_logits([0], 3), torch.tensor([0])),
    })
    assert Premise().evaluate(subject, None) == {"premise": pytest.approx(100.0), "premise_control": pytest.approx(100.0)}


@pytest.mark.parametrize("how", ["pca", "tsne"])
def test_projections_are_two_dimensional_and_separate_clusters(how):
    gen = torch.Generator().manual_seed(0)
    features = torch.cat([torch.randn(20, 16, generator=gen), torch.randn(20, 16, generator=gen) + 8])
    xy = project(features, how)
    assert xy.shape == (40, 2)
    a, b = xy[:20].mean(0), xy[20:].mean(0)
    spread = max(xy[:20].std(0).max(), xy[20:].std(0).max())
    assert np.linalg.norm(a - b) > 2 * spread


def test_a_model_with_non_finite_outputs_is_refused_before_any_metric():
    images = ImageSet(coded_images([0, 1, 1, 0]), torch.tensor([0, 1, 1, 0]), coded_images([1, 0]), torch.tensor([1, 1]), ["a", "b"])
    data = RunData(images, Transform((0.0,), (1.0,)), Split(torch.tensor([0]), torch.tensor([1, 2, 3])), torch.device("cpu"))
    model = PixelCodeModel(2)
    model.head = nn.Sequential(nn.Identity())
    model.head.register_forward_hook(lambda module, inputs, output: output * float("nan"))
    subject = Subject("unlearned", model, data, 0, 0.0)
    with pytest.raises(UnlearnkitError, match="the unlearned model's outputs on retain samples are NaN or infinite"):
        Accuracy().evaluate(subject, None)


# --------------------------------------------------------------------------- RMIA


def rmia_subjects(forget_boost: float) -> tuple[Subject, Subject]:
    """A model and its Retrain on 200 forget and 400 test samples drawn alike; the model's true-class logit on the
    forget samples is raised by `forget_boost` over Retrain's."""
    gen = torch.Generator().manual_seed(0)
    logits = {part: torch.randn(n, 3, generator=gen) * 2 for part, n in (("forget", 200), ("test", 400))}
    labels = {part: torch.zeros(len(out), dtype=torch.long) for part, out in logits.items()}
    ours = {part: out + 0.3 * torch.randn(out.shape, generator=gen) for part, out in logits.items()}
    ours["forget"][:, 0] += forget_boost
    retrain = subject_with_outputs({part: (out, labels[part]) for part, out in logits.items()}, name="retrain")
    return subject_with_outputs({part: (out, labels[part]) for part, out in ours.items()}), retrain


def test_rmia_is_near_50_for_a_model_like_retrain_high_when_it_remembers_and_none_for_retrain():
    model, retrain = rmia_subjects(0.0)
    assert RMIA().evaluate(model, retrain)["RMIA"] == pytest.approx(50, abs=7)
    remembering, retrain = rmia_subjects(3.0)
    assert RMIA().evaluate(remembering, retrain)["RMIA"] > 80
    assert RMIA().evaluate(retrain, None) == {"RMIA": None}


def test_rmia_is_measured_on_a_real_run_with_a_retrain(registry, private_cache):
    from unlearnkit.protocol import ProtocolRun
    from unlearnkit.resolve import resolve
    from unlearnkit.sequence import run_protocol

    spec = {"data": {"name": "digits", "train_subset": 240, "test_subset": 80}, "train": {"epochs": 1}, "device": "cpu",
            "method": {"name": "ft", "params": {"epochs": 1}}, "evaluate": ["accuracy", "mia", "rmia"]}
    metrics = run_protocol(ProtocolRun(resolve(spec, registry))).metrics
    assert metrics["retrain"]["RMIA"] is None
    for name in ("original", "unlearned"):
        assert 0 <= metrics[name]["RMIA"] <= 100


def test_the_premise_control_is_the_same_statistic_on_test_samples():
    """A premise that holds on forget samples means something only beside what unseen test samples give."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])

    def near(classes):
        return centres[classes] + 0.5 * torch.randn(len(classes), 2, generator=gen)

    retain_labels, forget_labels, test_labels = torch.arange(3).repeat(20), torch.arange(3).repeat(3), torch.arange(3).repeat(4)
    # Retrain predicts every forget sample's nearest class, but only half the test samples'
    test_predicts = torch.cat([test_labels[:6], (test_labels[6:] + 1) % 3])
    retrain = subject_with_outputs({
        "retain": (near(retain_labels), one_hot_logits(retain_labels.tolist(), 3), retain_labels),
        "forget": (near(forget_labels), one_hot_logits(forget_labels.tolist(), 3), forget_labels),
        "test": (near(test_labels), one_hot_logits(test_predicts.tolist(), 3), test_labels),
    }, name="retrain")
    assert Premise.metrics == ("premise", "premise_control")
    assert Premise().evaluate(retrain, None) == {"premise": pytest.approx(100.0), "premise_control": pytest.approx(50.0)}
