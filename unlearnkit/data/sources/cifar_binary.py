"""CIFAR-10 and CIFAR-100, from the official *binary* versions.

The python versions are pickles, and a file a user hands us is never unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    extract_tar,
    find_or_download,
    looked,
    search_dirs,
)
from unlearnkit.data.sources.idx import read_bytes
from unlearnkit.errors import DataNotFoundError, UnlearnkitError

_CIFAR_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class _CifarLayout:
    name: str
    folder: str  # the directory the official archive unpacks to
    train: tuple[str, ...]
    test: tuple[str, ...]
    names_file: str
    label_bytes: int  # bytes before the pixels in each record
    label_index: int  # which of those bytes is the label we keep


_CIFAR10 = _CifarLayout(
    "cifar10",
    "cifar-10-batches-bin",
    tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    ("test_batch.bin",),
    "batches.meta.txt",
    label_bytes=1,
    label_index=0,
)
# CIFAR-100 records hold the coarse then the fine label; the fine label is the 100-class task.
_CIFAR100 = _CifarLayout(
    "cifar100", "cifar-100-binary", ("train.bin",), ("test.bin",), "fine_label_names.txt", label_bytes=2, label_index=1
)


def _cifar_files(layout: _CifarLayout) -> tuple[str, ...]:
    return (*layout.train, *layout.test, layout.names_file)


def _find_cifar_dir(layout: _CifarLayout, dirs: list[Path]) -> Path | None:
    for d in dirs:
        if all((d / f).is_file() for f in _cifar_files(layout)):
            return d
    return None


def _read_class_names(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UnlearnkitError(f"cannot read class names from {path}: {e}", "Fetch the data set again.") from e
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_cifar_records(path: Path, layout: _CifarLayout, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels (N,) of one binary batch file."""
    data = read_bytes(path)
    record = layout.label_bytes + _CIFAR_PIXELS
    if len(data) == 0 or len(data) % record:
        raise UnlearnkitError(
            f"{path} is not a valid {layout.name} binary batch: {len(data)} bytes is not a whole number of "
            f"{record}-byte records",
            "The file is cut short or corrupt; delete it and fetch the data set again.",
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = records[:, layout.label_index].astype(np.int64)
    if int(labels.max()) >= num_classes:
        raise UnlearnkitError(
            f"{path} has label {int(labels.max())}, but {layout.names_file} names {num_classes} classes",
            "The file is corrupt or from another data set; fetch it again.",
        )
    # Each record's pixels are the R plane, then G, then B, each 32x32 row-major: exactly (3, 32, 32).
    images = records[:, layout.label_bytes :].reshape(-1, 3, 32, 32)
    return images, labels


def _read_cifar_split(
    folder: Path, files: tuple[str, ...], layout: _CifarLayout, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_cifar_records(folder / f, layout, num_classes) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _read_cifar(folder: Path, layout: _CifarLayout) -> ImageSet:
    classes = _read_class_names(folder / layout.names_file)
    if not classes:
        raise UnlearnkitError(f"{folder / layout.names_file} names no classes", "Fetch the data set again.")
    train_x, train_y = _read_cifar_split(folder, layout.train, layout, len(classes))
    test_x, test_y = _read_cifar_split(folder, layout.test, layout, len(classes))
    return ImageSet(train_x, train_y, test_x, test_y, classes)


def _cifar_dir(layout: _CifarLayout, root: Path | None) -> Path:
    """The folder holding the binary version, or DataNotFoundError saying where it looked and how to get it."""
    dirs = search_dirs(root, layout.folder)
    if (found := _find_cifar_dir(layout, dirs)) is not None:
        return found
    raise DataNotFoundError(
        f"{layout.name} not found; looked for the binary version ({', '.join(_cifar_files(layout))}) "
        f"in {looked(dirs)}",
        f"Get it one of these ways: `--data-root DIR` with DIR or DIR/{layout.folder} holding the unpacked "
        f"official binary archive ({DOWNLOADS[layout.name][0].url}); or {download_hint()}. "
        "The python (pickle) version is not read.",
    )


def _cifar(layout: _CifarLayout, root: Path | None, download: bool) -> ImageSet:
    found = find_or_download(lambda: _cifar_dir(layout, root), lambda: _download_cifar(layout, root), download)
    return _read_cifar(found, layout)


def _download_cifar(layout: _CifarLayout, root: Path | None) -> Path:
    target = download_root(root)
    try:
        archives = [download_file(remote, target) for remote in DOWNLOADS[layout.name]]
    except DOWNLOAD_ERRORS as e:
        raise download_failed(layout.name, e) from e
    for archive in archives:
        extract_tar(archive, target)
    if (found := _find_cifar_dir(layout, [target / layout.folder])) is None:
        raise DataNotFoundError(
            f"downloaded {layout.name}, but {target / layout.folder} lacks some of {', '.join(_cifar_files(layout))}",
            "The archive is not the official binary version; delete it and retry.",
        )
    return found


def cifar10(root: Path | None = None, download: bool = False) -> ImageSet:
    """CIFAR-10 (50,000 train / 10,000 test 3x32x32 images, 10 classes) from its binary version."""
    return _cifar(_CIFAR10, as_path(root), download)


def cifar100(root: Path | None = None, download: bool = False) -> ImageSet:
    """CIFAR-100 (50,000 train / 10,000 test 3x32x32 images, 100 fine classes) from its binary version."""
    return _cifar(_CIFAR100, as_path(root), download)


def cifar10_folder(root: Path | None) -> Path:
    """Where `cifar10` finds its files, without reading them."""
    return _cifar_dir(_CIFAR10, as_path(root))


def cifar100_folder(root: Path | None) -> Path:
    """Where `cifar100` finds its files, without reading them."""
    return _cifar_dir(_CIFAR100, as_path(root))
