"""The paper's tables from finished cells: mean +- std over seeds, the gap to Retrain in brackets.

Written as Markdown (results.md), CSV (results.csv) and JSON (results.json), plus the
CL-integration figure (cl_integration.png) when the grid has wrapped and unwrapped variants.
The regime check and tuning trials are also rendered here as rich tables for the terminal.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from rich.table import Table

from unlearnkit.bench.grid import scenario_label
from unlearnkit.files import atomic_write_json, atomic_write_text

ACCURACIES = ("RA", "UA", "TA", "MIA")
#: measured but not part of the Avg Gap: RMIA (a per-example attack with Retrain as its reference) sits beside MIA
MEASURES = (*ACCURACIES, "RMIA", "avg_gap", "premise", "flops", "seconds")
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


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided 95% confidence interval (Student's t over n paired seeds)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.n > 1 and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": [self.low, self.high] if self.n > 1 else None, "n": self.n,
                "significant": self.significant}


def paired_interval(differences: list[float]) -> Interval:
    """95% CI of the mean of paired differences; with one pair the interval is unknown (infinite)."""
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return Interval(mean, -math.inf, math.inf, n)
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * statistics.stdev(differences) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def welch_interval(first: list[float], second: list[float]) -> Interval:
    """95% CI of mean(second) - mean(first) for two unpaired samples (Welch's t, unequal variances)."""
    from scipy.stats import t

    n1, n2 = len(first), len(second)
    mean = statistics.fmean(second) - statistics.fmean(first)
    if min(n1, n2) < 2:
        return Interval(mean, -math.inf, math.inf, min(n1, n2))
    v1, v2 = statistics.variance(first) / n1, statistics.variance(second) / n2
    if v1 + v2 == 0:
        return Interval(mean, mean, mean, min(n1, n2))
    dof = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    half = float(t.ppf(0.975, dof)) * math.sqrt(v1 + v2)
    return Interval(mean, mean - half, mean + half, min(n1, n2))


def per_seed_effects(cells: Iterable[dict[str, Any]], variant: str, plain: str) -> list[float]:
    """Avg Gap of `variant` minus that of `plain`, seed by seed (same split, Original and Retrain),
    over one scenario's cells."""
    gaps: dict[str, dict[int, float]] = defaultdict(dict)
    for cell in cells:
        if cell["variant"] in (variant, plain) and cell["metrics"].get("avg_gap") is not None:
            gaps[cell["variant"]][cell["seed"]] = cell["metrics"]["avg_gap"]
    return [gaps[variant][s] - gaps[plain][s] for s in sorted(gaps[variant]) if s in gaps[plain]]


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
    flops_share: float | None = None  # mean FLOPs / Retrain's mean FLOPs
    cl_effect: Interval | None = None  # wrapped variants: paired per-seed gap difference to the unwrapped method

    @property
    def avg_gap(self) -> float | None:
        """The paper's Avg Gap: the mean of the four bracketed gaps (gaps of seed means)."""
        return statistics.fmean(self.gaps[k] for k in ACCURACIES) if len(self.gaps) == len(ACCURACIES) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "method": self.method, "augment": self.augment, "seeds": self.seeds,
            **{k: {"mean": s.mean, "std": s.std, "values": s.values} for k, s in self.stats.items()},
            "gap_to_retrain": self.gaps, "avg_gap_of_means": self.avg_gap, "flops_share_of_retrain": self.flops_share,
            "cl_effect": self.cl_effect.as_dict() if self.cl_effect else None, "params": self.params,
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
                flops = [m.get("flops") for m in references]
                if "flops" in row.stats and all(flops):
                    row.flops_share = row.stats["flops"].mean / statistics.fmean(flops)
        for row in rows.values():
            row.cl_effect = _paired_effect(row, rows.get(row.method or ""), variants)
        tables[scenario] = rows
    return tables


def _paired_effect(row: Row, plain: Row | None, variants: dict[str, list[dict]]) -> Interval | None:
    """Wrapped minus unwrapped Avg Gap, paired per seed."""
    if not row.augment or plain is None or plain is row:
        return None
    pairs = per_seed_effects(variants[row.variant] + variants[plain.variant], row.variant, plain.variant)
    return paired_interval(pairs) if pairs else None


def _cell(stat: Stat | None, gap: float | None = None, n: int = 1) -> str:
    if stat is None:
        return "n/a"
    text = f"{stat.mean:.2f} ± {stat.std:.2f}" if n > 1 else f"{stat.mean:.2f}"
    return text + (f" ({gap:.2f})" if gap is not None else "")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cost(row: Row) -> str:
    stat = row.stats.get("flops")
    if stat is None:
        return "n/a"
    share = f" ({100 * row.flops_share:.0f}%)" if row.flops_share is not None and row.variant != "Retrain" else ""
    return f"{stat.mean / 1e15:.3g}{share}"


def interval_text(effect: Interval | None) -> str:
    if effect is None:
        return ""
    if effect.n < 2:
        return f"{effect.mean:+.2f} (1 seed)"
    return f"{effect.mean:+.2f} [{effect.low:+.2f}, {effect.high:+.2f}]" + ("*" if effect.significant else "")


COLUMNS = ["method", "RA", "UA", "TA", "MIA", "RMIA", "Avg Gap", "Per-seed Gap", "Premise", "PFLOPs (% of Retrain)",
           "Time (s)", "CL effect [95% CI]"]


def markdown(tables: dict[str, dict[str, Row]], counts: dict[str, str]) -> str:
    """One table per scenario: mean ± std (|mean - Retrain's mean|), the paper's Avg Gap, the per-seed gap, cost."""
    parts = []
    for scenario, rows in tables.items():
        parts.append(f"### {scenario_label(scenario)}{counts.get(scenario, '')}\n")
        parts.append("| " + " | ".join(COLUMNS) + " |")
        parts.append("| --- |" + " ---: |" * (len(COLUMNS) - 1))
        for name, row in rows.items():
            n = len(row.seeds)
            cells = [_cell(row.stats.get(k), None if name == "Retrain" else row.gaps.get(k), n) for k in ACCURACIES]
            cells += [_cell(row.stats.get("RMIA"), None, n), _number(row.avg_gap), _cell(row.stats.get("avg_gap"), None, n),
                      _cell(row.stats.get("premise"), None, n), _cost(row), _cell(row.stats.get("seconds"), None, n),
                      interval_text(row.cl_effect)]
            parts.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def csv_text(tables: dict[str, dict[str, Row]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["scenario", "variant", "method", "augment", "seeds"]
    for key in MEASURES:
        header += [f"{key}_mean", f"{key}_std"] + ([f"{key}_gap"] if key in ACCURACIES else [])
    header += ["avg_gap_of_means", "flops_share_of_retrain", "cl_effect", "cl_effect_low", "cl_effect_high"]
    writer.writerow(header)
    for scenario, rows in tables.items():
        for name, row in rows.items():
            line: list[Any] = [scenario, name, row.method or "", "+".join(row.augment), " ".join(map(str, row.seeds))]
            for key in MEASURES:
                stat = row.stats.get(key)
                line += [stat.mean, stat.std] if stat else ["", ""]
                if key in ACCURACIES:
                    line.append(row.gaps.get(key, ""))
            effect = row.cl_effect
            line += [_blank(row.avg_gap), _blank(row.flops_share)]
            line += [effect.mean, effect.low, effect.high] if effect else ["", "", ""]
            writer.writerow(line)
    return buffer.getvalue()


def _blank(value: float | None) -> Any:
    return "" if value is None else value


def cl_effects(tables: dict[str, dict[str, Row]]) -> dict[str, dict[str, Interval]]:
    """scenario -> "method" (or "method+A" when several augmenter settings) -> the paired effect of wrapping."""
    effects: dict[str, dict[str, Interval]] = {}
    for scenario, rows in tables.items():
        settings = {tuple(r.augment) for r in rows.values() if r.augment}
        for name, row in rows.items():
            if row.cl_effect is not None:
                # a wrapped variant's effect is measured against its method's own row, so it names a method
                label = row.method if len(settings) == 1 and row.method is not None else name
                effects.setdefault(scenario, {})[label] = row.cl_effect
    return effects


def verdict(effect: Interval) -> str:
    if effect.n < 2:
        return "one seed: no interval"
    if not effect.significant:
        return "not significant"
    return "lower gap (significant)" if effect.mean < 0 else "higher gap (significant)"


def effects_markdown(effects: dict[str, dict[str, Interval]]) -> str:
    methods = list(dict.fromkeys(m for per in effects.values() for m in per))
    lines = ["| method | " + " | ".join(scenario_label(s) for s in effects) + " |",
             "| --- |" + " ---: |" * len(effects)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(
            f"{interval_text(per[method])}: {verdict(per[method])}" if method in per else "n/a"
            for per in effects.values()) + " |")
    return "\n".join(lines) + "\n"


# --- the regime check: can this setting tell methods apart? -------------------------------------

#: the Original must be this many times further from Retrain than two Retrains of different seeds are
DISCRIMINATION_RATIO = 3.0


@dataclass
class Regime:
    """Original vs Retrain on one scenario: is the Original's gap far beyond seed noise?"""

    scenario: str
    seeds: int
    original: dict[str, float]  # seed means of RA, UA, TA, MIA
    retrain: dict[str, float]
    gap: float  # the paper's Avg Gap of the Original
    noise: float | None  # mean Avg Gap between Retrains of two different seeds (None with one seed)

    @property
    def ratio(self) -> float | None:
        if self.noise is None:
            return None
        return math.inf if self.noise == 0 else self.gap / self.noise

    @property
    def discriminates(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= DISCRIMINATION_RATIO

    @property
    def generalisation_gap(self) -> float:
        """The Original's RA - TA: how much it memorised beyond what it learned."""
        return self.original["RA"] - self.original["TA"]

    def warning(self) -> str | None:
        where = scenario_label(self.scenario)
        if self.discriminates is None:
            return f"{where}: one seed, so seed noise is unknown; use 2 or more seeds to check the regime"
        if not self.discriminates:
            return (f"{where}: the Original is within seed noise of Retrain (Avg Gap {self.gap:.2f} vs "
                    f"{self.noise:.2f} between Retrains of different seeds; RA - TA {self.generalisation_gap:.2f}): "
                    "it has not memorised its training data, so this grid cannot tell methods apart. Train the "
                    "Original longer, on fewer samples or with a wider model (see examples/bench/fashion-mnist-memorising.yaml)")
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "seeds": self.seeds, "original": self.original, "retrain": self.retrain,
                "avg_gap": self.gap, "seed_noise": self.noise,
                "ratio": self.ratio if self.ratio != math.inf else None,
                "discriminates": self.discriminates, "original_ra_minus_ta": self.generalisation_gap}


def regimes(tables: dict[str, dict[str, Row]]) -> list[Regime]:
    """The regime of every scenario whose table has both an Original and a Retrain row."""
    found = []
    for scenario, rows in tables.items():
        original, retrain = rows.get("Original"), rows.get("Retrain")
        if original is None or retrain is None or original.avg_gap is None:
            continue
        per_seed = [{k: retrain.stats[k].values[i] for k in ACCURACIES} for i in range(len(retrain.seeds))]
        pairs = [(a, b) for i, a in enumerate(per_seed) for b in per_seed[i + 1:]]
        noise = statistics.fmean(statistics.fmean(abs(a[k] - b[k]) for k in ACCURACIES) for a, b in pairs) if pairs else None
        found.append(Regime(scenario, len(retrain.seeds), {k: original.stats[k].mean for k in ACCURACIES},
                            {k: retrain.stats[k].mean for k in ACCURACIES}, original.avg_gap, noise))
    return found


def regime_markdown(found: list[Regime]) -> str:
    lines = ["| scenario | seeds | Original RA / UA / TA / MIA | Retrain RA / UA / TA / MIA | Original RA − TA "
             "| Avg Gap | seed noise | ratio | discriminates |", "| --- |" + " ---: |" * 8]
    for r in found:
        metrics = [" / ".join(f"{m[k]:.1f}" for k in ACCURACIES) for m in (r.original, r.retrain)]
        yes = {True: "yes", False: "**no**", None: "unknown (1 seed)"}[r.discriminates]
        lines.append(f"| {scenario_label(r.scenario)} | {r.seeds} | {metrics[0]} | {metrics[1]} | "
                     f"{r.generalisation_gap:.2f} | {r.gap:.2f} | {_number(r.noise)} | "
                     f"{'n/a' if r.ratio is None else f'{r.ratio:.1f}'} | {yes} |")
    return "\n".join(lines) + "\n"


def regime_report(records: list[dict[str, Any]]) -> tuple[Table | None, list[str]]:
    """The terminal's regime table (None without Original and Retrain rows) and the warnings to print below it."""
    found = regimes(tabulate(records))
    if not found:
        return None, []
    table = Table(title="the regime: Original vs Retrain (seed means)", caption="seed noise: mean Avg Gap between "
                  "Retrains of two seeds; ratio: Avg Gap / seed noise")
    for column in ("scenario", "seeds", "Original RA/UA/TA/MIA", "Retrain RA/UA/TA/MIA", "RA-TA", "Avg Gap",
                   "seed noise", "ratio", "discriminates"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for r in found:
        table.add_row(scenario_label(r.scenario), str(r.seeds),
                      *("/".join(f"{m[k]:.1f}" for k in ACCURACIES) for m in (r.original, r.retrain)),
                      f"{r.generalisation_gap:.1f}", f"{r.gap:.2f}", "n/a" if r.noise is None else f"{r.noise:.2f}",
                      "n/a" if r.ratio is None else f"{r.ratio:.1f}",
                      {True: "yes", False: "[bold red]no[/]", None: "unknown"}[r.discriminates])
    return table, [warning for r in found if (warning := r.warning())]


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
    chosen: dict[str, str] = {}
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
    effects = cl_effects(tables)
    found = regimes(tables)
    text = header + "\n"
    if found:
        text += "### The regime: Original vs Retrain\n\n" + regime_markdown(found) + "".join(
            f"\n**Warning**: {r.warning()}\n" for r in found if r.warning()) + "\n"
    text += markdown(tables, counts) + _settings(records)
    if effects:
        text += ("\n### CL effect: paired per-seed Avg Gap difference, wrapped minus unwrapped (negative: closer to "
                 "Retrain), mean [95% CI]\n\n" + effects_markdown(effects))
    written = [folder / "results.md", folder / "results.csv", folder / "results.json"]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(written[0], text)
    atomic_write_text(written[1], csv_text(tables))
    payload = {**meta, "regime": [r.as_dict() for r in found],
               "tables": {s: {n: r.as_dict() for n, r in rows.items()} for s, rows in tables.items()},
               "cl_effects": {s: {m: e.as_dict() for m, e in per.items()} for s, per in effects.items()},
               "cells": records}
    atomic_write_json(written[2], payload)
    if effects:
        from unlearnkit.figures import cl_integration

        written.append(cl_integration(effects, folder / "cl_integration.png"))
    return written



# --- tuning: trials and the params each variant was given -------------------------------------


def trial_tables(ranked: list[dict[str, Any]], keys: list[str], title: str) -> tuple[Table, str]:
    """The ranked trials (bench.tune.ranking) as a terminal table and as Markdown, with the same cells."""
    table = Table(title=title)
    for column in ["trial", *keys, "RA", "UA", "TA", "MIA", "Avg Gap", "Per-seed Gap"]:
        table.add_column(column, justify="right")
    lines = ["| trial | " + " | ".join(keys) + " | RA | UA | TA | MIA | Avg Gap | Per-seed Gap |",
             "| ---: |" + " ---: |" * (len(keys) + 6)]
    for row in ranked:
        cells = [str(row["trial"]), *(f"{row['assignment'][k]:g}" if isinstance(row["assignment"][k], float)
                                      else str(row["assignment"][k]) for k in keys),
                 *(f"{row[k]:.2f}" for k in ACCURACIES), f"{row['avg_gap']:.2f}",
                 f"{row['seed_gap']:.2f} ± {row['seed_gap_std']:.2f}"]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    return table, "\n".join(lines)


def tuned_markdown(chosen: dict[str, dict[str, Any]], best: dict[str, dict[str, Any]]) -> str:
    """`unlearn tune --bench`'s table: each variant's chosen params and its best trial's measures."""
    lines = ["| variant | chosen | RA | UA | TA | MIA | Avg Gap | Per-seed Gap |", "| --- | --- |" + " ---: |" * 6]
    for variant, params in chosen.items():
        trial = best[variant]
        lines.append(f"| {variant} | {', '.join(flatten(params))} | "
                     + " | ".join(f"{trial[k]:.2f}" for k in ACCURACIES)
                     + f" | {trial['avg_gap']:.2f} | {trial['seed_gap']:.2f} ± {trial['seed_gap_std']:.2f} |")
    return "\n".join(lines)
