"""Fault injection: third-party plugins that exit, raise or hang, at import and at run time, never take `unlearn` down."""

from __future__ import annotations

import json
import sys
import textwrap
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_cli import unlearn
from tests.test_plugins import entry_points_in, record, unload, write_distribution
from unlearnkit import Method, cli, plugins
from unlearnkit.errors import PluginFault, UnlearnkitError
from unlearnkit.plugins import discover, plugin_code

# One healthy-at-import plugin whose code fails at run time as its params say.
ACME = '''
import sys
from typing import Literal

from unlearnkit import Augmenter, DataSource, Evaluator, Method, Params, TrainParams, hookimpl
from unlearnkit.errors import UnlearnkitError

Fault = Literal["raise", "exit", "base", "interrupt", "user"]


class Halt(BaseException):
    """Neither an Exception nor Ctrl-C."""


def fail(how):
    if how == "raise":
        raise RuntimeError("acme broke")
    if how == "exit":
        sys.exit(3)
    if how == "base":
        raise Halt("acme halted")
    if how == "interrupt":
        raise KeyboardInterrupt
    raise UnlearnkitError("acme needs a sharper knife", "Set method.params.knife.")


class BoomParams(TrainParams):
    fault: Fault = "raise"


class FaultParams(Params):
    fault: Fault = "raise"


class Boom(Method):
    """Fails as its params say."""
    name = "acme-boom"
    Params = BoomParams

    def unlearn(self, run):
        fail(self.params.fault)


class BoomAugmenter(Augmenter):
    name = "acme-aug"
    Params = FaultParams

    def loss_terms(self, model, batch, features):
        fail(self.params.fault)


class BoomEvaluator(Evaluator):
    name = "acme-eval"
    Params = FaultParams
    metrics = ("acme",)

    def evaluate(self, subject, reference):
        fail(self.params.fault)


class BoomData(DataSource):
    name = "acme-data"

    def load(self, root, download, image_size):
        fail("exit")


@hookimpl
def register_methods(register):
    register(Boom)


@hookimpl
def register_augmenters(register):
    register(BoomAugmenter)


@hookimpl
def register_evaluators(register):
    register(BoomEvaluator)


@hookimpl
def register_datasets(register):
    register(BoomData)
'''

# Plugins of another distribution that fail while importing or registering: entry point -> module source.
REGISTERS = '''
from unlearnkit import Method, hookimpl

class Lost(Method):
    name = "{name}"

@hookimpl
def register_methods(register):
    {fault}
'''
BROKEN = {
    "exits": "import sys\nsys.exit(4)\n",
    "raises": "raise RuntimeError('needs the package frobnicate')\n",
    "halts": "class Halt(BaseException):\n    pass\n\nraise Halt('stopped the import')\n",
    "closes": "raise GeneratorExit\n",
    "hangs": "raise KeyboardInterrupt  # what Ctrl-C raises in an import that hangs\n",
    "quits-on-register": REGISTERS.format(name="quitter", fault="import sys; sys.exit(5)"),
    "hangs-on-register": REGISTERS.format(name="sleeper", fault="raise KeyboardInterrupt"),
}
REASONS = {
    "exits": "SystemExit: 4",
    "raises": "RuntimeError: needs the package frobnicate",
    "halts": "Halt: stopped the import",
    "closes": "GeneratorExit",
    "hangs": "interrupted while importing: it may hang; block it with UNLEARNKIT_BLOCK_PLUGINS=hangs",
    "quits-on-register": "SystemExit: 5",
    "hangs-on-register": "interrupted while registering: it may hang; block it with UNLEARNKIT_BLOCK_PLUGINS=hangs-on-register",
}
ACME_SOURCE = "plugin 'acme' (acme-unlearn 1.2.0)"
TINY = ["--set", "data.train_subset=240", "--set", "data.test_subset=80", "--set", "train.epochs=1",
        "--device", "cpu", "--no-retrain", "--quiet"]


def module_name(ep_name: str) -> str:
    return "ukfault_" + ep_name.replace("-", "_")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One model cache for the module's runs, so the Original is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def site(tmp_path, monkeypatch, shared_cache) -> Path:
    """acme (healthy at import) and the broken plugins installed as distributions; `unlearn` discovers them afresh."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "ukfault_acme.py").write_text(ACME)
    write_distribution(folder, "acme-unlearn", "1.2.0", {"acme": "ukfault_acme"})
    for name, source in BROKEN.items():
        (folder / f"{module_name(name)}.py").write_text(textwrap.dedent(source))
    write_distribution(folder, "acme-broken", "0.3", {name: module_name(name) for name in BROKEN})
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(plugins, "_installed", None)
    for var in ("UNLEARNKIT_DEBUG", "UNLEARNKIT_PLUGINS", "UNLEARNKIT_BLOCK_PLUGINS", "UNLEARNKIT_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(shared_cache))
    monkeypatch.chdir(tmp_path)
    yield folder
    unload(folder)


# --------------------------------------------------------------------------- at import and registration


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_plugin_failing_to_load_is_recorded_and_every_other_plugin_loads(site, name):
    registry = discover(eps=entry_points_in(site), env={})
    failed = record(registry, name)
    assert (failed.status, failed.error, failed.entries) == ("failed", REASONS[name], [])
    assert failed.distribution == "acme-broken" and failed.version == "0.3"
    assert record(registry, "acme").status == "loaded"
    assert registry.names(Method) == ["acme-boom"]  # neither quitter nor sleeper
    assert [r.name for r in registry.plugins if r.status == "failed"] == sorted(BROKEN)


def test_unlearn_plugins_lists_the_failed_with_distribution_and_reason_and_everything_else(site, capsys):
    code, out, err = unlearn(capsys, "plugins")
    assert code == 0
    for name, reason in REASONS.items():
        assert f"plugin '{name}' (acme-broken 0.3) failed: {reason}" in err
    assert "Traceback" not in err
    code, out, _ = unlearn(capsys, "plugins", "--json")
    rows = json.loads(out)
    assert {r["plugin"]: r["status"] for r in rows if r["distribution"] == "acme-broken"} == dict.fromkeys(BROKEN, "failed")
    loaded = {r["name"] for r in rows if r["status"] == "loaded"}
    assert {"acme-boom", "acme-aug", "ft", "coun-cl", "accuracy", "small-cnn", "digits"} <= loaded


def test_commands_go_on_without_the_failed_and_a_name_they_would_have_given_says_why(site, capsys):
    code, out, err = unlearn(capsys, "validate", "--method", "acme-boom")
    assert code == 0, err
    assert "valid: acme-boom on digits" in out
    code, _, err = unlearn(capsys, "validate", "--method", "quitter")
    assert code == 2
    assert "unknown method 'quitter'" in err
    assert "plugin 'quits-on-register' (acme-broken 0.3) failed to load, so nothing it provides is available: SystemExit: 5" in err
    assert "plugin 'hangs' (acme-broken 0.3) failed to load" in err and "Traceback" not in err


def test_ctrl_c_while_a_first_party_plugin_imports_stops_the_command():
    class FirstParty:  # an entry point of unlearnkit-baselines, interrupted while it imports torch
        name = "baselines"
        dist = SimpleNamespace(name="unlearnkit-baselines", version="0.1.0")

        def load(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        discover(eps=[FirstParty()], env={})  # type: ignore[list-item]


def test_strict_mode_lets_a_plugins_exit_through(site):
    with pytest.raises(SystemExit) as exited:
        discover(eps=[ep for ep in entry_points_in(site) if ep.name == "exits"], env={"UNLEARNKIT_STRICT_PLUGINS": "1"})
    assert exited.value.code == 4


# --------------------------------------------------------------------------- at run time

RUNTIME = {
    "method-raises": (["--method", "acme-boom"], "method 'acme-boom'", "RuntimeError: acme broke"),
    "method-exits": (["--method", "acme-boom", "--set", "method.params.fault=exit"], "method 'acme-boom'", "SystemExit: 3"),
    "method-halts": (["--method", "acme-boom", "--set", "method.params.fault=base"], "method 'acme-boom'", "Halt: acme halted"),
    "augmenter-raises": (["--method", "ft", "--augment", "acme-aug"], "augmenter 'acme-aug'", "RuntimeError: acme broke"),
    "augmenter-exits": (["--method", "ft", "--augment", "acme-aug", "--set", "augment.0.params.fault=exit"],
                        "augmenter 'acme-aug'", "SystemExit: 3"),
    "evaluator-raises": (["--method", "ft", "--set", "evaluate=[accuracy, acme-eval]"], "evaluator 'acme-eval'",
                         "RuntimeError: acme broke"),
    "evaluator-exits": (["--method", "ft", "--set", "evaluate=[{name: acme-eval, params: {fault: exit}}]"],
                        "evaluator 'acme-eval'", "SystemExit: 3"),
}


@pytest.mark.parametrize("case", list(RUNTIME))
def test_a_fault_in_a_plugins_code_is_one_message_naming_the_plugin_and_exit_1(site, capsys, monkeypatch, case):
    argv, culprit, raised = RUNTIME[case]
    argv = ["run", *argv, "--set", "method.params.epochs=1", "--out", "bundle", *TINY]
    code, out, err = unlearn(capsys, *argv)
    assert code == 1
    assert f"error: {culprit} of {ACME_SOURCE} failed: {raised}\nSet UNLEARNKIT_DEBUG=1 to see the traceback.\n" in err
    assert "Traceback" not in err and "method 'ft'" not in err  # an augmenter's fault is not its method's
    assert not Path("bundle").exists() and out == ""

    monkeypatch.setenv("UNLEARNKIT_DEBUG", "1")
    with pytest.raises(PluginFault) as fault:
        cli.main(argv)
    shown = "".join(traceback.format_exception(fault.value))  # what the interpreter prints as it exits
    assert "Traceback (most recent call last)" in shown and "direct cause of the following exception" in shown
    assert 'ukfault_acme.py", line' in shown and "in fail" in shown
    assert fault.value.plugin == "acme" and fault.value.distribution == "acme-unlearn"


def test_only_code_a_plugin_registered_is_attributed(site):
    boom = discover(eps=entry_points_in(site), env={}).get(Method, "acme-boom")
    for passed in (KeyboardInterrupt(), UnlearnkitError("a user's mistake")):
        with pytest.raises(type(passed)) as caught, plugin_code(boom):
            raise passed
        assert caught.value is passed

    class Own:  # a user's own class, as `unlearnkit.unlearn` may run: its errors stay its own
        pass

    with pytest.raises(SystemExit), plugin_code(Own()):
        sys.exit(9)
    with pytest.raises(PluginFault, match="method 'acme-boom' of plugin 'acme'"), plugin_code(Own(), boom):
        sys.exit(9)


def test_a_plugins_own_error_message_and_ctrl_c_pass_through_unchanged(site, capsys):
    code, _, err = unlearn(capsys, "run", "--method", "acme-boom", "--set", "method.params.fault=user", *TINY)
    assert code == 2
    assert "error: acme needs a sharper knife\nSet method.params.knife.\n" in err and "acme-unlearn" not in err
    code, _, err = unlearn(capsys, "run", "--method", "acme-boom", "--set", "method.params.fault=interrupt", *TINY)
    assert code == 130 and "interrupted: no result bundle was written" in err


def test_a_bench_reports_a_plugins_fault_as_that_cells_and_finishes_the_others(site, capsys):
    code, _, err = unlearn(
        capsys, "bench", "--methods", "ft,acme-boom", "--augment", "none", "--scenarios", "random:0.1", "--seeds", "1",
        "--set", "params.ft.method.params.epochs=1", "--set", "params.acme-boom.method.params.fault=exit",
        "--data", "digits", "--set", "base.data.train_subset=240", "--set", "base.data.test_subset=80",
        "--set", "base.train.epochs=1", "--set", "base.evaluate=[accuracy]", "--device", "cpu", "--quiet", "--out", "grid",
    )
    assert code == 1
    assert f"acme-boom (random 10%, seed 0) failed: method 'acme-boom' of {ACME_SOURCE} failed: SystemExit: 3" in err
    assert "1 of 2 cells finished" in err and "Traceback" not in err
    assert len(list(Path("grid/cells").glob("*.json"))) == 3  # Original, Retrain and the ft cell

