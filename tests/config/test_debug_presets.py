"""Each ``debug=`` preset runs through the configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camexp.runs.job import one_job
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

FAST = [*TINY_SYNTHETIC, "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
        "localization.cam_curve_interval=0.05"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fdr", "overfit", "limit", "profiler"])
def test_each_debug_preset_runs(tmp_path: Path, data_dir: Path, preset: str, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = {"overfit": ["trainer.max_epochs=2", "trainer.overfit_batches=2",
                         "trainer.check_val_every_n_epoch=1"],
             # the tiny split has 3-5 batches: the preset's fractions would give none
             "limit": ["trainer.max_epochs=1", "trainer.limit_train_batches=0.5",
                       "trainer.limit_val_batches=0.5", "trainer.limit_test_batches=0.5"],
             "fdr": [], "profiler": []}[preset]
    out = tmp_path / "run"
    loggers = ["logger=many"] if preset == "limit" else []
    cfg = compose_config("train", [*FAST, f"debug={preset}", *loggers, *extra], out, data_dir)
    with one_job():  # closes the W&B run, as after every job of a sweep
        metrics = train(cfg)
    assert (out / "config_tree.txt").is_file()
    assert "train/loss" in " ".join(metrics)
    if preset == "fdr":
        assert cfg.trainer.fast_dev_run is True
        assert not (out / "checkpoints").exists()  # fast_dev_run saves nothing
        assert "test/acc_top1" in metrics
    if preset == "overfit":
        assert cfg.trainer.overfit_batches == 2
        assert {"val/acc_top1", "test/acc_top1"} <= set(metrics)
    if preset == "limit":
        assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 0.5
        assert (out / "checkpoints" / "last.ckpt").is_file()
        assert (out / "csv" / "metrics.csv").is_file() and list((out / "tensorboard").rglob("events.*"))
        assert list((out / "wandb").glob("offline-run-*"))  # logger=many: all three wrote
    if preset == "profiler":
        reports = sorted(p.name for p in (out / "profiler").iterdir())
        assert any(name.startswith("fit-profile") for name in reports), reports
        text = (out / "profiler" / next(n for n in reports if n.startswith("fit-profile"))).read_text()
        assert "run_training_epoch" in text or "Action" in text
    assert json.loads((out / "metrics.json").read_text())


def test_a_fast_dev_run_leaves_no_run_and_no_ledger_entry(tmp_path: Path, data_dir: Path, capsys) -> None:
    """debug=fdr: its folder is under outputs/train/debug/, apart from the runs; its one-batch
    test is not counted in the test ledger; the report leaves it out."""
    from camexp.report.collect import find_runs

    cfg = compose_config("train", [*FAST, "debug=fdr"], tmp_path / "outputs" / "train" / "debug" / "x", data_dir)
    assert "/train/debug/" in cfg.hydra.run.dir and "/debug/multiruns/" in cfg.hydra.sweep.dir
    cfg.paths.log_dir = str(tmp_path / "outputs")
    train(cfg)
    assert not (tmp_path / "outputs" / "test_ledger.jsonl").exists()
    assert not (tmp_path / "outputs" / "train" / "debug" / "x" / "test_record.json").exists()
    assert "not counted in the test ledger" in capsys.readouterr().out
    (tmp_path / "outputs" / "train" / "debug" / "x" / ".hydra").mkdir(exist_ok=True)
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        cfg.pop("hydra")
    OmegaConf.save(cfg, tmp_path / "outputs" / "train" / "debug" / "x" / ".hydra" / "config.yaml")
    assert find_runs(tmp_path / "outputs") == []
