"""Any classifier nn.Module seen through the `features` / `head` split the toolkit works with.

Augmenters, evaluators and several methods need the penultimate representation
f(x) and the final linear layer separately. For a user's network we find its
final linear layer (by family, as the last layer of a Sequential, by watching which
nn.Linear gives the output on real samples, or by a path the user gives), and build the
feature extractor as a shallow copy of the network whose head is replaced by
`nn.Identity`. The copy shares every submodule, parameter and buffer with the
network, so there is one set of weights: training the `Classifier` trains the
user's network, and `network()` hands it back with its head in place.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError, few
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
        head = _submodule(network, head_path)
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


def find_head(network: nn.Module, sample: torch.Tensor | None = None) -> str:
    """The path of a network's final linear layer, or an error saying what to pass.

    Given a batch of real samples, it is the nn.Linear whose output the network returns (seen by forward
    hooks); without, where the known families keep it, or the last layer of a Sequential.
    """
    path = _output_layer(network, sample) if sample is not None else _known_head(network)
    if path is None:
        seen = "its output on a batch of samples is not an nn.Linear's output" if sample is not None else "it is no known family"
        raise UnlearnkitError(
            f"cannot tell which layer of this {type(network).__name__} is its classifier head: {seen}",
            "Pass head= the path of its final nn.Linear (e.g. head='fc' or head='classifier.6'), "
            "or build it as an unlearnkit.models.Classifier(features, feature_dim, num_classes).",
        )
    return path


def as_classifier(network: nn.Module, head: str | None = None, sample: torch.Tensor | None = None) -> Classifier:
    """The network as a `Classifier` (zoo models and Classifiers pass through unchanged).

    `sample`, a batch of real inputs, lets the head be found (or a given `head` be checked) by what the
    network returns: the features / head split is only right if the head's output is the network's output.
    """
    if isinstance(network, Classifier):
        return network
    classifier = AdaptedClassifier(network, head or find_head(network, sample))
    if head is not None and sample is not None:
        found = _output_layer(network, sample)
        if found != head:
            returned = f"the output comes from '{found}'" if found else "its output is not an nn.Linear's output"
            raise UnlearnkitError(f"the model's output is not what its layer '{head}' gives: {returned}",
                                  "Pass head= the path of the nn.Linear whose output the model's forward returns.")
    return classifier


@contextmanager
def evaluating(network: nn.Module) -> Iterator[None]:
    """Forward passes in eval mode without gradients (BatchNorm statistics stay as they are); each
    module's own mode is restored afterwards."""
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def _known_head(network: nn.Module) -> str | None:
    """Where the known families keep their final linear layer, or a Sequential's last layer."""
    cfg = getattr(network, "pretrained_cfg", None) or getattr(network, "default_cfg", None)
    if isinstance(cfg, dict) and isinstance(cfg.get("classifier"), str):  # timm names its classifier
        if isinstance(_get(network, cfg["classifier"]), nn.Linear):
            return cfg["classifier"]
    for path in HEAD_PATHS:
        if isinstance(_get(network, path), nn.Linear):
            return path
    for path in (*SEQUENTIAL_HEADS, ""):  # "": the network itself, a plain Sequential
        found = _sequential_tail(_get(network, path), path)
        if found is not None:
            return found
    return None


def _sequential_tail(module: Any, path: str) -> str | None:
    """The path of the nn.Linear a Sequential ends with (through nested Sequentials), if it ends with one."""
    if not isinstance(module, nn.Sequential) or not len(module):
        return None
    last = f"{path}.{len(module) - 1}".lstrip(".")
    return last if isinstance(module[-1], nn.Linear) else _sequential_tail(module[-1], last)


def _output_layer(network: nn.Module, sample: torch.Tensor) -> str | None:
    """The path of the nn.Linear whose output the network returns on `sample` (the last called, if several)."""
    outputs: list[tuple[str, torch.Tensor]] = []
    hooks = [module.register_forward_hook(lambda _, __, output, path=path: outputs.append((path, output)))
             for path, module in network.named_modules() if isinstance(module, nn.Linear)]
    try:
        with evaluating(network):
            result = network(sample)
    finally:
        for hook in hooks:
            hook.remove()
    for path, output in reversed(outputs):
        # the same tensor, or the same values (a forward that ends in a no-op view such as .squeeze(1))
        if output is result or (isinstance(result, torch.Tensor) and output.shape == result.shape and torch.equal(output, result)):
            return path
    return None


def _submodule(network: nn.Module, path: str) -> nn.Module:
    """The module at `path`, or an error naming where the path leaves the network and what is there instead."""
    module, walked = network, ""
    for name in path.split("."):
        child = module._modules.get(name)
        if child is None:
            children = list(module._modules)
            where = f"the children of '{walked}'" if walked else "its top-level children"
            there = f"{where} are: {few(children)}" if children else f"{where}: none"
            raise UnlearnkitError(f"model has no submodule '{path}' ({there})",
                                  "Pass head= the path of its final nn.Linear, as model.named_modules() names it.")
        module, walked = child, f"{walked}.{name}".lstrip(".")
    return module


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
