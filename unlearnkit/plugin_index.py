"""The plugin index: what `unlearn plugins` lists, kept in the cache folder so that listing imports no plugin.

Discovering plugins imports every plugin module (and so torch): seconds. The index answers in milliseconds.
It is keyed by a fingerprint of what is installed, computed without importing any plugin module:

- each entry point (group, name, value) with its distribution's name and version;
- the path, size and modification time of every .py file of each entry point's top-level module or package
  (an editable install changes code without changing its version), found with importlib.util.find_spec,
  which does not run it;
- every installed distribution's metadata folder (name and version), as what a plugin registers may depend
  on what else is installed;
- the allow and block lists, the Python executable and unlearnkit's version.

An index with another key, or one that cannot be read or is not an index, is ignored (and rewritten by the
discovery that follows); a cache folder that cannot be written means no index, silently. Plugins that failed
to load are never indexed: a failure may come from outside the fingerprint (a dependency installed since,
Ctrl-C on a slow import), so it is looked at afresh every time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Iterable, Mapping

from unlearnkit._version import __version__
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import atomic_write_json, cache_dir

FORMAT = 1  # bump when the index's content or the fingerprint's recipe changes
ROW_KEYS = {"name", "kind", "summary", "plugin", "distribution", "version", "status", "error"}


def index_path() -> Path:
    """One index per Python executable, so that two environments sharing a cache folder do not overwrite each other's."""
    return cache_dir() / f"plugin-index-{hashlib.sha256(sys.executable.encode()).hexdigest()[:12]}.json"


def fingerprint(eps: Iterable[EntryPoint], settings: Mapping[str, Any]) -> str:
    """The key of an index: what is installed (see the module's docstring) and `settings` (the allow and block lists)."""
    points = []
    packages: dict[str, list[list[Any]]] = {}
    for ep in eps:
        dist = ep.dist
        points.append([ep.group, ep.name, ep.value, dist.name if dist else None, dist.version if dist else None])
        top = ep.module.partition(".")[0]
        if top not in packages:
            packages[top] = _package_files(top)
    identity = {
        "format": FORMAT, "unlearnkit": __version__, "python": sys.executable, "settings": settings,
        "entry_points": sorted(points, key=str), "packages": packages, "distributions": _distributions(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _package_files(top: str) -> list[list[Any]]:
    """[path, size, mtime] of each .py file of a top-level module or package, found without importing it."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # not importable: its entry point fails to load, and nothing is indexed
        return []
    if spec is None:
        return []
    paths = [spec.origin] if spec.origin and not spec.submodule_search_locations else []
    for folder in spec.submodule_search_locations or []:
        for root, folders, names in os.walk(folder):
            folders[:] = [f for f in folders if f != "__pycache__"]
            paths += [os.path.join(root, name) for name in names if name.endswith(".py")]
    files = []
    for path in sorted(paths):
        try:
            found = os.stat(path)
        except OSError:
            continue
        files.append([path, found.st_size, found.st_mtime_ns])
    return files


def _distributions() -> list[str]:
    """The metadata folders of the distributions on sys.path (NAME-VERSION.dist-info), in path order."""
    found = []
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:  # a zip file, a folder that does not exist
            continue
        found += [name for name in names if name.endswith((".dist-info", ".egg-info"))]
    return found


def read(key: str) -> list[dict[str, Any]] | None:
    """The indexed `plugin_rows` for `key`; None when there is no index, another key's, or anything but an index."""
    try:
        index = json.loads(index_path().read_bytes())
    except (OSError, ValueError):  # absent, unreadable, or not JSON
        return None
    if not (isinstance(index, dict) and index.get("format") == FORMAT and index.get("fingerprint") == key):
        return None
    rows = index.get("rows")
    if not (isinstance(rows, list) and all(_is_row(row) for row in rows)):
        return None
    return rows


def _is_row(row: object) -> bool:
    """What `unlearn plugins` can show: every field a string or null, a plugin name, a status other than failed."""
    return (
        isinstance(row, dict) and set(row) == ROW_KEYS and all(v is None or isinstance(v, str) for v in row.values())
        and isinstance(row["plugin"], str) and row["status"] in ("loaded", "blocked")
    )


def write(key: str, rows: list[dict[str, Any]]) -> None:
    """Write the index of `key` (replacing any other); a folder that cannot be written just means no index."""
    try:
        atomic_write_json(index_path(), {"format": FORMAT, "fingerprint": key, "rows": rows})
    except UnlearnkitError:
        pass
