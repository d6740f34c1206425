"""A cache of the expensive models (original and Retrain), keyed by everything that determines them.

Folder: $UNLEARNKIT_CACHE_DIR, else $XDG_CACHE_HOME/unlearnkit, else ~/.cache/unlearnkit.

Entries are written atomically with a checksum of their weights (unlearnkit.checkpoint). An entry that
cannot be read or fails its checksum is reported (a StorageWarning), set aside as NAME.damaged and
trained again: a damaged model is never used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from unlearnkit.checkpoint import load_state, read_checked, save_model
from unlearnkit.errors import CheckpointError, UnlearnkitError
from unlearnkit.files import StorageWarning, cache_dir, check_writable, file_stamp, set_aside

# bump when training code changes what a key's model would be (2: a trailing batch under a quarter of the batch
# size joins the one before)
FORMAT = 2


def cache_key(kind: str, **identity: Any) -> str:
    text = json.dumps({"kind": kind, "format": FORMAT, **identity}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


def entry(key: str) -> Path:
    return cache_dir() / f"{key}.safetensors"


def load(key: str, model: nn.Module) -> dict[str, str] | None:
    """Load a cached model into `model`; None when absent, or damaged (then reported, set aside and trained again)."""
    path = entry(key)
    seen = file_stamp(path)
    if seen is None:
        return None
    try:
        # an entry written before checksums existed has none: reading it still refuses weights that are not
        # finite, which catches the damage seen in practice (bytes overwritten with NaN)
        state, metadata, _ = read_checked(path)
        load_state(model, state, str(path), metadata)
    except CheckpointError as exc:
        if file_stamp(path) is not None:  # else another process found it damaged first, set it aside and said so
            set_aside(path, seen, exc.message)
        return None
    return metadata


def store(key: str, model: nn.Module, metadata: dict[str, Any]) -> Path | None:
    """Write the entry; on a full disk (or an unwritable folder) warn and go on: the model is trained again next time."""
    path = entry(key)
    try:
        save_model(path, model, {k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()})
    except UnlearnkitError as exc:
        warnings.warn(f"{key} is not cached: {exc.message}", StorageWarning, stacklevel=2)
        return None
    return path


def check_cache() -> None:
    """Refuse, before any training, a model cache the trained Original and Retrain could not be stored in."""
    folder = cache_dir()
    check_writable(folder, f"the model cache {folder}",
                   "Set UNLEARNKIT_CACHE_DIR to a folder you can write, or turn the cache off "
                   "(`cache: false` in the spec; unlearn run --no-cache).")
