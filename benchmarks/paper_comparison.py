"""Put a bench's results beside the CoUn paper's CIFAR-10 table (ResNet-18, random 10%).

    python benchmarks/paper_comparison.py bench/fashion-mnist-memorising/results.json [--scenario random:0.1]

For each method the paper reports: its Avg Gap and its FLOPs as a share of Retrain's, next to
the same two numbers from the bench (the paper's Avg Gap definition, the gap of seed means).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER_RETRAIN_PFLOPS = 27.37
# variant -> (Avg Gap, PFLOPs): the paper's CIFAR-10 table, as PROTOCOL.md gives it
PAPER = {
    "ft": (0.65, 6.32),
    "neggrad+": (0.58, 6.02),
    "l1-sparse": (0.38, 6.92),
    "salun": (0.59, 8.66),
    "not": (0.30, 7.52),
    "coun": (0.25, 8.02),
    "scrub": (0.62, 8.93),
    "ssd": (3.83, 0.06),
    "bad-teacher": (1.58, 9.89),
    "cu": (0.61, 3.36),
    "neggrad++coun-cl": (0.32, 7.52),
    "l1-sparse+coun-cl": (0.22, 7.62),
    "not+coun-cl": (0.17, 7.52),
}


def table(results: dict, scenario: str) -> str:
    rows = results["tables"][scenario]
    lines = ["| method | paper Avg Gap | ours Avg Gap | paper FLOPs / Retrain | ours FLOPs / Retrain |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for variant, (gap, pflops) in PAPER.items():
        row = rows.get(variant)
        ours_gap = "not run" if row is None or row["avg_gap_of_means"] is None else f"{row['avg_gap_of_means']:.2f}"
        share = "not run" if row is None or row["flops_share_of_retrain"] is None else f"{100 * row['flops_share_of_retrain']:.0f}%"
        lines.append(f"| {variant} | {gap:.2f} | {ours_gap} | {100 * pflops / PAPER_RETRAIN_PFLOPS:.0f}% | {share} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a bench's results.json")
    parser.add_argument("--scenario", default="random:0.1", help="the bench scenario to compare (default random:0.1)")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    if args.scenario not in results.get("tables", {}):
        raise SystemExit(f"{args.results} has no scenario {args.scenario}; it has {', '.join(results.get('tables', {}))}")
    print(table(results, args.scenario))


if __name__ == "__main__":
    main()
