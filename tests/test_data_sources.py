"""The data set readers, on tiny files written in each data set's real on-disk format."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit import DataOutline, DataShape
from unlearnkit.data import catalog, sources
from unlearnkit.data.sources import download, idx
from unlearnkit.errors import DataNotFoundError, UnlearnkitError

IDX_NAMES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No test may see the machine's real data: no Debian copy, an empty download cache."""
    monkeypatch.setattr(idx, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv(download.DATA_DIR_ENV, str(tmp_path / "cache"))


# --------------------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: 0x00 0x00 0x08 ndim, big-endian dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_mnist(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "train_x": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train_y": np.array([0, 9, 3, 3, 7], dtype=np.uint8),
        "test_x": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_y": np.array([1, 2, 9], dtype=np.uint8),
    }


def write_idx(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def assert_idx_round_trip(images, arrays: dict[str, np.ndarray]) -> None:
    assert images.train_x.dtype == torch.uint8 and images.train_x.shape == (5, 1, 28, 28)
    assert images.test_x.shape == (3, 1, 28, 28)
    assert np.array_equal(images.train_x[:, 0].numpy(), arrays["train_x"])
    assert np.array_equal(images.test_x[:, 0].numpy(), arrays["test_x"])
    assert images.train_y.tolist() == arrays["train_y"].tolist()
    assert images.test_y.tolist() == arrays["test_y"].tolist()
    assert images.train_y.dtype == torch.int64


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashion_mnist_reads_idx(tmp_path, gz, layout):
    arrays = tiny_mnist(np.random.default_rng(0))
    root = tmp_path / "data"
    write_idx(root if layout == "flat" else root / "FashionMNIST" / "raw", arrays, gz)
    images = sources.fashion_mnist(root)
    assert_idx_round_trip(images, arrays)
    assert images.classes[0] == "T-shirt/top" and images.classes[9] == "Ankle boot"


def test_fashion_mnist_uses_debian_location(tmp_path, monkeypatch):
    arrays = tiny_mnist(np.random.default_rng(1))
    write_idx(tmp_path / "debian", arrays, gz=True)
    monkeypatch.setattr(idx, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian")
    assert_idx_round_trip(sources.fashion_mnist(), arrays)


def test_mnist_reads_torchvision_layout_and_cache(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(2))
    write_idx(tmp_path / "data" / "MNIST" / "raw", arrays, gz=False)
    images = sources.mnist(tmp_path / "data")
    assert_idx_round_trip(images, arrays)
    assert images.classes == [str(i) for i in range(10)]
    # Files already in the download cache are found without a root.
    write_idx(tmp_path / "cache" / "MNIST" / "raw", arrays, gz=True)
    assert_idx_round_trip(sources.mnist(), arrays)


def test_mnist_download_goes_through_torchvision_into_the_cache(tmp_path, monkeypatch):
    import torchvision.datasets

    arrays = tiny_mnist(np.random.default_rng(10))
    calls = []

    def fake_mnist(root: str, download: bool):  # writes what torchvision would: root/MNIST/raw
        calls.append((root, download))
        write_idx(Path(root) / "MNIST" / "raw", arrays, gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    assert_idx_round_trip(sources.mnist(download=True), arrays)
    assert calls == [(str(tmp_path / "cache"), True)]

    def offline(root: str, download: bool):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataNotFoundError, match="downloading mnist failed"):
        sources.mnist(tmp_path / "elsewhere", download=True)


def test_corrupt_idx_names_the_file(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(3))
    write_idx(tmp_path, arrays, gz=False)
    bad = tmp_path / IDX_NAMES["train_x"]
    bad.write_bytes(b"\x00\x00\x08\x01" + bad.read_bytes()[4:])  # labels' magic on an images file
    with pytest.raises(UnlearnkitError, match="train-images-idx3-ubyte") as info:
        sources.fashion_mnist(tmp_path)
    assert "magic" in str(info.value)


def test_truncated_idx_and_broken_gzip_name_the_file(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(4))
    write_idx(tmp_path, arrays, gz=False)
    labels = tmp_path / IDX_NAMES["test_y"]
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(UnlearnkitError, match="t10k-labels-idx1-ubyte"):
        sources.mnist(tmp_path)

    write_idx(tmp_path / "gz", arrays, gz=True)
    images = tmp_path / "gz" / f"{IDX_NAMES['test_x']}.gz"
    images.write_bytes(images.read_bytes()[:20])
    with pytest.raises(UnlearnkitError, match="t10k-images-idx3-ubyte.gz"):
        sources.mnist(tmp_path / "gz")


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        sources.fashion_mnist()
    text = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in text
    assert "--data-root" in text and "--download" in text
    assert str(tmp_path / "no-debian") in text  # names where it looked

    with pytest.raises(DataNotFoundError, match="--data-root"):
        sources.fashion_mnist(tmp_path / "empty")


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_debian_fashion_mnist(monkeypatch):
    monkeypatch.setattr(idx, "FASHION_MNIST_DEBIAN_DIR", DEBIAN_FASHION_MNIST)
    images = sources.fashion_mnist()
    assert images.train_x.shape == (60000, 1, 28, 28)
    assert images.test_x.shape == (10000, 1, 28, 28)
    assert images.train_y.min() == 0 and images.train_y.max() == 9
    assert images.test_y.min() == 0 and images.test_y.max() == 9
    assert images.num_classes == 10


# --------------------------------------------------------------------------- CIFAR binary


def cifar_records(rng: np.random.Generator, labels: list[list[int]]) -> tuple[bytes, np.ndarray]:
    """Binary records (label bytes, then R, G, B planes of 32x32) and the images as (N, 3, 32, 32)."""
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    data = b"".join(bytes(label) + image.tobytes() for label, image in zip(labels, images))
    return data, images


def write_cifar10(folder: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five train batches of 2 records and a test batch of 3; returns all train and test images."""
    folder.mkdir(parents=True)
    train = []
    for i in range(1, 6):
        data, images = cifar_records(rng, [[i], [9 - i]])
        (folder / f"data_batch_{i}.bin").write_bytes(data)
        train.append(images)
    data, test = cifar_records(rng, [[0], [5], [9]])
    (folder / "test_batch.bin").write_bytes(data)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return np.concatenate(train), test


def test_cifar10_binary(tmp_path):
    rng = np.random.default_rng(5)
    train, test = write_cifar10(tmp_path / "cifar-10-batches-bin", rng)
    images = sources.cifar10(tmp_path)
    assert images.train_x.shape == (10, 3, 32, 32) and images.test_x.shape == (3, 3, 32, 32)
    assert images.train_y.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert images.test_y.tolist() == [0, 5, 9]
    assert images.classes[0] == "airplane" and len(images.classes) == 10
    # The R plane comes first in a record, row-major: pixel (row 0, col 1) is byte 1 + 1.
    data = (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes()
    assert images.train_x[0, 0, 0, 1].item() == data[1 + 1]
    assert images.train_x[0, 1, 0, 0].item() == data[1 + 1024]  # G plane
    assert images.train_x[0, 2, 31, 31].item() == data[3072]  # last B pixel
    assert torch.equal(images.train_x, torch.from_numpy(train))
    assert torch.equal(images.test_x, torch.from_numpy(test))
    # The folder itself works as the root too.
    assert torch.equal(sources.cifar10(tmp_path / "cifar-10-batches-bin").test_x, images.test_x)


def test_cifar100_binary_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(6)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    train, train_images = cifar_records(rng, [[3, 42], [19, 99], [0, 0]])
    test, test_images = cifar_records(rng, [[7, 11]])
    (folder / "train.bin").write_bytes(train)
    (folder / "test.bin").write_bytes(test)
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)) + "\n")
    (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)) + "\n")
    images = sources.cifar100(tmp_path)
    assert images.train_y.tolist() == [42, 99, 0] and images.test_y.tolist() == [11]
    assert images.classes[42] == "fine42" and images.num_classes == 100
    assert images.train_x[1, 0, 0, 1].item() == train[3074 + 2 + 1]  # record 1, R of pixel (0, 1)
    assert torch.equal(images.train_x, torch.from_numpy(train_images))
    assert torch.equal(images.test_x, torch.from_numpy(test_images))


def test_truncated_cifar_batch_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10(folder, np.random.default_rng(7))
    batch = folder / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(UnlearnkitError, match="data_batch_3.bin"):
        sources.cifar10(tmp_path)


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        sources.cifar100(tmp_path)
    assert "--data-root" in str(info.value) and "--download" in str(info.value)
    assert "cifar-100-binary" in str(info.value)


def test_cifar10_download(tmp_path, monkeypatch):
    built = tmp_path / "build" / "cifar-10-batches-bin"
    train, test = write_cifar10(built, np.random.default_rng(8))
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(built, arcname="cifar-10-batches-bin")
    monkeypatch.setitem(download.DOWNLOADS, "cifar10", (download.Remote(archive.as_uri(), None),))

    images = sources.cifar10(root=tmp_path / "dl", download=True)
    assert (tmp_path / "dl" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert torch.equal(images.train_x, torch.from_numpy(train))
    assert torch.equal(images.test_x, torch.from_numpy(test))
    assert images.test_y.tolist() == [0, 5, 9]


def test_failed_download_is_a_data_not_found_error(tmp_path, monkeypatch):
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    monkeypatch.setitem(download.DOWNLOADS, "cifar10", (download.Remote(missing, None),))
    with pytest.raises(DataNotFoundError, match="downloading cifar10 failed"):
        sources.cifar10(root=tmp_path / "dl", download=True)


def test_download_file_keeps_a_file_already_there_with_the_right_md5(tmp_path):
    source = tmp_path / "source" / "train_32x32.mat"
    source.parent.mkdir()
    source.write_bytes(b"svhn bytes")
    remote = download.Remote(source.as_uri(), hashlib.md5(b"svhn bytes").hexdigest())
    saved = download.download_file(remote, tmp_path / "dl")
    assert saved == tmp_path / "dl" / "train_32x32.mat" and saved.read_bytes() == b"svhn bytes"
    source.unlink()  # a second call needs no source: the file is kept
    assert download.download_file(remote, tmp_path / "dl") == saved
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["train_32x32.mat"]  # no .part left behind


def test_download_checks_md5_and_refuses_unsafe_archives(tmp_path, monkeypatch):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    monkeypatch.setitem(download.DOWNLOADS, "cifar10", (download.Remote(evil.as_uri(), "0" * 32),))
    with pytest.raises(DataNotFoundError, match="md5"):
        sources.cifar10(root=tmp_path / "dl", download=True)
    assert not (tmp_path / "dl" / "evil.tar.gz").exists()

    monkeypatch.setitem(download.DOWNLOADS, "cifar10", (download.Remote(evil.as_uri(), None),))
    with pytest.raises(UnlearnkitError, match="evil.tar.gz"):
        sources.cifar10(root=tmp_path / "dl", download=True)
    assert not (tmp_path / "escaped.txt").exists()


# --------------------------------------------------------------------------- SVHN


def write_svhn(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    from scipy.io import savemat

    # SVHN stores X as (H, W, C, N) and y as (N, 1).
    savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": labels.reshape(-1, 1)})


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(9)
    train = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    write_svhn(tmp_path / "train_32x32.mat", train, np.array([10, 1, 9, 5], dtype=np.uint8))
    write_svhn(tmp_path / "test_32x32.mat", test, np.array([3, 10], dtype=np.uint8))
    images = sources.svhn(tmp_path)
    assert images.train_y.tolist() == [0, 1, 9, 5] and images.test_y.tolist() == [3, 0]
    assert images.train_x.dtype == torch.uint8 and images.train_x.shape == (4, 3, 32, 32)
    assert torch.equal(images.train_x, torch.from_numpy(train))
    assert torch.equal(images.test_x, torch.from_numpy(test))
    assert images.classes == [str(i) for i in range(10)]

    savemat(tmp_path / "test_32x32.mat", {"images": test})  # not SVHN's variables
    with pytest.raises(UnlearnkitError, match="test_32x32.mat"):
        sources.svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a MATLAB file at all" * 10)
    with pytest.raises(UnlearnkitError, match="test_32x32.mat"):
        sources.svhn(tmp_path)


def test_missing_svhn(tmp_path):
    with pytest.raises(DataNotFoundError, match="train_32x32.mat"):
        sources.svhn(tmp_path)


# --------------------------------------------------------------------------- ImageFolder


def write_png(path: Path, size: tuple[int, int], color, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for i in range(count):
            write_png(tmp_path / split / "cat" / f"{i}.png", (40, 30), (200, 10, 10))
            write_png(tmp_path / split / "dog" / f"{i}.png", (16, 16), (10, 10, 200))
    images = sources.image_folder(tmp_path, 24)
    assert images.classes == ["cat", "dog"]
    assert images.train_x.shape == (6, 3, 24, 24) and images.test_x.shape == (4, 3, 24, 24)
    assert images.train_x.dtype == torch.uint8
    assert images.train_y.tolist() == [0, 0, 0, 1, 1, 1] and images.test_y.tolist() == [0, 0, 1, 1]
    # Uniform colours survive the resize: cats red, dogs blue.
    assert images.train_x[0, :, 5, 5].tolist() == [200, 10, 10]
    assert images.test_x[3, :, 12, 12].tolist() == [10, 10, 200]


def test_image_folder_grey_stays_one_channel_unless_mixed(tmp_path):
    for split in ("train", "test"):
        write_png(tmp_path / split / "a" / "0.png", (8, 8), 50, mode="L")
        write_png(tmp_path / split / "b" / "0.png", (8, 8), 150, mode="L")
    images = sources.image_folder(tmp_path, 8)
    assert images.train_x.shape == (2, 1, 8, 8) and images.train_x[1].unique().tolist() == [150]
    assert sources.folder_outline(tmp_path, 8) == DataOutline(DataShape(1, 2, 8), train_size=2)

    write_png(tmp_path / "test" / "b" / "1.png", (8, 8), (1, 2, 3))
    images = sources.image_folder(tmp_path, 8)
    assert images.in_channels == 3 and images.train_x[0, :, 0, 0].tolist() == [50, 50, 50]
    # the outline says what loading found, from the images' headers alone
    assert sources.folder_outline(tmp_path, 8) == DataOutline(DataShape(3, 2, 8), train_size=2)


def test_image_folder_layout_errors(tmp_path):
    write_png(tmp_path / "train" / "cat" / "0.png", (8, 8), (1, 2, 3))
    with pytest.raises(DataNotFoundError, match="'test' folder") as info:
        sources.image_folder(tmp_path, 8)
    assert "train/CLASS" in str(info.value)

    write_png(tmp_path / "test" / "dog" / "0.png", (8, 8), (1, 2, 3))
    with pytest.raises(UnlearnkitError, match="different class folders"):
        sources.image_folder(tmp_path, 8)

    (tmp_path / "test" / "cat").mkdir()
    (tmp_path / "train" / "dog").mkdir()
    with pytest.raises(DataNotFoundError, match="no images"):
        sources.image_folder(tmp_path, 8)


def test_image_folder_corrupt_image_names_the_file(tmp_path):
    for split in ("train", "test"):
        write_png(tmp_path / split / "cat" / "0.png", (8, 8), (1, 2, 3))
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UnlearnkitError, match="broken.png"):
        sources.image_folder(tmp_path, 8)
    with pytest.raises(UnlearnkitError, match="broken.png"):
        sources.folder_outline(tmp_path, 8)


# --------------------------------------------------------------------------- outlines


def _written(name: str, root: Path) -> None:
    """Small files of the data set `name` in its real format, under `root`."""
    rng = np.random.default_rng(0)
    if name in ("mnist", "fashion-mnist"):
        write_idx(root, tiny_mnist(rng), gz=False)
    elif name == "cifar10":
        write_cifar10(root / "cifar-10-batches-bin", rng)
    elif name == "cifar100":
        folder = root / "cifar-100-binary"
        folder.mkdir()
        (folder / "train.bin").write_bytes(cifar_records(rng, [[3, 42], [19, 99]])[0])
        (folder / "test.bin").write_bytes(cifar_records(rng, [[7, 11]])[0])
        (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)) + "\n")
        (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)) + "\n")
    elif name == "svhn":
        for split in ("train", "test"):
            write_svhn(root / f"{split}_32x32.mat", rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8),
                       np.array([1, 10], dtype=np.uint8))


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])
def test_each_catalog_outline_is_what_loading_finds(tmp_path, name):
    """validate checks specs against these outlines, so each must say what `run` then loads."""
    _written(name, tmp_path)
    images, _ = catalog.load(name, tmp_path, False, 32)
    outline = catalog.outline(name, tmp_path, 32)
    assert outline is not None
    assert outline.shape == DataShape(images.in_channels, images.num_classes, min(images.image_size))
    assert outline.train_size in (None, len(images.train_y))  # only a size that is not the files' own
    assert (outline.train_size is None) == (name != "digits")


def test_validate_passes_an_image_folder_with_its_own_checkpoint(tmp_path, capsys):
    """The outline must never refuse what runs: a mixed grey and colour folder is colour, and a checkpoint
    of the model built for it (3 channels, its 2 classes, the spec's image side) fits."""
    from safetensors.torch import save_file

    from tests.test_cli import unlearn
    from unlearnkit.models import build

    for split in ("train", "test"):
        write_png(tmp_path / "imgs" / split / "a" / "0.png", (8, 8), 50, mode="L")
        write_png(tmp_path / "imgs" / split / "b" / "0.png", (8, 8), (1, 2, 3))
    save_file(build("small-cnn", 3, 2, 16).state_dict(), tmp_path / "mine.safetensors")
    flags = ["--data", str(tmp_path / "imgs"), "--set", "data.image_size=16", "--forget", "class:1",
             "--original", str(tmp_path / "mine.safetensors"), "--out", str(tmp_path / "out")]
    code, out, err = unlearn(capsys, "validate", *flags)
    assert code == 0, err
    save_file(build("small-cnn", 1, 2, 16).state_dict(), tmp_path / "mine.safetensors")  # as if the folder were grey
    code, _, err = unlearn(capsys, "validate", *flags)
    assert code == 2 and "does not fit this model" in err
