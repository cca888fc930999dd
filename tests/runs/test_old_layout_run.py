"""A run folder written before the package was regrouped still evaluates and resumes.

``tests/fixtures/old_layout_run`` was written by the flat layout (its README says how): its
checkpoint, Hydra record and ``run_settings.yaml`` name the old module paths. The numbers
below are what that layout printed for the same eval and resume, except PxAP: masks are now
resized with OpenCV's nearest-neighbour rule, the field's (issue 20; the old layout printed
10.6409 and 14.4294), which picks other mask pixels at 56 px.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from camexp.eval import evaluate
from camexp.train import train
from tests.helpers.configs import compose_config

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "old_layout_run"
# the fixture's data: the tiny synthetic set its command drew (seed 12345)
DATA = ["data.synthetic.train_per_class=6", "data.synthetic.test_per_class=2",
        "data.synthetic.image_size=64", "data.resize_size=[64,64]", "data.crop_size=56",
        "data.eval_size=[56,56]", "data.batch_size=8", "data.num_workers=0", "data.val_fraction=0.34"]
QUIET = ["trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1"]


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "old_run"
    shutil.copytree(FIXTURE, run)
    return run


def test_old_checkpoint_evaluates_to_the_numbers_the_old_layout_printed(old_run, tmp_path) -> None:
    data_dir = tmp_path / "data"
    cfg = compose_config("eval", DATA + QUIET + [
        f"ckpt_path={old_run / 'checkpoints' / 'preempted.ckpt'}",
        f"data.root={data_dir / 'synthetic'}"], tmp_path / "eval", data_dir)
    metrics = evaluate(cfg)
    assert metrics["test/acc_top1"] == pytest.approx(0.10)
    assert metrics["test/acc_top5"] == pytest.approx(0.50)
    assert metrics["test/MaxBoxAccV2"] == pytest.approx(18.33333396911621)
    assert metrics["test/PxAP"] == pytest.approx(10.802395820617676)
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_old_run_folder_resumes_to_the_numbers_the_old_layout_printed(old_run, tmp_path) -> None:
    data_dir = tmp_path / "data"
    cfg = compose_config("train", ["method=acol", "model.head.width=16", "trainer.max_epochs=2",
                                   "localization.cam_curve_interval=0.05", "resume=auto",
                                   *DATA, *QUIET], old_run, data_dir)
    metrics = train(cfg)
    assert (old_run / "checkpoints" / "last.ckpt").is_file()
    assert metrics["train/loss"] == pytest.approx(4.562597751617432)
    assert metrics["val/acc_top1"] == pytest.approx(0.15000000596046448)
    assert metrics["test/acc_top1"] == pytest.approx(0.05)
    assert metrics["test/PxAP"] == pytest.approx(14.521466255187988)
