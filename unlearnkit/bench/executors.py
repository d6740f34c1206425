"""Where a grid's tasks run: in this process, in worker processes on this machine, or as Ray tasks.

Each executor takes the tasks of one phase and yields their results as they finish; the driver
(runner.run_grid) stores the records, so every executor resumes from the same store.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from unlearnkit.bench.grid import Cell, Grid
from unlearnkit.bench.work import Done, Task, Worker, perform, start_process
from unlearnkit.errors import UnlearnkitError
from unlearnkit.progress import Progress


class Executor(Protocol):
    ships: bool  # whether workers need the references' model files (they do not share this machine's cache)
    parallel: bool  # whether tasks run at once (then they are all handed out before the first finishes)

    def run(self, grid: Grid, tasks: Iterable[Task], progress: Progress, log: Callable[[str], None],
            files: Mapping[Cell, dict[str, bytes]]) -> Iterator[Done]: ...

    def close(self) -> None: ...


def cores() -> int:
    """The cores this process may use (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Serial:
    """One task after another in this process, with the run's progress bars and log lines as they happen."""

    ships = False
    parallel = False

    def __init__(self) -> None:
        self._worker: Worker | None = None  # kept between phases and tuning trials: it holds the last group's models

    def run(self, grid, tasks, progress, log, files) -> Iterator[Done]:
        worker = self._worker = self._worker or Worker(lambda task, cell: grid.resolved[cell])
        worker.resolve, worker.progress, worker.log = (lambda task, cell: grid.resolved[cell]), progress, log
        for task in tasks:
            yield worker.perform(task)

    def close(self) -> None:
        self._worker = None


class LocalWorkers:
    """N worker processes on this machine sharing its model cache, each with cores/N torch threads,
    so that N workers never ask for more threads than there are cores."""

    ships = False
    parallel = True

    def __init__(self, workers: int):
        self.workers = workers
        self.threads = max(1, cores() // workers)
        self._pool: ProcessPoolExecutor | None = None

    def run(self, grid, tasks, progress, log, files) -> Iterator[Done]:
        if self._pool is None:  # spawned, not forked: a forked torch with threads running can deadlock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                             initializer=start_process, initargs=(self.threads,))
        pending: set[Future[Done]] = {self._pool.submit(perform, task) for task in tasks}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        except BrokenProcessPool:
            self.close()
            raise UnlearnkitError("a bench worker process died (killed, or out of memory); finished cells are kept",
                                  "Run the same command again to resume, with fewer --workers if memory ran out.") from None
        finally:
            for future in pending:
                future.cancel()

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
    """Cells as Ray tasks, each asking for `cpus` CPUs and `gpus` GPUs, on the cluster at `address`
    (a local one started for this command when there is none). Workers on other machines get the
    references' model files through Ray's object store."""

    ships = True
    parallel = True

    def __init__(self, address: str | None, cpus: float, gpus: float):
        self._ray = load_ray()
        self.address, self.cpus, self.gpus = address, cpus, gpus
        self._task: Any = None
        self._started = False  # whether this command started Ray (and so stops it)

    def _connect(self) -> Any:
        """Ray's remote cell function, on the cluster (started or reached on first use)."""
        ray = self._ray
        if self._task is None:
            if not ray.is_initialized():
                try:
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                             **({} if self.address else {"num_cpus": cores()}))
                except Exception as exc:  # noqa: BLE001 - Ray's errors are many (no cluster there, version mismatch)
                    where = f" at {self.address}" if self.address else ""
                    raise UnlearnkitError(f"cannot start or reach Ray{where}: {exc}",
                                          "Check --address (`ray status` on the cluster prints it), or leave it out "
                                          "to start a local Ray.") from None
                self._started = True
            self._task = ray.remote(_ray_perform).options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)
        return self._task

    def run(self, grid, tasks, progress, log, files) -> Iterator[Done]:
        ray, remote = self._ray, self._connect()
        shipped: dict[Cell, Any] = {}
        pending = []
        for task in tasks:
            if task.group in files and task.group not in shipped:
                shipped[task.group] = ray.put(files[task.group])  # once per group, shared by its cells
            pending.append(remote.remote(task, shipped.get(task.group), max(1, int(self.cpus))))
        try:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                try:
                    yield ray.get(finished[0])
                except ray.exceptions.RayError as exc:
                    raise UnlearnkitError(f"a Ray task was lost: {type(exc).__name__}; finished cells are kept",
                                          "Run the same command again to resume.") from None
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started, self._task = False, None


def _ray_perform(task: Task, files: dict[str, bytes] | None, threads: int) -> Done:
    start_process(threads)
    return perform(task, files)


def load_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UnlearnkitError("--executor ray needs Ray, which is not installed",
                              "pip install 'unlearnkit[ray]' (on the driver and on every machine of the cluster).") from None
    return ray


def make_executor(kind: str, workers: int, address: str | None, cpus: float, gpus: float) -> Executor:
    """The executor the CLI's flags choose; one message for a choice that cannot work."""
    if kind == "local":
        if address is not None:
            raise UnlearnkitError("--address is for --executor ray", "Add --executor ray, or leave out --address.")
        return Serial() if workers == 1 else LocalWorkers(workers)
    if kind == "ray":
        if workers != 1:
            raise UnlearnkitError("--workers is for the local executor; Ray runs as many cells at once as the "
                                  "cluster's resources allow", "Set --cell-cpus and --cell-gpus instead.")
        return RayCluster(address, cpus, gpus)
    raise UnlearnkitError(f"--executor '{kind}' is not one of local, ray")
