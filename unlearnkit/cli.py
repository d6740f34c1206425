"""The `unlearn` command line: run, bench, tune, plot, validate, schema, plugins."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from unlearnkit.errors import PluginFault, UnlearnkitError, few
from unlearnkit.files import atomic_write_json, atomic_write_text, check_writable
from unlearnkit.plugins import installed, installed_listing
from unlearnkit.progress import Progress
from unlearnkit.spec import ResolvedRun, RunSpec, build_spec, json_schema, read_spec_file, resolve

app = typer.Typer(
    help="Machine unlearning: run a method against the Retrain reference and measure the gap.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and pipes: wide tables stay whole
    return console


out = _console()
err = _console(stderr=True)


def _forget_overrides(value: str) -> list[str]:
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


def _spec_from_cli(spec_file: Optional[Path], method, augment, overrides, **flags: Any) -> tuple[dict, str]:
    raw = read_spec_file(spec_file) if spec_file else {}
    sets: list[str] = []
    for key, value in flags.items():
        if value is None:
            continue
        if key == "forget":
            sets += _forget_overrides(value)
        else:
            sets.append(f"{key}={json.dumps(str(value)) if isinstance(value, Path) else json.dumps(value)}")
    spec = build_spec(raw, method=method, augment=augment, overrides=sets + list(overrides or []))
    return spec, str(spec_file) if spec_file else "spec"


def _resolve(spec: dict, source: str) -> ResolvedRun:
    return resolve(spec, installed(), source)


SpecArg = typer.Argument(None, help="A YAML or JSON run spec; flags below override it.", show_default=False)
MethodOpt = typer.Option(None, "--method", "-m", help="The unlearning method plugin, e.g. neggrad.")
AugmentOpt = typer.Option(None, "--augment", "-a", help="An augmenter to wrap the method with (repeatable; 'none' for none).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a spec field: method.params.lr=0.02 (repeatable).")


DataOpt = typer.Option(
    None, "--data", help="digits, fashion-mnist, mnist, cifar10, cifar100, svhn, a plugin's, or an ImageFolder path."
)
DataRootOpt = typer.Option(None, "--data-root", help="Where the data set's files are.")
DownloadOpt = typer.Option(None, "--download/--no-download", help="Download missing data with torchvision.")
ModelOpt = typer.Option(None, "--model", help="small-cnn, resnet18, vgg16-bn, torchvision:NAME, timm:NAME or a plugin's.")
ForgetOpt = typer.Option(None, "--forget", help="random:0.1, class:3, indices:FILE or sequential:0.1x5.")
SeedOpt = typer.Option(None, "--seed")
DeviceOpt = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps.")
OriginalOpt = typer.Option(
    None, "--original", help="Unlearn from this model (.safetensors, or a .pt/.pth state dict) instead of training one."
)
OutOpt = typer.Option(None, "--out", "-o", help="Result bundle folder (default runs/<time>-<method>).")
OverwriteOpt = typer.Option(None, "--overwrite", help="Replace an existing result bundle once the new one is complete.")
NoCacheOpt = typer.Option(False, "--no-cache", help="Train original and Retrain even if cached.")
NoRetrainOpt = typer.Option(False, "--no-retrain", help="Train no Retrain: RA, UA, TA and MIA only, no gap.")


def _run_spec_from_cli(spec_file, method, augment, overrides, data, data_root, download, model, forget, seed, device,
                       original, out_dir, overwrite, no_cache, no_retrain) -> tuple[dict, str]:
    """The run spec `unlearn run` (and `unlearn validate`, with the same flags) reads."""
    return _spec_from_cli(
        spec_file, method, augment, overrides,
        **{"data.name": data, "data.root": data_root, "data.download": download, "model.name": model,
           "forget": forget, "seed": seed, "device": device, "original": original,
           "output.dir": out_dir, "output.overwrite": overwrite, "cache": False if no_cache else None,
           "retrain": False if no_retrain else None},
    )


def _check_run_inputs(spec: RunSpec) -> None:
    """Before any training: the names and files a run reads, its device, and a model cache it can write."""
    from unlearnkit.cache import check_cache
    from unlearnkit.pipeline import check_inputs, select_device

    check_inputs(spec, installed())
    select_device(spec.device)
    if spec.cache:
        check_cache()


def _preflight(resolved: ResolvedRun) -> Path:
    """Everything `unlearn run` checks before it trains, without loading data; `unlearn validate` runs the same.

    Returns the result bundle's folder.
    """
    from unlearnkit.bundle import check_destination

    spec = resolved.spec
    _check_run_inputs(spec)
    destination = spec.output.dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{resolved.name}"
    check_destination(destination, spec.output.overwrite)
    return destination


@app.command()
def run(
    spec_file: Optional[Path] = SpecArg,
    method: Optional[str] = MethodOpt,
    augment: Optional[list[str]] = AugmentOpt,
    overrides: Optional[list[str]] = SetOpt,
    data: Optional[str] = DataOpt,
    data_root: Optional[Path] = DataRootOpt,
    download: Optional[bool] = DownloadOpt,
    model: Optional[str] = ModelOpt,
    forget: Optional[str] = ForgetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    original: Optional[Path] = OriginalOpt,
    out_dir: Optional[Path] = OutOpt,
    overwrite: Optional[bool] = OverwriteOpt,
    no_cache: bool = NoCacheOpt,
    no_retrain: bool = NoRetrainOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run the protocol: original, Retrain, the method (with augmenters), evaluation, result bundle.

    Under torchrun (WORLD_SIZE > 1) every rank trains its share of each batch; rank 0 alone evaluates,
    prints and writes the bundle (docs/distributed.md).
    """
    from unlearnkit.bundle import write_bundle
    from unlearnkit.engine.distributed import launched, launcher
    from unlearnkit.pipeline import Protocol, select_device
    from unlearnkit.report import rich_table, run_title

    spec, source = _run_spec_from_cli(spec_file, method, augment, overrides, data, data_root, download, model, forget,
                                      seed, device, original, out_dir, overwrite, no_cache, no_retrain)
    resolved = _resolve(spec, source)
    run_spec = resolved.spec
    name = resolved.name
    destination = _preflight(resolved)  # before any process group: a usage error ends every rank alike
    main_rank = launcher().rank == 0
    quiet = quiet or not main_rank
    started = time.perf_counter()
    try:
        with launched(run_spec.device) as rank_device, Progress(console=err, enabled=not quiet and err.is_terminal) as progress:
            protocol = Protocol(resolved, progress=progress, log=lambda line: None if quiet else err.print(f"[dim]{line}[/]"),
                                device=select_device(rank_device))
            result = protocol.run()
        if not main_rank:
            return  # the other ranks trained alongside; they have no metrics and write nothing
        bundle = write_bundle(result, destination, run_spec.output.overwrite)
    except KeyboardInterrupt:
        err.print(f"interrupted: no result bundle was written to {destination} "
                  "(models already cached are kept, so a rerun resumes from them)")
        raise typer.Exit(130) from None
    for step in result.steps:  # one table per forget request (one in all but sequential forgetting)
        out.print(rich_table(step.metrics, name, title=run_title(name, run_spec, step, len(result.steps))))
    retrain_sources = ", ".join(step.sources.get("retrain", "not trained (--no-retrain)") for step in result.steps)
    out.print(f"original: {result.sources['original']}; retrain: {retrain_sources}; "
              f"total {time.perf_counter() - started:.1f} s; bundle: {bundle}")


@app.command()
def validate(
    spec_file: Optional[Path] = SpecArg,
    method: Optional[str] = MethodOpt,
    augment: Optional[list[str]] = AugmentOpt,
    overrides: Optional[list[str]] = SetOpt,
    data: Optional[str] = DataOpt,
    data_root: Optional[Path] = DataRootOpt,
    download: Optional[bool] = DownloadOpt,
    model: Optional[str] = ModelOpt,
    forget: Optional[str] = ForgetOpt,
    seed: Optional[int] = SeedOpt,
    device: Optional[str] = DeviceOpt,
    original: Optional[Path] = OriginalOpt,
    out_dir: Optional[Path] = OutOpt,
    overwrite: Optional[bool] = OverwriteOpt,
    no_cache: bool = NoCacheOpt,
    no_retrain: bool = NoRetrainOpt,
) -> None:
    """Check a spec and `unlearn run`'s flags as run does before training (plugins, names, files, folders), running nothing."""
    spec, source = _run_spec_from_cli(spec_file, method, augment, overrides, data, data_root, download, model, forget,
                                      seed, device, original, out_dir, overwrite, no_cache, no_retrain)
    resolved = _resolve(spec, source)
    _preflight(resolved)
    s = resolved.spec
    wrappers = "".join(f" + {a.name}" for a in s.augment)
    out.print(f"valid: {s.method.name}{wrappers} on {s.data.name} ({s.model.name}), {s.forget.kind} forgetting, seed {s.seed}")


@app.command()
def schema() -> None:
    """Print the JSON schema of run specs, with every installed plugin's params."""
    out.print_json(json.dumps(json_schema(installed())))



# --- grids: bench and tune ------------------------------------------------------------------------

ExecutorOpt = typer.Option("local", "--executor", help="Where cells run: local (this machine) or ray (a Ray cluster).")
WorkersOpt = typer.Option(1, "--workers", "-w", min=1,
                          help="local: cells computed at once, each worker a process with cores/N torch threads.")
AddressOpt = typer.Option(None, "--address", help="ray: the cluster's address (default: start a local Ray).")
CellCpusOpt = typer.Option(None, "--cell-cpus", min=0.1, help="ray: CPUs each cell asks for, and its torch threads [default: 1].")
CellGpusOpt = typer.Option(None, "--cell-gpus", min=0.0, help="ray: GPUs each cell asks for (1 to train on GPUs) [default: 0].")


_invocation: list[str] = []


def _command_line() -> str:
    """The command as typed, to print beside the tables it produced."""
    return shlex.join(["unlearn", *_invocation])


def _record_invocation(folder: Path, outcome) -> list[dict]:
    """Append this command's run to the folder's invocations.json (resumed grids add up); returns them all."""
    history_file = folder / "invocations.json"
    try:
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
    except (OSError, ValueError):
        history = []  # a damaged history is started afresh: it only lists past invocations
    if not isinstance(history, list):
        history = []
    history.append({"command": _command_line(), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds": round(outcome.seconds, 1), "cells_computed": outcome.computed,
                    "interrupted": outcome.interrupted})
    atomic_write_json(history_file, history)
    return history


#: what bench and tune write in their folders; a folder holding any of the markers is one they wrote
GRID_MARKERS = {"cells", "bench.json", "invocations.json", "study.db", "methods", "wrapped"}
GRID_ENTRIES = GRID_MARKERS | {"results.md", "results.csv", "results.json", "cl_integration.png", "tuned.yaml", "plots"}


def _check_grid_folder(folder: Path) -> None:
    """A bench or tune folder is resumed and a missing or empty one is filled; any other folder (a run bundle,
    the user's own files) is refused, so that the grid's reports never overwrite a file it did not write."""
    try:
        entries = [p.name for p in folder.iterdir()]
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnlearnkitError(f"cannot use {folder} as a results folder: {exc.strerror}", "Choose another --out.") from None
    # what a killed or damaged run leaves beside its files: set-aside copies, SQLite's journals, temporary files
    names = {re.sub(r"(\.damaged|-journal|-wal|-shm)$", "", name) for name in entries
             if not (name.startswith(".") and name.endswith(".tmp"))}
    strangers = sorted(names - GRID_ENTRIES)
    if entries and (strangers or not names & GRID_MARKERS):
        held = few(strangers) if strangers else few(sorted(entries)) + " but no cells/, bench.json or study.db"
        raise UnlearnkitError(f"{folder} is not a bench or tune results folder: it holds {held}",
                              "Choose another --out: a new folder, or one an earlier bench or tune wrote to resume it, "
                              "so that no file of yours is overwritten.")


def _check_grid(specs: list[RunSpec], folder: Path) -> None:
    """Before a bench or tune trains anything: each cell's inputs, as `unlearn run` checks them, and its results folder."""
    check_writable(folder, f"results in {folder}", "Choose another --out.")
    _check_grid_folder(folder)
    checked = set()
    for spec in specs:
        # cells differ most in fields no check reads
        inputs = spec.model_dump_json(exclude={"method", "augment", "evaluate", "seed"})
        if inputs not in checked:
            checked.add(inputs)
            _check_run_inputs(spec)


def _run_and_report(grid, folder: Path, quiet: bool, header: str, meta: dict, executor) -> tuple:
    """Run a grid's missing cells with progress, then write the reports (also after Ctrl-C)."""
    from unlearnkit.bench.runner import CellStore, run_grid
    from unlearnkit.bench.summary import write_reports

    log = (lambda line: None) if quiet else (lambda line: err.print(f"[dim]{line}[/]", highlight=False))
    partial = header + "\nPartial: the grid is still running.\n"
    with Progress(console=err, enabled=not quiet and err.is_terminal) as progress:
        outcome = run_grid(grid, CellStore(folder), progress=progress, log=log, executor=executor,
                           after_references=_report_regime,
                           after_group=lambda records: write_reports(folder, records, partial, meta))
    history = _record_invocation(folder, outcome)
    wall = sum(h["seconds"] for h in history)
    header += f"\nWall time: {wall:.0f} s over {len(history)} invocation(s) of the command.\n"
    files = write_reports(folder, outcome.records, header, {**meta, "invocations": history})
    if outcome.error is not None:
        raise outcome.error  # reported as one message; the finished cells and their tables are kept
    return outcome, files


#: `unlearn tune --seeds N` tunes on seeds TUNING_SEEDS.., apart from the evaluation seeds 0.. that bench reports
TUNING_SEEDS = 100


def _report_regime(records: list[dict]) -> None:
    """Before any method runs: can this setting tell methods apart? One row per scenario, a warning where not."""
    from unlearnkit.bench.summary import regime_report

    table, warnings = regime_report(records)
    if table is not None:
        err.print(table)
    for line in warnings:
        err.print(f"[bold yellow]warning:[/] {line}", highlight=False)


def _finish(outcome, files: list[Path], folder: Path, total: int) -> None:
    err.print(f"{outcome.done} of {total} cells finished ({outcome.computed} now, {outcome.seconds:.0f} s); "
              f"written: {', '.join(str(f) for f in files)}")
    if outcome.interrupted:
        err.print(f"interrupted: finished cells are kept in {folder}/cells; run the same command again to resume")
        raise typer.Exit(130)
    if outcome.failures:
        err.print("[red]failed cells[/] (rerun to retry them; UNLEARNKIT_DEBUG=1 shows tracebacks):")
        for line in outcome.failures:
            err.print(f"  {line}", highlight=False)
        raise typer.Exit(1)


def _tuning_seeds(path: Path, tuned_on: Any) -> list[int]:
    """The seeds a tuned.yaml says its params were chosen on (its `tuned_on: {scenario, seeds}`); none if absent."""
    seeds = tuned_on.get("seeds") if isinstance(tuned_on, dict) else tuned_on
    if tuned_on is None or seeds is None:
        return []
    if not (isinstance(tuned_on, dict) and isinstance(seeds, list)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise UnlearnkitError(f"{path}: tuned_on is not a mapping with a list of integer seeds: {tuned_on!r}",
                              "Give a tuned.yaml written by unlearn tune (tuned_on: {scenario: ..., seeds: [100, 101]}).")
    return seeds


@app.command()
def bench(
    spec_file: Optional[Path] = typer.Argument(None, help="A YAML or JSON bench spec; flags below override it.", show_default=False),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods, or all (default)."),
    exclude: Optional[str] = typer.Option(None, "--exclude", help="Methods to leave out of all."),
    augment: Optional[str] = typer.Option(None, "--augment", "-a", help="Augmenter settings, comma-separated (default none,coun-cl)."),
    scenarios: Optional[str] = typer.Option(None, "--scenarios", help="Comma-separated: random:0.1,random:0.5,class:0 (default)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="A count (3 = seeds 0,1,2) or a list (0,4,7)."),
    data: Optional[str] = typer.Option(None, "--data", help="The data set (base.data.name)."),
    model: Optional[str] = typer.Option(None, "--model", help="The architecture (base.model.name)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    params_files: Optional[list[Path]] = typer.Option(None, "--params", help="A tuned.yaml from unlearn tune (repeatable)."),
    overrides: Optional[list[str]] = typer.Option(
        None, "--set", "-s", help="Override a bench spec field: base.train.epochs=12 (repeatable)."
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default bench/<hash of the grid>)."),
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    address: Optional[str] = AddressOpt,
    cell_cpus: Optional[float] = CellCpusOpt,
    cell_gpus: Optional[float] = CellGpusOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-cell lines."),
) -> None:
    """Run a grid (methods x augmenters x scenarios x seeds), resumable; write the paper's tables and figure."""
    from unlearnkit.bench.executors import make_executor
    from unlearnkit.bench.grid import expand, merge, read_bench_spec, spec_key
    from unlearnkit.spec import set_path

    # checked now; started (worker processes, a local Ray) when cells first run, stopped by close()
    running = make_executor(executor, workers, address, cell_cpus, cell_gpus)

    raw = read_spec_file(spec_file) if spec_file else {}
    flags = {"methods": methods, "exclude": exclude, "augment": augment, "scenarios": scenarios, "seeds": seeds,
             "base.data.name": data, "base.model.name": model, "base.device": device, "out": out_dir}
    for key, value in flags.items():
        if value is not None:
            set_path(raw, f"{key}={json.dumps(str(value))}")
    tuned_on: dict[Path, list[int]] = {}
    for path in params_files or []:
        content = read_spec_file(path)
        tuned = content.get("params")
        if not isinstance(tuned, dict):
            raise UnlearnkitError(f"{path} holds no `params` mapping", "Give a tuned.yaml written by unlearn tune.")
        raw["params"] = merge(raw.get("params") or {}, tuned)
        tuned_on[path] = _tuning_seeds(path, content.get("tuned_on"))
    for assignment in overrides or []:
        set_path(raw, assignment)
    spec = read_bench_spec(raw, str(spec_file) if spec_file else "bench spec")
    for path, tuning_seeds in tuned_on.items():  # params chosen on the seeds a table reports would flatter it
        shared = sorted(set(tuning_seeds) & set(spec.seed_list()))
        if shared:
            raise UnlearnkitError(f"{path} was tuned on seeds {shared}, which this bench also reports",
                                  f"Tune on seeds apart from the evaluation seeds (unlearn tune --seeds "
                                  f"{TUNING_SEEDS},{TUNING_SEEDS + 1}), or bench other seeds.")
    registry = installed()
    grid = expand(spec, registry)
    if not grid.cells:
        raise UnlearnkitError("the grid has no cells", "Check --methods, --augment and --scenarios.")
    identity = spec.model_dump(mode="json", exclude={"out"})
    where_run = {k: v for k, v in identity["base"].items() if k != "device"}  # the same grid on another device
    folder = spec.out or Path("bench") / spec_key({**identity, "base": where_run})[:10]
    _check_grid([r.spec for r in grid.resolved.values()], folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "bench.json", {**identity, "out": str(folder)})
    for line in grid.skipped:
        err.print(f"[yellow]skipped[/] {line}", highlight=False)
    variants = len({c.variant for c in grid.cells})
    err.print(f"grid: {variants} variants x {len(spec.scenarios)} scenarios x {len(spec.seed_list())} seeds = "
              f"{len(grid.cells)} cells; results in {folder} (rerun the same command to resume)")
    first = grid.resolved[grid.cells[0]].spec
    header = (f"# unlearn bench\n\nCommand: `{_command_line()}`\n\n"
              f"Setting: {first.data.name} (train subset {first.data.train_subset or 'all'}, test subset "
              f"{first.data.test_subset or 'all'}), {first.model.name}, original and Retrain: "
              f"{first.train.epochs} epochs, lr {first.train.lr:g}, batch {first.train.batch_size}, {first.train.schedule}; "
              f"seeds {', '.join(map(str, spec.seed_list()))}. Cells: mean ± std over seeds; brackets: |mean - Retrain's mean|; "
              f"Avg Gap: the mean of the bracketed gaps (the paper's); Per-seed Gap: mean ± std over seeds of each "
              f"seed's gap to its Retrain; CL effect: paired per-seed gap difference to the unwrapped method, "
              f"mean [95% CI], * where the interval excludes 0.\n")
    with closing(running):
        outcome, files = _run_and_report(grid, folder, quiet, header, {"bench": identity}, running)
    out.print((folder / "results.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    _finish(outcome, files, folder, len(grid.cells))


@app.command()
def tune(
    spec_file: Optional[Path] = SpecArg,
    method: Optional[str] = MethodOpt,
    augment: Optional[list[str]] = AugmentOpt,
    overrides: Optional[list[str]] = SetOpt,
    ranges: Optional[list[str]] = typer.Option(
        None, "--range", "-r",
        help="PLUGIN.PARAM=LOW:HIGH[:log] or =V1,V2 (repeatable); default: the plugins' declared ranges.",
    ),
    search: str = typer.Option("tpe", "--search", help="tpe, grid or random (Optuna's samplers)."),
    points: int = typer.Option(3, "--points", min=1, help="grid: values per range."),
    trials_count: int = typer.Option(8, "--trials", min=1, help="tpe, random: how many trials in all (grid: the grid's size)."),
    scenario: str = typer.Option("random:0.1", "--scenario", help="random:0.1 or class:N."),
    seeds: str = typer.Option("2", "--seeds", help=f"Tuning seeds: a list, or a count N = seeds {TUNING_SEEDS}.."
                              f"{TUNING_SEEDS}+N-1, apart from the evaluation seeds a bench reports."),
    data: Optional[str] = typer.Option(None, "--data"),
    model: Optional[str] = typer.Option(None, "--model"),
    device: Optional[str] = typer.Option(None, "--device"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default tune/<variant>-<hash>)."),
    bench_file: Optional[Path] = typer.Option(None, "--bench", help="Tune every variant of this bench spec instead "
                                              "(--set then edits the bench spec); one tuned.yaml for all."),
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    address: Optional[str] = AddressOpt,
    cell_cpus: Optional[float] = CellCpusOpt,
    cell_gpus: Optional[float] = CellGpusOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Search a method's params for the lowest Avg Gap to Retrain; write tuned.yaml for unlearn bench --params."""
    import yaml

    from unlearnkit.bench.executors import make_executor
    from unlearnkit.bench.grid import merge, parse_seeds, spec_key
    from unlearnkit.bench.keys import Keys
    from unlearnkit.bench.runner import CellStore, Outcome, finished, run_grid
    from unlearnkit.bench.summary import trial_tables, write_reports
    from unlearnkit.bench import tune as tuning

    if search not in ("tpe", "grid", "random"):
        raise UnlearnkitError(f"--search '{search}' is not one of tpe, grid, random")
    # checked now; started (worker processes, a local Ray) when cells first run, stopped by close()
    running = make_executor(executor, workers, address, cell_cpus, cell_gpus)
    parsed = parse_seeds(seeds)
    seed_list = list(range(TUNING_SEEDS, TUNING_SEEDS + parsed)) if isinstance(parsed, int) else parsed
    if bench_file is not None:
        if spec_file or method or augment or ranges:
            raise UnlearnkitError("--bench tunes the variants a bench spec names, with their declared ranges",
                                  "Leave out the run spec, --method, --augment and --range.")
        with closing(running):
            _tune_bench(bench_file, overrides or [], scenario, seed_list, points, out_dir, quiet, running)
        return
    base, source = _spec_from_cli(spec_file, method, augment, overrides,
                                  **{"data.name": data, "model.name": model, "device": device})
    resolved = _resolve(base, source)  # the spec and names are valid before anything is searched
    name, chosen_method = resolved.name, resolved.method.name
    chosen_augment = tuple(a.name for a in resolved.augmenters)
    registry = installed()
    space = tuning.search_space(chosen_method, chosen_augment, registry, list(ranges or []))
    tuning.tuning_grid(base, chosen_method, chosen_augment, scenario, seed_list, {}, registry)  # the scenario is valid
    tuning.load_optuna()  # missing: one message before anything is trained
    # workers on other devices share the study; the trial count can grow between invocations
    identity = {"base": {k: v for k, v in base.items() if k != "device"}, "scenario": scenario, "seeds": seed_list,
                "search": search, "space": {k: str(v) for k, v in space.items()}, **({"points": points} if search == "grid" else {})}
    key = spec_key(identity)[:8]
    folder = out_dir or Path("tune") / f"{name}-{key}"
    _check_grid([resolved.spec], folder)  # every trial's cells share its inputs
    folder.mkdir(parents=True, exist_ok=True)
    study = tuning.open_study(folder, f"{name}-{key}", search, space, points, seed=resolved.spec.seed)
    target = len(tuning.grid_trials(space, points)) if search == "grid" else trials_count
    searched = "; ".join(f"{k} in {v}" for k, v in space.items())
    err.print(f"tuning {name} ({search}): {target} trials x {len(seed_list)} seeds over {searched}; "
              f"{len(tuning.finished_trials(study))} already finished; results and study.db in {folder}")

    store, started = CellStore(folder), time.perf_counter()
    total = Outcome()  # summed over this invocation's trials
    regime_shown: list[bool] = []
    log = (lambda line: None) if quiet else (lambda line: err.print(f"[dim]{line}[/]", highlight=False))

    def regime_once(records: list[dict]) -> None:
        if not regime_shown:
            regime_shown.append(True)
            _report_regime(records)

    def objective(trial) -> float:
        """One trial: its cells (those already on disk are reused), scored by Avg Gap over the tuning seeds."""
        assignment = {trial.number: tuning.suggest(trial, space, search, points)}
        grid = tuning.tuning_grid(base, chosen_method, chosen_augment, scenario, seed_list, assignment, registry)
        outcome = run_grid(grid, store, progress=progress, log=log, after_references=regime_once, executor=running)
        total.computed += outcome.computed
        total.failures += outcome.failures
        if outcome.error is not None:
            raise outcome.error
        if outcome.interrupted:
            raise KeyboardInterrupt  # Optuna marks the trial failed; the next invocation retries it
        ranked = tuning.ranking(outcome.records, assignment, len(seed_list))
        if not ranked:
            raise tuning.TrialFailed()
        return ranked[0]["avg_gap"]

    with closing(running), Progress(console=err, enabled=not quiet and err.is_terminal) as progress:
        # one trial per call: other workers may finish the study meanwhile, and GridSampler's stop ends a call only
        for _ in range(target - len(tuning.finished_trials(study))):
            try:
                study.optimize(objective, n_trials=1, catch=(tuning.TrialFailed,))
            except KeyboardInterrupt:
                total.interrupted = True
            except UnlearnkitError as exc:
                total.error = exc
            if total.interrupted or total.error or len(tuning.finished_trials(study)) >= target:
                break

    total.seconds = time.perf_counter() - started
    assignments = tuning.finished_trials(study)
    grid = tuning.tuning_grid(base, chosen_method, chosen_augment, scenario, seed_list, assignments, registry)
    keys = Keys(grid)
    total.records = finished(grid, keys, store)
    total.done = sum(not store.missing(keys.cell[c]) for c in grid.cells)
    history = _record_invocation(folder, total)
    header = (f"# unlearn tune: {name}\n\nCommand: `{_command_line()}`\n\nSearch ({search}, {len(assignments)} of "
              f"{target} trials finished): {searched}\n"
              f"\nWall time: {sum(h['seconds'] for h in history):.0f} s over {len(history)} invocation(s) of the command.\n")
    files = write_reports(folder, total.records, header, {"tune": identity, "invocations": history})
    if total.error is not None:
        raise total.error  # reported as one message; the finished trials and their tables are kept
    ranked = tuning.ranking(total.records, assignments, len(seed_list))
    complete = len(assignments) >= target
    if ranked:
        table, trials_markdown = trial_tables(ranked, list(space),
                                              f"{name}: trials by mean Avg Gap to Retrain ({scenario}, seeds {seeds})")
        best = ranked[0]
        if complete:  # a winner only once the study has every trial asked for, each over every seed
            # the params the trials ran with: those set in the spec, then the search's choice
            ran_with: dict[str, Any] = {"method": {"params": base["method"].get("params", {})}}
            if base.get("augment"):
                ran_with["augment"] = [{"name": a["name"], "params": a.get("params", {})} for a in base["augment"]]
            tuned = {"params": {name: merge(ran_with, tuning.overlay(chosen_method, best["assignment"]))},
                     "tuned_on": {"scenario": scenario, "seeds": seed_list}}
            note = (f"# unlearn tune: best of {len(ranked)} trials for {name} on {scenario}, seeds {seed_list}: "
                    f"Avg Gap {best['avg_gap']:.2f}\n# use with: unlearn bench --params {folder / 'tuned.yaml'}\n")
            atomic_write_text(folder / "tuned.yaml", note + yaml.safe_dump(tuned, sort_keys=False))
        with (folder / "results.md").open("a") as handle:
            handle.write("\n### Trials, best first\n\n" + trials_markdown + "\n\nChosen: "
                         + ", ".join(f"{k}={v}" for k, v in best["assignment"].items()) + "\n")
        out.print(table)
        if complete:
            out.print(f"best: {', '.join(f'{k}={v}' for k, v in best['assignment'].items())} "
                      f"(Avg Gap {best['avg_gap']:.2f}); written {folder / 'tuned.yaml'}")
    if not complete:
        err.print(f"{len(assignments)} of {target} trials finished: tuned.yaml is written once all have; "
                  "run the same command again to finish them")
    _finish(total, files, folder, len(grid.cells))


def _tune_bench(path: Path, overrides: list[str], scenario: str, seeds: list[int], points: int,
                out_dir: Optional[Path], quiet: bool, executor) -> None:
    """Tune every variant of a bench spec: methods first, then wrapped variants with their methods' choices."""
    import yaml

    from unlearnkit.bench.grid import merge, read_bench_spec, spec_key
    from unlearnkit.bench.summary import tuned_markdown
    from unlearnkit.bench.tune import bench_tuning_grid, chosen_params
    from unlearnkit.spec import set_path

    raw = read_spec_file(path)
    for assignment in overrides:
        set_path(raw, assignment)
    spec = read_bench_spec(raw, str(path))
    registry = installed()
    identity = {"bench": spec.model_dump(mode="json", exclude={"out"}), "scenario": scenario, "seeds": seeds,
                "points": points}
    folder = out_dir or Path("tune") / f"bench-{spec_key(identity)[:8]}"
    _check_grid([], folder)  # each phase's cells are checked before it runs
    folder.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, Any] = {}
    best: dict[str, dict[str, Any]] = {}  # each variant's best trial, for the table
    for wrapped in (False, True):
        spec.params = merge(spec.params, chosen)  # wrapped variants tune with their methods' choices
        names, grid = bench_tuning_grid(spec, wrapped, scenario, seeds, points, registry)
        if not grid.cells:
            continue
        err.print(f"tuning {'wrapped variants' if wrapped else 'methods'}: {', '.join(names)}; "
                  f"{len(grid.cells)} cells on {scenario}, seeds {seeds}; results in {folder}")
        header = f"# unlearn tune --bench {path}\n\nCommand: `{_command_line()}`\n"
        phase = folder / ("wrapped" if wrapped else "methods")
        _check_grid([r.spec for r in grid.resolved.values()], phase)
        outcome, files = _run_and_report(grid, phase, quiet, header, {"tune": identity}, executor)
        if outcome.interrupted or outcome.failures:
            _finish(outcome, files, folder, len(grid.cells))
        for variant in names:
            found = chosen_params(variant, outcome.records, grid, len(seeds))
            if found is None:
                raise UnlearnkitError(f"{variant}: not every trial finished", "Run the same command again to finish them.")
            chosen[variant], best[variant] = found
    tuned = {"params": chosen, "tuned_on": {"scenario": scenario, "seeds": seeds}}
    note = (f"# unlearn tune --bench {path}: each variant's best trial on {scenario}, seeds {seeds}\n"
            f"# use with: unlearn bench {path} --params {folder / 'tuned.yaml'}\n")
    atomic_write_text(folder / "tuned.yaml", note + yaml.safe_dump(tuned, sort_keys=False))
    (folder / "results.md").write_text(f"# Tuned on {scenario}, seeds {seeds}\n\nCommand: `{_command_line()}`\n\n"
                                       + tuned_markdown(chosen, best) + "\n")
    out.print((folder / "results.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    err.print(f"written {folder / 'tuned.yaml'}")


# --- pictures ---------------------------------------------------------------------------------------


@app.command()
def plot(
    bundle: Path = typer.Argument(..., help="A result bundle folder written by unlearn run."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where the PNGs go (default BUNDLE/plots)."),
    projections: Optional[list[str]] = typer.Option(None, "--projection", "-p", help="pca and/or tsne (default both)."),
    samples: int = typer.Option(1500, "--samples", min=10, help="Retain samples drawn (all forget samples up to a third of this)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Draw the representation space (PCA, t-SNE) of original, Retrain and the unlearned model, forget samples marked."""
    from unlearnkit.plotting import plot_bundle
    from unlearnkit.report import premise_table

    chosen = projections or ["pca", "tsne"]
    unknown = [p for p in chosen if p not in ("pca", "tsne")]
    if unknown:
        raise UnlearnkitError(f"--projection {unknown[0]} is not one of pca, tsne")
    with Progress(console=err, enabled=not quiet and err.is_terminal) as progress:
        files, premise = plot_bundle(bundle, out_dir or bundle / "plots", chosen, samples, progress, installed())
    out.print(premise_table(premise))
    out.print("written: " + ", ".join(str(f) for f in files))


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List installed plugins: name, kind, version, distribution, and whether they loaded."""
    from unlearnkit.report import plugins_table

    rows, failed = installed_listing()  # from the plugin index when it is current: no plugin (nor torch) imported
    if as_json:
        out.print_json(json.dumps(rows))
        return
    out.print(plugins_table(rows, out.width))
    for record in failed:
        err.print(Text.assemble((f"{record.source} failed:", "red"), f" {record.error}"), highlight=False, soft_wrap=True)
    if failed:
        err.print("UNLEARNKIT_STRICT_PLUGINS=1 shows a failing plugin's traceback; "
                  "UNLEARNKIT_BLOCK_PLUGINS=NAME skips a plugin.", highlight=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a damaged cache entry set aside, say) as one line, without the code location."""
    err.print(Text.assemble(("warning:", "bold yellow"), " ", str(message)), highlight=False, soft_wrap=True)


#: commands each of torchrun's processes would run whole (only `run` shares its work among them), and why
_ONE_PROCESS = {"bench": "runs a grid of runs", "tune": "runs a grid of runs", "plot": "draws a finished bundle"}


def _under_torchrun(args: list[str]) -> None:
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


def main(argv: list[str] | None = None) -> None:
    """Entry point: errors print one message (no traceback) and exit 2 for the user's, 1 for a plugin's fault
    (its code raised); UNLEARNKIT_DEBUG=1 shows tracebacks. Under torchrun only rank 0 prints."""
    global _invocation
    _invocation = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    loud = out.quiet, err.quiet
    try:
        _under_torchrun(_invocation)
        app(args=argv)
    except UnlearnkitError as exc:
        if os.environ.get("UNLEARNKIT_DEBUG", "") not in ("", "0"):
            raise
        # messages quote user input and commands ([tune], [3]): printed as plain text, never as markup
        err.print(Text.assemble(("error:", "bold red"), " ", exc.message), highlight=False, soft_wrap=True)
        if exc.hint:
            err.print(exc.hint, markup=False, highlight=False, soft_wrap=True)
        sys.exit(1 if isinstance(exc, PluginFault) else 2)
    finally:
        out.quiet, err.quiet = loud  # in-process callers (tests) get their consoles back
