"""Where the named data sets' files are looked for, and how missing ones are downloaded.

An explicit root is authoritative (a mistyped path must not be masked by some other copy on the machine);
without one, a system location (where a package installs the set) and then the download cache are searched.
Downloads go into the root, or into the cache (`$UNLEARNKIT_DATA_DIR`, default ~/.cache/unlearnkit/data).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from unlearnkit.errors import DataNotFoundError, UnlearnkitError

DATA_DIR_ENV = "UNLEARNKIT_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/unlearnkit/data")


@dataclass(frozen=True)
class Remote:
    """A file to download; `md5` None skips the checksum (tests point URLs at local file:// archives)."""

    url: str
    md5: str | None


# Official sources of the archives downloaded with download=True; a table so tests can redirect them.
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
DOWNLOAD_ERRORS = (RuntimeError, OSError, ValueError)
_Found = TypeVar("_Found")  # what locating a set gives: its files, or the folder holding them


def default_data_root() -> Path:
    """The download cache: `$UNLEARNKIT_DATA_DIR`, or ~/.cache/unlearnkit/data."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def as_path(root: Path | str | None) -> Path | None:
    return None if root is None else Path(root).expanduser()


def search_dirs(root: Path | None, subdir: str, system: tuple[Path, ...] = ()) -> list[Path]:
    """Directories to look in, in order: root and root/subdir if given, else system places and the cache."""
    if root is not None:
        return [root, root / subdir]
    cache = default_data_root()
    return [*system, cache / subdir]


def download_root(root: Path | None) -> Path:
    return root if root is not None else default_data_root()


def looked(dirs: list[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


def download_hint() -> str:
    return f"`--download` to fetch it into --data-root, or into ${DATA_DIR_ENV} (default {DEFAULT_DATA_DIR})"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(remote: Remote, folder: Path) -> Path:
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


def download_failed(name: str, error: Exception) -> DataNotFoundError:
    return DataNotFoundError(
        f"downloading {name} failed: {error}",
        "Check the network connection and retry, or fetch the files yourself and pass `--data-root DIR`.",
    )


def find_or_download(find: Callable[[], _Found], download_files: Callable[[], _Found], download: bool) -> _Found:
    """Where `find` locates a set's files; if they are not there, where `download_files` downloads them when
    `download` asks (else find's DataNotFoundError, which says where it looked)."""
    try:
        return find()
    except DataNotFoundError:
        if not download:
            raise
        return download_files()
