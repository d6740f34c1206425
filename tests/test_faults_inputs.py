"""Bad input, generated: every numeric field, output and cache paths, --overwrite, and validate against run.

Each case must fail before any training: exit 2, one message naming what is wrong, no traceback, and
nothing written (no bundle, no cached model). No real model is trained here.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from safetensors.torch import save_file

from unlearnkit import Augmenter, Evaluator, Method, cli
from unlearnkit.api import INT_LIMIT, Checked, Configurable, Params
from unlearnkit.bench.session import GRID_ENTRIES
from unlearnkit.bundle import CONTENTS, check_destination, write_bundle
from unlearnkit.errors import SpecError, UnlearnkitError
from unlearnkit.plugins import discover
from unlearnkit.resolve import resolve
from unlearnkit.spec import DEFAULT_EVALUATORS, RunSpec

# examples share the test's tmp_path and environment on purpose: none of them may write anything there;
# no example database: each run draws afresh and stores no examples in the work tree
FAST = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
REGISTRY = discover(env={})
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10)


pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Every case here must be refused before a run starts: starting one fails the test at once (no hang)."""
    from unlearnkit.protocol import ProtocolRun

    def started(*args, **kwargs):
        raise RuntimeError("a run started before the input checks refused it")

    monkeypatch.setattr(ProtocolRun, "__init__", started)


def unlearn(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns the exit code, stdout and stderr (no pytest fixture, so hypothesis can loop)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            cli.main(list(argv))
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
    return (code if isinstance(code, int) else 0), stdout.getvalue(), stderr.getvalue()


def refused(code: int, err: str) -> str:
    """The one error message of a refused command (its first line), after checking there is exactly one."""
    assert code == 2, err
    assert "Traceback" not in err
    assert err.count("error:") == 1, err
    return err.split("error:", 1)[1].strip().splitlines()[0]


def nothing_trained(cache: Path) -> bool:
    return not cache.exists() or not any(cache.iterdir())


# --------------------------------------------------------------------------- every numeric field


@dataclass
class Numeric:
    """A numeric field of the run spec or of a plugin's Params, with the spec it is set in."""

    path: str  # as an error line names it: train.lr, method.params.beta, augment.0.params.lambda
    kind: type  # int or float
    many: bool  # a list or tuple of them
    bounds: list[Any]  # the declared annotated_types bounds (Ge, Gt, Le, Lt)
    base: dict[str, Any]  # the spec the field is set in, its plugin chosen

    def __str__(self) -> str:
        return self.path


def _numeric(annotation: Any) -> tuple[type, bool, list[Any]] | None:
    """(int or float, whether a list or tuple of them, bounds on the elements) for a numeric annotation."""
    if annotation in (int, float):
        return annotation, False, []
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        found = _numeric(args[0])
        meta = [m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])]
        return (found[0], found[1], found[2] + meta) if found else None
    if origin in (list, tuple):
        found = _numeric(args[0])
        return (found[0], True, found[2]) if found else None
    if origin in (typing.Union, types.UnionType):
        return next((f for f in map(_numeric, args) if f), None)
    return None


def numeric_fields(model: type[BaseModel], prefix: str, base: dict[str, Any]) -> list[Numeric]:
    fields = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if isinstance(info.annotation, type) and issubclass(info.annotation, Checked):
            fields += numeric_fields(info.annotation, f"{prefix}{key}.", base)
            continue
        found = _numeric(info.annotation)
        if found:
            kind, many, element_bounds = found
            fields.append(Numeric(prefix + key, kind, many, list(info.metadata) + element_bounds, base))
    return fields


def _all_fields() -> list[Numeric]:
    fields = numeric_fields(RunSpec, "", {})
    for method in REGISTRY.entries(Method):
        fields += numeric_fields(method.cls.Params, "method.params.", {"method": {"name": method.name, "params": {}}})
    for augmenter in REGISTRY.entries(Augmenter):
        fields += numeric_fields(augmenter.cls.Params, "augment.0.params.",
                                 {"method": "ft", "augment": [{"name": augmenter.name, "params": {}}]})
    evaluators = DEFAULT_EVALUATORS + [n for n in REGISTRY.names(Evaluator) if n not in DEFAULT_EVALUATORS]
    for i, name in enumerate(evaluators):
        fields += numeric_fields(REGISTRY.get(Evaluator, name).Params, f"evaluate.{i}.params.",
                                 {"evaluate": [{"name": n, "params": {}} for n in evaluators]})
    return fields


FIELDS = _all_fields()
# the fields `--set` reaches from the command line (evaluators' params need an evaluate list: a spec file)
CLI_FIELDS = [f for f in FIELDS if not f.path.startswith("evaluate.")]


def out_of_range(field: Numeric) -> list[st.SearchStrategy]:
    """Finite values the field's own bounds refuse: below its Ge/Gt, above its Le/Lt."""
    found = []
    for bound in field.bounds:
        if isinstance(bound, (annotated_types.Ge, annotated_types.Gt)):
            edge, below = float(bound.ge if isinstance(bound, annotated_types.Ge) else bound.gt), True
        elif isinstance(bound, (annotated_types.Le, annotated_types.Lt)):
            edge, below = float(bound.le if isinstance(bound, annotated_types.Le) else bound.lt), False
        else:
            continue
        closed = isinstance(bound, (annotated_types.Ge, annotated_types.Le))  # the edge itself is allowed
        if field.kind is int:
            found.append(st.integers(-INT_LIMIT, math.ceil(edge) - 1) if below else st.integers(math.floor(edge) + 1, INT_LIMIT))
        elif below:
            found.append(st.floats(max_value=edge, exclude_max=closed, allow_nan=False, allow_infinity=False))
        else:
            found.append(st.floats(min_value=edge, exclude_min=closed, allow_nan=False, allow_infinity=False))
    return found


def bad_values(field: Numeric) -> st.SearchStrategy:
    """Values no run could use: non-finite, too large for torch and numpy, out of the field's range, of the wrong type."""
    scalars = [
        st.sampled_from([math.inf, -math.inf, math.nan]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),  # never a finite number
        *out_of_range(field),
    ]
    if field.kind is int:
        scalars += [st.integers(min_value=INT_LIMIT + 1) | st.integers(max_value=-INT_LIMIT - 1),
                    st.floats(-1e6, 1e6).filter(lambda x: not x.is_integer())]
    else:
        scalars.append(st.integers(min_value=2**1024))  # beyond the largest float
    bad = st.one_of(scalars)
    if field.many:  # one bad element among good ones, or one value where a list belongs
        good = 1 if field.kind is int else 0.5
        return st.builds(lambda n, b: [good] * n + [b], st.integers(0, 2), bad) | st.text(alphabet="xyz", min_size=1)
    return bad | st.lists(st.integers(0, 3), max_size=2) | st.dictionaries(NAME, st.integers(0, 3), max_size=1)


def with_value(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with `path` (dotted; digits index lists) set to `value`."""
    spec = json.loads(json.dumps(base))
    node: Any = spec
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[parts[-1]] = value
    return spec


def names_field(line: str, field: Numeric) -> bool:
    """Whether an error line is about `field` (or one element of it)."""
    return re.match(rf"{re.escape(field.path)}(\.\d+)?: \S", line) is not None


def test_every_numeric_field_is_found():
    """The generated tests below reach the fields they are meant to (a refactor must not empty FIELDS)."""
    paths = {f.path for f in FIELDS}
    for path in ("seed", "train.lr", "train.epochs", "train.milestones", "forget.fraction", "forget.classes",
                 "data.train_subset", "model.width", "method.params.beta", "augment.0.params.lambda"):
        assert path in paths, path


def test_every_plugin_params_model_inherits_the_checks():
    """First-party plugins (baselines, coun) and the core's own: no inf or nan, bounded integers, no unknown keys."""
    configurable = [entry for entry in REGISTRY.entries() if issubclass(entry.cls, Configurable)]
    assert configurable  # architectures and data sets take no params; methods, augmenters and evaluators do
    for entry in configurable:
        assert issubclass(entry.cls.Params, Params), entry.name
        config = entry.cls.Params.model_config
        assert config.get("allow_inf_nan") is False and config.get("extra") == "forbid", entry.name


class ThirdPartyParams(Params):
    """What a plugin author might write, with a config of its own: the base's checks still hold."""

    model_config = ConfigDict(populate_by_name=True)
    rate: float = 0.1
    steps: int = Field(3, ge=1)
    sizes: list[int] = []


@FAST
@given(st.sampled_from(numeric_fields(ThirdPartyParams, "", {})), st.data())
def test_a_third_party_params_model_refuses_what_cannot_run(field, data):
    value = data.draw(bad_values(field), label="value")
    with pytest.raises(ValidationError) as caught:
        ThirdPartyParams.model_validate({field.path: value})
    assert [e["loc"][0] for e in caught.value.errors()] == [field.path]


@pytest.mark.parametrize("field", FIELDS, ids=str)
@settings(max_examples=10, deadline=None, database=None)
@given(data=st.data())
def test_a_bad_number_in_any_field_is_one_line_naming_it(field, data):
    value = data.draw(bad_values(field), label="value")
    with pytest.raises(SpecError) as caught:
        resolve(with_value(field.base, field.path, value), REGISTRY)
    lines = caught.value.lines
    assert len(lines) == 1 and names_field(lines[0], field), lines


def as_yaml(value: Any) -> str:
    """How a user writes `value` after --set KEY= (.inf, .nan, a long integer, a flow list)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def plugin_flags(field: Numeric) -> list[str]:
    method = field.base.get("method")
    flags = ["--method", method if isinstance(method, str) else method["name"]] if method else []
    return flags + [arg for a in field.base.get("augment", []) for arg in ("--augment", a["name"])]


def specerror_lines(err: str) -> list[str]:
    return [line.strip() for line in err.splitlines() if line.startswith("  ")]


@FAST
@given(st.sampled_from(CLI_FIELDS), st.sampled_from(["validate", "run"]), st.data())
def test_the_cli_refuses_a_bad_number_before_training(tmp_path, private_cache, field, command, data):
    value = data.draw(bad_values(field), label="value")
    out = tmp_path / "out"
    code, _, err = unlearn(command, *plugin_flags(field), "--set", f"{field.path}={as_yaml(value)}", "--out", str(out))
    refused(code, err)
    lines = specerror_lines(err)
    assert len(lines) == 1 and names_field(lines[0], field), err
    assert not out.exists() and nothing_trained(private_cache)


@FAST
@given(st.sampled_from(FIELDS), st.data())
def test_a_spec_file_with_a_bad_number_is_refused(tmp_path, field, data):
    """The YAML route: .inf, .nan and long integers written in a spec file, every plugin's params reachable."""
    value = data.draw(bad_values(field), label="value")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(with_value(field.base, field.path, value)))
    code, _, err = unlearn("validate", str(spec), "--out", str(tmp_path / "out"))
    refused(code, err)
    lines = specerror_lines(err)
    assert len(lines) == 1 and names_field(lines[0], field), err


@FAST
@given(st.integers(min_value=INT_LIMIT + 1) | st.integers(max_value=-1))
def test_a_seed_flag_beyond_what_torch_takes_is_refused(tmp_path, private_cache, seed):
    code, _, err = unlearn("run", "--seed", str(seed), "--out", str(tmp_path / "out"))
    refused(code, err)
    assert specerror_lines(err)[0].startswith("seed: ")
    assert not (tmp_path / "out").exists() and nothing_trained(private_cache)


@FAST
@given(st.sampled_from(["inf", "-inf", "nan", "1e400"]), st.sampled_from(["{}:1", "0.001:{}", "{},0.01"]))
def test_a_tuning_range_with_a_bound_that_is_not_finite_is_refused(tmp_path, private_cache, bound, shape):
    text = "ft.lr=" + shape.format(bound)
    code, _, err = unlearn("tune", "--method", "ft", "--range", text, "--out", str(tmp_path / "t"), "--quiet")
    assert "finite" in refused(code, err) and text in err
    assert not (tmp_path / "t").exists() and nothing_trained(private_cache)


@FAST
@given(st.floats(0.001, 10), st.floats(0.001, 10), st.sampled_from(["", ":log"]))
def test_a_tuning_range_whose_bounds_are_reversed_is_refused(tmp_path, private_cache, a, b, log):
    low, high = max(a, b) * 1.5, min(a, b)  # LOW above HIGH
    text = f"ft.lr={low!r}:{high!r}{log}"
    code, _, err = unlearn("tune", "--method", "ft", "--range", text, "--out", str(tmp_path / "t"), "--quiet")
    assert "is above HIGH" in refused(code, err) and text in err
    assert not (tmp_path / "t").exists() and nothing_trained(private_cache)


@FAST
@given(st.integers(min_value=1001, max_value=2**63))
def test_a_seed_count_no_grid_could_hold_is_refused(tmp_path, private_cache, count):
    code, _, err = unlearn("bench", *GRID[:-1], str(count), "--out", str(tmp_path / "b"))
    refused(code, err)
    assert "seeds: " in err and "up to 1000" in err
    assert not (tmp_path / "b").exists() and nothing_trained(private_cache)


# --------------------------------------------------------------------------- output and cache paths

GRID = ["--methods", "ft", "--augment", "none", "--scenarios", "random:0.1", "--seeds", "1"]
WRITERS = {  # every command that writes, with the flags that make it do little
    "run": ["run", "--quiet"],
    "validate": ["validate"],
    "bench": ["bench", *GRID, "--quiet"],
    "tune": ["tune", "--method", "ft", "--quiet"],
}
SUBPATH = st.lists(NAME, min_size=1, max_size=3).map(lambda parts: Path(*parts))


@FAST
@given(st.sampled_from(sorted(WRITERS)), SUBPATH)
def test_an_output_path_under_a_file_is_refused_before_training(tmp_path, private_cache, command, below):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    out = blocker / below
    code, _, err = unlearn(*WRITERS[command], "--out", str(out))
    message = refused(code, err)
    assert str(out) in message and f"{blocker} is a file" in message
    assert "--out" in err  # what to do
    assert blocker.read_text() == "mine" and nothing_trained(private_cache)


@FAST
@given(st.sampled_from(sorted(WRITERS)), SUBPATH)
def test_a_cache_under_a_file_is_refused_before_training(tmp_path, monkeypatch, command, below):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(blocker / below))
    out = tmp_path / "out"
    code, _, err = unlearn(*WRITERS[command], "--out", str(out))
    message = refused(code, err)
    assert "model cache" in message and str(blocker / below) in message
    assert "UNLEARNKIT_CACHE_DIR" in err and not out.exists()


def test_no_cache_needs_no_cache_folder(tmp_path, monkeypatch):
    """A run that stores nothing in the cache does not care where it is."""
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(blocker / "cache"))
    code, out, err = unlearn("validate", "--no-cache", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert "valid:" in out


def _locked(monkeypatch, folder: Path) -> None:
    """Make `folder` unwritable for the checks (the tests run as root, whom file modes do not stop)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != folder and real(path, mode, **kw))


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_an_output_folder_you_cannot_write_is_refused(tmp_path, private_cache, monkeypatch, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    _locked(monkeypatch, locked)
    code, _, err = unlearn(*WRITERS[command], "--out", str(locked / "out"))
    message = refused(code, err)
    assert f"no permission to write in {locked}" in message and str(locked / "out") in message
    assert not any(locked.iterdir()) and nothing_trained(private_cache)


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_cache_you_cannot_write_is_refused(tmp_path, private_cache, monkeypatch, command):
    private_cache.mkdir()
    _locked(monkeypatch, private_cache)
    code, _, err = unlearn(*WRITERS[command], "--out", str(tmp_path / "out"))
    message = refused(code, err)
    assert "model cache" in message and f"no permission to write in {private_cache}" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the file mode says")
def test_a_read_only_folder_is_refused_for_real(tmp_path, private_cache):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code, _, err = unlearn("run", "--quiet", "--out", str(locked / "out"))
        assert "no permission to write in" in refused(code, err)
    finally:
        locked.chmod(0o700)


# --------------------------------------------------------------------------- --overwrite replaces only a bundle

USER_FILES = st.dictionaries(
    NAME.filter(lambda n: n not in CONTENTS) | st.sampled_from(sorted(CONTENTS - {"plots"})),
    st.binary(max_size=64), min_size=1, max_size=4,
)


def user_folder(folder: Path, files: dict[str, bytes]) -> Path:
    """`folder` holding exactly `files` (hypothesis examples share the test's tmp_path)."""
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@FAST
@given(USER_FILES, st.booleans())
def test_overwrite_never_replaces_a_folder_that_is_not_a_bundle(tmp_path, private_cache, files, overwrite):
    """User files (some under a bundle file's name, none of them a bundle's results.json) survive, untouched."""
    folder = user_folder(tmp_path / "mine", files)
    code, _, err = unlearn("run", "--quiet", "--out", str(folder), *(["--overwrite"] if overwrite else []))
    message = refused(code, err)
    assert f"output folder {folder} is not a result bundle" in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert nothing_trained(private_cache) and not list(tmp_path.glob(".mine.*"))


GRID_USER_FILES = st.dictionaries(  # a user's files, or a run bundle's, some named as a grid's reports are
    NAME.filter(lambda n: n not in GRID_ENTRIES) | st.sampled_from(sorted(CONTENTS | {"results.csv", "tuned.yaml"})),
    st.binary(max_size=64), min_size=1, max_size=4,
)


@FAST
@given(st.sampled_from(["bench", "tune"]), GRID_USER_FILES)
def test_a_grid_never_writes_into_a_folder_that_no_grid_wrote(tmp_path, private_cache, command, files):
    """A run bundle or a folder of the user's is refused as bench or tune results; its files stay untouched."""
    folder = user_folder(tmp_path / "mine", files)
    code, _, err = unlearn(*WRITERS[command], "--out", str(folder))
    assert f"{folder} is not a bench or tune results folder" in refused(code, err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert nothing_trained(private_cache)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_at_the_output_path_is_never_replaced(tmp_path, overwrite):
    target = tmp_path / "results"
    target.write_text("mine")
    code, _, err = unlearn("run", "--quiet", "--out", str(target), *(["--overwrite"] if overwrite else []))
    assert "is a file" in refused(code, err)
    assert target.read_text() == "mine"


def _result():
    from unlearnkit.data.forget import random_split
    from unlearnkit.models import small_cnn
    from unlearnkit.sequence import RunResult

    metrics = {"RA": 100.0, "UA": 0.0, "TA": 90.0, "MIA": 1.0}
    torch.manual_seed(0)
    return RunResult(spec=RunSpec(), method="ft", split=random_split(20, 0.1, 0),
                     metrics={m: dict(metrics) for m in ("original", "retrain", "unlearned")},
                     sources={"original": "trained", "retrain": "trained"}, unlearned=small_cnn(1, 10, width=2))


def test_overwrite_replaces_a_bundle_and_only_a_bundle(tmp_path):
    out = tmp_path / "bundle"
    write_bundle(_result(), out)
    (out / "plots").mkdir()  # `unlearn plot` draws into the bundle: it is still one
    with pytest.raises(UnlearnkitError, match="already holds a result bundle"):
        check_destination(out, overwrite=False)
    write_bundle(_result(), out, overwrite=True)
    assert (out / "results.json").is_file() and not (out / "plots").exists()

    (out / "notes.txt").write_text("mine")  # a user's file in a bundle: replacing it would lose the file
    with pytest.raises(UnlearnkitError, match="not a result bundle: it holds notes.txt"):
        write_bundle(_result(), out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.json").is_file()


def test_an_empty_folder_is_written_into(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    check_destination(out, overwrite=False)
    assert (write_bundle(_result(), out) / "results.json").is_file()


# --------------------------------------------------------------------------- validate fails where run would


def _fault(kind: str, name: str, tmp: Path) -> list[str]:
    """The flags of one mistake a user can make, for validate and run alike."""
    blocker = tmp / "a-file"
    blocker.write_text("mine")
    (tmp / "user").mkdir(exist_ok=True)
    (tmp / "user" / "keep.txt").write_text("mine")
    (tmp / "far.txt").write_text("1437\n")  # digits has 1437 training samples: 0..1436
    save_file({"w": torch.zeros(2)}, tmp / "other-model.safetensors")
    save_file({"head.weight": torch.full((10, 4), float("nan"))}, tmp / "diverged.safetensors")
    return {
        "model": ["--model", f"zz{name}"],
        "data-name": ["--data", f"zz{name}"],
        "data-dir": ["--data", str(tmp / "no-such-dir" / name)],
        "data-layout": ["--data", str(tmp / "user")],
        "data-root": ["--data", "fashion-mnist", "--data-root", str(tmp / "no-such-root" / name), "--no-download"],
        # a set read from files, none of them where it looks (the default places, or a folder that holds others)
        "data-files": ["--data", ("mnist", "cifar10", "cifar100", "svhn")[len(name) % 4]],
        "data-files-root": ["--data", ("fashion-mnist", "cifar10")[len(name) % 2], "--data-root", str(tmp / "user")],
        "original": ["--original", str(tmp / f"{name}.safetensors")],
        "forget-file": ["--forget", f"indices:{tmp / name}.txt"],
        "out-under-file": ["--out", str(blocker / name)],
        "out-not-bundle": ["--out", str(tmp / "user"), "--overwrite"],
        "number": ["--set", f"train.lr={name}"],
        "count": ["--set", "train.batch_size=-1"],
        "huge": ["--set", f"method.params.epochs={INT_LIMIT + len(name)}"],
        "device": ["--device", "cuda"],
        # what needs the data set's classes and size, checked from its outline before the images load
        "forget-class": ["--forget", f"class:{10 + len(name)}"],
        "forget-index": ["--forget", f"indices:{tmp / 'far.txt'}"],
        "forget-fraction": ["--forget", f"random:{1 / (3000 * len(name))}"],  # under half a sample of 1437
        "original-shape": ["--original", str(tmp / "other-model.safetensors")],
        "original-not-finite": ["--original", str(tmp / "diverged.safetensors")],
    }[kind]


FAULTS = ["model", "data-name", "data-dir", "data-layout", "data-root", "data-files", "data-files-root", "original", "forget-file",
          "out-under-file", "out-not-bundle", "number", "count", "huge",
          "forget-class", "forget-index", "forget-fraction", "original-shape", "original-not-finite"]
FAULTS += [] if torch.cuda.is_available() else ["device"]
# a word YAML reads as a string (yes, on, null are not): as --set train.lr=WORD, never a number
WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).filter(lambda w: isinstance(yaml.safe_load(w), str))


@pytest.mark.parametrize("fault", FAULTS)  # every kind, every time; the name in it is drawn
@settings(FAST, max_examples=3)
@given(name=WORD)
def test_validate_fails_where_run_would_with_the_same_message(tmp_path, private_cache, fault, name):
    flags = _fault(fault, name, tmp_path)
    out = [] if "--out" in flags else ["--out", str(tmp_path / "out")]
    code, _, err = unlearn("validate", *flags, *out)
    checked = refused(code, err)
    code, _, err = unlearn("run", "--quiet", *flags, *out)
    assert refused(code, err) == checked
    assert nothing_trained(private_cache) and not (tmp_path / "out").exists()
    assert (tmp_path / "user" / "keep.txt").read_text() == "mine"


def test_validate_passes_what_run_would_start(tmp_path, private_cache):
    (tmp_path / "idx.txt").write_text("1 2 3\n")
    code, out, err = unlearn("validate", "--forget", f"indices:{tmp_path / 'idx.txt'}",
                             "--out", str(tmp_path / "new" / "bundle"))
    assert code == 0, err
    assert "valid: ft on digits" in out
    assert not (tmp_path / "new").exists() and nothing_trained(private_cache)



@pytest.mark.parametrize("tuned_on", [[100, 101], "x", {"seeds": 5}, {"seeds": ["a"]}, {"seeds": [True]}])
def test_a_params_file_whose_tuned_on_is_malformed_is_refused(tmp_path, private_cache, tuned_on):
    params = tmp_path / "tuned.yaml"
    params.write_text(yaml.safe_dump({"params": {"ft": {"method": {"params": {"lr": 0.05}}}}, "tuned_on": tuned_on}))
    code, _, err = unlearn(*WRITERS["bench"], "--params", str(params), "--out", str(tmp_path / "grid"))
    assert f"{params}: tuned_on is not a mapping with a list of integer seeds" in refused(code, err)
    assert nothing_trained(private_cache) and not (tmp_path / "grid").exists()
