"""The GPU benchmark script still runs (on CPU, tiny), so that it works the day a GPU is there to measure."""

from __future__ import annotations

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
