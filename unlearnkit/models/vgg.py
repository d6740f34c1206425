"""VGG-16 with batch norm, CIFAR-style: 13 conv layers, global pooling, one linear head."""

from __future__ import annotations

from torch import nn

from unlearnkit.models.base import Classifier, conv_bn

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_bn(in_channels: int, num_classes: int, width: int = 64) -> Classifier:
    """`width` is the first block's channel count (64 in VGG-16); later blocks scale with it."""
    layers: list[nn.Module] = []
    cin = in_channels
    for item in VGG16:
        if isinstance(item, str):  # "M"
            # ceil_mode keeps 1x1 maps at 1x1, so inputs smaller than 32x32 (28x28, 8x8) still fit
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        else:
            channels = item * width // 64
            layers += conv_bn(cin, channels)
            cin = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), 8 * width, num_classes)
