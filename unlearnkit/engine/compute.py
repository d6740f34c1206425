"""How training runs on its device: numeric precision, memory format and compilation.

One object, chosen once per run from the spec's `compute` section, handed to every
Trainer, so Original, Retrain and every method train the same way.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ModuleT = TypeVar("ModuleT", bound=nn.Module)


@dataclass(frozen=True)
class Compute:
    """`precision`: fp32, or bf16/fp16 autocast (weights and optimiser state stay fp32; fp16 scales the loss
    so small gradients do not underflow). `channels_last`: convolution weights in NHWC, the layout tensor
    cores want. `compile`: the feature extractor and head compiled with torch.compile."""

    device: torch.device = torch.device("cpu")
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def choose(cls, device: torch.device, precision: str = "auto", channels_last: bool | None = None,
               compile: bool = False) -> Compute:
        """`auto`: bf16 on a CUDA device that supports it, else fp32; channels-last on CUDA unless told."""
        cuda = device.type == "cuda"
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        if channels_last is None:
            channels_last = cuda
        return cls(device, precision, channels_last, compile)  # type: ignore[arg-type]

    def autocast(self) -> AbstractContextManager:
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16; a pass-through otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    def prepare(self, model: ModuleT) -> ModuleT:
        """Put a model on the device in the chosen layout, compiled if asked (in place; returns it)."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            for part in (getattr(model, "features", None), getattr(model, "head", None)):
                if isinstance(part, nn.Module):
                    part.compile()  # in place: the module (and hooks on it) stay the ones the engine knows
        return model


FP32 = Compute()


def repeatable_kernels(device: torch.device) -> None:
    """Choose deterministic kernels where the device has a choice, so a seed repeats a run bit for bit.

    On CUDA: cuDNN's deterministic algorithms without autotuning, and torch's deterministic
    implementations where they exist (a warning names an operation without one). On CPU torch's
    kernels are deterministic for a fixed thread count.
    """
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS repeats its reductions only with this
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def kernel_settings(device: torch.device) -> dict[str, object]:
    """What decides whether a run repeats bit for bit, for the record."""
    settings: dict[str, object] = {"torch_threads": torch.get_num_threads(),
                                   "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}
    if device.type == "cuda":
        settings["cudnn"] = {"deterministic": torch.backends.cudnn.deterministic, "benchmark": torch.backends.cudnn.benchmark}
    return settings
