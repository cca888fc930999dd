"""Loggers: curves that append across a resume (rows after the resume checkpoint dropped), one
W&B run id per run folder, and logger=many."""

from __future__ import annotations

import csv
import socket
from pathlib import Path

import torch

from camexp.runs.loggers import resumable_csv_logger, run_id, trim_csv_log
from tests.helpers.configs import compose_config

REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


def test_logger_many_composes_csv_tensorboard_and_wandb(tmp_path: Path) -> None:
    cfg = compose_config("train", ["logger=many"], tmp_path / "run", tmp_path)
    assert set(cfg.logger) == {"csv", "tensorboard", "wandb"}
    assert cfg.logger.wandb._target_ == "camexp.runs.loggers.wandb_logger"


def test_csv_logger_appends_to_the_curves_of_earlier_epochs(tmp_path: Path) -> None:
    first = resumable_csv_logger(str(tmp_path))
    first.log_metrics({"train/loss": 1.0, "epoch": 0}, step=4)
    first.save()
    again = resumable_csv_logger(str(tmp_path))  # the resumed run's logger
    again.log_metrics({"train/loss": 0.5, "val/acc_top1": 0.2, "epoch": 1}, step=9)
    again.save()
    with (tmp_path / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["epoch"], r["train/loss"], r["val/acc_top1"]) for r in rows] == [("0", "1.0", ""), ("1", "0.5", "0.2")]


def test_rows_logged_after_the_resume_checkpoint_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n0,4,1.0\n1,9,0.9\n2,12,0.8\n2,14,0.7\n3,19,0.6\n")
    torch.save({"state_dict": {}, "epoch": 2, "global_step": 12}, tmp_path / "preempted.ckpt")
    assert trim_csv_log(path, tmp_path / "preempted.ckpt") == 2
    assert path.read_text().splitlines() == ["epoch,step,train/loss", "0,4,1.0", "1,9,0.9", "2,12,0.8"]


def test_wandb_run_id_is_kept_in_the_run_folder(tmp_path: Path) -> None:
    first = run_id(tmp_path)
    assert len(first) == 8 and run_id(tmp_path) == first
    assert (tmp_path / "wandb" / "camexp-run-id").read_text().strip() == first
