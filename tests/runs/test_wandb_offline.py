"""``logger=wandb`` without network or API key: offline into the run folder, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from camexp.core.errors import UserError
from camexp.runs import loggers
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config


def test_mode_is_offline_without_a_key_and_online_only_with_key_and_network(tmp_path: Path, monkeypatch) -> None:
    home = {"HOME": str(tmp_path)}
    assert loggers.wandb_mode(env=home) == "offline"
    assert loggers.wandb_mode(env={**home, "WANDB_MODE": "disabled"}) == "disabled"
    assert loggers.wandb_mode("online", env=home) == "online"
    monkeypatch.setattr(loggers, "host_reachable", lambda host, **_: False)
    assert loggers.wandb_mode(env={**home, "WANDB_API_KEY": "k" * 40}) == "offline"
    monkeypatch.setattr(loggers, "host_reachable", lambda host, **_: host == "api.wandb.ai")
    assert loggers.wandb_mode(env={**home, "WANDB_API_KEY": "k" * 40}) == "online"
    assert loggers.wandb_mode(env=home) == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert loggers.has_api_key(home) and loggers.wandb_mode(env=home) == "online"
    with pytest.raises(UserError, match="W&B mode 'cloud'"):
        loggers.wandb_mode(env={**home, "WANDB_MODE": "cloud"})


def test_sweep_group_and_run_name() -> None:
    sweep = {"multirun": True, "job_name": "train", "sweep_dir": "/x/outputs/train/multiruns/2026-01-01_10-00-00",
             "job_num": 3, "experiment": "cub_googlenet_gap"}
    assert loggers.sweep_group(sweep) == "train-2026-01-01_10-00-00"
    assert loggers.run_name(sweep, None) == "cub_googlenet_gap#3"
    single = {"multirun": False, "job_name": "train", "experiment": None}
    assert loggers.sweep_group(single) is None and loggers.run_name(single, "x") == "x"


def test_training_with_logger_wandb_runs_offline_in_the_run_folder(tmp_path: Path, data_dir: Path,
                                                                   monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "home" / ".cache" / "wandb"))

    def no_network(*args, **kwargs):
        raise AssertionError("camexp tried the network without an API key")

    monkeypatch.setattr(loggers, "host_reachable", no_network)
    run = tmp_path / "run"
    overrides = ["experiment=synthetic_gmp", "logger=wandb", *TINY_SYNTHETIC, "trainer.max_epochs=1",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "callbacks.cam_pictures.num_images=1", "trainer.enable_progress_bar=false",
                 "localization.cam_curve_interval=0.01"]
    cfg = compose_config("train", overrides, run, data_dir)
    assert cfg.logger.wandb._target_ == "camexp.runs.loggers.wandb_logger"
    start = time.monotonic()
    try:
        metrics = train(cfg)
    finally:
        wandb.finish()
    # a network wait would take minutes; a loaded CI machine takes well under this
    assert time.monotonic() - start < 240
    assert "test/acc_top1" in metrics and (run / "metrics.json").is_file()
    # the CSV logger comes along: the curves the README promises are in csv/metrics.csv
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/acc_top1" in header and "lr-SGD/head" in header
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    records = list(offline_runs[0].glob("run-*.wandb"))
    assert records and records[0].stat().st_size > 0
    # W&B's service process writes the record after finish() returns: wait for it (bounded)
    needed = (b"synthetic_gmp", b"Synthetic demo", b"tinynet GMP", b"gmp")
    deadline = time.monotonic() + 60
    data = records[0].read_bytes()
    while not all(text in data for text in needed) and time.monotonic() < deadline:
        time.sleep(1)
        data = records[0].read_bytes()
    for text in needed:
        assert text in data, text  # tags, the composed config and its published rows are logged
