"""Write the parts of the docs that the code defines, so they cannot drift from it.

    python docs/generate.py           rewrite them
    python docs/generate.py --check   exit 1, showing the difference, when they are stale

What is generated: the field tables of docs/spec.md (from the run spec's and the bench
spec's pydantic models), between `<!-- begin generated: NAME ... -->` and
`<!-- end generated: NAME -->`, and the whole of docs/cli.md (from the Typer app).
The prose around the tables stays hand-written. tests/test_docs.py runs the check.
"""

from __future__ import annotations

import difflib
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from typer.core import TyperGroup

from unlearnkit.bench.grid import BenchSpec
from unlearnkit.cli import app
from unlearnkit.spec import RunSpec

DOCS = Path(__file__).resolve().parent
REGENERATE = "python docs/generate.py"

REGION = re.compile(r"(<!-- begin generated: (?P<name>[\w-]+) .*?-->\n)(.*?)(<!-- end generated: (?P=name) -->)", re.S)


# --- markdown -------------------------------------------------------------------------------------


def cell(text: str) -> str:
    """Text fit for one table cell: one line, pipes escaped, and `<time>` outside code shown rather than read as HTML."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(part if i % 2 else re.sub(r"<(?=[A-Za-z/!?])", "&lt;", part) for i, part in enumerate(parts))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def anchor(heading: str) -> str:
    """The link target GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


# --- spec field tables ----------------------------------------------------------------------------

BOUNDS = {annotated_types.Gt: (">", "gt"), annotated_types.Ge: ("≥", "ge"), annotated_types.Lt: ("<", "lt"),
          annotated_types.Le: ("≤", "le")}
NAMES: dict[Any, str] = {str: "string", int: "int", float: "float", bool: "bool", Path: "path", Any: "any", type(None): "null"}


def bounds(metadata: list[Any]) -> str:
    """≥ 2, < 1, ...: the numeric constraints among a field's metadata, nested Field(...) included."""
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.append(bounds(item.metadata))
        elif type(item) in BOUNDS:
            symbol, attribute = BOUNDS[type(item)]
            found.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(f for f in found if f)


def yaml_value(value: Any) -> str:
    """A default as it is written in a YAML spec."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(yaml_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, BaseModel):
        fields = value.model_dump(exclude_defaults=True)
        return str(fields["name"]) if list(fields) == ["name"] else yaml_value(fields)  # a plugin without params: its bare name
    return str(value)


class FieldTables:
    """One table for a model's fields, then one for each model nested in them, headed by the fields that hold it."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.holders: dict[type[BaseModel], list[str]] = {}  # nested model -> the fields that hold it: data, augment[]
        self._collect(model, "")

    def _collect(self, model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            for nested, suffix in self._models_in(field.annotation):
                first = nested not in self.holders
                self.holders.setdefault(nested, []).append(prefix + name + suffix)
                if first:
                    self._collect(nested, prefix + name + suffix + ".")

    def _models_in(self, annotation: Any, suffix: str = "") -> list[tuple[type[BaseModel], str]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [(annotation, suffix)]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            return self._models_in(args[0], suffix)
        in_items = "[]" if origin in (list, tuple) else ""
        return [found for arg in args for found in self._models_in(arg, suffix + in_items)]

    def heading(self, model: type[BaseModel]) -> str:
        return ", ".join(self.holders[model])

    def type_name(self, annotation: Any) -> str:
        if annotation in NAMES:
            return NAMES[annotation]
        if annotation in self.holders:
            return f"[mapping](#{anchor(self.heading(annotation))})"
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is typing.Annotated:
            return " ".join(filter(None, [self.type_name(args[0]), bounds(list(args[1:]))]))
        if origin is typing.Literal:
            values = [f"`{value}`" for value in args]
            return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
        if origin in (typing.Union, types.UnionType):
            return " or ".join(self.type_name(arg) for arg in args)
        if origin in (list, tuple):
            return "list of " + self.type_name(args[0])
        if origin is dict:
            return "mapping"
        raise TypeError(f"{REGENERATE} does not know how to write the type {annotation}")

    def table(self, model: type[BaseModel]) -> str:
        rows = []
        for name, field in model.model_fields.items():
            if field.is_required():
                default = "required"
            elif field.annotation in self.holders:
                default = ""  # the nested table gives each of its fields' defaults
            else:
                default = f"`{yaml_value(field.get_default(call_default_factory=True))}`"
            rows.append([f"`{name}`", cell(self.type_name(field.annotation)), cell(default),
                         cell(bounds(field.metadata)), cell(field.description or "")])
        return table(["field", "type", "default", "bounds", "description"], rows)

    def markdown(self, model: type[BaseModel]) -> str:
        parts = [self.table(model)]
        for nested in self.holders:
            lead = [nested.__doc__.strip()] if nested.__doc__ else []
            parts += [f"### {self.heading(nested)}", *lead, self.table(nested)]
        return "\n\n".join(parts)


def field_tables(model: type[BaseModel]) -> str:
    return FieldTables(model).markdown(model)


# --- the command reference ------------------------------------------------------------------------

EXTRAS = re.compile(r"^(?P<help>.*?)\s*(?:\[(?P<extras>[^\[\]]*)\])?$", re.S)  # click's trailing [default: 1; x>=1]


def parameter_row(param: Any, context: Any) -> list[str] | None:
    record = param.get_help_record(context)
    if record is None or param.name == "help":  # hidden, or --help, which every command has
        return None
    declaration, help_text = record
    parts = EXTRAS.match(help_text)
    assert parts is not None  # the pattern matches any text
    return [cell(f"`{declaration}`"), cell(parts["help"]), cell(parts["extras"] or "")]


def cli_reference() -> str:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)  # an app of several commands
    root = group.context_class(group, info_name="unlearn")
    lines = [
        "# Command reference",
        "",
        f"<!-- generated from the Typer app in unlearnkit/cli.py by `{REGENERATE}`: edit the code, not this page -->",
        "",
        group.help or "",
        "",
        f"`{group.get_usage(root).removeprefix('Usage: ')}`; every command takes `--help`.",
        "Errors print one message and a hint; `UNLEARNKIT_DEBUG=1` shows the traceback behind it.",
    ]
    for name, command in group.commands.items():
        context = command.context_class(command, info_name=name, parent=root)
        rows = [row for param in command.get_params(context) if (row := parameter_row(param, context))]
        lines += ["", f"## unlearn {name}", "", f"`{command.get_usage(context).removeprefix('Usage: ')}`", ""]
        lines += [(command.help or "").split("\f")[0].strip()]
        if rows:
            lines += ["", table(["argument or option", "description", "default, bounds"], rows)]
    return "\n".join(lines) + "\n"


# --- writing and checking -------------------------------------------------------------------------


def fill_regions(path: Path, regions: dict[str, str]) -> str:
    """The file's text with each generated region's body replaced."""
    text = path.read_text()
    found = {match["name"] for match in REGION.finditer(text)}
    if found != set(regions):
        raise SystemExit(f"{path}: expected generated regions {sorted(regions)}, found {sorted(found)}")
    return REGION.sub(lambda match: f"{match[1]}\n{regions[match['name']]}\n\n{match[4]}", text)


def generated() -> dict[Path, str]:
    """Each generated file's path and the text it should hold."""
    spec = DOCS / "spec.md"
    return {
        spec: fill_regions(spec, {"run-spec": field_tables(RunSpec), "bench-spec": field_tables(BenchSpec)}),
        DOCS / "cli.md": cli_reference(),
    }


def stale() -> str:
    """A unified diff of each generated file against what it should hold; empty when all are current."""
    diffs: list[str] = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else ""
        name = str(path.relative_to(DOCS.parent))
        diffs += difflib.unified_diff(current.splitlines(True), text.splitlines(True), name, f"{name} (generated)")
    return "".join(diffs)


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        diff = stale()
        if diff:
            print(f"{diff}\nthe docs above are stale: run `{REGENERATE}`", file=sys.stderr)
        return 1 if diff else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for path, text in generated().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
