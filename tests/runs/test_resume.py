"""Runs that survive: same seed same numbers, kill or preemption then resume = uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from camexp.core.errors import UserError
from camexp.runs.checkpoints import (
    PREEMPTED_EXIT_CODE,
    AtomicCheckpointIO,
    find_resume_checkpoint,
    resolve_resume,
)
from camexp.train import train
from tests.helpers.configs import compose_config
from tests.helpers.runs import (
    RESUMABLE_RUN,
    assert_same_metrics,
    assert_same_weights,
    signal_at,
    train_cli,
)


def test_same_seed_gives_identical_metrics_and_weights(tmp_path: Path, data_dir: Path) -> None:
    # in this process, without worker processes (quick); the resume tests below use workers
    quick = [o for o in RESUMABLE_RUN if not o.startswith("data.num_workers=")] + [
        "data.num_workers=0", "trainer.max_epochs=2"]
    results = []
    for name in ("a", "b"):
        cfg = compose_config("train", quick, tmp_path / name, data_dir)
        results.append(train(cfg))
    assert results[0] == results[1]
    assert_same_weights(tmp_path / "a/checkpoints/last.ckpt", tmp_path / "b/checkpoints/last.ckpt")
    other = compose_config("train", quick + ["seed=7"], tmp_path / "c", data_dir)
    assert train(other)["train/loss"] != results[0]["train/loss"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    done = train_cli(run_dir, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(uninterrupted, tmp_path, data_dir) -> None:
    # with 2 DataLoader workers (RESUMABLE_RUN): the resumed epoch used to replay epoch 0's
    # order and crops (issue 19)
    run_dir = tmp_path / "killed"
    killed = train_cli(run_dir, data_dir, *signal_at(7, "SIGKILL"))  # 5 steps an epoch: mid epoch 2
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    resumed = train_cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "last.ckpt" in resumed.stdout
    assert_same_weights(uninterrupted / "checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    assert_same_metrics(uninterrupted, run_dir)
    # the curves of the epochs before the kill are kept, none logged twice (issue 13)
    assert _val_epochs(run_dir) == _val_epochs(uninterrupted) == [0, 1, 2]


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
    stopped = train_cli(run_dir, data_dir, *signal_at(7, name), env=slurm)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    assert "requeued SLURM job 4242" in stopped.stdout
    assert (run_dir / "checkpoints" / "preempted.ckpt").is_file()
    assert "resume=auto" in stopped.stdout
    resumed = train_cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "preempted.ckpt" in resumed.stdout
    assert_same_weights(uninterrupted / "checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    assert_same_metrics(uninterrupted, run_dir)


# a method with random draws of its own (HaS hides patches drawn per step) on top of the crops
HAS = ("method=has",)


@pytest.fixture(scope="module")
def uninterrupted_has(tmp_path_factory, data_dir: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted_has"
    done = train_cli(run_dir, data_dir, *HAS)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGKILL", "SIGTERM"])
def test_has_stopped_then_resumed_with_workers_equals_uninterrupted(name, uninterrupted_has, tmp_path,
                                                                    data_dir) -> None:
    run_dir = tmp_path / "has"
    stopped = train_cli(run_dir, data_dir, *HAS, *signal_at(7, name))
    assert stopped.returncode == (-signal.SIGKILL if name == "SIGKILL" else PREEMPTED_EXIT_CODE)
    resumed = train_cli(run_dir, data_dir, *HAS, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ("preempted.ckpt" if name == "SIGTERM" else "last.ckpt") in resumed.stdout
    assert_same_weights(uninterrupted_has / "checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    assert_same_metrics(uninterrupted_has, run_dir)


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


@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty (0 bytes)"),
    (b"epoch 3 was fine\n", "it is not a file written by torch.save (17 bytes of something else)"),
    ("truncated", "it is truncated or damaged ("),
])
def test_an_unreadable_checkpoint_is_named_with_the_reason_in_words(tmp_path: Path, capsys, content,
                                                                    reason: str) -> None:
    path = tmp_path / "last.ckpt"
    if content == "truncated":
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(100)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(UserError) as error:
        resolve_resume(None, str(path), tmp_path)
    assert f"cannot be resumed from: {reason}" in str(error.value)
    assert find_resume_checkpoint(tmp_path) is None
    assert f"skipping checkpoint {path}: cannot be read ({reason}" in capsys.readouterr().out


def test_file_that_would_run_code_is_not_resumed(tmp_path: Path) -> None:
    torch.save({"state_dict": {}, "payload": Path("/")}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="evil.ckpt cannot be resumed from"):
        resolve_resume(None, str(tmp_path / "evil.ckpt"), tmp_path)


# -- issue 13: runs that lose nothing ------------------------------------------------------------


def _val_epochs(run_dir: Path) -> list[int]:
    import csv

    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        return [int(float(row["epoch"])) for row in csv.DictReader(file) if row.get("val/acc_top1")]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run folder but the lock, by relative path, less ``train.log``: a later
    start appends to the log (checked apart: the old lines stay)."""
    files = {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
             if p.is_file() and p.name != ".camexp.lock"}
    return {key: value for key, value in files.items() if key != "train.log"}


def _copy_run(source: Path, target: Path) -> Path:
    """A plain copy (``cp -r``): every file gets a new modification time."""
    import shutil

    shutil.copytree(source, target, copy_function=shutil.copy)
    return target


@pytest.mark.slow
def test_failed_resume_of_a_copied_run_with_another_model_keeps_the_finished_record(
        uninterrupted, tmp_path, data_dir) -> None:
    run_dir = _copy_run(uninterrupted, tmp_path / "copy")
    epoch_file = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    later = (run_dir / "checkpoints" / "last.ckpt").stat().st_mtime + 100
    os.utime(epoch_file, (later, later))  # the newest file is not the furthest in training
    before = _snapshot(run_dir)
    log_before = (run_dir / "train.log").read_bytes() if (run_dir / "train.log").is_file() else b""
    # (one more epoch: the finished run itself would be left alone, issue 19)
    failed = train_cli(run_dir, data_dir, "resume=auto", "model.head.width=64", "trainer.max_epochs=4")
    assert failed.returncode == 2, failed.stderr[-3000:]
    # the checkpoint furthest in training was chosen (item 3), and the message says what differs
    assert "resuming from" in failed.stdout and f"{run_dir / 'checkpoints' / 'last.ckpt'}" in failed.stdout
    assert f"camexp: UserError: {run_dir / 'checkpoints' / 'last.ckpt'} was trained with another model " \
           "config" in failed.stderr
    assert "model.head.width: 128 in the checkpoint, 64 configured" in failed.stderr
    assert "Traceback" not in failed.stderr and "Error(s) in loading state_dict" not in failed.stderr
    # nothing of the finished run changed: Hydra's record, checkpoints, metrics, curves
    after = _snapshot(run_dir)
    if log_before:
        assert (run_dir / "train.log").read_bytes().startswith(log_before)  # appended, not lost
    assert after == before
    assert "model.head.width=64" not in (run_dir / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_second_run_in_a_held_folder_is_refused_and_leaves_it_intact(uninterrupted, tmp_path, data_dir) -> None:
    import json as _json
    import socket

    run_dir = _copy_run(uninterrupted, tmp_path / "held")
    holder = subprocess.Popen(["sleep", "120"])
    try:
        (run_dir / ".camexp.lock").write_text(_json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        before = _snapshot(run_dir)
        refused = train_cli(run_dir, data_dir, "resume=auto")
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert f"camexp: RunFolderLocked: {run_dir} is in use by process {holder.pid} on host " \
               f"{socket.gethostname()}" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert _snapshot(run_dir) == before  # .hydra/ record, checkpoints, metrics.json, csv
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the next run takes it over
    resumed = train_cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"taking over the stale lock {run_dir / '.camexp.lock'} of process {holder.pid}" in resumed.stdout
    assert not (run_dir / ".camexp.lock").exists()


def _signal_in(stage: str, name: str, epoch: int | None = None) -> list[str]:
    return ["+callbacks.signal._target_=tests.helpers.signals.SignalInStage", f"+callbacks.signal.stage={stage}",
            f"+callbacks.signal.signum={name}", *([f"+callbacks.signal.epoch={epoch}"] if epoch is not None else [])]


@pytest.mark.slow
def test_sigusr1_during_validation_saves_requeues_and_resumes(uninterrupted, tmp_path, data_dir) -> None:
    run_dir = tmp_path / "in_validation"
    stopped = train_cli(run_dir, data_dir, *_signal_in("validate", "SIGUSR1", epoch=1))
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert (run_dir / "checkpoints" / "preempted.ckpt").is_file() and "resume=auto" in stopped.stdout
    # the validation under way was finished (its metrics and checkpoints) before stopping
    assert _val_epochs(run_dir) == [0, 1] and not (run_dir / "metrics.json").exists()
    resumed = train_cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "preempted.ckpt" in resumed.stdout
    assert _val_epochs(run_dir) == [0, 1, 2]  # the curves of every epoch, once each
    assert_same_weights(uninterrupted / "checkpoints/last.ckpt", run_dir / "checkpoints/last.ckpt")
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc_top1", "test/loss", "val/acc_top1"):
        assert got[key] == expected[key], key


@pytest.mark.slow
def test_sigterm_during_the_test_requeues_and_the_resume_tests_again(uninterrupted, tmp_path, data_dir) -> None:
    run_dir = tmp_path / "in_test"
    stopped = train_cli(run_dir, data_dir, *_signal_in("test", "SIGTERM"))
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert "stopped during the test; training is complete" in stopped.stdout
    assert not (run_dir / "checkpoints" / "preempted.ckpt").exists()
    assert not (run_dir / "metrics.json").exists()
    resumed = train_cli(run_dir, data_dir, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # every key of an uninterrupted run, the training's (train, val, lr) too (issue 19)
    assert_same_metrics(uninterrupted, run_dir)
    assert _val_epochs(run_dir) == [0, 1, 2]  # no epoch lost, none logged twice
    assert json.loads((run_dir / "test_record.json").read_text())["test_evaluations"] == 1


@pytest.mark.slow
def test_resume_of_a_finished_run_reports_it_and_changes_nothing(uninterrupted, tmp_path, data_dir) -> None:
    run_dir = _copy_run(uninterrupted, tmp_path / "finished")
    before = _snapshot(run_dir)
    ledger = run_dir.parent / "outputs" / "test_ledger.jsonl"
    ledger_before = ledger.read_text() if ledger.is_file() else ""
    again = train_cli(run_dir, data_dir, "resume=auto")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"camexp: {run_dir} holds a finished run" in again.stdout
    assert "Nothing was run or changed" in again.stdout and "python -m camexp.eval ckpt_path=" in again.stdout
    assert _snapshot(run_dir) == before  # metrics.json with its 38 keys, .hydra/ record, curves
    assert (ledger.read_text() if ledger.is_file() else "") == ledger_before  # no test counted
    assert "model settings differ" not in again.stdout
    # another model config is not used, and said so
    other = train_cli(run_dir, data_dir, "resume=auto", "model.head.width=64")
    assert other.returncode == 0, other.stderr[-3000:]
    assert "This command's model settings differ from the finished run's, and were not used: " \
           "model.head.width: 128 in the checkpoint, 64 configured." in other.stdout
    assert _snapshot(run_dir) == before
    # raising max_epochs makes it unfinished: it trains on (and is tested again)
    longer = train_cli(run_dir, data_dir, "resume=auto", "trainer.max_epochs=4")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert _val_epochs(run_dir) == [0, 1, 2, 3]
    assert sorted(json.loads((run_dir / "metrics.json").read_text())) == sorted(
        json.loads((uninterrupted / "metrics.json").read_text()))


def test_resume_picks_the_checkpoint_furthest_in_training_not_the_newest_file(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    for name, step, epoch in (("epoch_000.ckpt", 5, 0), ("last.ckpt", 25, 4), ("epoch_003.ckpt", 20, 3)):
        io.save_checkpoint({"state_dict": {"w": torch.ones(1)}, "global_step": step, "epoch": epoch},
                           tmp_path / name)
    os.utime(tmp_path / "epoch_000.ckpt", ns=(10**18, 10**18))  # newest by time (a plain copy)
    assert find_resume_checkpoint(tmp_path) == tmp_path / "last.ckpt"
    # equal progress: the preemption checkpoint, then last.ckpt, win
    io.save_checkpoint({"state_dict": {}, "global_step": 25, "epoch": 4}, tmp_path / "preempted.ckpt")
    os.utime(tmp_path / "preempted.ckpt", ns=(1, 1))
    assert find_resume_checkpoint(tmp_path) == tmp_path / "preempted.ckpt"


def test_checkpoint_of_another_model_names_what_differs(tmp_path: Path) -> None:
    from camexp.modules.cam_classifier import CAMClassifier
    from camexp.runs.checkpoints import check_resume_compatible

    small = CAMClassifier("tiny", 10, head={"num_convs": 1, "width": 16})
    torch.save({"state_dict": small.state_dict(), "hyper_parameters": dict(small.hparams)}, tmp_path / "s.ckpt")
    other = CAMClassifier("tiny", 10, head={"num_convs": 1, "width": 32}, optim={"lr": 0.5})
    with pytest.raises(UserError, match=r"s.ckpt was trained with another model config.*model.head.width: 16 "
                                        r"in the checkpoint, 32 configured.*model.optim.lr: '<unset>' in the "
                                        r"checkpoint, 0.5 configured.*tensor\(s\) of other shapes"):
        check_resume_compatible(tmp_path / "s.ckpt", other)
    same_net = CAMClassifier("tiny", 10, head={"num_convs": 1, "width": 16}, optim={"lr": 0.5})
    check_resume_compatible(tmp_path / "s.ckpt", same_net)  # only the optimizer differs: allowed


def test_a_checkpoint_naming_a_method_by_its_former_path_resumes_without_a_difference(tmp_path, capsys) -> None:
    from camexp.modules.cam_classifier import CAMClassifier
    from camexp.runs.checkpoints import check_resume_compatible

    def acol(target: str, threshold: float = 0.7) -> CAMClassifier:
        return CAMClassifier("tiny", 4, head={"width": 8}, method={"_target_": target, "threshold": threshold})

    old = acol("camexp.methods.ACoL")  # how checkpoints written before each method named its module store it
    assert type(old.method).__name__ == "ACoL"
    torch.save({"state_dict": old.state_dict(), "hyper_parameters": dict(old.hparams)}, tmp_path / "a.ckpt")
    check_resume_compatible(tmp_path / "a.ckpt", acol("camexp.methods.acol.ACoL"))
    assert "differ" not in capsys.readouterr().out
    check_resume_compatible(tmp_path / "a.ckpt", acol("camexp.methods.acol.ACoL", threshold=0.5))
    printed = capsys.readouterr().out
    assert "model.method.threshold: 0.7 in the checkpoint, 0.5 configured" in printed
    assert "_target_" not in printed


# -- issue 19: a checkpoint that cannot be written ------------------------------------------------


@contextmanager
def _file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail (EFBIG) as on a full disk; SIGXFSZ ignored."""
    import resource

    previous_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    previous = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, previous[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous)
        signal.signal(signal.SIGXFSZ, previous_signal)


def test_a_checkpoint_that_cannot_be_written_is_one_paragraph_and_keeps_the_previous(tmp_path: Path) -> None:
    from camexp.core.errors import OutputFolderError

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(4)}}, path)
    with _file_size_limit(20_000), pytest.raises(OutputFolderError) as error:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(100_000)}}, path)
    assert str(error.value).startswith(f"cannot write checkpoint {path} (the write failed: a full "
                                       "disk, a quota or a file-size limit; ")
    assert "the previous last.ckpt is intact" in str(error.value) and "resume=auto" in str(error.value)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no partial file left


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_ends_the_run_with_one_paragraph(tmp_path, data_dir) -> None:
    import resource

    def limited() -> None:  # checkpoints (2.5 MB) fail, the dataset and logs (KBs) do not
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    run_dir = tmp_path / "full"
    done = train_cli(run_dir, data_dir, "trainer.max_epochs=1", preexec_fn=limited)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "camexp: OutputFolderError: cannot write checkpoint " in done.stderr
    assert "Traceback" not in done.stderr
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))


# -- issue 19: Ctrl-C --------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_while_training_exits_130_with_the_resume_hint(tmp_path, data_dir) -> None:
    run_dir = tmp_path / "interrupted"
    stopped = train_cli(run_dir, data_dir, *signal_at(7, "SIGINT"))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert (f"camexp: interrupted (Ctrl-C); the checkpoints written so far are in {run_dir / 'checkpoints'}. "
            "Re-run the same command with resume=auto") in stopped.stdout
    assert "Traceback" not in stopped.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").exists()


def test_ctrl_c_during_an_evaluation_exits_130(capsys) -> None:
    import sys

    from camexp.runs.job import test_or_exit_preempted

    class Trainer:
        is_global_zero = True

        def test(self, model, datamodule=None):  # what Lightning does on a KeyboardInterrupt
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                sys.exit(1)

    with pytest.raises(SystemExit) as stop:
        test_or_exit_preempted(Trainer(), None, None)
    assert stop.value.code == 130
    assert "camexp: interrupted (Ctrl-C); stopped during the test, nothing was written." in capsys.readouterr().out
