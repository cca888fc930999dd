"""Runs read from a file: plain progress lines, camexp's messages in train.log/eval.log, no
framework noise; the README's custom-dataset walkthrough end to end (train, eval, report)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from camexp.callbacks.progress import format_duration
from camexp.callbacks.summary import format_summary

PROGRESS = re.compile(r"epoch 1/2 \| step 1/1 \| [\d.]+ img/s \| ETA epoch 0:00:00, run \d:\d\d:\d\d "
                      r"\(training steps\) \| loss \d+\.\d{4}")
EPOCH = re.compile(r"epoch 2/2 done in \d:\d\d:\d\d: train/loss \d+\.\d{4}, val/loss \d+\.\d{4}, "
                   r"val/acc_top1 \d\.\d{4}")


def test_durations_and_the_summary_without_flops() -> None:
    assert (format_duration(3725), format_duration(59.6), format_duration(float("nan"))) == ("1:02:05", "0:01:00", "?")
    table = format_summary([(" ", ["0"]), ("Name", ["net"]), ("Type", ["CAMNet"]), ("Params", ["312 K"]),
                            ("Mode", ["train"]), ("FLOPs", ["0"])], 312_000, 312_000, 1.25)
    assert "FLOPs" not in table and "net  | CAMNet | 312 K " in table
    assert "312 K     Total params" in table and "0         Non-trainable params" in table


def _run_to_file(module: str, args: list[str], cwd: Path, name: str) -> tuple[int, str, str]:
    """Run ``python -m module args`` with stdout and stderr sent to files (not a terminal)."""
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, stdout=stdout, stderr=stderr,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600).returncode
    return code, out.read_text(), err.read_text()


@pytest.mark.slow
def test_custom_dataset_train_eval_report_from_files(tmp_path: Path) -> None:
    """The README's "Training on real data" custom case: a 3-class CUB-layout folder trained at
    a non-default size without data.num_classes, evaluated with no repeated override, reported."""
    from tests.helpers.datasets import write_cub

    cub = write_cub(tmp_path / "mybirds")
    sizes = ["data.resize_size=[64,64]", "data.crop_size=56", "data.eval_size=[56,56]"]
    code, out, err = _run_to_file("camexp.train", [
        "data=cub", f"data.root={cub}", *sizes, "data.batch_size=2", "data.num_workers=0",
        "data.val_fraction=0.5", "trainer.max_epochs=2", "callbacks.progress.interval_s=0",
        "callbacks.cam_pictures.num_images=2", "localization.cam_curve_interval=0.01"], tmp_path, "train")
    assert code == 0, err[-3000:]
    [run] = (tmp_path / "outputs" / "train" / "runs").iterdir()
    log = (run / "train.log").read_text()
    for text in (out, log):
        assert PROGRESS.search(text), text[-2000:]
        assert EPOCH.search(text), text[-2000:]
        assert f"Run folder: {run}" in text and "camexp: test: top-1 " in text
        assert "Total params" in text
        assert re.search(r"camexp: data checked: CUB-200-2011 \(official split\) at .*: 3 classes, "
                         r"images train 3, val 3, test 6\.", text)
    assert "FLOPs" not in out + err and "litlogger" not in out + err
    assert "Skipping setting a default" not in out + err
    metrics = json.loads((run / "metrics.json").read_text())
    assert isinstance(metrics.pop("warnings"), list)

    ckpt = next((run / "checkpoints").glob("epoch_*.ckpt"))
    code, out, err = _run_to_file("camexp.eval", [f"ckpt_path={ckpt}", "data=cub", f"data.root={cub}",
                                                  "data.num_workers=0"], tmp_path, "eval")
    assert code == 0, err[-3000:]
    [eval_run] = (tmp_path / "outputs" / "eval" / "runs").iterdir()
    evaluated = json.loads((eval_run / "metrics.json").read_text())
    for key, value in metrics.items():
        if key.startswith("test/"):
            assert evaluated[key] == value, key  # the training run's numbers, exactly
    eval_log = (eval_run / "eval.log").read_text()
    assert "camexp: evaluating with the training run's data and localization settings" in eval_log
    assert "data.eval_size=[56, 56]" in eval_log and "data.num_classes=3" in eval_log
    assert f"Run folder: {eval_run}" in eval_log

    code, out, err = _run_to_file("camexp.report", [str(tmp_path / "outputs")], tmp_path, "report")
    assert code == 0, err[-3000:]
    assert "2 runs (2 finished, 0 unfinished): 2 rows in the runs table" in out
    with (tmp_path / "outputs" / "report" / "runs.csv").open() as file:
        rows = {row["kind"]: row for row in csv.DictReader(file)}
    assert rows["train"]["data"] == rows["eval"]["data"] == "cub (CUB_200_2011, 56x56)"
    assert rows["eval"]["model"] == "tinynet_gap" and rows["eval"]["pool"] == "gap"
    assert float(rows["eval"]["top-1 %"]) == pytest.approx(100 * metrics["test/acc_top1"])
