"""The first-party architectures, registered through the `unlearnkit` entry point like any plugin's:
the zoo's own models, and the torchvision and timm families addressed as torchvision:NAME / timm:NAME."""

from __future__ import annotations

from typing import Callable

from torch import nn

from unlearnkit.api import Architecture, DataShape
from unlearnkit.errors import UnlearnkitError
from unlearnkit.hookspecs import hookimpl
from unlearnkit.models.resnet import resnet18
from unlearnkit.models.small_cnn import small_cnn
from unlearnkit.models.vgg import vgg16_bn


class SmallCNN(Architecture):
    """Three conv blocks, global pooling, a linear head: trains on 8x8 or 28x28 images in seconds on a CPU."""

    name = "small-cnn"
    default_width = 32

    def build(self, shape: DataShape, width: int | None = None, variant: str | None = None) -> nn.Module:
        return small_cnn(shape.in_channels, shape.num_classes, width or self.default_width, shape.image_size)


class ResNet18(Architecture):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool), as the unlearning literature uses it."""

    name = "resnet18"
    default_width = 64

    def build(self, shape: DataShape, width: int | None = None, variant: str | None = None) -> nn.Module:
        return resnet18(shape.in_channels, shape.num_classes, width or self.default_width)


class VGG16BN(Architecture):
    """CIFAR-style VGG-16 with batch norm: 13 conv layers, global pooling, one linear head."""

    name = "vgg16-bn"
    default_width = 64

    def build(self, shape: DataShape, width: int | None = None, variant: str | None = None) -> nn.Module:
        return vgg16_bn(shape.in_channels, shape.num_classes, width or self.default_width)


class Torchvision(Architecture):
    """Any torchvision classification model, torchvision:NAME (e.g. torchvision:resnet18), with num_classes set."""

    name = "torchvision"
    variants = True

    def build(self, shape: DataShape, width: int | None = None, variant: str | None = None) -> nn.Module:
        import torchvision

        known = torchvision.models.list_models(module=torchvision.models)
        if variant is None or variant not in known:
            raise UnlearnkitError(
                f"torchvision has no classification model '{variant}'" + _close(variant, known),
                "See torchvision.models.list_models(module=torchvision.models).",
            )
        _no_width(self.name, width)
        # Weights are not downloaded: the model is trained here, or its weights come from --original.
        network = torchvision.models.get_model(variant, weights=None, num_classes=shape.num_classes)
        return _fit_channels(network, shape.in_channels, variant)


class Timm(Architecture):
    """Any timm model, timm:NAME (needs the timm extra: pip install 'unlearnkit[timm]')."""

    name = "timm"
    variants = True

    def build(self, shape: DataShape, width: int | None = None, variant: str | None = None) -> nn.Module:
        try:
            import timm
        except ImportError:
            raise UnlearnkitError("timm models need the timm package", "pip install 'unlearnkit[timm]'") from None
        if not timm.is_model(variant):
            raise UnlearnkitError(f"timm has no model '{variant}'", "See timm.list_models().")
        _no_width(self.name, width)
        return timm.create_model(variant, pretrained=False, num_classes=shape.num_classes, in_chans=shape.in_channels)


def _no_width(family: str, width: int | None) -> None:
    if width is not None:
        raise UnlearnkitError(f"{family} models have no `model.width`", "Leave model.width unset.")


def _close(name: str | None, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name or "", names, n=2)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _fit_channels(network: nn.Module, in_channels: int, variant: str) -> nn.Module:
    """Make the first conv layer take `in_channels` (torchvision's models take RGB): grey images in, same shape out."""
    if in_channels == 3:
        return network
    for parent in network.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                # torch types a conv's kernel_size, stride, padding and dilation as tuple[int, ...] for every
                # dimension; a Conv2d's are 2-tuples
                setattr(parent, child_name, nn.Conv2d(
                    in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,  # type: ignore[arg-type]
                    child.dilation, child.groups, child.bias is not None, child.padding_mode,  # type: ignore[arg-type]
                ))
                return network
    raise UnlearnkitError(f"cannot adapt torchvision:{variant} to {in_channels}-channel images")


@hookimpl
def register_models(register: Callable[[type], None]) -> None:
    for architecture in (SmallCNN, ResNet18, VGG16BN, Torchvision, Timm):
        register(architecture)
