"""The model zoo: every model builds for each input size and exposes a consistent features / head split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import ZOO, Classifier, build

SHAPES = [(1, 28, 10), (3, 32, 100), (1, 8, 10)]


@pytest.mark.parametrize("channels,size,classes", SHAPES)
@pytest.mark.parametrize("name", ZOO)
def test_every_model_builds_and_splits_into_features_and_head(name, channels, size, classes):
    torch.manual_seed(0)
    model = build(name, channels, classes, size)
    assert isinstance(model, Classifier)
    x = torch.randn(2, channels, size, size)
    model.eval()
    with torch.no_grad():
        logits = model(x)
        features = model.features(x)
        assert logits.shape == (2, classes)
        assert features.shape == (2, model.feature_dim)
        assert isinstance(model.head, nn.Linear)
        assert model.head.in_features == model.feature_dim and model.head.out_features == classes
        assert torch.allclose(model.head(features), logits, atol=1e-6)
    # training mode works on a small batch too (BatchNorm needs more than one value per channel)
    model.train()
    out = model(x)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ZOO)
def test_models_are_rebuilt_fresh_each_time(name):
    torch.manual_seed(0)
    a = build(name, 1, 10)
    b = build(name, 1, 10)
    assert a is not b
    assert a.state_dict().keys() == b.state_dict().keys()
    assert any(not torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_unknown_model_names_suggest_close_ones():
    with pytest.raises(UnlearnkitError, match="did you mean 'resnet18'") as info:
        build("resnet-18", 3, 10)
    assert "unlearn plugins" in info.value.hint


def test_cifar_resnet18_architecture():
    model = build("resnet18", 3, 10)
    first = model.features[0]
    assert isinstance(first, nn.Conv2d) and first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.feature_dim == 512
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the standard CIFAR ResNet-18 count
    assert build("resnet18", 1, 10).features[0].in_channels == 1


def test_vgg16_bn_architecture():
    model = build("vgg16-bn", 3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 13 and len(norms) == 13
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert model.feature_dim == 512
    expected = sum(9 * c.in_channels * c.out_channels + 2 * c.out_channels for c in convs) + 512 * 10 + 10
    assert sum(p.numel() for p in model.parameters()) == expected


def test_small_cnn_width_sets_the_feature_dimension():
    from unlearnkit.models import small_cnn

    model = small_cnn(1, 4, width=4)
    assert model.feature_dim == 16
    assert model.features(torch.randn(3, 1, 8, 8)).shape == (3, 16)


# --------------------------------------------------------------------------- a user's network: finding its head


def test_a_plain_sequential_ending_in_linear_needs_no_head():
    from unlearnkit.models import as_classifier

    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 3)))
    model = as_classifier(network)
    x = torch.randn(5, 3, 2, 2)
    assert model.head_path == "3.1" and model.features(x).shape == (5, 6)
    assert torch.allclose(model(x), network(x))


class Named(nn.Module):
    """A network whose final layer has a name no family uses; `squash` puts a function after it."""

    def __init__(self, squash: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU())
        self.aux = nn.Linear(8, 2)
        self.out = nn.Linear(8, 3)
        self.squash = squash

    def forward(self, x):
        features = self.body(x)
        self.aux(features)  # called, but not what the network returns
        logits = self.out(features)
        return torch.tanh(logits) if self.squash else logits.squeeze(1)


def test_real_samples_show_which_linear_gives_the_output():
    from unlearnkit.models import as_classifier

    x = torch.randn(4, 3, 2, 2)
    with pytest.raises(UnlearnkitError, match="cannot tell which layer of this Named is its classifier head") as info:
        as_classifier(Named())
    assert "head=" in (info.value.hint or "")
    network = Named()
    model = as_classifier(network, sample=x)
    assert model.head_path == "out" and torch.allclose(model(x), network(x))
    with pytest.raises(UnlearnkitError, match="not an nn.Linear's output"):
        as_classifier(Named(squash=True), sample=x)
    with pytest.raises(UnlearnkitError, match="the model's output is not what its layer 'aux' gives: the output comes from 'out'"):
        as_classifier(Named(), head="aux", sample=x)
    assert as_classifier(Named(), head="out", sample=x).head_path == "out"


def test_a_head_path_that_is_not_there_names_what_is():
    from unlearnkit.models import as_classifier

    network = nn.Sequential()
    network.add_module("features", nn.Flatten())
    network.add_module("classifier", nn.Sequential(nn.Linear(12, 3)))
    with pytest.raises(UnlearnkitError) as info:
        as_classifier(network, head="classifier.6")
    assert info.value.message == "model has no submodule 'classifier.6' (the children of 'classifier' are: 0)"
    with pytest.raises(UnlearnkitError) as info:
        as_classifier(network, head="fc")
    assert info.value.message == "model has no submodule 'fc' (its top-level children are: features, classifier)"


def test_probing_leaves_modes_and_batch_statistics_as_they_were():
    from unlearnkit.models import as_classifier

    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).train()
    network[1].eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    as_classifier(network, sample=torch.randn(4, 3, 2, 2))
    assert [m.training for m in network.modules()] == [True, True, False, True, True]
    assert all(torch.equal(v, network.state_dict()[k]) for k, v in before.items())
