"""The run spec: one pydantic model, filled from a YAML/JSON file and/or CLI flags, validated once.

Plugin params are validated against each plugin's own `Params` model by `resolve`,
which also checks that the chosen augmenters can wrap the chosen method and that
the method supports the forget scenario.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import yaml
from pydantic import Field, StrictInt, ValidationError, field_validator, model_validator

from unlearnkit.api import Augmenter, Checked, Configurable, Evaluator, Method, TrainParams
from unlearnkit.errors import SpecError, UnlearnkitError
from unlearnkit.plugins import Registry, plugin_code


class Section(Checked):
    """A part of the run spec: unknown keys, non-finite floats and out-of-range integers are errors."""


class PluginSpec(Section):
    """A plugin by name, with params for its own Params model. A bare string means no params."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and value.get("params", {}) is None:  # an empty `params:` in YAML
            return {**value, "params": {}}
        return value


class DataSpec(Section):
    name: str = Field(
        "digits",
        description="a registered data set (digits, fashion-mnist, mnist, cifar10, cifar100, svhn, or a plugin's), "
        "or an ImageFolder directory",
    )
    root: Path | None = Field(None, description="where the data set's files are (default: its usual place)")
    download: bool = Field(False, description="download with torchvision when the files are not found")
    train_subset: int | None = Field(None, ge=2, description="use a fixed random subset of this many training samples")
    test_subset: int | None = Field(None, ge=1, description="use a fixed random subset of this many test samples")
    image_size: int = Field(32, ge=4, description="side to resize ImageFolder images to")
    crop_padding: int | None = Field(
        None, ge=0, le=16, description="training views: random-crop padding in pixels, 0 = no crop (default: the data set's)"
    )
    flip: bool | None = Field(None, description="training views: random horizontal flip (default: the data set's)")
    workers: int = Field(0, ge=0, le=64, description="DataLoader processes reading a data set given as torch Datasets")


class ModelSpec(Section):
    name: str = Field(
        "small-cnn",
        description="a registered architecture: small-cnn, resnet18, vgg16-bn, torchvision:NAME, timm:NAME, or a plugin's",
    )
    width: int | None = Field(
        None, ge=1, le=4096,
        description="channels of the first layer, later layers in proportion (default: the model's own: "
        "small-cnn 32, resnet18 64, vgg16-bn 64)",
    )


class ForgetSpec(Section):
    kind: Literal["random", "class", "indices", "sequential"] = "random"
    fraction: float = Field(
        0.1, gt=0, lt=1, description="random: share of the training set to forget; sequential: share per request"
    )
    classes: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, description="class: the classes to forget")
    file: Path | None = Field(None, description="indices: a file of training indices (JSON list or one per line)")
    indices: list[Annotated[StrictInt, Field(ge=0)]] | None = Field(  # strict: true or 2.0 names no sample
        None, description="indices: the training indices themselves, instead of a file"
    )
    steps: int = Field(5, ge=2, description="sequential: forget requests in a row, each unlearned from the last model")

    @model_validator(mode="after")
    def _complete(self) -> ForgetSpec:
        if self.kind == "class" and not self.classes:
            raise ValueError("class-wise forgetting needs `classes`, e.g. [3]")
        if self.kind == "indices" and (self.file is None) == (self.indices is None):
            raise ValueError("forgetting by indices needs either `file` or `indices`")
        if self.kind == "sequential" and self.fraction * self.steps >= 1:
            raise ValueError(f"sequential forgetting of {self.steps} requests of {self.fraction:g} each would forget "
                             f"{self.fraction * self.steps:.0%} of the training set; fraction x steps must be below 1")
        return self


class Recipe(TrainParams):
    """The original training recipe (Retrain uses it too): SGD, lr 0.1, x0.1 at 50% and 75% of training."""

    epochs: int = Field(30, ge=1)
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(128, ge=2)
    schedule: Literal["constant", "cosine", "multistep"] = "multistep"


class ComputeSpec(Section):
    """How training runs on the device; none of it changes what is computed beyond rounding."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a CUDA GPU that supports it, else fp32; fp16 scales the loss"
    )
    channels_last: bool | None = Field(None, description="convolutions in channels-last layout (default: on CUDA)")
    compile: bool = Field(False, description="compile the feature extractor and head with torch.compile")


class OutputSpec(Section):
    dir: Path | None = Field(None, description="the result bundle's folder (default: runs/<time>-<method>)")
    overwrite: bool = Field(False, description="replace an existing bundle (only once the new one is complete)")


DEFAULT_METHOD = "ft"
DEFAULT_EVALUATORS = ["accuracy", "mia", "avg-gap", "premise", "cost"]


class RunSpec(Section):
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    forget: ForgetSpec = Field(default_factory=ForgetSpec)
    train: Recipe = Field(default_factory=Recipe)
    method: PluginSpec = Field(default_factory=lambda: PluginSpec(name=DEFAULT_METHOD))
    augment: list[PluginSpec] = Field(default_factory=list)
    evaluate: list[PluginSpec] = Field(default_factory=lambda: [PluginSpec(name=n) for n in DEFAULT_EVALUATORS])
    seed: int = Field(0, ge=0)
    device: str = Field("auto", description="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    original: Path | None = Field(
        None, description="the original model's weights (.safetensors, or a .pt/.pth state dict) to unlearn from, instead of training one"
    )
    retrain: bool = Field(
        True, description="train Retrain and score every model against it; false: the reference-free metrics only (RA, UA, TA, MIA)"
    )
    cache: bool = Field(True, description="reuse cached original and Retrain models (UNLEARNKIT_CACHE_DIR)")
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("augment", mode="before")
    @classmethod
    def _none_means_empty(cls, value: Any) -> Any:
        if value in (None, "none"):
            return []
        if isinstance(value, list):
            return [v for v in value if v != "none"]
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda", "mps") and not (value.startswith("cuda:") and value[5:].isdigit()):
            raise ValueError("use auto, cpu, cuda, cuda:N or mps")
        return value


# --- building a spec from a file, flags and overrides --------------------------------------------


def read_spec_file(path: Path) -> dict[str, Any]:
    """A spec file's contents as a dict (YAML, of which JSON is a subset)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UnlearnkitError(f"cannot read spec file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UnlearnkitError(f"spec file {path} is not UTF-8 text (a YAML or JSON spec)") from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise UnlearnkitError(f"spec file {path} is not valid {'JSON' if Path(path).suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnlearnkitError(f"spec file {path} must hold a mapping of sections (data, model, method, ...)")
    return data


def set_path(spec: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is read as YAML (numbers, lists, booleans)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UnlearnkitError(f"--set expects KEY=VALUE, e.g. method.params.lr=0.02; got '{assignment}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: Any = spec
    parts = key.strip().split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        slot: str | int = part  # a key of a dict, an index of a list
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise UnlearnkitError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
            slot = int(part)
        if last:
            node[slot] = value
            break
        child = node[slot] if isinstance(slot, int) else node.get(slot)
        if isinstance(child, str) and _is_plugin_slot(parts[: i + 1]):
            child = {"name": child}  # a plugin given by bare name
        elif child is None:
            child = {}
        elif not isinstance(child, (dict, list)):
            raise UnlearnkitError(f"--set {key}: '{'.'.join(parts[: i + 1])}' holds a value, not fields")
        node[slot] = child
        node = child


def _is_plugin_slot(path: list[str]) -> bool:
    """method, augment.N or evaluate.N: places where a bare plugin name stands for {name: ...}."""
    return path == ["method"] or (len(path) == 2 and path[0] in ("augment", "evaluate") and path[1].isdigit())


def build_spec(
    file_spec: dict[str, Any] | None = None,
    *,
    method: str | None = None,
    augment: list[str] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Merge a file's spec with flags: --method and --augment replace those sections, --set edits fields."""
    spec = copy.deepcopy(file_spec or {})
    spec.setdefault("method", {"name": DEFAULT_METHOD})  # explicit, so --set method.params.* has a method to edit
    if method is not None:
        old = spec.get("method")
        kept = old.get("params", {}) if isinstance(old, dict) and old.get("name") == method else {}  # same method: its params
        spec["method"] = {"name": method, "params": kept}
    if augment is not None:
        old = {a.get("name"): a for a in spec.get("augment") or [] if isinstance(a, dict)}
        spec["augment"] = [copy.deepcopy(old.get(name, {"name": name})) for name in augment if name != "none"]
    for assignment in overrides:
        set_path(spec, assignment)
    return spec


# --- validation against the installed plugins --------------------------------------------------


def _error_lines(error: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"] if p not in ("function-after", "function-before"))
        where = ".".join(p for p in (prefix, loc) if p)
        lines.append(f"{where or '(top level)'}: {item['msg']}")
    return lines


@dataclass
class ResolvedRun:
    """A validated spec with its plugins instantiated."""

    spec: RunSpec
    method: Method
    augmenters: list[Augmenter]
    evaluators: list[Evaluator]

    @property
    def name(self) -> str:
        """method+augmenter+..., as tables and bundles show it."""
        return "+".join([self.method.name, *(a.name for a in self.augmenters)])


#: the spec's plugin sections and the base class of what each names
PLUGIN_SECTIONS: dict[str, type[Configurable]] = {"method": Method, "augment": Augmenter, "evaluate": Evaluator}


def _plugin_refs(raw: dict[str, Any] | RunSpec) -> dict[str, Sequence[PluginSpec | None]]:
    """The plugin sections, read leniently, so their params are checked even when other fields are wrong."""
    if isinstance(raw, RunSpec):
        return {"method": [raw.method], "augment": raw.augment, "evaluate": raw.evaluate}
    defaults = RunSpec.model_construct()
    refs: dict[str, Sequence[PluginSpec | None]] = {}
    for section in PLUGIN_SECTIONS:
        value = raw.get(section, getattr(defaults, section) if section != "method" else DEFAULT_METHOD)
        values = value if isinstance(value, list) else [value]
        parsed: list[PluginSpec | None] = []
        for item in values:
            try:
                parsed.append(PluginSpec.model_validate(item))
            except ValidationError:
                parsed.append(None)  # RunSpec validation reports it
        refs[section] = parsed
    return refs


def resolve(raw: dict[str, Any] | RunSpec, registry: Registry, source: str = "spec") -> ResolvedRun:
    """Validate a spec once, reporting every bad field together: its own fields and each plugin's params.

    Then check how the plugins combine: augmenters that cannot wrap the method,
    a forget scenario the method does not support, evaluators out of order.
    """
    errors: list[str] = []
    spec = raw if isinstance(raw, RunSpec) else None
    if spec is None:
        try:
            spec = RunSpec.model_validate(raw)
        except ValidationError as exc:
            errors += _error_lines(exc)

    plugins: dict[str, list[Any]] = {}
    for section, refs in _plugin_refs(raw).items():
        plugins[section] = []
        for i, ref in enumerate(refs):
            if ref is None or (section == "augment" and ref.name == "none"):
                continue
            cls = registry.get(PLUGIN_SECTIONS[section], ref.name)  # an unknown name stops here, with close matches
            where = section if section == "method" else f"{section}.{i}"
            try:
                params = cls.Params.model_validate(ref.params)
                with plugin_code(cls):  # a constructor that raises or exits is its plugin's fault
                    plugins[section].append(cls(params))
            except ValidationError as exc:
                errors += _error_lines(exc, f"{where}.params")
    if errors or spec is None:
        raise SpecError(errors, source)

    method, augmenters, evaluators = plugins["method"][0], plugins["augment"], plugins["evaluate"]
    for section, chosen in (("augment", augmenters), ("evaluate", evaluators)):
        names = [p.name for p in chosen]
        errors += [f"{section}: '{n}' is listed twice" for n in sorted(set(names)) if names.count(n) > 1]
    for i, augmenter in enumerate(augmenters):
        with plugin_code(augmenter):
            reason = augmenter.cannot_wrap(type(method))
        if reason:
            errors.append(f"augment.{i}: {reason}")
    if spec.forget.kind not in method.scenarios:
        errors.append(
            f"forget.kind: method '{method.name}' supports {', '.join(method.scenarios)} forgetting, "
            f"not '{spec.forget.kind}'"
        )
    produced: set[str] = set()
    for i, evaluator in enumerate(evaluators):
        missing = [m for m in evaluator.needs() if m not in produced]
        if missing:
            errors.append(f"evaluate.{i}: '{evaluator.name}' needs {', '.join(missing)} from evaluators listed before it")
        produced.update(evaluator.metrics)
    if errors:
        raise SpecError(errors, source)
    return ResolvedRun(spec, method, augmenters, evaluators)


def json_schema(registry: Registry) -> dict[str, Any]:
    """The run spec's JSON schema, with every installed plugin's params schema beside it."""
    schema = RunSpec.model_json_schema()
    schema["x-plugins"] = {
        base.kind: {name: registry.get(base, name).Params.model_json_schema() for name in registry.names(base)}
        for base in PLUGIN_SECTIONS.values()
    }
    return schema


__all__ = [
    "DataSpec", "ForgetSpec", "ModelSpec", "OutputSpec", "PluginSpec", "Recipe", "ResolvedRun", "RunSpec",
    "build_spec", "json_schema", "read_spec_file", "resolve", "set_path",
]
