"""A published row with its own box rule (BAS's): compared only with runs scored under the same
rule, with camexp's MaxBoxAccV2 beside it."""

from __future__ import annotations

from pathlib import Path

import yaml

from camexp.report.build import make_report
from tests.helpers.runs import fake_run

CUB = {"_target_": "camexp.data.datamodule.CUBDataModule", "split": "official"}
BAS_RESNET = {"model": {"arch": "resnet50", "pool": "gap"}, "data": CUB,
              "method": {"_target_": "camexp.methods.bas.BAS"}}
RULE = {"rule": "largest_component", "threshold": 0.15, "iou": 0.5, "resize": "bilinear",
        "gt_known_map": "ground_truth"}
METRICS = {"test/acc_top1": 0.8, "test/top1_loc": 70.25, "test/top5_loc": 85.0,
           "test/gt_known_loc": 90.0, "test/MaxBoxAccV2": 66.5}


def _run(folder: Path, rule: dict | None, in_settings: bool) -> None:
    localization = {"method": "cam", "box_rule": rule}
    config = {**BAS_RESNET, "localization": {"method": "cam", "box_rule": None if in_settings else rule}}
    fake_run(folder, config, METRICS, experiment="bas_cub_resnet50")
    if in_settings:  # what the run scored with (an eval run: its training run's rule)
        (folder / "run_settings.yaml").write_text(yaml.safe_dump({"localization": localization}))


def _lines(lines, run):
    return {line["metric"]: line for line in lines if line["run"] == run and line["row"] == "BAS ResNet50"}


def test_the_rows_own_rule_is_compared_only_with_a_run_scored_under_it(tmp_path: Path) -> None:
    _run(tmp_path / "runs" / "same", RULE, in_settings=True)
    _run(tmp_path / "runs" / "config", RULE, in_settings=False)
    _run(tmp_path / "runs" / "other", {**RULE, "threshold": 0.2}, in_settings=True)
    _run(tmp_path / "runs" / "none", None, in_settings=False)
    lines = make_report(tmp_path / "runs")
    for run in ("same", "config"):
        found = _lines(lines, run)
        assert (found["test/top1_loc"]["status"], found["test/top1_loc"]["diff"]) == ("ok", 70.25 - 77.25)
        assert found["test/gt_known_loc"]["ours"] == 90.0
        # MaxBoxAccV2 beside: ours, nothing published
        assert (found["test/MaxBoxAccV2"]["ours"], found["test/MaxBoxAccV2"]["paper"]) == (66.5, None)
    for run in ("other", "none"):
        found = _lines(lines, run)
        assert {found[m]["status"] for m in ("test/top1_loc", "test/top5_loc", "test/gt_known_loc")} == {
            "other box rule"}
        assert found["test/top1_loc"]["ours"] is None and found["test/MaxBoxAccV2"]["ours"] == 66.5
    report = (tmp_path / "runs" / "report" / "report.md").read_text()
    assert "| BAS ResNet50 | bas_cub_resnet50 | test/MaxBoxAccV2 | not published | 66.50 |" in report
    assert "| BAS ResNet50 | bas_cub_resnet50 | test/top1_loc | 77.25 | 70.25 | -7.00 |  | `same` | ok |" in report
