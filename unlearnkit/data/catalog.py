"""The first-party data sets, registered as plugins: where their images come from and how they are transformed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import torch

from unlearnkit.api import DataOutline, DataShape, DataSource
from unlearnkit.data import sources
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.data.streamed import Datasets
from unlearnkit.errors import UnknownPluginError, UnlearnkitError
from unlearnkit.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from unlearnkit.plugins import Registry


@dataclass(frozen=True)
class DatasetInfo:
    load: Callable[..., ImageSet]  # (root, download) -> ImageSet
    transform: Transform
    about: str
    outline: DataOutline


def _digits(root: Path | None = None, download: bool = False) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits; a fixed stratified 80/20 train/test split (seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).mul(255 / 16).round().to(torch.uint8).unsqueeze(1)
    labels = torch.from_numpy(digits.target).long()
    train, test = train_test_split(range(len(labels)), test_size=0.2, stratify=labels.numpy(), random_state=0)
    train, test = torch.tensor(train), torch.tensor(test)
    return ImageSet(images[train], labels[train], images[test], labels[test], [str(i) for i in range(10)])


def _fixed(channels: int, classes: int, side: int, train_size: int | None = None) -> DataOutline:
    return DataOutline(DataShape(channels, classes, side), train_size)


# A set read from files the user may give has its training size from them; digits' is fixed.
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        _digits, Transform((0.3053,), (0.3759,), crop_padding=1), "scikit-learn's 8x8 digits (bundled, offline)",
        _fixed(1, 10, 8, train_size=1437),
    ),
    "fashion-mnist": DatasetInfo(
        sources.fashion_mnist,
        Transform((0.2860,), (0.3530,), crop_padding=2, flip=True),
        "Fashion-MNIST 28x28 (Debian package dataset-fashion-mnist, --data-root, or --download)",
        _fixed(1, 10, 28),
    ),
    "mnist": DatasetInfo(
        sources.mnist, Transform((0.1307,), (0.3081,), crop_padding=2), "MNIST 28x28 (--data-root or --download)",
        _fixed(1, 10, 28),
    ),
    "cifar10": DatasetInfo(
        sources.cifar10,
        Transform((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), crop_padding=4, flip=True),
        "CIFAR-10 32x32 (--data-root or --download)",
        _fixed(3, 10, 32),
    ),
    "cifar100": DatasetInfo(
        sources.cifar100,
        Transform((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), crop_padding=4, flip=True),
        "CIFAR-100 32x32 (--data-root or --download)",
        _fixed(3, 100, 32),
    ),
    "svhn": DatasetInfo(
        sources.svhn,
        Transform((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), crop_padding=4),
        "SVHN 32x32 (--data-root or --download)",
        _fixed(3, 10, 32),
    ),
}
IMAGE_FOLDER = Transform((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), crop_padding=4, flip=True)


class CatalogData(DataSource):
    """A data set of the catalog above; one subclass per entry, named after it."""

    info: DatasetInfo

    def load(self, root: Path | None, download: bool, image_size: int) -> tuple[ImageSet, Transform]:
        return self.info.load(root, download), self.info.transform

    def outline(self, root: Path | None, image_size: int) -> DataOutline:
        if (locate := sources.LOCATE.get(self.name)) is not None:
            locate(root)  # files that are not where load looks: DataNotFoundError, as load says it
        return self.info.outline


def _source(name: str, info: DatasetInfo) -> type[DataSource]:
    return type(f"Data_{name.replace('-', '_')}", (CatalogData,), {"name": name, "info": info, "__doc__": info.about})


@hookimpl
def register_datasets(register: Callable[[type], None]) -> None:
    for name, info in DATASETS.items():
        register(_source(name, info))


def names_a_folder(name: str) -> bool:
    """Whether a data-set name is an ImageFolder directory's path rather than a registered name."""
    return "/" in name or Path(name).expanduser().is_dir()


def check(name: str, registry: Registry | None = None) -> None:
    """What `load` refuses before it reads an image: an ImageFolder directory that is missing or laid out
    otherwise, or a name no plugin registers (with close matches, and any plugin that failed to load)."""
    from unlearnkit.plugins import installed

    if names_a_folder(name):
        sources.check_layout(Path(name).expanduser())
        return
    try:
        (registry or installed()).entry(DataSource, name)
    except UnknownPluginError as exc:
        raise UnknownPluginError(exc.message, f"{exc.hint}\nOr give a directory laid out for torchvision's ImageFolder "
                                              "(ROOT/train/CLASS/*.png and ROOT/test/CLASS/*.png).") from None


def outline(name: str, root: Path | None, image_size: int, registry: Registry | None = None) -> DataOutline | None:
    """What the data set named is, without loading its images (None when its plugin says only loading tells)."""
    from unlearnkit.plugins import installed, plugin_code

    registry = registry or installed()
    check(name, registry)
    if names_a_folder(name):
        return sources.folder_outline(Path(name).expanduser(), image_size)
    source = registry.get(DataSource, name)
    with plugin_code(source):
        found = source().outline(root, image_size)
    if found is not None and not _well_formed(found):
        raise UnlearnkitError(f"data set '{name}' gave an outline that is not one: {found!r}",
                              "Its plugin's outline() must return None or an unlearnkit.DataOutline of a DataShape "
                              "(positive integers) and a train_size that is None or a positive integer.")
    return found


def _well_formed(outline: object) -> bool:
    def count(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    return (isinstance(outline, DataOutline) and isinstance(outline.shape, DataShape)
            and all(count(v) for v in (outline.shape.in_channels, outline.shape.num_classes, outline.shape.image_size))
            and (outline.train_size is None or count(outline.train_size)))


def load(
    name: str, root: Path | None, download: bool, image_size: int, registry: Registry | None = None,
) -> tuple[ImageSet, Transform] | Datasets:
    """The data of a registered data set name, or the images and transform of an ImageFolder directory path."""
    from unlearnkit.plugins import installed, plugin_code

    registry = registry or installed()
    check(name, registry)
    if names_a_folder(name):
        images = sources.image_folder(Path(name).expanduser(), image_size)
        gray = images.in_channels == 1
        return images, Transform((0.5,), (0.5,), 4, True) if gray else IMAGE_FOLDER
    source = registry.get(DataSource, name)
    with plugin_code(source):
        loaded = source().load(root, download, image_size)
    if not (isinstance(loaded, Datasets) or (isinstance(loaded, tuple) and len(loaded) == 2)):
        raise UnlearnkitError(f"data set '{name}' loaded a {type(loaded).__name__}",
                              "Its plugin must return (ImageSet, Transform) or unlearnkit.data.Datasets.")
    return loaded


Pool = Literal["evaluation", "tuning"]


def subset_datasets(data: Datasets, train: int | None, test: int | None, pool: Pool = "evaluation",
                    balanced: bool = False, labels: Callable[[Any], torch.Tensor] | None = None) -> Datasets:
    """`subset` for torch Datasets (`labels` reads a Dataset's labels, needed when `balanced`)."""
    gen = torch.Generator().manual_seed(0)

    def take(dataset, n, what):
        read = (lambda: labels(dataset)) if labels is not None else _no_labels
        keep = choose(len(dataset), n, gen, pool, balanced, read, data.classes, what)
        return dataset if keep is None else torch.utils.data.Subset(dataset, keep.tolist())

    train_set = take(data.train, train, "train_subset")
    chosen = train_set.indices if isinstance(train_set, torch.utils.data.Subset) else None
    train_eval = data.train_eval if chosen is None or data.train_eval is None else torch.utils.data.Subset(data.train_eval, chosen)
    return Datasets(train_set, take(data.test, test, "test_subset"), data.classes, train_eval)


def _no_labels() -> torch.Tensor:
    raise UnlearnkitError("balanced subsets need the data set's labels", "Pass `labels` to subset_datasets.")


def subset(images: ImageSet, train: int | None, test: int | None, pool: Pool = "evaluation",
           balanced: bool = False) -> ImageSet:
    """A fixed random subset (seed 0, independent of the run seed) so runs with different seeds share data;
    the tuning pool is as many other images (see `choose`)."""
    gen = torch.Generator().manual_seed(0)

    def take(x, y, n, what):
        keep = choose(len(y), n, gen, pool, balanced, lambda: y, images.classes, what)
        return (x, y) if keep is None else (x[keep], y[keep])

    train_x, train_y = take(images.train_x, images.train_y, train, "train_subset")
    test_x, test_y = take(images.test_x, images.test_y, test, "test_subset")
    return ImageSet(train_x, train_y, test_x, test_y, images.classes)


def choose(size: int, n: int | None, gen: torch.Generator, pool: Pool, balanced: bool,
           labels: Callable[[], torch.Tensor], classes: list[str], what: str) -> torch.Tensor | None:
    """The sorted indices of a subset of n of `size` samples, or None for all of them.

    Both pools walk one permutation drawn from `gen`: the evaluation pool takes its first n samples, the
    tuning pool the n after them, so that the two never share an image (balanced: the first, or the next,
    n / classes samples of each class in that order). The evaluation pool unbalanced is the subset every
    earlier version took, so cached models and published numbers keep naming the same images.
    """
    tuning = pool == "tuning"
    if n is None or (n >= size and not tuning and not balanced):
        return None
    if tuning and 2 * n > size:
        raise UnlearnkitError(f"{what} {n}: the tuning pool needs {n} images apart from the evaluation pool's {n}, "
                              f"and the data set has {size}", f"Lower {what} to at most {size // 2}.")
    order = torch.randperm(size, generator=gen)
    start = n if tuning else 0
    if not balanced:
        return order[start:start + n].sort().values
    if n % len(classes):
        low = n - n % len(classes)
        raise UnlearnkitError(f"{what} {n} cannot be balanced over {len(classes)} classes",
                              f"Give a multiple of {len(classes)}, e.g. {low or len(classes)} or {low + len(classes)}.")
    share, ordered = n // len(classes), labels()[order]
    start = share if tuning else 0
    of_class = [order[ordered == c] for c in range(len(classes))]
    fewest = min(range(len(classes)), key=lambda c: len(of_class[c]))
    if len(of_class[fewest]) < start + share:
        pools = 2 if tuning else 1
        raise UnlearnkitError(f"{what} {n} balanced takes {share} images of each class{' per pool' if tuning else ''}, "
                              f"and class '{classes[fewest]}' has {len(of_class[fewest])}",
                              f"Lower {what} to at most {len(of_class[fewest]) // pools * len(classes)}, or leave "
                              "balanced off.")
    return torch.cat([chosen[start:start + share] for chosen in of_class]).sort().values
