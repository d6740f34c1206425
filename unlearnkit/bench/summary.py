"""The paper's tables from finished cells: mean +- std over seeds, the gap to Retrain in brackets.

Written as Markdown (results.md), CSV (results.csv) and JSON (results.json), plus the
CL-integration figure (cl_integration.png) when the grid has wrapped and unwrapped variants.
Differences between variants are tested with unlearnkit.bench.statistics, within each scenario's declared
families (FAMILIES). The regime check and tuning trials are also rendered here as rich tables for the terminal.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from rich.table import Table

from unlearnkit.bench.grid import scenario_label
from unlearnkit.bench.statistics import (
    ALPHA,
    POWER,
    Interval,
    gap_difference,
    holm,
    minimum_detectable_difference,
    paired_interval,
)
from unlearnkit.files import atomic_write_json, atomic_write_text

ACCURACIES = ("RA", "UA", "TA", "MIA")
#: measured but not part of the Avg Gap: RMIA (a per-example attack with Retrain as its reference) sits beside MIA
MEASURES = (*ACCURACIES, "RMIA", "avg_gap", "premise", "premise_control", "flops", "seconds")
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
class Comparison:
    """Variant A against variant B on one scenario, on the seeds both have, each seed with its own Retrain."""

    avg_gap: Interval  # AvgGap(A) - AvgGap(B), the gap of seed means the tables rank: seed bootstrap, Holm in its family
    metrics: dict[str, Interval]  # per metric, |mean - Retrain's mean| of A minus B's: where the gap comes from
    per_seed: Interval | None  # the per-seed gap: mean over seeds of A's Avg Gap minus B's on one seed, Student's t

    def as_dict(self) -> dict[str, Any]:
        return {"avg_gap": self.avg_gap.as_dict(), "metrics": {k: i.as_dict() for k, i in self.metrics.items()},
                "per_seed_gap": self.per_seed.as_dict() if self.per_seed else None}


#: claim 1's method: its Avg Gap is compared with that of every unwrapped baseline on the same scenario
CLAIM_METHOD = "coun"
#: each scenario's families of comparisons, Holm-corrected apart: the Row attribute holding them, and their name
FAMILIES = {"coun_difference": f"claim 1 ({CLAIM_METHOD} − each baseline)",
            "cl_effect": "claim 2 (each CL effect, wrapped − unwrapped)"}


@dataclass
class Row:
    """One variant on one scenario, over its seeds."""

    variant: str
    method: str | None
    augment: list[str]
    seeds: list[int]
    stats: dict[str, Stat]
    by_seed: dict[int, dict[str, Any]] = field(default_factory=dict)  # each seed's metrics
    gaps: dict[str, float] = field(default_factory=dict)  # |mean - Retrain's mean| of RA, UA, TA, MIA
    params: dict[str, Any] = field(default_factory=dict)
    flops_share: float | None = None  # mean FLOPs / Retrain's mean FLOPs
    cl_effect: Comparison | None = None  # a wrapped variant against its unwrapped method
    coun_difference: Comparison | None = None  # an unwrapped baseline: coun against it (claim 1)

    @property
    def avg_gap(self) -> float | None:
        """The paper's Avg Gap: the mean of the four bracketed gaps (gaps of seed means)."""
        return statistics.fmean(self.gaps[k] for k in ACCURACIES) if len(self.gaps) == len(ACCURACIES) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "method": self.method, "augment": self.augment, "seeds": self.seeds,
            **{k: {"mean": s.mean, "std": s.std, "values": s.values} for k, s in self.stats.items()},
            "gap_to_retrain": self.gaps, "avg_gap_of_means": self.avg_gap, "flops_share_of_retrain": self.flops_share,
            "cl_effect": self.cl_effect.as_dict() if self.cl_effect else None,
            "coun_difference": self.coun_difference.as_dict() if self.coun_difference else None, "params": self.params,
        }


def shared_seeds(*rows: Row) -> list[int]:
    """The seeds on which every row has all four accuracies, in the first row's order."""
    return [s for s in rows[0].seeds if all(row.by_seed.get(s, {}).get(k) is not None for row in rows for k in ACCURACIES)]


def accuracies(row: Row, seeds: list[int]) -> np.ndarray:
    """(seeds, RA UA TA MIA): the row's accuracies seed by seed, as the bootstrap takes them."""
    return np.array([[row.by_seed[s][k] for k in ACCURACIES] for s in seeds], dtype=float)


def compare(first: Row, second: Row, retrain: Row) -> Comparison | None:
    """`first` against `second` on the seeds both and Retrain have (None without any)."""
    seeds = shared_seeds(first, second, retrain)
    if not seeds:
        return None
    arms = [accuracies(row, seeds) for row in (first, second, retrain)]
    per_seed = [first.by_seed[s]["avg_gap"] - second.by_seed[s]["avg_gap"] for s in seeds
                if first.by_seed[s].get("avg_gap") is not None and second.by_seed[s].get("avg_gap") is not None]
    return Comparison(gap_difference(*arms),
                      {k: gap_difference(*(arm[:, [i]] for arm in arms)) for i, k in enumerate(ACCURACIES)},
                      paired_interval(per_seed) if per_seed else None)


def tabulate(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Row]]:
    """scenario -> variant -> Row; Retrain and Original first, then variants in the order records come. Each
    scenario's comparisons are Holm-corrected within their family (FAMILIES)."""
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
                             {r["seed"]: r["metrics"] for r in cells}, params=first.get("params", {}))
        retrain = rows.get("Retrain")
        for row in rows.values():
            # against Retrain on the same seeds, should a variant lack some (a failed cell)
            references = [retrain.by_seed[s] for s in row.seeds if s in retrain.by_seed] if retrain else []
            if references and len(references) == len(row.seeds):
                row.gaps = {k: abs(row.stats[k].mean - statistics.fmean(m[k] for m in references))
                            for k in ACCURACIES if k in row.stats}
                flops = [m["flops"] for m in references if m.get("flops")]
                if "flops" in row.stats and len(flops) == len(references):
                    row.flops_share = row.stats["flops"].mean / statistics.fmean(flops)
        if retrain is not None:
            _compare_within_families(rows, retrain)
        tables[scenario] = rows
    return tables


def _compare_within_families(rows: dict[str, Row], retrain: Row) -> None:
    """Claim 1 on every unwrapped baseline row, claim 2 on every wrapped row with its method's row; then Holm
    over each family's Avg Gap tests."""
    claimed = next((r for r in rows.values() if r.method == CLAIM_METHOD and not r.augment), None)
    for row in rows.values():
        if row.method is None:  # Retrain and Original
            continue
        plain = rows.get(row.method)
        if row.augment and plain is not None and plain is not row:
            row.cl_effect = compare(row, plain, retrain)
        elif not row.augment and claimed is not None and row is not claimed:
            row.coun_difference = compare(claimed, row, retrain)
    for attribute in FAMILIES:
        tested = [r for r in rows.values() if (c := getattr(r, attribute)) is not None and c.avg_gap.p is not None]
        for row, adjusted in zip(tested, holm([getattr(r, attribute).avg_gap.p for r in tested])):
            found = getattr(row, attribute)
            setattr(row, attribute, replace(found, avg_gap=replace(found.avg_gap, adjusted_p=adjusted)))


def family_power(rows: dict[str, Row], attribute: str) -> dict[str, Any] | None:
    """The smallest Avg Gap difference one family's tests detect 80% of the time: at Holm's strictest level
    (ALPHA / comparisons), over the fewest seeds a comparison has, from the median bootstrap standard error."""
    tested = [c.avg_gap for r in rows.values() if (c := getattr(r, attribute)) is not None and c.avg_gap.se is not None]
    if not tested:
        return None
    seeds, se = min(i.n for i in tested), statistics.median(i.se for i in tested if i.se is not None)
    alpha = ALPHA / len(tested)
    return {"family": FAMILIES[attribute], "comparisons": len(tested), "seeds": seeds, "alpha": alpha,
            "median_se": se, "minimum_detectable_difference": minimum_detectable_difference(se, seeds, alpha)}


def power_line(rows: dict[str, Row]) -> str:
    found = [p for attribute in FAMILIES if (p := family_power(rows, attribute))]
    if not found:
        return ""
    return (f"Power: the smallest Avg Gap difference detected {POWER:.0%} of the time, (t(1 − α/2) + t({POWER})) × SE "
            f"at α = {ALPHA} / comparisons, the median bootstrap SE and n − 1 degrees of freedom: " + "; ".join(
                f"{p['family']}, {p['comparisons']} comparisons over {p['seeds']} seeds: "
                f"{p['minimum_detectable_difference']:.2f} points (SE {p['median_se']:.2f})" for p in found) + "\n")


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


def interval_text(effect: Interval | None, star: bool = True) -> str:
    """mean [low, high], with * where the test rejects 0 (on the Holm-adjusted p-value within a family)."""
    if effect is None:
        return ""
    if effect.n < 2:
        return f"{effect.mean:+.2f} ({effect.n} seed)"
    return f"{effect.mean:+.2f} [{effect.low:+.2f}, {effect.high:+.2f}]" + ("*" if star and effect.significant else "")


def _tested(comparison: Comparison | None) -> str:
    """The Avg Gap difference with its interval and Holm-adjusted p-value."""
    if comparison is None:
        return ""
    effect = comparison.avg_gap
    return interval_text(effect) + (f" (p {_p(effect.adjusted_p)})" if effect.adjusted_p is not None else "")


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


COLUMNS = ["method", "RA", "UA", "TA", "MIA", "RMIA", "Avg Gap", "Per-seed Gap", "Premise", "Premise control",
           "PFLOPs (% of Retrain)", "Time (s)", f"{CLAIM_METHOD} − this [95% CI] (Holm p)", "CL effect [95% CI] (Holm p)"]


def markdown(tables: dict[str, dict[str, Row]], counts: dict[str, str]) -> str:
    """One table per scenario: mean ± std (|mean - Retrain's mean|), the paper's Avg Gap, the per-seed gap, cost and
    the tested Avg Gap differences; under it the power line and each comparison's detail."""
    parts = []
    for scenario, rows in tables.items():
        parts.append(f"### {scenario_label(scenario)}{counts.get(scenario, '')}\n")
        parts.append("| " + " | ".join(COLUMNS) + " |")
        parts.append("| --- |" + " ---: |" * (len(COLUMNS) - 1))
        for name, row in rows.items():
            n = len(row.seeds)
            cells = [_cell(row.stats.get(k), None if name == "Retrain" else row.gaps.get(k), n) for k in ACCURACIES]
            cells += [_cell(row.stats.get("RMIA"), None, n), _number(row.avg_gap), _cell(row.stats.get("avg_gap"), None, n),
                      _cell(row.stats.get("premise"), None, n), _cell(row.stats.get("premise_control"), None, n),
                      _cost(row), _cell(row.stats.get("seconds"), None, n), _tested(row.coun_difference),
                      _tested(row.cl_effect)]
            parts.append(f"| {name} | " + " | ".join(cells) + " |")
        parts.append("")
        if line := power_line(rows):
            parts.append(line)
        if detail := comparisons_markdown(rows):
            parts.append(detail)
    return "\n".join(parts)


def comparisons_markdown(rows: dict[str, Row]) -> str:
    """Every tested comparison of a scenario: the Avg Gap difference with raw and Holm-adjusted p-values and its
    verdict, the per-metric differences it comes from and the per-seed gap difference (both descriptive: no star)."""
    lines = ["| comparison | Δ Avg Gap [95% CI] | p | Holm p | verdict | " + " | ".join(f"Δ {k} gap" for k in ACCURACIES)
             + " | Δ per-seed gap [95% CI] |", "| --- |" + " ---: |" * 9]
    for attribute in FAMILIES:
        for name, row in rows.items():
            if (found := getattr(row, attribute)) is None:
                continue
            label = f"{CLAIM_METHOD} − {name}" if attribute == "coun_difference" else f"{name} − {row.method}"
            effect = found.avg_gap
            lines.append(f"| {label} | {interval_text(effect)} | {_p(effect.p)} | {_p(effect.adjusted_p)} | "
                         f"{effect.verdict} | " + " | ".join(interval_text(found.metrics[k], star=False) for k in ACCURACIES)
                         + f" | {interval_text(found.per_seed, star=False)} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _comparison_header(prefix: str) -> list[str]:
    return [prefix, f"{prefix}_low", f"{prefix}_high", f"{prefix}_p", f"{prefix}_holm_p", f"{prefix}_verdict",
            *(f"{prefix}_{k}" for k in ACCURACIES), f"{prefix}_per_seed_gap", f"{prefix}_per_seed_gap_low",
            f"{prefix}_per_seed_gap_high"]


def _comparison_line(found: Comparison | None) -> list[Any]:
    if found is None:
        return [""] * len(_comparison_header(""))
    effect, per_seed = found.avg_gap, found.per_seed
    return [effect.mean, effect.low, effect.high, _blank(effect.p), _blank(effect.adjusted_p), effect.verdict,
            *(found.metrics[k].mean for k in ACCURACIES),
            *([per_seed.mean, per_seed.low, per_seed.high] if per_seed else ["", "", ""])]


def csv_text(tables: dict[str, dict[str, Row]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["scenario", "variant", "method", "augment", "seeds"]
    for key in MEASURES:
        header += [f"{key}_mean", f"{key}_std"] + ([f"{key}_gap"] if key in ACCURACIES else [])
    header += ["avg_gap_of_means", "flops_share_of_retrain", *_comparison_header("cl_effect"),
               *_comparison_header("coun_difference")]
    writer.writerow(header)
    for scenario, rows in tables.items():
        for name, row in rows.items():
            line: list[Any] = [scenario, name, row.method or "", "+".join(row.augment), " ".join(map(str, row.seeds))]
            for key in MEASURES:
                stat = row.stats.get(key)
                line += [stat.mean, stat.std] if stat else ["", ""]
                if key in ACCURACIES:
                    line.append(row.gaps.get(key, ""))
            line += [_blank(row.avg_gap), _blank(row.flops_share), *_comparison_line(row.cl_effect),
                     *_comparison_line(row.coun_difference)]
            writer.writerow(line)
    return buffer.getvalue()


def _blank(value: float | None) -> Any:
    return "" if value is None else value


def cl_effects(tables: dict[str, dict[str, Row]]) -> dict[str, dict[str, Interval]]:
    """scenario -> "method" (or "method+A" when several augmenter settings) -> the Avg Gap difference of wrapping."""
    effects: dict[str, dict[str, Interval]] = {}
    for scenario, rows in tables.items():
        settings = {tuple(r.augment) for r in rows.values() if r.augment}
        for name, row in rows.items():
            if row.cl_effect is not None:
                # a wrapped variant's effect is measured against its method's own row, so it names a method
                label = row.method if len(settings) == 1 and row.method is not None else name
                effects.setdefault(scenario, {})[label] = row.cl_effect.avg_gap
    return effects


def effects_markdown(effects: dict[str, dict[str, Interval]]) -> str:
    methods = list(dict.fromkeys(m for per in effects.values() for m in per))
    lines = ["| method | " + " | ".join(scenario_label(s) for s in effects) + " |",
             "| --- |" + " ---: |" * len(effects)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(
            f"{interval_text(per[method])}: {per[method].verdict}" if method in per else "n/a"
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


TESTS_NOTE = (
    f"Tests: every Δ is the paper's Avg Gap (gap of seed means) of one variant minus another's, with a paired seed "
    f"bootstrap (seeds resampled jointly for both variants and Retrain) 95% percentile interval and p-value. Each "
    f"scenario has two families, Holm-corrected apart: {FAMILIES['coun_difference']} and {FAMILIES['cl_effect']}. "
    f"* and the verdicts (lower, higher, not shown) follow the Holm-adjusted p < {ALPHA}; the per-metric and "
    f"per-seed gap differences are descriptive, uncorrected.\n\n"
)


def budget_warnings(tables: dict[str, dict[str, Row]], low: float, high: float) -> list[str]:
    """A line per variant and scenario whose mean FLOPs, as a share of Retrain's, leaves the band [low, high]."""
    return [f"{name} ({scenario_label(scenario)}) costs {100 * row.flops_share:.1f}% of Retrain's FLOPs, outside "
            f"the budget of {100 * low:g}-{100 * high:g}%"
            for scenario, rows in tables.items() for name, row in rows.items()
            if name not in REFERENCE_ROWS and row.flops_share is not None and not low <= row.flops_share <= high]


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
    text += TESTS_NOTE + markdown(tables, counts) + _settings(records)
    budget = (meta.get("bench") or {}).get("budget")
    if budget and (outside := budget_warnings(tables, budget["low"], budget["high"])):
        text += "\n### Outside the budget\n\n" + "".join(f"- {line}\n" for line in outside)
    if effects:
        text += ("\n### CL effect: Avg Gap difference, wrapped minus unwrapped (negative: closer to Retrain), "
                 "mean [95% CI] and the verdict of the Holm-adjusted test\n\n" + effects_markdown(effects))
    written = [folder / "results.md", folder / "results.csv", folder / "results.json"]
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(written[0], text)
    atomic_write_text(written[1], csv_text(tables))
    payload = {**meta, "regime": [r.as_dict() for r in found],
               "tables": {s: {n: r.as_dict() for n, r in rows.items()} for s, rows in tables.items()},
               "cl_effects": {s: {m: e.as_dict() for m, e in per.items()} for s, per in effects.items()},
               "families": FAMILIES,
               "power": {s: [p for a in FAMILIES if (p := family_power(rows, a))] for s, rows in tables.items()},
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


def tuned_markdown(chosen: dict[str, dict[str, Any]], best: dict[str, dict[str, Any]],
                   searches: dict[str, dict[str, Any]]) -> str:
    """`unlearn tune --bench`'s table: each variant's trials, chosen params and best trial's measures, then a note
    per winner on an edge of its range."""
    lines = ["| variant | trials | chosen | RA | UA | TA | MIA | Avg Gap | Per-seed Gap |",
             "| --- | ---: | --- |" + " ---: |" * 6]
    for variant, params in chosen.items():
        trial = best[variant]
        lines.append(f"| {variant} | {searches[variant]['trials']} | {', '.join(flatten(params))} | "
                     + " | ".join(f"{trial[k]:.2f}" for k in ACCURACIES)
                     + f" | {trial['avg_gap']:.2f} | {trial['seed_gap']:.2f} ± {trial['seed_gap_std']:.2f} |")
    notes = [f"- {variant}: {note}" for variant, search in searches.items() for note in search["edges"]]
    return "\n".join(lines + (["", "Winners on an edge of their range:", "", *notes] if notes else []))
