"""The CUB reader, transforms, dataset and DataModule on a CUB layout built with real JPEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from camexp.core.errors import DatasetError
from camexp.data.cub import read_cub, resolve_cub_root
from camexp.data.datamodule import CUBDataModule
from camexp.data.dataset import WSOLDataset, collate
from camexp.data.samplers import EpochShuffleSampler, EvalDistributedSampler, sample_seed
from camexp.data.tables import split_train_val
from camexp.data.transforms import EvalTransform, TrainTransform, normalize_images


def test_read_cub_converts_labels_and_boxes(cub_dir: Path) -> None:
    records = read_cub(cub_dir)
    assert len(records) == 12
    assert records.class_names == ["001.Bird_1", "002.Bird_2", "003.Bird_3"]
    assert records.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert records.is_train.tolist() == [True, True, False, False] * 3
    # image 6 is class 2, k=1: x, y, w, h = 6, 5, 24, 17 -> (6, 5, 30, 22)
    np.testing.assert_array_equal(records.boxes[5], [[6.0, 5.0, 30.0, 22.0]])
    assert records.paths[5] == "002.Bird_2/Bird_2_0001_6.jpg"
    assert records.has_masks
    assert records.mask_file(5).is_file()


def test_root_may_be_the_parent_folder(cub_dir: Path) -> None:
    assert resolve_cub_root(cub_dir.parent) == cub_dir


def test_missing_dataset_names_path_layout_and_override(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        resolve_cub_root(tmp_path / "nowhere")
    message = str(error.value)
    assert str((tmp_path / "nowhere").resolve()) in message
    assert "does not exist" in message
    assert "images.txt" in message and "data.root=" in message


def test_folder_lacking_files_lists_them(cub_dir: Path) -> None:
    (cub_dir / "bounding_boxes.txt").unlink()
    with pytest.raises(DatasetError, match="lacks bounding_boxes.txt"):
        resolve_cub_root(cub_dir)


def test_malformed_line_names_file_and_line(cub_dir: Path) -> None:
    path = cub_dir / "bounding_boxes.txt"
    lines = path.read_text().splitlines()
    lines[2] = "3 10.0 eleven 5.0 5.0"
    path.write_text("\n".join(lines) + "\n")
    records = read_cub(cub_dir)  # the fault is recorded, the image left out
    assert [p.kind for p in records.problems] == ["malformed line", "no box"]
    assert "bounding_boxes.txt, line 3: cannot read '3 10.0 eleven 5.0 5.0'" in records.problems[0].message
    assert len(records) == 11 and 3 not in records.cub_ids


def test_unknown_image_id_and_bad_label_are_reported(cub_dir: Path) -> None:
    labels = cub_dir / "image_class_labels.txt"
    labels.write_text(labels.read_text() + "99 1\n")
    problems = read_cub(cub_dir).problems
    assert len(problems) == 1 and "line 13: image id 99 is not listed in images.txt" in problems[0].message
    labels.write_text(labels.read_text().replace("99 1\n", "").replace("12 3\n", "12 7\n"))
    records = read_cub(cub_dir)  # the label is kept; the checks report it with its line
    assert not records.problems and records.labels[-1] == 6
    # the line's own value and CUB's numbering from 1 (issue 19: it said "label 6, outside 0..2")
    with pytest.raises(DatasetError, match=r"image_class_labels.txt, line 12: image .* has label 7, outside 1..3"):
        CUBDataModule(str(cub_dir), num_classes=3, num_workers=0).check()


def test_several_boxes_per_image_are_kept(cub_dir: Path) -> None:
    path = cub_dir / "bounding_boxes.txt"
    path.write_text(path.read_text() + "1 30.0 30.0 4.0 5.0\n")
    records = read_cub(cub_dir)
    np.testing.assert_array_equal(records.boxes[0], [[5, 4, 27, 20], [30, 30, 34, 35]])


def test_eval_transform_resizes_and_floors_boxes(cub_dir: Path) -> None:
    records = read_cub(cub_dir)
    dataset = WSOLDataset([records.image_file(5)], [records.paths[5]], records.labels[[5]],
                          [records.boxes[5]], EvalTransform((24, 30)), [records.mask_file(5)])
    item = dataset[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 24, 30)
    assert item["mask"].shape == (24, 30)
    # original 60 x 48 (W x H) -> 30 x 24: x * 0.5, y * 0.5, floored
    torch.testing.assert_close(item["boxes"], torch.tensor([[3.0, 2.0, 15.0, 11.0]]))
    assert item["label"] == 1 and item["image_id"] == "002.Bird_2/Bird_2_0001_6.jpg"


def test_train_transform_boxes_follow_the_object(cub_dir: Path) -> None:
    """After random crop and flip, the box still frames the rectangle's mask."""
    records = read_cub(cub_dir)
    torch.manual_seed(0)
    transform = TrainTransform(resize=(64, 80), crop=40)
    checked = 0
    for row in range(len(records)):
        dataset = WSOLDataset([records.image_file(row)], ["x"], records.labels[[row]],
                              [records.boxes[row]], transform, [records.mask_file(row)])
        for _ in range(3):
            item = dataset[0]
            ys, xs = np.nonzero(item["mask"].numpy() > 127)
            if len(xs) == 0:
                continue
            expected = [xs.min(), ys.min(), xs.max(), ys.max()]
            box = item["boxes"][0].numpy()
            # x1 = x + w sits one pixel past the last object pixel (the field's convention)
            assert np.all(np.abs(box - expected) <= 2.7), (box, expected)
            assert item["image"].shape == (3, 40, 40)
            checked += 1
    assert checked >= 30


def test_crop_larger_than_resize_is_refused() -> None:
    with pytest.raises(ValueError, match="crop_size=300"):
        TrainTransform(resize=(256, 256), crop=300)


def test_collate_pads_boxes_and_counts_them() -> None:
    items = [
        {"image": torch.zeros(3, 4, 4, dtype=torch.uint8), "label": 1,
         "boxes": torch.tensor([[0.0, 0, 1, 1]]), "image_id": "a", "index": 0},
        {"image": torch.ones(3, 4, 4, dtype=torch.uint8), "label": 2,
         "boxes": torch.tensor([[0.0, 0, 2, 2], [1.0, 1, 3, 3]]), "image_id": "b", "index": 1},
    ]
    batch = collate(items)
    assert batch["image"].shape == (2, 3, 4, 4)
    assert batch["num_boxes"].tolist() == [1, 2]
    assert batch["boxes"].shape == (2, 2, 4)
    assert batch["boxes"][0, 1].tolist() == [0, 0, 0, 0]
    assert batch["image_id"] == ["a", "b"] and batch["label"].tolist() == [1, 2]


def test_normalize_images_uses_imagenet_statistics() -> None:
    images = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    expected = torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225])
    torch.testing.assert_close(normalize_images(images).flatten(), expected)


def test_split_train_val_is_stratified_seeded_and_disjoint() -> None:
    labels = np.repeat(np.arange(4), 10)
    train_rows = np.arange(40)
    train, val = split_train_val(labels, train_rows, 0.2, seed=3)
    assert len(val) == 8 and np.bincount(labels[val]).tolist() == [2, 2, 2, 2]
    assert not set(train) & set(val) and len(train) + len(val) == 40
    again, val_again = split_train_val(labels, train_rows, 0.2, seed=3)
    np.testing.assert_array_equal(val, val_again)


def test_datamodule_serves_batches_from_the_official_layout(cub_dir: Path) -> None:
    datamodule = CUBDataModule(str(cub_dir.parent), num_classes=3, batch_size=2, num_workers=0,
                               val_fraction=0.5, resize_size=(40, 40), crop_size=32,
                               eval_size=(32, 32), load_masks=True)
    datamodule.setup("fit")
    sizes = {split: len(dataset) for split, dataset in datamodule.datasets.items()}
    assert sizes == {"train": 3, "val": 3, "test": 6}
    batch = next(iter(datamodule.test_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert batch["boxes"].shape == (2, 1, 4) and batch["num_boxes"].tolist() == [1, 1]
    assert datamodule.class_names == ["Bird 1", "Bird 2", "Bird 3"]


def test_datamodule_class_count_mismatch_names_the_fix(cub_dir: Path) -> None:
    datamodule = CUBDataModule(str(cub_dir), num_classes=200, num_workers=0)
    with pytest.raises(DatasetError, match=r"lists 3 classes but data.num_classes=200.*data.num_classes=3"):
        datamodule.setup("fit")


@pytest.mark.parametrize("length, replicas", [(7, 2), (10, 3), (1, 2)])
def test_eval_sampler_shards_without_duplicates(length: int, replicas: int) -> None:
    shards = [list(EvalDistributedSampler(length, replicas, rank)) for rank in range(replicas)]
    flat = [index for shard in shards for index in shard]
    assert sorted(flat) == list(range(length))


def test_epoch_sampler_depends_only_on_seed_and_epoch() -> None:
    first, again, other_seed = (EpochShuffleSampler(20, seed) for seed in (7, 7, 8))
    for epoch in (0, 3):
        for sampler in (first, again, other_seed):
            sampler.set_epoch(epoch)
        assert list(first) == list(again)
        assert list(first) != list(other_seed)
        assert sorted(index for _, index in first) == list(range(20))
        assert {e for e, _ in first} == {epoch}
    first.set_epoch(0)
    zero = list(first)
    first.set_epoch(1)
    assert list(first) != zero


def test_epoch_sampler_shards_equally_without_overlap() -> None:
    shards = [list(EpochShuffleSampler(11, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not {i for _, i in shards[0]} & {i for _, i in shards[1]}


def test_augmentation_is_a_function_of_seed_epoch_and_index(cub_dir: Path) -> None:
    records = read_cub(cub_dir)
    dataset = WSOLDataset([records.image_file(0)], ["a"], records.labels[[0]], [records.boxes[0]],
                          TrainTransform((64, 80), crop=40), seed=5)
    torch.manual_seed(123)
    a = dataset[(2, 0)]
    torch.manual_seed(456)  # the global RNG plays no part
    b = dataset[(2, 0)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    crops = {tuple(dataset[(epoch, 0)]["boxes"][0].tolist()) for epoch in range(8)}
    assert len(crops) > 1  # other epochs, other crops
    assert sample_seed(5, 2, 0) != sample_seed(5, 0, 2) != sample_seed(2, 5, 0)


def test_paths_that_leave_the_dataset_folder_are_refused(cub_dir: Path) -> None:
    path = cub_dir / "images.txt"
    lines = path.read_text().splitlines()
    lines[3] = "4 ../../outside/secret.jpg"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"images.txt, line 4: the path '../../outside/secret.jpg' "
                                           r"points outside the dataset folder"):
        read_cub(cub_dir)
    lines[3] = "4 /etc/hosts"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 4: the path '/etc/hosts' points outside"):
        read_cub(cub_dir)


def test_metadata_image_ids_that_leave_the_root_are_refused(tmp_path: Path) -> None:
    from camexp.data.metadata import read_metadata_split
    from tests.helpers.datasets import write_metadata

    meta = write_metadata(tmp_path / "meta", tmp_path / "images",
                          {"test": [("a/x.jpg", 0, [(1, 1, 9, 9)]), ("b/y.jpg", 1, [(2, 2, 8, 8)])]})
    ids = meta / "test" / "image_ids.txt"
    ids.write_text(ids.read_text().replace("b/y.jpg", "../y.jpg"))
    for name in ("class_labels.txt", "image_sizes.txt", "localization.txt"):
        file = meta / "test" / name
        file.write_text(file.read_text().replace("b/y.jpg", "../y.jpg"))
    with pytest.raises(DatasetError, match=r"image_ids.txt, line 2: the path '../y.jpg' points outside"):
        read_metadata_split(meta / "test", "test", tmp_path / "images")
