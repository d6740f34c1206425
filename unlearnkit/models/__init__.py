"""Models: the `Classifier` split every run works with, and building an architecture by its registered name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unlearnkit.api import Architecture, DataShape
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.adapt import AdaptedClassifier, as_classifier, fresh_copy, user_network
from unlearnkit.models.base import Classifier
from unlearnkit.models.resnet import resnet18
from unlearnkit.models.small_cnn import small_cnn
from unlearnkit.models.vgg import vgg16_bn

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit.plugins import Registry

ZOO = ("small-cnn", "resnet18", "vgg16-bn")  # the first-party architectures of the zoo itself


def build(
    name: str, in_channels: int, num_classes: int, image_size: int = 32, width: int | None = None,
    registry: Registry | None = None,
) -> Classifier:
    """A freshly initialised model of a registered architecture (NAME, or FAMILY:VARIANT), as a `Classifier`.

    `width` (the first layer's channels; later layers scale with it) defaults to the architecture's own.
    """
    from unlearnkit.plugins import installed, plugin_code

    architecture, variant = (registry or installed()).variant(Architecture, name)
    with plugin_code(architecture):
        network = architecture().build(DataShape(in_channels, num_classes, image_size), width, variant)
    if network is None:
        raise UnlearnkitError(f"model '{name}' built nothing", f"Its plugin must return an nn.Module ({architecture.__module__}).")
    return as_classifier(network)


__all__ = [
    "AdaptedClassifier", "Classifier", "ZOO", "as_classifier", "build", "fresh_copy", "resnet18", "small_cnn",
    "user_network", "vgg16_bn",
]
