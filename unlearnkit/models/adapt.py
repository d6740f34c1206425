"""Any classifier nn.Module seen through the `features` / `head` split the toolkit works with.

Augmenters, evaluators and several methods need the penultimate representation
f(x) and the final linear layer separately. For a user's network we find its
final linear layer (by family, or by a path the user gives), and build the
feature extractor as a shallow copy of the network whose head is replaced by
`nn.Identity`. The copy shares every submodule, parameter and buffer with the
network, so there is one set of weights: training the `Classifier` trains the
user's network, and `network()` hands it back with its head in place.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.base import Classifier

# Where common families keep their final linear layer (checked in order; the first that is an nn.Linear wins).
HEAD_PATHS = (
    "fc",  # torchvision ResNet, ResNeXt, RegNet, GoogLeNet, Inception
    "heads.head",  # torchvision ViT
    "head",  # torchvision Swin, MaxViT; many timm models
    "classifier",  # torchvision DenseNet
    "head.fc",  # timm ConvNeXt, NFNet
)
SEQUENTIAL_HEADS = ("classifier", "heads", "head")  # VGG, MobileNet, EfficientNet, ConvNeXt: the Sequential's last Linear


class AdaptedClassifier(Classifier):
    """A user's network as a `Classifier`: `features` = the network without its head, `head` = its final nn.Linear.

    State dicts are keyed `features.*` / `head.*` like every zoo model; `network()` returns the user's
    module itself (with the current head put back), whose own state dict has the user's keys.
    """

    _network: nn.Module  # set with object.__setattr__ in __init__

    def __init__(self, network: nn.Module, head_path: str):
        nn.Module.__init__(self)
        head = network.get_submodule(head_path)
        if not isinstance(head, nn.Linear):
            raise UnlearnkitError(
                f"the module at '{head_path}' is a {type(head).__name__}, not the final nn.Linear",
                "Pass head= the path of the network's last linear layer (e.g. head='fc').",
            )
        self.features = _without(network, head_path)
        self.head = head
        self.feature_dim = head.in_features
        self.head_path = head_path
        object.__setattr__(self, "_network", network)  # not a registered child: its weights are features' and head's

    def network(self) -> nn.Module:
        """The user's network with this classifier's weights (a method may have replaced the head)."""
        _set(self._network, self.head_path, self.head)
        return self._network

    def train(self, mode: bool = True) -> AdaptedClassifier:
        super().train(mode)
        self._network.training = mode  # the network object is not a registered child
        return self


def find_head(network: nn.Module) -> str:
    """The path of a network's final linear layer, for the families the toolkit knows, or an error saying what to pass."""
    cfg = getattr(network, "pretrained_cfg", None) or getattr(network, "default_cfg", None)
    if isinstance(cfg, dict) and isinstance(cfg.get("classifier"), str):  # timm names its classifier
        if isinstance(_get(network, cfg["classifier"]), nn.Linear):
            return cfg["classifier"]
    for path in HEAD_PATHS:
        if isinstance(_get(network, path), nn.Linear):
            return path
    for path in SEQUENTIAL_HEADS:
        container = _get(network, path)
        if isinstance(container, nn.Sequential) and len(container) and isinstance(container[-1], nn.Linear):
            return f"{path}.{len(container) - 1}"
    raise UnlearnkitError(
        f"cannot tell which layer of this {type(network).__name__} is its classifier head",
        "Pass head= the path of its final nn.Linear (e.g. head='fc' or head='classifier.6'), "
        "or build it as an unlearnkit.models.Classifier(features, feature_dim, num_classes).",
    )


def as_classifier(network: nn.Module, head: str | None = None) -> Classifier:
    """The network as a `Classifier` (zoo models and Classifiers pass through unchanged)."""
    if isinstance(network, Classifier):
        return network
    return AdaptedClassifier(network, head or find_head(network))


def user_network(model: Classifier) -> nn.Module:
    """What to hand back to the user: their own network for an adapted model, else the Classifier."""
    return model.network() if isinstance(model, AdaptedClassifier) else model


def fresh_copy(model: Classifier) -> Classifier:
    """A freshly initialised model of the same architecture: every submodule with `reset_parameters` re-drawn."""
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        reset = getattr(module, "reset_parameters", None)
        if reset is not None:
            reset()
    return fresh


def _get(root: nn.Module, path: str) -> Any:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def _without(network: nn.Module, head_path: str) -> nn.Module:
    """A shallow copy of `network` whose module at `head_path` is nn.Identity; everything else is shared."""
    first, _, rest = head_path.partition(".")
    trunk = copy.copy(network)
    trunk._modules = dict(network._modules)  # its own child table; parameters and buffers stay shared
    trunk._modules[first] = _without(network.get_submodule(first), rest) if rest else nn.Identity()
    return trunk
