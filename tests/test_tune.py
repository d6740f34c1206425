"""`unlearn tune` searching with an Optuna study kept in OUT/study.db: TPE, grid, resuming, a killed worker's trial."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from tests.test_cli import unlearn
from tests.test_cli_bench import RUN_TINY
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
    assert f"best: ft.lr={tuned['params']['ft']['method']['params']['lr']}" in out
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
