"""The FSL baseline: filled-box targets, its loss and map, and training on the val split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camexp.core.errors import MethodError
from camexp.methods.fsl import FSL, filled_boxes
from camexp.models import CAMNet


def test_filled_boxes_are_inclusive_and_ignore_padding() -> None:
    boxes = torch.tensor([[[1.0, 2.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]],   # one box, one pad
                          [[0.0, 0.0, 1.0, 1.0], [4.2, 3.0, 5.0, 4.7]]])   # two boxes
    mask = filled_boxes(boxes, torch.tensor([1, 2]), (5, 6))
    expected = torch.zeros(2, 1, 5, 6)
    expected[0, 0, 2, 1:4] = 1  # x 1..3 inclusive, y 2
    expected[1, 0, 0:2, 0:2] = 1
    expected[1, 0, 3:5, 4:6] = 1  # 4.2 floors to 4, 4.7 ceils to 5 (clipped by the image)
    torch.testing.assert_close(mask, expected)


def test_fsl_loss_is_pixel_bce_on_the_filled_boxes_and_the_map_is_class_agnostic() -> None:
    torch.manual_seed(0)
    method = FSL()
    net = CAMNet("tiny", 4, head_width=8, method=method)
    images = torch.randn(2, 3, 16, 16)
    batch = {"input": images, "label": torch.tensor([0, 3]),
             "boxes": torch.tensor([[[2.0, 3.0, 9.0, 12.0]], [[0.0, 0.0, 15.0, 15.0]]]),
             "num_boxes": torch.tensor([1, 1])}
    outputs = method.forward(net, images, batch["label"])
    assert outputs["foreground"].shape == (2, 1, 2, 2)
    up = F.interpolate(outputs["foreground"], size=(16, 16), mode="bilinear", align_corners=False)
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, 3:13, 2:10] = 1
    target[1] = 1
    expected = F.binary_cross_entropy_with_logits(up, target)
    torch.testing.assert_close(method.loss(net, outputs, batch), expected)
    maps = method.maps(net, outputs, torch.tensor([[0, 1, 2], [3, 2, 1]]))
    assert maps.shape == (2, 3, 2, 2)
    assert torch.equal(maps[:, 0], maps[:, 2]) and torch.equal(maps[:, 0:1], outputs["foreground"])
    # the classifier gets no gradient from the localizer's loss
    method.loss(net, outputs, batch).backward()
    assert net.classifier.weight.grad is None or not net.classifier.weight.grad.any()


def test_fsl_masks_target_needs_masks_and_bad_target_is_named() -> None:
    with pytest.raises(MethodError, match="method.target='points' is not allowed for method=fsl"):
        FSL(target="points")
    method = FSL(target="masks")
    net = CAMNet("tiny", 3, head_width=8, method=method)
    batch = {"input": torch.randn(1, 3, 16, 16), "label": torch.tensor([0])}
    outputs = method.forward(net, batch["input"], batch["label"])
    with pytest.raises(MethodError, match="data.load_masks=true"):
        method.loss(net, outputs, batch)
    batch["mask"] = torch.zeros(1, 16, 16, dtype=torch.uint8)
    batch["mask"][0, 4:8, 4:8] = 255
    up = F.interpolate(outputs["foreground"], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(method.loss(net, outputs, batch),
                               F.binary_cross_entropy_with_logits(up, (batch["mask"][:, None] > 127).float()))


@pytest.mark.slow
def test_method_fsl_trains_on_the_val_split_and_is_tested_on_test(tmp_path: Path, data_dir: Path) -> None:
    from camexp.train import train
    from tests.helpers.configs import TINY_SYNTHETIC, compose_config

    cfg = compose_config("train", TINY_SYNTHETIC + [
        "method=fsl", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "callbacks.cam_pictures.num_images=1", "localization.cam_curve_interval=0.01"],
        tmp_path / "run", data_dir)
    assert cfg.callbacks.model_checkpoint.monitor == "val/MaxBoxAccV2"
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    from omegaconf import OmegaConf

    reference = instantiate({**OmegaConf.to_container(cfg.data, resolve=True), "train_on": "train"})
    reference.setup("fit")
    val_ids = set(reference.tables.splits["val"].ids)
    train_ids, held_ids = set(datamodule.tables.splits["train"].ids), set(datamodule.tables.splits["val"].ids)
    # TINY_SYNTHETIC: 10 classes x 6 training images, val_fraction 0.34 -> 2 val images a class
    assert len(val_ids) == 20 and train_ids | held_ids == val_ids and not train_ids & held_ids
    assert len(held_ids) == 10  # 0.2 of 2 rounds to the minimum of one per class
    assert datamodule.tables.splits["test"].ids == reference.tables.splits["test"].ids
    metrics = train(cfg)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert isinstance(saved.pop("warnings"), list)
    assert saved == pytest.approx(metrics)
    assert 0.0 <= saved["test/MaxBoxAccV2"] <= 100.0 and "test/PxAP" in saved
    assert np.isfinite(saved["train/loss"]) and saved["train/loss"] < np.log(2)  # BCE, not CE
