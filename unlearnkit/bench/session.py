"""`unlearn bench` and `unlearn tune` below the command line: results folders, the grid's run and reports,
the Optuna study and tuned.yaml. Each command is one function returning its exit code
(0, 1 for failed cells, 130 after Ctrl-C); user errors are raised as UnlearnkitError."""

from __future__ import annotations

import json
import re
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from unlearnkit.bench import tune as tuning
from unlearnkit.bench.executors import Executor
from unlearnkit.bench.grid import BenchSpec, Grid, expand, merge, read_bench_spec, scenario_label, spec_key
from unlearnkit.bench.keys import Keys
from unlearnkit.bench.runner import CellStore, Outcome, finished, run_grid
from unlearnkit.bench.seeds import TUNING_SEEDS, tuned_on_seeds, tuning_seeds
from unlearnkit.bench.summary import budget_warnings, regime_report, tabulate, trial_tables, tuned_markdown, write_reports
from unlearnkit.errors import UnlearnkitError, few
from unlearnkit.files import atomic_write_json, atomic_write_text, check_writable
from unlearnkit.plugins import installed
from unlearnkit.progress import Reporter
from unlearnkit.resolve import ResolvedRun, resolve
from unlearnkit.run_options import TrackFlags, spec_from_flags
from unlearnkit.runs import check_run_inputs
from unlearnkit.spec import WATCHING, RunSpec
from unlearnkit.spec_input import read_spec_file, set_path
from unlearnkit.tracking import Tracking

#: what the first-party trackers write in a results folder by default (mlflow, tensorboard)
TRACKED = {"mlflow.db", "mlartifacts", "tensorboard"}

#: what bench and tune write in their folders; a folder holding any of the markers is one they wrote
GRID_MARKERS = {"cells", "bench.json", "invocations.json", "study.db", "variants", "methods", "wrapped"}
GRID_ENTRIES = GRID_MARKERS | {"results.md", "results.csv", "results.json", "cl_integration.png", "tuned.yaml", "plots",
                               *TRACKED}


@dataclass
class Session:
    """What every bench and tune shares: where cells run, how it reports, the command as typed, and the trackers
    that follow it (each cell a child of the command's run)."""

    executor: Executor
    reporter: Reporter
    command: str  # printed beside the tables it produced, and recorded in invocations.json
    tracking: Tracking = field(default_factory=Tracking)


# --- results folders --------------------------------------------------------------------------------


def check_grid_folder(folder: Path) -> None:
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


def check_grid(specs: list[RunSpec], folder: Path) -> None:
    """Before a bench or tune trains anything: each cell's inputs, as `unlearn run` checks them, and its results folder."""
    check_writable(folder, f"results in {folder}", "Choose another --out.")
    check_grid_folder(folder)
    checked = set()
    for spec in specs:
        # cells differ most in fields no check reads
        inputs = spec.model_dump_json(exclude={"method", "augment", "evaluate", "seed"})
        if inputs not in checked:
            checked.add(inputs)
            check_run_inputs(spec)


def record_invocation(folder: Path, outcome: Outcome, command: str) -> list[dict]:
    """Append this command's run to the folder's invocations.json (resumed grids add up); returns them all."""
    history_file = folder / "invocations.json"
    try:
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
    except (OSError, ValueError):
        history = []  # a damaged history is started afresh: it only lists past invocations
    if not isinstance(history, list):
        history = []
    history.append({"command": command, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds": round(outcome.seconds, 1), "cells_computed": outcome.computed,
                    "interrupted": outcome.interrupted})
    atomic_write_json(history_file, history)
    return history


# --- running a grid ----------------------------------------------------------------------------------


def run_and_report(session: Session, grid: Grid, folder: Path, header: str, meta: dict) -> tuple[Outcome, list[Path]]:
    """Run a grid's missing cells with progress, then write the reports (also after Ctrl-C)."""
    reporter = session.reporter
    partial = header + "\nPartial: the grid is still running.\n"
    with reporter.progress() as progress:
        outcome = run_grid(grid, CellStore(folder), progress=progress, log=reporter.log, executor=session.executor,
                           after_references=lambda records: report_regime(records, reporter),
                           after_group=lambda records: write_reports(folder, records, partial, meta),
                           after_cell=lambda records, events: track_cell(session.tracking, records, events))
    history = record_invocation(folder, outcome, session.command)
    header += f"\nWall time: {_wall_time(history)}\n"
    files = write_reports(folder, outcome.records, header, {**meta, "invocations": history})
    if outcome.error is not None:
        raise outcome.error  # reported as one message; the finished cells and their tables are kept
    return outcome, files


def track_cell(tracking: Tracking, records: list[dict], events: list[dict]) -> None:
    """A cell (or a tuning trial) computed now, as a child of the command's tracked run: its variant, params, scenario
    and seed, and its event log (its loss terms, then its metrics, at each forget step)."""
    first = records[0]
    scenario = first["scenario"].partition("@")[0]  # a sequential cell's records are per step; the cell is one run
    tags = {"variant": first["variant"], "method": first["method"], "scenario": scenario, "seed": first["seed"],
            "trial": first.get("trial")}
    with tracking.run(f"{first['variant']}, {scenario_label(scenario)}, seed {first['seed']}", tags):
        tracking.params({**tags, "augment": first["augment"], "params": first["params"]})
        for event in events:
            tracking.event(event)


def _wall_time(history: list[dict]) -> str:
    return f"{sum(h['seconds'] for h in history):.0f} s over {len(history)} invocation(s) of the command."


def report_regime(records: list[dict], reporter: Reporter) -> None:
    """Before any method runs: can this setting tell methods apart? One row per scenario, a warning where not."""
    table, warnings = regime_report(records)
    if table is not None:
        reporter.err.print(table)
    for line in warnings:
        reporter.warn(line)


def finish(outcome: Outcome, files: list[Path], folder: Path, total: int, reporter: Reporter) -> int:
    """Say what the grid finished and wrote; the exit code: 130 after Ctrl-C, 1 with failed cells, else 0."""
    err = reporter.err
    err.print(f"{outcome.done} of {total} cells finished ({outcome.computed} now, {outcome.seconds:.0f} s); "
              f"written: {', '.join(str(f) for f in files)}")
    if outcome.interrupted:
        err.print(f"interrupted: finished cells are kept in {folder}/cells; run the same command again to resume")
        return 130
    if outcome.failures:
        err.print("[red]failed cells[/] (rerun to retry them; UNLEARNKIT_DEBUG=1 shows tracebacks):")
        for line in outcome.failures:
            err.print(f"  {line}", highlight=False)
        return 1
    return 0


# --- bench ---------------------------------------------------------------------------------------------


def bench(session: Session, spec_file: Optional[Path], flags: dict[str, Any], params_files: list[Path],
          overrides: list[str], track: TrackFlags | None = None) -> int:
    """Run a bench spec's grid (flags: bench spec field -> value given on the command line), resumable; the trackers
    of its base spec (or `track`'s) follow it as one run, each cell computed now a child run."""
    spec = _bench_spec(spec_file, flags, params_files, overrides)
    if track is not None:
        track.apply(spec.base)
    grid = expand(spec, installed())
    if not grid.cells:
        raise UnlearnkitError("the grid has no cells", "Check --methods, --augment and --scenarios.")
    identity = spec.model_dump(mode="json", exclude={"out"})
    # the same grid on another device, or followed by other trackers
    where_run = {k: v for k, v in identity["base"].items() if k not in WATCHING}
    grid_identity = {k: v for k, v in identity.items() if k != "budget"}  # a budget changes warnings, no number
    folder = spec.out or Path("bench") / spec_key({**grid_identity, "base": where_run})[:10]
    check_grid([r.spec for r in grid.resolved.values()], folder)
    tracking = session.tracking = Tracking(grid.resolved[grid.cells[0]].trackers, session.reporter.warn)
    tracking.prepare(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "bench.json", {**identity, "out": str(folder)})
    err = session.reporter.err
    for line in grid.skipped:
        err.print(f"[yellow]skipped[/] {line}", highlight=False)
    variants = len({c.variant for c in grid.cells})
    err.print(f"grid: {variants} variants x {len(spec.scenarios)} scenarios x {len(spec.seed_list())} seeds = "
              f"{len(grid.cells)} cells; results in {folder} (rerun the same command to resume)")
    with closing(session.executor), tracking.run(f"bench {folder.name}", {"command": session.command}) as tracked:
        tracking.params(identity)
        outcome, files = run_and_report(session, grid, folder, _bench_header(session.command, spec, grid),
                                        {"bench": identity})
        tracking.artifacts([path for path in files if path.is_file()])
        tracked.status = "interrupted" if outcome.interrupted else "failed" if outcome.failures else "finished"
    session.reporter.out.print((folder / "results.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    for line in tracking.where:
        session.reporter.out.print(line, markup=False, highlight=False, soft_wrap=True)
    if spec.budget is not None:
        for line in budget_warnings(tabulate(outcome.records), spec.budget.low, spec.budget.high):
            session.reporter.warn(line)
    return finish(outcome, files, folder, len(grid.cells), session.reporter)


def _bench_spec(spec_file: Optional[Path], flags: dict[str, Any], params_files: list[Path],
                overrides: list[str]) -> BenchSpec:
    """The bench spec: the file's, the flags, the tuned params (never tuned on a seed it reports), then --set."""
    raw = read_spec_file(spec_file) if spec_file else {}
    for key, value in flags.items():
        if value is not None:
            set_path(raw, f"{key}={json.dumps(str(value))}")
    tuned_on: dict[Path, list[int]] = {}
    for path in params_files:
        content = read_spec_file(path)
        tuned = content.get("params")
        if not isinstance(tuned, dict):
            raise UnlearnkitError(f"{path} holds no `params` mapping", "Give a tuned.yaml written by unlearn tune.")
        raw["params"] = merge(raw.get("params") or {}, tuned)
        tuned_on[path] = tuned_on_seeds(path, content.get("tuned_on"))
    for assignment in overrides:
        set_path(raw, assignment)
    spec = read_bench_spec(raw, str(spec_file) if spec_file else "bench spec")
    for path, chosen_on in tuned_on.items():  # params chosen on the seeds a table reports would flatter it
        shared = sorted(set(chosen_on) & set(spec.seed_list()))
        if shared:
            raise UnlearnkitError(f"{path} was tuned on seeds {shared}, which this bench also reports",
                                  f"Tune on seeds apart from the evaluation seeds (unlearn tune --seeds "
                                  f"{TUNING_SEEDS},{TUNING_SEEDS + 1}), or bench other seeds.")
    return spec


def _bench_header(command: str, spec: BenchSpec, grid: Grid) -> str:
    first = grid.resolved[grid.cells[0]].spec
    return (f"# unlearn bench\n\nCommand: `{command}`\n\n"
            f"Setting: {first.data.name} (train subset {first.data.train_subset or 'all'}, test subset "
            f"{first.data.test_subset or 'all'}), {first.model.name}, original and Retrain: "
            f"{first.train.epochs} epochs, lr {first.train.lr:g}, batch {first.train.batch_size}, {first.train.schedule}; "
            f"seeds {', '.join(map(str, spec.seed_list()))}. Cells: mean ± std over seeds; brackets: |mean - Retrain's mean|; "
            f"Avg Gap: the mean of the bracketed gaps (the paper's); Per-seed Gap: mean ± std over seeds of each "
            f"seed's gap to its Retrain; CL effect (and coun − this): the Avg Gap difference to the unwrapped method "
            f"(to coun), a paired seed bootstrap [95% CI] with its Holm-adjusted p within the scenario's family, * where "
            f"that p is below 0.05.\n")


# --- tune -------------------------------------------------------------------------------------------------


@dataclass
class TuneOptions:
    """What `unlearn tune` searches: a run spec's method (and augmenters), or every variant of a bench spec."""

    spec_file: Optional[Path] = None
    method: Optional[str] = None
    augment: Optional[list[str]] = None
    overrides: Optional[list[str]] = None
    ranges: Optional[list[str]] = None
    search: str = "tpe"
    points: int = 3
    trials: int = 8
    scenario: str = "random:0.1"
    seeds: str = "2"
    data: Optional[str] = None
    model: Optional[str] = None
    device: Optional[str] = None
    out_dir: Optional[Path] = None
    bench_file: Optional[Path] = None
    track: Optional[TrackFlags] = None  # --track and --track-uri: the trackers that follow the tuning

    def __post_init__(self) -> None:
        if self.search not in ("tpe", "grid", "random"):
            raise UnlearnkitError(f"--search '{self.search}' is not one of tpe, grid, random")


def tune(session: Session, options: TuneOptions) -> int:
    """Search a method's params for the lowest Avg Gap to Retrain, resumable; tuned.yaml once every trial finished."""
    seeds = tuning_seeds(options.seeds)
    idle = getattr(session.executor, "workers", 1) - len(seeds)
    if idle > 0:  # a trial runs one cell per seed, one trial at a time
        session.reporter.warn(f"a trial runs one cell per tuning seed ({len(seeds)}), so {idle} of the workers would "
                              "sit idle: tune on more seeds, or run several unlearn tune processes with the same --out "
                              "instead, each on its share of the cores (OMP_NUM_THREADS): they share the study")
    if options.bench_file is not None:
        if options.spec_file or options.method or options.augment or options.ranges:
            raise UnlearnkitError("--bench tunes the variants a bench spec names, with their declared ranges",
                                  "Leave out the run spec, --method, --augment and --range.")
        return tune_bench(session, options, seeds)
    search = Search.open(options, seeds, session.reporter)
    tracking = session.tracking = search.tracking
    with closing(session.executor), tracking.run(f"tune {search.folder.name}", {"command": session.command}) as tracked:
        tracking.params(search.identity)
        total = search.run(session)
        code = search.report(session, total)
        tracking.artifacts([path for path in (search.folder / "results.md", search.folder / "tuned.yaml") if path.is_file()])
        tracked.status = "interrupted" if total.interrupted else "failed" if code else "finished"
    for line in tracking.where:
        session.reporter.out.print(line, markup=False, highlight=False, soft_wrap=True)
    return code


@dataclass
class Search:
    """One variant's tuning: its base spec, search space and Optuna study; reports in `folder`, the study and the
    cells in `store` (the same folder, or a bench tuning's, shared by its variants), resumed when they exist."""

    options: TuneOptions
    base: dict[str, Any]
    name: str
    method: str
    augment: tuple[str, ...]
    seeds: list[int]
    space: dict[str, Any]
    identity: dict[str, Any]
    folder: Path
    store: Path
    study: Any
    target: int  # trials the study is to finish
    best: Optional[dict[str, Any]] = None  # the best trial, once the study has every trial
    tracking: Tracking = field(default_factory=Tracking)  # the spec's trackers, ready: each trial's cells a child run

    @classmethod
    def open(cls, o: TuneOptions, seeds: list[int], reporter: Reporter) -> Search:
        """Everything checked (spec, names, ranges, scenario, Optuna, inputs, folder) before a trial runs."""
        base, source = spec_from_flags(o.spec_file, o.method, o.augment, o.overrides,
                                       **{"data.name": o.data, "model.name": o.model, "device": o.device})
        if o.track is not None:
            o.track.apply(base)
        base, images = tuning.on_tuning_pool(base)
        registry = installed()
        resolved = resolve(base, registry, source)  # the spec and names are valid before anything is searched
        space = tuning.search_space(resolved.method.name, tuple(a.name for a in resolved.augmenters), registry,
                                    list(o.ranges or []))
        return cls.start(o, base, resolved, space, seeds, images, reporter)

    @classmethod
    def start(cls, o: TuneOptions, base: dict[str, Any], resolved: ResolvedRun, space: dict[str, Any],
              seeds: list[int], images: str, reporter: Reporter, folder: Optional[Path] = None,
              store: Optional[Path] = None) -> Search:
        """The study of a resolved variant over `space`, created or resumed (`images`: which images it trains on)."""
        registry = installed()
        method, augment = resolved.method.name, tuple(a.name for a in resolved.augmenters)
        # the scenario, and every value a range can give (its ends, each choice), valid for the plugins' params
        tuning.tuning_grid(base, method, augment, o.scenario, seeds[:1], tuning.range_probes(space), registry)
        tuning.load_optuna()  # missing: one message before anything is trained
        # workers on other devices share the study; the trial count can grow between invocations
        # (nor do the trackers that follow it change the study)
        identity = {"base": {k: v for k, v in base.items() if k not in WATCHING},
                    "scenario": o.scenario, "seeds": seeds,
                    "search": o.search, "space": {k: str(v) for k, v in space.items()},
                    **({"points": o.points} if o.search == "grid" else {})}
        key = spec_key(identity)[:8]
        folder = folder or o.out_dir or Path("tune") / f"{resolved.name}-{key}"
        store = store or folder
        check_grid([resolved.spec], folder)  # every trial's cells share its inputs
        tracking = Tracking(resolved.trackers, reporter.warn)
        tracking.prepare(folder)
        folder.mkdir(parents=True, exist_ok=True)
        study = tuning.open_study(store, f"{resolved.name}-{key}", o.search, space, o.points, seed=resolved.spec.seed)
        target = len(tuning.grid_trials(space, o.points)) if o.search == "grid" else o.trials
        search = cls(o, base, resolved.name, method, augment, seeds, space, identity, folder, store, study, target,
                     tracking=tracking)
        reporter.err.print(f"tuning {search.name} ({o.search}): {target} trials x {len(seeds)} seeds over "
                           f"{search.searched}, {images}; {len(tuning.finished_trials(study))} already finished; "
                           f"results in {folder}")
        return search

    @property
    def searched(self) -> str:
        return "; ".join(f"{k} in {v}" for k, v in self.space.items())

    def grid(self, assignments: dict[int, dict[str, Any]]) -> Grid:
        return tuning.tuning_grid(self.base, self.method, self.augment, self.options.scenario, self.seeds, assignments,
                                  installed())

    def run(self, session: Session) -> Outcome:
        """The trials still to finish, one at a time (other workers may finish the study meanwhile)."""
        store, started, total = CellStore(self.store), time.perf_counter(), Outcome()  # summed over the trials
        regime_shown: list[bool] = []

        def regime_once(records: list[dict]) -> None:
            if not regime_shown:
                regime_shown.append(True)
                report_regime(records, session.reporter)

        def objective(trial) -> float:
            """One trial: its cells (those already on disk are reused), scored by Avg Gap over the tuning seeds."""
            assignment = {trial.number: tuning.suggest(trial, self.space, self.options.search, self.options.points)}
            outcome = run_grid(self.grid(assignment), store, progress=progress, log=session.reporter.log,
                               after_references=regime_once, executor=session.executor,
                               after_cell=lambda records, events: track_cell(session.tracking, records, events))
            total.computed += outcome.computed
            total.failures += outcome.failures
            if outcome.error is not None:
                raise outcome.error
            if outcome.interrupted:
                raise KeyboardInterrupt  # Optuna marks the trial failed; the next invocation retries it
            ranked = tuning.ranking(outcome.records, assignment, len(self.seeds))
            if not ranked:
                raise tuning.TrialFailed()
            return ranked[0]["avg_gap"]

        with session.reporter.progress() as progress:
            # one trial per call: GridSampler's stop ends a call only
            for _ in range(self.target - len(tuning.finished_trials(self.study))):
                try:
                    self.study.optimize(objective, n_trials=1, catch=(tuning.TrialFailed,))
                except KeyboardInterrupt:
                    total.interrupted = True
                except UnlearnkitError as exc:
                    total.error = exc
                if total.interrupted or total.error or len(tuning.finished_trials(self.study)) >= self.target:
                    break
        total.seconds = time.perf_counter() - started
        return total

    def report(self, session: Session, total: Outcome) -> int:
        """The reports of every finished trial; the best, and tuned.yaml, once all have finished."""
        assignments = tuning.finished_trials(self.study)
        grid, store = self.grid(assignments), CellStore(self.store)
        keys = Keys(grid)
        total.records = finished(grid, keys, store)
        total.done = sum(not store.missing(keys.cell[c]) for c in grid.cells)
        history = record_invocation(self.folder, total, session.command)
        header = (f"# unlearn tune: {self.name}\n\nCommand: `{session.command}`\n\nSearch ({self.options.search}, "
                  f"{len(assignments)} of {self.target} trials finished): {self.searched}\n"
                  f"\nWall time: {_wall_time(history)}\n")
        files = write_reports(self.folder, total.records, header, {"tune": self.identity, "invocations": history})
        if total.error is not None:
            raise total.error  # reported as one message; the finished trials and their tables are kept
        # workers sharing a study may finish a trial or so beyond --trials: each study ranks its first --trials
        # finished trials (by number), so that variants tuned alike choose among as many
        counted = dict(sorted(assignments.items())[:self.target])
        ranked = tuning.ranking([r for r in total.records if r.get("trial") is None or r["trial"] in counted], counted,
                                len(self.seeds))
        complete = len(assignments) >= self.target
        if ranked:
            self._show_trials(session.reporter, ranked, complete)
        if not complete:
            session.reporter.err.print(f"{len(assignments)} of {self.target} trials finished: tuned.yaml is written "
                                       "once all have; run the same command again to finish them")
        return finish(total, files, self.store, len(grid.cells), session.reporter)

    def _show_trials(self, reporter: Reporter, ranked: list[dict], complete: bool) -> None:
        """The trials best first (printed and added to results.md); a winner only once the study has every trial."""
        scenario = self.options.scenario
        table, trials_markdown = trial_tables(ranked, list(self.space), f"{self.name}: trials by mean Avg Gap to "
                                              f"Retrain ({scenario}, seeds {self.options.seeds})")
        best = ranked[0]
        chosen = ", ".join(f"{k}={v}" for k, v in best["assignment"].items())
        if complete:
            self.best = {**best, "trials": len(ranked)}
            self._write_tuned()
        with (self.folder / "results.md").open("a") as handle:
            handle.write("\n### Trials, best first\n\n" + trials_markdown + "\n\nChosen: " + chosen + "\n")
        reporter.out.print(table)
        if complete:
            reporter.out.print(f"best of {len(ranked)} trials: {chosen} (Avg Gap {best['avg_gap']:.2f}); written "
                               f"{self.folder / 'tuned.yaml'}")
            for note in self.record()["edges"]:
                reporter.warn(f"{self.name}: {note}")

    def chosen(self) -> dict[str, Any]:
        """The best trial's params as a bench's `params` entry: those the spec set for the trials, then the choice."""
        assert self.best is not None
        ran_with: dict[str, Any] = {"method": {"params": self.base["method"].get("params", {})}}
        if self.base.get("augment"):
            ran_with["augment"] = [{"name": a["name"], "params": a.get("params", {})} for a in self.base["augment"]]
        return merge(ran_with, tuning.overlay(self.method, self.best["assignment"]))

    def record(self) -> dict[str, Any]:
        """What tuned.yaml says of the search: its trials, space and winner, and a note per winner on an edge."""
        assert self.best is not None
        return {"trials": self.best["trials"], "space": {k: str(v) for k, v in self.space.items()},
                "winner": self.best["assignment"], "avg_gap": round(self.best["avg_gap"], 2),
                "edges": tuning.edge_notes(self.space, self.best["assignment"])}

    def tuned_on(self) -> dict[str, Any]:
        return {"scenario": self.options.scenario, "seeds": self.seeds,
                "pool": self.base.get("data", {}).get("pool", "evaluation")}

    def _write_tuned(self) -> None:
        assert self.best is not None
        tuned = {"params": {self.name: self.chosen()}, "tuned_on": self.tuned_on(), "tuning": {self.name: self.record()}}
        note = (f"# unlearn tune: best of {self.best['trials']} trials for {self.name} on {self.options.scenario}, "
                f"seeds {self.seeds}: Avg Gap {self.best['avg_gap']:.2f}\n# use with: unlearn bench --params "
                f"{self.folder / 'tuned.yaml'}\n")
        atomic_write_text(self.folder / "tuned.yaml", note + yaml.safe_dump(tuned, sort_keys=False))


def tune_bench(session: Session, o: TuneOptions, seeds: list[int]) -> int:
    """Tune every variant of a bench spec alike: a study of --trials trials each, over its joint space."""
    assert o.bench_file is not None
    if o.search == "grid":
        raise UnlearnkitError("--bench gives every variant as many trials, and a grid has as many as its space has "
                              "points", "Use --search tpe (the default) or random, with --trials N.")
    raw = read_spec_file(o.bench_file)
    for assignment in o.overrides or []:
        set_path(raw, assignment)
    spec = read_bench_spec(raw, str(o.bench_file))
    spec.base, images = tuning.on_tuning_pool(spec.base)
    registry = installed()
    variants, untuned = tuning.bench_variants(spec, o.scenario, registry)
    identity = {"bench": spec.model_dump(mode="json", exclude={"out", "budget"}), "scenario": o.scenario, "seeds": seeds,
                "search": o.search}
    folder = o.out_dir or Path("tune") / f"bench-{spec_key(identity)[:8]}"
    check_grid([], folder)  # each variant's cells are checked as its study opens
    err = session.reporter.err
    err.print(f"tuning {len(variants)} variants alike: {o.trials} trials each ({o.search}) over its joint space, on "
              f"{o.scenario}, seeds {seeds}, {images}; results in {folder}")
    for line in untuned:
        err.print(f"[yellow]not tuned[/] {line}", highlight=False)
    searches = [Search.start(o, v.base, resolve(v.base, registry, v.name), v.space, seeds, images, session.reporter,
                             folder / "variants" / v.name, folder) for v in variants]
    with closing(session.executor):
        for search in searches:
            code = search.report(session, search.run(session))
            if code or search.best is None:
                return code or 1
    _write_bench_tuned(session, o.bench_file, folder, searches)
    return 0


def _write_bench_tuned(session: Session, path: Path, folder: Path, searches: list[Search]) -> None:
    """tuned.yaml with every variant's chosen params and its search, and results.md with each one's best trial."""
    first = searches[0]
    tuned = {"params": {s.name: s.chosen() for s in searches}, "tuned_on": first.tuned_on(),
             "tuning": {s.name: s.record() for s in searches}}
    note = (f"# unlearn tune --bench {path}: each variant's best trial on {first.options.scenario}, seeds "
            f"{first.seeds}\n# use with: unlearn bench {path} --params {folder / 'tuned.yaml'}\n")
    atomic_write_text(folder / "tuned.yaml", note + yaml.safe_dump(tuned, sort_keys=False))
    table = tuned_markdown(tuned["params"], {s.name: s.best or {} for s in searches}, tuned["tuning"])
    atomic_write_text(folder / "results.md", f"# Tuned on {first.options.scenario}, seeds {first.seeds}\n\n"
                      f"Command: `{session.command}`\n\n{table}\n")
    session.reporter.out.print((folder / "results.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    session.reporter.err.print(f"written {folder / 'tuned.yaml'}")
