"""Readers (and downloaders) for the named data sets, each returning an `ImageSet`.

Every reader parses the data set's original on-disk format itself:

* Fashion-MNIST and MNIST: the four IDX files, gzipped or not.
* CIFAR-10 and CIFAR-100: the official *binary* versions. The python versions are
  pickles, and a file a user hands us is never unpickled.
* SVHN: the cropped-digit MATLAB v5 files (`scipy.io.loadmat`, no pickle).
* Any directory laid out for torchvision's ImageFolder (`image_folder`).

Where to look: an explicit `root` is authoritative (a mistyped path must not be
masked by some other copy on the machine); without one, a system location (the
Debian package for Fashion-MNIST) and then the download cache are searched.
With `download=True`, missing data is fetched into `root`, or into the cache
(`$UNLEARNKIT_DATA_DIR`, default ~/.cache/unlearnkit/data).

A user's mistake (missing files, a corrupt file, a bad layout) is raised as a
`DataNotFoundError` or `UnlearnkitError` naming the file and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch

from unlearnkit.api import DataOutline, DataShape
from unlearnkit.data.images import ImageSet
from unlearnkit.errors import DataNotFoundError, UnlearnkitError

DATA_DIR_ENV = "UNLEARNKIT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/unlearnkit/data")
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


@dataclass(frozen=True)
class Remote:
    """A file to download; `md5` None skips the checksum (tests point URLs at local file:// archives)."""

    url: str
    md5: str | None


# Official sources of the archives fetched with download=True; a table so tests can redirect them.
DOWNLOADS: dict[str, tuple[Remote, ...]] = {
    "cifar10": (Remote("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),),
    "cifar100": (
        Remote("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
    ),
    "svhn": (
        Remote("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        Remote("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    ),
}

# What a failed download raises: network errors (URLError is an OSError), bad checksums, unwritable disks.
_DOWNLOAD_ERRORS = (RuntimeError, OSError, ValueError)
_Found = TypeVar("_Found")  # what locating a set gives: its files, or the folder holding them


def default_data_root() -> Path:
    """The download cache: `$UNLEARNKIT_DATA_DIR`, or ~/.cache/unlearnkit/data."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def _as_path(root: Path | str | None) -> Path | None:
    return None if root is None else Path(root).expanduser()


def _search_dirs(root: Path | None, subdir: str, system: tuple[Path, ...] = ()) -> list[Path]:
    """Directories to look in, in order: root and root/subdir if given, else system places and the cache."""
    if root is not None:
        return [root, root / subdir]
    cache = default_data_root()
    return [*system, cache / subdir]


def _download_root(root: Path | None) -> Path:
    return root if root is not None else default_data_root()


def _looked(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def _download_hint() -> str:
    return f"`--download` to fetch it into --data-root, or into ${DATA_DIR_ENV} (default {DEFAULT_DATA_DIR})"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(remote: Remote, folder: Path) -> Path:
    """The file at remote.url, saved under folder (kept if already there with the right md5).

    A plain urllib copy rather than torchvision's download_url: that one needs an HTTP
    response length (so file:// URLs fail) and silently retries https over http.
    """
    target = folder / Path(urllib.parse.unquote(urllib.parse.urlparse(remote.url).path)).name
    if target.is_file() and (remote.md5 is None or _md5(target) == remote.md5):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")  # never leave a half file under the real name
    try:
        with urllib.request.urlopen(remote.url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        if remote.md5 is not None and (found := _md5(partial)) != remote.md5:
            raise RuntimeError(f"{remote.url} has md5 {found}, expected {remote.md5}")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def extract_tar(archive: Path, dest: Path) -> None:
    """Unpack a tar archive into dest, refusing members that would land outside it or are links/devices."""
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
                tar.extractall(dest, filter="data")
                return
            root = dest.resolve()
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()) or not (root / member.name).resolve().is_relative_to(root):
                    raise tarfile.TarError(f"unsafe member {member.name!r}")
            tar.extractall(dest)
    except (tarfile.TarError, EOFError, zlib.error) as e:  # FilterError and ReadError are TarErrors
        raise UnlearnkitError(f"cannot unpack {archive}: {e}", "Delete the archive and download it again.") from e


def _download_failed(name: str, error: Exception) -> DataNotFoundError:
    return DataNotFoundError(
        f"downloading {name} failed: {error}",
        "Check the network connection and retry, or fetch the files yourself and pass `--data-root DIR`.",
    )


def _find_or_fetch(find: Callable[[], _Found], fetch_files: Callable[[], _Found], download: bool) -> _Found:
    """Where `find` locates a set's files; if they are not there, where `fetch_files` downloads them when
    `download` asks (else find's DataNotFoundError, which says where it looked)."""
    try:
        return find()
    except DataNotFoundError:
        if not download:
            raise
        return fetch_files()


# --------------------------------------------------------------------------- IDX (MNIST family)

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
_IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _read_bytes(path: Path) -> bytes:
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
    data = _read_bytes(path)
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
    dirs = _search_dirs(root, f"{dataset.folder}/raw", dataset.system())
    for d in dirs:
        if (files := _find_idx_files(d)) is not None:
            return files
    raise DataNotFoundError(
        f"{dataset.name} not found; looked for its four IDX files ({', '.join(_IDX_NAMES)}, each optionally .gz) "
        f"in {_looked(dirs)}",
        f"Get it one of these ways: {dataset.extra_hint}`--data-root DIR` with the four IDX files in DIR or "
        f"DIR/{dataset.folder}/raw; or {_download_hint()}.",
    )


def _idx_dataset(dataset: _IdxSet, root: Path | None, download: bool) -> ImageSet:
    """Shared loader of Fashion-MNIST and MNIST."""
    files = _find_or_fetch(lambda: _idx_files(dataset, root), lambda: _download_idx(dataset, root), download)
    return _read_idx_set(files, dataset.classes)


def _download_idx(dataset: _IdxSet, root: Path | None) -> list[Path]:
    import torchvision.datasets  # slow to import, so only when downloading

    target = _download_root(root)
    try:
        # torchvision fetches (and md5-checks) the IDX files; they are still read by read_idx.
        getattr(torchvision.datasets, dataset.folder)(root=str(target), download=True)
    except _DOWNLOAD_ERRORS as e:
        raise _download_failed(dataset.name, e) from e
    if (files := _find_idx_files(target / dataset.folder / "raw")) is None:
        raise DataNotFoundError(f"downloaded {dataset.name}, but its IDX files are not in {target / dataset.folder / 'raw'}")
    return files


def fashion_mnist(root: Path | None = None, download: bool = False) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test 1x28x28 images, 10 classes) from its IDX files."""
    return _idx_dataset(_FASHION_MNIST, _as_path(root), download)


def mnist(root: Path | None = None, download: bool = False) -> ImageSet:
    """MNIST (60,000 train / 10,000 test 1x28x28 digits) from its IDX files."""
    return _idx_dataset(_MNIST, _as_path(root), download)


# --------------------------------------------------------------------------- CIFAR binary

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
    data = _read_bytes(path)
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
    dirs = _search_dirs(root, layout.folder)
    if (found := _find_cifar_dir(layout, dirs)) is not None:
        return found
    raise DataNotFoundError(
        f"{layout.name} not found; looked for the binary version ({', '.join(_cifar_files(layout))}) "
        f"in {_looked(dirs)}",
        f"Get it one of these ways: `--data-root DIR` with DIR or DIR/{layout.folder} holding the unpacked "
        f"official binary archive ({DOWNLOADS[layout.name][0].url}); or {_download_hint()}. "
        "The python (pickle) version is not read.",
    )


def _cifar(layout: _CifarLayout, root: Path | None, download: bool) -> ImageSet:
    found = _find_or_fetch(lambda: _cifar_dir(layout, root), lambda: _download_cifar(layout, root), download)
    return _read_cifar(found, layout)


def _download_cifar(layout: _CifarLayout, root: Path | None) -> Path:
    target = _download_root(root)
    try:
        archives = [fetch(remote, target) for remote in DOWNLOADS[layout.name]]
    except _DOWNLOAD_ERRORS as e:
        raise _download_failed(layout.name, e) from e
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
    return _cifar(_CIFAR10, _as_path(root), download)


def cifar100(root: Path | None = None, download: bool = False) -> ImageSet:
    """CIFAR-100 (50,000 train / 10,000 test 3x32x32 images, 100 fine classes) from its binary version."""
    return _cifar(_CIFAR100, _as_path(root), download)


# --------------------------------------------------------------------------- SVHN

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


def _svhn_dir(root: Path | None) -> Path:
    """The folder holding the cropped-digits files, or DataNotFoundError saying where it looked and how to get them."""
    dirs = _search_dirs(root, _SVHN_FOLDER)
    if (found := next((d for d in dirs if all((d / f).is_file() for f in _SVHN_FILES)), None)) is not None:
        return found
    raise DataNotFoundError(
        f"svhn not found; looked for {' and '.join(_SVHN_FILES)} in {_looked(dirs)}",
        f"Get it one of these ways: `--data-root DIR` with DIR or DIR/{_SVHN_FOLDER} holding the cropped-digits "
        f"files ({', '.join(r.url for r in DOWNLOADS['svhn'])}); or {_download_hint()}.",
    )


def svhn(root: Path | None = None, download: bool = False) -> ImageSet:
    """SVHN cropped digits (73,257 train / 26,032 test 3x32x32 images; 'extra' not used)."""
    root = _as_path(root)
    found = _find_or_fetch(lambda: _svhn_dir(root), lambda: _download_svhn(root), download)
    train_x, train_y = _read_svhn_mat(found / _SVHN_FILES[0])
    test_x, test_y = _read_svhn_mat(found / _SVHN_FILES[1])
    return ImageSet(train_x, train_y, test_x, test_y, [str(i) for i in range(10)])


def _download_svhn(root: Path | None) -> Path:
    found = _download_root(root) / _SVHN_FOLDER
    try:
        for remote in DOWNLOADS["svhn"]:
            fetch(remote, found)
    except _DOWNLOAD_ERRORS as e:
        raise _download_failed("svhn", e) from e
    return found


#: where each set of files is found, without reading them: what `unlearn validate` checks
LOCATE: dict[str, Callable[[Path | None], object]] = {
    "fashion-mnist": lambda root: _idx_files(_FASHION_MNIST, _as_path(root)),
    "mnist": lambda root: _idx_files(_MNIST, _as_path(root)),
    "cifar10": lambda root: _cifar_dir(_CIFAR10, _as_path(root)),
    "cifar100": lambda root: _cifar_dir(_CIFAR100, _as_path(root)),
    "svhn": lambda root: _svhn_dir(_as_path(root)),
}


# --------------------------------------------------------------------------- ImageFolder

_LAYOUT_HINT = (
    "Lay the directory out for torchvision's ImageFolder: DIR/train/CLASS/*.png and DIR/test/CLASS/*.png "
    "(jpg, jpeg, bmp, ppm, pgm, tif, tiff and webp work too), with the same CLASS folders in both."
)
# PIL modes that hold one grey channel; any other mode is read as RGB.
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _list_images(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (file, label) pairs of one split, as torchvision's ImageFolder finds them."""
    from torchvision.datasets import ImageFolder

    try:
        listing = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as e:  # no class folders, or a class folder without images
        raise DataNotFoundError(f"no images found under {folder}: {e}", _LAYOUT_HINT) from e
    return listing.classes, listing.samples


@contextmanager
def _opened_image(path: str) -> Iterator[Any]:
    """An image opened with PIL (which reads its header only, until asked for pixels); any fault reading it
    is one message naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            yield opened
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError is an OSError
        raise UnlearnkitError(f"cannot read image {path}: {e}", "Remove or replace the file.") from e


def _load_image(path: str, size: int) -> np.ndarray:
    """One image resized to size x size: (H, W) if grey, else (H, W, 3) RGB."""
    from PIL import Image

    with _opened_image(path) as opened:
        im = opened.convert("L" if opened.mode in _GRAY_MODES else "RGB")
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR))


def _stack(arrays: list[np.ndarray], rgb: bool) -> torch.Tensor:
    """(N, C, H, W) uint8; grey images are repeated to 3 channels when others are in colour."""
    if rgb:
        arrays = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in arrays]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1)


def check_layout(path: Path) -> None:
    """The directory exists and has the train and test folders `image_folder` reads (without listing images)."""
    if not path.is_dir():
        raise DataNotFoundError(f"data directory {path} does not exist", _LAYOUT_HINT)
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise DataNotFoundError(f"{path} has no '{split}' folder", _LAYOUT_HINT)


def _folder_listing(path: Path, image_size: int) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """The class names and the (file, label) pairs of train and test, checked as `image_folder` needs them."""
    if not isinstance(image_size, int) or image_size < 1:
        raise UnlearnkitError(f"image size must be a positive integer, got {image_size!r}")
    check_layout(path)
    classes, train = _list_images(path / "train")
    test_classes, test = _list_images(path / "test")
    if test_classes != classes:
        missing, extra = sorted(set(classes) - set(test_classes)), sorted(set(test_classes) - set(classes))
        raise UnlearnkitError(
            f"{path}/train and {path}/test have different class folders"
            + (f"; missing from test: {', '.join(missing)}" if missing else "")
            + (f"; only in test: {', '.join(extra)}" if extra else ""),
            _LAYOUT_HINT,
        )
    return classes, train, test


def image_folder(path: Path, image_size: int) -> ImageSet:
    """A directory of images in ImageFolder layout (path/train/CLASS/*, path/test/CLASS/*), resized square."""
    path = Path(path).expanduser()
    classes, train, test = _folder_listing(path, image_size)
    train_imgs = [_load_image(f, image_size) for f, _ in train]
    test_imgs = [_load_image(f, image_size) for f, _ in test]
    # Keep one channel only when every image is grey, so a mostly-colour set stays colour.
    rgb = any(a.ndim == 3 for a in train_imgs + test_imgs)
    return ImageSet(
        _stack(train_imgs, rgb),
        torch.tensor([label for _, label in train], dtype=torch.int64),
        _stack(test_imgs, rgb),
        torch.tensor([label for _, label in test], dtype=torch.int64),
        list(classes),
    )


def folder_outline(path: Path, image_size: int) -> DataOutline:
    """What `image_folder` would load, from the listing and each image's header: classes, colour, training size.
    (A file whose header reads but whose pixels do not is found when the images load.)"""
    classes, train, test = _folder_listing(Path(path).expanduser(), image_size)
    rgb = False
    for file, _ in train + test:  # every header: a file that is no image is refused now, not after training
        with _opened_image(file) as opened:
            rgb = rgb or opened.mode not in _GRAY_MODES
    return DataOutline(DataShape(3 if rgb else 1, len(classes), image_size), len(train))
