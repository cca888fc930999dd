"""bench/bench_gpu.py on a machine without a GPU: it says so and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the bench would measure")
def test_bench_gpu_without_a_gpu_says_so_and_exits_0() -> None:
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "--steps", "1"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "bench_gpu: no CUDA GPU is visible (torch.cuda.is_available() is False), so nothing is "
        "measured. Run `make bench-gpu` on a machine with one.")
    assert "Traceback" not in done.stderr
