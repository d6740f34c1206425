"""The application layer: `unlearnkit.unlearn(out=...)` writes the bundle `unlearn run` writes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import unlearnkit as uk
from tests.test_cli import unlearn as unlearn_cli
from unlearnkit.bundle import CONTENTS, check_destination
from unlearnkit.checkpoint import load_model
from unlearnkit.errors import UnlearnkitError

pytestmark = pytest.mark.usefixtures("private_cache")


def blobs(n: int, seed: int) -> TensorDataset:
    """A user's own data set: 3x8x8 images whose class shifts their brightness."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g) * 0.5 + labels.view(-1, 1, 1, 1), labels)


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_unlearn_writes_the_bundle_unlearn_run_writes(capsys, tmp_path):
    code, _, err = unlearn_cli(capsys, "run", "--method", "ft", "--out", str(tmp_path / "cli"), "--set", "data.train_subset=120",
                               "--set", "data.test_subset=40", "--set", "train.epochs=1", "--set", "method.params.epochs=1",
                               "--device", "cpu", "--quiet")
    assert code == 0, err
    out = tmp_path / "api"
    result = uk.unlearn(network(), blobs(64, 0), forget=list(range(8)), test_set=blobs(32, 1), method="ft",
                        params={"method": {"epochs": 1}}, retrain=True, train={"epochs": 1}, device="cpu", out=out)

    assert result.bundle == out
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert {p.name for p in out.iterdir()} <= CONTENTS
    written, by_cli = json.loads((out / "results.json").read_text()), json.loads((tmp_path / "cli" / "results.json").read_text())
    assert written.keys() == by_cli.keys()
    assert written["metrics"] == json.loads(json.dumps(result.run.metrics))
    load_model(out / written["weights"], network())  # the user's own network takes the unlearned weights
    check_destination(out, overwrite=True)  # a bundle, which `unlearn run --overwrite` would replace
    with pytest.raises(UnlearnkitError, match="already holds a result bundle"):
        uk.unlearn(network(), blobs(64, 0), forget=[0], test_set=blobs(32, 1), device="cpu", out=out)
    # its data are the user's own Datasets, which the bundle does not hold: reproduce says so
    code, _, err = unlearn_cli(capsys, "reproduce", str(out))
    assert code == 2 and "was written by unlearnkit.unlearn on a model and Datasets of your own" in err
