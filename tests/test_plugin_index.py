"""The plugin index: `unlearn plugins` lists the installed plugins without importing them while nothing has changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_cli import unlearn
from tests.test_plugins import IMPORT_FAILS, entry_points_in, unload, write_distribution
from unlearnkit import plugin_index, plugins

PACKAGE = {
    "__init__.py": '''
        from unlearnkit import hookimpl
        from ukindex_pkg.methods import Indexed

        @hookimpl
        def register_methods(register):
            register(Indexed)
    ''',
    "methods.py": '''
        from unlearnkit import Method

        class Indexed(Method):
            """Listed from the index."""
            name = "indexed"
    ''',
}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private cache folder, no allow or block list, and every listing counted as a new process would see it."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(folder))
    for var in ("UNLEARNKIT_PLUGINS", "UNLEARNKIT_BLOCK_PLUGINS", "UNLEARNKIT_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(plugins, "_installed", None)
    return folder


@pytest.fixture
def discoveries(monkeypatch) -> list[str]:
    """One item per discovery of the installed plugins (that is, per listing the index did not answer)."""
    calls: list[str] = []
    real = plugins.discover

    def counted(*args, **kwargs):
        calls.append("discovered")
        return real(*args, **kwargs)

    monkeypatch.setattr(plugins, "discover", counted)
    return calls


@pytest.fixture
def site(tmp_path, monkeypatch, cache) -> Path:
    """A plugin package installed as the only distribution with entry points: the real ones' files (which others may
    be editing) stay out of these tests' fingerprints."""
    folder = tmp_path / "site"
    (folder / "ukindex_pkg").mkdir(parents=True)
    for name, source in PACKAGE.items():
        (folder / "ukindex_pkg" / name).write_text(textwrap.dedent(source))
    write_distribution(folder, "acme-index", "1.0", {"indexed": "ukindex_pkg"})
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(plugins, "entry_points", lambda group: entry_points_in(folder))
    yield folder
    unload(folder)


def listing(monkeypatch) -> tuple[list[dict], list[plugins.PluginRecord]]:
    """What `unlearn plugins` lists in a new process."""
    monkeypatch.setattr(plugins, "_installed", None)
    return plugins.installed_listing()


def index_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("plugin-index-*.json"))


# --------------------------------------------------------------------------- the installed plugins


def test_rows_from_the_index_equal_a_full_discovery(cache, discoveries, monkeypatch):
    discovered, failed = listing(monkeypatch)
    assert failed == [] and discoveries == ["discovered"] and len(index_files(cache)) == 1
    indexed, failed = listing(monkeypatch)
    assert failed == [] and discoveries == ["discovered"]  # answered by the index
    assert indexed == discovered == plugins.plugin_rows(plugins.discover(env={}))
    assert {"ft", "coun-cl", "accuracy", "small-cnn", "digits"} <= {row["name"] for row in indexed}


def test_unlearn_plugins_prints_the_same_from_the_index(cache, capsys, monkeypatch):
    for argv in (["plugins"], ["plugins", "--json"]):
        monkeypatch.setattr(plugins, "_installed", None)
        discovered = unlearn(capsys, *argv)
        monkeypatch.setattr(plugins, "_installed", None)
        indexed = unlearn(capsys, *argv)
        assert indexed == discovered and discovered[0] == 0


def test_unlearn_plugins_with_a_current_index_imports_no_torch(cache, tmp_path):
    code = textwrap.dedent('''
        import sys
        from unlearnkit import cli
        try:
            cli.main(["plugins", "--json"])
        except SystemExit:
            pass
        print("torch imported:", "torch" in sys.modules)
    ''')
    env = {k: v for k, v in os.environ.items() if k not in ("UNLEARNKIT_PLUGINS", "UNLEARNKIT_BLOCK_PLUGINS")}

    def listed() -> tuple[list[dict], bool]:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
        rows, _, last = done.stdout.rpartition("torch imported:")
        return json.loads(rows), last.strip() == "True"

    discovered, imported = listed()  # discovers, so imports torch, and writes the index
    assert imported
    # The second listing is answered by the index, unless a file of the checkout changed in between (someone
    # editing it): then the index is written again, and the third is.
    for _ in range(2):
        indexed, imported = listed()
        if not imported:
            break
    assert not imported
    assert indexed == discovered


# --------------------------------------------------------------------------- what makes the index stale


def test_a_plugin_package_is_listed_from_the_index(site, discoveries, monkeypatch):
    discovered, _ = listing(monkeypatch)
    assert listing(monkeypatch) == (discovered, [])
    assert discoveries == ["discovered"]
    assert [(r["name"], r["summary"], r["distribution"]) for r in discovered] == [("indexed", "Listed from the index.", "acme-index")]


@pytest.mark.parametrize("change", ["touched", "edited", "added"])
def test_a_changed_file_of_a_plugin_package_makes_the_index_stale(site, discoveries, monkeypatch, change):
    before, _ = listing(monkeypatch)
    module = site / "ukindex_pkg" / "methods.py"
    if change == "edited":  # a new summary, which a new process imports
        module.write_text(module.read_text().replace("Listed from the index.", "Listed afresh."))
        unload(site)
    elif change == "added":
        (site / "ukindex_pkg" / "extra.py").write_text("")
    found = os.stat(module)
    os.utime(module, ns=(found.st_atime_ns, found.st_mtime_ns + 1_000_000_000))  # a coarse clock cannot hide it
    after, _ = listing(monkeypatch)
    assert discoveries == ["discovered", "discovered"]
    assert [r["summary"] for r in after] == ["Listed afresh." if change == "edited" else "Listed from the index."]
    assert listing(monkeypatch) == (after, []) and len(discoveries) == 2  # and the index is current again


def test_the_block_and_allow_lists_are_part_of_the_key(site, discoveries, monkeypatch):
    listing(monkeypatch)
    monkeypatch.setenv("UNLEARNKIT_BLOCK_PLUGINS", "indexed")
    blocked, _ = listing(monkeypatch)
    assert [(r["plugin"], r["status"]) for r in blocked] == [("indexed", "blocked")]
    assert listing(monkeypatch) == (blocked, []) and len(discoveries) == 2
    monkeypatch.delenv("UNLEARNKIT_BLOCK_PLUGINS")
    monkeypatch.setenv("UNLEARNKIT_PLUGINS", "acme-index")
    allowed, _ = listing(monkeypatch)
    assert [(r["name"], r["status"]) for r in allowed] == [("indexed", "loaded")] and len(discoveries) == 3


def test_plugins_that_failed_are_not_indexed(site, discoveries, monkeypatch, cache):
    (site / "ukindex_broken.py").write_text(textwrap.dedent(IMPORT_FAILS))
    write_distribution(site, "acme-broken", "0.1", {"broken": "ukindex_broken"})
    for attempt in (1, 2):  # a failure may have causes outside the fingerprint: it is looked at every time
        rows, failed = listing(monkeypatch)
        assert [(r.name, r.status) for r in failed] == [("broken", "failed")]
        assert len(discoveries) == attempt and index_files(cache) == []


# --------------------------------------------------------------------------- a damaged index, an unwritable cache


def damage(path: Path, how: str) -> None:
    index = json.loads(path.read_text())
    if how == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif how == "truncated":
        path.write_text(path.read_text()[:40])
    elif how == "foreign":
        path.write_text(json.dumps(["some", "other", "file"]))
    elif how == "other-format":
        path.write_text(json.dumps({**index, "format": plugin_index.FORMAT + 1}))
    elif how == "bad-row":
        path.write_text(json.dumps({**index, "rows": [{**index["rows"][0], "name": 3}]}))
    elif how == "failed-row":
        path.write_text(json.dumps({**index, "rows": [{**index["rows"][0], "status": "failed"}]}))
    elif how == "empty":
        path.write_text("")


@pytest.mark.parametrize("how", ["garbage", "truncated", "foreign", "other-format", "bad-row", "failed-row", "empty"])
def test_a_damaged_index_is_ignored_and_rewritten(site, discoveries, monkeypatch, cache, how):
    discovered, _ = listing(monkeypatch)
    (path,) = index_files(cache)
    damage(path, how)
    assert listing(monkeypatch) == (discovered, []) and len(discoveries) == 2
    assert listing(monkeypatch) == (discovered, []) and len(discoveries) == 2  # rewritten, and read again
    assert index_files(cache) == [path]


def test_a_cache_folder_that_cannot_be_written_means_no_index(site, discoveries, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(blocker / "cache"))  # a folder inside a file: never made
    for attempt in (1, 2):
        rows, failed = listing(monkeypatch)
        assert [r["name"] for r in rows] == ["indexed"] and failed == [] and len(discoveries) == attempt


def test_a_registry_this_process_discovered_is_listed_as_it_is(site, discoveries, monkeypatch, cache):
    listing(monkeypatch)
    mine = plugins.discover(eps=[], modules=[], env={})
    monkeypatch.setattr(plugins, "_installed", mine)
    assert plugins.installed_listing() == ([], [])  # not the index's rows
