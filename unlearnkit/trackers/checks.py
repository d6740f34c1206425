"""What a first-party tracker checks before any training: its library installed, and its place reachable."""

from __future__ import annotations

import importlib
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import check_writable


def library(module: str, tracker: str, extra: str) -> ModuleType:
    """The tracker's library, imported; missing, one message saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnlearnkitError(f"the {tracker} tracker needs the {module} package, which is not installed",
                              f"pip install 'unlearnkit[{extra}]'") from None


def check_folder(folder: Path, what: str) -> None:
    """A folder a tracker will write into can be made there (nothing is written now)."""
    check_writable(folder, what, "Give --track-uri a folder you can write to, or leave it out to write in the output folder.")


def check_server(uri: str, what: str) -> None:
    """An http(s) tracking server answers (any HTTP answer will do: it is there)."""
    try:
        urllib.request.urlopen(uri, timeout=5).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnlearnkitError(f"cannot reach {what} at {uri}: {reason}",
                              "Start the server, or give another --track-uri (or none, to log to a store in the "
                              "output folder).") from None
