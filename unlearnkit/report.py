"""Result tables: the same rows and formatting for the terminal (rich) and Markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rich import box
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # annotations only: the protocol sequence imports torch, and `unlearn plugins` imports this module
    from pathlib import Path

    from unlearnkit.plugins import PluginRecord
    from unlearnkit.sequence import RunResult, StepResult
    from unlearnkit.spec import RunSpec

LABELS = {"avg_gap": "Avg Gap", "premise": "Premise", "premise_control": "Premise (test)", "flops": "FLOPs", "seconds": "Time",
          "eval_flops": "Eval FLOPs", "kept_epoch": "Kept epoch"}
ROW_LABELS = {"original": "Original", "retrain": "Retrain"}


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if key == "kept_epoch":
        return f"{value:.0f}"
    if key in ("flops", "eval_flops"):
        for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
            if value >= scale:
                return f"{value / scale:.2f} {unit}"
        return f"{value:.0f}"
    if key == "seconds":
        return f"{value:.1f} s"
    return f"{value:.2f}"


def rows(metrics: Mapping[str, Mapping[str, float | None]], method: str) -> list[tuple[str, Mapping[str, float | None]]]:
    return [(ROW_LABELS.get(name, method), values) for name, values in metrics.items()]


def columns(metrics: Mapping[str, Mapping[str, float | None]]) -> list[str]:
    keys: list[str] = []
    for values in metrics.values():
        keys += [k for k in values if k not in keys]
    return keys


def run_title(name: str, spec: RunSpec, step: StepResult, steps: int) -> str:
    """The title of one forget request's table; the step is named only when there are several."""
    return (
        f"{name} on {spec.data.name} ({spec.model.name}), {spec.forget.kind} forgetting "
        f"of {len(step.split.forget)} samples"
        + (f", step {step.step} of {steps}" if step.step else "") + f", seed {spec.seed}"
    )


def run_report(result: RunResult, name: str, seconds: float, bundle: Path) -> list[Table | str]:
    """What `unlearn run` prints: a table per forget request (one in all but sequential forgetting), then where
    the references came from, the time and the bundle."""
    steps = result.steps
    tables: list[Table | str] = [rich_table(s.metrics, name, title=run_title(name, result.spec, s, len(steps))) for s in steps]
    retrain_sources = ", ".join(step.sources.get("retrain", "not trained (--no-retrain)") for step in steps)
    return tables + [f"original: {result.sources['original']}; retrain: {retrain_sources}; "
                     f"total {seconds:.1f} s; bundle: {bundle}"]


def validated(spec: RunSpec) -> str:
    """What `unlearn validate` prints of a spec it passed."""
    wrappers = "".join(f" + {a.name}" for a in spec.augment)
    return (f"valid: {spec.method.name}{wrappers} on {spec.data.name} ({spec.model.name}), "
            f"{spec.forget.kind} forgetting, seed {spec.seed}")


def rich_table(metrics: Mapping[str, Mapping[str, float | None]], method: str, title: str | None = None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # fits 80 columns
    table.add_column("model", no_wrap=True)
    keys = columns(metrics)
    for key in keys:
        table.add_column(LABELS.get(key, key), justify="right")
    for label, values in rows(metrics, method):
        table.add_row(label, *(format_value(k, values.get(k)) for k in keys))
    return table


def markdown_table(metrics: Mapping[str, Mapping[str, float | None]], method: str) -> str:
    keys = columns(metrics)
    lines = [
        "| model | " + " | ".join(LABELS.get(k, k) for k in keys) + " |",
        "| --- | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for label, values in rows(metrics, method):
        lines.append(f"| {label} | " + " | ".join(format_value(k, values.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def describe_run(lines: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"- {key}: {value}" for key, value in lines)


def premise_table(premise: Mapping[str, float]) -> Table:
    """`unlearn plot`'s premise agreement per model."""
    table = Table(title="premise agreement", caption="% of forget samples whose nearest retain-class centroid "
                  "(in the model's features) is the class Retrain predicts")
    table.add_column("model", no_wrap=True)
    table.add_column("agreement %", justify="right")
    for name, value in premise.items():
        table.add_row(name, f"{value:.2f}")
    return table


PLUGIN_COLUMNS = ("name", "kind", "version", "distribution", "status", "summary")
STATUS_COLOURS = {"loaded": "green", "failed": "red", "blocked": "yellow"}


def plugins_table(rows: Sequence[Mapping[str, Any]], width: int) -> Table:
    """`unlearn plugins` in `width` columns: summaries are cut to fit, or left out where under 20 columns are left."""
    cells = [
        [row["name"] or f"({row['plugin']})", row["kind"] or "-", row["version"] or "-", row["distribution"] or "-",
         row["status"], row["summary"] or row["error"] or ""]
        for row in rows
    ]
    widths = [max([len(column)] + [len(c[i]) for c in cells]) for i, column in enumerate(PLUGIN_COLUMNS)]
    room = width - sum(widths[:-1]) - 3 * len(widths) - 1  # what is left for the summary
    shown = PLUGIN_COLUMNS if room >= 20 else PLUGIN_COLUMNS[:-1]
    table = Table(title="unlearnkit plugins")
    for column, column_width in zip(shown, widths):
        table.add_column(column, no_wrap=True, min_width=min(column_width, room) if column == "summary" else column_width,
                         max_width=room if column == "summary" else None, overflow="ellipsis")
    for cell in cells:
        cell[4] = f"[{STATUS_COLOURS[cell[4]]}]{cell[4]}[/]"
        table.add_row(*cell[: len(shown)])
    return table


def plugin_failures(failed: Sequence[PluginRecord]) -> list[Text | str]:
    """The lines `unlearn plugins` prints below its table: each plugin that failed to load, then what to do."""
    if not failed:
        return []
    return [*(Text.assemble((f"{record.source} failed:", "red"), f" {record.error}") for record in failed),
            "UNLEARNKIT_STRICT_PLUGINS=1 shows a failing plugin's traceback; UNLEARNKIT_BLOCK_PLUGINS=NAME skips a plugin."]

