"""The `unlearn` command line: run, validate, schema, bench, tune, audit, plot, plugins. Each command parses its
flags (what several share is in `cli_shared`), calls the application layer (`runs`, `bench.session`,
`audit.session`, `bundle_plots`) and prints what it returns."""

from __future__ import annotations

import json
import os
import shlex
import sys
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from unlearnkit.bench.seeds import TUNING_SEEDS
from unlearnkit.errors import PluginFault, UnlearnkitError
from unlearnkit.plugins import installed, installed_listing
from unlearnkit.progress import Reporter
from unlearnkit.resolve import json_schema
from unlearnkit.cli_shared import (
    GRID_FLAGS,
    RUN_FLAGS,
    TRACK_FLAGS,
    console,
    executor_from_flags,
    one_line_warnings,
    under_torchrun,
    with_flags,
)
from unlearnkit.run_options import RunOptions, TrackFlags

app = typer.Typer(
    help="Machine unlearning: run a method against the Retrain reference and measure the gap.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


out, err = console(), console(stderr=True)

@app.command()
@with_flags(RUN_FLAGS, RunOptions, "options")
def run(ctx: typer.Context, options: RunOptions,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars.")) -> None:
    """Run the protocol: original, Retrain, the method (with augmenters), evaluation, result bundle.

    Under torchrun (WORLD_SIZE > 1) every rank trains its share of each batch; rank 0 alone evaluates,
    prints and writes the bundle (docs/distributed.md).
    """
    from unlearnkit import runs
    from unlearnkit.report import run_report

    resolved = options.resolve()
    reporter = Reporter(out, err, quiet or err.quiet)  # under torchrun, the consoles of ranks but 0 are quiet
    plan = runs.preflight(resolved, reporter.warn)  # before any process group: a usage error ends every rank alike
    try:
        with reporter.progress() as progress:
            done = runs.execute(resolved, plan, progress, reporter.log, ctx.obj)
    except KeyboardInterrupt:
        err.print(f"interrupted: no result bundle was written to {plan.destination} "
                  "(models already cached are kept, so a rerun resumes from them)")
        raise typer.Exit(130) from None
    if done is None:
        return  # a torchrun rank other than 0: it trained alongside and reports nothing
    for printed in run_report(done.result, resolved.name, done.seconds, done.bundle):
        out.print(printed)
    for line in done.tracked:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@with_flags(RUN_FLAGS, RunOptions, "options")
def validate(options: RunOptions) -> None:
    """Check a spec and `unlearn run`'s flags as run does before training (plugins, names, files, folders), running nothing."""
    from unlearnkit.report import validated
    from unlearnkit.runs import preflight

    resolved = options.resolve()
    preflight(resolved)
    out.print(validated(resolved.spec))


@app.command()
def schema() -> None:
    """Print the JSON schema of run specs, with every installed plugin's params."""
    out.print_json(json.dumps(json_schema(installed())))


# --- grids: bench and tune ------------------------------------------------------------------------

def _session(ctx: typer.Context, executor: Any, quiet: bool) -> Any:
    from unlearnkit.bench.session import Session

    return Session(executor, Reporter(out, err, quiet), ctx.obj)  # main() gives ctx.obj: the command as typed


@app.command()
@with_flags(GRID_FLAGS, executor_from_flags, "executor")
@with_flags(TRACK_FLAGS, TrackFlags, "track")
def bench(
    ctx: typer.Context,
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
    overrides: Optional[list[str]] = typer.Option(None, "--set", "-s",
                                                  help="Override a bench spec field: base.train.epochs=12 (repeatable)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default bench/<hash of the grid>)."),
    track: Any = None,
    executor: Any = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-cell lines."),
) -> None:
    """Run a grid (methods x augmenters x scenarios x seeds), resumable; write the paper's tables and figure."""
    from unlearnkit.bench import session

    flags = {"methods": methods, "exclude": exclude, "augment": augment, "scenarios": scenarios, "seeds": seeds,
             "base.data.name": data, "base.model.name": model, "base.device": device, "out": out_dir}
    raise typer.Exit(session.bench(_session(ctx, executor, quiet), spec_file, flags, params_files or [], overrides or [],
                                   track))


@app.command()
@with_flags(GRID_FLAGS, executor_from_flags, "executor")
@with_flags(TRACK_FLAGS, TrackFlags, "track")
def tune(
    ctx: typer.Context,
    spec_file: Optional[Path] = RUN_FLAGS["spec_file"],
    method: Optional[str] = RUN_FLAGS["method"],
    augment: Optional[list[str]] = RUN_FLAGS["augment"],
    overrides: Optional[list[str]] = RUN_FLAGS["overrides"],
    ranges: Optional[list[str]] = typer.Option(None, "--range", "-r", help="PLUGIN.PARAM=LOW:HIGH[:log] or =V1,V2 "
                                               "(repeatable); default: the plugins' declared ranges."),
    search: str = typer.Option("tpe", "--search", help="tpe, grid or random (Optuna's samplers)."),
    points: int = typer.Option(3, "--points", min=1, help="grid: values per range."),
    trials: int = typer.Option(8, "--trials", min=1, help="tpe, random: how many trials in all (grid: the grid's "
                               "size); --bench: for each variant."),
    scenario: str = typer.Option("random:0.1", "--scenario", help="random:0.1 or class:N."),
    seeds: str = typer.Option("2", "--seeds", help=f"Tuning seeds: a list, or a count N = seeds {TUNING_SEEDS}.."
                              f"{TUNING_SEEDS}+N-1, apart from the evaluation seeds a bench reports."),
    data: Optional[str] = typer.Option(None, "--data", help="The data set (data.name)."),
    model: Optional[str] = typer.Option(None, "--model", help="The architecture (model.name)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Results folder (default tune/<variant>-<hash>)."),
    bench_file: Optional[Path] = typer.Option(None, "--bench", help="Tune every variant of this bench spec instead, "
                                              "each with --trials trials over its joint space (--set then edits the "
                                              "bench spec); one tuned.yaml for all."),
    track: Any = None,
    executor: Any = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-cell lines."),
) -> None:
    """Search a method's params for the lowest Avg Gap to Retrain; write tuned.yaml for unlearn bench --params."""
    from unlearnkit.bench import session

    options = session.TuneOptions(spec_file, method, augment, overrides, ranges, search, points, trials, scenario,
                                  seeds, data, model, device, out_dir, bench_file, track)
    raise typer.Exit(session.tune(_session(ctx, executor, quiet), options))


# --- privacy audits ---------------------------------------------------------------------------------


@app.command()
@with_flags(GRID_FLAGS, executor_from_flags, "executor")
def audit(
    ctx: typer.Context,
    spec_file: Path = typer.Argument(..., help="A bench spec (its setting, methods and budgets) or a run spec.", show_default=False),
    methods: Optional[str] = typer.Option(None, "--methods", help="Comma-separated methods to audit (default: the spec's)."),
    augment: Optional[str] = typer.Option(None, "--augment", "-a", help="Augmenter settings, comma-separated, e.g. "
                                          "none,coun-cl (default: the spec's)."),
    audit_kind: str = typer.Option("ulira", "--kind", help="ulira (shadow models on random halves) or epsilon (the NeurIPS "
                             "2023 challenge's score from runs and Retrains of one Original)."),
    shadows: int = typer.Option(16, "--shadows", "-k", help="ulira: K shadow models, even and 6 or more (LiRA uses 64)."),
    runs: int = typer.Option(8, "--runs", "-n", help="epsilon: N runs of each method and N Retrains, even."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="random:F or class:N, whose forget set is audited "
                                           "(default: the spec's first)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Draws the targets and the shadows' halves."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a spec field (repeatable)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Audit folder (default audit/<hash of the setting>)."),
    executor: Any = None,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-shadow lines."),
) -> None:
    """Did the forget set leave the model? U-LiRA, or the challenge's epsilon score, per forget sample (docs/audit.md)."""
    from unlearnkit.auditing import report, session

    reporter = Reporter(out, err, quiet)
    request = session.AuditRequest(spec_file, methods, augment, shadows, scenario, seed, tuple(overrides or ()), out_dir,
                                   audit_kind, runs)
    try:
        with closing(executor):
            result, folder = session.audit(request, reporter, executor)
    except KeyboardInterrupt:
        err.print("interrupted: every finished shadow is kept; run the same command again to resume")
        raise typer.Exit(130) from None
    files = report.write(result, folder, ctx.obj)
    out.print(report.table(result))
    if (warning := report.verdict(result)) is not None:
        reporter.warn(warning)
    err.print(f"models trained: {result.trained}; {result.seconds:.0f} s; written: {', '.join(map(str, files))}")


@app.command()
def reproduce(
    bundle: Path = typer.Argument(..., help="A result bundle folder written by unlearn run, or a bench folder."),
    tolerance: float = typer.Option(0.5, "--tolerance", min=0.0, help="The largest difference of a metric, in points, "
                                    "that still reproduces."),
    cache: bool = typer.Option(False, "--cache/--no-cache", help="Reuse cached Original and Retrain models (default: "
                               "train them again too)."),
    cells: Optional[int] = typer.Option(None, "--cells", min=1, help="A bench folder: run only this many of its "
                                        "finished cells again, taking each variant in turn (default: all)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run a bundle (or a bench folder, cell by cell) again from what it recorded; exit 0 only if it reproduces."""
    from unlearnkit.reproduce import is_bench_folder, reproduce_bench, reproduction_table
    from unlearnkit.reproduce import reproduce as again

    reporter = Reporter(out, err, quiet)
    with reporter.progress() as progress:
        if is_bench_folder(bundle):
            found = reproduce_bench(bundle, tolerance, cache, progress, reporter.log, cells)
        else:
            found = again(bundle, tolerance, cache, progress, reporter.log)
    out.print(reproduction_table(found))
    for line in found.notes:
        err.print(line, highlight=False)
    if found.environment:
        err.print("the environment differs from the one recorded: " + "; ".join(found.environment), highlight=False,
                  markup=False)
    raise typer.Exit(0 if found.reproduces else 1)


# --- pictures ---------------------------------------------------------------------------------------


@app.command()
def plot(
    bundle: Path = typer.Argument(..., help="A result bundle folder written by unlearn run."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where the PNGs go (default BUNDLE/plots)."),
    projections: Optional[list[str]] = typer.Option(None, "--projection", "-p", help="pca and/or tsne (default both)."),
    samples: int = typer.Option(1500, "--samples", min=10, help="Retain samples drawn (all forget samples up to a third of this)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Draw the representation space (PCA, t-SNE) of original, Retrain and the unlearned model, forget samples marked."""
    from unlearnkit.bundle_plots import TITLES, plot_bundle
    from unlearnkit.report import premise_table

    with Reporter(out, err, quiet).progress() as progress:
        files, premise = plot_bundle(bundle, out_dir or bundle / "plots", projections or list(TITLES), samples, progress,
                                     installed())
    out.print(premise_table(premise))
    out.print("written: " + ", ".join(str(f) for f in files))


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List installed plugins: name, kind, version, distribution, and whether they loaded."""
    from unlearnkit.report import plugin_failures, plugins_table

    rows, failed = installed_listing()  # from the plugin index when it is current: no plugin (nor torch) imported
    if as_json:
        out.print_json(json.dumps(rows))
        return
    out.print(plugins_table(rows, out.width))
    for line in plugin_failures(failed):
        err.print(line, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: errors print one message (no traceback) and exit 2 for the user's, 1 for a plugin's fault
    (its code raised); UNLEARNKIT_DEBUG=1 shows tracebacks. Under torchrun only rank 0 prints."""
    args = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = one_line_warnings(err)
    loud = out.quiet, err.quiet
    try:
        under_torchrun(args, out, err)
        app(args=args, obj=shlex.join(["unlearn", *args]))  # the command as typed, for the reports it writes
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
