"""Does coun-cl's effect grow from one scenario to another? A paired-by-seed interval on the change.

    python benchmarks/cl_effect_between_scenarios.py \
        bench/fashion-mnist-memorising/results.json random:0.1 bench/fm-r50-seq/results.json random:0.5

For every method run with and without coun-cl in both scenarios: its CL effect (AvgGap(X+coun-cl) − AvgGap(X),
the paper's gap of seed means) in each, and the change of effect from the first scenario to the second. The same
seed shares its Original across scenarios (and a random 10% forget set nests in the 50% one), so seeds pair
the scenarios: one bootstrap resample draws the same seeds for both, on the seeds both scenarios have. The
changes form one family, Holm-corrected; * marks a Holm-adjusted p < 0.05.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from unlearnkit.bench.statistics import Interval, change_between_scenarios, gap_difference, holm
from unlearnkit.bench.summary import Row, accuracies, interval_text, shared_seeds, tabulate

AUGMENTER = "coun-cl"


def triples(results: Path, scenario: str) -> dict[str, tuple[Row, Row, Row]]:
    """method -> (X+coun-cl, X, Retrain) rows of one scenario of a bench's results.json."""
    cells = [c for c in json.loads(results.read_text())["cells"] if c["scenario"] == scenario]
    rows = tabulate(cells).get(scenario, {})
    if "Retrain" not in rows:
        return {}
    return {name.removesuffix(f"+{AUGMENTER}"): (row, rows[name.removesuffix(f"+{AUGMENTER}")], rows["Retrain"])
            for name, row in rows.items() if name.endswith(f"+{AUGMENTER}") and name.removesuffix(f"+{AUGMENTER}") in rows}


def compare(before: tuple[Row, Row, Row], after: tuple[Row, Row, Row]) -> tuple[Interval, Interval, Interval] | None:
    """The CL effect in each scenario and its change, all on the seeds both scenarios have (None without any)."""
    seeds = sorted(set(shared_seeds(*before)) & set(shared_seeds(*after)))
    if not seeds:
        return None
    first, second = ([accuracies(row, seeds) for row in rows] for rows in (before, after))
    return gap_difference(*first), gap_difference(*second), change_between_scenarios(first, second)


def p_text(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("first_scenario")
    parser.add_argument("second", type=Path)
    parser.add_argument("second_scenario")
    args = parser.parse_args()
    first, second = triples(args.first, args.first_scenario), triples(args.second, args.second_scenario)
    found = {m: c for m in sorted(first.keys() & second.keys()) if (c := compare(first[m], second[m])) is not None}
    tested = {method: p for method, (_, _, change) in found.items() if (p := change.p) is not None}
    adjusted = dict(zip(tested, holm(list(tested.values()))))
    print(f"| method | seeds | {args.first_scenario} | {args.second_scenario} | change (paired by seed, 95% CI) "
          "| p | Holm p |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, (before, after, change) in found.items():
        change = replace(change, adjusted_p=adjusted.get(method))
        print(f"| {method} | {change.n} | {interval_text(before, star=False)} | {interval_text(after, star=False)} "
              f"| {interval_text(change)} | {p_text(change.p)} | {p_text(change.adjusted_p)} |")
    print("\n* Holm-adjusted p < 0.05 over the methods' changes")


if __name__ == "__main__":
    main()
