"""How a grid's records are named: a hash of everything that determines their numbers."""

from __future__ import annotations

from typing import Any, Sequence

from unlearnkit.api import Configurable
from unlearnkit.bench.grid import Grid, spec_key
from unlearnkit.resolve import ResolvedRun
from unlearnkit.spec import WATCHING, ComputeSpec

REFERENCES = ("retrain", "original")


def _identity(resolved: ResolvedRun, *drop: str) -> dict[str, Any]:
    """What determines a cell's numbers: the spec, less where it runs and where it writes.

    Plugin params count as validated, defaults left out, so a param written out at its
    default value (a tuning that chose the default, say) names the same cell as one left unset.
    """
    # Neither how many processes read the data nor the Retrain switch (a bench always trains Retrain) changes a number,
    # nor what follows the run (its trackers, how often it logs, measurements during training that keep nothing).
    unkept = ("eval_every", "keep") if resolved.spec.keep is None else ()
    exclude: dict[str, Any] = {key: True for key in (*WATCHING, "cache", "output", "retrain", *unkept, *drop)}
    identity = resolved.spec.model_dump(mode="json", exclude={**exclude, "data": {"workers"}})
    if identity["forget"].get("indices") is None:  # absent unless given, so that other scenarios keep their keys
        identity["forget"].pop("indices", None)
    if identity.get("compute") == ComputeSpec().model_dump(mode="json"):  # absent unless set: older cells keep their keys
        identity.pop("compute")
    plugins: dict[str, Sequence[Configurable]] = {
        "method": [resolved.method], "augment": resolved.augmenters, "evaluate": resolved.evaluators,
    }
    for section, chosen in plugins.items():
        if section in identity:
            entries = identity[section] if isinstance(identity[section], list) else [identity[section]]
            for entry, plugin in zip(entries, chosen):
                entry["params"] = plugin.params.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return identity


def forget_steps(resolved: ResolvedRun) -> list[int | None]:
    """The steps a cell writes a record for: 1..k in sequential forgetting, else one (None)."""
    forget = resolved.spec.forget
    return list(range(1, forget.steps + 1)) if forget.kind == "sequential" else [None]


def _key(kind: str, identity: dict[str, Any], step: int | None) -> str:
    return spec_key(kind, identity) if step is None else spec_key(kind, identity, {"step": step})


def cell_key(resolved: ResolvedRun, step: int | None = None) -> str:
    return _key("unlearned", _identity(resolved), step)


def reference_key(resolved: ResolvedRun, kind: str, step: int | None = None) -> str:
    return _key(kind, _identity(resolved, "method", "augment", "eval_every", "keep"), step)


def cell_keys(resolved: ResolvedRun) -> tuple[str, ...]:
    """A cell's record keys, one per forget step."""
    return tuple(cell_key(resolved, step) for step in forget_steps(resolved))


def reference_keys(resolved: ResolvedRun) -> tuple[dict[str, str], ...]:
    """Its group's Retrain and Original record keys, one pair per forget step."""
    return tuple({kind: reference_key(resolved, kind, step) for kind in REFERENCES} for step in forget_steps(resolved))


class Keys:
    """Each cell's record keys and its group's reference keys, one per forget step, hashed once per grid."""

    def __init__(self, grid: Grid):
        self.cell = {cell: cell_keys(grid.resolved[cell]) for cell in grid.cells}
        self.references = {cell: reference_keys(grid.resolved[cell]) for cell in grid.cells}
