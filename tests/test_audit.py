"""`unlearn audit` (U-LiRA): the shadow design, the shadows' data, records that resume, and audits end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unlearnkit.auditing import report
from unlearnkit.bench import executors
from unlearnkit.auditing.session import check_folder
from unlearnkit.auditing.ulira import Variant, check_shadow_count, shadow_design, shadow_records, shadow_run
from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import installed
from unlearnkit.protocol import ProtocolRun
from unlearnkit.resolve import resolve
from tests.test_faults_inputs import unlearn  # the CLI in-process: exit code, stdout, stderr



def test_every_sample_is_in_exactly_half_of_the_shadow_models():
    design = shadow_design(101, torch.tensor([7, 3, 50]), shadows=8, seed=0)
    assert design.members.shape == (8, 101)
    assert (design.members.sum(dim=0) == 4).all()  # the balance the per-target attacker relies on
    assert design.targets.tolist() == [3, 7, 50]
    sizes = design.members.sum(dim=1)
    assert sizes.min() > 30 and sizes.max() < 70  # halves, not a fixed split: each model a random half
    assert torch.equal(design.members, shadow_design(101, torch.tensor([3, 7, 50]), 8, 0).members)
    assert not torch.equal(design.members, shadow_design(101, torch.tensor([3, 7, 50]), 8, 1).members)


@pytest.mark.parametrize("shadows", [0, 2, 4, 7, 9])
def test_too_few_or_an_odd_number_of_shadows_is_refused(shadows):
    with pytest.raises(UnlearnkitError, match=f"--shadows {shadows}: .*even number of shadow models, 6 or more"):
        check_shadow_count(shadows)


@pytest.fixture(scope="module")
def digits_run():
    spec = {"data": {"name": "digits", "train_subset": 200, "test_subset": 100}, "model": {"name": "small-cnn", "width": 4},
            "train": {"epochs": 2, "batch_size": 32}, "forget": {"kind": "random", "fraction": 0.1}, "cache": False}
    return ProtocolRun(resolve(spec, installed()))


def test_a_shadow_trains_on_its_half_and_forgets_the_targets_it_saw(digits_run):
    design = shadow_design(len(digits_run.data.train_y), digits_run.split.forget, shadows=6, seed=3)
    for k in range(6):
        shadow = shadow_run(digits_run, design, k)
        members = set(design.members[k].nonzero().flatten().tolist())
        forget, retain = set(shadow.split.forget.tolist()), set(shadow.split.retain.tolist())
        assert forget == members & set(design.targets.tolist())
        assert retain == members - forget
        assert set(shadow.data.indices("all").tolist()) == members  # the Original of shadow k trains on S_k only
        assert shadow.spec.seed == design.shadow_seed(k) and digits_run.spec.seed == 0


def test_records_resume_and_refuse_another_design_or_other_params(tmp_path):
    def ft(lr: float) -> Variant:
        return Variant("ft", resolve({"method": {"name": "ft", "params": {"lr": lr}}}, installed()))

    design = shadow_design(20, torch.tensor([1, 2]), shadows=6, seed=0)
    records = shadow_records(tmp_path, design, [ft(0.01)])
    records.put("ft", 3, np.array([0.5, -1.0]), {"flops": 10, "seconds": 1.0})
    assert records.get("ft", 3)["phi"] == [0.5, -1.0] and records.get("ft", 2) is None
    assert shadow_records(tmp_path, shadow_design(20, torch.tensor([1, 2]), 6, seed=1), [ft(0.01)]).get("ft", 3) is None
    assert shadow_records(tmp_path, design, [ft(0.02)]).get("ft", 3) is None  # the same name with other params
    records.path("ft", 4).parent.mkdir(parents=True, exist_ok=True)
    records.path("ft", 4).write_text("{not json")
    assert records.get("ft", 4) is None  # damaged: computed again


def test_an_audit_folder_of_another_setting_or_of_other_files_is_refused(tmp_path):
    setting = {"setting": "original-abc", "scenario": "random:0.1", "seed": 0, "kind": "ulira", "models": 8}
    check_folder(tmp_path / "new", setting)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UnlearnkitError, match="is not an audit folder: it holds notes.txt"):
        check_folder(tmp_path / "mine", setting)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "setting.json").write_text(json.dumps({**setting, "models": 16}))
    with pytest.raises(UnlearnkitError, match="holds an audit of another setting \\(its models differ\\)"):
        check_folder(tmp_path / "old", setting)


# a setting in which the Original memorises (40 epochs on 200 images), so that membership shows in its outputs
AUDIT_SPEC = """
base:
  data: {name: digits, train_subset: 200, test_subset: 100}
  model: {name: small-cnn, width: 16}
  train: {epochs: 40, batch_size: 32}
methods: [ft]
augment: [none]
params:
  ft: {method: {params: {epochs: 2, batch_size: 32}}}
"""


@pytest.mark.slow
def test_a_small_audit_end_to_end_calibrates_and_resumes(tmp_path, private_cache):
    spec = tmp_path / "bench.yaml"
    spec.write_text(AUDIT_SPEC)
    out = tmp_path / "audit"
    code, printed, err = unlearn("audit", str(spec), "--shadows", "8", "--scenario", "random:0.2", "--out", str(out), "-q")
    assert code == 0, err
    result = json.loads((out / "audit.json").read_text())
    assert set(result["variants"]) == {"none", "retrain", "ft"}
    auc = {name: row["figures"]["auc"] for name, row in result["variants"].items()}
    assert abs(auc["retrain"] - 0.5) < 0.1, auc  # models that never saw the targets cannot be told apart
    assert auc["none"] > 0.6 and auc["none"] > auc["retrain"] + 0.1, auc  # no unlearning: the attacker sees who trained
    for name in ("audit.md", "roc.png", "vulnerability.png"):
        assert (out / name).stat().st_size > 0
    assert "U-LiRA on random 20%" in printed and "retrain" in printed
    # every phi is in audit.json: the figures recompute from it alone
    seen = np.array(result["seen"], dtype=bool)
    phi = np.array(result["variants"]["ft"]["phi"])
    from unlearnkit.evaluation.privacy import attack_figures, lira_scores
    again = attack_figures(lira_scores(phi, seen, ~seen), seen, ~seen, seed=0)
    assert again.auc == pytest.approx(result["variants"]["ft"]["figures"]["auc"])
    # a second method reuses the shadows (cached) and the calibrations' records: only its own runs are made
    code, printed, err = unlearn("audit", str(spec), "--shadows", "8", "--scenario", "random:0.2", "--out", str(out),
                                 "--methods", "ft,neggrad", "-q")
    assert code == 0, err
    assert "models trained: 0" in err and set(json.loads((out / "audit.json").read_text())["variants"]) >= {"neggrad"}


def test_bad_audit_requests_are_one_message_and_write_nothing(tmp_path, private_cache):
    spec = tmp_path / "bench.yaml"
    spec.write_text(AUDIT_SPEC)
    for flags, message in [
        (["--shadows", "5"], "even number of shadow models"),
        (["--scenario", "sequential:0.1x3"], "targets from a random or class scenario"),
        (["--methods", "nosuch"], "unknown method 'nosuch'"),
    ]:
        code, _, err = unlearn("audit", str(spec), *flags, "--out", str(tmp_path / "a"))
        assert code == 2 and message in err and "Traceback" not in err, err
        assert not (tmp_path / "a").exists()


def test_the_report_warns_plainly_when_the_retrain_calibration_is_broken():
    figures = type("F", (), {"auc": 0.8, "auc_ci": (0.7, 0.9)})()
    result = type("R", (), {"row": lambda self, name: type("V", (), {"figures": figures})()})()
    assert "cannot be trusted" in report.verdict(result)



@pytest.mark.slow
def test_the_epsilon_score_from_runs_and_retrains_of_one_original(tmp_path, private_cache):
    spec = tmp_path / "bench.yaml"
    spec.write_text(AUDIT_SPEC)
    out = tmp_path / "epsilon"
    code, printed, err = unlearn("audit", str(spec), "--kind", "epsilon", "--runs", "4", "--scenario", "random:0.2",
                                 "--methods", "ft", "--out", str(out), "-q")
    assert code == 0, err
    result = json.loads((out / "audit.json").read_text())
    assert result["kind"] == "epsilon" and result["runs"] == 4 and result["seeds"] == [0, 1, 2, 3]
    assert result["epsilon_ceiling"] == pytest.approx(math.log(4 * (1 - 1e-5) - 1))
    ft = result["variants"]["ft"]
    assert np.array(ft["phi"]).shape == (4, 40) and 0 <= ft["forget_quality"] <= 1
    assert ft["score"] == pytest.approx(ft["forget_quality"] * ft["RA"] / result["variants"]["retrain"]["RA"]
                                        * ft["TA"] / result["variants"]["retrain"]["TA"])
    assert "epsilon resolved up to 1.10" in printed.replace("\n", " ")
    code, _, err = unlearn("audit", str(spec), "--kind", "epsilon", "--runs", "4", "--scenario", "random:0.2",
                           "--methods", "ft", "--out", str(out), "-q")
    assert code == 0 and "models trained: 0" in err  # every run's record is reused


def test_an_odd_number_of_runs_is_refused(tmp_path, private_cache):
    spec = tmp_path / "bench.yaml"
    spec.write_text(AUDIT_SPEC)
    code, _, err = unlearn("audit", str(spec), "--kind", "epsilon", "--runs", "3", "--out", str(tmp_path / "e"))
    assert code == 2 and "--runs 3: the epsilon score needs an even number of runs" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_audit_on_the_users_own_model_and_data_from_python(tmp_path):
    from torch import nn
    from torch.utils.data import TensorDataset

    import unlearnkit as uk

    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 12, generator=generator) * 2
    y = torch.arange(90) % 3
    x = (centres[y] + torch.randn(90, 12, generator=generator)).reshape(90, 3, 2, 2)
    train, test = TensorDataset(x[:60], y[:60]), TensorDataset(x[60:], y[60:])
    made = []

    def factory() -> nn.Module:
        made.append(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

    report = uk.audit(factory, train, forget="random:0.2", test_set=test, method="ft", shadows=6,
                      params={"method": {"epochs": 1, "batch_size": 16}}, train={"epochs": 3, "batch_size": 16})
    assert made == [1]  # built once; each shadow is a re-initialised copy
    assert {row.name for row in report.result.rows} == {"none", "retrain", "ft"}
    assert 0 <= report.figures("ft").auc <= 1 and report.folder is None
    assert "| retrain |" in report._repr_markdown_()
    assert not any(tmp_path.iterdir())  # nothing written without out=
    out = tmp_path / "own"
    written = uk.audit(factory, train, forget="random:0.2", test_set=test, method="ft", shadows=6,
                       params={"method": {"epochs": 1, "batch_size": 16}}, train={"epochs": 3, "batch_size": 16}, out=out)
    assert (out / "audit.json").is_file() and written.figures("none").auc == pytest.approx(report.figures("none").auc)


@pytest.mark.slow
@pytest.mark.parametrize("where", [["--workers", "2"], ["--executor", "ray", "--cell-cpus", "1"]], ids=["workers", "ray"])
def test_shadows_trained_by_worker_processes_give_the_records_one_process_gives(tmp_path, private_cache, where):
    if executors.cores() < 2:
        pytest.skip("two worker processes need two cores")
    if "ray" in where:
        pytest.importorskip("ray")
    spec = tmp_path / "bench.yaml"
    spec.write_text(AUDIT_SPEC)
    flags = ["--shadows", "6", "--scenario", "random:0.2", "--set", "base.cache=false", "-q"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of two workers on two cores has: training repeats bit for bit at one count
    try:
        code, _, err = unlearn("audit", str(spec), *flags, "--out", str(tmp_path / "serial"))
    finally:
        torch.set_num_threads(threads)
    assert code == 0, err
    code, _, err = unlearn("audit", str(spec), *flags, *where, "--out", str(tmp_path / "workers"))
    assert code == 0, err
    assert "models trained: 12" in err  # six Originals and six Retrains, in the workers
    serial, workers = (json.loads((tmp_path / f / "audit.json").read_text())["variants"] for f in ("serial", "workers"))
    for name in ("none", "retrain", "ft"):
        assert serial[name]["phi"] == workers[name]["phi"], name


@pytest.mark.slow
def test_a_damaged_cached_shadow_is_set_aside_and_trained_again(tmp_path, private_cache):
    spec = tmp_path / "bench.yaml"
    spec.write_text(AUDIT_SPEC)
    flags = ["--shadows", "6", "--scenario", "random:0.2", "-q"]
    code, _, err = unlearn("audit", str(spec), *flags, "--out", str(tmp_path / "first"))
    assert code == 0 and "models trained: 12" in err, err
    originals = sorted(private_cache.glob("original-*.safetensors"))
    assert len(originals) == 6  # one cached Original per shadow, each keyed by its half
    data = bytearray(originals[0].read_bytes())
    data[-64:] = b"\x00" * 64  # weights overwritten on disk
    originals[0].write_bytes(bytes(data))
    code, _, err = unlearn("audit", str(spec), *flags, "--methods", "neggrad", "--out", str(tmp_path / "second"))
    assert code == 0, err
    assert "set aside" in err and "models trained: 1" in err  # the damaged one alone; its Retrain and the rest cached


def test_a_run_spec_is_audited_with_its_own_method_augmenters_and_params(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("data: {name: digits}\nforget: {kind: class, classes: [3]}\n"
                    "method: {name: neggrad, params: {lr: 0.002}}\naugment: [coun-cl]\n")
    from unlearnkit.auditing.session import AuditRequest, variants

    found, scenario = variants(AuditRequest(spec))
    assert scenario == "class:3" and list(found) == ["neggrad+coun-cl"]
    resolved = found["neggrad+coun-cl"]
    assert resolved.method.params.lr == 0.002 and [a.name for a in resolved.augmenters] == ["coun-cl"]
    found, _ = variants(AuditRequest(spec, methods="ft", augment="none"))
    assert list(found) == ["ft"]  # the flags replace the spec's choice
