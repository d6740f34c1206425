"""Grids under faults: bench and tune specs a user got wrong, and result stores edited by hand.

Each mistake ends with one message and exit 2, no traceback, before anything trains; a stored record that the
tables could not read is reported with its path, set aside and computed again.
"""

from __future__ import annotations

import json
import warnings

import pytest
import yaml

from tests.test_cli import unlearn
from tests.test_cli_bench import RUN_TINY, TINY
from tests.test_faults_files import RECORD, put_cell
from unlearnkit.bench.grid import expand, merge, read_bench_spec
from unlearnkit.bench.runner import CellStore
from unlearnkit.files import StorageWarning

pytestmark = pytest.mark.usefixtures("in_tmp_path")

ONE_CELL = {"methods": ["ft"], "augment": ["none"], "scenarios": ["random:0.1"], "seeds": 1}


def refused(capsys, spec: dict | None, *argv: str, command: str = "bench") -> str:
    """Run `unlearn COMMAND [spec.yaml] ARGV`; it must end with one message, exit 2 and no traceback."""
    if spec is not None:
        with open("spec.yaml", "w") as file:
            yaml.safe_dump(spec, file)
        argv = ("--bench", "spec.yaml", *argv) if command == "tune" else ("spec.yaml", *argv)
    code, _, err = unlearn(capsys, command, *argv)
    assert code == 2 and "Traceback" not in err and "error" in err, err
    return err


# --------------------------------------------------------------------------- augmenters without a name


def test_an_augmenter_without_a_name_in_params_or_base_is_refused_naming_its_place(capsys):
    spec = {"methods": ["ft"], "augment": ["coun-cl"], "scenarios": ["random:0.1"], "seeds": 1,
            "params": {"ft+coun-cl": {"augment": [{"params": {"lambda": 2.0}}]}}}
    assert "params.ft+coun-cl.augment.0.name: Field required" in refused(capsys, spec, *TINY)
    spec = {**ONE_CELL, "augment": ["coun-cl"], "base": {"augment": [{"params": {"lambda": 2}}]}}
    assert "base.augment.0.name: Field required" in refused(capsys, spec, *TINY)  # was dropped without a word
    spec = {**ONE_CELL, "params": {"ft": {"augment": "coun-cl"}}}
    assert "params.ft.augment: Input should be a valid list" in refused(capsys, spec, *TINY)


def test_an_augmenter_without_a_name_in_a_params_file_is_refused(capsys, tmp_path):
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump({"params": {"ft+coun-cl": {"augment": [{"params": {}}]}}}))
    err = refused(capsys, None, "--methods", "ft", "--augment", "coun-cl", "--params", "tuned.yaml", *TINY)
    assert "params.ft+coun-cl.augment.0.name: Field required" in err


def test_merge_keeps_an_unnamed_augmenter_apart_for_the_check_to_name():
    merged = merge({"augment": ["coun-cl"]}, {"augment": [{"params": {"lambda": 2}}, {"name": "coun-cl", "params": {"tau": 1}}]})
    assert merged["augment"] == [{"name": "coun-cl", "params": {"tau": 1}}, {"params": {"lambda": 2}}]
    assert merge({"augment": "none"}, {"augment": ["coun-cl"]})["augment"] == [{"name": "coun-cl"}]


# --------------------------------------------------------------------------- unknown names


def test_unknown_names_in_exclude_and_params_are_refused_with_close_matches(capsys):
    err = refused(capsys, {"methods": "all", "exclude": ["retrian"]}, *TINY)
    assert "exclude: unknown method 'retrian'; did you mean 'retrain'?" in err
    err = refused(capsys, {**ONE_CELL, "params": {"ft+coun-c": {"method": {"params": {"lr": 0.1}}}}}, *TINY)
    assert "params.ft+coun-c: 'ft+coun-c' is no method or variant; did you mean 'ft+coun-cl'" in err
    err = refused(capsys, {**ONE_CELL, "params": {"nope": {}}}, *TINY)
    assert "params.nope: 'nope' is no method or variant" in err


def test_params_for_variants_a_grid_leaves_out_are_accepted(registry):
    """One spec serves many grids: the example carries params for every variant and runs with --methods ft,neggrad."""
    with open(__file__.rsplit("/tests/", 1)[0] + "/examples/bench/fashion-mnist-memorising.yaml") as file:
        raw = yaml.safe_load(file)
    spec = read_bench_spec({**raw, "methods": ["ft", "neggrad"], "seeds": [0], "scenarios": ["random:0.1"]})
    assert {c.variant for c in expand(spec, registry).cells} == {"ft", "ft+coun-cl", "neggrad", "neggrad+coun-cl"}
    spec = read_bench_spec({**ONE_CELL, "params": {"neggrad++coun-cl": {}, "ssd+coun-cl": {}}})
    assert len(expand(spec, registry).cells) == 1  # neggrad+ wrapped; ssd+coun-cl is a name, though it cannot exist


# --------------------------------------------------------------------------- seeds, and grids without cells


def test_duplicate_seeds_are_refused_by_bench_and_tune(capsys, tmp_path):
    assert "seeds [0, 0] repeat 0. Give each seed once." in refused(capsys, {**ONE_CELL, "seeds": [0, 0]}, *TINY)
    assert "seeds [0, 1, 0] repeat 0" in refused(capsys, None, "--methods", "ft", "--seeds", "0,1,0", *TINY)
    err = refused(capsys, None, "--method", "ft", "--seeds", "1,1", "--trials", "1", *RUN_TINY, command="tune")
    assert "seeds [1, 1] repeat 1" in err and not list(tmp_path.glob("tune/*/tuned.yaml"))


def test_tune_refuses_a_bench_spec_without_cells_as_bench_does(capsys, tmp_path):
    spec = {"methods": [], "augment": ["none"], "scenarios": ["random:0.1"], "seeds": 1}
    assert "the grid has no cells" in refused(capsys, spec, *TINY)
    err = refused(capsys, spec, "--out", "tuned", "--set", "base.train.epochs=1", command="tune")
    assert "the grid has no cells" in err and not (tmp_path / "tuned" / "tuned.yaml").exists()


def test_a_grid_that_measures_nothing_is_refused(capsys):
    """Its records would hold no metrics, which the store takes for damage."""
    assert "base.evaluate is empty" in refused(capsys, {**ONE_CELL, "base": {"evaluate": []}}, *TINY)


# --------------------------------------------------------------------------- records edited by hand


@pytest.mark.parametrize("edit, problem", [
    ({"metrics": {"RA": "abc"}}, "metrics.RA: Input should be a valid number"),
    ({"metrics": {"RA": float("nan")}}, "metrics.RA: Input should be a finite number"),
    ({"metrics": {}}, "metrics: Dictionary should have at least 1 item"),
    ({"kind": "retrain", "variant": "Retrain", "metrics": {}}, "metrics: Dictionary should have at least 1 item"),
    ({"forget_count": "many"}, "forget_count: Input should be a valid integer"),
    ({"seed": True}, "seed: Input should be a valid integer"),
    ({"kind": "other"}, "kind: Input should be 'retrain', 'original' or 'unlearned'"),
    ({"augment": "coun-cl"}, "augment: Input should be a valid list"),
], ids=["text", "nan", "empty", "reference-empty", "count-text", "seed-bool", "kind", "augment"])
def test_a_record_the_tables_cannot_read_is_reported_set_aside_and_computed_again(tmp_path, edit, problem):
    store = CellStore(tmp_path / "bench")
    path = put_cell(store, "unlearned-a")
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.warns(StorageWarning) as caught:
        assert store.get("unlearned-a") is None
    assert len(caught) == 1 and str(path) in str(caught[0].message) and problem in str(caught[0].message)
    assert (store.folder / "unlearned-a.json.damaged").is_file() and not path.exists()


def test_a_metric_that_is_not_a_number_is_stored_as_null_and_read_back(tmp_path):
    store = CellStore(tmp_path / "bench")
    store.put("unlearned-a", {**RECORD, "metrics": {"RA": float("nan"), "UA": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.get("unlearned-a")["metrics"] == {"RA": None, "UA": 1}


@pytest.mark.slow
def test_a_resumed_bench_recomputes_records_edited_by_hand(capsys, tmp_path):
    argv = ["bench", "--methods", "ft", "--augment", "none", "--scenarios", "random:0.1", "--seeds", "1",
            "--out", "grid", *TINY]
    code, _, err = unlearn(capsys, *argv)
    assert code == 0, err
    cells = tmp_path / "grid" / "cells"
    records = {r["kind"]: (path, r) for path in cells.glob("*.json") for r in [json.loads(path.read_text())]}
    edits = {"retrain": {"metrics": {}}, "original": {"forget_count": "many"}, "unlearned": {"metrics": {"RA": "abc"}}}
    for kind, edit in edits.items():
        path, record = records[kind]
        path.write_text(json.dumps({**record, **edit}))
    code, _, err = unlearn(capsys, *argv)
    assert code == 0 and "Traceback" not in err, err
    assert "1 of 1 cells finished (1 now" in err
    for path, record in records.values():
        assert path.name in err.replace("\n", "") and (cells / f"{path.name}.damaged").is_file()
        again = json.loads(path.read_text())["metrics"]
        assert again.pop("seconds") > 0 and again == {k: v for k, v in record["metrics"].items() if k != "seconds"}
    table = json.loads((tmp_path / "grid" / "results.json").read_text())["tables"]["random:0.1"]
    assert set(table) == {"Retrain", "Original", "ft"} and table["ft"]["avg_gap_of_means"] is not None
