"""Writing files whole or not at all, and setting aside the damaged ones unlearnkit finds among its own.

Every file goes through `atomic_path`: the content is written to a temporary file in the same folder,
flushed to disk, and only then renamed over the real name. A reader, a process killed mid-write or a
full disk therefore leaves the old file or the new one, never part of one; two processes writing the
same name each leave a whole file, and the last rename wins.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnkitError


def cache_dir() -> Path:
    """The folder of unlearnkit's caches (models, the plugin index): $UNLEARNKIT_CACHE_DIR, else
    $XDG_CACHE_HOME/unlearnkit, else ~/.cache/unlearnkit."""
    if os.environ.get("UNLEARNKIT_CACHE_DIR"):
        return Path(os.environ["UNLEARNKIT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unlearnkit"


def check_writable(folder: Path, target: str, hint: str) -> None:
    """Refuse, before any training, a folder that cannot be created or written into.

    `target` names what would be written there, for the message; `hint` says what to do instead.
    """
    folder = Path(folder).expanduser()
    try:
        place = next(p for p in (folder, *folder.parents) if p.exists())  # what a mkdir would start from
    except OSError as exc:  # an ancestor we may not look into
        raise UnlearnkitError(f"cannot write {target}: {exc.strerror} ({exc.filename})", hint) from None
    if not place.is_dir():
        raise UnlearnkitError(f"cannot write {target}: {place} is a file, not a folder", hint)
    if not os.access(place, os.W_OK | os.X_OK):
        raise UnlearnkitError(f"cannot write {target}: you have no permission to write in {place}", hint)


class StorageWarning(UserWarning):
    """A file unlearnkit keeps for itself (a cached model, a bench cell, a tuning study) was damaged or could
    not be written: the work goes on without it (it is computed again). The CLI shows it as one line."""


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once: os.umask can only be read by setting it, which would race with other threads creating files
_UMASK = _read_umask()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path` for the caller to write; renamed over `path` once the block succeeds.

    If the block raises, `path` keeps its previous content and the temporary file is removed. A failing
    write (full disk, read-only folder) is raised as one UnlearnkitError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # unique per writer
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)  # on disk before the rename, so a crash cannot leave the new name with old blocks
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it the usual permissions
        os.replace(temporary, path)
        _fsync_folder(path.parent)
        _remove_stale_temporaries(path)
    except OSError as exc:
        if exc.errno is None:  # not a system call's failure: the caller's own error
            raise
        raise write_error(path, exc) from None
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, value: Any, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


def write_error(path: Path, exc: OSError) -> UnlearnkitError:
    """The one message for a write the system refused."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UnlearnkitError(f"no space left on device while writing {path}",
                               "Free space, or choose another folder; the previous file, if any, is unchanged.")
    reason = exc.strerror or str(exc)
    if exc.filename and Path(exc.filename) in path.parents:  # making a folder on the way failed: say which
        reason += f": {exc.filename}"
    return UnlearnkitError(f"cannot write {path}: {reason}", "Check that the folder is writable, or choose another folder.")


#: a temporary file this old was left by a writer that was killed (writes take seconds, not hours)
STALE_SECONDS = 3600


_swept: set[Path] = set()  # folders already swept by this process: once each, or a folder of many files costs a listing per write


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what killed writers left in `path`'s folder, once per folder and process; a writer still at
    work is much younger than STALE_SECONDS."""
    if path.parent in _swept:
        return
    _swept.add(path.parent)
    limit = time.time() - STALE_SECONDS
    for left in path.parent.glob(".*.tmp"):
        try:
            if left.stat().st_mtime < limit:
                left.unlink()
        except OSError:  # removed meanwhile by another writer, or not ours to remove: harmless either way
            pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; some systems cannot sync a folder, and then the rename is merely atomic."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: inode, size and modification time (ns) of a file: equal stamps mean the same file, unchanged
FileStamp = tuple[int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """What tells one file under `path` from its replacement: inode, size and modification time.

    None when there is none, or it cannot be looked at (the read or write that follows then says why)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


def set_aside(path: Path, seen: FileStamp | None, problem: str, then: str = "it is computed again") -> None:
    """Rename a damaged file to NAME.damaged (replacing an older one) and warn, naming both and the problem.

    `seen` is the file's `file_stamp` when it was read: if another process has replaced it meanwhile (with a good
    entry, having found the same damage), the replacement is left where it is.
    """
    aside = path.with_name(path.name + ".damaged")
    where = f"set aside as {aside.name}"
    try:
        if seen is not None and file_stamp(path) == seen:
            os.replace(path, aside)
        else:
            where = "already replaced"
    except OSError as exc:
        where = f"could not be set aside: {exc.strerror}"
    warnings.warn(f"{path} is damaged ({problem}); {where}; {then}", StorageWarning, stacklevel=3)
