"""SVHN, from the cropped-digit MATLAB v5 files (`scipy.io.loadmat`, no pickle)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.images import ImageSet
from unlearnkit.data.sources.download import (
    DOWNLOAD_ERRORS,
    DOWNLOADS,
    as_path,
    download_failed,
    download_file,
    download_hint,
    download_root,
    find_or_download,
    looked,
    search_dirs,
)
from unlearnkit.errors import DataNotFoundError, UnlearnkitError

_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_SVHN_FOLDER = "svhn"


def _read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) and digit labels 0..9 of one SVHN cropped-digits file."""
    from scipy.io import loadmat

    hint = "The file is corrupt or not SVHN's cropped-digits format; delete it and fetch it again."
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except (OSError, ValueError, TypeError, NotImplementedError, zlib.error) as e:  # MatReadError is a ValueError
        raise UnlearnkitError(f"cannot read {path} as a MATLAB file: {e}", hint) from e
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None or x.ndim != 4 or x.shape[2] != 3 or y.size != x.shape[3]:
        raise UnlearnkitError(f"{path} lacks SVHN's X (32, 32, 3, N) and y (N,) arrays", hint)
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise UnlearnkitError(f"{path} has labels outside 1..10", hint)
    # SVHN stores X as (H, W, C, N) and writes digit 0 as label 10.
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False)
    return torch.from_numpy(images), torch.from_numpy(labels % 10)


def svhn_folder(root: Path | None) -> Path:
    """The folder holding the cropped-digits files, or DataNotFoundError saying where it looked and how to get them."""
    dirs = search_dirs(as_path(root), _SVHN_FOLDER)
    if (found := next((d for d in dirs if all((d / f).is_file() for f in _SVHN_FILES)), None)) is not None:
        return found
    raise DataNotFoundError(
        f"svhn not found; looked for {' and '.join(_SVHN_FILES)} in {looked(dirs)}",
        f"Get it one of these ways: `--data-root DIR` with DIR or DIR/{_SVHN_FOLDER} holding the cropped-digits "
        f"files ({', '.join(r.url for r in DOWNLOADS['svhn'])}); or {download_hint()}.",
    )


def svhn(root: Path | None = None, download: bool = False) -> ImageSet:
    """SVHN cropped digits (73,257 train / 26,032 test 3x32x32 images; 'extra' not used)."""
    root = as_path(root)
    found = find_or_download(lambda: svhn_folder(root), lambda: _download_svhn(root), download)
    train_x, train_y = _read_svhn_mat(found / _SVHN_FILES[0])
    test_x, test_y = _read_svhn_mat(found / _SVHN_FILES[1])
    return ImageSet(train_x, train_y, test_x, test_y, [str(i) for i in range(10)])


def _download_svhn(root: Path | None) -> Path:
    found = download_root(root) / _SVHN_FOLDER
    try:
        for remote in DOWNLOADS["svhn"]:
            download_file(remote, found)
    except DOWNLOAD_ERRORS as e:
        raise download_failed("svhn", e) from e
    return found
