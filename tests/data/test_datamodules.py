"""data.split=wsol: the field's metadata folders for CUB and ILSVRC, and OpenImages30k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from camexp.core.errors import DatasetError
from camexp.data.datamodule import CUBDataModule
from camexp.data.dataset import WSOLDataset, collate
from camexp.data.imagenet import ImageNetDataModule
from camexp.data.openimages import OpenImagesDataModule
from camexp.data.transforms import EvalTransform
from camexp.train import train
from tests.helpers.configs import compose_config
from tests.helpers.datasets import write_cub, write_imagenet, write_metadata

SMALL = dict(batch_size=2, num_workers=0, resize_size=(32, 32), crop_size=28, eval_size=(28, 28))


def _cub_metadata(tmp_path: Path) -> tuple[Path, Path]:
    """A CUB folder and metadata/CUB whose val lists two extra (CUBV2-like) images."""
    cub = write_cub(tmp_path / "cub")
    ids = [line.split()[1] for line in (cub / "images.txt").read_text().splitlines()]
    labels = [int(line.split()[1]) - 1 for line in (cub / "image_class_labels.txt").read_text().splitlines()]
    train_rows, test_rows = [0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]
    splits = {
        "train": [(ids[r], labels[r], []) for r in train_rows],
        "val": [(f"00{c + 1}.Bird_{c + 1}/v2_{c}.jpg", c, [(2, 2, 30, 20)]) for c in range(3)],
        "test": [(ids[r], labels[r], [(5, 4, 27, 20), (30, 20, 34, 25)] if r == 2 else [(5, 4, 27, 20)])
                 for r in test_rows],
    }
    meta = tmp_path / "metadata" / "CUB"
    # the images of train/test already exist; write_metadata (re)writes them at 40 x 30
    write_metadata(meta, cub / "images", splits)
    return cub, meta


def test_cub_wsol_reads_the_metadata_splits(tmp_path: Path) -> None:
    cub, meta = _cub_metadata(tmp_path)
    datamodule = CUBDataModule(str(cub), num_classes=3, split="wsol",
                               metadata_root=str(tmp_path / "metadata"), **SMALL)
    datamodule.setup("fit")
    assert {s: len(d) for s, d in datamodule.datasets.items()} == {"train": 6, "val": 3, "test": 6}
    test = datamodule.tables.splits["test"]
    assert test.num_boxes.tolist() == [2, 1, 1, 1, 1, 1]
    assert datamodule.class_names == ["Bird 1", "Bird 2", "Bird 3"]
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image_id"] == ["001.Bird_1/v2_0.jpg", "002.Bird_2/v2_1.jpg"]
    assert batch["label"].tolist() == [0, 1]


def test_missing_metadata_root_names_the_override(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    with pytest.raises(DatasetError, match=r"data.metadata_root is not set"):
        CUBDataModule(str(cub), num_classes=3, split="wsol", **SMALL).check()
    with pytest.raises(DatasetError, match=r"No metadata split folder found under .*elsewhere"):
        CUBDataModule(str(cub), num_classes=3, split="wsol", metadata_root=str(tmp_path / "elsewhere"),
                      **SMALL).check()


def test_metadata_errors_become_dataset_errors_with_file_and_line(tmp_path: Path) -> None:
    cub, meta = _cub_metadata(tmp_path)
    loc = meta / "test" / "localization.txt"
    lines = loc.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 4)[0] + ",30,4,5,20"  # x1 < x0
    loc.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"test/localization.txt:2: box of .* x1 < x0"):
        CUBDataModule(str(cub), num_classes=3, split="wsol", metadata_root=str(meta), **SMALL).check()


def test_imagenet_wsol_reads_ids_relative_to_the_root(tmp_path: Path) -> None:
    root = write_imagenet(tmp_path / "imagenet")
    splits = {
        "train": [(f"train/{w}/{w}_0.JPEG", label, []) for label, w in enumerate(["n01440764", "n01443537", "n01484850"])],
        "val": [(f"val2/{c}/img_{c}.jpeg", c, [(1, 1, 20, 20)]) for c in range(3)],
        "test": [(f"val/ILSVRC2012_val_0000000{n}.JPEG", (n - 1) // 2, [(3, 2, 20, 18)]) for n in range(1, 7)],
    }
    meta = write_metadata(tmp_path / "metadata" / "ILSVRC", root, splits)
    datamodule = ImageNetDataModule(str(root), num_classes=3, split="wsol",
                                    metadata_root=str(meta.parent), **SMALL)
    datamodule.setup("test")
    assert len(datamodule.datasets["val"]) == 3 and len(datamodule.datasets["test"]) == 6
    assert datamodule.class_names[0] == "n01440764"
    assert next(iter(datamodule.test_dataloader()))["image"].shape == (2, 3, 28, 28)


def _openimages(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "OpenImages"
    splits = {
        "train": [(f"train/c{c}/t{k}.jpg", c, []) for c in range(2) for k in range(2)],
        "val": [(f"val/c{c}/v{c}.jpg", c, [(5, 4, 25, 20)]) for c in range(2)],
        "test": [("test/c0/a.jpg", 0, [(5, 4, 15, 12), (20, 15, 30, 25)]), ("test/c1/b.jpg", 1, [(2, 2, 10, 10)])],
    }
    meta = write_metadata(tmp_path / "metadata" / "OpenImages", root, splits, masks=True)
    return root, meta


def test_openimages_serves_masks_ignore_regions_and_boxes_from_masks(tmp_path: Path) -> None:
    root, meta = _openimages(tmp_path)
    datamodule = OpenImagesDataModule(str(root), num_classes=2, metadata_root=str(meta),
                                      load_masks=True, batch_size=2, num_workers=0,
                                      resize_size=(30, 40), crop_size=28, eval_size=(30, 40))
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    assert batch["mask"].shape == (2, 30, 40) and batch["ignore"].shape == (2, 30, 40)
    # the instance masks' union, and the ignore band of the first image only
    assert int((batch["mask"][0] > 127).sum()) == 10 * 8 + 10 * 10
    assert bool((batch["ignore"][0][:, :4] > 0).all()) and not batch["ignore"][1].any()
    # boxes are the instances' tight boxes (eval size = original size here)
    assert batch["num_boxes"].tolist() == [2, 1]
    torch.testing.assert_close(batch["boxes"][0], torch.tensor([[5.0, 4, 15, 12], [20, 15, 30, 25]]))
    assert datamodule.class_names == ["c0", "c1"]
    train_batch = next(iter(datamodule.train_dataloader()))
    assert "mask" not in train_batch and train_batch["image"].shape == (2, 3, 28, 28)


def test_openimages_official_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data.split='official' is not available"):
        OpenImagesDataModule(str(tmp_path), num_classes=2, split="official")


def test_skip_leaves_an_image_that_breaks_later_out_of_the_batch(tmp_path: Path, caplog) -> None:
    cub = write_cub(tmp_path / "cub")
    files = sorted((cub / "images").rglob("*.jpg"))
    files[0].write_bytes(files[0].read_bytes()[:300])  # truncated after the checks
    ids = [str(f.relative_to(cub / "images")) for f in files[:3]]
    dataset = WSOLDataset(files[:3], ids, np.zeros(3), [np.array([[1.0, 1, 5, 5]])] * 3,
                          EvalTransform((16, 16)), on_bad_image="skip")
    with caplog.at_level("WARNING"):
        batch = collate([dataset[i] for i in range(3)] + [dataset[0]])
    assert batch["image"].shape == (3 - 1 + 0, 3, 16, 16)
    assert batch["image_id"] == ids[1:]
    assert sum(str(files[0]) in r.getMessage() for r in caplog.records) == 1  # logged once
    strict = WSOLDataset(files[:1], ids[:1], np.zeros(1), [np.zeros((1, 4))], EvalTransform((16, 16)))
    with pytest.raises(DatasetError, match=r"Cannot read image .*" + files[0].name):
        strict[0]


def test_cub_wsol_trains_end_to_end_through_the_configs(tmp_path: Path) -> None:
    cub, meta = _cub_metadata(tmp_path)
    overrides = ["data=cub", f"data.root={cub}", "data.num_classes=3", "data.split=wsol",
                 f"data.metadata_root={meta}", "data.num_workers=0", "data.batch_size=2",
                 "data.resize_size=[32,32]", "data.crop_size=28", "data.eval_size=[28,28]",
                 "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
                 "callbacks.cam_pictures.num_images=2"]
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path / "data")
    metrics = train(cfg)
    assert {"train/loss", "test/acc_top1", "test/MaxBoxAccV2"} <= set(metrics)
