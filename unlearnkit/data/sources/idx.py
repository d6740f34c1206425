"""Fashion-MNIST and MNIST, from their four IDX files, gzipped or not."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from unlearnkit.data.images import ImageSet
from unlearnkit.data.sources.download import (
    DOWNLOAD_ERRORS,
    as_path,
    download_failed,
    download_hint,
    download_root,
    find_or_download,
    looked,
    search_dirs,
)
from unlearnkit.errors import DataNotFoundError, UnlearnkitError

# Where the Debian package `dataset-fashion-mnist` installs the four gzipped IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MNIST_CLASSES = [str(i) for i in range(10)]

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut-off gzip is an EOFError
        raise UnlearnkitError(f"cannot read {path}: {e}", "Delete the file and fetch it again.") from e


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes as an array; `magic` is IDX_IMAGES_MAGIC or IDX_LABELS_MAGIC."""
    data = read_bytes(path)
    bad = f"{path} is not a valid IDX file"
    hint = "The file is corrupt or of another kind; delete it and fetch it again."
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UnlearnkitError(f"{bad}: only {len(data)} bytes", hint)
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise UnlearnkitError(f"{bad}: magic number 0x{found:08x}, expected 0x{magic:08x}", hint)
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(data) - header != size:
        raise UnlearnkitError(f"{bad}: header says {dims} ({size} bytes) but {len(data) - header} bytes follow", hint)
    return np.frombuffer(data, dtype=np.uint8, count=size, offset=header).reshape(dims)


def _find_idx_files(folder: Path) -> list[Path] | None:
    """The four IDX files in folder (each plain or .gz, plain preferred), or None if any is missing."""
    files = []
    for name in _IDX_NAMES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                files.append(candidate)
                break
        else:
            return None
    return files


def _read_idx_split(images_path: Path, labels_path: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise UnlearnkitError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels",
            "The two files come from different data sets or one is cut short; fetch them again.",
        )
    if labels.size and int(labels.max()) >= len(classes):
        raise UnlearnkitError(
            f"{labels_path} has label {int(labels.max())}, but the data set has {len(classes)} classes",
            "The file is corrupt or from another data set; fetch it again.",
        )
    # frombuffer arrays are read-only; copy so torch owns writable memory.
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _read_idx_set(files: list[Path], classes: list[str]) -> ImageSet:
    train_x, train_y = _read_idx_split(files[0], files[1], classes)
    test_x, test_y = _read_idx_split(files[2], files[3], classes)
    return ImageSet(train_x, train_y, test_x, test_y, list(classes))


@dataclass(frozen=True)
class _IdxSet:
    name: str
    folder: str  # torchvision's: root/folder/raw holds the files
    classes: list[str]
    system: Callable[[], tuple[Path, ...]]  # where a system package installs them, read when looking
    extra_hint: str


_FASHION_MNIST = _IdxSet(
    "fashion-mnist", "FashionMNIST", FASHION_MNIST_CLASSES, lambda: (FASHION_MNIST_DEBIAN_DIR,),
    f"`apt-get install -y dataset-fashion-mnist` (installs to {FASHION_MNIST_DEBIAN_DIR}); ",
)
_MNIST = _IdxSet("mnist", "MNIST", MNIST_CLASSES, lambda: (), "")


def _idx_files(dataset: _IdxSet, root: Path | None) -> list[Path]:
    """The four IDX files where they are found, or DataNotFoundError saying where it looked and how to get them."""
    dirs = search_dirs(root, f"{dataset.folder}/raw", dataset.system())
    for d in dirs:
        if (files := _find_idx_files(d)) is not None:
            return files
    raise DataNotFoundError(
        f"{dataset.name} not found; looked for its four IDX files ({', '.join(_IDX_NAMES)}, each optionally .gz) "
        f"in {looked(dirs)}",
        f"Get it one of these ways: {dataset.extra_hint}`--data-root DIR` with the four IDX files in DIR or "
        f"DIR/{dataset.folder}/raw; or {download_hint()}.",
    )


def _idx_dataset(dataset: _IdxSet, root: Path | None, download: bool) -> ImageSet:
    """Shared loader of Fashion-MNIST and MNIST."""
    files = find_or_download(lambda: _idx_files(dataset, root), lambda: _download_idx(dataset, root), download)
    return _read_idx_set(files, dataset.classes)


def _download_idx(dataset: _IdxSet, root: Path | None) -> list[Path]:
    import torchvision.datasets  # slow to import, so only when downloading

    target = download_root(root)
    try:
        # torchvision downloads (and md5-checks) the IDX files; they are still read by read_idx.
        getattr(torchvision.datasets, dataset.folder)(root=str(target), download=True)
    except DOWNLOAD_ERRORS as e:
        raise download_failed(dataset.name, e) from e
    if (files := _find_idx_files(target / dataset.folder / "raw")) is None:
        raise DataNotFoundError(f"downloaded {dataset.name}, but its IDX files are not in {target / dataset.folder / 'raw'}")
    return files


def fashion_mnist(root: Path | None = None, download: bool = False) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test 1x28x28 images, 10 classes) from its IDX files."""
    return _idx_dataset(_FASHION_MNIST, as_path(root), download)


def mnist(root: Path | None = None, download: bool = False) -> ImageSet:
    """MNIST (60,000 train / 10,000 test 1x28x28 digits) from its IDX files."""
    return _idx_dataset(_MNIST, as_path(root), download)


def fashion_mnist_files(root: Path | None) -> list[Path]:
    """Where `fashion_mnist` finds its four files, without reading them."""
    return _idx_files(_FASHION_MNIST, as_path(root))


def mnist_files(root: Path | None) -> list[Path]:
    """Where `mnist` finds its four files, without reading them."""
    return _idx_files(_MNIST, as_path(root))
