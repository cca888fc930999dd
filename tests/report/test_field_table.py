"""The field's table in camexp.report: methods x backbones per dataset, ours / the field's."""

from __future__ import annotations

import json
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
from tests.helpers.runs import fake_run

CUB = {"_target_": "camexp.data.datamodule.CUBDataModule"}
OPENIMAGES = {"_target_": "camexp.data.datamodule.OpenImagesDataModule"}


def _config(arch: str, method: str, data: dict) -> dict:
    return {"model": {"arch": arch}, "method": {"_target_": f"camexp.methods.{method}"}, "data": data}


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
    ckpt = root / "2" / "checkpoints" / "last.ckpt"  # an eval run of run 2's checkpoint
    fake_run(tmp_path / "sweep" / "eval", {"ckpt_path": str(ckpt), "data": CUB}, {"test/MaxBoxAccV2": 52.0})
    make_report(root, tmp_path / "out")
    cells = {(c["dataset"], c["backbone"], c["method"]): c for c in field_cells(find_runs(root),
                                                                                 load_published())}
    adl = cells[("CUB", "VGG16", "ADL")]
    assert adl["n"] == 2 and adl["ours"] == pytest.approx(61.3) and adl["field"] == 66.3
    assert adl["diff"] == pytest.approx(-5.0)
    assert cells[("CUB", "ResNet50", "ADL")]["n"] == 2  # the eval run counts for its checkpoint
    assert cells[("OpenImages", "VGG16", "HaS")]["ours"] == 57.1  # PxAP on OpenImages
    assert ("CUB", "VGG16", "SPG") not in cells
    table = (tmp_path / "out" / "field_table.md").read_text()
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert lines["method"].startswith("| method | CUB VGG16 | CUB ResNet50 | CUB mean | OpenImages VGG16")
    # ADL: VGG16 61.3 (2 runs) / 66.3, ResNet50 51.0 (2) / 58.4, CUB mean 56.15 / 62.35 (floats
    # just under the halves: 56.1 / 62.3)
    assert "| ADL | 61.3 (2) / 66.3 | 51.0 (2) / 58.4 | 56.1 / 62.3 | - | - / - |" in table
    assert "| CAM | 63.0 / 63.7 | - | 63.0 / 63.7 |" in table
    assert "| FSL | 70.0 / 71.6 | - | 70.0 / 71.6 |" in table
    # the centre baseline row: the runs' own centre baselines (PxAP on OpenImages), the field's
    # one number per dataset (docs/methods.md)
    centre = cells[("CUB", "VGG16", "Centre baseline")]
    assert centre["n"] == 2 and centre["ours"] == pytest.approx(58.5) and centre["field"] == 59.7
    assert cells[("OpenImages", "VGG16", "Centre baseline")]["ours"] == 44.0
    assert lines["Centre baseline"].startswith("| Centre baseline | 58.5 (2) / 59.7 | - | 58.5 / 59.7 | 44.0 / 45.8 |")
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
        config = {"model": {"arch": ARCHS[backbone], "pool": "gap"},
                  "method": {"_target_": f"camexp.methods.{METHODS[method]}"},
                  "data": {"_target_": f"camexp.data.datamodule.{DATA[dataset]}", "split": "wsol"},
                  "localization": {"method": "cam"}}
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
    assert "The field's table" in report.stdout
    rows = {}
    for line in (sweep / "report" / "field_table.md").read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            rows[line.split(" | ")[0][2:]] = line
    assert list(rows) == ["CAM", "HaS", "ACoL", "SPG", "ADL", "CutMix", "Centre baseline"]
    rows.pop("Centre baseline")
    for method, line in rows.items():
        job = next(j for j in sweep.iterdir() if (j / "metrics.json").is_file()
                   and f"method={method.lower()}" in (j / ".hydra/overrides.yaml").read_text())
        score = json.loads((job / "metrics.json").read_text())["test/MaxBoxAccV2"]
        assert line.startswith(f"| {method} | {score:.1f} / - |"), (line, score)
