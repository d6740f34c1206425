"""Model weights: written as safetensors with string metadata; read from safetensors or a torch state dict.

Nothing here ever unpickles an arbitrary object: torch files are read only with weights_only=True.
Every file save_model writes carries a sha256 of its tensors in its metadata, checked whenever it is read,
so weights damaged on disk (bytes overwritten, shapes intact) are refused instead of used.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from unlearnkit.errors import CheckpointError, few
from unlearnkit.files import atomic_write_bytes

#: the metadata key of the tensors' checksum; read_state checks it and leaves it out of the metadata it returns
CHECKSUM = "unlearnkit.sha256"


def save_model(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict atomically (see unlearnkit.files): a reader never sees a half-written file."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tagged = {**{k: str(v) for k, v in (metadata or {}).items()}, CHECKSUM: checksum(state)}
    atomic_write_bytes(Path(path), save(state, metadata=tagged))


def checksum(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_model(path: Path, model: nn.Module) -> dict[str, str]:
    """Load weights into `model`, which fixes the expected names and shapes; returns the file's metadata."""
    state, metadata = read_state(path)
    load_state(model, state, str(path), metadata)
    return metadata


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict and metadata of a safetensors file, or of a .pt/.pth/.bin file holding a state dict.

    The format goes by content first: a safetensors file is one whatever its name. Anything else is read
    only if its suffix says torch, and then only with torch.load(weights_only=True), which refuses every
    pickled object but tensors and plain containers without running its code. A file with a checksum
    (every file save_model wrote) is refused if its tensors no longer match it.
    """
    state, metadata, _ = read_checked(path)
    return state, metadata


def read_checked(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], bool]:
    """read_state, also saying whether the file carried a checksum (and so was verified against it)."""
    state, metadata, checked = _read(Path(path))
    _check_finite(state, path)
    return state, metadata, checked


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Weights holding NaN or infinity give a model whose every output is meaningless: refused before any use."""
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"{path} holds weights that are not finite (NaN or infinity): {few(broken)}",
                              "The model diverged before it was saved; give the weights of a model that trained well.")


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], bool]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist", "Pass the path of a .safetensors, .pt or .pth file.")
    if _looks_like_safetensors(path) or path.suffix.lower() not in TORCH_SUFFIXES:
        try:
            with safe_open(str(path), framework="pt") as f:
                state, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as exc:
            raise _invalid(path, exc) from None
        expected = metadata.pop(CHECKSUM, None)
        if expected is not None and checksum(state) != expected:
            raise CheckpointError(
                f"{path} is damaged: its weights no longer match the checksum written with them",
                "The file changed on disk after it was saved; save it again, or restore it from a copy.",
            )
        return state, metadata, expected is not None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only met a pickled object (a module, a class instance ...)
        found = re.search(r"GLOBAL (\S+)", str(exc))
        raise CheckpointError(
            f"{path} is not a plain state dict: it holds pickled "
            + (f"objects ({found[1]})" if found else "objects")
            + ", which unlearnkit never unpickles",
            _RESAVE,
        ) from None
    except Exception as exc:  # truncated or damaged: zip, EOF and OS errors alike
        raise CheckpointError(
            f"{path} is not a valid PyTorch checkpoint ({_reason(exc)})",
            "The file may be truncated or damaged: save it again with torch.save(model.state_dict(), PATH), "
            "or as safetensors.",
        ) from None
    return _state_dict(path, obj), {}, False


TORCH_SUFFIXES = {".pt", ".pth", ".bin"}
_RESAVE = (
    "Save the weights alone with torch.save(model.state_dict(), PATH), "
    "or as safetensors with safetensors.torch.save_file(model.state_dict(), PATH)."
)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with the length of its JSON header (8 bytes, little-endian), then '{'."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:  # unreadable: the reader that follows fails and says so
        return False
    # safetensors caps the header at 100 MB; torch's zip ("PK..") and pickle (b"\x80..") starts read as far more
    return len(head) == 9 and int.from_bytes(head[:8], "little") <= 100_000_000 and head[8:] == b"{"


def _state_dict(path: Path, obj: object) -> dict[str, torch.Tensor]:
    """The state dict in what torch.load returned: the dict itself, or one under "state_dict" / "model"."""
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        # a training checkpoint ({"state_dict": ..., "epoch": ...}): take its one wrapped dict, if there is one
        wrapped = [obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)]
        if len(wrapped) == 1:
            obj = wrapped[0]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a state dict: it holds a {type(obj).__name__}", _RESAVE)
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor) or not isinstance(k, str))
    if bad:
        raise CheckpointError(f"{path} is not a plain state dict: it holds non-tensor values (under {few(bad)})", _RESAVE)
    # DataParallel / DistributedDataParallel save the wrapped model's names under "module."
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, metadata: dict[str, str]) -> None:
    """Load `state` into `model` if its names and shapes fit exactly; otherwise raise, naming what differs.

    `source` names where the state came from in the message; `metadata` is shown as a hint.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        details = [f"{label} {few(keys)}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        details += wrong[:3]
        raise CheckpointError(
            f"checkpoint {source} does not fit this model: " + "; ".join(details),
            "It must hold the weights of the spec's model for this data set (same architecture, "
            "input channels and number of classes)" + (f"; the file says: {metadata}" if metadata else "."),
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def _reason(exc: Exception) -> str:
    # the first sentence only (torch adds a paragraph of advice); EOFError comes without a message
    return str(exc).split(". ")[0].strip() or type(exc).__name__


def _invalid(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid safetensors file ({_reason(exc)})",
        "unlearnkit reads .safetensors files, and .pt/.pth/.bin files that hold a plain state dict "
        "(it never unpickles anything else); save one with safetensors.torch.save_file(model.state_dict(), PATH).",
    )
