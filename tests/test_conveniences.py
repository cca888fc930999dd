"""The template's conveniences: debug= presets, the config tree, tags in sweeps, logger=many."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camexp.core.errors import MissingTagsError
from camexp.runs.job import one_job
from camexp.runs.start import require_tags, save_config_tree
from camexp.train import train
from tests.conftest import TINY_SYNTHETIC, compose_config

FAST = [*TINY_SYNTHETIC, "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
        "localization.cam_curve_interval=0.05"]


def test_config_tree_is_printed_and_saved(tmp_path: Path, capsys) -> None:
    cfg = compose_config("train", ["model.pool=gmp"], tmp_path / "run", tmp_path)
    path = save_config_tree(cfg, tmp_path / "run")
    text = path.read_text()
    assert path.name == "config_tree.txt"
    assert text.startswith("CONFIG")
    assert "pool: gmp" in text and "max_epochs: 15" in text  # resolved (${data.epochs})
    assert text.index("data") < text.index("model") < text.index("trainer")
    assert "\x1b[" not in text  # no colour codes in the file
    assert "pool: gmp" in capsys.readouterr().out


def test_sweeps_need_tags(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    cfg = compose_config("train", [], tmp_path / "run", tmp_path)
    require_tags(cfg)  # a single run needs none
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(MissingTagsError, match=r"This sweep has no tags.*tags=\[search,cub,vgg16\]"):
        require_tags(cfg)
    cfg.tags = ["search"]
    require_tags(cfg)


def test_a_sweep_without_tags_stops_with_the_message(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "camexp.train", "-m", "model.pool=gap,gmp",
                           f"paths.data_dir={tmp_path}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "MissingTagsError: This sweep has no tags" in done.stderr
    assert "Traceback" not in done.stderr


def test_logger_many_composes_csv_tensorboard_and_wandb(tmp_path: Path) -> None:
    cfg = compose_config("train", ["logger=many"], tmp_path / "run", tmp_path)
    assert set(cfg.logger) == {"csv", "tensorboard", "wandb"}
    assert cfg.logger.wandb._target_ == "camexp.runs.loggers.wandb_logger"


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
