"""The field's table in camexp.report: methods x backbones per dataset, ours / the field's."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camexp.report.build import make_report
from camexp.report.collect import find_runs
from camexp.report.field_table import field_cells, field_numbers
from camexp.report.published import load_published
from tests.helpers.configs import TINY_SYNTHETIC
from tests.helpers.runs import fake_run, field_protocol_config

CUB = {"_target_": "camexp.data.datamodule.CUBDataModule"}
OPENIMAGES = {"_target_": "camexp.data.datamodule.OpenImagesDataModule"}


def _config(arch: str, method: str, data: dict, **changes) -> dict:
    dataset = "OpenImages" if data is OPENIMAGES else "CUB"
    return field_protocol_config(arch, method, dataset, **changes)


def test_the_published_numbers_hold_the_fields_number_for_every_cell() -> None:
    numbers = field_numbers(load_published())
    # docs/methods.md: 6 methods and the FSL baseline x 3 backbones x 3 datasets, and the
    # centre baseline's one number per dataset in every backbone's column
    assert len(numbers) == 63 + 9
    assert {numbers[(d, b, "Centre baseline")] for d in ("CUB",) for b in ("VGG16", "ResNet50")} == {59.7}
    assert numbers[("OpenImages", "InceptionV3", "Centre baseline")] == 45.8
    assert numbers[("CUB", "InceptionV3", "FSL")] == 86.6
    assert numbers[("OpenImages", "ResNet50", "FSL")] == 74.4
    assert numbers[("CUB", "VGG16", "ADL")] == 66.3
    assert numbers[("ImageNet", "InceptionV3", "CutMix")] == 63.9
    assert numbers[("OpenImages", "ResNet50", "HaS")] == 55.9
    assert numbers[("CUB", "ResNet50", "ACoL")] == 66.5
    assert numbers[("CUB", "VGG16", "CAM")] == 63.7


def test_field_table_places_runs_by_what_they_ran(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    fake_run(root / "0", _config("vgg16", "ADL", CUB), {"test/MaxBoxAccV2": 60.3,
                                                         "test/MaxBoxAccV2_center_baseline": 58.0})
    fake_run(root / "1", _config("vgg16", "ADL", CUB), {"test/MaxBoxAccV2": 62.3,  # a 2nd seed
                                                         "test/MaxBoxAccV2_center_baseline": 59.0})
    fake_run(root / "2", _config("resnet50", "ADL", CUB), {"test/MaxBoxAccV2": 50.0})
    fake_run(root / "3", _config("vgg16", "CAM", CUB), {"test/MaxBoxAccV2": 63.0})
    fake_run(root / "4", _config("vgg16", "HideAndSeek", OPENIMAGES), {
        "test/PxAP": 57.1, "test/MaxBoxAccV2": 1.0, "test/PxAP_center_baseline": 44.0,
        "test/MaxBoxAccV2_center_baseline": 2.0})
    fake_run(root / "6", _config("vgg16", "FSL", CUB), {"test/MaxBoxAccV2": 70.0})
    fake_run(root / "5", _config("vgg16", "SPG", CUB), None)  # unfinished: not in the table
    make_report(root, tmp_path / "out")
    cells = {(c["dataset"], c["backbone"], c["method"]): c for c in field_cells(find_runs(root),
                                                                                 load_published())}
    adl = cells[("CUB", "VGG16", "ADL")]
    assert adl["n"] == 2 and adl["ours"] == pytest.approx(61.3) and adl["field"] == 66.3
    assert adl["diff"] == pytest.approx(-5.0)
    assert cells[("CUB", "ResNet50", "ADL")]["n"] == 1
    assert cells[("OpenImages", "VGG16", "HaS")]["ours"] == 57.1  # PxAP on OpenImages
    assert ("CUB", "VGG16", "SPG") not in cells
    table = (tmp_path / "out" / "field_table.md").read_text()
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert lines["method"].startswith("| method | CUB VGG16 | CUB ResNet50 | CUB mean | OpenImages VGG16")
    # ADL: VGG16 61.3 (2 runs, 2 test evaluations) / 66.3, ResNet50 50.0 / 58.4, CUB mean 55.65
    # / 62.35 (floats just under the halves: 55.6 / 62.3)
    assert "| ADL | 61.3 (2) [2] / 66.3 | 50.0 [1] / 58.4 | 55.6 / 62.3 | - | - / - |" in table
    assert "| CAM | 63.0 [1] / 63.7 | - | 63.0 / 63.7 |" in table
    assert "| FSL | 70.0 [1] / 71.6 | - | 70.0 / 71.6 |" in table
    # the centre baseline row: the runs' own centre baselines (PxAP on OpenImages), the field's
    # one number per dataset (docs/methods.md)
    centre = cells[("CUB", "VGG16", "Centre baseline")]
    assert centre["n"] == 2 and centre["ours"] == pytest.approx(58.5) and centre["field"] == 59.7
    assert cells[("OpenImages", "VGG16", "Centre baseline")]["ours"] == 44.0
    assert lines["Centre baseline"].startswith(
        "| Centre baseline | 58.5 (2) [2] / 59.7 | - | 58.5 / 59.7 | 44.0 [1] / 45.8 |")
    assert list(lines)[1:] == ["CAM", "HaS", "ADL", "FSL", "Centre baseline"]
    assert "The field's table" in (tmp_path / "out" / "report.md").read_text()


METHODS = {"CAM": "CAM", "HaS": "HideAndSeek", "ACoL": "ACoL", "SPG": "SPG", "ADL": "ADL",
           "CutMix": "CutMix", "FSL": "FSL"}
DATA = {"ImageNet": "ImageNetDataModule", "CUB": "CUBDataModule", "OpenImages": "OpenImagesDataModule"}
ARCHS = {"VGG16": "vgg16", "InceptionV3": "inception_v3", "ResNet50": "resnet50"}


def test_the_report_finds_the_fields_number_of_all_63_cells(tmp_path: Path) -> None:
    """One run per (dataset, backbone, method) of the field's protocol (data.split=wsol), each
    scoring the field's number plus 1: every cell of the field's table and every row of the
    paper tables finds its published number."""
    numbers = field_numbers(load_published())
    cells = [cell for cell in numbers if cell[2] != "Centre baseline"]
    assert len(cells) == 63
    for n, (dataset, backbone, method) in enumerate(cells):
        score = "PxAP" if dataset == "OpenImages" else "MaxBoxAccV2"
        config = field_protocol_config(ARCHS[backbone], METHODS[method], dataset)
        fake_run(tmp_path / "runs" / str(n), config,
                 {f"test/{score}": numbers[(dataset, backbone, method)] + 1.0})
    lines = make_report(tmp_path / "runs")
    assert len(lines) == 63 and {line["status"] for line in lines} == {"ok"}
    assert all(line["diff"] == pytest.approx(1.0) for line in lines)
    assert {(line["table"].split()[0], line["row"]) for line in lines} == {
        (dataset, f"{method} {backbone}") for dataset, backbone, method in cells}
    found = {(c["dataset"], c["backbone"], c["method"]): c for c in field_cells(
        find_runs(tmp_path / "runs"), load_published())}
    for cell in cells:
        assert found[cell]["field"] == numbers[cell] and found[cell]["diff"] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_sweep_of_the_six_methods_prints_the_methods_table(tmp_path: Path, data_dir: Path) -> None:
    quick = TINY_SYNTHETIC + ["trainer.max_epochs=1", "trainer.limit_train_batches=2",
                              "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
                              "callbacks.cam_pictures.num_images=1", "localization.cam_curve_interval=0.05"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "camexp.train", "-m", *quick,
                           "method=cam,has,acol,spg,adl,cutmix", "tags=[methods]", f"paths.data_dir={data_dir}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = next((tmp_path / "outputs/train/multiruns").iterdir())
    report = subprocess.run([sys.executable, "-m", "camexp.report", str(sweep)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    # one-epoch runs on the synthetic data are not the field's protocol: no cell, and every run
    # is in the runs table with the reason
    assert "The field's table" not in report.stdout
    assert not (sweep / "report" / "field_table.md").exists()
    with (sweep / "report" / "runs.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 6
    assert {row["field_table"] for row in rows} == {"the Synthetic data is not one of the field's datasets"}


def test_only_training_runs_under_the_protocol_fill_a_cell(tmp_path: Path) -> None:
    """One protocol run of CAM on CUB VGG16 (60.0), and runs of the same dataset, backbone and
    method that are not the protocol: each stays out of the cell (the mean stays 60.0, one run)
    and out of the field's row of the paper tables, and the runs table says why."""
    root = tmp_path / "runs"
    fake_run(root / "protocol", _config("vgg16", "CAM", CUB), {"test/MaxBoxAccV2": 60.0})
    ckpt = root / "protocol" / "checkpoints" / "epoch_042.ckpt"
    unlike = {
        "eval": ({"task_name": "eval", "ckpt_path": str(ckpt), "data": CUB,
                  "localization": {"method": "cam"}}, "an evaluation of a checkpoint"),
        "posthoc": (_config("vgg16", "CAM", CUB, localization__method="gradcam"),
                    "localization.method=gradcam scored, not the method's own map"),
        "one_epoch": (_config("vgg16", "CAM", CUB, trainer__max_epochs=1),
                      "trainer.max_epochs=1, the field trains 50 on CUB"),
        "limited": (_config("vgg16", "CAM", CUB, trainer__limit_train_batches=0.05),
                    "trainer.limit_train_batches=0.05: a shortened run"),
        "official": (_config("vgg16", "CAM", CUB, data__split="official"),
                     "data.split=official, not the field's splits"),
        "monitor": (_config("vgg16", "CAM", CUB, callbacks__model_checkpoint__monitor="val/acc_top1"),
                    "checkpoint chosen by val/acc_top1, the field chooses by val/MaxBoxAccV2"),
        "thresholds": (_config("vgg16", "CAM", CUB, localization__cam_curve_interval=0.01),
                       "localization.cam_curve_interval=0.01, not the field's threshold spacing"),
        "small": (_config("vgg16", "CAM", CUB, data__eval_size=[112, 112]),
                  "data.eval_size=[112, 112], not the field's evaluation size"),
        "untrained": (_config("vgg16", "CAM", CUB, train=False), "train=false"),
    }
    for name, (config, _) in unlike.items():
        fake_run(root / name, config, {"test/MaxBoxAccV2": 10.0})
    lines = make_report(root, tmp_path / "out")
    [cell] = [c for c in field_cells(find_runs(root), load_published()) if c["method"] == "CAM"]
    assert (cell["ours"], cell["n"], cell["tests"]) == (60.0, 1, 1)
    assert {line["run"] for line in lines if line["table"] == "CUB MaxBoxAccV2" and line["run"]} == {"protocol"}
    with (tmp_path / "out" / "runs.csv").open() as file:
        reasons = {row["run"]: row["field_table"] for row in csv.DictReader(file)}
    assert reasons.pop("protocol") == "in"
    for name, (_, reason) in unlike.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
