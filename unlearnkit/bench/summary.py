"""The paper's tables from finished cells: mean +- std over seeds, the gap to Retrain in brackets.

Written as Markdown (results.md), CSV (results.csv) and JSON (results.json), plus the
CL-integration figure (cl_integration.png) when the grid has wrapped and unwrapped variants.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from unlearnkit.bench.grid import scenario_label

ACCURACIES = ("RA", "UA", "TA", "MIA")
MEASURES = (*ACCURACIES, "avg_gap", "premise", "flops", "seconds")
REFERENCE_ROWS = ("Retrain", "Original")


@dataclass
class Stat:
    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Row:
    """One variant on one scenario, over its seeds."""

    variant: str
    method: str | None
    augment: list[str]
    seeds: list[int]
    stats: dict[str, Stat]
    gaps: dict[str, float] = field(default_factory=dict)  # |mean - Retrain's mean| of RA, UA, TA, MIA
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "method": self.method, "augment": self.augment, "seeds": self.seeds,
            **{k: {"mean": s.mean, "std": s.std, "values": s.values} for k, s in self.stats.items()},
            "gap_to_retrain": self.gaps, "params": self.params,
        }


def tabulate(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Row]]:
    """scenario -> variant -> Row; Retrain and Original first, then variants in the order records come."""
    grouped: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[record["scenario"]][record["variant"]].append(record)
    tables: dict[str, dict[str, Row]] = {}
    for scenario, variants in grouped.items():
        names = [n for n in REFERENCE_ROWS if n in variants] + [n for n in variants if n not in REFERENCE_ROWS]
        rows = {}
        for name in names:
            cells = sorted(variants[name], key=lambda r: r["seed"])
            stats = {}
            for key in MEASURES:
                values = [r["metrics"][key] for r in cells if r["metrics"].get(key) is not None]
                if values:
                    stats[key] = Stat(values)
            first = cells[0]
            rows[name] = Row(name, first.get("method"), first.get("augment", []), [r["seed"] for r in cells], stats,
                             params=first.get("params", {}))
        retrain_by_seed = {r["seed"]: r["metrics"] for r in variants.get("Retrain", [])}
        for row in rows.values():
            # against Retrain on the same seeds, should a variant lack some (a failed cell)
            references = [retrain_by_seed[s] for s in row.seeds if s in retrain_by_seed]
            if len(references) == len(row.seeds):
                row.gaps = {k: abs(row.stats[k].mean - statistics.fmean(m[k] for m in references))
                            for k in ACCURACIES if k in row.stats}
        tables[scenario] = rows
    return tables


def _cell(stat: Stat | None, gap: float | None = None, n: int = 1) -> str:
    if stat is None:
        return "n/a"
    text = f"{stat.mean:.2f} ± {stat.std:.2f}" if n > 1 else f"{stat.mean:.2f}"
    return text + (f" ({gap:.2f})" if gap is not None else "")


def _pflops(stat: Stat | None) -> str:
    return "n/a" if stat is None else f"{stat.mean / 1e15:.3g}"


COLUMNS = ["method", "RA", "UA", "TA", "MIA", "Avg Gap", "Premise", "PFLOPs", "Time (s)"]


def markdown(tables: dict[str, dict[str, Row]], counts: dict[str, str]) -> str:
    """One table per scenario. Brackets: |mean - Retrain's mean|. Avg Gap: mean over seeds of each seed's gap."""
    parts = []
    for scenario, rows in tables.items():
        parts.append(f"### {scenario_label(scenario)}{counts.get(scenario, '')}\n")
        parts.append("| " + " | ".join(COLUMNS) + " |")
        parts.append("| --- |" + " ---: |" * (len(COLUMNS) - 1))
        for name, row in rows.items():
            n = len(row.seeds)
            cells = [_cell(row.stats.get(k), None if name == "Retrain" else row.gaps.get(k), n) for k in ACCURACIES]
            cells += [_cell(row.stats.get("avg_gap"), None, n), _cell(row.stats.get("premise"), None, n),
                      _pflops(row.stats.get("flops")), _cell(row.stats.get("seconds"), None, n)]
            parts.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def csv_text(tables: dict[str, dict[str, Row]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["scenario", "variant", "method", "augment", "seeds"]
    for key in MEASURES:
        header += [f"{key}_mean", f"{key}_std"] + ([f"{key}_gap"] if key in ACCURACIES else [])
    writer.writerow(header)
    for scenario, rows in tables.items():
        for name, row in rows.items():
            line = [scenario, name, row.method or "", "+".join(row.augment), " ".join(map(str, row.seeds))]
            for key in MEASURES:
                stat = row.stats.get(key)
                line += [stat.mean, stat.std] if stat else ["", ""]
                if key in ACCURACIES:
                    line.append(row.gaps.get(key, ""))
            writer.writerow(line)
    return buffer.getvalue()


def cl_changes(tables: dict[str, dict[str, Row]]) -> dict[str, dict[str, float]]:
    """scenario -> "method (+A)" -> % change of Avg Gap when augmenter(s) A wrap the method (negative: closer)."""
    changes: dict[str, dict[str, float]] = {}
    for scenario, rows in tables.items():
        for name, row in rows.items():
            if not row.augment or row.method not in rows or "avg_gap" not in row.stats:
                continue
            plain = rows[row.method].stats.get("avg_gap")
            if plain is None or plain.mean == 0:
                continue
            label = row.method if len({tuple(r.augment) for r in rows.values() if r.augment}) == 1 else name
            changes.setdefault(scenario, {})[label] = 100.0 * (row.stats["avg_gap"].mean - plain.mean) / plain.mean
    return changes


def changes_markdown(changes: dict[str, dict[str, float]]) -> str:
    methods = list(dict.fromkeys(m for per in changes.values() for m in per))
    lines = ["| method | " + " | ".join(scenario_label(s) for s in changes) + " |",
             "| --- |" + " ---: |" * len(changes)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(
            f"{per[method]:+.1f}%" if method in per else "n/a" for per in changes.values()) + " |")
    return "\n".join(lines) + "\n"


def flatten(overlay: dict[str, Any], prefix: str = "") -> list[str]:
    """{method: {params: {lr: 0.1}}} -> ["method.params.lr=0.1"]; augment lists by plugin name."""
    lines = []
    for key, value in overlay.items():
        if key == "augment" and isinstance(value, list):
            for item in value:
                lines += flatten(item.get("params", {}), f"{prefix}{item['name']}.")
        elif isinstance(value, dict):
            lines += flatten(value, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key}={json.dumps(value)}")
    return lines


def _settings(records: list[dict[str, Any]]) -> str:
    """The params each variant ran with beyond its plugins' defaults, as set by the bench spec or a tuning."""
    chosen = {}
    for record in records:
        if record.get("overlay"):
            chosen.setdefault(record["variant"], ", ".join(flatten(record["overlay"])))
    if not chosen:
        return ""
    return "\nParams set beyond the plugins' defaults:\n\n" + "".join(f"- {v}: {p}\n" for v, p in chosen.items()) + "\n"


def write_reports(folder: Path, records: list[dict[str, Any]], header: str, meta: dict[str, Any]) -> list[Path]:
    """results.md / .csv / .json (and cl_integration.png) in `folder`; returns the files written."""
    tables = tabulate(records)
    counts = {}
    for record in records:
        counts[record["scenario"]] = (f" (forget {record['forget_count']} of "
                                      f"{record['forget_count'] + record['retain_count']} training samples)")
    changes = cl_changes(tables)
    text = header + "\n" + markdown(tables, counts) + _settings(records)
    if changes:
        text += "\n### Avg Gap change when wrapped (negative: closer to Retrain)\n\n" + changes_markdown(changes)
    written = [folder / "results.md", folder / "results.csv", folder / "results.json"]
    folder.mkdir(parents=True, exist_ok=True)
    written[0].write_text(text)
    written[1].write_text(csv_text(tables))
    payload = {**meta, "tables": {s: {n: r.as_dict() for n, r in rows.items()} for s, rows in tables.items()},
               "avg_gap_change_percent": changes, "cells": records}
    written[2].write_text(json.dumps(payload, indent=1) + "\n")
    if changes:
        from unlearnkit.figures import cl_integration

        written.append(cl_integration(changes, folder / "cl_integration.png"))
    return written
