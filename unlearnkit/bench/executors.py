"""Where a grid's tasks run: in this process, in worker processes on this machine, or as Ray tasks.

Each executor takes the tasks of one phase and yields their results as they finish; the driver
(runner.run_grid) stores the records, so every executor resumes from the same store. Executors
that run tasks at once take a new task only when one of theirs finishes, so the driver can skip
a cell that another process sharing the folder has finished meanwhile.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, TypeVar

from unlearnkit.bench.grid import Cell, Grid
from unlearnkit.bench.work import Done, Task, Worker, perform, start_process
from unlearnkit.errors import UnlearnkitError
from unlearnkit.progress import Progress

Handle = TypeVar("Handle")
Item = TypeVar("Item")
Result = TypeVar("Result")


class Executor(Protocol):
    ships: bool  # whether workers need the references' model files (they do not share this machine's cache)
    parallel: bool  # whether tasks run at once

    def run(self, grid: Grid, tasks: Iterable[Task], progress: Progress, log: Callable[[str], None],
            files: Mapping[Cell, Any]) -> Iterator[Done]: ...

    def map(self, function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
        """`function` of each item, as they finish (an audit's shadow models): `function` must be importable by
        name and the items picklable, for a worker process or a Ray task to run them."""
        ...

    def share(self, files: dict[str, bytes]) -> Any:
        """What `run` needs of a group's shipped reference files (Ray: a handle to them in its object store)."""

    def close(self) -> None: ...


def cores() -> int:
    """The cores this process may use (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _windowed(tasks: Iterable[Item], width: int, submit: Callable[[Item], Handle],
              wait_any: Callable[[list[Handle]], tuple[list[Handle], list[Handle]]],
              result: Callable[[Handle], Result], cancel: Callable[[Handle], object]) -> Iterator[Result]:
    """At most `width` tasks in flight; the next task is taken from `tasks` only when one finishes."""
    pending: list[Handle] = []
    queue = iter(tasks)
    try:
        while True:
            while len(pending) < width and (task := next(queue, None)) is not None:
                pending.append(submit(task))
            if not pending:
                return
            finished, pending = wait_any(pending)
            for handle in finished:
                yield result(handle)
    finally:
        for handle in pending:
            cancel(handle)


class Serial:
    """One task after another in this process, with the run's progress bars and log lines as they happen."""

    ships = False
    parallel = False

    def __init__(self) -> None:
        self._worker: Worker | None = None  # kept between phases and tuning trials: it holds the last group's models

    def run(self, grid, tasks, progress, log, files) -> Iterator[Done]:
        def resolve(task: Task, cell: Cell):
            return grid.resolved[cell]

        self._worker = self._worker or Worker(resolve)
        self._worker.resolve, self._worker.progress, self._worker.log = resolve, progress, log
        for task in tasks:
            yield self._worker.perform(task)

    def map(self, function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
        for item in items:
            yield function(item)

    def share(self, files: dict[str, bytes]) -> Any:
        return files

    def close(self) -> None:
        self._worker = None


class LocalWorkers:
    """N worker processes on this machine sharing its model cache, each with cores/N torch threads,
    so that N workers never ask for more threads than there are cores."""

    ships = False
    parallel = True

    def __init__(self, workers: int):
        if workers > cores():
            raise UnlearnkitError(f"--workers {workers} is more than the {cores()} cores this process may use",
                                  f"Use --workers {cores()} or fewer: more would slow every cell down.")
        self.workers = workers
        self.threads = cores() // workers
        self._pool: ProcessPoolExecutor | None = None

    def run(self, grid, tasks, progress, log, files) -> Iterator[Done]:
        return self.map(perform, tasks)

    def map(self, function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
        if self._pool is None:  # spawned, not forked: a forked torch with threads running can deadlock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=start_process, initargs=(self.threads, True))
        pool = self._pool

        def wait_any(pending: list[Future[Result]]) -> tuple[list[Future[Result]], list[Future[Result]]]:
            finished, left = wait(pending, return_when=FIRST_COMPLETED)
            # results that arrived are handed over before a broken pool is reported, so none is lost
            return sorted(finished, key=lambda f: f.exception() is not None), list(left)

        try:
            yield from _windowed(items, self.workers, lambda item: pool.submit(function, item), wait_any,
                                 lambda future: future.result(), lambda future: future.cancel())
        except BrokenProcessPool:
            self.close()
            raise UnlearnkitError("a worker process died (killed, or out of memory); finished work is kept",
                                  "Run the same command again to resume, with fewer --workers if memory ran out.") from None

    def share(self, files: dict[str, bytes]) -> Any:
        return files

    def close(self) -> None:
        """Stop the workers now, cells in progress included (Ctrl-C, or the grid is done)."""
        if self._pool is None:
            return
        processes = list(getattr(self._pool, "_processes", {}).values())  # no public way to stop them before Python 3.14
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        self._pool = None


class RayCluster:
    """Cells as Ray tasks, each asking for `cpus` CPUs and `gpus` GPUs, on the cluster at `address`, or on
    a local Ray started for the command when there is none. On a cluster, whose machines need not share
    a disk, the references' model files go to the cells through Ray's object store."""

    parallel = True

    def __init__(self, address: str | None, cpus: float, gpus: float):
        self._ray = load_ray()
        self.address, self.cpus, self.gpus = address, cpus, gpus
        self.ships = address is not None  # a local Ray's workers share this machine's model cache
        self._task: Any = None
        self._connected = False  # whether this command connected to Ray (and so disconnects at the end)

    def _connect(self) -> Any:
        """Ray's remote cell function, on the cluster (started or reached on first use)."""
        ray = self._ray
        if self._task is None:
            if not ray.is_initialized():
                try:  # "local": a new Ray even where RAY_ADDRESS names a cluster, as the docs promise without --address
                    ray.init(address=self.address or "local", include_dashboard=False, log_to_driver=False,
                             logging_level="WARNING", **({} if self.address else {"num_cpus": cores()}))
                except Exception as exc:  # noqa: BLE001 - Ray's errors are many (no cluster there, version mismatch)
                    where = f" at {self.address}" if self.address else ""
                    raise UnlearnkitError(f"cannot start or reach Ray{where}: {exc}",
                                          "Check --address (`ray status` on the cluster prints it), or leave it out "
                                          "to start a local Ray.") from None
                self._connected = True
            self._task = ray.remote(_ray_perform).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        return self._task

    def run(self, grid, tasks, progress, log, files) -> Iterator[Done]:
        ray, remote = self._ray, self._connect()
        threads = max(1, int(self.cpus))
        submitted: dict[Any, Task] = {}

        def submit(task: Task) -> Any:
            ref = remote.remote(task, files.get(task.group), threads)
            submitted[ref] = task
            return ref

        def result(ref: Any) -> Done:
            task = submitted.pop(ref)
            try:
                return ray.get(ref)
            except ray.exceptions.RayError as exc:  # the task's machine or process was lost: that task fails, the grid goes on
                what = task.cell.label if task.cell is not None else "Original or Retrain"
                return Done(task, failure=f"{what} ({task.where}) was lost: {type(exc).__name__}: {str(exc).splitlines()[0]}")

        width = max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.cpus, 1e-9)))
        yield from _windowed(tasks, width, submit, lambda pending: ray.wait(pending, num_returns=1), result,
                             lambda ref: ray.cancel(ref, force=True))

    def map(self, function: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
        ray = self._ray
        self._connect()
        remote = ray.remote(_ray_call).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        threads = max(1, int(self.cpus))

        def result(ref: Any) -> Result:
            try:
                return ray.get(ref)
            except ray.exceptions.RayError as exc:  # a lost machine or process: what finished is kept
                raise UnlearnkitError(f"a Ray task was lost: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                                      "Run the same command again to resume.") from None

        width = max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.cpus, 1e-9)))
        yield from _windowed(items, width, lambda item: remote.remote(function, item, threads),
                             lambda pending: ray.wait(pending, num_returns=1), result, lambda ref: ray.cancel(ref, force=True))

    def share(self, files: dict[str, bytes]) -> Any:
        return self._ray.put(files)  # held once in the object store; each cell of the group gets a reference

    def close(self) -> None:
        if self._connected:
            self._ray.shutdown()
            self._connected, self._task = False, None


def _ray_perform(task: Task, files: dict[str, bytes] | None, threads: int) -> Done:
    start_process(threads)
    return perform(task, files)


def _ray_call(function: Callable[[Item], Result], item: Item, threads: int) -> Result:
    start_process(threads)
    return function(item)


def load_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UnlearnkitError("--executor ray needs Ray, which is not installed",
                              "pip install 'unlearnkit[ray]' (on the driver and on every machine of the cluster).") from None
    return ray


def make_executor(kind: str, workers: int, address: str | None, cpus: float | None, gpus: float | None) -> Executor:
    """The executor the CLI's flags choose; one message for a choice that cannot work."""
    if kind == "local":
        given = [flag for flag, value in (("--address", address), ("--cell-cpus", cpus), ("--cell-gpus", gpus)) if value is not None]
        if given:
            raise UnlearnkitError(f"{given[0]} is for --executor ray", f"Add --executor ray, or leave out {given[0]}.")
        return Serial() if workers == 1 else LocalWorkers(workers)
    if kind == "ray":
        if workers != 1:
            raise UnlearnkitError("--workers is for the local executor; Ray runs as many cells at once as the "
                                  "cluster's resources allow", "Set --cell-cpus and --cell-gpus instead.")
        return RayCluster(address, 1.0 if cpus is None else cpus, 0.0 if gpus is None else gpus)
    raise UnlearnkitError(f"--executor '{kind}' is not one of local, ray")
