"""The flags of a run (`unlearn run`, `unlearn validate`, the base of `unlearn tune`) and the run spec they make.

Torch-free: the command line imports it as it starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import installed
from unlearnkit.resolve import ResolvedRun, resolve
from unlearnkit.spec_input import build_spec, read_spec_file


@dataclass
class RunOptions:
    """The flags `unlearn run` and `unlearn validate` share: a spec file and the fields they override."""

    spec_file: Optional[Path] = None
    method: Optional[str] = None
    augment: Optional[list[str]] = None
    overrides: Optional[list[str]] = None
    data: Optional[str] = None
    data_root: Optional[Path] = None
    download: Optional[bool] = None
    model: Optional[str] = None
    forget: Optional[str] = None
    seed: Optional[int] = None
    device: Optional[str] = None
    original: Optional[Path] = None
    out_dir: Optional[Path] = None
    overwrite: Optional[bool] = None
    no_cache: bool = False
    no_retrain: bool = False
    track: Optional[list[str]] = None
    track_uri: Optional[str] = None
    eval_every: Optional[int] = None
    keep: Optional[str] = None

    def resolve(self) -> ResolvedRun:
        """The run these flags ask for, its plugins found and its spec validated."""
        o = self
        spec, source = spec_from_flags(
            o.spec_file, o.method, o.augment, o.overrides,
            **{"data.name": o.data, "data.root": o.data_root, "data.download": o.download, "model.name": o.model,
               "forget": o.forget, "seed": o.seed, "device": o.device, "original": o.original,
               "output.dir": o.out_dir, "output.overwrite": o.overwrite, "cache": False if o.no_cache else None,
               "retrain": False if o.no_retrain else None, "eval_every": o.eval_every, "keep": o.keep},
        )
        TrackFlags(o.track, o.track_uri).apply(spec)
        return resolve(spec, installed(), source)


@dataclass
class TrackFlags:
    """--track NAME (repeatable) and --track-uri URI, for a run spec's `track` list."""

    track: Optional[list[str]] = None
    track_uri: Optional[str] = None

    def apply(self, spec: dict[str, Any]) -> None:
        """Into a run spec (in place): the trackers named replace the spec's, and each of them gets the uri."""
        if self.track:
            spec["track"] = [{"name": name} for name in self.track]
        if self.track_uri is None:
            return
        chosen = spec.get("track")
        if not chosen:
            raise UnlearnkitError("--track-uri says where trackers write, and no tracker is chosen",
                                  "Add --track mlflow (or tensorboard, or a plugin's), or a track: list to the spec.")
        if isinstance(chosen, list):  # anything else is refused, with its field, when the spec is validated
            spec["track"] = [{"name": entry} if isinstance(entry, str) else entry for entry in chosen]
            for entry in spec["track"]:
                if isinstance(entry, dict):
                    entry["params"] = {**(entry.get("params") or {}), "uri": self.track_uri}


def spec_from_flags(spec_file: Optional[Path], method: Optional[str], augment: Optional[list[str]],
                    overrides: Optional[list[str]], **flags: Any) -> tuple[dict, str]:
    """A run spec: the file's (if any), then each flag given (spec field -> value), then the --set assignments.
    Returns it with the name of its source, for messages."""
    raw = read_spec_file(spec_file) if spec_file else {}
    sets: list[str] = []
    for key, value in flags.items():
        if value is None:
            continue
        if key == "forget":
            sets += forget_overrides(value)
        else:
            sets.append(f"{key}={json.dumps(str(value)) if isinstance(value, Path) else json.dumps(value)}")
    spec = build_spec(raw, method=method, augment=augment, overrides=sets + list(overrides or []))
    return spec, str(spec_file) if spec_file else "spec"


def forget_overrides(value: str) -> list[str]:
    """--forget random:0.1 | class:3,5 | indices:FILE | sequential:0.1x5 -> --set assignments."""
    kind, _, arg = value.partition(":")
    if kind == "random":
        return ["forget.kind=random"] + ([f"forget.fraction={arg}"] if arg else [])
    if kind == "class" and arg:
        return ["forget.kind=class", f"forget.classes=[{arg}]"]
    if kind == "indices" and arg:
        return ["forget.kind=indices", f"forget.file={json.dumps(arg)}"]
    if kind == "sequential":
        from unlearnkit.bench.grid import scenario_overrides

        try:
            return scenario_overrides(value)  # the bench's scenario string, read one way
        except UnlearnkitError:
            pass
    raise UnlearnkitError(f"--forget '{value}' is not understood",
                          "Use random:0.1, class:3 (or class:3,5), indices:FILE, or sequential:0.1x5 "
                          "(5 requests of 10% in a row; 2 or more).")
