"""ILSVRC 2012 as users have it: train folders by wnid, val boxes from XML files or the CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from camexp.core.errors import DatasetError
from camexp.data.imagenet import ImageNetDataModule
from camexp.train import train
from tests.helpers.configs import compose_config
from tests.helpers.datasets import WNIDS, write_imagenet

SMALL = dict(batch_size=2, num_workers=0, val_fraction=0.34, resize_size=(32, 32), crop_size=28,
             eval_size=(28, 28))


def _datamodule(root: Path, **kwargs) -> ImageNetDataModule:
    return ImageNetDataModule(str(root), num_classes=3, **{**SMALL, **kwargs})


@pytest.mark.parametrize("boxes", ["xml", "csv"])
def test_val_boxes_from_xml_or_csv_give_the_same_split(tmp_path: Path, boxes: str) -> None:
    root = write_imagenet(tmp_path / "imagenet", boxes=boxes)
    datamodule = _datamodule(root)
    datamodule.setup("fit")
    test = datamodule.tables.splits["test"]
    assert test.ids[:2] == ["val/ILSVRC2012_val_00000001.JPEG", "val/ILSVRC2012_val_00000002.JPEG"]
    assert test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    # the first val image of each class has two boxes, all kept
    assert test.num_boxes.tolist() == [2, 1, 2, 1, 2, 1]
    np.testing.assert_array_equal(test.boxes_of(0), [[3, 2, 20, 18], [25, 15, 38, 28]])
    assert (test.sizes is not None) == (boxes == "xml")
    sizes = {split: len(d) for split, d in datamodule.datasets.items()}
    assert sizes == {"train": 9, "val": 3, "test": 6}
    batch = next(iter(datamodule.test_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (2, 3, 28, 28)
    assert batch["boxes"].shape == (2, 2, 4) and batch["num_boxes"].tolist() == [2, 1]
    # 40 x 30 -> 28 x 28: x * 0.7, y * 28 / 30, floored
    torch.testing.assert_close(batch["boxes"][0, 1], torch.tensor([17.0, 14.0, 26.0, 26.0]))
    expected = (["fish number 0", "fish number 1", "fish number 2"] if boxes == "csv" else list(WNIDS))
    assert datamodule.class_names == expected


def test_class_order_is_sorted_wnids_as_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    root = write_imagenet(tmp_path / "imagenet")
    datamodule = _datamodule(root)
    datamodule.setup("fit")
    folder = ImageFolder(str(root / "train"))
    assert folder.classes == list(WNIDS) == datamodule.class_names
    train = datamodule.tables.splits["train"]
    for image_id, label in zip(train.ids, train.labels.tolist(), strict=True):
        assert folder.class_to_idx[image_id.split("/")[1]] == label
    train_batch = next(iter(datamodule.train_dataloader()))
    assert train_batch["boxes"].shape == (2, 0, 4)  # no boxes for train images


def test_val_in_class_folders_is_read(tmp_path: Path) -> None:
    root = write_imagenet(tmp_path / "imagenet", boxes="csv", foldered_val=True)
    datamodule = _datamodule(root)
    datamodule.check()
    assert datamodule.tables.splits["test"].ids[0] == f"val/{WNIDS[0]}/ILSVRC2012_val_00000001.JPEG"


def test_missing_imagenet_names_path_and_override(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere does not exist.*train/<wnid>.*data.root="):
        _datamodule(tmp_path / "nowhere").check()


def test_missing_val_boxes_say_where_they_were_looked_for(tmp_path: Path) -> None:
    root = write_imagenet(tmp_path / "imagenet")
    for xml in (root / "bbox_val").iterdir():
        xml.unlink()
    with pytest.raises(DatasetError, match=r"No ImageNet val boxes found.*bbox_val.*data.val_boxes="):
        _datamodule(root).check()


def test_malformed_csv_line_and_bad_xml_are_named(tmp_path: Path) -> None:
    root = write_imagenet(tmp_path / "csv", boxes="csv")
    csv_file = root / "LOC_val_solution.csv"
    lines = csv_file.read_text().splitlines()
    lines[3] = "ILSVRC2012_val_00000003,n01443537 1 2 3"
    csv_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"LOC_val_solution.csv, line 4: expected"):
        _datamodule(root).check()
    root = write_imagenet(tmp_path / "xml")
    xml = root / "bbox_val" / "ILSVRC2012_val_00000004.xml"
    xml.write_text(xml.read_text().replace(WNIDS[1], "n09999999"))
    with pytest.raises(DatasetError, match=r"ILSVRC2012_val_00000004.xml: class 'n09999999'"):
        _datamodule(root).check()


def test_imagenet_runs_end_to_end_through_the_configs(tmp_path: Path) -> None:
    root = write_imagenet(tmp_path / "imagenet", boxes="csv")
    overrides = ["data=imagenet", f"data.root={root}", "data.num_classes=3", "data.num_workers=0",
                 "data.batch_size=2", "data.resize_size=[32,32]", "data.crop_size=28",
                 "data.eval_size=[28,28]", "data.val_fraction=0.34", "trainer.fast_dev_run=true",
                 "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=2"]
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path / "data")
    metrics = train(cfg)
    assert {"train/loss", "test/acc_top1", "test/MaxBoxAccV2"} <= set(metrics)
