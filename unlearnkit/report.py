"""Result tables: the same rows and formatting for the terminal (rich) and Markdown."""

from __future__ import annotations

from typing import Mapping, Sequence

from rich import box
from rich.table import Table

LABELS = {"avg_gap": "Avg Gap", "premise": "Premise", "flops": "FLOPs", "seconds": "Time"}
ROW_LABELS = {"original": "Original", "retrain": "Retrain"}


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if key == "flops":
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
