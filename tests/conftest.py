"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearnkit.plugins import Registry, discover


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The installed plugins (core evaluators, baselines, CoUn), ignoring any UNLEARNKIT_* switches of the caller."""
    return discover(env={})


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """No test reads or writes the user's model cache: the session has its own, shared by the tests that take no
    `private_cache` (subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A model cache of the test's own: nothing another test cached is reused, and the test sees what it wrote."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def in_tmp_path(private_cache, tmp_path, monkeypatch) -> Path:
    """A private cache, and the test's folder as the working directory (where runs and grids write by default)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
