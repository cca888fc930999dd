"""Bad input named before training (issue 13, items 5 and 9-15): every planted fault is
reported with its file, line and fix, and nothing passes silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camexp.check_data import check_data
from camexp.core.errors import DatasetError, EvalMapsError, MetadataError
from camexp.data.cub import read_cub
from camexp.data.datamodule import CUBDataModule
from camexp.data.imagenet import ImageNetDataModule
from camexp.data.metadata import read_metadata
from camexp.data.openimages import OpenImagesDataModule
from camexp.localization.offline import evaluate_maps
from tests.helpers.configs import compose_config
from tests.helpers.datasets import box_metadata_with_perfect_maps, write_cub, write_metadata

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=2, num_workers=0, resize_size=(32, 32), crop_size=28, eval_size=(28, 28))


def _cub_report(tmp_path: Path, cub: Path, *overrides: str):
    cfg = compose_config("check_data", ["data=cub", f"data.root={cub}", "data.num_classes=3",
                                        "data.val_fraction=0.5", "data.batch_size=2", *overrides],
                         tmp_path / "out", tmp_path / "data")
    return check_data(cfg)


def _messages(report) -> str:
    return "\n".join(f"[{p.kind}] {p.message}" for p in report.problems)


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


# -- 5: a bad val or test image is found before training, not after it --------------------------


def test_truncated_test_image_stops_the_run_before_training(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub", per_class=6)
    # a test image (split value 0): truncated, as by an interrupted copy
    test_line = next(line for line in (cub / "train_test_split.txt").read_text().splitlines()
                     if line.endswith(" 0"))
    image_id = test_line.split()[0]
    relative = next(line.split()[1] for line in (cub / "images.txt").read_text().splitlines()
                    if line.split()[0] == image_id)
    image = cub / "images" / relative
    image.write_bytes(image.read_bytes()[:200])
    module = CUBDataModule(str(cub), num_classes=3, check_sample=1, val_fraction=0.34, **SMALL)
    with pytest.raises(DatasetError, match=rf"unreadable image\] test: {image}: cannot read") as error:
        module.check()
    assert "data.on_bad_image=skip" in str(error.value)


# -- 9: non-UTF-8 bytes, bad eval batch size ------------------------------------------------------


def test_non_utf8_bytes_name_the_file_and_line(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    path = cub / "images.txt"
    lines = path.read_bytes().splitlines()
    lines[3] = lines[3].replace(b"Bird", b"B\xe9rd")  # latin-1 e acute
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DatasetError, match=r"images.txt, line 4: byte \d+ of the line .* is not UTF-8 "
                                           r"text. Save the file as UTF-8"):
        read_cub(cub)


# -- 10, 11, 13: every fault of the text files listed, with file and line -------------------------


def test_check_data_lists_every_line_fault_with_file_and_line(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    labels = cub / "image_class_labels.txt"
    labels.write_text(labels.read_text() + "99 1\n")                       # unknown id, line 13
    _replace_line(cub / "train_test_split.txt", 2, "2 2")                  # split value 2
    _replace_line(cub / "bounding_boxes.txt", 3, "3 nan 4.0 20.0 15.0")    # NaN box
    _replace_line(cub / "bounding_boxes.txt", 5, "5 5.0 4.0 -3.0 15.0")    # negative width
    _replace_line(cub / "bounding_boxes.txt", 7, "7 5.0 4.0 0.0 15.0")     # zero width
    _replace_line(labels, 9, "9 5")                                        # class 5 of 3
    report = _cub_report(tmp_path, cub)
    text = _messages(report)
    assert not report.ok
    kinds = sorted(p.kind for p in report.problems)
    # the faulty lines leave each class one training image: none left for val (issue 19)
    assert kinds == ["box not finite", "empty box", "empty val split", "label out of range",
                     "negative box size", "split value", "unknown id"], text
    assert f"{labels}, line 13: image id 99 is not listed in images.txt" in text
    assert f"{cub / 'train_test_split.txt'}, line 2: image id 2 has the value 2; it must be 1 (train) or 0" in text
    assert f"{cub / 'bounding_boxes.txt'}, line 3: box (nan, 4, 20, 15) of image id 3 is not a number" in text
    assert f"{cub / 'bounding_boxes.txt'}, line 5: negative box size (-3, 15) of image id 5" in text
    assert f"{cub / 'bounding_boxes.txt'}, line 7: box (5, 4, 5, 19)" in text and "zero width or height" in text
    # the file's own value and range: CUB numbers its classes from 1 (issue 19)
    assert f"{labels}, line 9: image '003.Bird_3/Bird_3_0000_9.jpg' has label 5, outside 1..3" in text
    # the same faults stop a run before training, all of them listed
    module = CUBDataModule(str(cub), num_classes=3, val_fraction=0.5, **SMALL)
    with pytest.raises(DatasetError, match=r"^6 problem\(s\) in CUB-200-2011") as error:
        module.check()
    assert "bounding_boxes.txt, line 3" in str(error.value) and "line 13" in str(error.value)


def test_a_run_lists_the_faults_it_found_one_a_line_as_check_data_does(tmp_path: Path, capsys) -> None:
    from camexp.core.errors import exit_on_user_error
    from camexp.train import train

    cub = write_cub(tmp_path / "cub")
    _replace_line(cub / "bounding_boxes.txt", 3, "3 nan 4.0 20.0 15.0")
    _replace_line(cub / "train_test_split.txt", 2, "2 7")
    cfg = compose_config("train", ["data=cub", f"data.root={cub}", "data.num_classes=3",
                                   "data.batch_size=2", "data.num_workers=0"],
                         tmp_path / "run", tmp_path / "data")
    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(lambda: train(cfg))
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("camexp: DatasetError: 2 problem(s) in CUB-200-2011")
    assert lines[0].endswith("found before training:")
    assert lines[1].startswith(f"  [split value] -: {cub / 'train_test_split.txt'}, line 2: ")
    assert lines[2].startswith(f"  [box not finite] -: {cub / 'bounding_boxes.txt'}, line 3: ")
    assert lines[3].startswith("Fix them, then run python -m camexp.check_data data=...")
    # check_data prints the same lines
    report = _cub_report(tmp_path, cub)
    assert lines[1] in report.format().splitlines() and lines[2] in report.format().splitlines()


def test_line_faults_are_kept_up_to_a_cap_and_counted(tmp_path: Path, monkeypatch) -> None:
    import camexp.data.text_files as text_files

    cub = write_cub(tmp_path / "cub")
    labels = cub / "image_class_labels.txt"
    labels.write_text(labels.read_text() + "".join(f"{100 + k} 1\n" for k in range(7)))
    monkeypatch.setattr(text_files, "MAX_READ_PROBLEMS", 5)
    problems = read_cub(cub).problems
    assert len(problems) == 6 and problems[-1].message.startswith("... and 2 more line faults")


def _metadata_with_faults(tmp_path: Path) -> tuple[Path, Path]:
    """The field's ILSVRC metadata with four line faults in three files of two splits."""
    root = tmp_path / "imagenet"
    meta = write_metadata(tmp_path / "metadata" / "ILSVRC", root, {
        "train": [("train/a/0.jpg", 0, []), ("train/b/1.jpg", 1, [])],
        "val": [(f"val/v{k}.jpg", k % 2, [(2, 2, 20, 20)]) for k in range(4)],
        "test": [(f"val/t{k}.jpg", k % 2, [(2, 2, 20, 20)]) for k in range(4)]})
    _replace_line(meta / "val" / "class_labels.txt", 2, "val/v1.jpg,cat")         # not an integer
    _replace_line(meta / "test" / "localization.txt", 2, "val/t1.jpg,30,2,20,20")  # x1 < x0
    _replace_line(meta / "test" / "localization.txt", 4, "val/t3.jpg,2,2,20")      # 4 fields
    ids = meta / "test" / "image_ids.txt"
    ids.write_text(ids.read_text() + "val/t0.jpg\n")                               # repeated, line 5
    return root, meta


def test_metadata_folder_faults_are_all_listed_with_file_and_line(tmp_path: Path) -> None:
    root, meta = _metadata_with_faults(tmp_path)
    cfg = compose_config("check_data", ["data=imagenet", f"data.root={root}", "data.num_classes=2",
                                        "data.split=wsol", f"data.metadata_root={meta}", "data.batch_size=2"],
                         tmp_path / "out", tmp_path / "data")
    report = check_data(cfg)
    text = _messages(report)
    assert sorted(p.kind for p in report.problems) == ["bad box", "bad box", "bad label",
                                                       "duplicate id"], text
    assert f"{meta / 'val' / 'class_labels.txt'}:2: the class label must be an integer, got 'cat'" in text
    assert f"{meta / 'test' / 'localization.txt'}:2: box of 'val/t1.jpg' has x1 < x0" in text
    assert f"{meta / 'test' / 'localization.txt'}:4: expected `path,x0,y0,x1,y1`" in text
    assert f"{meta / 'test' / 'image_ids.txt'}:5: image id 'val/t0.jpg' already appears on line 1" in text
    # the images of faulty lines are left out (a box fewer would change a score), the others read
    module = ImageNetDataModule(str(root), num_classes=2, split="wsol", metadata_root=str(meta), **SMALL)
    tables = module.load_tables()
    assert tables.splits["test"].ids == ["val/t0.jpg", "val/t2.jpg"]
    assert tables.splits["val"].ids == ["val/v0.jpg", "val/v2.jpg", "val/v3.jpg"]
    with pytest.raises(DatasetError, match=r"^4 problem\(s\) in ImageNet") as error:
        ImageNetDataModule(str(root), num_classes=2, split="wsol", metadata_root=str(meta), **SMALL).check()
    assert "localization.txt:4" in str(error.value) and "class_labels.txt:2" in str(error.value)
    # eval_maps (no data config) lists the faults of its split in one paragraph
    with pytest.raises(MetadataError, match=r"^3 fault\(s\) in .*test: .*image_ids.txt:5: .*"
                                            r"localization.txt:2: .*localization.txt:4: "):
        read_metadata(meta / "test")


def test_imagenet_val_box_faults_are_all_listed(tmp_path: Path) -> None:
    from tests.helpers.datasets import WNIDS, write_imagenet

    root = write_imagenet(tmp_path / "xml")
    folder = root / "bbox_val"
    (folder / "ILSVRC2012_val_00000002.xml").write_text("<annotation><size>")  # unreadable
    bad = folder / "ILSVRC2012_val_00000004.xml"
    bad.write_text(bad.read_text().replace(WNIDS[1], "n09999999"))           # unknown class
    cfg = compose_config("check_data", ["data=imagenet", f"data.root={root}", "data.num_classes=3",
                                        "data.batch_size=2"], tmp_path / "out", tmp_path / "data")
    report = check_data(cfg)
    text = _messages(report)
    assert sorted(p.kind for p in report.problems) == ["unknown class", "unreadable annotation"], text
    assert "ILSVRC2012_val_00000002.xml: not a readable PASCAL-VOC annotation" in text
    assert "ILSVRC2012_val_00000004.xml: class 'n09999999' is not one of the 3 classes" in text
    assert {s.name: s.images for s in report.splits}["test"] == 4  # 6 val images, 2 left out
    root = write_imagenet(tmp_path / "csv", boxes="csv")
    _replace_line(root / "LOC_val_solution.csv", 3, "ILSVRC2012_val_00000002,n01443537 1 2 x 4")
    _replace_line(root / "LOC_val_solution.csv", 5, "ILSVRC2012_val_00000004,n01443537 1 2 3")
    cfg = compose_config("check_data", ["data=imagenet", f"data.root={root}", "data.num_classes=3",
                                        "data.batch_size=2"], tmp_path / "out2", tmp_path / "data")
    text = _messages(check_data(cfg))
    assert "LOC_val_solution.csv, line 3: box coordinates must be numbers" in text
    assert "LOC_val_solution.csv, line 5: expected 'ImageId,<wnid> x0 y0 x1 y1 [...]'" in text


def test_check_data_cli_lists_them_and_exits_1(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    _replace_line(cub / "bounding_boxes.txt", 3, "3 nan 4.0 20.0 15.0")
    _replace_line(cub / "train_test_split.txt", 2, "2 7")
    done = subprocess.run([sys.executable, "-m", "camexp.check_data", "data=cub", f"data.root={cub}",
                           "data.num_classes=3", "data.batch_size=2"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1, done.stderr
    assert "Problems: 2 (" in done.stdout and "[box not finite]" in done.stdout
    assert "[split value]" in done.stdout and "Traceback" not in done.stderr


def test_nan_box_in_field_metadata_names_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    meta = write_metadata(tmp_path / "metadata" / "ILSVRC", root, {
        "train": [("train/a/0.jpg", 0, []), ("train/b/1.jpg", 1, [])],
        "val": [("val/a.jpg", 0, [(2, 2, 20, 20)]), ("val/b.jpg", 1, [(2, 2, 20, 20)])],
        "test": [("val/c.jpg", 0, [(2, 2, 20, 20)]), ("val/d.jpg", 1, [(2, 2, 20, 20)])]})
    _replace_line(meta / "test" / "localization.txt", 2, "val/d.jpg,2,nan,20,20")
    with pytest.raises(DatasetError, match=r"test/localization.txt:2: y0 is not finite \('nan'\)"):
        ImageNetDataModule(str(root), num_classes=2, split="wsol", metadata_root=str(meta), **SMALL).check()


# -- 12: a UTF-8 byte-order mark is valid ---------------------------------------------------------


def test_byte_order_mark_is_accepted_in_cub_and_in_metadata(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    for name in ("images.txt", "classes.txt", "bounding_boxes.txt"):
        path = cub / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    records = read_cub(cub)
    assert len(records) == 12 and not records.problems and records.class_names[0] == "001.Bird_1"
    meta, maps = box_metadata_with_perfect_maps(tmp_path)
    path = meta / "test" / "image_ids.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert evaluate_maps(maps, meta, "test", cam_curve_interval=0.01)["MaxBoxAccV2"] == 100.0


# -- 13: extra maps counted; 14: containment --------------------------------------------------------


def test_check_data_reports_symlinks_out_of_the_root(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    elsewhere = tmp_path / "elsewhere"
    (cub / "images" / "002.Bird_2").rename(elsewhere)
    (cub / "images" / "002.Bird_2").symlink_to(elsewhere, target_is_directory=True)
    linked = cub / "images" / "001.Bird_1" / "Bird_1_0003_4.jpg"  # a test image
    linked.rename(tmp_path / "file.jpg")
    linked.symlink_to(tmp_path / "file.jpg")
    report = _cub_report(tmp_path, cub)
    assert report.ok, _messages(report)  # followed: users do symlink datasets
    text = report.format()
    # a linked folder (class 2: 1 train, 1 val, 2 test images) and a linked file (class 1, test)
    assert "Symlinks: 1 train image(s) are reached through a symbolic link out of" in text
    assert "Symlinks: 3 test image(s)" in text
    assert f"{cub / 'images' / '002.Bird_2'} -> {elsewhere}" in text


# -- 15: the field's metadata folders as published, with their empty files -------------------------


def _as_published(meta: Path, dataset: str) -> Path:
    """Empty the files the field publishes empty (docs/datasets.md)."""
    (meta / "train" / "localization.txt").write_text("")
    empty_sizes = ("train", "val", "test") if dataset == "OpenImages" else ("train",) if dataset == "ILSVRC" else ()
    for split in empty_sizes:
        (meta / split / "image_sizes.txt").write_text("")
    return meta


def test_published_openimages_metadata_evaluates_and_checks(tmp_path: Path) -> None:
    root = tmp_path / "OpenImages"
    meta = _as_published(write_metadata(tmp_path / "metadata" / "OpenImages", root, {
        "train": [(f"train/c{c}/t{k}.jpg", c, []) for c in range(2) for k in range(2)],
        "val": [(f"val/c{c}/v{c}.jpg", c, [(5, 4, 25, 20)]) for c in range(2)],
        "test": [("test/c0/a.jpg", 0, [(5, 4, 15, 12)]), ("test/c1/b.jpg", 1, [(2, 2, 10, 10)])],
    }, masks=True), "OpenImages")
    assert (meta / "test" / "image_sizes.txt").stat().st_size == 0
    maps = tmp_path / "maps"
    for image_id, (x0, y0, x1, y1) in (("test/c0/a.jpg", (5, 4, 15, 12)), ("test/c1/b.jpg", (2, 2, 10, 10))):
        score = np.zeros((30, 40))
        score[y0:y1, x0:x1] = 1.0
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", score)
    result = evaluate_maps(maps, meta, "test", cam_curve_interval=0.01, mask_root=root, image_size=(30, 40))
    assert result["PxAP"] == pytest.approx(100.0)
    module = OpenImagesDataModule(str(root), num_classes=2, metadata_root=str(meta), load_masks=True, **SMALL)
    module.check()
    assert module.tables.splits["test"].sizes is None and len(module.tables.splits["train"]) == 4
    report = check_data(compose_config("check_data", [
        "data=openimages", f"data.root={root}", f"data.metadata_root={meta}", "data.num_classes=2",
        "data.batch_size=2"],
        tmp_path / "out", tmp_path / "data"))
    assert report.ok, _messages(report)


@pytest.mark.parametrize("dataset", ["CUB", "ILSVRC"])
def test_published_box_metadata_trains_checks_and_evaluates(dataset: str, tmp_path: Path) -> None:
    images = tmp_path / "images"
    if dataset == "CUB":
        cub = write_cub(tmp_path / "cub")
        images = cub / "images"
    top = {"train": "train/", "val": "val/", "test": "val/"} if dataset == "ILSVRC" else dict.fromkeys(
        ("train", "val", "test"), "")

    def name(split: str, c: int, k: int) -> str:
        return f"{top[split]}00{c + 1}.Bird_{c + 1}/{split}{k}.jpg"

    meta = _as_published(write_metadata(tmp_path / "metadata" / dataset, images, {
        "train": [(name("train", c, k), c, [(3, 3, 20, 20)]) for c in range(3) for k in range(2)],
        "val": [(name("val", c, 0), c, [(2, 2, 30, 20)]) for c in range(3)],
        "test": [(name("test", c, 0), c, [(5, 4, 27, 20)]) for c in range(3)],
    }), dataset)
    if dataset == "CUB":
        module = CUBDataModule(str(cub), num_classes=3, split="wsol", metadata_root=str(meta), **SMALL)
        overrides = ["data=cub", f"data.root={cub}"]
    else:
        module = ImageNetDataModule(str(images), num_classes=3, split="wsol", metadata_root=str(meta), **SMALL)
        overrides = ["data=imagenet", f"data.root={images}"]
    module.setup("fit")
    assert len(module.datasets["train"]) == 6
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (2, 3, 28, 28)
    report = check_data(compose_config("check_data", [*overrides, "data.split=wsol", f"data.metadata_root={meta}",
                                                      "data.num_classes=3", "data.batch_size=2"],
                                       tmp_path / "out", tmp_path / "data"))
    assert report.ok, _messages(report)
    # eval_maps on the train split: no sizes in the metadata, so they come from the image headers
    maps = tmp_path / "maps"
    for c in range(3):
        for k in range(2):
            image_id = name("train", c, k)
            (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
            np.save(maps / f"{image_id}.npy", np.zeros((30, 40)))
    if dataset == "ILSVRC":
        (meta / "train" / "localization.txt").write_text("".join(
            f"{name('train', c, k)},3,3,20,20\n" for c in range(3) for k in range(2)))
        with pytest.raises(EvalMapsError, match=r"image_sizes.txt is missing or empty.*Pass image_root="):
            evaluate_maps(maps, meta, "train")
        result = evaluate_maps(maps, meta, "train", image_root=images, cam_curve_interval=0.01)
        assert result["num_images"] == 6 and "MaxBoxAccV2" in result
