"""Plugin discovery: fake entry points, the installed plugins, and the example third-party plugin."""

from __future__ import annotations

import inspect
import json
import re
import shutil
import sys
import textwrap
import tomllib
import types
from importlib.metadata import EntryPoint, distributions, entry_points
from pathlib import Path

import pytest
import torch

from unlearnkit import Augmenter, Evaluator, Method, hookspecs, plugins
from unlearnkit.api import TrainParams
from unlearnkit.data.forget import random_split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import CostMeter, RunData, Workbench
from unlearnkit.errors import SpecError, UnknownPluginError
from unlearnkit.models.small_cnn import small_cnn
from unlearnkit.plugins import Registry, discover
from unlearnkit.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "unlearnkit-example-plugin"
GROUP = "unlearnkit"

# --------------------------------------------------------------------------- plugin sources

GOOD = '''
from unlearnkit import Method, hookimpl

class Forgetful(Method):
    """Forgets by doing nothing."""
    name = "forgetful"

    def unlearn(self, run):
        pass

@hookimpl
def register_methods(register):
    register(Forgetful)
'''

SECOND_GOOD = '''
from unlearnkit import Evaluator, hookimpl

class Nothing(Evaluator):
    """Measures nothing."""
    name = "nothing"

@hookimpl
def register_evaluators(register):
    register(Nothing)
'''

IMPORT_FAILS = '''
raise ImportError("needs the package frobnicate")
'''

# register_methods succeeds, register_evaluators (called after it) raises half-way.
REGISTER_FAILS = '''
from unlearnkit import Evaluator, Method, hookimpl

class Half(Method):
    name = "half"

class Metric(Evaluator):
    name = "metric"

@hookimpl
def register_methods(register):
    register(Half)

@hookimpl
def register_evaluators(register):
    register(Metric)
    raise RuntimeError("register broke after one entry")
'''

NOT_A_METHOD = '''
from unlearnkit import Evaluator, hookimpl

class Metric(Evaluator):
    name = "metric"

@hookimpl
def register_methods(register):
    register(Metric)
'''

NAMELESS = '''
from unlearnkit import Method, hookimpl

class Nameless(Method):
    pass

@hookimpl
def register_methods(register):
    register(Nameless)
'''

BAD_PARAMS = '''
from pydantic import BaseModel
from unlearnkit import Method, hookimpl

class Loose(Method):
    name = "loose"
    Params = BaseModel

@hookimpl
def register_methods(register):
    register(Loose)
'''

MISSPELT_HOOK = '''
from unlearnkit import Method, hookimpl

class Typo(Method):
    name = "typo"

@hookimpl
def register_method(register):
    register(Typo)
'''

WRONG_HOOK_ARGUMENT = '''
from unlearnkit import Method, hookimpl

class Typo(Method):
    name = "typo"

@hookimpl
def register_methods(reg):
    reg(Typo)
'''

TAKES_FT = '''
from unlearnkit import Method, hookimpl

class Impostor(Method):
    """Not the real FT."""
    name = "ft"

@hookimpl
def register_methods(register):
    register(Impostor)
'''


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path for plugin modules and fake distributions; its modules are unloaded afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    unload(folder)


def unload(folder: Path) -> None:
    """Forget the modules imported from `folder`, so that the next import reads its files afresh."""
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
            del sys.modules[name]


def plugin(site: Path, ep_name: str, module: str, source: str) -> EntryPoint:
    """Write `module` into `site` and return an entry point (no distribution) naming it."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    return EntryPoint(ep_name, module, group=GROUP)


def module_from(name: str, source: str) -> types.ModuleType:
    """An in-memory plugin module, for `discover(modules=...)`."""
    module = types.ModuleType(name)
    exec(textwrap.dedent(source), module.__dict__)
    return module


def record(registry: Registry, name: str) -> plugins.PluginRecord:
    (found,) = [r for r in registry.plugins if r.name == name]
    return found


def write_distribution(site: Path, name: str, version: str, eps: dict[str, str]) -> None:
    """A fake installed distribution: a dist-info folder with METADATA and entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))


def entry_points_in(site: Path) -> list[EntryPoint]:
    return [ep for dist in distributions(path=[str(site)]) for ep in dist.entry_points.select(group=GROUP)]


def installed_entry_points() -> list[EntryPoint]:
    return list(entry_points(group=GROUP))


# --------------------------------------------------------------------------- loading


def test_good_plugin_registers_its_method_tagged_with_the_plugin(site):
    registry = discover(eps=[plugin(site, "good", "ukfake_good", GOOD)], env={})
    entry = registry.entry(Method, "forgetful")
    assert entry.plugin_name == "good" and entry.kind == "method"
    assert entry.distribution is None and entry.version is None
    assert entry.cls.summary() == "Forgets by doing nothing."
    assert record(registry, "good").status == "loaded"
    assert [e.name for e in record(registry, "good").entries] == ["forgetful"]
    assert registry.names(Method) == ["forgetful"]


def test_module_objects_are_plugins_too():
    registry = discover(eps=[], modules=[("inline", module_from("inline", GOOD))], env={})
    assert registry.entry(Method, "forgetful").plugin_name == "inline"
    assert record(registry, "inline").status == "loaded"


def test_plugin_that_fails_to_import_is_recorded_and_the_others_still_load(site):
    eps = [
        plugin(site, "broken", "ukfake_broken", IMPORT_FAILS),
        plugin(site, "good", "ukfake_good", GOOD),
        plugin(site, "second", "ukfake_second", SECOND_GOOD),
    ]
    registry = discover(eps=eps, env={})
    broken = record(registry, "broken")
    assert broken.status == "failed"
    assert "ImportError" in broken.error and "needs the package frobnicate" in broken.error
    assert broken.entries == []
    assert registry.names(Method) == ["forgetful"]
    assert registry.names(Evaluator) == ["nothing"]


def test_plugin_whose_register_hook_raises_contributes_nothing(site):
    eps = [plugin(site, "half", "ukfake_half", REGISTER_FAILS), plugin(site, "good", "ukfake_good", GOOD)]
    registry = discover(eps=eps, env={})
    half = record(registry, "half")
    assert half.status == "failed"
    assert "register broke after one entry" in half.error
    assert half.entries == []
    # Neither the method from its successful hook nor the evaluator registered before the raise.
    assert registry.names(Method) == ["forgetful"]
    assert registry.names(Evaluator) == []


def test_duplicate_name_fails_the_second_plugin_and_names_the_first(site):
    first = plugin(site, "aaa", "ukfake_first", GOOD)
    second = plugin(site, "zzz", "ukfake_both", GOOD + SECOND_GOOD)
    registry = discover(eps=[second, first], env={})  # discovery order is by (distribution, entry point) name
    assert registry.entry(Method, "forgetful").plugin_name == "aaa"
    loser = record(registry, "zzz")
    assert loser.status == "failed"
    assert "method 'forgetful' is already registered by plugin 'aaa'" in loser.error
    assert registry.names(Evaluator) == []  # its other entry is dropped too


def test_duplicate_of_a_first_party_name_names_its_distribution(site):
    write_distribution(site, "zz-impostor", "1.0", {"impostor": "ukfake_impostor"})
    (site / "ukfake_impostor.py").write_text(TAKES_FT)
    registry = discover(env={})  # every distribution on sys.path, the fake one included
    assert registry.entry(Method, "ft").distribution == "unlearnkit-baselines"
    impostor = record(registry, "impostor")
    assert impostor.status == "failed" and impostor.distribution == "zz-impostor"
    assert "method 'ft' is already registered by plugin 'baselines' (unlearnkit-baselines)" in impostor.error


def test_registering_the_same_name_twice_in_one_plugin_fails():
    source = GOOD.replace("register(Forgetful)", "register(Forgetful)\n    register(Forgetful)")
    registry = discover(eps=[], modules=[("twice", module_from("twice", source))], env={})
    assert record(registry, "twice").status == "failed"
    assert "already registered by plugin 'twice'" in record(registry, "twice").error
    assert registry.names(Method) == []


@pytest.mark.parametrize(
    "source, message",
    [
        (NOT_A_METHOD, "register_methods was given <class 'twisted.Metric'>, which is not a subclass of unlearnkit.Method"),
        (NAMELESS, "Nameless has no `name`"),
        (BAD_PARAMS, "Loose.Params must subclass unlearnkit.Params"),
        (GOOD.replace("register(Forgetful)", "register(Forgetful())"), "which is not a subclass of unlearnkit.Method"),
    ],
    ids=["evaluator-as-method", "no-name", "params-not-unlearnkit", "instance-not-class"],
)
def test_malformed_registrations_fail_the_plugin(source, message):
    registry = discover(eps=[], modules=[("twisted", module_from("twisted", source))], env={})
    twisted = record(registry, "twisted")
    assert twisted.status == "failed"
    assert "PluginError" in twisted.error and message in twisted.error
    assert registry.entries() == []


@pytest.mark.parametrize("source", [MISSPELT_HOOK, WRONG_HOOK_ARGUMENT], ids=["hook-name", "hook-argument"])
def test_misspelt_hook_fails_the_plugin_and_later_plugins_still_load(site, source):
    eps = [plugin(site, "a-typo", "ukfake_typo", source), plugin(site, "b-good", "ukfake_good", GOOD)]
    registry = discover(eps=eps, env={})
    typo = record(registry, "a-typo")
    assert typo.status == "failed"
    assert "register_method" in typo.error
    assert record(registry, "b-good").status == "loaded"
    assert registry.names(Method) == ["forgetful"]


def test_plugin_without_hooks_is_failed_with_a_hint():
    """A forgotten @hookimpl would otherwise load silently and register nothing."""
    registry = discover(eps=[], modules=[("empty", types.ModuleType("empty"))], env={})
    assert record(registry, "empty").status == "failed"
    assert "@unlearnkit.hookimpl" in record(registry, "empty").error


# --------------------------------------------------------------------------- environment switches


def test_block_list_marks_plugins_blocked_without_importing_them(site):
    eps = [plugin(site, "broken", "ukfake_broken", IMPORT_FAILS), plugin(site, "good", "ukfake_good", GOOD)]
    registry = discover(eps=eps, env={"UNLEARNKIT_BLOCK_PLUGINS": " broken , good "})
    assert [(r.name, r.status, r.error) for r in registry.plugins] == [("broken", "blocked", None), ("good", "blocked", None)]
    assert registry.entries() == []
    assert "ukfake_broken" not in sys.modules


def test_block_list_accepts_distribution_names():
    blocked = discover(eps=installed_entry_points(), env={"UNLEARNKIT_BLOCK_PLUGINS": "unlearnkit-coun"})
    assert record(blocked, "coun").status == "blocked"
    assert "coun-cl" not in blocked.names(Augmenter) and "coun" not in blocked.names(Method)
    assert "ft" in blocked.names(Method)


def test_allow_list_blocks_every_other_plugin_but_the_core():
    # the core (data sets, architectures, evaluators) needs no listing: a list of third-party plugins alone works
    allowed = discover(eps=installed_entry_points(), env={"UNLEARNKIT_PLUGINS": "baselines"})
    assert {r.name: r.status for r in allowed.plugins} == {
        "baselines": "loaded", "evaluators": "loaded", "models": "loaded", "datasets": "loaded", "trackers": "loaded",
        "coun": "blocked",
    }
    assert allowed.names(Augmenter) == []
    assert "accuracy" in allowed.names(Evaluator)


def test_switches_are_read_from_the_environment_by_default(site, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_BLOCK_PLUGINS", "good")
    registry = discover(eps=[plugin(site, "good", "ukfake_good", GOOD)])
    assert record(registry, "good").status == "blocked"


def test_strict_mode_reraises_the_plugins_error(site):
    eps = [plugin(site, "broken", "ukfake_broken", IMPORT_FAILS)]
    with pytest.raises(ImportError, match="frobnicate"):
        discover(eps=eps, env={"UNLEARNKIT_STRICT_PLUGINS": "1"})
    assert record(discover(eps=eps, env={"UNLEARNKIT_STRICT_PLUGINS": "0"}), "broken").status == "failed"


def test_strict_mode_reraises_a_register_error():
    with pytest.raises(RuntimeError, match="register broke"):
        discover(eps=[], modules=[("half", module_from("half", REGISTER_FAILS))], env={"UNLEARNKIT_STRICT_PLUGINS": "1"})


# --------------------------------------------------------------------------- lookups


def test_unknown_name_suggests_close_matches_and_unlearn_plugins(registry):
    with pytest.raises(UnknownPluginError) as caught:
        registry.entry(Method, "negrad")
    message = str(caught.value)
    assert "unknown method 'negrad'" in message and "'neggrad'" in message
    assert "`unlearn plugins`" in message


def test_unknown_name_without_close_match_lists_what_is_installed(registry):
    with pytest.raises(UnknownPluginError, match=r"installed: coun-cl"):
        registry.entry(Augmenter, "zzzzzz")


# --------------------------------------------------------------------------- the installed plugins


def test_installed_first_party_plugins_come_from_their_distributions(registry):
    from importlib.metadata import version

    assert all(r.status == "loaded" for r in registry.plugins), [(r.name, r.error) for r in registry.plugins]
    for kind, name, dist in [
        ("method", "ft", "unlearnkit-baselines"),
        ("method", "ga", "unlearnkit-baselines"),
        ("method", "neggrad", "unlearnkit-baselines"),
        ("method", "neggrad+", "unlearnkit-baselines"),
        ("method", "coun", "unlearnkit-coun"),
        ("augmenter", "coun-cl", "unlearnkit-coun"),
        ("evaluator", "accuracy", "unlearnkit"),
        ("evaluator", "mia", "unlearnkit"),
        ("evaluator", "avg-gap", "unlearnkit"),
        ("evaluator", "cost", "unlearnkit"),
    ]:
        entry = next(e for e in registry.entries() if (e.kind, e.name) == (kind, name))
        assert (entry.distribution, entry.version) == (dist, version(dist)), name


def test_every_hook_is_documented_with_its_signature():
    doc = ROOT / "docs" / "writing-plugins.md"
    if not doc.exists():
        pytest.skip("docs/writing-plugins.md is not written yet")
    text = re.sub(r"\s+", " ", doc.read_text())
    hooks = [name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and name.startswith("register_")]
    assert sorted(hooks) == sorted(plugins.hook_name(base) for base in plugins.KINDS)
    for name in hooks:
        parameters = list(inspect.signature(getattr(hookspecs, name)).parameters.values())
        # pluggy matches hook arguments by name; annotations, when shown, must be the spec's source text.
        accepted = {
            ", ".join(p.name for p in parameters),
            ", ".join(f"{p.name}: {p.annotation}" for p in parameters),
        }
        shown = [args.strip() for args in re.findall(rf"\b{name}\(([^)]*)\)", text)]
        assert shown, f"docs/writing-plugins.md never shows `{name}(...)`"
        assert set(shown) <= accepted, f"docs/writing-plugins.md shows {name} with arguments {shown}, not one of {accepted}"


# --------------------------------------------------------------------------- the example third-party plugin


def example_distribution(site: Path) -> tuple[str, str]:
    """Install the example plugin into `site` as a fake distribution, from its own pyproject.toml."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    sys.modules.pop("unlearnkit_example", None)  # the checkout's copy, which the example's own tests import
    shutil.copytree(EXAMPLE / "unlearnkit_example", site / "unlearnkit_example")
    write_distribution(site, project["name"], project["version"], project["entry-points"][GROUP])
    return project["name"], project["version"]


def tiny_run(method_cls, model) -> Workbench:
    """An Workbench on 24 random 8x8 grey images of 3 classes, a quarter of them forgotten."""
    g = torch.Generator().manual_seed(0)
    images = ImageSet(
        torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(24) % 3,
        torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(6) % 3,
        ["a", "b", "c"],
    )
    data = RunData(images, Transform((0.5,), (0.5,), crop_padding=1), random_split(24, 0.25, 0), torch.device("cpu"))
    return Workbench(
        model, data, recipe=TrainParams(epochs=1), new_model=lambda: small_cnn(1, 3, width=4), cost=CostMeter(1),
        seed=0, uses_forget=method_cls.uses_forget, name=method_cls.name,
    )


def test_example_plugin_is_found_through_its_distribution(site):
    dist, version = example_distribution(site)
    assert (dist, version) == ("unlearnkit-example-plugin", "0.1.0")
    eps = entry_points_in(site)
    assert [(ep.name, ep.value) for ep in eps] == [("example", "unlearnkit_example")]
    registry = discover(eps=eps, env={})
    assert [(r.name, r.status) for r in registry.plugins] == [("example", "loaded")]
    entry = registry.entry(Method, "finetune-head")
    assert (entry.plugin_name, entry.distribution, entry.version) == ("example", dist, version)
    assert entry.cls.__module__ == "unlearnkit_example"
    assert str(site) in sys.modules["unlearnkit_example"].__file__  # the copy, not an installed one
    assert entry.cls.summary().startswith("finetune-head: fine-tune only the classifier head")
    assert issubclass(entry.cls.Params, TrainParams)

    # Beside the first-party plugins (found like them, since `site` is on sys.path), it validates like they do.
    registry = discover(env={})
    assert all(r.status == "loaded" for r in registry.plugins), [(r.name, r.error) for r in registry.plugins]
    assert [r.distribution for r in registry.plugins].count(dist) == 1
    resolved = resolve({"method": {"name": "finetune-head", "params": {"epochs": 2, "lr": 0.05}}}, registry)
    assert (resolved.method.params.epochs, resolved.method.params.lr) == (2, 0.05)
    with pytest.raises(SpecError) as bad:
        resolve({"method": {"name": "finetune-head", "params": {"head_only": True}}}, registry)
    assert bad.value.lines == ["method.params.head_only: Extra inputs are not permitted"]
    with pytest.raises(SpecError) as wrapped:
        resolve({"method": "finetune-head", "augment": ["coun-cl"]}, registry)
    assert wrapped.value.lines[0].startswith("augment.0: augmenter 'coun-cl'")


def test_example_plugin_shows_in_unlearn_plugins(site, monkeypatch):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    example_distribution(site)
    monkeypatch.setattr(plugins, "_installed", discover(env={}))
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["finetune-head"] == {
        "name": "finetune-head", "kind": "method",
        "summary": "finetune-head: fine-tune only the classifier head on the retain set (the features stay frozen).",
        "plugin": "example", "distribution": "unlearnkit-example-plugin", "version": "0.1.0",
        "status": "loaded", "error": None,
    }


def test_example_method_trains_only_the_head(site):
    example_distribution(site)
    method_cls = discover(eps=entry_points_in(site), env={}).get(Method, "finetune-head")
    torch.manual_seed(0)
    model = small_cnn(1, 3, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run = tiny_run(method_cls, model)
    method_cls(method_cls.Params(epochs=2, batch_size=8, lr=0.5)).unlearn(run)

    changed = {k for k, v in run.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.weight", "head.bias"}  # BatchNorm statistics of the features included
    assert run.cost.forwards == 3 * 18 * 2  # 18 retain samples, 2 epochs, never the forget set


# --------------------------------------------------------------------------- known bugs (see the report)


def test_plugins_of_different_distributions_may_share_an_entry_point_name(site):
    # A third-party distribution that, like the core, calls its entry point "evaluators"; it sorts before "unlearnkit".
    write_distribution(site, "acme-metrics", "2.0", {"evaluators": "ukfake_second"})
    (site / "ukfake_second.py").write_text(textwrap.dedent(SECOND_GOOD))
    registry = discover(env={})
    assert [(r.distribution, r.status) for r in registry.plugins if r.name == "evaluators"] == [
        ("unlearnkit", "loaded"), ("acme-metrics", "loaded"),
    ]
    assert {"nothing", "accuracy", "mia", "avg-gap", "cost"} <= set(registry.names(Evaluator))


def test_a_third_party_plugin_cannot_take_a_first_party_name(site):
    write_distribution(site, "aaa-impostor", "1.0", {"impostor": "ukfake_impostor"})
    (site / "ukfake_impostor.py").write_text(TAKES_FT)
    registry = discover(env={})
    assert record(registry, "baselines").status == "loaded"
    assert registry.entry(Method, "ft").distribution == "unlearnkit-baselines"
    assert record(registry, "impostor").status == "failed"


# --------------------------------------------------------------------------- the tutorial in docs/writing-plugins.md


def tutorial_module() -> types.ModuleType:
    """The tutorial's Python blocks, run in order as the one module a reader would write."""
    text = (ROOT / "docs" / "writing-plugins.md").read_text()
    tutorial = text[text.index("<!-- tutorial:start"):text.index("<!-- tutorial:end -->")]
    module = types.ModuleType("unlearnkit_ascent_repair")
    sys.modules[module.__name__] = module  # pydantic resolves the Params' annotations through it
    exec(compile("\n".join(re.findall(r"```python\n(.*?)```", tutorial, re.S)), "writing-plugins.md", "exec"),
         module.__dict__)
    return module


def test_the_tutorials_method_registers_passes_its_own_tests_and_takes_an_augmenter():
    module = tutorial_module()
    registry = discover(modules=[("ascent-repair", module)], env={})
    assert registry.get(Method, "ascent-repair") is module.AscentRepair
    module.test_ascent_repair_conforms()
    module.test_each_round_ascends_on_the_forget_set_then_repairs_on_the_retain_set()
    resolved = resolve({"method": {"name": "ascent-repair", "params": {"epochs": 3}}, "augment": ["coun-cl"]},
                       discover(modules=[("ascent-repair", module)]))
    assert resolved.method.params.epochs == 3 and resolved.name == "ascent-repair+coun-cl"
