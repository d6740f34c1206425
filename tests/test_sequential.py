"""Sequential forgetting: requests in a row, each unlearned from the model the step before left,
each step measured on everything forgotten so far against a Retrain on what is left."""

from __future__ import annotations

import json
import types

import pytest
import torch

from tests.test_cli import unlearn
from unlearnkit import Evaluator, Method, hookimpl
from unlearnkit.bench.grid import BenchSpec, expand, scenario_label, scenario_overrides
from unlearnkit.bench.runner import CellStore, run_grid
from unlearnkit.bench.summary import markdown, tabulate
from unlearnkit.data.forget import random_split, sequential_split
from unlearnkit.engine import RunData
from unlearnkit.engine.streams import steps
from unlearnkit.errors import SpecError, UnlearnkitError
from unlearnkit.plugins import discover
from unlearnkit.protocol import ProtocolRun
from unlearnkit.references import reference_model
from unlearnkit.resolve import resolve
from unlearnkit.sequence import run_protocol
from unlearnkit.testing import TINY_TRANSFORM, tiny_images

TINY = {"data": {"name": "digits", "train_subset": 240, "test_subset": 80}, "train": {"epochs": 1}, "device": "cpu"}


pytestmark = pytest.mark.usefixtures("private_cache")


# --------------------------------------------------------------------------- in-test plugins


class Seen:
    """What the recording plugins saw, in call order."""

    method: list[dict] = []
    evaluated: list[dict] = []


def indices(t: torch.Tensor) -> list[int]:
    return sorted(t.tolist())


class Nudge(Method):
    """Records the split it is given and the head bias it starts from, then adds 1 to that bias."""

    name = "nudge"
    trains_on_retain = False

    def unlearn(self, run):
        bias = run.model.head.bias
        Seen.method.append({"forget": indices(run.data.split.forget), "retain": indices(run.data.split.retain),
                            "all": indices(run.data.indices("all")), "start": bias.detach().clone()})
        with torch.no_grad():
            bias += 1.0


class Witness(Evaluator):
    """Records the split each model is measured on and the Retrain it is measured against."""

    name = "witness"

    def evaluate(self, subject, reference):
        Seen.evaluated.append({"name": subject.name, "forget": indices(subject.data.split.forget),
                               "retain": indices(subject.data.split.retain), "model": subject.model,
                               "reference": None if reference is None else reference.model})
        return {}


@pytest.fixture
def registry():
    module = types.ModuleType("sequential_test_plugins")
    module.register_methods = hookimpl(lambda register: register(Nudge))
    module.register_evaluators = hookimpl(lambda register: register(Witness))
    Seen.method, Seen.evaluated = [], []
    return discover(modules=[("sequential-test", module)], env={})


# --------------------------------------------------------------------------- the split


def test_requests_are_disjoint_the_first_is_the_random_split_and_each_step_partitions_the_data():
    n = 240
    split = sequential_split(n, 0.1, 4, seed=3)
    requests = [set(r.tolist()) for r in split.requests]
    assert [len(r) for r in requests] == [24] * 4
    assert len(set().union(*requests)) == 4 * 24  # disjoint
    assert torch.equal(split.requests[0], random_split(n, 0.1, seed=3).forget)
    for step in range(1, 5):
        after = split.after(step)
        forgotten = set().union(*requests[:step])
        assert set(after.forget.tolist()) == forgotten and set(after.retain.tolist()) == set(range(n)) - forgotten
        seen = split.request(step)  # what the method gets: this request, and the samples not yet forgotten
        assert set(seen.forget.tolist()) == requests[step - 1] and torch.equal(seen.retain, after.retain)
    assert torch.equal(split.after(4).forget, split.forget)


def test_at_a_step_all_training_data_leaves_out_earlier_requests():
    images = tiny_images()
    split = sequential_split(len(images.train_y), 0.25, 3, seed=0)
    data = RunData(images, TINY_TRANSFORM, split, torch.device("cpu")).with_split(split.request(2))
    earlier = set(split.requests[0].tolist())
    assert set(data.indices("all").tolist()) == set(range(40)) - earlier
    drawn = set()
    for step in steps(data, "union", 8, 1, torch.Generator().manual_seed(0)):
        drawn |= {int(i) for batch in (step.retain, step.forget) if batch is not None for i in batch.index}
    assert drawn == set(range(40)) - earlier  # a union stream does not bring forgotten samples back as retain


def test_the_spec_refuses_requests_that_would_forget_everything(registry):
    with pytest.raises(SpecError, match="fraction x steps must be below 1"):
        resolve({**TINY, "forget": {"kind": "sequential", "fraction": 0.25, "steps": 4}}, registry)
    with pytest.raises(SpecError, match="forget.steps"):
        resolve({**TINY, "forget": {"kind": "sequential", "steps": 1}}, registry)
    with pytest.raises(UnlearnkitError, match="leaves nothing to retain"):
        sequential_split(5, 0.3, 3, seed=0)  # 0.9 < 1, but 2 samples x 3 requests > 5
    with pytest.raises(SpecError, match="supports class forgetting, not 'sequential'"):
        resolve({**TINY, "method": "boundary-expand", "forget": {"kind": "sequential"}}, discover(env={}))


def test_scenario_strings_and_labels():
    assert scenario_overrides("sequential:0.1x5") == ["forget.kind=sequential", "forget.fraction=0.1", "forget.steps=5"]
    assert scenario_label("sequential:0.1x3") == "sequential 10% x3"
    assert scenario_label("sequential:0.1x3@2") == "sequential 10% x3, step 2"
    for bad in ("sequential", "sequential:0.1", "sequential:0.1x1", "sequential:1.5x2", "sequential:0.1xa", "sequential:x3"):
        with pytest.raises(UnlearnkitError, match="sequential:FRACTIONxSTEPS"):
            scenario_overrides(bad)


# --------------------------------------------------------------------------- the chain


def test_each_step_unlearns_its_request_from_the_last_model_and_is_measured_against_its_own_retrain(
        registry, monkeypatch):
    from unlearnkit import references

    trained_on = []  # the training indices of every Retrain trained
    real_fit = references.fit

    def spy(model, data, over, *args, **kwargs):
        if over == "retain":
            trained_on.append(indices(data.indices("retain")))
        return real_fit(model, data, over, *args, **kwargs)

    monkeypatch.setattr(references, "fit", spy)
    spec = {**TINY, "method": "nudge", "evaluate": ["witness"], "forget": {"kind": "sequential", "fraction": 0.1, "steps": 3}}
    run = ProtocolRun(resolve(spec, registry))
    result = run_protocol(run)
    split = run.split
    forgotten = [indices(split.after(i).forget) for i in (1, 2, 3)]
    retained = [indices(split.after(i).retain) for i in (1, 2, 3)]

    # the method: request i as forget set, R_i as retain set, starting from step i-1's model
    assert [m["forget"] for m in Seen.method] == [indices(r) for r in split.requests]
    assert [m["retain"] for m in Seen.method] == retained
    assert [m["all"] for m in Seen.method] == [sorted(set(range(240)) - set(f) | set(indices(r)))
                                               for f, r in zip([[]] + forgotten, split.requests)]
    start = Seen.method[0]["start"]
    for i, seen in enumerate(Seen.method):
        assert torch.allclose(seen["start"], start + i)

    # Retrain i is trained on R_i; each step measures every model on U_i / R_i, against that Retrain
    assert trained_on == retained
    assert len(Seen.evaluated) == 3 * 3
    for i in range(3):
        retrain, *others = Seen.evaluated[3 * i: 3 * i + 3]
        assert retrain["name"] == "retrain" and retrain["reference"] is None
        for record in (retrain, *others):
            assert (record["forget"], record["retain"]) == (forgotten[i], retained[i])
        assert all(r["reference"] is retrain["model"] for r in others)
        unlearned = next(r for r in others if r["name"] == "unlearned")
        assert torch.allclose(unlearned["model"].head.bias, start + i + 1)

    assert [s.step for s in result.steps] == [1, 2, 3] and result.split.forget.tolist() == forgotten[2]


def test_the_first_steps_retrain_is_the_random_splits(registry):
    spec = {**TINY, "method": "nudge", "evaluate": ["witness"]}
    random = ProtocolRun(resolve({**spec, "forget": {"kind": "random", "fraction": 0.1}}, registry))
    reference_model(random, "retrain")
    sequential = ProtocolRun(resolve({**spec, "forget": {"kind": "sequential", "fraction": 0.1, "steps": 2}}, registry))
    first, second = sequential.steps()
    assert reference_model(first, "retrain")[2] == "cached"
    assert reference_model(second, "retrain")[2] == "trained"


# --------------------------------------------------------------------------- the command line


def test_run_prints_a_table_per_step_and_writes_one_bundle(capsys, tmp_path):
    out = tmp_path / "seq"
    code, text, err = unlearn(capsys, "run", "--method", "ft", "--forget", "sequential:0.1x2", "--out", str(out),
                              "--set", "data.train_subset=240", "--set", "data.test_subset=80", "--set", "train.epochs=1",
                              "--set", "method.params.epochs=1", "--device", "cpu", "--quiet")
    assert code == 0, err
    words = " ".join(text.split())  # titles wrap at the table's width
    assert "of 24 samples, step 1 of 2" in words and "of 48 samples, step 2 of 2" in words
    assert text.count("Retrain") == 2 and text.count("Original") == 2
    results = json.loads((out / "results.json").read_text())
    assert [(s["step"], s["forget_count"], s["retain_count"]) for s in results["steps"]] == [(1, 24, 216), (2, 48, 192)]
    assert results["metrics"] == results["steps"][-1]["metrics"]
    assert set(results["metrics"]) == {"original", "retrain", "unlearned"}
    requests = json.loads((out / results["split"]["requests"]).read_text())
    forgotten = [int(i) for i in (out / "forget_indices.txt").read_text().split()]
    assert len(requests) == 2 and not set(requests[0]) & set(requests[1])
    assert sorted(requests[0] + requests[1]) == forgotten and results["split"]["forget_count"] == 48
    assert (out / "unlearned.safetensors").stat().st_size > 0
    assert "## Step 2: forgot 48, retained 192" in (out / "results.md").read_text()


@pytest.mark.parametrize("flag,expected", [
    ("sequential:0.1", "--forget 'sequential:0.1' is not understood"),
    ("sequential:0.5x2", "fraction x steps must be below 1"),
])
def test_bad_sequential_flags_are_one_message(capsys, tmp_path, flag, expected):
    code, _, err = unlearn(capsys, "run", "--forget", flag, "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2 and expected in err and "Traceback" not in err


# --------------------------------------------------------------------------- the bench


def test_bench_writes_a_record_per_step_tables_per_step_and_resumes(registry, tmp_path):
    spec = BenchSpec(base={**TINY, "evaluate": ["accuracy", "mia", "avg-gap"]}, methods=["nudge"], augment=["none"],
                     scenarios=["random:0.1", "sequential:0.1x3"], seeds=1)
    grid = expand(spec, registry)
    store = CellStore(tmp_path / "bench")
    references = []
    first = run_grid(grid, store, after_references=lambda records: references.append(records))
    assert first.computed == 2 and not first.failures and len(Seen.method) == 1 + 3
    steps_ = [f"sequential:0.1x3@{i}" for i in (1, 2, 3)]
    assert [r["scenario"] for r in references[0] if r["kind"] == "retrain"] == ["random:0.1", *steps_]
    unlearned = [r for r in first.records if r["kind"] == "unlearned"]
    assert [(r["scenario"], r.get("step"), r["forget_count"]) for r in unlearned] == [
        ("random:0.1", None, 24), (steps_[0], 1, 24), (steps_[1], 2, 48), (steps_[2], 3, 72)]
    assert len({r["key"] for r in first.records}) == len(first.records) == 4 * 3
    # step 1's Retrain is random:0.1's (the same cache entry, so the same numbers)
    retrains = {r["scenario"]: r["metrics"] for r in first.records if r["kind"] == "retrain"}
    assert retrains["random:0.1"] == retrains[steps_[0]]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir()) == ["original"] + ["retrain"] * 3

    tables = tabulate(first.records)
    assert list(tables) == ["random:0.1", *steps_]
    for scenario in steps_:
        assert list(tables[scenario]) == ["Retrain", "Original", "nudge"]
    text = markdown(tables, {})
    assert "### sequential 10% x3, step 2" in text and "### sequential 10% x3, step 3" in text

    again = run_grid(grid, store)
    assert again.computed == 0 and len(Seen.method) == 4  # every step of the chain is on disk: nothing recomputed
    step_two = next(r for r in unlearned if r.get("step") == 2)
    (store.folder / f"{step_two['key']}.json").unlink()
    assert run_grid(grid, store).computed == 1 and len(Seen.method) == 4 + 3  # a missing step reruns the chain
