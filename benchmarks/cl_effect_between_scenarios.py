"""Does coun-cl's effect grow from one scenario to another? Welch's interval on the difference.

    python benchmarks/cl_effect_between_scenarios.py \
        bench/fashion-mnist-memorising/results.json random:0.1 bench/fm-r50-seq/results.json random:0.5

For every method run with and without coun-cl in both scenarios: its CL effect (X+coun-cl − X,
paired per seed) in each, and the difference of the two mean effects with Welch's 95% interval
over the per-seed effects. The scenarios' splits differ, so seeds are not paired across them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unlearnkit.bench.summary import Interval, paired_interval, per_seed_effects, welch_interval

AUGMENTER = "coun-cl"


def effects(results: Path, scenario: str) -> dict[str, list[float]]:
    """method -> per-seed CL effects in one scenario of a bench's results.json."""
    cells = [c for c in json.loads(results.read_text())["cells"] if c["scenario"] == scenario]
    wrapped = {c["variant"] for c in cells if c["variant"].endswith(f"+{AUGMENTER}")}
    found = {v.removesuffix(f"+{AUGMENTER}"): per_seed_effects(cells, v, v.removesuffix(f"+{AUGMENTER}")) for v in wrapped}
    return {method: values for method, values in found.items() if values}


def text(interval: Interval) -> str:
    star = "*" if interval.significant else ""
    return f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]{star}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("first_scenario")
    parser.add_argument("second", type=Path)
    parser.add_argument("second_scenario")
    args = parser.parse_args()
    first, second = effects(args.first, args.first_scenario), effects(args.second, args.second_scenario)
    print(f"| method | {args.first_scenario} | {args.second_scenario} | difference (Welch 95% CI) |")
    print("| --- | ---: | ---: | ---: |")
    for method in sorted(first.keys() & second.keys()):
        a, b = first[method], second[method]
        print(f"| {method} | {text(paired_interval(a))} | {text(paired_interval(b))} | {text(welch_interval(a, b))} |")
    print("\n* the interval excludes 0")


if __name__ == "__main__":
    main()
