"""One run per folder, records and logs that survive, errors as one paragraph (issue 13)."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from camexp.core.errors import RunFolderLocked, UserError, exit_on_user_error, user_message
from camexp.runs.folder import LOCK_NAME, RunFolder, is_main_process
from camexp.runs.loggers import resumable_csv_logger, run_id, trim_csv_log
from camexp.train import train
from tests.conftest import TINY_SYNTHETIC, compose_config, write_cub

REPO = Path(__file__).resolve().parents[1]
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


# -- 1: logs across resume -----------------------------------------------------------------------------


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


# -- 6, 8, 9: one paragraph, exit 2 ---------------------------------------------------------------------


def test_weights_error_raised_in_instantiate_exits_2_as_one_paragraph(tmp_path: Path, capsys) -> None:
    cfg = compose_config("train", TINY_SYNTHETIC + [f"model.weights_path={tmp_path}/nothing.pth"], tmp_path, tmp_path)
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(lambda: instantiate(cfg.model, _convert_="all"))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"camexp: WeightsError: Weights file {tmp_path}/nothing.pth does not exist.")
    assert "InstantiationException" not in err and "Error in call to target" not in err
    assert len(err.strip().splitlines()) == 1


def test_worker_traceback_is_reduced_to_the_message() -> None:
    from camexp.core.errors import DatasetError

    wrapped = DatasetError("Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most "
                           "recent call last):\n  File \"x.py\", line 3, in f\n    raise\n"
                           "camexp.data.cub.DatasetError: Cannot read image /d/a.jpg: bad. Replace it.\n")
    assert user_message(wrapped) == "Cannot read image /d/a.jpg: bad. Replace it."


@pytest.mark.slow
def test_bad_train_image_found_by_a_loader_worker_is_one_paragraph(tmp_path: Path, capsys) -> None:
    cub = write_cub(tmp_path / "cub", per_class=6)
    bad = cub / "images" / "001.Bird_1" / "Bird_1_0000_1.jpg"  # a train image
    bad.write_bytes(bad.read_bytes()[:1468])  # header intact: only decoding finds it
    cfg = compose_config("train", [
        "data=cub", f"data.root={cub}", "data.num_classes=3", "data.resize_size=[48,48]", "data.crop_size=40",
        "data.eval_size=[40,40]", "data.batch_size=4", "data.num_workers=1", "data.persistent_workers=false",
        "data.check_sample=0", "data.val_fraction=0.34", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "callbacks.cam_pictures.num_images=1"], tmp_path / "run", tmp_path / "data")
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(lambda: train(cfg))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"camexp: DatasetError: Cannot read image {bad}" in err
    assert "set data.on_bad_image=skip" in err and "resume=auto" in err
    assert "Traceback" not in err and "worker process" not in err
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released


def test_output_folder_that_cannot_be_written_is_one_paragraph(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = subprocess.run([sys.executable, "-m", "camexp.eval_maps", f"maps_dir={tmp_path}",
                           f"metadata_dir={tmp_path}", f"hydra.run.dir={blocker}/run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"camexp: OutputFolderError: cannot write {blocker}/run (Not a directory). "
                                  "Point the run at a folder you can write: hydra.run.dir=")
    assert "Traceback" not in done.stderr
    # Hydra's own mistakes still read as Hydra writes them
    typo = subprocess.run([sys.executable, "-m", "camexp.eval_maps", "no_such_key=1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert typo.returncode == 1 and "Could not override 'no_such_key'" in typo.stderr
    assert "Traceback" not in typo.stderr


@pytest.mark.slow
def test_train_cli_weights_error_exits_2_without_hydra_prefix(tmp_path: Path, data_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "camexp.train", *TINY_SYNTHETIC, f"paths.data_dir={data_dir}",
                           f"hydra.run.dir={tmp_path}/run", f"model.weights_path={tmp_path}/nothing.pth"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "camexp: WeightsError: Weights file" in done.stderr
    assert "Error executing job" not in done.stderr and "Traceback" not in done.stderr
