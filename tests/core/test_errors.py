"""User errors end as one paragraph with exit status 2, wherever they are raised (a Hydra
instantiate, a DataLoader worker, an output folder that cannot be written)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from camexp.core.errors import exit_on_user_error, user_message
from camexp.runs.folder import LOCK_NAME
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config
from tests.helpers.datasets import write_cub

REPO = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


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
    # the run folder at an existing file, or where no folder can be created (issue 19)
    for run_dir, why in ((blocker, f"cannot create the folder {blocker}: a file of that name is in the way"),
                         (Path("/proc/camexp_none/run"), "cannot create the folder /proc/camexp_none (No such "
                                                         "file or directory)")):
        done = subprocess.run([sys.executable, "-m", "camexp.eval_maps", f"maps_dir={tmp_path}",
                               f"metadata_dir={tmp_path}", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"camexp: OutputFolderError: {why}. Point the run at a folder"), done.stderr
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


def test_ctrl_c_outside_the_trainer_exits_130_without_traceback(capsys) -> None:
    from camexp.core.errors import run_cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        run_cli(interrupted)
    assert stop.value.code == 130
    assert capsys.readouterr().err.startswith("camexp: interrupted (Ctrl-C). A run stopped while training "
                                              "continues with the same command and resume=auto")
