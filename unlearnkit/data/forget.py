"""Forget sets: which training samples a run removes."""

from __future__ import annotations

import json
import re
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
    check_classes(classes, num_classes)
    mask = torch.isin(labels, torch.tensor(classes))
    if mask.all():
        raise UnlearnkitError("forgetting every class leaves nothing to retain")
    return _split(len(labels), mask.nonzero().flatten(), tuple(sorted(set(classes))))


def check_classes(classes: list[int], num_classes: int) -> None:
    """The classes are the data set's, and some class is left to retain."""
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise UnlearnkitError(f"forget classes {bad} are not in 0..{num_classes - 1}")
    if len(set(classes)) == num_classes:
        raise UnlearnkitError("forgetting every class leaves nothing to retain")


def indices_split(n: int, path: Path) -> Split:
    """Indices read from a file: a JSON list, or integers separated by whitespace or commas.

    Read strictly, since a wrong index silently forgets the wrong samples: a value that is not a plain
    integer (1.5, "abc", true, a nested list), an index outside the training set and an index named
    twice are refused, naming the file, the value and where it is (its line, or its index in the list).
    """
    what = f"forget index file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not an index
    except OSError as exc:
        raise UnlearnkitError(f"cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(f"{what} is not text: byte {exc.start} is not UTF-8", _INDEX_FORMAT) from None
    entries = _json_entries(text, what) if text.lstrip().startswith("[") else _text_entries(text)
    first: dict[int, str] = {}  # index -> where it was named
    for value, where, shown in entries:
        if not isinstance(value, int) or isinstance(value, bool):
            raise UnlearnkitError(f"{what}, {where}: {shown} is not an integer", _INDEX_FORMAT)
        if not 0 <= value < n:
            raise UnlearnkitError(f"{what}, {where}: index {value} is outside the training set (0..{n - 1})",
                                  f"The training set has {n} samples; name indices 0 to {n - 1}.")
        if value in first:
            raise UnlearnkitError(f"{what}, {where}: index {value} is named twice (first at {first[value]})",
                                  "Name each sample once.")
        first[value] = where
    if not first:
        raise UnlearnkitError(f"{what} names no index", _INDEX_FORMAT)
    return given_split(n, list(first), what)


_INDEX_FORMAT = "Give integers only: a JSON list such as [3, 17, 42], or one or more per line separated by spaces or commas."


def _json_entries(text: str, what: str) -> list[tuple[object, str, str]]:
    """(value, where, value as written) of each item of a JSON list."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"{what} is not a valid JSON list: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                              _INDEX_FORMAT) from None
    return [(value, f"index {i}", json.dumps(value)) for i, value in enumerate(values)]


def _text_entries(text: str) -> list[tuple[object, str, str]]:
    """(value, where, value as written) of each whitespace- or comma-separated word; words that are not integers stay text."""
    return [
        (int(word) if re.fullmatch(r"[+-]?[0-9]+", word) else word, f"line {line}", repr(word))
        for line, content in enumerate(text.splitlines(), start=1)
        for word in content.replace(",", " ").split()
    ]


def given_split(n: int, indices, what: str = "the forget indices") -> Split:
    """The training samples at the given indices (any integer sequence, tensor or array), each named once.

    As strict as the index files: a mask or fractional values would silently forget other samples.
    """
    values = torch.as_tensor(indices).flatten()
    if len(values) == 0:
        raise UnlearnkitError(f"{what} is empty: it names no training sample", "Name at least one training index.")
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
        raise UnlearnkitError(f"{what} must be integers, not {str(values.dtype).removeprefix('torch.')}",
                              "Give training indices; for a boolean mask over the training set, mask.nonzero().flatten().")
    indices = values.long()
    outside = ((indices < 0) | (indices >= n)).nonzero().flatten()
    if len(outside):
        position = int(outside[0])
        raise UnlearnkitError(f"{what} must name indices in 0..{n - 1}: {int(indices[position])} at position {position} is outside "
                              "the training set", f"The training set has {n} samples; name indices 0 to {n - 1}.")
    named, counts = indices.unique(return_counts=True)
    if (counts > 1).any():
        twice = int(named[counts > 1][0])
        at = [int(i) for i in (indices == twice).nonzero().flatten()[:2]]
        raise UnlearnkitError(f"{what}: index {twice} is named twice (positions {at[0]} and {at[1]})", "Name each sample once.")
    indices = named
    if len(indices) == n:
        raise UnlearnkitError(f"{what} names every training sample; nothing would be retained", "Leave some samples to retain.")
    return _split(n, indices)


def _split(n: int, forget: torch.Tensor, classes: tuple[int, ...] = (), requests: tuple[torch.Tensor, ...] = ()) -> Split:
    forget = forget.sort().values
    keep = torch.ones(n, dtype=torch.bool)
    keep[forget] = False
    return Split(forget=forget, retain=keep.nonzero().flatten(), classes=classes, requests=requests)
