"""A run, from its resolved spec to the bundle on disk: the checks made before any training (`unlearn validate`
makes the same), and its execution, under torchrun or not, followed by the spec's trackers. Its spec from flags:
`unlearnkit.run_options`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from unlearnkit.api import Architecture
from unlearnkit.bundle import check_destination, write_bundle
from unlearnkit.cache import check_cache
from unlearnkit.checkpoint import load_model, read_checked
from unlearnkit.data import catalog
from unlearnkit.data.forget import check_classes
from unlearnkit.devices import select_device
from unlearnkit.engine.distributed import launched, launcher
from unlearnkit.errors import DataNotFoundError, UnlearnkitError
from unlearnkit.models import build, user_network
from unlearnkit.plugins import Registry, installed
from unlearnkit.progress import Progress
from unlearnkit.protocol import ProtocolRun
from unlearnkit.resolve import ResolvedRun
from unlearnkit.sequence import RunResult, run_protocol
from unlearnkit.spec import RunSpec
from unlearnkit.tracking import Tracking
from unlearnkit.workload import make_split


@dataclass
class Plan:
    """What the checks before training settled: the result bundle's folder, and the trackers that will follow the run."""

    destination: Path
    tracking: Tracking


def preflight(resolved: ResolvedRun, warn: Callable[[str], None] | None = None) -> Plan:
    """Everything `unlearn run` checks before it trains, without loading data; `unlearn validate` runs the same.

    Trackers without a `uri` write beside the bundle, in its parent folder (runs/ by default), so that the
    runs made there can be compared; `warn` receives a line for each tracker that fails during the run.
    """
    spec = resolved.spec
    check_run_inputs(spec)
    destination = spec.output.dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{resolved.name}"
    check_destination(destination, spec.output.overwrite)
    tracking = Tracking(resolved.trackers, warn) if warn else Tracking(resolved.trackers)
    tracking.prepare(destination.parent)
    return Plan(destination, tracking)


def check_run_inputs(spec: RunSpec, registry: Registry | None = None) -> None:
    """Before any training: the names and files a run reads, its device, and a model cache it can write."""
    check_inputs(spec, registry or installed())
    select_device(spec.device)
    if spec.cache:
        check_cache()


def check_inputs(spec: RunSpec, registry: Registry) -> None:
    """What a run reads before it trains, checked without loading the data: the data set and the model exist,
    the files the spec names can be read, and what needs the data (the forget set, the model built for it,
    --original's names and shapes) fits the data set's outline. A data set known only once loaded (a plugin's
    without an outline) has that part checked when it loads."""
    catalog.check(spec.data.name, registry)
    root = spec.data.root
    if not catalog.names_a_folder(spec.data.name) and root is not None and not spec.data.download \
            and not Path(root).expanduser().exists():
        # a source that reads `root` fails at once, as in the run, with its own hint; one that ignores it loads
        catalog.load(spec.data.name, root, False, spec.data.image_size, registry)
    registry.variant(Architecture, spec.model.name)
    if spec.original is not None:
        _check_readable(spec.original, "the original model's weights",
                        "Pass --original the path of a .safetensors, .pt or .pth file.")
    if spec.forget.kind == "indices" and spec.forget.file is not None:
        _check_readable(spec.forget.file, "the forget index file",
                        "Give a file of training indices: a JSON list, or integers one per line.")

    try:
        found = catalog.outline(spec.data.name, spec.data.root, spec.data.image_size, registry)
    except DataNotFoundError:
        if not spec.data.download:
            raise
        found = None  # the run downloads it: what needs the data is checked once it has loaded
    if found is None:
        if spec.original is not None:
            read_checked(spec.original)  # its format, checksum and contents; names and shapes wait for the data
        return
    shape = found.shape
    if spec.forget.kind == "class":
        check_classes(spec.forget.classes, shape.num_classes)
    elif found.train_size is not None:
        n = min(found.train_size, spec.data.train_subset or found.train_size)
        make_split(spec.forget, torch.zeros(n, dtype=torch.long), shape.num_classes, spec.seed)  # labels unused here
    model = build(spec.model.name, shape.in_channels, shape.num_classes, shape.image_size, spec.model.width, registry)
    if spec.original is not None:
        load_model(spec.original, user_network(model))


def _check_readable(path: Path, what: str, hint: str) -> None:
    try:
        with open(path, "rb"):  # as the run opens it: a literal ~ is not expanded there either
            pass
    except OSError as exc:
        raise UnlearnkitError(f"cannot read {what} {path}: {exc.strerror}", hint) from None


@dataclass
class Finished:
    """A run done: its result, the bundle written, the seconds it took and where its trackers logged it."""

    result: RunResult
    bundle: Path
    seconds: float
    tracked: list[str]


def execute(resolved: ResolvedRun, plan: Plan, progress: Progress,
            log: Callable[[str], None], command: str | None = None) -> Finished | None:
    """Run the protocol and write its bundle to `plan.destination` (checked by `preflight`).

    The trackers receive the run's params, each event of its log as it happens, then the bundle's files;
    whatever they do, the bundle is written. Under torchrun (WORLD_SIZE > 1) every rank trains its share
    of each batch; rank 0 alone evaluates, tracks and writes the bundle, and the other ranks return None.
    Ctrl-C (KeyboardInterrupt) writes no bundle.
    """
    started = time.perf_counter()
    tracking = plan.tracking if launcher().rank == 0 else Tracking()
    with tracking.run(plan.destination.name, tags=run_tags(resolved, command)):
        tracking.params(resolved.spec.model_dump(mode="json"))
        with launched(resolved.spec.device) as rank_device:
            run = ProtocolRun(resolved, progress=progress, log=log, device=select_device(rank_device))
            run.events.listeners.append(tracking.event)
            result = run_protocol(run)
        if launcher().rank != 0:
            return None  # the other ranks trained alongside; they have no metrics and write nothing
        bundle = write_bundle(result, plan.destination, resolved.spec.output.overwrite, command)
        tracking.artifacts(sorted(path for path in bundle.iterdir() if path.is_file()))
    return Finished(result, bundle, time.perf_counter() - started, tracking.where)


def run_tags(resolved: ResolvedRun, command: str | None) -> dict[str, Any]:
    """What a tracker shows beside a run's name, to find and group runs by."""
    spec = resolved.spec
    return {"method": resolved.name, "data": spec.data.name, "model": spec.model.name, "forget": spec.forget.kind,
            "seed": spec.seed, "command": command}
