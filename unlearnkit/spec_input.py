"""A run spec as the user writes it: a YAML or JSON file, flags, and `KEY=VALUE` overrides (the `--set`
language), merged into one raw mapping that `unlearnkit.resolve` then validates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from unlearnkit.errors import UnlearnkitError
from unlearnkit.spec import DEFAULT_METHOD


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key '{key}' is given twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"the key '{twice[0]}' is given twice in one object")
    return dict(pairs)


def read_spec_file(path: Path) -> dict[str, Any]:
    """A spec file's contents as a dict (YAML, of which JSON is a subset)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UnlearnkitError(f"cannot read spec file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UnlearnkitError(f"spec file {path} is not UTF-8 text (a YAML or JSON spec)") from None
    try:
        if Path(path).suffix == ".json":
            data = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except (yaml.YAMLError, ValueError) as exc:  # JSONDecodeError is a ValueError
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
