"""Checkpoints: safetensors or torch state dicts, atomic writes, clear errors, and never an unpickled object."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from unlearnkit.checkpoint import load_model, load_state, read_state, save_model
from unlearnkit.errors import CheckpointError, UnlearnkitError
from unlearnkit.models import small_cnn


def model(classes: int = 10, seed: int = 0):
    torch.manual_seed(seed)
    m = small_cnn(1, classes, width=4)
    # give the BatchNorm buffers non-default values so they are checked too
    m(torch.randn(4, 1, 8, 8))
    return m


def states_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Marker:
    """Unpickling this object creates a file: proof that something unpickled it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_round_trip_keeps_weights_buffers_and_metadata(tmp_path):
    source = model(seed=1)
    path = tmp_path / "sub" / "dir" / "model.safetensors"  # parent folders are made
    save_model(path, source, {"flops": 1.5e12, "seconds": 3, "method": "coun"})
    target = model(seed=2)
    assert not states_equal(source, target)
    meta = load_model(path, target)
    assert states_equal(source, target)
    assert meta == {"flops": "1500000000000.0", "seconds": "3", "method": "coun"}
    assert target.state_dict()["features.1.num_batches_tracked"].dtype == torch.long


def test_round_trip_without_metadata(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, model(seed=1))
    target = model(seed=2)
    assert load_model(path, target) == {}
    assert states_equal(model(seed=1), target)


def test_save_writes_readable_permissions_and_replaces_an_existing_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, model(seed=1))
    save_model(path, model(seed=3), {"v": "2"})
    target = model(seed=2)
    assert load_model(path, target) == {"v": "2"}
    assert states_equal(model(seed=3), target)
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(path, model(seed=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_random_bytes_are_not_a_valid_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(path, model())


def test_an_empty_file_is_not_a_valid_safetensors_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(path, model())


@pytest.mark.parametrize(
    "name, error",
    [
        ("model.pt", "not a plain state dict"),
        ("model.pth", "not a plain state dict"),
        ("model.bin", "not a plain state dict"),
        ("disguised.safetensors", "not a valid safetensors file"),  # only torch suffixes are torch.load-ed
        ("model.ckpt", "not a valid safetensors file"),
    ],
)
def test_a_torch_pickle_is_refused_and_never_unpickled(tmp_path, name, error):
    marker = tmp_path / "unpickled.txt"
    path = tmp_path / name
    torch.save({"state_dict": model().state_dict(), "payload": Marker(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=error) as info:
        load_model(path, model())
    assert not marker.exists(), "load_model unpickled the file"
    assert "never unpickles" in str(info.value)
    assert isinstance(info.value, UnlearnkitError) and info.value.hint
    # control: the payload is live, so the assertion above means something
    with open(path, "rb") as f:  # a file object, so torch.load does not go by the suffix
        torch.load(f, weights_only=False)
    assert marker.exists()


def test_a_plain_pickle_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled.txt"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Marker(marker)))
    with pytest.raises(CheckpointError):
        load_model(path, model())
    assert not marker.exists()


def test_wrong_shapes_name_the_mismatched_keys(tmp_path):
    path = tmp_path / "three.safetensors"
    save_model(path, model(classes=3), {"classes": "3"})
    target = model(classes=10)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit this model") as info:
        load_model(path, target)
    message = str(info.value)
    assert "head.weight" in message and "(3, 16)" in message and "(10, 16)" in message
    assert "head.bias" in message
    assert "classes" in message  # the file's metadata is shown as a hint
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing loaded


def test_missing_and_unexpected_keys_are_named(tmp_path):
    path = tmp_path / "other.safetensors"
    state = {k: v.contiguous() for k, v in model().state_dict().items() if k != "head.bias"}
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_model(path, model())
    message = str(info.value)
    assert "missing head.bias" in message and "unexpected extra.weight" in message


def test_a_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere.safetensors", model())


def test_a_folder_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError):
        load_model(tmp_path, model())


# .pt / .pth files: state dicts read with torch.load(weights_only=True), nothing else


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model.bin"])
def test_a_torch_state_dict_loads_identical_weights(tmp_path, name):
    path = tmp_path / name
    torch.save(model(seed=1).state_dict(), path)
    target = model(seed=2)
    assert not states_equal(model(seed=1), target)
    assert load_model(path, target) == {}
    assert states_equal(model(seed=1), target)
    assert target.state_dict()["features.1.num_batches_tracked"].dtype == torch.long


def test_a_legacy_torch_state_dict_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(model(seed=1).state_dict(), path, _use_new_zipfile_serialization=False)
    target = model(seed=2)
    load_model(path, target)
    assert states_equal(model(seed=1), target)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": sd, "epoch": 7, "optimizer": {"lr": 0.1}},  # a training checkpoint
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DataParallel / DDP
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["state_dict", "model", "training-checkpoint", "module-prefix", "wrapped-module-prefix"],
)
def test_wrapped_and_prefixed_state_dicts_load(tmp_path, wrap):
    path = tmp_path / "wrapped.pt"
    torch.save(wrap(model(seed=1).state_dict()), path)
    target = model(seed=2)
    assert load_model(path, target) == {}
    assert states_equal(model(seed=1), target)


def test_a_partial_module_prefix_is_kept(tmp_path):
    """Only a prefix that every key has is DataParallel's; otherwise the names are the model's and must fit."""
    state = model().state_dict()
    state["module.extra"] = torch.zeros(1)
    path = tmp_path / "m.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="unexpected module.extra"):
        load_model(path, model())


def test_a_whole_pickled_module_is_refused_without_running_its_pickle(tmp_path):
    marker = tmp_path / "unpickled.txt"
    source = model()
    source.payload = Marker(marker)  # unpickling the module would unpickle this too, creating the marker
    path = tmp_path / "model.pt"
    torch.save(source, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a plain state dict") as info:
        load_model(path, model())
    assert not marker.exists(), "load_model ran the file's pickle code"
    assert str(path) in str(info.value) and "torch.save(model.state_dict(), PATH)" in info.value.hint
    assert "Traceback" not in str(info.value) and "weights_only=False" not in str(info.value)
    # control: the payload is live, so the assertion above means something
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "content, error",
    [
        ({"weight": torch.zeros(2), "epoch": 3}, "non-tensor values \\(under epoch\\)"),
        ({"state_dict": {"weight": torch.zeros(2), "note": "hi"}}, "non-tensor values \\(under note\\)"),
        ([torch.zeros(2)], "not a state dict: it holds a list"),
        (torch.zeros(2), "not a state dict: it holds a Tensor"),
    ],
)
def test_what_is_not_a_state_dict_is_named(tmp_path, content, error):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=error) as info:
        load_model(path, model())
    assert "torch.save(model.state_dict(), PATH)" in info.value.hint


def test_a_mis_shaped_key_in_a_torch_file_is_named(tmp_path):
    path = tmp_path / "three.pth"
    torch.save(model(classes=3).state_dict(), path)
    target = model(classes=10)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit this model") as info:
        load_model(path, target)
    assert "head.weight: file (3, 16), model (10, 16)" in str(info.value) and str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # nothing loaded


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0, 20, 0.5], ids=["empty", "20-bytes", "half"])
def test_a_truncated_torch_file_is_a_checkpoint_error(tmp_path, legacy, keep):
    path = tmp_path / "cut.pt"
    torch.save(model().state_dict(), path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError, match="not a valid PyTorch checkpoint") as info:
        load_model(path, model())
    assert str(path) in str(info.value) and "truncated or damaged" in info.value.hint


def test_a_safetensors_file_named_pt_is_read_as_safetensors(tmp_path):
    path = tmp_path / "weights.pt"
    save_model(path, model(seed=1), {"method": "coun"})
    target = model(seed=2)
    assert load_model(path, target) == {"method": "coun"}  # metadata: only safetensors has it
    assert states_equal(model(seed=1), target)


def test_a_corrupt_safetensors_file_named_pt_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "weights.pt"
    save_model(path, model())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(path, model())


def test_read_state_and_load_state_serve_both_formats(tmp_path):
    st, pt = tmp_path / "m.safetensors", tmp_path / "m.pt"
    save_model(st, model(seed=1), {"v": "1"})
    torch.save(model(seed=1).state_dict(), pt)
    (a, meta_a), (b, meta_b) = read_state(st), read_state(pt)
    assert (meta_a, meta_b) == ({"v": "1"}, {})
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    target = model(seed=2)
    load_state(target, b, "somewhere", {})
    assert states_equal(model(seed=1), target)
    del b["head.bias"]
    with pytest.raises(CheckpointError, match="checkpoint somewhere does not fit this model: missing head.bias"):
        load_state(model(), b, "somewhere", {})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused_naming_the_tensor(tmp_path, bad):
    diverged = model()
    with torch.no_grad():
        diverged.head.weight[0, 0] = bad
    path = tmp_path / "diverged.safetensors"
    save_model(path, diverged)
    with pytest.raises(CheckpointError, match=r"not finite \(NaN or infinity\): head\.weight"):
        load_model(path, model())
    torch.save(diverged.state_dict(), tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError, match="head.weight"):
        read_state(tmp_path / "diverged.pt")
