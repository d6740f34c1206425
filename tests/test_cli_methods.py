"""Every installed method end to end from the CLI on digits, random and class-wise (short budgets)."""

from __future__ import annotations

import json

import pytest

from unlearnkit import Method, cli
from unlearnkit.plugins import discover

REGISTRY = discover(env={})
SCENARIOS = {"random": "random:0.1", "class": "class:3"}


def cases():
    for entry in REGISTRY.entries(Method):
        for kind, flag in SCENARIOS.items():
            if kind in entry.cls.scenarios:
                yield pytest.param(entry.name, flag, id=f"{entry.name}-{kind}")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # original and Retrain trained once per scenario, shared


@pytest.mark.slow
@pytest.mark.parametrize("method,forget", list(cases()))
def test_method_runs_from_the_cli(method, forget, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(cache))
    fields = REGISTRY.get(Method, method).Params.model_fields
    short = [f"method.params.{k}={v}" for k, v in (("epochs", 1), ("batch_size", 64)) if k in fields]
    argv = ["run", "--method", method, "--forget", forget, "--out", str(tmp_path / "out"), "--quiet",
            "--set", "train.epochs=3", *(a for s in short for a in ("--set", s))]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    unlearned = results["metrics"]["unlearned"]
    assert all(0 <= unlearned[k] <= 100 for k in ("RA", "UA", "TA", "MIA"))
    assert unlearned["flops"] > 0 and unlearned["seconds"] > 0
