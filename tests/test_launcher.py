"""`unlearn run` under torchrun: two gloo processes on this CPU, launched as a user launches them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import unlearn
from unlearnkit import cli

# Digits, batches of 32 (16 rows a rank): two epochs reach about 97% test accuracy, where a few samples
# more or less right move a metric little. coun-cl adds its InfoNCE over the global batch (gather_rows).
RECIPE = ["--set", "train.epochs=2", "--set", "train.batch_size=32", "--set", "method.params.epochs=1", "--quiet"]
TINY = ["--method", "neggrad", "--augment", "coun-cl", *RECIPE]

# Imported by every process of the launch (PYTHONPATH): lists what the process writes under $WATCHED
# (file opens for writing, renames, folders made or removed), in $WRITES_LOG<rank>.json at exit.
WATCH_WRITES = '''
import atexit, json, os, sys

ROOT, RANK = os.environ.get("WATCHED"), os.environ.get("RANK")
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
writes = []


def _paths(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITING)
        return [path] if writing else []
    if event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "shutil.rmtree"):
        return list(args[:2] if event == "os.rename" else args[:1])
    return []


def _hook(event, args):
    try:
        for path in _paths(event, args):
            if isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(ROOT):
                writes.append(f"{event} {os.path.abspath(os.fsdecode(path))}")
    except Exception:
        pass  # a hook's error would break the call it watches


def _dump():
    with open(os.environ["WRITES_LOG"] + RANK + ".json", "w") as handle:
        json.dump(writes, handle)


if ROOT and RANK is not None:  # the workers, not torchrun's agent
    sys.addaudithook(_hook)
    atexit.register(_dump)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`python -m torch.distributed.run --nproc-per-node 2 -m unlearnkit ARGV` in tmp_path/work, with its own cache;
    returns the finished launch and the folder the processes' write logs are in."""
    work, hook = tmp_path / "work", tmp_path / "hook"
    work.mkdir(exist_ok=True)
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(WATCH_WRITES)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNKIT_CACHE_DIR": str(work / "cache"), "WATCHED": str(work),
           "WRITES_LOG": str(tmp_path / "writes-"), "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "UNLEARNKIT_DEBUG"):
        env.pop(name, None)
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
         "-m", "unlearnkit", *argv],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,  # a hang fails the test, not the suite
    )
    return launch, tmp_path


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def writes_of(logs: Path) -> dict[int, list[str]]:
    """What each rank of the last launch wrote under its work folder."""
    return {rank: json.loads((logs / f"writes-{rank}.json").read_text()) for rank in (0, 1)}


@pytest.mark.slow
def test_two_processes_write_the_one_process_bundle_from_rank_0_alone(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path / "one-cache"))
    code, _, err = unlearn(capsys, "run", *TINY, "--out", str(tmp_path / "one"))
    assert code == 0, err
    launch, logs = torchrun(tmp_path, "run", *TINY, "--out", "two")
    assert launch.returncode == 0, launch.stderr[-3000:]

    work = tmp_path / "work"
    one, two = tmp_path / "one", work / "two"
    assert {p.name for p in work.iterdir()} == {"two", "cache"}  # one bundle, and no folder left half written
    assert files_under(two) == files_under(one)
    cached = {p.name for p in (work / "cache").iterdir()}
    assert sorted(name.split("-")[0] for name in cached) == ["original", "retrain"]
    assert cached.isdisjoint(p.name for p in (tmp_path / "one-cache").iterdir())  # two ranks' models: their own keys
    first, second = (json.loads((b / "results.json").read_text()) for b in (one, two))
    assert set(first) == set(second)
    assert second["environment"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert "distributed" not in first["environment"]
    assert second["sources"] == {"original": "trained", "retrain": "trained"}  # not the one-process models
    assert launch.stdout.count("Avg Gap") == 1 and "Traceback" not in launch.stderr  # one table, from rank 0

    # Not the same weights: each rank's BatchNorm normalises its own 16 rows, as DistributedDataParallel
    # does. Over seeds 0-3 the two runs' accuracies differed by at most 2.2 points and MIA (an SVC on
    # 144 + 144 samples) by at most 6.3, no more than the spread between seeds of one-process runs
    # (TA 96.7-98.3, MIA of Retrain 4.9-18.8). Costs count whole steps, so FLOPs are equal.
    for model in ("original", "retrain", "unlearned"):
        alone, shared = first["metrics"][model], second["metrics"][model]
        assert shared["TA"] > 90 and alone["TA"] > 90  # trained: a point is a few samples, not luck of the draw
        for metric in ("RA", "UA", "TA"):
            assert shared[metric] == pytest.approx(alone[metric], abs=3), (model, metric)
        assert shared["MIA"] == pytest.approx(alone["MIA"], abs=10), model
        assert shared["flops"] == alone["flops"]

    writes = writes_of(logs)
    assert writes[1] == []
    assert any("cache/original-" in w for w in writes[0]) and any(str(work / "two") in w for w in writes[0])  # the watch sees writes

    # Another method on the same models: rank 0 finds both in the cache, and the other rank takes its answer.
    launch, logs = torchrun(tmp_path, "run", "--method", "ft", *RECIPE, "--out", "three")
    assert launch.returncode == 0, launch.stderr[-3000:]
    third = json.loads((work / "three" / "results.json").read_text())
    assert third["sources"] == {"original": "cached", "retrain": "cached"}
    for model in ("original", "retrain"):
        assert third["metrics"][model] == second["metrics"][model]  # the same weights measured, the stored cost
    writes = writes_of(logs)
    assert writes[1] == [] and not any("cache" in w for w in writes[0])


@pytest.mark.slow
def test_a_usage_error_under_torchrun_is_one_message_and_every_rank_fails(tmp_path):
    launch, _ = torchrun(tmp_path, "run", "--method", "negrad", "--quiet")
    assert launch.returncode != 0
    assert launch.stderr.count("unknown method 'negrad'") == 1  # from rank 0
    assert str(Path(cli.__file__).parent) not in launch.stderr  # no traceback of ours (torchrun prints its own)
    # the launch ended (no rank waits for another): torchrun reports the first rank to end, with the usage error's code
    assert "exitcode  : 2" in launch.stderr


@pytest.mark.parametrize("rank", ["0", "1"])
def test_bench_tune_and_plot_refuse_torchrun_before_any_work(capsys, tmp_path, monkeypatch, rank):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.chdir(tmp_path)
    for command, argv in (("bench", ["--methods", "ft"]), ("tune", ["--method", "ft"]), ("plot", ["bundle"])):
        code, out, err = unlearn(capsys, command, *argv)
        assert code == 2
        if rank == "0":
            assert f"unlearn {command}" in err and "is not for torchrun (WORLD_SIZE=2)" in err and "without torchrun" in err
            assert command == "plot" or "runs a grid of runs" in err
        else:
            assert out == err == ""  # rank 0 speaks for the launch
    assert not cli.out.quiet and not cli.err.quiet  # the consoles are given back
    assert list(tmp_path.iterdir()) == []
