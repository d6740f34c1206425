"""The first-party trackers against a real local MLflow store and a real TensorBoard folder, read back."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

from tests.test_cli import unlearn
from tests.test_tracking import TINY, acme, bundle_events  # noqa: F401 - acme is a fixture

BENCH = ["--methods", "ft,neggrad", "--augment", "none", "--scenarios", "random:0.1", "--seeds", "1", "--data", "digits",
         "--set", "base.data.train_subset=240", "--set", "base.data.test_subset=80", "--set", "base.train.epochs=2",
         "--set", "params.ft.method.params.epochs=2", "--set", "params.neggrad.method.params.epochs=2",
         "--device", "cpu", "--quiet", "--out", "grid"]


def mlflow_runs(uri: str) -> dict:
    """Every run of the store's unlearnkit experiment, by name, with its metric histories and files."""
    from mlflow.tracking import MlflowClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("unlearnkit")
        found = {}
        for run in client.search_runs([experiment.experiment_id]):
            found[run.info.run_name] = {
                "id": run.info.run_id, "status": run.info.status, "tags": run.data.tags, "params": run.data.params,
                "metrics": run.data.metrics, "files": {f.path for f in client.list_artifacts(run.info.run_id)},
                "loss": [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "unlearned/loss")],
            }
    return found


def epoch_losses(events: list[dict], model: str = "unlearned") -> list[tuple[int, float]]:
    return [(e["epoch"], e["terms"]["loss"]) for e in events if e["event"] == "epoch" and e["model"] == model]


def same_curve(logged: list[tuple[int, float]], events: list[tuple[int, float]]) -> bool:
    """The same steps, and values equal to float32 rounding."""
    return [s for s, _ in logged] == [s for s, _ in events] and [v for _, v in logged] == pytest.approx(
        [v for _, v in events], rel=1e-6)


def test_mlflow_logs_a_run_into_a_store_beside_the_bundle_and_says_how_to_open_it(capsys, in_tmp_path):
    code, out, err = unlearn(capsys, "run", "--method", "ft", "--track", "mlflow", "--out", "runs/b", *TINY)
    assert code == 0, err
    store = f"sqlite:///{in_tmp_path.resolve() / 'runs' / 'mlflow.db'}"
    assert f"mlflow: mlflow ui --backend-store-uri {store}" in out
    assert "warning" not in err and "INFO" not in err
    run = mlflow_runs(store)["b"]
    results = json.loads(Path("runs/b/results.json").read_text())
    assert run["status"] == "FINISHED" and run["tags"]["method"] == "ft" and "mlflow.parentRunId" not in run["tags"]
    assert run["params"]["method.name"] == "ft" and run["params"]["seed"] == "0"
    for model in ("original", "retrain", "unlearned"):
        assert run["metrics"][f"{model}/RA"] == pytest.approx(results["metrics"][model]["RA"])
    assert same_curve(run["loss"], epoch_losses(bundle_events(Path("runs/b"))))
    assert run["files"] == {"events.jsonl", "forget_indices.txt", "results.json", "results.md", "unlearned.safetensors"}
    assert (in_tmp_path / "runs" / "mlartifacts").is_dir()


def test_a_bench_is_one_mlflow_run_with_a_child_per_cell_holding_its_records_metrics(capsys, in_tmp_path):
    code, out, err = unlearn(capsys, "bench", *BENCH, "--track", "mlflow")
    assert code == 0, err
    runs = mlflow_runs(f"sqlite:///{(in_tmp_path / 'grid' / 'mlflow.db').resolve()}")
    parent = runs.pop("bench grid")
    assert parent["status"] == "FINISHED" and {"results.md", "results.csv", "results.json"} <= parent["files"]
    assert parent["params"]["methods.0"] == "ft"
    records = [json.loads(p.read_text()) for p in Path("grid/cells").glob("*.json")]
    cells = {r["variant"]: r for r in records if r["kind"] == "unlearned"}
    assert set(runs) == {"ft, random 10%, seed 0", "neggrad, random 10%, seed 0"}
    for name, child in runs.items():
        record = cells[name.partition(",")[0]]
        assert child["tags"]["mlflow.parentRunId"] == parent["id"] and child["tags"]["scenario"] == "random:0.1"
        assert child["params"]["method"] == record["method"] and child["params"]["params.method.epochs"] == "2"
        measured = {k: v for k, v in record["metrics"].items() if v is not None}
        assert measured == pytest.approx({k: child["metrics"][f"unlearned/{k}"] for k in measured})
        # each loss term as the method names it, at each epoch
        assert {"ft": "unlearned/loss", "neggrad": "unlearned/retain_ce"}[record["method"]] in child["metrics"]
    assert [step for step, _ in runs["ft, random 10%, seed 0"]["loss"]] == [1, 2]

    code, out, err = unlearn(capsys, "bench", *BENCH, "--track", "mlflow")  # resumed: nothing computed, nothing more
    assert code == 0 and "0 now" in err
    assert set(mlflow_runs(f"sqlite:///{(in_tmp_path / 'grid' / 'mlflow.db').resolve()}")) == {"bench grid", *runs}


def test_a_tracker_failing_during_a_bench_is_one_warning_and_the_bench_keeps_its_tables(acme, capsys):  # noqa: F811
    code, out, err = unlearn(capsys, "bench", *BENCH, "--track", "broken")
    assert code == 0, err
    assert err.count("warning: tracker 'broken' of plugin 'acme-track' failed: RuntimeError: the tracking server") == 1
    assert "| ft |" in Path("grid/results.md").read_text()


def test_tensorboard_writes_each_runs_scalars_and_text(capsys, in_tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, out, err = unlearn(capsys, "run", "--method", "ft", "--track", "tensorboard", "--out", "runs/b", *TINY)
    assert code == 0, err
    assert "tensorboard: tensorboard --logdir runs/tensorboard" in out
    events = EventAccumulator("runs/tensorboard/b").Reload()
    loss = [(s.step, s.value) for s in events.Scalars("unlearned/loss")]
    assert same_curve(loss, epoch_losses(bundle_events(Path("runs/b"))))
    results = json.loads(Path("runs/b/results.json").read_text())
    assert events.Scalars("retrain/TA")[0].value == pytest.approx(results["metrics"]["retrain"]["TA"])
    assert {"params/text_summary", "results.md/text_summary", "status/text_summary"} <= set(events.Tags()["tensors"])


def test_a_bench_in_tensorboard_is_a_folder_per_cell_under_the_benchs(capsys, in_tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, out, err = unlearn(capsys, "bench", *BENCH, "--track", "tensorboard", "--track-uri", "tb")
    assert code == 0, err
    assert "tensorboard: tensorboard --logdir tb" in out
    assert sorted(p.name for p in Path("tb/bench_grid").iterdir() if p.is_dir()) == ["ft_random_10_seed_0",
                                                                                     "neggrad_random_10_seed_0"]
    record = next(r for r in map(json.loads, (p.read_text() for p in Path("grid/cells").glob("*.json")))
                  if r["variant"] == "ft")
    cell = EventAccumulator("tb/bench_grid/ft_random_10_seed_0").Reload()
    assert cell.Scalars("unlearned/avg_gap")[0].value == pytest.approx(record["metrics"]["avg_gap"], rel=1e-6)


def test_a_tuning_is_one_mlflow_run_with_a_child_per_trial(capsys, in_tmp_path):
    from tests.test_tune import FT

    code, out, err = unlearn(capsys, "tune", *FT, "--trials", "2", "--out", "tuned", "--track", "mlflow")
    assert code == 0, err
    runs = mlflow_runs(f"sqlite:///{(in_tmp_path / 'tuned' / 'mlflow.db').resolve()}")
    parent = runs.pop("tune tuned")
    assert parent["status"] == "FINISHED" and {"results.md", "tuned.yaml"} <= parent["files"]
    assert sorted(child["tags"]["trial"] for child in runs.values()) == ["0", "1"]
    assert all(child["tags"]["mlflow.parentRunId"] == parent["id"] and "unlearned/avg_gap" in child["metrics"]
               for child in runs.values())


# --------------------------------------------------------------------------- bad input, before training


@pytest.mark.parametrize("tracker, module", [("mlflow", "mlflow"), ("tensorboard", "tensorboard")])
def test_a_tracker_whose_extra_is_missing_says_how_to_install_it(capsys, in_tmp_path, monkeypatch, tracker, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    code, _, err = unlearn(capsys, "run", "--track", tracker, "--out", "runs/b", *TINY)
    assert code == 2 and "Traceback" not in err
    assert f"the {tracker} tracker needs the {module} package, which is not installed" in err
    assert f"pip install 'unlearnkit[{tracker}]'" in err
    assert not Path("runs").exists()


def test_an_unreachable_track_uri_is_refused_before_training(capsys, in_tmp_path):
    code, _, err = unlearn(capsys, "run", "--track", "mlflow", "--track-uri", "http://127.0.0.1:9", "--out", "b", *TINY)
    assert code == 2 and "cannot reach the MLflow tracking server at http://127.0.0.1:9" in err
    Path("a-file").write_text("")
    for tracker, uri in (("mlflow", "sqlite:///a-file/store/mlflow.db"), ("tensorboard", "a-file/tb")):
        code, _, err = unlearn(capsys, "run", "--track", tracker, "--track-uri", uri, "--out", "b", *TINY)
        assert code == 2 and "a-file is a file, not a folder" in err, err
    code, _, err = unlearn(capsys, "bench", *BENCH, "--track", "mlflow", "--track-uri", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the MLflow tracking server" in err
    from tests.test_tune import FT

    code, _, err = unlearn(capsys, "tune", *FT, "--track", "mlflow", "--track-uri", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the MLflow tracking server" in err
    assert sorted(p.name for p in in_tmp_path.iterdir() if p.name != "cache") == ["a-file"]  # nothing written
