"""One run per folder, records and logs that survive, errors as one paragraph (issue 13)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from camexp.core.errors import RunFolderLocked, UserError
from camexp.runs.folder import LOCK_NAME, RunFolder, is_main_process

REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


def _dead_pid() -> int:
    done = subprocess.run(["true"])
    assert done.returncode == 0
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _plant_lock(folder: Path, age_s: float = 0.0, **holder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    lock.write_text(json.dumps(holder))
    stamp = time.time() - age_s
    os.utime(lock, (stamp, stamp))
    return lock


# -- 2: the lock -----------------------------------------------------------------------------------


def test_lock_of_a_live_process_refuses_and_is_released_after_the_run(tmp_path: Path) -> None:
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock = _plant_lock(tmp_path, pid=holder.pid, host=HOST)
        with pytest.raises(RunFolderLocked, match=rf"{tmp_path} is in use by process {holder.pid} on host "
                                                  rf"{HOST} \(lock .*\.camexp\.lock.*delete"):
            RunFolder(tmp_path, main_process=True).__enter__()
        assert json.loads(lock.read_text())["pid"] == holder.pid  # the holder's lock is untouched
    finally:
        holder.kill()
        holder.wait()
    with RunFolder(tmp_path, main_process=True):
        mine = json.loads(lock.read_text())
        assert mine["pid"] == os.getpid() and mine["host"] == HOST
    assert not lock.exists()


def test_stale_locks_are_taken_over_with_a_message(tmp_path: Path, capsys, monkeypatch) -> None:
    # a dead process on this host
    _plant_lock(tmp_path / "a", pid=_dead_pid(), host=HOST)
    with RunFolder(tmp_path / "a", main_process=True):
        pass
    assert "is no longer running" in capsys.readouterr().out
    # another host: alive while its heartbeat is fresh, stale after stale_after_s
    _plant_lock(tmp_path / "b", age_s=5, pid=1, host="gpu-node-7")
    with pytest.raises(RunFolderLocked, match="process 1 on host gpu-node-7"):
        RunFolder(tmp_path / "b", stale_after_s=600, main_process=True).__enter__()
    _plant_lock(tmp_path / "b", age_s=700, pid=1, host="gpu-node-7")
    with RunFolder(tmp_path / "b", stale_after_s=600, main_process=True):
        pass
    assert "its heartbeat is 70" in capsys.readouterr().out
    # the same SLURM job before its requeue (SLURM never runs one job twice at once)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    _plant_lock(tmp_path / "c", pid=1, host="gpu-node-7", slurm_job="4242")
    with RunFolder(tmp_path / "c", main_process=True):
        pass
    assert "taken by SLURM job 4242 before it was requeued" in capsys.readouterr().out


def test_heartbeat_refreshes_the_lock(tmp_path: Path) -> None:
    with RunFolder(tmp_path, heartbeat_s=0.05, main_process=True) as folder:
        old = time.time() - 1000
        os.utime(folder.lock, (old, old))
        time.sleep(0.5)
        assert time.time() - folder.lock.stat().st_mtime < 100


def test_extra_ddp_processes_do_not_take_the_lock(tmp_path: Path) -> None:
    assert is_main_process({}) and is_main_process({"LOCAL_RANK": "0", "NODE_RANK": "0"})
    assert not is_main_process({"LOCAL_RANK": "1"}) and not is_main_process({"NODE_RANK": "1", "LOCAL_RANK": "0"})
    assert not is_main_process({"SLURM_PROCID": "3"})
    lock = _plant_lock(tmp_path, pid=os.getppid(), host=HOST)  # the job's main process holds it
    with RunFolder(tmp_path, main_process=False):  # rank 1 of the same job: not refused
        pass
    assert lock.exists()


# -- 1: the run folder's record survives a failed start ---------------------------------------------


def test_failed_start_puts_back_the_record_of_the_last_good_start(tmp_path: Path) -> None:
    record = tmp_path / ".hydra"
    record.mkdir()
    (record / "overrides.yaml").write_text("- seed=1\n")
    with RunFolder(tmp_path, main_process=True) as folder:
        folder.started()
    (record / "overrides.yaml").write_text("- seed=1\n- model.head.width=64\n")  # Hydra, next start
    with pytest.raises(UserError), RunFolder(tmp_path, main_process=True):
        raise UserError("another model config")
    assert (record / "overrides.yaml").read_text() == "- seed=1\n"
    # a refused start (lock held) puts it back too
    holder = subprocess.Popen(["sleep", "60"])
    try:
        _plant_lock(tmp_path, pid=holder.pid, host=HOST)
        (record / "overrides.yaml").write_text("- seed=2\n")
        with pytest.raises(RunFolderLocked):
            RunFolder(tmp_path, main_process=True).__enter__()
        assert (record / "overrides.yaml").read_text() == "- seed=1\n"
    finally:
        holder.kill()
        holder.wait()


def test_the_run_that_takes_the_lock_keeps_its_own_hydra_record(tmp_path: Path, data_dir: Path) -> None:
    """Two starts in one folder at once: Hydra wrote both records before either tried the lock,
    the loser's last; the run that holds the lock must run under its own (issue 19)."""
    import yaml

    from camexp.train import train
    from tests.helpers.configs import TINY_SYNTHETIC, compose_config
    from tests.helpers.runs import fake_run

    run_dir = tmp_path / "run"
    cfg = compose_config("train", [*TINY_SYNTHETIC, "seed=7", "train=false", "test=false",
                                    "trainer.enable_progress_bar=false"], run_dir, data_dir)
    fake_run(run_dir, {"seed": 999, "data": {"batch_size": 2}}, None, overrides=("seed=999",))
    train(cfg)
    for folder in (run_dir / ".hydra", run_dir / ".hydra" / "last_start"):
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["seed"] == 7 and config["data"]["batch_size"] == 8 and "hydra" not in config
        overrides = yaml.safe_load((folder / "overrides.yaml").read_text())
        assert "seed=7" in overrides and "seed=999" not in overrides
        hydra = yaml.safe_load((folder / "hydra.yaml").read_text())["hydra"]
        assert "seed=7" in hydra["overrides"]["task"]


# -- 1: logs across resume -----------------------------------------------------------------------------


# -- 6, 8, 9: one paragraph, exit 2 ---------------------------------------------------------------------




def test_a_start_that_fails_is_shown_as_such_not_as_unfinished(tmp_path: Path, capsys) -> None:
    """A run refused before training (here a dataset error) leaves start_failed.txt with the
    reason; the report shows it as failed to start; a later successful start clears it."""
    import csv

    from camexp.core.errors import DatasetError
    from camexp.report.build import make_report
    from tests.helpers.runs import fake_run

    run = fake_run(tmp_path / "runs" / "bad", {"task_name": "train", "model": {"arch": "tiny"}}, None)
    crashed = fake_run(tmp_path / "runs" / "crashed", {"task_name": "train", "model": {"arch": "tiny"}}, None)
    with pytest.raises(DatasetError), RunFolder(run):
        raise DatasetError("No CUB-200-2011 at /data/CUB. Set data.root.")
    assert (run / "start_failed.txt").read_text() == "DatasetError: No CUB-200-2011 at /data/CUB. Set data.root.\n"
    with pytest.raises(RuntimeError), RunFolder(crashed) as folder:  # started, then crashed
        folder.started()
        raise RuntimeError("killed")
    assert not (crashed / "start_failed.txt").exists()
    make_report(tmp_path / "runs")
    assert "2 runs (0 finished, 1 unfinished, 1 failed to start)" in capsys.readouterr().out
    with (tmp_path / "runs" / "report" / "runs.csv").open() as file:
        status = {row["run"]: row["status"] for row in csv.DictReader(file)}
    assert status == {"bad": "failed to start", "crashed": "unfinished"}
    with RunFolder(run) as folder:
        folder.started()
    assert not (run / "start_failed.txt").exists()
