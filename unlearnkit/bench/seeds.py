"""The tuning-seed policy: `unlearn tune` chooses params on seeds apart from the evaluation seeds 0.. that
`unlearn bench` reports, and a bench refuses params tuned on a seed it reports. Torch-free: the CLI's help quotes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearnkit.bench.grid import parse_seeds
from unlearnkit.errors import UnlearnkitError

#: `unlearn tune --seeds N` tunes on seeds TUNING_SEEDS..TUNING_SEEDS+N-1
TUNING_SEEDS = 100


def tuning_seeds(seeds: str) -> list[int]:
    """`unlearn tune --seeds`: a list as given, or a count N = seeds TUNING_SEEDS..TUNING_SEEDS+N-1."""
    parsed = parse_seeds(seeds)
    return list(range(TUNING_SEEDS, TUNING_SEEDS + parsed)) if isinstance(parsed, int) else parsed


def tuned_on_seeds(path: Path, tuned_on: Any) -> list[int]:
    """The seeds a tuned.yaml says its params were chosen on (its `tuned_on: {scenario, seeds}`); none if absent."""
    seeds = tuned_on.get("seeds") if isinstance(tuned_on, dict) else tuned_on
    if tuned_on is None or seeds is None:
        return []
    if not (isinstance(tuned_on, dict) and isinstance(seeds, list)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise UnlearnkitError(f"{path}: tuned_on is not a mapping with a list of integer seeds: {tuned_on!r}",
                              "Give a tuned.yaml written by unlearn tune (tuned_on: {scenario: ..., seeds: [100, 101]}).")
    return seeds
