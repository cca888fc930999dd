"""check_data and the checks at the start of a run: every planted fault is reported by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from camexp.check_data import check_data
from camexp.core.errors import DatasetError
from camexp.data.datamodule import CUBDataModule
from camexp.data.imagenet import ImageNetDataModule
from tests.helpers.configs import TINY_SYNTHETIC, compose_config
from tests.helpers.datasets import write_cub, write_imagenet, write_metadata

SMALL = dict(batch_size=2, num_workers=0, val_fraction=0.5, resize_size=(40, 40), crop_size=32,
             eval_size=(32, 32))


def _report(tmp_path: Path, *overrides: str):
    cfg = compose_config("check_data", list(overrides), tmp_path / "out", tmp_path / "data")
    return check_data(cfg)


def _cub_report(tmp_path: Path, cub: Path, *overrides: str):
    return _report(tmp_path, "data=cub", f"data.root={cub}", "data.num_classes=3",
                   "data.val_fraction=0.5", "data.batch_size=2", *overrides)


def _messages(report) -> str:
    return "\n".join(f"[{p.kind}] {p.message}" for p in report.problems)


def test_healthy_cub_copy_reports_counts_and_no_problem(tmp_path: Path, capsys) -> None:
    cub = write_cub(tmp_path / "cub")
    report = _cub_report(tmp_path, cub)
    out = capsys.readouterr().out
    assert report.ok and "Problems: none. OK" in out
    assert [(s.name, s.images) for s in report.splits] == [("train", 3), ("val", 3), ("test", 6)]
    assert "Classes: 3 (from " in out and "classes.txt" in out
    assert "6 of 6" in out  # every test image decoded (sample 500 > 6)


def test_missing_image_names_file_and_line(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    victim = cub / "images" / "002.Bird_2" / "Bird_2_0003_8.jpg"
    victim.unlink()
    report = _cub_report(tmp_path, cub)
    text = _messages(report)
    assert "[missing image]" in text and str(victim) in text and "images.txt, line 8" in text


def test_truncated_and_garbage_images_are_unreadable(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    truncated = cub / "images" / "001.Bird_1" / "Bird_1_0002_3.jpg"
    truncated.write_bytes(truncated.read_bytes()[:400])
    garbage = cub / "images" / "003.Bird_3" / "Bird_3_0000_9.jpg"
    garbage.write_bytes(b"<html>not an image</html>")
    report = _cub_report(tmp_path, cub)
    unreadable = [p for p in report.problems if p.kind == "unreadable image"]
    assert {p.image_id for p in unreadable} == {"001.Bird_1/Bird_1_0002_3.jpg", "003.Bird_3/Bird_3_0000_9.jpg"}
    assert all("images.txt, line" in p.message and "on_bad_image=skip" in p.message for p in unreadable)


def test_box_outside_the_image_names_the_box_line(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    boxes = cub / "bounding_boxes.txt"
    lines = boxes.read_text().splitlines()
    lines[4] = "5 50.0 10.0 30.0 20.0"  # x1 = 80 > width 60
    boxes.write_text("\n".join(lines) + "\n")
    report = _cub_report(tmp_path, cub)
    text = _messages(report)
    assert "[box outside image]" in text and "bounding_boxes.txt, line 5" in text and "w=60, h=48" in text


def test_csv_box_with_x1_below_x0_and_duplicate_id(tmp_path: Path) -> None:
    root = write_imagenet(tmp_path / "imagenet", boxes="csv")
    csv_file = root / "LOC_val_solution.csv"
    lines = csv_file.read_text().splitlines()
    lines[2] = "ILSVRC2012_val_00000002,n01440764 30 2 10 18"
    lines.append(lines[5])  # image 5 listed twice
    csv_file.write_text("\n".join(lines) + "\n")
    report = _report(tmp_path, "data=imagenet", f"data.root={root}", "data.num_classes=3")
    text = _messages(report)
    assert "[box x1 < x0]" in text and "LOC_val_solution.csv, line 3" in text
    assert "[duplicate id]" in text and "LOC_val_solution.csv, line 8" in text and "first at" in text
    # the CSV gives no sizes: boxes are checked against the JPEG headers
    assert report.splits[-1].sizes_from == "image headers"


def test_label_out_of_range_names_class_labels_line(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    ids = [line.split()[1] for line in (cub / "images.txt").read_text().splitlines()]
    splits = {s: [(ids[i], i // 4, [(5, 4, 20, 18)]) for i in rows]
              for s, rows in {"train": [0, 4, 8], "val": [1, 5], "test": [2, 6, 10]}.items()}
    splits["test"][1] = (ids[6], 7, [(5, 4, 20, 18)])
    meta = write_metadata(tmp_path / "metadata" / "CUB", cub / "images", splits)
    report = _cub_report(tmp_path, cub, "data.split=wsol", f"data.metadata_root={meta}")
    text = _messages(report)
    assert "[label out of range]" in text and "test/class_labels.txt, line 2" in text
    assert "label 7, outside 0..2" in text


def test_class_count_differs_from_the_model(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    report = _cub_report(tmp_path, cub, "model=tinynet_gap", "model.num_classes=5")
    assert "[class count]" in _messages(report) and "model.num_classes=5" in _messages(report)


def test_run_start_stops_with_the_list_unless_skip(tmp_path: Path, caplog) -> None:
    cub = write_cub(tmp_path / "cub")
    missing = cub / "images" / "001.Bird_1" / "Bird_1_0001_2.jpg"
    missing.unlink()
    with pytest.raises(DatasetError, match=r"(?s)1 problem\(s\).*missing image.*Bird_1_0001_2.jpg.*"
                                           r"images.txt, line 2.*on_bad_image=skip"):
        CUBDataModule(str(cub), num_classes=3, **SMALL).check()
    datamodule = CUBDataModule(str(cub), num_classes=3, on_bad_image="skip", **SMALL)
    with caplog.at_level("WARNING"):
        datamodule.check()
        datamodule.setup("fit")
    assert sum(len(d) for d in datamodule.datasets.values()) == 11
    assert datamodule.skipped == [("train", "001.Bird_1/Bird_1_0001_2.jpg", "missing image")]
    assert sum("Bird_1_0001_2.jpg" in r.getMessage() for r in caplog.records) == 1
    report = _cub_report(tmp_path, cub, "data.on_bad_image=skip")
    assert len(report.skipped) == 1
    # the skipped image was class 1's only training image left: check_data says so (issue 19)
    assert [p.kind for p in report.problems] == ["class without training images"]


def test_checks_at_run_start_sample_train_and_decode_val_and_test_in_full(tmp_path: Path, monkeypatch) -> None:
    root = write_imagenet(tmp_path / "imagenet", per_class=12)
    decoded = []
    import camexp.data.checks as checks

    original = checks._decode
    monkeypatch.setattr(checks, "_decode", lambda path: decoded.append(path) or original(path))
    module = ImageNetDataModule(str(root), num_classes=3, check_sample=4, **{**SMALL, "val_fraction": 0.5})
    module.check()
    splits = module.tables.splits
    assert len(splits["train"]) == 36 and len(decoded) == 4 + len(splits["val"]) + len(splits["test"])
    assert {str(splits["test"].image_file(r)) for r in range(len(splits["test"]))} <= {str(p) for p in decoded}
    decoded.clear()
    ImageNetDataModule(str(root), num_classes=3, check_sample=4, check_eval_splits=False,
                       **{**SMALL, "val_fraction": 0.5}).check()
    assert len(decoded) <= 3 * 4


def test_cli_exit_codes(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def cli(*overrides):
        return subprocess.run([sys.executable, "-m", "camexp.check_data", "data=cub", "data.num_classes=3",
                               "data.batch_size=2", *overrides], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    healthy = cli(f"data.root={cub}")
    assert healthy.returncode == 0, healthy.stderr and "Problems: none. OK" in healthy.stdout
    (cub / "images" / "002.Bird_2" / "Bird_2_0000_5.jpg").unlink()
    broken = cli(f"data.root={cub}")
    assert broken.returncode == 1 and "[missing image]" in broken.stdout
    absent = cli(f"data.root={tmp_path / 'none'}")
    assert absent.returncode == 2 and "does not exist" in absent.stderr and "Traceback" not in absent.stderr
    assert not list(tmp_path.glob("outputs"))  # check_data writes no run folder


# -- issue 19: splits that would train nothing, or validate nothing ---------------------------------


def test_train_split_smaller_than_a_batch_is_a_problem_and_refused_before_training(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub", per_class=20)  # 30 training images, 3 of them to val
    report = _cub_report(tmp_path, cub, "data.val_fraction=0.1", "data.batch_size=32")
    assert [s.images for s in report.splits][0] == 27
    text = _messages(report)
    assert "[train smaller than a batch]" in text
    assert "has 27 image(s), fewer than one batch of data.batch_size=32" in text
    assert "Lower data.batch_size to at most 27" in text
    datamodule = CUBDataModule(str(cub), num_classes=3, **{**SMALL, "batch_size": 32, "val_fraction": 0.1})
    datamodule.check()
    datamodule.setup("test")  # evaluation needs no training batch
    with pytest.raises(DatasetError, match=r"Nothing to train: the train split .* has 27 image\(s\), "
                                           r"fewer than one batch of data.batch_size=32"):
        datamodule.setup("fit")
    assert _cub_report(tmp_path, cub, "data.val_fraction=0.1", "data.batch_size=27").ok


def test_list_files_without_training_lines_are_refused(tmp_path: Path) -> None:
    cub = write_cub(tmp_path / "cub")
    lines = (cub / "train_test_split.txt").read_text().splitlines()
    (cub / "train_test_split.txt").write_text("".join(f"{line[:-1]}0\n" for line in lines))  # all test
    text = _messages(_cub_report(tmp_path, cub))
    assert "[train smaller than a batch]" in text and "has 0 image(s)" in text
    assert "Its list files name no training image" in text
    with pytest.raises(DatasetError, match=r"Nothing to train: .* has 0 image\(s\)"):
        CUBDataModule(str(cub), num_classes=3, **SMALL).setup("fit")


def test_class_without_training_images_and_empty_val_are_flagged(tmp_path: Path, capsys) -> None:
    cub = write_cub(tmp_path / "cub")
    # class 3's training images become test images: class 3 has none to train on
    lines = (cub / "train_test_split.txt").read_text().splitlines()
    lines = [f"{line.split()[0]} 0" if int(line.split()[0]) > 8 else line for line in lines]
    (cub / "train_test_split.txt").write_text("\n".join(lines) + "\n")
    report = _cub_report(tmp_path, cub, "data.batch_size=1")
    text = _messages(report)
    assert not report.ok and "[class without training images]" in text
    assert "1 of 3 classes have no training image" in text and "003.Bird_3" in text
    # one training image per class: val_fraction leaves none for val
    one = write_cub(tmp_path / "one", per_class=2)
    report = _cub_report(tmp_path, one, "data.batch_size=1")
    assert [(s.name, s.images) for s in report.splits][:2] == [("train", 3), ("val", 0)]
    assert "[empty val split]" in _messages(report) and "Problems: none" not in capsys.readouterr().out
    # a run warns (and trains)
    datamodule = CUBDataModule(str(one), num_classes=3, **{**SMALL, "batch_size": 1})
    datamodule.setup("fit")
    assert "camexp: WARNING: the val split of" in capsys.readouterr().err


def test_check_data_checks_the_synthetic_draw_the_demo_trains_on(tmp_path: Path, data_dir: Path) -> None:
    """check_data data=synthetic drew seed 0 while make demo trains on seed 12345 (issue 20);
    the report names the draw."""
    from hydra.utils import instantiate

    demo = compose_config("train", [], tmp_path / "run", data_dir)
    checked = compose_config("check_data", [], tmp_path / "check", data_dir)
    assert checked.data.synthetic.seed == demo.data.synthetic.seed == 12345
    tiny = compose_config("check_data", TINY_SYNTHETIC, tmp_path / "check", data_dir)
    datamodule = instantiate(tiny.data, _convert_="all")
    datamodule.prepare_data()
    assert "drawn with data.synthetic.seed=12345" in datamodule.read_tables().description
