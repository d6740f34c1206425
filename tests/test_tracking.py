"""Trackers (a plugin kind: selected with --track or `track:`, isolated) and the event log every bundle holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.test_cli import unlearn
from unlearnkit import Tracker, TrainParams, hookimpl, plugins
from unlearnkit.engine.run import fit
from unlearnkit.engine.cost import CostMeter
from unlearnkit.engine.train import Logged
from unlearnkit.testing import tiny_data, tiny_model, tiny_run
from unlearnkit.tracking import Tracking, event_metrics, flatten

TINY = ["--data", "digits", "--set", "data.train_subset=240", "--set", "data.test_subset=80", "--set", "train.epochs=2",
        "--set", "method.params.epochs=2", "--device", "cpu", "--quiet"]

#: what the recording tracker saw, call by call
CALLS: list[tuple] = []


class Recording(Tracker):
    """Records every call."""

    name = "recording"

    def prepare(self, folder):
        CALLS.append(("prepare", Path(folder)))
        return "recording: in CALLS"

    def start(self, name, parent, tags):
        CALLS.append(("start", name, parent, dict(tags)))

    def log_params(self, params):
        CALLS.append(("params", dict(params)))

    def log_metrics(self, metrics, step):
        CALLS.append(("metrics", dict(metrics), step))

    def log_artifact(self, path):
        CALLS.append(("artifact", Path(path).name))

    def end(self, status):
        CALLS.append(("end", status))


class Broken(Recording):
    """Raises once the run trains."""

    name = "broken"

    def prepare(self, folder):
        return None

    def log_metrics(self, metrics, step):
        raise RuntimeError("the tracking server went away")


class Exits(Recording):
    """Exits as the run starts."""

    name = "exits"

    def prepare(self, folder):
        return None

    def start(self, name, parent, tags):
        sys.exit(7)


@hookimpl
def register_trackers(register):
    register(Recording)
    register(Broken)
    register(Exits)


@pytest.fixture
def acme(monkeypatch, in_tmp_path):
    """The installed plugins and this module's trackers, as plugin 'acme-track'."""
    registry = plugins.discover(modules=[("acme-track", sys.modules[__name__])], env={})
    monkeypatch.setattr(plugins, "_installed", registry)
    CALLS.clear()
    return registry


def bundle_events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- the kind, chosen and refused


def test_trackers_are_a_plugin_kind_the_core_registers_as_any_plugin(capsys):
    code, out, _ = unlearn(capsys, "plugins", "--json")
    rows = {(r["name"], r["kind"]): r for r in json.loads(out)}
    assert rows[("mlflow", "tracker")]["distribution"] == "unlearnkit"
    assert rows[("tensorboard", "tracker")]["status"] == "loaded"


def test_an_unknown_tracker_is_refused_before_training_with_close_matches(capsys, in_tmp_path):
    code, _, err = unlearn(capsys, "run", "--track", "mlfow", "--out", "b", *TINY)
    assert code == 2 and "unknown tracker 'mlfow'; did you mean 'mlflow'?" in err and "Traceback" not in err
    assert not Path("b").exists()
    Path("spec.yaml").write_text("track: [tensorbord]\n")
    code, _, err = unlearn(capsys, "validate", "spec.yaml")
    assert code == 2 and "unknown tracker 'tensorbord'; did you mean 'tensorboard'?" in err
    Path("spec.yaml").write_text("track: [{name: mlflow, params: {experimnt: x}}]\n")
    code, _, err = unlearn(capsys, "validate", "spec.yaml")
    assert code == 2 and "track.0.params.experimnt: Extra inputs are not permitted" in err


def test_a_track_uri_without_a_tracker_is_refused(capsys, in_tmp_path):
    code, _, err = unlearn(capsys, "run", "--track-uri", "sqlite:///x.db", *TINY)
    assert code == 2 and "--track-uri says where trackers write, and no tracker is chosen" in err


def test_track_flags_replace_the_specs_trackers_and_give_each_the_uri(acme, capsys):
    Path("spec.yaml").write_text("track: [tensorboard]\n")
    code, out, err = unlearn(capsys, "validate", "spec.yaml", "--track", "recording", "--track-uri", "somewhere")
    assert code == 0, err
    from unlearnkit.run_options import RunOptions

    resolved = RunOptions(Path("spec.yaml"), track_uri="elsewhere").resolve()
    assert [(t.name, t.params.uri) for t in resolved.trackers] == [("tensorboard", "elsewhere")]


# --------------------------------------------------------------------------- a run, followed


def test_a_tracker_follows_a_run_from_params_to_files_and_sees_its_event_log(acme, capsys):
    code, out, err = unlearn(capsys, "run", "--method", "ft", "--track", "recording", "--out", "runs/b", *TINY)
    assert code == 0, err
    assert "recording: in CALLS" in out
    kinds = [call[0] for call in CALLS]
    assert kinds[:3] == ["prepare", "start", "params"] and kinds[-1] == "end" and CALLS[-1] == ("end", "finished")
    assert CALLS[0][1] == Path("runs")  # trackers without a uri write beside the bundle
    assert CALLS[1][1:3] == ("b", None) and CALLS[1][3]["method"] == "ft" and CALLS[1][3]["seed"] == "0"
    assert CALLS[2][1]["method.name"] == "ft" and CALLS[2][1]["train.epochs"] == 2
    assert {c[1] for c in CALLS if c[0] == "artifact"} == {"events.jsonl", "forget_indices.txt", "results.json",
                                                          "results.md", "unlearned.safetensors"}
    events = bundle_events(Path("runs/b"))
    assert [c[1:] for c in CALLS if c[0] == "metrics"] == [event_metrics(e) for e in events if event_metrics(e)[0]]
    results = json.loads(Path("runs/b/results.json").read_text())
    unlearned = next(c for c in CALLS if c[0] == "metrics" and "unlearned/RA" in c[1])
    assert unlearned[1]["unlearned/RA"] == results["metrics"]["unlearned"]["RA"]


@pytest.mark.parametrize("tracker, reason", [("broken", "RuntimeError: the tracking server went away"),
                                             ("exits", "SystemExit: 7")])
def test_a_tracker_that_fails_is_a_warning_naming_it_and_the_run_keeps_its_bundle(acme, capsys, tracker, reason):
    code, out, err = unlearn(capsys, "run", "--method", "ft", "--track", tracker, "--track", "recording", "--out", "b",
                             *TINY)
    assert code == 0, err
    assert err.count("warning:") == 1 and "Traceback" not in err
    assert f"warning: tracker '{tracker}' of plugin 'acme-track' failed: {reason}; it follows nothing more" in err
    assert json.loads(Path("b/results.json").read_text())["metrics"]["unlearned"]["RA"] > 0
    assert CALLS[-1] == ("end", "finished")  # the other tracker followed the run to its end


def test_a_run_that_fails_ends_its_tracked_run_as_failed(acme, capsys):
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--track", "recording", "--set", "method.params.lr=1e30",
                           "--out", "b", *TINY)
    assert code == 2 and "NaN or infinite" in err
    assert CALLS[-1] == ("end", "failed") and not Path("b").exists()


def test_the_fan_out_reaches_every_tracker_and_flattens_settings():
    seen: list[str] = []
    tracking = Tracking([Recording(), Broken()], warn=seen.append)
    CALLS.clear()
    with tracking.run("r", tags={"seed": 0, "none": None}):
        tracking.params({"method": {"name": "ft", "params": {"lr": 0.1}}, "augment": [{"name": "coun-cl"}], "x": None})
        tracking.event({"event": "epoch", "model": "unlearned", "epoch": 1, "step": 4, "lr": 0.1, "terms": {"loss": 0.5}})
    assert CALLS.count(("start", "r", None, {"seed": "0"})) == 2
    assert ("params", {"method.name": "ft", "method.params.lr": 0.1, "augment.0.name": "coun-cl"}) in CALLS
    assert ("metrics", {"unlearned/loss": 0.5, "unlearned/lr": 0.1}, 1) in CALLS
    assert len(seen) == 1 and "tracker 'broken'" in seen[0]
    assert flatten({"a": [1, {"b": None}]}) == {"a.0": 1}


def test_event_metrics_name_each_model_and_step():
    assert event_metrics({"event": "steps", "model": "unlearned", "forget_step": 2, "epoch": 1, "step": 7, "lr": 0.1,
                          "terms": {"coun-cl/cl": 3.0}}) == ({"step2/unlearned/steps/coun-cl/cl": 3.0,
                                                              "step2/unlearned/steps/lr": 0.1}, 7)
    assert event_metrics({"event": "evaluation", "model": "retrain", "metrics": {"RA": 99.0, "RMIA": None,
                                                                                 "x": float("nan")}}) == ({"retrain/RA": 99.0}, 0)


# --------------------------------------------------------------------------- the event log


def test_the_logged_loss_terms_are_the_trainers_means_per_epoch_and_per_log_every_steps():
    data = tiny_data()
    model = tiny_model()
    seen: list[dict[str, float]] = []

    def known(model, step):
        """Cross-entropy and a known multiple of it: what the trainer computed, read here step by step."""
        ce = F.cross_entropy(model(step.retain.x), step.retain.y)
        seen.append({"ce": ce.item(), "half": 0.5 * ce.item()})
        return {"ce": ce, "half": 0.5 * ce}

    logged: list[Logged] = []
    params = TrainParams(epochs=3, lr=0.05, batch_size=8)  # 30 retain samples: 4 steps an epoch
    fit(model, data, "retain", known, params, generator=torch.Generator().manual_seed(0), cost=CostMeter(1),
        on_log=logged.append, log_every=3)
    assert len(seen) == 12
    epochs = [r for r in logged if r.epoch_end]
    windows = [r for r in logged if not r.epoch_end]
    assert [(r.epoch, r.step) for r in epochs] == [(1, 4), (2, 8), (3, 12)]
    assert [(r.epoch, r.step) for r in windows] == [(1, 3), (2, 6), (3, 9), (3, 12)]
    for record, steps in [*zip(epochs, (seen[0:4], seen[4:8], seen[8:12])), *zip(windows, (seen[0:3], seen[3:6],
                                                                                           seen[6:9], seen[9:12]))]:
        for term in ("ce", "half"):
            assert record.terms[term] == pytest.approx(sum(s[term] for s in steps) / len(steps), rel=1e-6)
    assert [r.lr for r in epochs] == [0.05] * 3


def test_a_methods_second_training_continues_the_epoch_count():
    from unlearnkit.engine.train import retain_cross_entropy

    logged: list[Logged] = []
    run = tiny_run(type("Two", (), {"uses_forget": True, "name": "two"}))
    run.on_log = logged.append
    for _ in range(2):
        run.train(retain_cross_entropy, TrainParams(epochs=2, lr=0.01, batch_size=8))
    assert [(r.epoch, r.step) for r in logged] == [(1, 4), (2, 8), (3, 12), (4, 16)]


def test_a_bundle_holds_every_trainings_terms_and_each_evaluation_and_plot_draws_them(capsys, in_tmp_path):
    code, out, err = unlearn(capsys, "run", "--method", "ft", "--augment", "coun-cl", "--set",
                             "augment.0.params.batch_size=16", "--out", "b", *TINY)
    assert code == 0, err
    events = bundle_events(Path("b"))
    epochs = {(e["model"], e["epoch"]): e for e in events if e["event"] == "epoch"}
    assert set(epochs) == {(m, n) for m in ("original", "retrain", "unlearned") for n in (1, 2)}
    assert set(epochs[("unlearned", 2)]["terms"]) == {"loss", "coun-cl/cl"}  # as the trainer names them
    assert set(epochs[("original", 1)]["terms"]) == {"loss"} and epochs[("original", 1)]["lr"] == 0.1
    evaluations = {e["model"]: e["metrics"] for e in events if e["event"] == "evaluation"}
    results = json.loads(Path("b/results.json").read_text())
    assert evaluations == results["metrics"] and results["events"] == "events.jsonl"

    code, out, err = unlearn(capsys, "plot", "b", "--projection", "pca", "--samples", "60", "--quiet")
    assert code == 0, err
    assert "b/plots/curves.png" in out and Path("b/plots/curves.png").stat().st_size > 10_000
    Path("b/events.jsonl").unlink()  # a bundle from before the event log: its pictures, no curves
    results.pop("events")
    Path("b/results.json").write_text(json.dumps(results))
    Path("b/plots/curves.png").unlink()
    code, out, err = unlearn(capsys, "plot", "b", "--projection", "pca", "--samples", "60", "--quiet")
    assert code == 0, err
    assert "pca.png" in out and not Path("b/plots/curves.png").exists()


def test_sequential_forgetting_logs_each_steps_models_apart(capsys, in_tmp_path):
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--forget", "sequential:0.1x2", "--set", "log_every=1",
                           "--out", "b", *TINY)
    assert code == 0, err
    events = bundle_events(Path("b"))
    models = {(e["model"], e.get("forget_step")) for e in events}
    assert models == {("original", None), ("retrain", 1), ("retrain", 2), ("unlearned", 1), ("unlearned", 2),
                      ("original", 1), ("original", 2)}
    steps = [e["step"] for e in events if e["event"] == "steps" and e["model"] == "original"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 2  # every step, as asked


def test_the_tracker_in_the_plugin_guide_follows_a_run(tmp_path):
    import re

    guide = (Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md").read_text()
    source = re.search(r"## A tracker\n.*?```python\n(.*?)```", guide, re.S).group(1)
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the guide's own example
    tracker = namespace["JsonLines"]()
    tracking = Tracking([tracker], warn=pytest.fail)
    tracking.prepare(tmp_path)
    with tracking.run("b"):
        tracking.event({"event": "evaluation", "model": "unlearned", "metrics": {"RA": 99.5}})
    assert tracking.where == [f"jsonl: {tmp_path / 'metrics.jsonl'}"]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"run": "b", "step": 0, "unlearned/RA": 99.5}
