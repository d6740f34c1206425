"""`unlearn tune` searching with an Optuna study kept in OUT/study.db: TPE, grid, resuming, a killed worker's trial."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_cli import unlearn
from tests.test_cli_bench import RUN_TINY
from unlearnkit import Choice, Range
from unlearnkit.bench import tune

pytestmark = pytest.mark.usefixtures("in_tmp_path")  # a private cache; runs and studies write in the test's folder

FT = ["--method", "ft", "--seeds", "1", "--range", "ft.epochs=1", "--set", "method.params.batch_size=64", *RUN_TINY]


def study(folder):
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{folder / 'study.db'}"
    (name,) = optuna.get_all_study_names(url)  # one study per tuning setting
    return optuna.load_study(study_name=name, storage=url)


def states(folder) -> list[str]:
    return [t.state.name for t in study(folder).trials]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the killed worker below asks without Study.optimize
def test_tpe_keeps_its_study_writes_the_best_and_resumes_retrying_a_killed_workers_trial(capsys, tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    code, out, err = unlearn(capsys, "tune", *FT, "--trials", "2", "--out", "tuned")
    assert code == 0, err
    folder = tmp_path / "tuned"
    assert "tuning ft (tpe): 2 trials" in err and "2 of 2 cells finished (2 now" in err
    assert states(folder) == ["COMPLETE", "COMPLETE"]
    best = study(folder).best_trial
    tuned = yaml.safe_load((folder / "tuned.yaml").read_text())
    assert tuned["params"]["ft"]["method"]["params"] == {"batch_size": 64, "epochs": 1,
                                                         "lr": float(f"{best.params['ft.lr']:.4g}")}
    assert tuned["tuned_on"] == {"scenario": "random:0.1", "seeds": [100], "pool": "tuning"}
    assert f"best of 2 trials: ft.lr={tuned['params']['ft']['method']['params']['lr']}" in out
    assert tuned["tuning"]["ft"]["trials"] == 2 and tuned["tuning"]["ft"]["space"]["ft.lr"] == "0.003..0.3 (log)"
    assert "### Trials, best first" in (folder / "results.md").read_text()

    # a worker killed mid-trial leaves it RUNNING; once its heartbeat is stale the next invocation fails and retries it
    monkeypatch.setattr(tune, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(tune, "GRACE_SECONDS", 1)
    killed = study(folder)
    killed._storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}", heartbeat_interval=1, grace_period=1)
    trial = killed.ask()
    trial.suggest_float("ft.lr", 0.01, 0.1, log=True)
    trial.suggest_categorical("ft.epochs", [1])
    killed._storage.record_heartbeat(trial._trial_id)
    time.sleep(2)

    code, out, err = unlearn(capsys, "tune", *FT, "--trials", "4", "--out", "tuned")
    assert code == 0, err
    assert "2 already finished" in err
    assert states(folder) == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    trials = study(folder).trials
    assert trials[3].params == trials[2].params  # the killed trial, retried
    history = json.loads((folder / "invocations.json").read_text())
    assert [h["cells_computed"] for h in history] == [2, 2]  # the finished trials' cells were not computed again
    assert "4 of 4 cells finished (2 now" in err
    best = study(folder).best_trial
    tuned = yaml.safe_load((folder / "tuned.yaml").read_text())
    assert tuned["params"]["ft"]["method"]["params"]["lr"] == float(f"{best.params['ft.lr']:.4g}")
    assert "best of 4 trials" in (folder / "tuned.yaml").read_text()

    # a study with more finished trials than asked for (a second worker's last one) ranks only its first --trials
    code, out, err = unlearn(capsys, "tune", *FT, "--trials", "3", "--out", "tuned")
    assert code == 0, err
    tuned = yaml.safe_load((folder / "tuned.yaml").read_text())
    first = min((t for t in study(folder).trials if t.state.name == "COMPLETE" and t.number < 4), key=lambda t: t.value)
    assert tuned["tuning"]["ft"]["trials"] == 3 and "best of 3 trials" in out
    assert tuned["params"]["ft"]["method"]["params"]["lr"] == float(f"{first.params['ft.lr']:.4g}")


@pytest.mark.slow
def test_grid_search_covers_the_grid_once(capsys, tmp_path):
    pytest.importorskip("optuna")
    argv = ["tune", *FT, "--search", "grid", "--points", "2", "--range", "ft.lr=0.01:0.1:log", "--out", "grid"]
    code, _, err = unlearn(capsys, *argv)
    assert code == 0, err
    assert "tuning ft (grid): 2 trials" in err and "2 of 2 cells finished (2 now" in err
    assert sorted(t.params["ft.lr"] for t in study(tmp_path / "grid").trials) == [0.01, 0.1]
    assert yaml.safe_load((tmp_path / "grid" / "tuned.yaml").read_text())["params"]["ft"]["method"]["params"]["lr"] in (0.01, 0.1)
    code, _, err = unlearn(capsys, *argv)  # the grid is done: nothing more to run
    assert code == 0 and "2 already finished" in err and "2 of 2 cells finished (0 now" in err
    assert len(study(tmp_path / "grid").trials) == 2


def test_without_optuna_tune_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    code, _, err = unlearn(capsys, "tune", *FT)
    assert code == 2 and "Optuna, which is not installed" in err and "pip install 'unlearnkit[tune]'" in err
    assert "Traceback" not in err and not (tmp_path / "tune").exists()  # nothing ran
    code, _, err = unlearn(capsys, "tune", *FT, "--search", "bayes")
    assert code == 2 and "not one of tpe, grid, random" in err


def test_the_command_line_does_not_import_optuna_until_tune_runs():
    loaded = subprocess.run([sys.executable, "-c", "import sys, unlearnkit.cli; print('optuna' in sys.modules)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "False"


@pytest.mark.parametrize("given", ["ft.lr=abc", "ft.batch_size=0,64", "ft.epochs=-1:3"])
def test_a_range_value_the_params_refuse_is_refused_before_anything_is_written(capsys, tmp_path, given):
    code, _, err = unlearn(capsys, "tune", *FT, "--range", given, "--out", "refused")
    assert code == 2 and "Traceback" not in err, err
    assert "method.params." in err
    assert not (tmp_path / "refused").exists()  # neither study.db nor any result file


def test_a_study_path_that_is_a_folder_is_one_message(capsys, tmp_path):
    (tmp_path / "taken" / "study.db").mkdir(parents=True)
    code, _, err = unlearn(capsys, "tune", *FT, "--out", "taken")
    assert code == 2 and "Traceback" not in err, err
    assert "study.db is not a file, so the study cannot be kept there" in err
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["study.db"]


def test_workers_a_trial_cannot_use_are_named_before_anything_runs(capsys, tmp_path):
    code, _, err = unlearn(capsys, "tune", *FT, "--workers", "2", "--range", "ft.lr=abc", "--out", "refused")
    assert code == 2 and "Traceback" not in err, err
    assert "one cell per tuning seed (1), so 1 of the workers would sit idle" in " ".join(err.split())


MEMORISING = Path(__file__).resolve().parents[1] / "examples" / "bench" / "fashion-mnist-memorising.yaml"
CLAIMS = ("ft", "not", "l1-sparse", "neggrad+", "salun")


def test_every_variant_of_a_bench_searches_its_lr_its_own_parameter_and_lambda_together():
    from unlearnkit.bench.grid import read_bench_spec
    from unlearnkit.plugins import installed

    spec = read_bench_spec(yaml.safe_load(MEMORISING.read_text()))
    variants, untuned = tune.bench_variants(spec, "random:0.1", installed())
    spaces = {v.name: v.space for v in variants}
    assert untuned == ["boundary-expand (supports class forgetting only)"]
    for method in CLAIMS:
        assert f"{method}.lr" in spaces[method]  # every claim method tunes its lr, beside its own parameter
        assert spaces[f"{method}+coun-cl"] == {**spaces[method], "coun-cl.lambda": spaces["coun"]["coun.lambda"]}
    assert set(spaces["coun"]) == {"coun.lr", "coun.lambda"} and spaces["coun"]["coun.lr"] == spaces["ft"]["ft.lr"]
    assert set(spaces["salun"]) == {"salun.lr", "salun.mask_fraction"}
    # each starts from its own budget: ft+coun-cl at a third of ft's epochs
    bases = {v.name: v.base for v in variants}
    assert bases["ft"]["method"]["params"]["epochs"] == 16 and bases["ft+coun-cl"]["method"]["params"]["epochs"] == 5


def test_a_winner_on_an_edge_of_its_range_gets_a_note():
    space = {"ft.lr": Range(0.003, 0.3, log=True), "neggrad+.beta": Choice((0.9, 0.99, 0.999))}
    assert tune.edge_notes(space, {"ft.lr": 0.03, "neggrad+.beta": 0.99}) == []
    notes = tune.edge_notes(space, {"ft.lr": 0.29, "neggrad+.beta": 0.9})
    assert notes[0].startswith("ft.lr=0.29 is at the high edge of 0.003..0.3 (log)")
    assert notes[1].startswith("neggrad+.beta=0.9 is the lowest of 0.9, 0.99, 0.999")


@pytest.mark.slow
def test_tune_bench_gives_every_variant_the_same_trials_over_its_joint_space(capsys, tmp_path):
    pytest.importorskip("optuna")
    spec = {"base": {"data": {"name": "digits", "train_subset": 240, "test_subset": 80}, "train": {"epochs": 1},
                     "device": "cpu"},
            "methods": ["ft", "ssd"], "augment": ["none", "coun-cl"], "scenarios": ["random:0.1"], "seeds": [0],
            "params": {"ft": {"method": {"params": {"epochs": 1, "batch_size": 64}}}}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    argv = ["tune", "--bench", "bench.yaml", "--trials", "2", "--seeds", "1", "--out", "tuned", "--quiet"]
    code, out, err = unlearn(capsys, *argv)
    assert code == 0, err
    assert "tuning 3 variants alike: 2 trials each" in err and "on the tuning pool: 240 training and 80 test" in err
    tuned = yaml.safe_load((tmp_path / "tuned" / "tuned.yaml").read_text())
    assert tuned["tuned_on"] == {"scenario": "random:0.1", "seeds": [100], "pool": "tuning"}
    # the same number of trials for every variant, wrapped or not, each over its whole space at once
    assert {name: record["trials"] for name, record in tuned["tuning"].items()} == {"ft": 2, "ft+coun-cl": 2, "ssd": 2}
    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'tuned' / 'study.db'}"
    done = optuna.trial.TrialState.COMPLETE
    assert sorted(len(optuna.load_study(study_name=name, storage=url).get_trials(states=(done,)))
                  for name in optuna.get_all_study_names(url)) == [2, 2, 2]
    wrapped = tuned["tuning"]["ft+coun-cl"]
    assert set(wrapped["winner"]) == {"ft.lr", "coun-cl.lambda"} and wrapped["space"]["coun-cl.lambda"] == "0.1..20 (log)"
    ft, chosen = tuned["params"]["ft"], tuned["params"]["ft+coun-cl"]
    assert ft["method"]["params"]["epochs"] == 1 and ft["method"]["params"]["lr"] == tuned["tuning"]["ft"]["winner"]["ft.lr"]
    assert chosen["method"]["params"]["lr"] == wrapped["winner"]["ft.lr"]  # its own lr, chosen with the CL term on
    assert chosen["augment"][0]["params"]["lambda"] == wrapped["winner"]["coun-cl.lambda"]
    assert "| ft+coun-cl | 2 | " in out
    code, _, err = unlearn(capsys, *argv)  # every study is complete: nothing runs again
    assert code == 0 and "0 now" in err and " now" in err and "(2 now" not in err
    code, _, err = unlearn(capsys, "bench", "bench.yaml", "--params", "tuned/tuned.yaml", "--methods", "ft",
                           "--seeds", "1", "--out", "grid", "--quiet")
    assert code == 0, err
    row = json.loads((tmp_path / "grid" / "results.json").read_text())["tables"]["random:0.1"]["ft+coun-cl"]
    assert row["params"]["augment"]["coun-cl"]["lambda"] == chosen["augment"][0]["params"]["lambda"]
    code, _, err = unlearn(capsys, "tune", "--bench", "bench.yaml", "--search", "grid", "--out", "grid2", "--quiet")
    assert code == 2 and "--bench gives every variant as many trials" in err
