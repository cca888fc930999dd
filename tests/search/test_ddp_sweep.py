"""The reproduction path end to end on CPU: a sweep over backbones x GAP/GMP, a DDP sweep on
2 gloo processes, and the report comparing them with their presets' numbers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.configs import TINY_SYNTHETIC

QUICK = TINY_SYNTHETIC + ["trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                          "callbacks.cam_pictures.num_images=2", "localization.cam_curve_interval=0.05"]


def _multirun(cwd: Path, data_dir: Path, *overrides: str) -> Path:
    """Run a sweep in ``cwd``; return the one sweep folder it made."""
    before = set((cwd / "outputs/train/multiruns").glob("*")) if (cwd / "outputs").exists() else set()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "camexp.train", "-m", *QUICK, *overrides,
                           f"paths.data_dir={data_dir}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    made = set((cwd / "outputs/train/multiruns").glob("*")) - before
    assert len(made) == 1, f"one sweep folder expected, got {sorted(made)}"
    return made.pop()


@pytest.mark.slow
def test_sweeps_with_and_without_ddp_then_the_report(tmp_path: Path, data_dir: Path) -> None:
    plain = _multirun(tmp_path, data_dir, "experiment=synthetic_gap,synthetic_gmp",
                      "model=tinynet_gap,resnet18_gap", "model.pretrained=false")
    jobs = sorted(p for p in plain.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        assert "test/MaxBoxAccV2" in json.loads((job / "metrics.json").read_text())

    ddp = _multirun(tmp_path, data_dir, "experiment=synthetic_gap,synthetic_gmp",
                    "trainer.devices=2", "+trainer.strategy=ddp")
    jobs = sorted(p for p in ddp.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]  # rank 1 started no sweep of its own
    for job in jobs:
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 worked in this job's folder
        metrics = json.loads((job / "metrics.json").read_text())
        assert "test/acc_top1" in metrics  # every rank found the best checkpoint and tested it
        assert len(list((job / "checkpoints").glob("epoch_*.ckpt"))) == 1

    report = subprocess.run([sys.executable, "-m", "camexp.report", str(tmp_path / "outputs")],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    folder = tmp_path / "outputs" / "report"
    rows = list(csv.DictReader((folder / "report.csv").open()))
    runs = {row.get("run", "") for row in rows}
    assert any(str(ddp.name) in run for run in runs) and any(str(plain.name) in run for run in runs)
    assert "tinynet GAP" in (folder / "report.md").read_text()
    assert list(folder.glob("*.png"))
