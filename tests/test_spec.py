"""The run spec: validation against the installed plugins, --set overrides, merging, spec files, the schema."""

from __future__ import annotations

import json
import textwrap
import types
from pathlib import Path

import pytest

from unlearnkit import Augmenter, Evaluator, Method, Tracker
from unlearnkit.errors import SpecError, UnknownPluginError, UnlearnkitError
from unlearnkit.plugins import discover
from unlearnkit.resolve import json_schema, resolve
from unlearnkit.spec import DEFAULT_EVALUATORS, RunSpec
from unlearnkit.spec_input import build_spec, read_spec_file, set_path

ROOT = Path(__file__).resolve().parents[1]


def spec_errors(raw, registry) -> list[str]:
    """The 'field: message' lines `resolve` rejects `raw` with."""
    with pytest.raises(SpecError) as caught:
        resolve(raw, registry)
    return caught.value.lines


# --------------------------------------------------------------------------- validation


def test_defaults_validate(registry):
    resolved = resolve({}, registry)
    assert resolved.spec == RunSpec()
    assert resolved.method.name == "ft" and resolved.augmenters == []
    assert [e.name for e in resolved.evaluators] == DEFAULT_EVALUATORS
    assert (resolved.spec.train.lr, resolved.spec.train.schedule) == (0.1, "multistep")


def test_a_validated_run_spec_resolves_again(registry):
    spec = resolve({"method": "neggrad", "seed": 3}, registry).spec
    assert resolve(spec, registry).method.name == "neggrad"


@pytest.mark.parametrize(
    "raw, line",
    [
        ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
        ({"data": {"nmae": "digits"}}, "data.nmae: Extra inputs are not permitted"),
        ({"method": {"name": "ft", "params": {"bogus": 1}}}, "method.params.bogus: Extra inputs are not permitted"),
        ({"method": {"name": "ft", "lr": 0.1}}, "method.lr: Extra inputs are not permitted"),
        ({"augment": [{"name": "coun-cl", "params": {"temperature": 0.1}}]},
         "augment.0.params.temperature: Extra inputs are not permitted"),
        ({"evaluate": ["accuracy", {"name": "mia", "params": {"feature": "loss"}}]},
         "evaluate.1.params.feature: Input should be 'confidence', 'correctness', 'entropy', 'm_entropy' or 'prob'"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"device": "gpu"}, "device: Value error, use auto, cpu, cuda, cuda:N or mps"),
        ({"train": {"lr": float("inf")}}, "train.lr: Input should be a finite number"),
        ({"method": {"name": "neggrad+", "params": {"beta": float("nan")}}}, "method.params.beta: Input should be a finite number"),
        ({"seed": 2**70}, "seed: Input should be at most 2147483647: integers beyond it overflow torch and numpy"),
        ({"method": {"name": "ft", "params": {"batch_size": 10**30}}},
         "method.params.batch_size: Input should be at most 2147483647: integers beyond it overflow torch and numpy"),
        ({"forget": {"kind": "class", "classes": [-1]}}, "forget.classes.0: Input should be greater than or equal to 0"),
    ],
    ids=["top-level", "section", "plugin-param", "plugin-spec", "augmenter-param", "evaluator-param", "range", "device",
         "inf", "plugin-nan", "huge-seed", "huge-plugin-count", "negative-class"],
)
def test_a_bad_field_is_one_line_naming_it(registry, raw, line):
    assert spec_errors(raw, registry) == [line]


def test_plugin_params_are_validated_against_the_plugins_own_params(registry):
    (line,) = spec_errors({"method": {"name": "neggrad+", "params": {"beta": 2}}}, registry)
    assert line.startswith("method.params.beta: ") and "less than or equal to 1" in line
    # neggrad's Params has no beta; neggrad+'s has.
    assert spec_errors({"method": {"name": "neggrad", "params": {"beta": 0.99}}}, registry) == [
        "method.params.beta: Extra inputs are not permitted"
    ]
    method = resolve({"method": {"name": "neggrad+", "params": {"beta": 0.95, "lr": 0.02}}}, registry).method
    assert (type(method).__name__, method.params.beta, method.params.lr, method.params.epochs) == ("NegGradPlus", 0.95, 0.02, 5)


def test_every_bad_field_is_reported_together(registry):
    raw = {"bogus": 1, "seed": -1, "method": {"name": "neggrad+", "params": {"beta": 2}}}
    with pytest.raises(SpecError) as caught:
        resolve(raw, registry, source="my.yaml")
    lines = caught.value.lines
    assert len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {"bogus", "seed", "method.params.beta"}
    assert str(caught.value).startswith("invalid my.yaml:\n  ")
    assert "`unlearn schema`" in caught.value.hint


def test_coun_cl_params_use_the_name_lambda(registry):
    raw = {"method": "neggrad", "augment": [{"name": "coun-cl", "params": {"lambda": 2.5, "tau": 0.2}}]}
    (augmenter,) = resolve(raw, registry).augmenters
    assert (augmenter.params.lambda_, augmenter.params.tau) == (2.5, 0.2)


def test_unknown_plugin_name_suggests_close_matches(registry):
    with pytest.raises(UnknownPluginError, match="'neggrad'"):
        resolve({"method": "negrad"}, registry)
    with pytest.raises(UnknownPluginError, match="unknown augmenter 'coun'; did you mean 'coun-cl'"):
        resolve({"augment": ["coun"]}, registry)


def test_augmenter_cannot_wrap_a_method_without_retain_steps(registry):
    (line,) = spec_errors({"method": "ga", "augment": ["coun-cl"]}, registry)
    assert line == (
        "augment.0: augmenter 'coun-cl' adds loss terms to retain-data training steps, and method 'ga' takes none"
    )


@pytest.mark.parametrize("method", ["neggrad", "neggrad+", "ft"])
def test_augmenter_wraps_methods_with_retain_steps(registry, method):
    resolved = resolve({"method": method, "augment": ["coun-cl"]}, registry)
    assert [a.name for a in resolved.augmenters] == ["coun-cl"]


@pytest.mark.parametrize("augment", ["none", None, [], ["none"]])
def test_none_means_no_augmenters(registry, augment):
    assert resolve({"method": "ga", "augment": augment}, registry).augmenters == []


def test_forget_scenarios_need_their_argument(registry):
    (line,) = spec_errors({"forget": {"kind": "class"}}, registry)
    assert line.startswith("forget: ") and "needs `classes`" in line
    (line,) = spec_errors({"forget": {"kind": "indices"}}, registry)
    assert line.startswith("forget: ") and "needs either `file` or `indices`" in line
    assert resolve({"forget": {"kind": "class", "classes": [3]}}, registry).spec.forget.classes == [3]


def test_method_must_support_the_forget_scenario():
    source = '''
    from unlearnkit import Method, hookimpl

    class RandomOnly(Method):
        name = "random-only"
        scenarios = ("random",)

    @hookimpl
    def register_methods(register):
        register(RandomOnly)
    '''
    module = types.ModuleType("random_only")
    exec(textwrap.dedent(source), module.__dict__)
    registry = discover(eps=[], modules=[("random-only", module)], env={})
    raw = {"method": "random-only", "evaluate": [], "forget": {"kind": "class", "classes": [1]}}
    assert spec_errors(raw, registry) == ["forget.kind: method 'random-only' supports random forgetting, not 'class'"]
    assert resolve({**raw, "forget": {"kind": "random"}}, registry).method.name == "random-only"


def test_evaluators_must_follow_those_they_need(registry):
    (line,) = spec_errors({"evaluate": ["avg-gap", "accuracy", "mia"]}, registry)
    assert line == "evaluate.0: 'avg-gap' needs RA, UA, TA, MIA from evaluators listed before it"
    (line,) = spec_errors({"evaluate": ["accuracy", "avg-gap"]}, registry)
    assert line == "evaluate.1: 'avg-gap' needs MIA from evaluators listed before it"
    # avg-gap over accuracy metrics only needs accuracy.
    raw = {"evaluate": ["accuracy", {"name": "avg-gap", "params": {"over": ["RA", "TA"]}}]}
    assert [e.name for e in resolve(raw, registry).evaluators] == ["accuracy", "avg-gap"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_validate(registry, path):
    resolve(read_spec_file(path), registry, source=path.name)


# --------------------------------------------------------------------------- --set overrides


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("seed=3", {"seed": 3}),
        ("train.lr=0.05", {"train": {"lr": 0.05}}),
        ("train.milestones=[0.3, 0.6]", {"train": {"milestones": [0.3, 0.6]}}),
        ("cache=false", {"cache": False}),
        ("output.overwrite=true", {"output": {"overwrite": True}}),
        ("data.root=null", {"data": {"root": None}}),
        ("data.name=digits", {"data": {"name": "digits"}}),
        ("data.name=a=b", {"data": {"name": "a=b"}}),
        ("forget.classes=[3, 5]", {"forget": {"classes": [3, 5]}}),
        ("method.params.lr=[", {"method": {"params": {"lr": "["}}}),  # not YAML: kept as text, validation decides
    ],
)
def test_set_path_reads_values_as_yaml(assignment, expected):
    spec: dict = {}
    set_path(spec, assignment)
    assert spec == expected


def test_set_path_keeps_sibling_fields():
    spec = {"train": {"epochs": 5, "lr": 0.1}, "seed": 1}
    set_path(spec, "train.lr=0.02")
    assert spec == {"train": {"epochs": 5, "lr": 0.02}, "seed": 1}


def test_set_path_indexes_lists_and_expands_bare_plugin_names():
    spec = {"method": "ft", "augment": ["coun-cl"]}
    set_path(spec, "augment.0.params.tau=0.2")
    set_path(spec, "method.params.lr=0.03")
    assert spec == {
        "method": {"name": "ft", "params": {"lr": 0.03}},
        "augment": [{"name": "coun-cl", "params": {"tau": 0.2}}],
    }


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("seed", "--set expects KEY=VALUE"),
        ("=3", "--set expects KEY=VALUE"),
        ("augment.1.params.tau=0.2", "'1' is not an index of a list of 1"),
        ("augment.first.params.tau=0.2", "'first' is not an index of a list of 1"),
        ("augment.-1.params.tau=0.2", "'-1' is not an index of a list of 1"),
    ],
)
def test_set_path_rejects_malformed_assignments(assignment, message):
    with pytest.raises(UnlearnkitError, match=message):
        set_path({"augment": ["coun-cl"]}, assignment)


def test_set_path_refuses_to_set_a_field_inside_a_scalar():
    spec = {"seed": 0}
    with pytest.raises(UnlearnkitError, match="holds a value, not fields"):
        set_path(spec, "seed.x=1")
    assert spec == {"seed": 0}


def test_exponent_without_dot_still_validates_as_a_number(registry):
    """YAML 1.1 reads 1e-3 as text; the float field accepts it all the same."""
    resolved = resolve(build_spec({}, overrides=["method.params.lr=1e-3", "train.lr=2e-2"]), registry)
    assert (resolved.method.params.lr, resolved.spec.train.lr) == (0.001, 0.02)


# --------------------------------------------------------------------------- merging file, flags and overrides

FILE_SPEC = {
    "seed": 1,
    "method": {"name": "neggrad", "params": {"lr": 0.002, "epochs": 3}},
    "augment": [{"name": "coun-cl", "params": {"lambda": 2.0}}],
}


def test_build_spec_without_flags_is_the_file():
    assert build_spec(FILE_SPEC) == FILE_SPEC


def test_same_method_flag_keeps_the_files_params():
    assert build_spec(FILE_SPEC, method="neggrad")["method"] == FILE_SPEC["method"]


def test_another_method_flag_drops_the_files_params():
    assert build_spec(FILE_SPEC, method="neggrad+")["method"] == {"name": "neggrad+", "params": {}}


def test_augment_flag_keeps_params_of_augmenters_the_file_names():
    assert build_spec(FILE_SPEC, augment=["coun-cl"])["augment"] == FILE_SPEC["augment"]
    assert build_spec({}, augment=["coun-cl"])["augment"] == [{"name": "coun-cl"}]


def test_augment_none_gives_no_augmenters(registry):
    spec = build_spec(FILE_SPEC, augment=["none"])
    assert spec["augment"] == []
    assert resolve(spec, registry).augmenters == []


def test_overrides_apply_after_the_flags():
    overrides = ["method.params.lr=0.05", "augment.0.params.tau=0.2", "seed=7"]
    spec = build_spec(FILE_SPEC, method="ft", augment=["coun-cl"], overrides=overrides)
    assert spec == {
        "seed": 7,
        "method": {"name": "ft", "params": {"lr": 0.05}},
        "augment": [{"name": "coun-cl", "params": {"lambda": 2.0, "tau": 0.2}}],
    }


def test_build_spec_leaves_the_file_spec_alone():
    before = json.loads(json.dumps(FILE_SPEC))
    build_spec(FILE_SPEC, method="neggrad", augment=["coun-cl"], overrides=["method.params.lr=0.5", "augment.0.params.tau=0.3"])
    assert FILE_SPEC == before


def test_set_method_params_without_a_method_edits_the_default(registry):
    resolved = resolve(build_spec({}, overrides=["method.params.lr=0.02"]), registry)
    assert (resolved.method.name, resolved.method.params.lr) == ("ft", 0.02)


def test_set_on_a_bare_method_name_from_the_file(registry):
    resolved = resolve(build_spec({"method": "neggrad+"}, overrides=["method.params.beta=0.95"]), registry)
    assert (resolved.method.name, resolved.method.params.beta) == ("neggrad+", 0.95)


# --------------------------------------------------------------------------- spec files


def test_read_yaml_spec_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method:\n  name: neggrad\n  params: {lr: 0.001}\naugment: [coun-cl]\nseed: 2\n")
    assert read_spec_file(path) == {"method": {"name": "neggrad", "params": {"lr": 0.001}}, "augment": ["coun-cl"], "seed": 2}


def test_read_json_spec_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(FILE_SPEC))
    assert read_spec_file(path) == FILE_SPEC


def test_empty_spec_file_is_an_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert read_spec_file(path) == {}


@pytest.mark.parametrize(
    "name, text, message",
    [
        (None, None, "cannot read spec file .*missing.yaml: No such file or directory"),
        ("bad.yaml", "method: [ft\n", "spec file .*bad.yaml is not valid YAML"),
        ("bad.json", '{"method": "ft",}', "spec file .*bad.json is not valid JSON"),
        ("list.yaml", "- ft\n- ga\n", "must hold a mapping of sections"),
        ("scalar.json", "3", "must hold a mapping of sections"),
    ],
    ids=["missing", "bad-yaml", "bad-json", "list", "scalar"],
)
def test_bad_spec_files_are_user_errors(tmp_path, name, text, message):
    path = tmp_path / (name or "missing.yaml")
    if text is not None:
        path.write_text(text)
    with pytest.raises(UnlearnkitError, match=message):
        read_spec_file(path)


def test_a_binary_spec_file_is_a_user_error(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(UnlearnkitError, match="spec file"):
        read_spec_file(path)


# --------------------------------------------------------------------------- the schema


def test_json_schema_describes_the_spec_and_every_plugins_params(registry):
    schema = json_schema(registry)
    json.dumps(schema)  # serialisable as is
    assert {"data", "model", "forget", "train", "method", "augment", "evaluate", "seed", "device"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    plugins = schema["x-plugins"]
    assert {kind: sorted(plugins[kind]) for kind in plugins} == {
        base.kind: registry.names(base) for base in (Method, Augmenter, Evaluator, Tracker)
    }
    assert "uri" in plugins["tracker"]["mlflow"]["properties"]
    assert {"lambda", "tau"} <= set(plugins["augmenter"]["coun-cl"]["properties"])
    assert plugins["method"]["neggrad+"]["properties"]["beta"]["maximum"] == 1
    assert plugins["method"]["ga"]["properties"]["lr"]["default"] == 5e-4
    assert all(p["additionalProperties"] is False for kind in plugins.values() for p in kind.values())


@pytest.mark.parametrize("name, text", [
    ("spec.yaml", "method: ft\nseed: 1\nseed: 2\n"),
    ("spec.yaml", "train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n"),
    ("spec.json", '{"method": "ft", "seed": 1, "seed": 2}'),
])
def test_a_key_given_twice_is_refused_rather_than_the_last_one_kept(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UnlearnkitError, match="is given twice"):
        read_spec_file(path)


def test_an_evaluator_that_needs_retrain_named_in_a_run_without_one_is_refused(registry):
    with pytest.raises(SpecError, match="evaluate.2: 'rmia' compares with Retrain, and this run trains none"):
        resolve({"retrain": False, "evaluate": ["accuracy", "mia", "rmia"]}, registry)
    resolve({"retrain": False}, registry)  # the default list: those needing Retrain are left out quietly
