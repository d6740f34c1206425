"""Where a grid's cells run: worker processes on this machine and Ray compute what one process computes,
write into the same resumable store, and give each worker its share of the cores."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_cli import unlearn
from unlearnkit.bench.executors import LocalWorkers, cores
from unlearnkit.bench.grid import BenchSpec, expand
from unlearnkit.bench.keys import Keys
from unlearnkit.bench.runner import CellStore, run_grid
from unlearnkit.bench.work import Task, Worker

BASE = {"data": {"name": "digits", "train_subset": 240, "test_subset": 80}, "train": {"epochs": 2}, "device": "cpu"}
SPEC = BenchSpec(base=BASE, methods=["ft", "neggrad"], augment=["none"], scenarios=["random:0.1"], seeds=2,
                 params={"ft": {"method": {"params": {"epochs": 1}}}, "neggrad": {"method": {"params": {"epochs": 1}}}})


pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.fixture
def threads():
    """Run the in-process reference with a worker's thread count: equal threads, equal floating-point sums."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def _metrics(records):
    """Each record's metrics but its wall time, which no two runs share."""
    return {(r["kind"], r["variant"], r["seed"]): {k: v for k, v in r["metrics"].items() if k != "seconds"} for r in records}


def _serial(registry, tmp_path):
    grid = expand(SPEC, registry)
    outcome = run_grid(grid, CellStore(tmp_path / "serial"))
    assert outcome.computed == 4 and not outcome.failures
    return grid, outcome


@pytest.mark.slow
def test_two_local_workers_compute_what_one_process_does_and_resume(registry, tmp_path, threads):
    workers = LocalWorkers(2)
    threads(workers.threads)
    grid, serial = _serial(registry, tmp_path)
    store = CellStore(tmp_path / "workers")
    try:
        parallel = run_grid(grid, store, executor=workers)
        assert parallel.computed == 4 and parallel.done == 4 and not parallel.failures
        assert _metrics(parallel.records) == _metrics(serial.records)
        # each worker's torch threads: its share of the cores, recorded with the cell
        shares = {r["environment"]["determinism"]["torch_threads"] for r in parallel.records if r["kind"] == "unlearned"}
        assert shares == {max(1, cores() // 2)}
        one = next(r for r in parallel.records if r["kind"] == "unlearned")
        (store.folder / f"{one['key']}.json").unlink()
        again = run_grid(grid, store, executor=workers)  # the same worker processes, kept between runs
        assert again.computed == 1 and again.done == 4
        assert _metrics(again.records) == _metrics(serial.records)
    finally:
        workers.close()
    assert workers._pool is None


def test_a_cell_runs_from_references_shipped_to_a_machine_without_them(registry, tmp_path, monkeypatch):
    """What Ray does across machines: the references' cache files travel with the cell, nothing is retrained."""
    grid = expand(SPEC, registry)
    group = grid.cells[0]
    keys = Keys(grid)
    references = Task(grid.base, group, keys.references[group], ship=True)
    cell = Task(grid.base, group, keys.references[group], group, keys.cell[group])
    home = Worker(lambda task, cell: grid.resolved[cell])
    done = home.perform(references)
    assert done.failure is None and sorted(k.split("-")[0] for k in done.files) == ["original", "retrain"]
    here = home.perform(cell)

    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    lines: list[str] = []
    away = Worker(lambda task, cell: grid.resolved[cell], log=lines.append).perform(cell, done.files)
    assert [line.split(": ")[1] for line in lines[:2]] == ["original", "retrain"]
    assert all("cached" in line for line in lines[:2])  # installed from the shipped files, not trained
    assert away.failure is None and [key for key, _ in away.records] == [key for key, _ in here.records]
    assert _metrics(r for _, r in away.records) == _metrics(r for _, r in here.records)


def test_a_worker_that_resolves_a_cell_differently_computes_nothing(registry):
    """Another plugin version on a worker would file records under keys the grid never reads: refused, named."""
    grid = expand(SPEC, registry)
    group, keys = grid.cells[0], Keys(grid)
    worker = Worker(lambda task, cell: grid.resolved[cell])
    done = worker.perform(Task(grid.base, group, keys.references[group], group, ("0123456789abcdef",)))
    assert done.records == [] and "resolves the cell differently" in str(done.failure)
    done = worker.perform(Task(grid.base, group, ({"retrain": "x", "original": "y"},)))
    assert done.error is not None and "Install the same unlearnkit and plugin versions" in str(done.error[1])


def test_parallel_cells_need_the_model_cache(registry, tmp_path):
    spec = SPEC.model_copy(update={"base": {**BASE, "cache": False}})
    outcome = run_grid(expand(spec, registry), CellStore(tmp_path / "b"), executor=LocalWorkers(2))
    assert outcome.error is not None and "cache: false" in str(outcome.error.message)
    assert outcome.computed == 0


@pytest.mark.parametrize("flags, message", [
    (["--address", "127.0.0.1:6379"], "--address is for --executor ray"),
    (["--cell-gpus", "1"], "--cell-gpus is for --executor ray"),
    (["--workers", str(cores() + 1)], f"--workers {cores() + 1} is more than the {cores()} cores"),
    (["--executor", "ray", "--workers", "2"], "--workers is for the local executor"),
    (["--executor", "dask"], "--executor 'dask' is not one of local, ray"),
])
def test_executor_flags_that_cannot_work_are_one_message(capsys, flags, message):
    code, _, err = unlearn(capsys, "bench", "--data", "digits", "--methods", "ft", "--augment", "none",
                           "--scenarios", "random:0.1", "--seeds", "1", *flags)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_a_grid_on_a_local_ray_matches_one_process_and_resumes_from_the_store(registry, tmp_path, threads):
    pytest.importorskip("ray")
    from unlearnkit.bench.executors import RayCluster

    threads(1)  # each Ray cell asks for one CPU: one torch thread
    grid, serial = _serial(registry, tmp_path)
    store = CellStore(tmp_path / "ray")
    # a killed cluster's grid: two cells were finished before it died
    for record in [r for r in serial.records if r["kind"] == "unlearned"][:2]:
        store.put(record["key"], {k: v for k, v in record.items() if k not in ("format", "key")})
    cluster = RayCluster(None, cpus=1, gpus=0)
    try:
        outcome = run_grid(grid, store, executor=cluster)
    finally:
        cluster.close()
    assert outcome.computed == 2 and outcome.done == 4 and not outcome.failures
    assert _metrics(outcome.records) == _metrics(serial.records)
    assert json.loads((store.folder / f"{outcome.records[-1]['key']}.json").read_text())["metrics"]


@pytest.mark.slow
def test_bench_with_two_workers_from_the_command_line(capsys, tmp_path):
    argv = ["bench", "--data", "digits", "--methods", "ft", "--augment", "none", "--scenarios", "random:0.1",
            "--seeds", "2", "--set", "base.data.train_subset=240", "--set", "base.data.test_subset=80",
            "--set", "base.train.epochs=1", "--set", "params.ft.method.params.epochs=1", "--device", "cpu",
            "--out", "grid", "--workers", "2", "--quiet"]
    code, out, err = unlearn(capsys, *argv)
    assert code == 0, err
    assert "2 of 2 cells finished (2 now" in err and "| ft | " in out
    code, _, err = unlearn(capsys, *argv)
    assert code == 0 and "2 of 2 cells finished (0 now" in err
