"""Does mixed precision change the results? One bench grid run in fp32 and in another precision, paired seed by seed.

    python benchmarks/precision.py                          # bf16 vs fp32, the memorising Fashion-MNIST regime
    python benchmarks/precision.py --precision fp16 --out p16 -- --data digits   # more bench flags after --

Both grids are the same `unlearn bench` command (Original, Retrain and every method trained in that
precision), so each (scenario, row, seed) has an fp32 record and a mixed-precision one. For each
measure (RA, UA, TA, MIA of every row; Avg Gap of the methods) the script prints:

- the mean paired difference (mixed - fp32) over seeds, with its 95% CI: a systematic shift when the
  interval excludes 0;
- the spread of the paired differences against the seed noise: the root mean square of (mixed - fp32)
  on the same seed over that of (fp32 on seed a - fp32 on seed b) over pairs of seeds. At or below about
  1, switching precision moves a result no more than changing the seed does.

The two grids are written to OUT/fp32 and OUT/<precision> and are resumable like any bench folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from unlearnkit.bench.summary import ACCURACIES, interval_text, paired_interval

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GRID = ["--methods", "ft,neggrad", "--augment", "none,coun-cl", "--scenarios", "random:0.1", "--seeds", "5"]


def run_grid(spec: Path, precision: str, out: Path, bench_args: list[str]) -> list[dict]:
    unlearn = shutil.which("unlearn") or str(Path(sys.executable).parent / "unlearn")
    command = [unlearn, "bench", str(spec), *DEFAULT_GRID, *bench_args,
               "--set", f"base.compute.precision={precision}", "--out", str(out)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return json.loads((out / "results.json").read_text())["cells"]


def by_cell(records: list[dict]) -> dict[tuple[str, str, str], dict[int, float]]:
    """(scenario, row, measure) -> {seed: value}."""
    found: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for record in records:
        for measure in (*ACCURACIES, "avg_gap"):
            value = record["metrics"].get(measure)
            if value is not None:
                found[record["scenario"], record["variant"], measure][record["seed"]] = float(value)
    return found


def rms(values: list[float]) -> float:
    return math.sqrt(statistics.fmean(v * v for v in values)) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"], help="compared with fp32 (default bf16)")
    parser.add_argument("--spec", type=Path, default=ROOT / "examples/bench/fashion-mnist-memorising.yaml",
                        help="the bench spec both grids start from")
    parser.add_argument("--out", type=Path, default=Path("bench/precision"), help="folder of the two grids")
    parser.add_argument("bench_args", nargs="*", help="more unlearn bench flags (after --), for both grids")
    args = parser.parse_args()

    reference = by_cell(run_grid(args.spec, "fp32", args.out / "fp32", args.bench_args))
    mixed = by_cell(run_grid(args.spec, args.precision, args.out / args.precision, args.bench_args))

    print(f"\n{args.precision} - fp32, paired by seed: mean [95% CI]; spread = RMS(same seed) / RMS(fp32, two seeds)\n")
    print("| scenario | row | measure | seeds | fp32 mean | mean difference [95% CI] | spread |")
    print("| --- | --- | --- | ---: | ---: | --- | ---: |")
    spreads = []
    for key in sorted(reference, key=lambda k: (k[0], k[1] != "Original", k[1] != "Retrain", k[1], k[2])):
        seeds = sorted(set(reference[key]) & set(mixed.get(key, {})))
        if len(seeds) < 2:
            continue
        differences = [mixed[key][s] - reference[key][s] for s in seeds]
        between_seeds = [reference[key][a] - reference[key][b] for a, b in itertools.combinations(seeds, 2)]
        noise, moved = rms(between_seeds), rms(differences)
        if noise > 0:
            spreads.append(moved / noise)
        # a measure no seed moves (Retrain's Avg Gap to itself, an MIA at 100) has no noise to compare with
        spread = f"{moved / noise:.2f}" if noise > 0 else ("inf" if moved > 0 else "—")
        mean = statistics.fmean(reference[key][s] for s in seeds)
        print(f"| {key[0]} | {key[1]} | {key[2]} | {len(seeds)} | {mean:.2f} | "
              f"{interval_text(paired_interval(differences))} | {spread} |")
    if spreads:
        print(f"\nspread over all rows and measures: median {statistics.median(spreads):.2f}, "
              f"max {max(spreads):.2f} ({len(spreads)} measures)")


if __name__ == "__main__":
    main()
