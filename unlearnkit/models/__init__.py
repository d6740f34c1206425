"""The model zoo. Every model is a `Classifier` with a `features` / `head` split."""

from __future__ import annotations

import difflib
from typing import Callable

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.base import Classifier
from unlearnkit.models.resnet import resnet18
from unlearnkit.models.small_cnn import small_cnn
from unlearnkit.models.vgg import vgg16_bn

# name -> (factory(in_channels, num_classes, image_size, width), default width: the first layer's channels)
MODELS: dict[str, tuple[Callable[[int, int, int, int], Classifier], int]] = {
    "small-cnn": (lambda channels, classes, size, width: small_cnn(channels, classes, width, size), 32),
    "resnet18": (lambda channels, classes, size, width: resnet18(channels, classes, width), 64),
    "vgg16-bn": (lambda channels, classes, size, width: vgg16_bn(channels, classes, width), 64),
}


def build(name: str, in_channels: int, num_classes: int, image_size: int = 32, width: int | None = None) -> Classifier:
    """A zoo model; `width` (the first layer's channel count, later layers scale with it) defaults to the model's own."""
    try:
        factory = MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(MODELS), n=2)
        raise UnlearnkitError(
            f"unknown model '{name}'" + (f"; did you mean {' or '.join(close)}?" if close else ""),
            f"Models: {', '.join(MODELS)}.",
        ) from None
    factory, default_width = factory
    return factory(in_channels, num_classes, image_size, width or default_width)


__all__ = ["Classifier", "MODELS", "build", "resnet18", "small_cnn", "vgg16_bn"]
