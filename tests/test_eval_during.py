"""Measuring the unlearned model during its training (`--eval-every K`) and keeping its best weights (`--keep`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import unlearnkit as uk
from tests.test_cli import unlearn
from tests.test_own_model_and_data import Blobs
from tests.test_tracking import TINY, bundle_events
from unlearnkit import Evaluator, hookimpl, plugins
from unlearnkit.errors import UnlearnkitError
from unlearnkit.tracking import event_metrics

#: ft for 3 epochs over the 216 retain samples of TINY's 240 (one step of 128 and one of 88 an epoch)
EPOCHS = ["--set", "method.params.epochs=3"]


def results(folder: str) -> dict:
    return json.loads((Path(folder) / "results.json").read_text())


def weights(folder: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "unlearned.safetensors"))


def measured(folder: str) -> dict[int, dict]:
    """The measurements made during training, by epoch (the last of an epoch measured twice)."""
    return {e["epoch"]: e["metrics"] for e in bundle_events(Path(folder)) if e["event"] == "evaluation" and "epoch" in e}


# --------------------------------------------------------------------------- measuring changes nothing it measures


def test_measuring_every_epoch_leaves_the_methods_weights_bit_identical_and_its_cost_apart(capsys, in_tmp_path):
    for out, extra in (("plain", []), ("measured", ["--eval-every", "1"])):
        code, _, err = unlearn(capsys, "run", "--method", "ft", "--augment", "coun-cl", "--set",
                               "augment.0.params.batch_size=16", "--out", out, *TINY, *EPOCHS, *extra)
        assert code == 0, err
    plain, during = weights("plain"), weights("measured")
    assert plain.keys() == during.keys() and all(torch.equal(plain[k], during[k]) for k in plain)
    before, after = results("plain")["metrics"]["unlearned"], results("measured")["metrics"]["unlearned"]
    assert after["flops"] == before["flops"] and "eval_flops" not in before
    # 3 measurements of the 216 retain, 24 forget and 80 test samples, one forward each (the Original trained
    # 2 epochs of all 240 training samples, 3 forwards each)
    per_forward = results("plain")["metrics"]["original"]["flops"] / (2 * 240 * 3)
    assert after["eval_flops"] == pytest.approx(3 * (216 + 24 + 80) * per_forward)
    assert "kept_epoch" not in after  # nothing was kept: no keep asked for
    # the last epoch's measurement is the run's final one, but for what the model had cost
    assert set(measured("measured")) == {1, 2, 3}
    cost = ("flops", "seconds", "eval_flops")
    assert {k: v for k, v in measured("measured")[3].items() if k not in cost} == \
        {k: v for k, v in after.items() if k not in cost}
    assert measured("measured")[3]["flops"] == after["flops"]


def test_a_users_datasets_read_at_random_are_measured_without_moving_the_methods_draws(tmp_path):
    """Reading a Dataset whose transforms draw from torch's generator (as the measurements do, with no test-time
    set given) leaves the training that follows drawing the same numbers."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 4))
    train, test = Blobs(48, 0, augment=True), Blobs(16, 1, augment=False)
    runs = [uk.unlearn(network, train, forget=list(range(6)), test_set=test, method="ft", device="cpu",
                       params={"method": {"epochs": 2, "batch_size": 16}}, eval_every=every) for every in (None, 1)]
    plain, during = (r.model.state_dict() for r in runs)
    assert all(torch.equal(plain[k], during[k]) for k in plain)
    assert [e["epoch"] for e in runs[1].run.events if e["event"] == "evaluation" and "epoch" in e] == [1, 2]
    assert runs[1].metrics["eval_flops"] > 0 and runs[1].metrics["flops"] == runs[0].metrics["flops"]


# --------------------------------------------------------------------------- keeping the best


class Scripted(Evaluator):
    """A metric known per epoch: each new set of weights it sees gets the next score of SCORES, the same weights
    again the score they got (so the final measurement of kept weights repeats theirs)."""

    name = "scripted"
    metrics = ("score",)
    seen: list[tuple[dict[str, torch.Tensor], float]] = []

    def evaluate(self, subject, reference):
        if subject.name != "unlearned":
            return {"score": 0.0}
        state = {k: v.detach().clone() for k, v in subject.model.state_dict().items()}
        for earlier, score in self.seen:
            if all(torch.equal(earlier[k], state[k]) for k in state):
                return {"score": score}
        self.seen.append((state, SCORES[len(self.seen)]))
        return {"score": self.seen[-1][1]}


SCORES = [3.0, 9.0, 5.0]  # epochs 1, 2, 3: the best by max is epoch 2, by min epoch 1


@hookimpl
def register_evaluators(register):
    register(Scripted)


@pytest.fixture
def scripted(monkeypatch, in_tmp_path):
    registry = plugins.discover(modules=[("acme-eval", sys.modules[__name__])], env={})
    monkeypatch.setattr(plugins, "_installed", registry)
    Scripted.seen = []
    return registry


@pytest.mark.parametrize("keep, epoch", [("best:max:score", 2), ("best:min:score", 1)])
def test_keep_returns_the_weights_of_the_best_measured_epoch(scripted, capsys, keep, epoch):
    code, out, err = unlearn(capsys, "run", "--method", "ft", "--set", "evaluate=[accuracy, scripted, cost]",
                             "--eval-every", "1", "--keep", keep, "--out", "b", *TINY, *EPOCHS)
    assert code == 0, err
    metrics = results("b")["metrics"]["unlearned"]
    assert metrics["kept_epoch"] == epoch and metrics["score"] == SCORES[epoch - 1]
    assert "Kept epoch" in out and "Eval FLOPs" in out
    kept, at_epoch = weights("b"), Scripted.seen[epoch - 1][0]
    assert all(torch.equal(kept[k], at_epoch[k]) for k in kept)
    assert {n: m["score"] for n, m in measured("b").items()} == {1: 3.0, 2: 9.0, 3: 5.0}
    assert {k: v for k, v in measured("b")[epoch].items() if k not in ("flops", "seconds")} == \
        {k: v for k, v in metrics.items() if k not in ("flops", "seconds", "eval_flops", "kept_epoch")}


def test_keep_leaves_the_final_model_when_it_is_best_and_ties_go_to_it(scripted, capsys):
    SCORES[:] = [3.0, 1.0, 3.0]
    try:
        code, _, err = unlearn(capsys, "run", "--method", "ft", "--set", "evaluate=[accuracy, scripted, cost]",
                               "--eval-every", "1", "--keep", "best:max:score", "--out", "b", *TINY, *EPOCHS)
    finally:
        SCORES[:] = [3.0, 9.0, 5.0]
    assert code == 0, err
    assert results("b")["metrics"]["unlearned"]["kept_epoch"] == 3
    final = Scripted.seen[2][0]
    assert all(torch.equal(v, final[k]) for k, v in weights("b").items())


def test_keep_measures_the_final_model_when_its_last_epoch_was_not(scripted, capsys):
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--set", "evaluate=[accuracy, scripted, cost]",
                           "--eval-every", "2", "--keep", "best:min:score", "--out", "b", *TINY, *EPOCHS)
    assert code == 0, err
    assert {n: m["score"] for n, m in measured("b").items()} == {2: 3.0, 3: 9.0}  # epoch 2, then the final model
    assert results("b")["metrics"]["unlearned"]["kept_epoch"] == 2


def test_keep_by_the_avg_gap_to_retrain_when_the_method_drifts_away(capsys, in_tmp_path):
    """ft at a learning rate that wrecks the model: its first epoch is the closest to Retrain."""
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--set", "method.params.lr=0.5", "--eval-every", "1",
                           "--keep", "best:avg_gap", "--out", "b", *TINY, *EPOCHS)
    assert code == 0, err
    gaps = {n: m["avg_gap"] for n, m in measured("b").items()}
    metrics = results("b")["metrics"]["unlearned"]
    best = min(gaps, key=lambda n: (gaps[n], -n))
    assert metrics["kept_epoch"] == best and metrics["avg_gap"] == pytest.approx(gaps[best])
    assert metrics["avg_gap"] <= min(gaps.values())


# --------------------------------------------------------------------------- refused before training, or noted


@pytest.mark.parametrize("flags, message", [
    (["--keep", "best:avg_gap"], "keep: best:avg_gap chooses among the epochs eval_every measures, and it is not set"),
    (["--eval-every", "1", "--keep", "best:max:accuracy"], "keep: no evaluator of this run produces 'accuracy'"),
    (["--eval-every", "1", "--keep", "best:avg_gap", "--no-retrain"],
     "keep: 'avg_gap' (avg-gap) compares with Retrain, and this run trains none"),
    (["--eval-every", "1", "--keep", "best:TA"], "keep: Value error, use best:avg_gap (lower is better), best:min:METRIC"),
    (["--eval-every", "0"], "--eval-every"),
])
def test_a_keep_that_cannot_be_kept_is_refused_before_training(capsys, in_tmp_path, flags, message):
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--out", "b", *TINY, *flags)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err
    assert not Path("b").exists()


def test_the_python_api_refuses_a_gap_without_retrain(tmp_path):
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    with pytest.raises(UnlearnkitError, match="compares with Retrain, and this run trains none"):
        uk.unlearn(network, Blobs(16, 0, augment=False), forget=[0], test_set=Blobs(8, 1, augment=False),
                   eval_every=1, keep="best:avg_gap")


def test_a_method_that_trains_no_epochs_is_noted_and_measured_once(capsys, in_tmp_path):
    code, out, err = unlearn(capsys, "run", "--method", "ssd", "--eval-every", "1", "--keep", "best:avg_gap",
                             "--out", "b", *TINY[:TINY.index("method.params.epochs=2") - 1], "--device", "cpu")
    assert code == 0, err
    assert "eval_every 1: ssd trained no epochs through the trainer" in " ".join(err.split())
    metrics = results("b")["metrics"]["unlearned"]
    assert metrics["eval_flops"] == 0 and metrics["kept_epoch"] is None
    assert not measured("b")


# --------------------------------------------------------------------------- where the measurements go


def test_trackers_see_the_measurements_by_epoch_apart_from_the_final_ones():
    event = {"event": "evaluation", "model": "unlearned", "forget_step": 2, "epoch": 3, "metrics": {"RA": 90.0}}
    assert event_metrics(event) == ({"step2/unlearned/epochs/RA": 90.0}, 3)


def test_cell_keys_change_with_keep_and_not_with_measurements_alone(registry):
    from unlearnkit.bench.keys import cell_key, reference_key
    from unlearnkit.resolve import resolve

    def keys(**fields):
        resolved = resolve({"method": "ft", **fields}, registry)
        return cell_key(resolved), reference_key(resolved, "retrain")

    plain = keys()
    assert keys(eval_every=2) == plain
    kept = keys(eval_every=2, keep="best:avg_gap")
    assert kept[0] != plain[0] and kept[1] == plain[1]
    assert keys(eval_every=3, keep="best:avg_gap")[0] != kept[0]


def test_plot_draws_the_measurements_beside_the_loss(capsys, in_tmp_path):
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--eval-every", "1", "--keep", "best:avg_gap",
                           "--out", "b", *TINY)
    assert code == 0, err
    from unlearnkit.figures import training_curves

    events = bundle_events(Path("b"))
    plain = training_curves([e for e in events if "epoch" not in e or e["event"] == "epoch"], "t", Path("plain.png"))
    drawn = training_curves(events, "t", Path("drawn.png"))
    assert drawn.stat().st_size > 2 * plain.stat().st_size  # nine more panels: RA .. premise_control
    code, out, err = unlearn(capsys, "plot", "b", "--projection", "pca", "--samples", "60", "--quiet")
    assert code == 0 and "b/plots/curves.png" in out
