"""Runs that survive: same seed same numbers, kill or preemption then resume = uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camexp.checkpointing import (
    PREEMPTED_EXIT_CODE,
    AtomicCheckpointIO,
    find_resume_checkpoint,
    resolve_resume,
)
from camexp.errors import UserError
from camexp.train import train
from tests.conftest import TINY_SYNTHETIC, compose_config

REPO = Path(__file__).resolve().parents[1]
# 40 training images in batches of 8: 5 steps an epoch, 3 epochs
RUN = TINY_SYNTHETIC + ["trainer.max_epochs=3", "trainer.enable_progress_bar=false",
                        "callbacks.cam_pictures.num_images=1", "localization.cam_curve_interval=0.05"]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_same_seed_gives_identical_metrics_and_weights(tmp_path: Path, data_dir: Path) -> None:
    results = []
    for name in ("a", "b"):
        cfg = compose_config("train", RUN + ["trainer.max_epochs=2"], tmp_path / name, data_dir)
        results.append(train(cfg))
    assert results[0] == results[1]
    assert_same_weights(tmp_path / "a/checkpoints/last.ckpt", tmp_path / "b/checkpoints/last.ckpt")
    other = compose_config("train", RUN + ["trainer.max_epochs=2", "seed=7"], tmp_path / "c", data_dir)
    assert train(other)["train/loss"] != results[0]["train/loss"]


def _cli(run_dir: Path, data_dir: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "camexp.train", *RUN, f"paths.data_dir={data_dir}",
               f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True,
                          timeout=600)


def _signal_at(step: int, name: str) -> list[str]:
    return ["+callbacks.signal._target_=tests.signals.SignalAtStep",
            f"+callbacks.signal.step={step}", f"+callbacks.signal.signum={name}"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    done = _cli(run_dir, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(uninterrupted, tmp_path, data_dir) -> None:
    run_dir = tmp_path / "killed"
    killed = _cli(run_dir, data_dir, *_signal_at(7, "SIGKILL"))  # 5 steps an epoch: mid epoch 2
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    resumed = _cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    assert_same_weights(uninterrupted / "checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc_top1", "test/loss", "test/MaxBoxAccV2", "val/acc_top1", "val/loss"):
        assert got[key] == expected[key], key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_preemption_saves_and_resumes_exactly(name: str, uninterrupted, tmp_path, data_dir) -> None:
    run_dir = tmp_path / "preempted"
    # under SLURM the job is requeued: a stand-in scontrol records the call
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/scontrol.args\n")
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    stopped = _cli(run_dir, data_dir, *_signal_at(7, name), env=slurm)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert "requeued SLURM job 4242" in stopped.stdout
    assert (run_dir / "checkpoints" / "preempted.ckpt").is_file()
    assert "resume=auto" in stopped.stdout
    resumed = _cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "preempted.ckpt" in resumed.stdout
    assert_same_weights(uninterrupted / "checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc_top1", "test/loss", "test/MaxBoxAccV2"):
        assert got[key] == expected[key], key


def test_truncated_newest_checkpoint_falls_back_to_an_older_one(tmp_path: Path, capsys) -> None:
    io = AtomicCheckpointIO()
    old = tmp_path / "epoch_000.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, old)
    new = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, new)
    new.write_bytes(new.read_bytes()[:40])  # a kill mid-write without atomic saves
    os.utime(new, ns=(old.stat().st_mtime_ns + 10**9,) * 2)
    assert find_resume_checkpoint(tmp_path) == old
    assert f"skipping checkpoint {new}" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_resume_with_a_bad_ckpt_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"ckpt_path=.*nothing.ckpt cannot be resumed from: it does not exist"):
        resolve_resume(None, str(tmp_path / "nothing.ckpt"), tmp_path)
    with pytest.raises(UserError, match="resume='sometimes' is not allowed"):
        resolve_resume("sometimes", None, tmp_path)
    assert resolve_resume("auto", None, tmp_path / "empty") is None


def test_file_that_would_run_code_is_not_resumed(tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "payload": Path("/")}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="evil.ckpt cannot be resumed from"):
        resolve_resume(None, str(tmp_path / "evil.ckpt"), tmp_path)
