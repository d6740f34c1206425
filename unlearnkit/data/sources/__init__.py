"""Readers of the named data sets, each returning an `ImageSet`, and the download layer they share.

Every reader parses the data set's original on-disk format itself, one module per format:

* `idx`: Fashion-MNIST and MNIST, the four IDX files, gzipped or not.
* `cifar_binary`: CIFAR-10 and CIFAR-100, the official *binary* versions (a user's file is never unpickled).
* `svhn_mat`: SVHN, the cropped-digit MATLAB v5 files.
* `image_folders`: any directory laid out for torchvision's ImageFolder.

`download` says where the named sets' files are looked for and downloads missing ones (with
`download=True`). A user's mistake (missing files, a corrupt file, a bad layout) is raised as a
`DataNotFoundError` or `UnlearnkitError` naming the file and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from unlearnkit.data.sources.cifar_binary import cifar10, cifar10_folder, cifar100, cifar100_folder
from unlearnkit.data.sources.idx import fashion_mnist, fashion_mnist_files, mnist, mnist_files
from unlearnkit.data.sources.image_folders import check_layout, folder_outline, image_folder
from unlearnkit.data.sources.svhn_mat import svhn, svhn_folder

#: where each set of files is found, without reading them: what `unlearn validate` checks
LOCATE: dict[str, Callable[[Path | None], object]] = {
    "fashion-mnist": fashion_mnist_files,
    "mnist": mnist_files,
    "cifar10": cifar10_folder,
    "cifar100": cifar100_folder,
    "svhn": svhn_folder,
}

__all__ = [
    "LOCATE",
    "check_layout",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "folder_outline",
    "image_folder",
    "mnist",
    "svhn",
]
