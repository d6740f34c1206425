"""Files under faults: damaged cache entries and bench cells, full disks, killed and concurrent writers, bad user files.

Every file here is small and written by the test itself; the models are tiny nn.Linear layers.
"""

from __future__ import annotations

import ast
import errno
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from unlearnkit import cache, cli, files
from unlearnkit.bench.runner import RECORD_FORMAT, CellStore
from unlearnkit.checkpoint import CHECKSUM, load_model, save_model
from unlearnkit.data.forget import given_split, indices_split
from unlearnkit.errors import CheckpointError, UnlearnkitError
from unlearnkit.files import STALE_SECONDS, StorageWarning, atomic_path, atomic_write_json, atomic_write_text, file_stamp, set_aside

ROOT = Path(__file__).parents[1]


pytestmark = pytest.mark.usefixtures("private_cache")


def linear(seed: int, size: int = 4) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(size, 3)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def overwrite_tensor(path: Path, name: str, values: torch.Tensor) -> None:
    """Overwrite one tensor's bytes inside a safetensors file, leaving its header (names, shapes) as it was."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[:8], "little")
    begin, end = json.loads(data[8:8 + size])[name]["data_offsets"]
    raw = values.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    assert len(raw) == end - begin
    data[8 + size + begin:8 + size + end] = raw
    path.write_bytes(bytes(data))


def no_temporary_files(folder: Path) -> bool:
    return not list(folder.glob(".*.tmp"))


def full_disk_after_half(monkeypatch) -> None:
    """Every write gets half its bytes to disk, then the disk is full."""

    def write_bytes(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def full_disk_at_sync(monkeypatch) -> None:
    """The writes succeed but the disk fills when they are flushed (delayed allocation)."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def run_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())


# --------------------------------------------------------------------------- the atomic writer


def test_atomic_writes_replace_the_file_whole_with_usual_permissions(tmp_path):
    path = tmp_path / "sub" / "params.json"  # the folder is made
    atomic_write_json(path, {"lr": 0.1})
    atomic_write_json(path, {"lr": 0.2})
    assert json.loads(path.read_text()) == {"lr": 0.2}
    atomic_write_text(tmp_path / "tuned.yaml", "params: {}\n")
    assert (tmp_path / "tuned.yaml").read_text() == "params: {}\n"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert no_temporary_files(path.parent) and no_temporary_files(tmp_path)


@pytest.mark.parametrize("fill", [full_disk_after_half, full_disk_at_sync], ids=["at-write", "at-sync"])
def test_a_full_disk_keeps_the_previous_file_and_says_so_naming_it(tmp_path, monkeypatch, fill):
    path = tmp_path / "tuned.yaml"
    atomic_write_text(path, "old: 1\n")
    fill(monkeypatch)
    with pytest.raises(UnlearnkitError) as info:
        atomic_write_text(path, "new: 2\n" * 100)
    assert info.value.message == f"no space left on device while writing {path}"
    assert "Free space, or choose another folder" in info.value.hint
    assert path.read_text() == "old: 1\n"
    assert no_temporary_files(tmp_path)


@pytest.mark.parametrize("fill", [full_disk_after_half, full_disk_at_sync], ids=["at-write", "at-sync"])
def test_a_full_disk_while_saving_weights_keeps_the_old_file(tmp_path, monkeypatch, fill):
    path = tmp_path / "m.safetensors"
    save_model(path, linear(1), {"v": "1"})
    before = path.read_bytes()
    fill(monkeypatch)
    with pytest.raises(UnlearnkitError, match=f"no space left on device while writing {path}") as info:
        save_model(path, linear(3))
    assert "Free space" in info.value.hint
    assert path.read_bytes() == before
    assert no_temporary_files(tmp_path)


@pytest.mark.parametrize("fill", [full_disk_after_half, full_disk_at_sync], ids=["at-write", "at-sync"])
def test_a_full_disk_while_writing_a_bundle_keeps_the_previous_one_and_leaves_no_staging(tmp_path, monkeypatch, fill):
    from tests.test_faults_inputs import _result
    from unlearnkit.bundle import write_bundle

    out = tmp_path / "bundle"
    write_bundle(_result(), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with monkeypatch.context() as patched:
        fill(patched)
        with pytest.raises(UnlearnkitError) as info:
            write_bundle(_result(), out, overwrite=True)
    assert info.value.message.startswith("no space left on device while writing")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder, no temporary file


def test_an_unwritable_folder_is_one_error_naming_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UnlearnkitError) as info:
        atomic_write_json(blocker / "x.json", {})
    assert info.value.message == f"cannot write {blocker / 'x.json'}: File exists: {blocker}"


def test_a_writer_that_fails_midway_leaves_the_previous_file(tmp_path):
    path = tmp_path / "cell.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as temporary:
            temporary.write_text('{"v": 2, "metr')
            raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"v": 1}
    assert no_temporary_files(tmp_path)


def test_a_writer_killed_midway_leaves_the_previous_file(tmp_path):
    path = tmp_path / "cell.json"
    atomic_write_json(path, {"v": 1})
    writer = run_python("""
        import sys, time
        from unlearnkit.files import atomic_path
        with atomic_path(sys.argv[1]) as temporary:
            with open(temporary, "w") as handle:
                handle.write('{"v": 2, "metr')
                handle.flush()
                print("half written", flush=True)
                time.sleep(60)
    """, str(path))
    assert writer.stdout.readline().strip() == "half written", writer.stderr.read()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert json.loads(path.read_text()) == {"v": 1}
    # SIGKILL leaves its temporary file; it is hidden and never read as the real one
    assert [p.name.startswith(".cell.json.") for p in tmp_path.iterdir() if p != path] == [True]

    # a later process's first write into the folder removes it once it is older than any real write, and not before
    (left,) = [p for p in tmp_path.iterdir() if p != path]
    files._swept.clear()
    atomic_write_json(path, {"v": 3})
    assert left.exists()
    busy = tmp_path / ".other.json.busy.tmp"  # a slow writer's, 59 minutes old: may still be at work, kept
    busy.write_text("{")
    old_enough = time.time() - STALE_SECONDS - 1
    os.utime(left, (old_enough, old_enough))
    os.utime(busy, (old_enough + 60, old_enough + 60))
    files._swept.clear()
    atomic_write_json(tmp_path / "another.json", {"v": 4})
    assert not left.exists() and busy.exists() and json.loads(path.read_text()) == {"v": 3}


def test_a_checkpoint_writer_killed_in_a_loop_leaves_a_whole_verified_file(tmp_path):
    path = tmp_path / "m.safetensors"
    writer = run_python("""
        import sys, torch
        from torch import nn
        from unlearnkit.checkpoint import save_model
        models = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            models.append(nn.Linear(256, 3))
        for i in range(100000):
            save_model(sys.argv[1], models[i % 2], {"i": str(i)})
            print(i, flush=True)
    """, str(path))
    for _ in range(20):  # let it replace the file many times, then kill it wherever it is
        assert writer.stdout.readline(), writer.stderr.read()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    target = linear(0, 256)
    meta = load_model(path, target)  # verified against its checksum
    assert same_weights(target, linear(int(meta["i"]) % 2 + 1, 256))


# --------------------------------------------------------------------------- the model cache


def test_cache_entries_carry_a_checksum_that_fetch_checks(tmp_path):
    path = cache.store("original-k1", linear(1), {"flops": 12.5, "seconds": 3})
    assert path == tmp_path / "cache" / "original-k1.safetensors"
    with safe_open(str(path), framework="pt") as f:
        assert len(f.metadata()[CHECKSUM]) == 64
    target = linear(2)
    assert cache.load("original-k1", target) == {"flops": "12.5", "seconds": "3"}  # the checksum is not metadata
    assert same_weights(target, linear(1))
    assert cache.load("original-absent", target) is None


@pytest.mark.parametrize("damage", [float("nan"), 0.0], ids=["nan", "finite"])
def test_a_damaged_cache_entry_is_reported_set_aside_and_never_used(tmp_path, damage):
    path = cache.store("retrain-k2", linear(1), {"flops": 1})
    overwrite_tensor(path, "weight", torch.full((3, 4), damage))
    target = linear(2)
    with pytest.warns(StorageWarning) as caught:
        assert cache.load("retrain-k2", target) is None
    assert len(caught) == 1
    line = str(caught[0].message)
    assert str(path) in line and "checksum" in line and "set aside as retrain-k2.safetensors.damaged" in line
    assert same_weights(target, linear(2))  # nothing was loaded
    assert not path.exists() and (tmp_path / "cache" / "retrain-k2.safetensors.damaged").is_file()
    cache.store("retrain-k2", linear(3), {})  # trained again and stored: a good entry once more
    assert cache.load("retrain-k2", target) == {} and same_weights(target, linear(3))


@pytest.mark.parametrize("keep", [0, 5, 40, -8], ids=["empty", "in-length", "in-header", "in-weights"])
def test_a_truncated_cache_entry_is_reported_and_set_aside(tmp_path, keep):
    path = cache.store("original-k3", linear(1), {})
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.warns(StorageWarning, match="not a valid safetensors file"):
        assert cache.load("original-k3", linear(2)) is None
    assert not path.exists()


def test_an_entry_of_another_shape_is_not_loaded(tmp_path):
    cache.store("original-k4", linear(1, size=5), {})
    with pytest.warns(StorageWarning, match="does not fit this model"):
        assert cache.load("original-k4", linear(2)) is None


def test_legacy_entries_without_a_checksum_are_accepted_only_when_finite(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    good = {k: v.contiguous() for k, v in linear(1).state_dict().items()}
    save_file(good, folder / "original-old.safetensors", metadata={"flops": "7"})
    target = linear(2)
    assert cache.load("original-old", target) == {"flops": "7"}
    assert same_weights(target, linear(1))
    bad = {**good, "weight": torch.full((3, 4), float("nan"))}
    save_file(bad, folder / "retrain-old.safetensors")
    with pytest.warns(StorageWarning, match="not finite"):
        assert cache.load("retrain-old", target) is None
    assert same_weights(target, linear(1))


def test_a_full_cache_folder_warns_and_keeps_the_previous_entry(tmp_path, monkeypatch):
    cache.store("original-k5", linear(1), {})
    with monkeypatch.context() as patched:
        full_disk_after_half(patched)
        with pytest.warns(StorageWarning, match="original-k5 is not cached: no space left on device while writing .*original-k5"):
            assert cache.store("original-k5", linear(3), {}) is None
    target = linear(2)
    assert cache.load("original-k5", target) == {} and same_weights(target, linear(1))
    assert no_temporary_files(tmp_path / "cache")


def test_a_file_replaced_since_it_was_read_is_not_set_aside(tmp_path):
    path = tmp_path / "original-k6.safetensors"
    path.write_bytes(b"damaged")
    seen = file_stamp(path)
    atomic_write_text(path, "a good entry another process stored meanwhile")
    with pytest.warns(StorageWarning, match="already replaced"):
        set_aside(path, seen, "checksum mismatch")
    assert path.read_text() == "a good entry another process stored meanwhile"
    assert not (tmp_path / "original-k6.safetensors.damaged").exists()


def store_repeatedly(seed: int, folder: str, start) -> None:
    """One of two writers: the same cache entry and bench cell, over and over, from the moment both are ready."""
    model, store = linear(seed, 256), CellStore(Path(folder) / "bench")
    start.wait()
    for _ in range(30):
        cache.store("retrain-shared", model, {"writer": seed})
        store.put("unlearned-shared", {**RECORD, "writer": seed, "metrics": {"ua": float(seed)}, "pad": "x" * 20000})


def test_two_processes_storing_the_same_entries_at_once_leave_valid_ones(tmp_path):
    context = multiprocessing.get_context("fork")  # forked: the writers start at once, without importing torch again
    start = context.Barrier(2)
    writers = [context.Process(target=store_repeatedly, args=(seed, str(tmp_path), start)) for seed in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0
    target = linear(0, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged entry would warn
        meta = cache.load("retrain-shared", target)
        record = CellStore(tmp_path / "bench").get("unlearned-shared")
    assert meta is not None and same_weights(target, linear(int(meta["writer"]), 256))
    assert record is not None and record["metrics"] == {"ua": float(record["writer"])}
    assert no_temporary_files(tmp_path / "cache") and no_temporary_files(tmp_path / "bench" / "cells")


# --------------------------------------------------------------------------- checkpoints a user gives


@pytest.mark.parametrize("cut", [3, 8, 30, -5], ids=["in-length", "after-length", "in-header", "in-weights"])
def test_a_truncated_safetensors_checkpoint_is_one_clear_error(tmp_path, cut):
    path = tmp_path / "weights.safetensors"
    save_model(path, linear(1))
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(CheckpointError, match="is not a valid safetensors file") as info:
        load_model(path, linear(2))
    assert str(path) in info.value.message and info.value.hint


@pytest.mark.parametrize("header", [b"{not json at all", b'{"weight": {"dtype": "F32"}}', b"[1, 2, 3]"],
                         ids=["not-json", "incomplete-entry", "not-an-object"])
def test_a_corrupted_safetensors_header_is_one_clear_error(tmp_path, header):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
    with pytest.raises(CheckpointError, match=f"{path} is not a valid safetensors file"):
        load_model(path, linear(2))


def test_a_header_length_beyond_the_file_is_one_clear_error(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes((10**6).to_bytes(8, "little") + b'{"a": 1}')
    with pytest.raises(CheckpointError, match="is not a valid safetensors file"):
        load_model(path, linear(2))


def test_a_damaged_user_checkpoint_is_refused_naming_it(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_model(path, linear(1), {"method": "ft"})
    overwrite_tensor(path, "bias", torch.zeros(3))
    target = linear(2)
    with pytest.raises(CheckpointError, match=f"{path} is damaged: its weights no longer match the checksum"):
        load_model(path, target)
    assert same_weights(target, linear(2))


def test_a_pt_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(linear(1), path)  # the whole module: weights_only refuses its classes
    with pytest.raises(CheckpointError, match=f"{path} is not a plain state dict: it holds pickled objects"):
        load_model(path, linear(2))


def test_every_torch_load_in_unlearnkit_passes_weights_only_true():
    calls = []
    for source in (ROOT / "unlearnkit").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                calls.append((source.name, isinstance(flag, ast.Constant) and flag.value is True))
    assert calls == [("checkpoint.py", True)]


# --------------------------------------------------------------------------- forget index files


@pytest.mark.parametrize("content, error", [
    ("[3, 1.5, 4]", "index 1: 1.5 is not an integer"),
    ('[3, "abc"]', 'index 1: "abc" is not an integer'),
    ("[true, 2]", "index 0: true is not an integer"),
    ("[[1, 2], 3]", "index 0: [1, 2] is not an integer"),
    ("[1, null]", "index 1: null is not an integer"),
    ("[2.0]", "index 0: 2.0 is not an integer"),
    ("[5, 7, 5]", "index 2: index 5 is named twice (first at index 0)"),
    ("[4, -1]", "index 1: index -1 is outside the training set (0..19)"),
    ("[4, 20]", "index 1: index 20 is outside the training set (0..19)"),
    ("3\n4\n1.5\n", "line 3: '1.5' is not an integer"),
    ("3, 4\nabc 5\n", "line 2: 'abc' is not an integer"),
    ("1\ntrue\n", "line 2: 'true' is not an integer"),
    ("1e1\n", "line 1: '1e1' is not an integer"),
    ("1 2\n3 2\n", "line 2: index 2 is named twice (first at line 1)"),
    ("7\n-3\n", "line 2: index -3 is outside the training set (0..19)"),
    ("7\n\n99\n", "line 3: index 99 is outside the training set (0..19)"),
    ("[1, 2", "is not a valid JSON list: Expecting ',' delimiter at line 1, column 6"),
    ("", "names no index"),
    ("[]", "names no index"),
])
def test_a_forget_index_file_with_a_bad_value_is_refused_naming_file_value_and_place(tmp_path, content, error):
    path = tmp_path / "forget.txt"
    path.write_text(content)
    with pytest.raises(UnlearnkitError) as info:
        indices_split(20, path)
    assert str(path) in info.value.message and error in info.value.message, info.value.message
    assert info.value.hint


def test_a_forget_index_file_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "forget.bin"
    path.write_bytes(b"1\n2\n\xff\xfe")
    with pytest.raises(UnlearnkitError, match=f"forget index file {path} is not text: byte 4 is not UTF-8"):
        indices_split(20, path)


@pytest.mark.parametrize("content", ["[7, 2, 11]", "7\n2\n11\n", "7, 2,11", "\ufeff[7, 2, 11]", "+7 2 11"])
def test_good_forget_index_files_name_exactly_their_samples(tmp_path, content):
    path = tmp_path / "forget.txt"
    path.write_text(content, encoding="utf-8")
    split = indices_split(20, path)
    assert split.forget.tolist() == [2, 7, 11]
    assert len(split.retain) == 17 and not set(split.retain.tolist()) & {2, 7, 11}


@pytest.mark.parametrize("given, error", [
    ([4, 9, 4], "index 4 is named twice (positions 0 and 2)"),
    (torch.tensor([True, False, True]), "must be integers, not bool"),
    (np.array([1.0, 2.5]), "must be integers, not float64"),
    ([0, 20], "must name indices in 0..19"),
])
def test_forget_indices_given_in_code_are_read_as_strictly_as_a_file(given, error):
    with pytest.raises(UnlearnkitError) as caught:
        given_split(20, given)
    assert error in caught.value.message
    assert given_split(20, np.array([7, 2, 11], dtype=np.int32)).forget.tolist() == [2, 7, 11]


def test_the_cli_refuses_a_bad_forget_file_in_one_message(tmp_path, capsys):
    path = tmp_path / "forget.json"
    path.write_text("[3, 1.5]")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--method", "ft", "--forget", f"indices:{path}", "--set", "data.train_subset=40",
                  "--set", "data.test_subset=20", "--device", "cpu", "--quiet", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code not in (0, None)
    assert "index 1: 1.5 is not an integer" in err.replace("\n", " ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("damage", ["checksum", "pickled", "truncated"])
def test_validate_and_run_refuse_a_damaged_original_alike_before_training(tmp_path, capsys, monkeypatch, command, damage):
    monkeypatch.setenv("UNLEARNKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / ("original.pt" if damage == "pickled" else "original.safetensors")
    if damage == "pickled":
        torch.save(nn.Linear(2, 3), path)  # a whole module: refused, never unpickled
        expected = "holds pickled objects"
    else:
        save_model(path, linear(1), {})
        if damage == "checksum":
            overwrite_tensor(path, "bias", torch.zeros(3))
            expected = "is damaged: its weights no longer match the checksum"
        else:
            path.write_bytes(path.read_bytes()[:-7])
            expected = "is not a valid"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--method", "ft", "--original", str(path), "--device", "cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and expected in err.replace("\n", " ") and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- bench cells and the tuning study


#: a record as a grid's cell stores it, less what the store does not check
RECORD = {"scenario": "random:0.1", "seed": 0, "forget_count": 24, "retain_count": 216, "kind": "unlearned",
          "variant": "ft", "method": "ft", "augment": [], "trial": None, "overlay": {}, "params": {},
          "metrics": {"ua": 1.0}}


def put_cell(store: CellStore, key: str) -> Path:
    store.put(key, RECORD)
    return store.folder / f"{key}.json"


@pytest.mark.parametrize("damage", [
    lambda data: data[: len(data) // 2],
    lambda data: b"",
    lambda data: b"\xff\xfe" + data,
    lambda data: b"[1, 2]",
    lambda data: data.replace(b'"metrics"', b'"metricz"'),
    lambda data: data.replace(b"unlearned-a", b"unlearned-b"),
], ids=["truncated", "empty", "not-utf8", "not-a-record", "no-metrics", "another-key"])
def test_a_damaged_cell_is_reported_with_its_path_set_aside_and_computed_again(tmp_path, damage):
    store = CellStore(tmp_path / "bench")
    path = put_cell(store, "unlearned-a")
    assert store.get("unlearned-a")["metrics"] == {"ua": 1.0}
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(StorageWarning) as caught:
        assert store.missing(["unlearned-a"])
    assert len(caught) == 1 and str(path) in str(caught[0].message)
    assert (store.folder / "unlearned-a.json.damaged").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.get("unlearned-a") is None  # reported once: the damaged file is no longer under its name
    put_cell(store, "unlearned-a")
    assert store.get("unlearned-a")["format"] == RECORD_FORMAT


def test_a_cell_of_another_format_is_computed_again_without_a_warning(tmp_path):
    store = CellStore(tmp_path / "bench")
    path = put_cell(store, "unlearned-a")
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": RECORD_FORMAT + 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.get("unlearned-a") is None
    assert path.exists()


def test_an_unreadable_cell_is_one_error_naming_it(tmp_path):
    store = CellStore(tmp_path / "bench")
    (store.folder / "unlearned-a.json").mkdir(parents=True)
    with pytest.raises(UnlearnkitError, match=f"cannot read bench cell {store.folder / 'unlearned-a.json'}"):
        store.get("unlearned-a")


def test_a_full_disk_while_storing_a_cell_keeps_the_previous_record(tmp_path, monkeypatch):
    store = CellStore(tmp_path / "bench")
    path = put_cell(store, "unlearned-a")
    before = path.read_bytes()
    full_disk_after_half(monkeypatch)
    with pytest.raises(UnlearnkitError, match=f"no space left on device while writing {path}"):
        store.put("unlearned-a", {**RECORD, "metrics": {"ua": 2.0}})
    assert path.read_bytes() == before and no_temporary_files(store.folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_tuning_study_is_set_aside_and_a_new_one_begins(tmp_path, damage):
    optuna = pytest.importorskip("optuna")
    from unlearnkit.api import Range
    from unlearnkit.bench.tune import open_study

    space = {"ft.lr": Range(0.01, 0.1, True)}
    study = open_study(tmp_path, "ft", "random", space, 3, 0)
    study.add_trial(optuna.trial.create_trial(params={"ft.lr": 0.05}, value=1.0,
                                              distributions={"ft.lr": optuna.distributions.FloatDistribution(0.01, 0.1)}))
    path = tmp_path / "study.db"
    data = path.read_bytes()
    path.write_bytes(b"not a database " * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.warns(StorageWarning, match=f"{path} is damaged .*a new study begins"):
        study = open_study(tmp_path, "ft", "random", space, 3, 0)
    assert study.get_trials() == []
    assert (tmp_path / "study.db.damaged").is_file()
