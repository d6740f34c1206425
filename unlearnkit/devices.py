"""Where a run computes: the device a spec names, and the environment a result records."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from unlearnkit._version import __version__
from unlearnkit.engine.compute import Compute, kernel_settings
from unlearnkit.engine.distributed import world
from unlearnkit.errors import UnlearnkitError


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnlearnkitError(f"device '{name}' was asked for but no CUDA device is available", "Use --device cpu or auto.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UnlearnkitError("device 'mps' was asked for but is not available", "Use --device cpu or auto.")
    return torch.device(name)


def environment(device: torch.device, compute: Compute | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "unlearnkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    if compute is not None:
        env["compute"] = {"precision": compute.precision, "channels_last": compute.channels_last, "compile": compute.compile}
    env["numpy"] = np.__version__
    env["determinism"] = kernel_settings(device)
    here = world()
    if here.size > 1:  # `device` is rank 0's; rank r ran on cuda:r (one machine) or the CPU
        env["distributed"] = {"world_size": here.size, "backend": dist.get_backend()}
    return env
