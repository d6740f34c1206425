"""The feature-extractor / head split every model exposes (`Classifier`, from the plugin contract), and a shared block."""

from __future__ import annotations

from torch import nn

from unlearnkit.contract import Classifier


def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


__all__ = ["Classifier", "conv_bn"]
