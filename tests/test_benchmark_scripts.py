"""The GPU benchmark script still runs (on CPU, tiny), so that it works the day a GPU is there to measure."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_gpu_throughput_script_prints_a_row_per_setting():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--device", "cpu", "--width", "4",
         "--batch-size", "8", "--warmup", "1", "--steps", "2", "--settings", "fp32,bf16", "--peak-tflops", "1e-6,1e-6"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^\| (fp32|bf16) \| ([\d,]+) \| ([\d.]+)% \|$", result.stdout, re.M)
    assert [r[0] for r in rows] == ["fp32", "bf16"], result.stdout
    assert all(int(r[1].replace(",", "")) > 0 and float(r[2]) > 0 for r in rows)


def test_gpu_throughput_script_refuses_without_a_gpu_in_one_line():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script measures it instead")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode != 0 and "no CUDA device" in result.stderr and "Traceback" not in result.stderr


def test_precision_script_pairs_every_row_and_measure_by_seed(tmp_path):
    tiny = ["--data", "digits", "--methods", "ft", "--augment", "none", "--seeds", "2", "--device", "cpu", "--quiet",
            "--set", "base.data.train_subset=240", "--set", "base.data.test_subset=80", "--set", "base.train.epochs=3",
            "--set", "params.ft.method.params.epochs=1"]  # 3 epochs: a model that has learned something
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "precision.py"), "--out", str(tmp_path), "--", *tiny],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"^\| random:0.1 \| (\S+) \| (\S+) \| 2 \| [\d.]+ \| [+-][\d.]+ \[[+-][\d.]+, [+-][\d.]+\]\*? \| ([\d.]+|inf|—) \|$",
                      result.stdout, re.M)
    measures = {"Original": ["RA", "UA", "TA", "MIA"], "Retrain": ["RA", "UA", "TA", "MIA"],
                "ft": ["RA", "UA", "TA", "MIA", "avg_gap"]}
    assert {row[:2] for row in rows} >= {(r, m) for r, ms in measures.items() for m in ms}, result.stdout
    for precision in ("fp32", "bf16"):  # each grid trained in its own precision, Original and Retrain included
        cells = json.loads((tmp_path / precision / "results.json").read_text())["cells"]
        assert {c["environment"]["compute"]["precision"] for c in cells} == {precision}
        assert {c["variant"] for c in cells} >= {"Original", "Retrain", "ft"}


def test_cl_effect_between_scenarios_pairs_the_seeds_of_both_scenarios(tmp_path):
    def cell(variant, scenario, seed, ra):  # only RA moves, so an Avg Gap is |RA - Retrain's RA| / 4
        return {"variant": variant, "method": None if variant == "Retrain" else "ft", "scenario": scenario,
                "seed": seed, "augment": ["coun-cl"] if "+" in variant else [],
                "metrics": {"RA": ra, "UA": 5.0, "TA": 90.0, "MIA": 10.0, "avg_gap": abs(ra) / 4}}

    cells = [cell("Retrain", s, seed, 0.0) for s in ("random:0.1", "random:0.5") for seed in (0, 1, 2)]
    cells += [cell("ft", s, seed, 1.0) for s in ("random:0.1", "random:0.5") for seed in (0, 1, 2)]
    cells += [cell("ft+coun-cl", "random:0.1", 0, 2.0), cell("ft+coun-cl", "random:0.1", 1, 4.0),
              cell("ft+coun-cl", "random:0.5", 0, 5.0), cell("ft+coun-cl", "random:0.5", 1, 3.0),
              cell("ft+coun-cl", "random:0.5", 2, 9.0)]  # seed 2 has no 10% cell to pair with
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"cells": cells}))
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cl_effect_between_scenarios.py"), str(results),
                             "random:0.1", str(results), "random:0.5"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # the same 4 resamples of seeds 0 and 1 in both: effects (1, 2, 2, 3) / 4 and (4, 3, 3, 2) / 4, so changes
    # (3, 1, 1, -1) / 4: mean 0.25, linear percentiles -0.2125 and 0.7125, a quarter at or below 0 (p 0.5)
    assert "| ft | 2 | +0.50 [+0.27, +0.73] | +0.75 [+0.52, +0.98] | +0.25 [-0.21, +0.71] | 0.500 | 0.500 |" \
        in result.stdout, result.stdout
