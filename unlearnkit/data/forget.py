"""Forget sets: which training samples a run removes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearnkit.errors import UnlearnkitError


@dataclass(frozen=True)
class Split:
    """Training indices to forget and to retain, plus the classes forgotten whole (class-wise forgetting)
    and, for sequential forgetting, the requests in the order they come (`forget` is their union)."""

    forget: torch.Tensor
    retain: torch.Tensor
    classes: tuple[int, ...] = ()
    requests: tuple[torch.Tensor, ...] = ()

    def after(self, step: int) -> Split:
        """Sequential forgetting after request `step` (1-based): requests 1..step forgotten, the rest retained."""
        done = self.requests[:step]
        return _split(len(self.forget) + len(self.retain), torch.cat(done), requests=done)

    def request(self, step: int) -> Split:
        """What a method unlearning request `step` sees: that request as forget set, the samples no request
        has named so far as retain set (samples forgotten earlier are in neither)."""
        return Split(forget=self.requests[step - 1], retain=self.after(step).retain)


def random_split(n: int, fraction: float, seed: int) -> Split:
    """A uniformly random fraction of the training set, reproducible from the seed."""
    return _split(n, _random_chunks(n, fraction, 1, seed)[0])


def sequential_split(n: int, fraction: float, steps: int, seed: int) -> Split:
    """`steps` disjoint forget requests of `fraction` of the training set each.

    They are consecutive chunks of the one permutation `random_split` draws, so the first
    request is exactly the random split of the same fraction and seed (and shares its Retrain).
    """
    requests = tuple(chunk.sort().values for chunk in _random_chunks(n, fraction, steps, seed))
    return _split(n, torch.cat(requests), requests=requests)


def _random_chunks(n: int, fraction: float, steps: int, seed: int) -> list[torch.Tensor]:
    count = round(n * fraction)
    if count == 0:
        raise UnlearnkitError(f"forgetting {fraction:.4g} of {n} samples leaves 0 to forget; choose a larger fraction")
    if count * steps >= n:
        what = str(count) if steps == 1 else f"{steps} requests of {count}"
        raise UnlearnkitError(f"forgetting {what} of {n} samples leaves nothing to retain; "
                              "choose a smaller fraction" + (" or fewer steps" if steps > 1 else ""))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(order[: count * steps].split(count))


def class_split(labels: torch.Tensor, classes: list[int], num_classes: int) -> Split:
    """Every training sample of the given classes."""
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise UnlearnkitError(f"forget classes {bad} are not in 0..{num_classes - 1}")
    mask = torch.isin(labels, torch.tensor(classes))
    if mask.all():
        raise UnlearnkitError("forgetting every class leaves nothing to retain")
    return _split(len(labels), mask.nonzero().flatten(), tuple(sorted(set(classes))))


def indices_split(n: int, path: Path) -> Split:
    """Indices read from a file: a JSON list, or integers separated by whitespace or commas."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UnlearnkitError(f"cannot read forget index file {path}: {exc.strerror}") from None
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else text.replace(",", " ").split()
        indices = [int(v) for v in values]
    except (ValueError, TypeError):
        raise UnlearnkitError(
            f"forget index file {path} must hold integers (a JSON list, or one per line)"
        ) from None
    return given_split(n, indices, f"forget index file {path}")


def given_split(n: int, indices, what: str = "the forget indices") -> Split:
    """The training samples at the given indices (any integer sequence, tensor or array)."""
    indices = torch.as_tensor(indices, dtype=torch.long).flatten()
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= n:
        raise UnlearnkitError(f"{what} must name indices in 0..{n - 1}, at least one")
    indices = indices.unique()
    if len(indices) == n:
        raise UnlearnkitError(f"{what} names every training sample; nothing would be retained")
    return _split(n, indices)


def _split(n: int, forget: torch.Tensor, classes: tuple[int, ...] = (), requests: tuple[torch.Tensor, ...] = ()) -> Split:
    forget = forget.sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    return Split(forget=forget, retain=keep.nonzero().flatten(), classes=classes, requests=requests)
