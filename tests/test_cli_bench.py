"""`unlearn bench`, `unlearn tune` and `unlearn plot` as a user runs them."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.test_cli import unlearn

TINY = ["--data", "digits", "--set", "base.data.train_subset=240", "--set", "base.data.test_subset=80",
        "--set", "base.train.epochs=1", "--device", "cpu", "--quiet"]
RUN_TINY = ["--set", "data.train_subset=240", "--set", "data.test_subset=80", "--set", "train.epochs=1",
            "--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.mark.slow
def test_bench_writes_tables_and_figure_and_resumes(capsys, tmp_path):
    argv = ["bench", "--methods", "ft,ssd", "--augment", "none,coun-cl", "--scenarios", "random:0.1,class:2",
            "--seeds", "2", "--set", "params.ft.method.params.epochs=1", "--out", "grid", *TINY]
    code, out, err = unlearn(capsys, *argv)
    assert code == 0, err
    assert "skipped ssd+coun-cl" in err and "12 of 12 cells finished (12 now" in err
    folder = tmp_path / "grid"
    text = (folder / "results.md").read_text()
    assert "### random 10% (forget 24 of 240 training samples)" in text and "### class 2" in text
    assert "| ft+coun-cl | " in text and "| Original | " in text
    assert "Command: `unlearn bench --methods ft,ssd" in text
    assert "- ft: method.params.epochs=1" in text
    assert "### The regime: Original vs Retrain" in text and "### CL effect: Avg Gap difference" in text and text in out
    payload = json.loads((folder / "results.json").read_text())
    assert set(payload["tables"]) == {"random:0.1", "class:2"}
    assert payload["tables"]["class:2"]["ft"]["seeds"] == [0, 1]
    assert (folder / "cl_integration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "results.csv").read_text().startswith("scenario,variant,")

    code, _, err = unlearn(capsys, *argv)
    assert code == 0 and "12 of 12 cells finished (0 now" in err
    assert len(json.loads((folder / "invocations.json").read_text())) == 2


@pytest.mark.slow
def test_tune_finds_params_that_bench_then_uses(capsys, tmp_path):
    code, out, err = unlearn(capsys, "tune", "--method", "ft", "--seeds", "1", "--range", "ft.lr=0.001,0.05", "--range", "ft.epochs=1",
                             "--search", "grid", "--set", "method.params.batch_size=64", "--out", "tuned", *RUN_TINY)
    assert code == 0, err
    assert "best of 2 trials: ft.lr=" in out and "2 of 2 cells finished" in err
    tuned = yaml.safe_load((tmp_path / "tuned" / "tuned.yaml").read_text())
    lr = tuned["params"]["ft"]["method"]["params"]["lr"]
    assert lr in (0.001, 0.05) and tuned["params"]["ft"]["method"]["params"]["epochs"] == 1
    assert tuned["params"]["ft"]["method"]["params"]["batch_size"] == 64  # set in the spec, kept beside the choice
    ranked = (tmp_path / "tuned" / "results.md").read_text()
    assert "### Trials, best first" in ranked and f"Chosen: ft.lr={lr}" in ranked
    assert "| ft #0 | " in ranked and "| ft #1 | " in ranked  # one row per trial, never averaged together

    assert tuned["tuned_on"] == {"scenario": "random:0.1", "seeds": [100], "pool": "tuning"}  # apart from the evaluation
    code, _, err = unlearn(capsys, "bench", "--methods", "ft", "--augment", "none", "--scenarios", "random:0.1",
                           "--seeds", "0,100", "--params", "tuned/tuned.yaml", *TINY)
    assert code == 2 and "tuned on seeds [100], which this bench also reports" in err  # nothing ran
    code, _, err = unlearn(capsys, "bench", "--methods", "ft", "--augment", "none", "--scenarios", "random:0.1",
                           "--seeds", "1", "--params", "tuned/tuned.yaml", "--out", "grid", *TINY)
    assert code == 0, err
    cell = json.loads((tmp_path / "grid" / "results.json").read_text())["tables"]["random:0.1"]["ft"]
    assert cell["params"]["method"]["lr"] == lr and cell["params"]["method"]["epochs"] == 1


def test_bench_user_errors_are_one_message(capsys, tmp_path):
    for argv, expected in [
        (["--scenarios", "half"], "scenario 'half' is not understood"),
        (["--methods", "negrad"], "unknown method 'negrad'"),
        (["--seeds", "x"], "error:"),
        (["--set", "params.ft.method.params.lr=-1", "--methods", "ft"], "method.params.lr"),
        (["--params", "missing.yaml"], "cannot read spec file missing.yaml"),
        (["--scenarios", "random:10%"], "scenario 'random:10%' is not understood"),
        (["--set", "params.ft.train.epochs=2"], "may set method and augment only"),
    ]:
        code, _, err = unlearn(capsys, "bench", *argv, *TINY)
        assert code == 2 and expected in err and "Traceback" not in err, (argv, err)
    code, _, err = unlearn(capsys, "tune", "--method", "retrain", *RUN_TINY)
    assert code == 2 and "declares no search space" in err and "--range" in err
    for seeds in ("two", "0"):
        code, _, err = unlearn(capsys, "tune", "--method", "ft", "--seeds", seeds, *RUN_TINY)
        assert code == 2 and "seeds" in err and "Traceback" not in err


@pytest.mark.slow
def test_plot_draws_pca_and_tsne_of_a_bundle(capsys, tmp_path):
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--forget", "class:1", "--out", "r", *RUN_TINY,
                           "--set", "method.params.epochs=1")
    assert code == 0, err
    code, out, err = unlearn(capsys, "plot", "r", "--samples", "60", "--quiet")
    assert code == 0, err
    for name in ("pca.png", "tsne.png"):
        assert (tmp_path / "r" / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert "Original" in out and "Retrain" in out and "agreement" in out

    code, _, err = unlearn(capsys, "plot", "nowhere")
    assert code == 2 and "not a result bundle" in err
    (tmp_path / "afile").write_text("mine")
    for where in ("afile", "afile/sub"):  # refused before the models are computed, the file untouched
        code, _, err = unlearn(capsys, "plot", "r", "--out", where, "--quiet")
        assert code == 2 and "afile is a file" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "mine"
    (tmp_path / "r" / "forget_indices.txt").rename(tmp_path / "r" / "moved.txt")
    code, _, err = unlearn(capsys, "plot", "r")
    assert code == 2 and "incomplete or damaged" in err and "Traceback" not in err
    code, _, err = unlearn(capsys, "plot", "r", "--projection", "umap")
    assert code == 2 and "umap" in err
