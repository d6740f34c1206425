"""What the `unlearn` commands share: flags written once and the decorator that hands them to a command as one
object (RunOptions, an executor), the consoles and their one-line warnings, and which commands torchrun may run."""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.text import Text

from unlearnkit.errors import UnlearnkitError

#: the flags of a run spec, shared by run and validate: each of RunOptions' fields
RUN_FLAGS: dict[str, Any] = {
    "spec_file": typer.Argument(None, help="A YAML or JSON run spec; flags below override it.", show_default=False),
    "method": typer.Option(None, "--method", "-m", help="The unlearning method plugin, e.g. neggrad."),
    "augment": typer.Option(None, "--augment", "-a", help="An augmenter to wrap the method with (repeatable; 'none' for none)."),
    "overrides": typer.Option(None, "--set", "-s", help="Override a spec field: method.params.lr=0.02 (repeatable)."),
    "data": typer.Option(None, "--data", help="digits, fashion-mnist, mnist, cifar10, cifar100, svhn, a plugin's, or an ImageFolder path."),
    "data_root": typer.Option(None, "--data-root", help="Where the data set's files are."),
    "download": typer.Option(None, "--download/--no-download", help="Download missing data with torchvision."),
    "model": typer.Option(None, "--model", help="small-cnn, resnet18, vgg16-bn, torchvision:NAME, timm:NAME or a plugin's."),
    "forget": typer.Option(None, "--forget", help="random:0.1, class:3, indices:FILE or sequential:0.1x5."),
    "seed": typer.Option(None, "--seed", help="Draws the forget set and seeds every training (default 0)."),
    "device": typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    "original": typer.Option(
        None, "--original", help="Unlearn from this model (.safetensors, or a .pt/.pth state dict) instead of training one."),
    "out_dir": typer.Option(None, "--out", "-o", help="Result bundle folder (default runs/<time>-<method>)."),
    "overwrite": typer.Option(None, "--overwrite", help="Replace an existing result bundle once the new one is complete."),
    "no_cache": typer.Option(False, "--no-cache", help="Train original and Retrain even if cached."),
    "no_retrain": typer.Option(False, "--no-retrain", help="Train no Retrain: RA, UA, TA and MIA only, no gap."),
    "track": typer.Option(None, "--track", help="A tracker to follow the run: mlflow, tensorboard or a plugin's (repeatable)."),
    "track_uri": typer.Option(None, "--track-uri", help="Where the trackers write (default: a store in the output folder)."),
    "eval_every": typer.Option(None, "--eval-every", min=1, help="Also measure the unlearned model every K epochs of "
                               "the method's training (events.jsonl, trackers; cost apart as eval_flops)."),
    "keep": typer.Option(None, "--keep", help="With --eval-every: keep the best weights by best:avg_gap, "
                         "best:min:METRIC or best:max:METRIC among the measured epochs and the final model."),
}

#: the trackers of a bench or a tuning: RunOptions' own two flags
TRACK_FLAGS: dict[str, Any] = {name: RUN_FLAGS[name] for name in ("track", "track_uri")}


def with_flags(flags: dict[str, Any], build: Callable[..., Any], into: str) -> Callable[[Callable], Callable]:
    """Give a command flags it shares with others (`flags`: parameter of `build` -> typer option), in place of its
    parameter `into`, which receives them as one object: `build(**the flags given)`."""
    shared = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD, default=flags[p.name])
              for p in inspect.signature(build).parameters.values()]

    def decorate(command: Callable) -> Callable:
        own = list(inspect.signature(command).parameters.values())
        at = [p.name for p in own].index(into)

        @functools.wraps(command)
        def with_flags(**given: Any) -> None:
            command(**{into: build(**{name: given.pop(name) for name in flags})}, **given)

        parameters = own[:at] + shared + own[at + 1:]
        with_flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        with_flags.__annotations__ = {p.name: p.annotation for p in parameters}  # strings, read in this module
        return with_flags

    return decorate


#: where a grid's cells run, shared by bench and tune
GRID_FLAGS: dict[str, Any] = {
    "kind": typer.Option("local", "--executor",
                         help="Where cells (or an audit's shadow models) run: local (this machine) or ray (a Ray cluster)."),
    "workers": typer.Option(1, "--workers", "-w", min=1,
                            help="local: cells (or shadow models) computed at once, each worker a process with cores/N torch threads."),
    "address": typer.Option(None, "--address", help="ray: the cluster's address (default: start a local Ray)."),
    "cpus": typer.Option(None, "--cell-cpus", min=0.1, help="ray: CPUs each cell asks for, and its torch threads (default 1)."),
    "gpus": typer.Option(None, "--cell-gpus", min=0.0, help="ray: GPUs each cell asks for (1 to train on GPUs; default 0)."),
}


def executor_from_flags(kind: str, workers: int, address: Optional[str], cpus: Optional[float], gpus: Optional[float]) -> Any:
    """The executor the flags choose: checked now, started when cells first run, stopped by close()."""
    from unlearnkit.bench.executors import make_executor

    return make_executor(kind, workers, address, cpus, gpus)


def console(stderr: bool = False) -> Console:
    made = Console(stderr=stderr)
    if not made.is_terminal:
        made.width = max(made.width, 120)  # logs and pipes: wide tables stay whole
    return made


def one_line_warnings(err: Console) -> Callable[..., None]:
    """Warnings (a damaged cache entry set aside, say) as one line on `err`, without the code location."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        err.print(Text.assemble(("warning:", "bold yellow"), " ", str(message)), highlight=False, soft_wrap=True)

    return show


#: commands each of torchrun's processes would run whole (only `run` shares its work among them), and why
_ONE_PROCESS = {"bench": "runs a grid of runs", "tune": "runs a grid of runs", "audit": "trains a pool of shadow models",
                "reproduce": "runs a bundle again", "plot": "draws a finished bundle"}


def under_torchrun(args: list[str], out: Console, err: Console) -> None:
    """When torchrun started several processes: silence all but rank 0, and refuse the commands that are not for torchrun."""
    if os.environ.get("WORLD_SIZE", "1") in ("", "1"):
        return  # not launched: nothing to do, and torch is not loaded for it
    from unlearnkit.engine.distributed import launcher

    here = launcher()
    if here.rank != 0:  # rank 0 speaks for the run: the others print nothing, errors included
        out.quiet = err.quiet = True
    command = next((a for a in args if not a.startswith("-")), "")
    if command in _ONE_PROCESS:
        raise UnlearnkitError(f"unlearn {command} {_ONE_PROCESS[command]} and is not for torchrun (WORLD_SIZE={here.size})",
                              f"Run unlearn {command} without torchrun; only unlearn run shares its work among torchrun's processes.")
