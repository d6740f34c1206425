"""`unlearn reproduce`: a fresh bundle reproduces; a tampered one fails with a clear diff, or is refused."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_cli import unlearn
from tests.test_cli_bench import RUN_TINY, TINY
from unlearnkit.bundle import contents_checksum
from unlearnkit.checkpoint import read_state, save_model
from unlearnkit.reproduce import DIFFERENT, IDENTICAL, WITHIN, _judge

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def bundle(capsys, tmp_path):
    folder = tmp_path / "bundle"
    code, _, err = unlearn(capsys, "run", "--method", "ft", *RUN_TINY, "--set", "method.params.epochs=1", "--out", str(folder))
    assert code == 0, err
    return folder


def test_a_fresh_bundle_reproduces_bit_for_bit(capsys, bundle):
    results = json.loads((bundle / "results.json").read_text())
    assert results["command"].startswith("unlearn run --method ft") and results["format"] == 1
    assert {"plugins", "determinism"} <= set(results["environment"])
    code, out, err = unlearn(capsys, "reproduce", str(bundle), "-q")
    assert code == 0, err
    assert "reproduces:" in out and " 0 different" in out and "unlearned weights" in out


def test_weights_that_differ_fail_with_the_difference_named(capsys, bundle):
    state, metadata = read_state(bundle / "unlearned.safetensors")
    state["head.weight"] = state["head.weight"] + 0.01
    save_model(bundle / "unlearned.safetensors", _holding(state), metadata)
    code, out, _ = unlearn(capsys, "reproduce", str(bundle), "-q")
    assert code == 1
    assert "does not reproduce" in out and "largest difference 0.01" in out


def _holding(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A module whose state dict is `state`, names included, to save it as the toolkit saves weights."""
    class Holder(torch.nn.Module):
        def state_dict(self, *args, **kwargs):  # type: ignore[override]
            return dict(state)

    return Holder()


def test_a_results_file_edited_by_hand_is_refused(capsys, bundle):
    path = bundle / "results.json"
    results = json.loads(path.read_text())
    results["metrics"]["unlearned"]["UA"] = 99.0
    path.write_text(json.dumps(results))
    code, _, err = unlearn(capsys, "reproduce", str(bundle))
    assert code == 2 and "was edited after it was written" in err and "Traceback" not in err


def test_a_bundle_of_a_newer_format_is_refused(capsys, bundle):
    path = bundle / "results.json"
    results = json.loads(path.read_text())
    results["format"] = 99
    results["checksum"] = contents_checksum(results)
    path.write_text(json.dumps(results))
    code, _, err = unlearn(capsys, "reproduce", str(bundle))
    assert code == 2 and "is a bundle of format 99, newer than this unlearnkit reads (1)" in err


def test_a_folder_that_is_not_a_bundle_is_refused(capsys, tmp_path):
    code, _, err = unlearn(capsys, "reproduce", str(tmp_path))
    assert code == 2 and "cannot read" in err and "results.json" in err


@pytest.mark.parametrize("recorded, now, verdict", [
    (12.5, 12.5, IDENTICAL), (12.5, 12.9, WITHIN), (12.5, 13.5, DIFFERENT), (None, None, IDENTICAL),
    (12.5, None, DIFFERENT), (float("nan"), 1.0, DIFFERENT),
])
def test_each_metric_is_judged_against_the_tolerance(recorded, now, verdict):
    assert _judge(recorded, now, 0.5) == verdict


@pytest.fixture
def bench_folder(capsys, tmp_path):
    folder = tmp_path / "bench"
    code, _, err = unlearn(capsys, "bench", "--methods", "ft,neggrad", "--augment", "none", "--scenarios", "random:0.1",
                           "--seeds", "1", *TINY, "--set", "params.ft.method.params.epochs=1",
                           "--set", "params.neggrad.method.params.epochs=1", "--out", str(folder))
    assert code == 0, err
    return folder


def test_a_bench_folder_reproduces_cell_by_cell(capsys, bench_folder):
    code, out, err = unlearn(capsys, "reproduce", str(bench_folder), "--cache", "-q")
    assert code == 0, err
    # one row per cell and one per reference model of its (scenario, seed)
    for row in ("ft (random 10%, seed 0)", "neggrad (random 10%, seed 0)", "original (random 10%, seed 0)",
                "retrain (random 10%, seed 0)"):
        assert row in out
    assert "reproduces: 4 identical, 0 within tolerance, 0 different" in out


def test_a_bench_cell_whose_record_differs_fails_naming_the_cell_and_metric(capsys, bench_folder):
    cells = [p for p in (bench_folder / "cells").glob("*.json") if json.loads(p.read_text())["variant"] == "neggrad"]
    record = json.loads(cells[0].read_text())
    record["metrics"]["UA"] += 5.0
    cells[0].write_text(json.dumps(record))
    code, out, _ = unlearn(capsys, "reproduce", str(bench_folder), "--cache", "--cells", "1", "-q")
    assert code == 0  # --cells 1 runs the first variant's cell only: ft, which was not touched
    code, out, _ = unlearn(capsys, "reproduce", str(bench_folder), "--cache", "-q")
    assert code == 1
    assert "does not reproduce" in out and "UA 5" in out


def test_cell_keys_stay_those_earlier_versions_stored_cells_under():
    """A bench resumes from cells an earlier version wrote only while their keys do not move: fields that do not
    change a number (trackers, logging) and new fields at their defaults stay out of a cell's identity."""
    from unlearnkit.bench.grid import BenchSpec, expand
    from unlearnkit.bench.keys import cell_key, reference_key
    from unlearnkit.plugins import installed

    grid = expand(BenchSpec(base={}, methods=["ft"], augment=["none", "coun-cl"], scenarios=["random:0.1"], seeds=1),
                  installed())
    keys = [(cell_key(grid.resolved[c]), reference_key(grid.resolved[c], "original")) for c in grid.cells]
    assert keys == [("a78e146db292f037", "e3681c01439af050"), ("f4289e15402e61ee", "e3681c01439af050")]
