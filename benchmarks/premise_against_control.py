"""Does CoUn's premise say something about forgotten samples? Retrain's premise against its control, paired by seed.

    python benchmarks/premise_against_control.py bench/fashion-mnist-memorising/results.json

The premise is the % of forget samples whose nearest retain-class centroid, in Retrain's features, is the class
Retrain predicts for them; its control is the same statistic on test samples, which no model trained on
(docs/bench.md). Only the difference says something about forgotten samples: per scenario, the mean over seeds
of (premise - control) of each seed's Retrain, with Student's t 95% interval and p-value over the seeds.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from unlearnkit.bench.statistics import paired_interval
from unlearnkit.bench.summary import interval_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a bench's results.json")
    args = parser.parse_args()
    by_scenario: dict[str, dict[int, tuple[float, float]]] = defaultdict(dict)
    for cell in json.loads(args.results.read_text())["cells"]:
        metrics = cell["metrics"]
        if cell["kind"] == "retrain" and metrics.get("premise") is not None and metrics.get("premise_control") is not None:
            by_scenario[cell["scenario"]][cell["seed"]] = (metrics["premise"], metrics["premise_control"])
    print("| scenario | seeds | Retrain premise | control | premise − control [95% CI] | p |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for scenario, seeds in by_scenario.items():
        pairs = [seeds[s] for s in sorted(seeds)]
        effect = paired_interval([premise - control for premise, control in pairs])
        premise = sum(p for p, _ in pairs) / len(pairs)
        control = sum(c for _, c in pairs) / len(pairs)
        p = "" if effect.p is None else f"{effect.p:.3f}"
        print(f"| {scenario} | {len(pairs)} | {premise:.2f} | {control:.2f} | {interval_text(effect)} | {p} |")


if __name__ == "__main__":
    main()
