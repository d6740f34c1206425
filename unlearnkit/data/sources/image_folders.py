"""Any directory laid out for torchvision's ImageFolder: DIR/train/CLASS/* and DIR/test/CLASS/*, resized square."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from unlearnkit.api import DataOutline, DataShape
from unlearnkit.data.images import ImageSet
from unlearnkit.errors import DataNotFoundError, UnlearnkitError

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
