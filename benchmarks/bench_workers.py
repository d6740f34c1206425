"""Cells per hour of a bench grid with 1 and 2 local workers, measured in one run, alternating.

    python benchmarks/bench_workers.py [--rounds 2] [--methods ft,neggrad,rl,l1-sparse] [--seeds 0,1]

The grid is the recommended CPU setting (examples/bench/fashion-mnist-memorising.yaml) at random 10%.
Its Original and Retrain are trained (or taken from the model cache) before timing starts, so no
training of them is timed; what is timed is a fresh grid as a user runs it: each group's references
loaded from the cache and measured, then its cells. Each round runs the grid once in this process
(1 worker, torch threads = the cores) and once in 2 worker processes (each cores/2 threads, worker
start-up included), into fresh result folders. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from unlearnkit.bench.executors import LocalWorkers, Serial, cores
from unlearnkit.bench.grid import BenchSpec, expand
from unlearnkit.bench.runner import CellStore, run_grid
from unlearnkit.plugins import installed

SPEC = Path(__file__).parents[1] / "examples" / "bench" / "fashion-mnist-memorising.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--methods", default="ft,neggrad,rl,l1-sparse")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()

    raw = yaml.safe_load(SPEC.read_text())
    raw.update(methods=args.methods.split(","), augment=["none"], scenarios=["random:0.1"],
               seeds=[int(s) for s in args.seeds.split(",")])
    grid = expand(BenchSpec.model_validate(raw), installed())
    torch.set_num_threads(cores())
    with tempfile.TemporaryDirectory() as scratch:
        warm = run_grid(grid, CellStore(Path(scratch) / "warm"), executor=Serial())  # references cached; workers load them
        assert warm.error is None and not warm.failures, (warm.error, warm.failures)
        print(f"{len(grid.cells)} cells ({args.methods} x seeds {args.seeds}), {cores()} cores; "
              f"{args.rounds} rounds, alternating")
        per_hour: dict[int, list[float]] = {1: [], 2: []}
        for round_ in range(args.rounds):
            for workers in (1, 2):
                executor = Serial() if workers == 1 else LocalWorkers(workers)
                try:
                    started = time.perf_counter()
                    outcome = run_grid(grid, CellStore(Path(scratch) / f"r{round_}-w{workers}"), executor=executor)
                    seconds = time.perf_counter() - started  # worker start-up (spawn, imports) included
                finally:
                    executor.close()
                assert outcome.computed == len(grid.cells), outcome.failures
                per_hour[workers].append(3600 * outcome.computed / seconds)
                # the methods' own time per cell (its record's), against which the rest is overhead
                unlearning = sum(r["metrics"]["seconds"] for r in outcome.records if r["kind"] == "unlearned")
                print(f"round {round_ + 1}, {workers} worker(s): {seconds:.1f} s, {per_hour[workers][-1]:.0f} cells/hour; "
                      f"unlearning {unlearning / outcome.computed:.2f} s per cell")
    one, two = (statistics.median(per_hour[w]) for w in (1, 2))
    print(f"median cells/hour: 1 worker {one:.0f}, 2 workers {two:.0f}; ratio {two / one:.2f}")


if __name__ == "__main__":
    main()
