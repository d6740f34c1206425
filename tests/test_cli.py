"""The `unlearn` command as a user meets it: exit codes, one-message errors, tables, bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unlearnkit import cli

FAST = ["--set", "train.epochs=2", "--set", "method.params.epochs=1", "--quiet"]


pytestmark = pytest.mark.usefixtures("private_cache")


def unlearn(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def test_plugins_lists_first_party_plugins_with_kind_and_distribution(capsys):
    code, out, _ = unlearn(capsys, "plugins", "--json")
    assert code == 0
    rows = {(r["name"], r["kind"]): r for r in json.loads(out)}
    assert rows[("neggrad", "method")]["distribution"] == "unlearnkit-baselines"
    assert rows[("coun-cl", "augmenter")]["distribution"] == "unlearnkit-coun"
    assert rows[("mia", "evaluator")]["distribution"] == "unlearnkit"
    assert all(r["status"] == "loaded" for r in rows.values())
    assert rows[("coun", "method")]["version"]


def test_plugins_table(capsys):
    code, out, _ = unlearn(capsys, "plugins")
    assert code == 0
    for word in ("neggrad+", "coun-cl", "augmenter", "unlearnkit-coun", "loaded"):
        assert word in out


def test_validate_accepts_the_example_spec(capsys):
    spec = Path(__file__).parents[1] / "examples" / "specs" / "digits-neggrad-coun.yaml"
    code, out, err = unlearn(capsys, "validate", str(spec))
    assert code == 0, err
    assert "valid: neggrad + coun-cl on digits" in out


def test_unknown_method_gives_close_match_and_pointer(capsys):
    code, _, err = unlearn(capsys, "validate", "--method", "negrad")
    assert code == 2
    assert "unknown method 'negrad'" in err and "'neggrad'" in err
    assert "unlearn plugins" in err
    assert "Traceback" not in err


def test_bad_spec_prints_one_line_per_field(capsys, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("method: {name: neggrad+, params: {beta: 2, colour: red}}\nforget: {fraction: 1.5}\n")
    code, _, err = unlearn(capsys, "validate", str(spec))
    assert code == 2
    assert "forget.fraction:" in err
    assert "method.params.beta:" in err and "method.params.colour:" in err
    assert "Traceback" not in err


def test_augmenting_a_method_without_retain_steps_fails_at_validation(capsys):
    code, _, err = unlearn(capsys, "validate", "--method", "ga", "--augment", "coun-cl")
    assert code == 2
    assert "augment.0:" in err and "'ga' takes none" in err


def test_set_override_is_validated(capsys):
    code, _, err = unlearn(capsys, "validate", "--method", "ft", "--set", "method.params.lr=-1")
    assert code == 2 and "method.params.lr:" in err


def test_missing_data_says_how_to_get_it(capsys, tmp_path):
    code, _, err = unlearn(
        capsys, "run", "--data", "fashion-mnist", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), *FAST
    )
    assert code == 2
    assert "apt-get install -y dataset-fashion-mnist" in err and "--data-root" in err and "--download" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_corrupt_original_checkpoint_is_refused(capsys, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x80\x04not a safetensors file at all")
    code, _, err = unlearn(capsys, "run", "--original", str(bad), "--out", str(tmp_path / "o"), *FAST)
    assert code == 2
    assert "not a valid safetensors file" in err and "Traceback" not in err


def test_existing_output_is_never_overwritten_without_asking(capsys, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, _, err = unlearn(capsys, "run", "--out", str(out), *FAST)
    assert code == 2 and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "precious"


def test_schema_lists_plugin_params(capsys):
    code, out, _ = unlearn(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert "method" in schema["properties"]
    assert "lambda" in schema["x-plugins"]["augmenter"]["coun-cl"]["properties"]
    assert "beta" in schema["x-plugins"]["method"]["neggrad+"]["properties"]


@pytest.mark.slow
def test_run_writes_table_and_complete_bundle_then_reuses_cache(capsys, tmp_path):
    first = tmp_path / "first"
    code, out, err = unlearn(capsys, "run", "--method", "neggrad", "--augment", "coun-cl", "--out", str(first), *FAST)
    assert code == 0, err
    for header in ("RA", "UA", "TA", "MIA", "Avg Gap", "Premise", "FLOPs", "Time", "Original", "Retrain", "neggrad+coun-cl"):
        assert header in out
    results = json.loads((first / "results.json").read_text())
    assert set(results["metrics"]) == {"original", "retrain", "unlearned"}
    for metrics in results["metrics"].values():
        assert set(metrics) == {"RA", "UA", "TA", "MIA", "RMIA", "avg_gap", "premise", "premise_control", "flops", "seconds"}
        assert all(0 <= metrics[k] <= 100 for k in ("RA", "UA", "TA", "MIA"))
    assert results["metrics"]["retrain"]["avg_gap"] == 0
    assert results["spec"]["method"]["name"] == "neggrad" and results["spec"]["augment"][0]["name"] == "coun-cl"
    forget = [int(line) for line in (first / "forget_indices.txt").read_text().split()]
    assert len(forget) == results["split"]["forget_count"] == round(0.1 * 1437)
    assert (first / "unlearned.safetensors").stat().st_size > 0 and (first / "results.md").exists()
    assert results["sources"] == {"original": "trained", "retrain": "trained"}
    assert not list(tmp_path.glob(".*incomplete*"))

    second = tmp_path / "second"
    code, out, err = unlearn(capsys, "run", "--method", "ft", "--out", str(second), *FAST)
    assert code == 0, err
    again = json.loads((second / "results.json").read_text())
    assert again["sources"] == {"original": "cached", "retrain": "cached"}
    assert again["metrics"]["original"] == results["metrics"]["original"]
    assert again["metrics"]["retrain"] == results["metrics"]["retrain"]


@pytest.mark.slow
def test_a_bf16_channels_last_run_is_recorded_and_cached_apart_from_fp32(capsys, tmp_path):
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--augment", "coun-cl", "--out", str(fp32), *FAST)
    assert code == 0, err
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--augment", "coun-cl", "--out", str(bf16), *FAST,
                           "--set", "compute.precision=bf16", "--set", "compute.channels_last=true")
    assert code == 0, err
    plain, fast = (json.loads((folder / "results.json").read_text()) for folder in (fp32, bf16))
    assert plain["environment"]["compute"] == {"precision": "fp32", "channels_last": False, "compile": False}
    assert fast["environment"]["compute"] == {"precision": "bf16", "channels_last": True, "compile": False}
    assert fast["sources"] == {"original": "trained", "retrain": "trained"}  # a bf16 model is not the fp32 one
    for name in ("original", "retrain", "unlearned"):
        metrics = fast["metrics"][name]
        assert all(0 <= metrics[k] <= 100 for k in ("RA", "UA", "TA", "MIA"))
        assert abs(metrics["TA"] - plain["metrics"][name]["TA"]) < 10  # the same model, up to rounding's drift


def test_original_checkpoint_from_a_bundle_can_be_brought_back(capsys, tmp_path):
    """--original accepts a .safetensors model: here the unlearned weights of an earlier run."""
    code, _, err = unlearn(capsys, "run", "--method", "ft", "--out", str(tmp_path / "a"), *FAST)
    assert code == 0, err
    weights = tmp_path / "a" / "unlearned.safetensors"
    code, _, err = unlearn(
        capsys, "run", "--method", "ft", "--original", str(weights), "--forget", "class:3", "--out", str(tmp_path / "b"), *FAST
    )
    assert code == 0, err
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["sources"]["original"] == str(weights)
    assert results["split"]["classes"] == [3]
    assert results["metrics"]["retrain"]["UA"] == 100.0  # Retrain never saw class 3


def test_interrupted_bundle_never_looks_complete(tmp_path, monkeypatch):
    """A failure (Ctrl-C here) while writing leaves no folder at the destination, and no staging folder."""
    from unlearnkit import bundle
    from unlearnkit.data.forget import random_split
    from unlearnkit.models import small_cnn
    from unlearnkit.sequence import RunResult
    from unlearnkit.spec import RunSpec

    result = RunResult(
        spec=RunSpec(), method="ft", split=random_split(20, 0.1, 0),
        metrics={"original": {}, "retrain": {}, "unlearned": {}}, sources={"original": "trained", "retrain": "trained"},
        unlearned=small_cnn(1, 10, width=2),
    )

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        bundle.write_bundle(result, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.incomplete-*"))


def test_the_same_spec_and_seed_repeat_bit_for_bit_and_the_bundle_says_under_what(capsys, tmp_path):
    from unlearnkit.checkpoint import read_state

    bundles = []
    for name in ("a", "b"):
        code, _, err = unlearn(capsys, "run", "--method", "ft", "--augment", "coun-cl", "--no-cache",
                               "--out", str(tmp_path / name), *FAST)
        assert code == 0, err
        bundles.append(tmp_path / name)
    first, second = (json.loads((b / "results.json").read_text()) for b in bundles)
    timing = ("seconds",)
    for kind in ("original", "retrain", "unlearned"):
        assert {k: v for k, v in first["metrics"][kind].items() if k not in timing} == \
            {k: v for k, v in second["metrics"][kind].items() if k not in timing}
    weights = [read_state(b / "unlearned.safetensors")[0] for b in bundles]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    environment = first["environment"]
    assert {"unlearnkit", "torch", "numpy", "python", "platform", "device", "compute"} <= set(environment)
    assert environment["determinism"]["torch_threads"] >= 1 and "deterministic_algorithms" in environment["determinism"]
