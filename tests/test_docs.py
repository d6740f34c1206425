"""The generated docs (spec field tables, command reference) match the code they are generated from."""

import importlib.util
import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

GENERATOR = Path(__file__).resolve().parents[1] / "docs" / "generate.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("docs_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_current(generator):
    diff = generator.stale()
    assert not diff, f"generated docs are stale; run `{generator.REGENERATE}` and commit the result:\n{diff}"


class Inner(BaseModel):
    """What an inner section is."""

    name: str
    size: int | None = Field(None, ge=1, le=8, description="how big (default: <auto>)")


class Outer(BaseModel):
    inner: Inner = Field(default_factory=lambda: Inner(name="a"))
    items: list[Inner] = Field(default_factory=lambda: [Inner(name="b"), Inner(name="c", size=2)])
    kind: Literal["x", "y"] = "x"
    ratio: float = Field(0.5, gt=0, lt=1, description="a | b")


def test_field_tables_give_type_default_bounds_and_description(generator):
    assert generator.field_tables(Outer) == "\n".join([
        "| field | type | default | bounds | description |",
        "| --- | --- | --- | --- | --- |",
        "| `inner` | [mapping](#inner-items) |  |  |  |",
        "| `items` | list of [mapping](#inner-items) | `[b, {name: c, size: 2}]` |  |  |",
        "| `kind` | `x` or `y` | `x` |  |  |",
        "| `ratio` | float | `0.5` | > 0, < 1 | a \\| b |",
        "",
        "### inner, items[]",
        "",
        "What an inner section is.",
        "",
        "| field | type | default | bounds | description |",
        "| --- | --- | --- | --- | --- |",
        "| `name` | string | required |  |  |",
        "| `size` | int or null | `null` | ≥ 1, ≤ 8 | how big (default: &lt;auto>) |",
    ])


def test_check_fails_with_the_command_that_regenerates(generator, tmp_path, monkeypatch, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    spec = (GENERATOR.parent / "spec.md").read_text()
    (docs / "spec.md").write_text(spec.replace("| `seed` |", "| `seeds` |"))
    monkeypatch.setattr(generator, "DOCS", docs)

    assert generator.main(["--check"]) == 1
    report = capsys.readouterr().err
    assert "-| `seeds` |" in report and "+| `seed` |" in report and "docs/cli.md" in report
    assert "run `python docs/generate.py`" in report

    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert "| `seed` |" in (docs / "spec.md").read_text() and (docs / "cli.md").exists()


def test_a_lost_region_marker_is_named(generator, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    spec = (GENERATOR.parent / "spec.md").read_text()
    (docs / "spec.md").write_text(spec.replace("<!-- end generated: bench-spec -->", ""))
    monkeypatch.setattr(generator, "DOCS", docs)
    with pytest.raises(SystemExit, match="bench-spec"):
        generator.main(["--check"])


def test_the_hand_written_flags_table_names_only_options_of_run():
    spec = (GENERATOR.parent / "spec.md").read_text()
    cli = (GENERATOR.parent / "cli.md").read_text()
    flags_table = spec.split("## Flags", 1)[1].split("\n## ", 1)[0]
    run_options = cli.split("## unlearn run\n", 1)[1].split("\n## ", 1)[0]
    flags = set(re.findall(r"`(--?[a-z][a-z-]*)", flags_table))
    unknown = {flag for flag in flags if not re.search(re.escape(flag) + r"(?![\w-])", run_options)}
    assert flags and not unknown, f"docs/spec.md's flags table names options unlearn run lacks: {sorted(unknown)}"
