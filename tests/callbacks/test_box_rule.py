"""localization.box_rule through a real run: a paper's own rule is scored beside camexp's metrics,
and the CAM paper's rule written as a box rule gives the CAM paper's numbers exactly."""

from __future__ import annotations

import pytest

from tests.helpers.configs import TINY_SYNTHETIC, compose_config

RUN = TINY_SYNTHETIC + ["trainer.max_epochs=1", "trainer.limit_train_batches=2",
                        "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
                        "localization.cam_curve_interval=0.05"]


@pytest.mark.slow
def test_the_cam_papers_rule_as_a_box_rule_gives_the_papers_numbers(tmp_path, data_dir) -> None:
    from camexp.train import train

    rule = "localization.box_rule={rule: largest_component, threshold: 0.2, resize: bicubic}"
    metrics = train(compose_config("train", RUN + [rule], tmp_path / "run", data_dir))
    for stage in ("val", "test"):
        assert metrics[f"{stage}/gt_known_loc"] == metrics[f"{stage}/loc_gt_known"]
        assert metrics[f"{stage}/top1_loc"] == 100 - metrics[f"{stage}/loc_top1_err"]
        assert metrics[f"{stage}/top5_loc"] == 100 - metrics[f"{stage}/loc_top5_err"]
