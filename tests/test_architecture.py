"""The layering the code promises (docs/design.md), read from the import statements themselves.

Every import counts: at module level, under TYPE_CHECKING and inside functions, so that the
picture holds for a reader, for the type checker and at run time alike.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import unlearnkit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unlearnkit"
#: the plugin contract: what a plugin sees (the facade re-exports it); it must not reach into the toolkit above it
CONTRACT = {"unlearnkit.api", "unlearnkit.contract", "unlearnkit.params", "unlearnkit.errors", "unlearnkit.hookspecs",
            # the plain types a data-set plugin returns
            "unlearnkit.data.images", "unlearnkit.data.streamed"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import statement in a file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package
                package = module_name(path).split(".")
                package = package if path.name == "__init__.py" else package[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def targets(path: Path) -> set[str]:
    """The toolkit's modules a file imports: `from unlearnkit import cache` is an import of unlearnkit.cache,
    `from unlearnkit import Method` one of the facade itself."""
    found = set()
    for module, names, _ in imports(path):
        if module != "unlearnkit" and not module.startswith("unlearnkit."):
            continue
        submodules = [f"{module}.{name}" for name in names if f"{module}.{name}" in MODULES]
        found.update(submodules)
        if len(submodules) < len(names) or not names:
            while module not in MODULES:
                module = module.rpartition(".")[0]
            found.add(module)
    return found


GRAPH = {name: targets(path) - {name} for name, path in MODULES.items()}


def cycle_through(start: str) -> list[str] | None:
    """A chain of imports from `start` back to itself, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, chain = stack.pop()
        for nxt in sorted(GRAPH[node]):
            if nxt == start:
                return chain + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, chain + [nxt]))
    return None


def test_the_toolkit_has_no_import_cycle():
    cycles = {" -> ".join(c) for name in GRAPH if (c := cycle_through(name))}
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_the_graph_sees_imports_in_functions_and_under_type_checking():
    # the reader above is what every other test here rests on: it must see the imports that hide
    assert "unlearnkit.plugins" in GRAPH["unlearnkit.models"]  # inside build()
    assert "unlearnkit.contract" in GRAPH["unlearnkit.api"]  # under TYPE_CHECKING only


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_the_contract_imports_nothing_above_it(name):
    assert GRAPH[name] <= CONTRACT, f"{name} imports {sorted(GRAPH[name] - CONTRACT)}"


def test_no_internal_module_imports_the_public_facade():
    # the facade imports the toolkit (lazily); the toolkit importing the facade back would close a cycle
    importers = sorted(name for name, found in GRAPH.items() if "unlearnkit" in found)
    assert importers == []


PLUGIN_CODE = sorted(p for pattern in ("plugins/*/unlearnkit_*/**/*.py", "examples/*/unlearnkit_*/**/*.py")
                     for p in ROOT.glob(pattern))


def test_there_is_first_party_plugin_code_to_check():
    assert len(PLUGIN_CODE) >= 10


@pytest.mark.parametrize("path", PLUGIN_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_party_plugins_import_only_the_public_api(path):
    """Plugins are written as a third party's would be: everything they use comes from `unlearnkit` and is public."""
    public = set(unlearnkit.__all__)
    for module, names, line in imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        if module.startswith("unlearnkit."):
            pytest.fail(f"{where} imports {module}: plugins import from `unlearnkit` only")
        if module == "unlearnkit":
            assert names and set(names) <= public, f"{where} imports {sorted(set(names) - public)}, not in unlearnkit.__all__"


def test_every_public_name_resolves_and_only_those_are_offered():
    for name in unlearnkit.__all__:
        assert getattr(unlearnkit, name) is not None
    with pytest.raises(AttributeError):
        unlearnkit.Workbench  # noqa: B018 - the engine's class is internal


def test_the_public_api_is_documented():
    """docs/writing-plugins.md lists the public API; every other module is internal."""
    text = (ROOT / "docs" / "writing-plugins.md").read_text()
    listed = set(re.findall(r"`([A-Za-z_]+)`", text))
    missing = sorted(set(unlearnkit.__all__) - listed - {"__version__"})
    assert missing == [], f"public names docs/writing-plugins.md does not mention: {missing}"
