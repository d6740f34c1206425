"""Where a run computes: the device a spec names, and the environment a result records."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from unlearnkit._version import __version__
from unlearnkit.engine.compute import Compute, kernel_settings
from unlearnkit.engine.distributed import world
from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import installed


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
    env["plugins"] = {r.distribution or r.name: r.version for r in installed().plugins if r.status == "loaded"}
    source = source_revision()
    if source is not None:
        env["source"] = source
    env["determinism"] = kernel_settings(device)
    here = world()
    if here.size > 1:  # `device` is rank 0's; rank r ran on cuda:r (one machine) or the CPU
        env["distributed"] = {"world_size": here.size, "backend": dist.get_backend()}
    return env


@functools.lru_cache(maxsize=1)
def source_revision() -> dict[str, Any] | None:
    """The git commit of the checkout unlearnkit runs from, and whether its tracked files differ from it; None
    when it runs from an installed package (no checkout) or git cannot tell."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout

        return {"commit": git("rev-parse", "HEAD").strip(),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no").strip())}
    except (OSError, subprocess.SubprocessError):
        return None
