"""``python -m camexp.report``: paper tables from fake run folders with known numbers, and a real run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from camexp.core.errors import UserError
from camexp.report.__main__ import main
from camexp.report.build import make_report
from camexp.report.collect import derived_metrics
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config
from tests.helpers.runs import fake_run, field_protocol_config

# what the configs of the ILSVRC presets' runs say they trained (the report matches on it)
IMAGENET = {"_target_": "camexp.data.datamodule.ImageNetDataModule", "split": "official"}
GOOGLENET = {"arch": "googlenet", "pool": "gap", "head": {"num_convs": 1}}
VGG = {"arch": "vgg16", "pool": "gap", "head": {"num_convs": 1}}
CAM = {"_target_": "camexp.methods.CAM"}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A partial sweep: GoogLeNet-GAP finished, VGGnet-GAP unfinished, the rest missing; plus
    a threshold sweep of eval runs on GoogLeNet-GAP's checkpoint and a Backprop eval of it."""
    root = tmp_path / "sweep"
    cam = {"localization": {"method": "cam", "paper_fraction": 0.2}, "data": IMAGENET, "method": CAM}
    fake_run(root / "0", {**cam, "model": GOOGLENET, "tags": ["ilsvrc"]},
             {"test/acc_top1": 0.66, "test/acc_top5": 0.87, "test/loc_top1_err": 55.0,
              "test/loc_top5_err": 44.0, "val/acc_top1": 0.7},
             experiment="ilsvrc_googlenet_gap", overrides=("experiment=ilsvrc_googlenet_gap", "seed=1"))
    fake_run(root / "1", {**cam, "model": VGG}, None, experiment="ilsvrc_vgg_gap")
    ckpt = str(root / "0" / "checkpoints" / "last.ckpt")
    for n, fraction in enumerate((0.1, 0.3)):
        fake_run(tmp_path / "evals" / str(n),
                 {"ckpt_path": ckpt, "data": IMAGENET,
                  "localization": {"method": "cam", "paper_fraction": fraction}},
                 {"test/acc_top1": 0.66, "test/acc_top5": 0.87, "test/loc_top1_err": 60.0 + n,
                  "test/loc_top5_err": 50.0 + n},
                 overrides=(f"ckpt_path={ckpt}", f"localization.paper_fraction={fraction}"))
    fake_run(tmp_path / "evals" / "backprop",
             {"ckpt_path": ckpt, "paper_preset": "ilsvrc_backprop_googlenet",
              "localization": {"method": "backprop"}},
             {"test/acc_top1": 0.66, "test/acc_top5": 0.87, "test/loc_top1_err": 62.31, "test/loc_top5_err": 50.0})
    (root / ".submitit" / "123" / ".hydra").mkdir(parents=True)  # never a run
    return root


def _line(lines, table, row, metric, run=None):
    found = [x for x in lines if (x["table"], x["row"], x["metric"]) == (table, row, metric)
             and (run is None or x["run"] == run)]
    assert len(found) == 1, found
    return found[0]


def test_derived_metrics_use_percent_units() -> None:
    derived = derived_metrics({"test/acc_top1": 0.66, "test/acc_top5": 0.87, "test/MaxBoxAccV2": 60.0})
    assert derived["test/cls_top1_err"] == pytest.approx(34.0)
    assert derived["test/cls_top5_err"] == pytest.approx(13.0)
    assert derived["test/acc_top1_pct"] == pytest.approx(66.0)
    assert derived["test/MaxBoxAccV2"] == 60.0


def test_report_of_a_partial_sweep(sweep: Path) -> None:
    lines = make_report(sweep)
    assert {x["table"] for x in lines} == {"Table 1", "Table 2"}  # only tables with runs
    top1 = _line(lines, "Table 1", "GoogLeNet-GAP", "test/cls_top1_err")
    assert (top1["paper"], top1["ours"], top1["run"], top1["status"]) == (35.0, pytest.approx(34.0), "0", "ok")
    assert top1["diff"] == pytest.approx(-1.0)
    assert top1["preset"] == "ilsvrc_googlenet_gap"
    loc5 = _line(lines, "Table 2", "GoogLeNet-GAP", "test/loc_top5_err")
    assert (loc5["ours"], loc5["diff"]) == (44.0, pytest.approx(1.0))
    vgg = _line(lines, "Table 2", "VGGnet-GAP", "test/loc_top1_err")
    assert (vgg["status"], vgg["run"], vgg["ours"], vgg["paper"]) == ("unfinished", "1", None, 57.20)
    for row in ("AlexNet-GAP", "AlexNet*-GAP", "GoogLeNet-GMP"):
        missing = _line(lines, "Table 1", row, "test/cls_top1_err")
        assert (missing["status"], missing["run"], missing["ours"]) == ("missing", "", None)
    assert _line(lines, "Table 2", "Backprop on VGGnet", "test/loc_top1_err")["status"] == "missing"

    out = sweep / "report"
    with (out / "report.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(lines)
    csv_top1 = next(r for r in rows if r["row"] == "GoogLeNet-GAP" and r["metric"] == "test/cls_top1_err")
    assert float(csv_top1["ours"]) == pytest.approx(34.0) and csv_top1["table"] == "Table 1"
    assert csv_top1["overrides"] == "seed=1"
    markdown = (out / "report.md").read_text()
    assert "## Table 1" in markdown and "## Table 2" in markdown
    # no test_record.json in these hand-made folders: the test count is unknown (blank)
    assert "| GoogLeNet-GAP | ilsvrc_googlenet_gap | test/cls_top1_err | 35.00 | 34.00 | -1.00 |  | `0` | ok |" in markdown
    assert "| VGGnet-GAP | ilsvrc_vgg_gap | test/loc_top1_err | 57.20 |  |  |  | `1` | unfinished |" in markdown
    for png in ("table_1.png", "table_2.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_runs_take_the_paper_rows_of_their_checkpoint_or_of_paper_preset(sweep: Path) -> None:
    lines = make_report(sweep.parent, out=sweep.parent / "out")
    runs = {x["run"] for x in lines if x["row"] == "GoogLeNet-GAP" and x["table"] == "Table 2"}
    assert runs == {"sweep/0", "evals/0", "evals/1"}
    swept = _line(lines, "Table 2", "GoogLeNet-GAP", "test/loc_top1_err", run="evals/1")
    assert swept["ours"] == 61.0 and swept["varies"] == "localization.paper_fraction=0.3"
    backprop = _line(lines, "Table 2", "Backprop on GoogLeNet", "test/loc_top1_err")
    assert (backprop["run"], backprop["diff"]) == ("evals/backprop", pytest.approx(1.0))
    assert "(localization.paper_fraction=0.1)" in (sweep.parent / "out" / "report.md").read_text()


def test_all_lists_every_table_and_bad_folders_are_clear(tmp_path: Path, capsys) -> None:
    lines = make_report(tmp_path, out=tmp_path / "out", all_tables=True)
    assert {"Table 1", "Table 2", "Table 4", "CUB MaxBoxAccV2", "ImageNet MaxBoxAccV2"} <= {x["table"] for x in lines}
    assert all(x["status"] == "missing" for x in lines)
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty")])
    assert "No run folder" in capsys.readouterr().err


def test_report_of_a_real_tiny_run(tmp_path: Path, data_dir: Path) -> None:
    """A real training run of the synthetic_gap preset, with the .hydra/ files the CLI writes."""
    run = tmp_path / "runs" / "gap"
    overrides = ["experiment=synthetic_gap", *TINY_SYNTHETIC, "trainer.max_epochs=1",
                 "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                 "callbacks.cam_pictures.num_images=1", "trainer.enable_progress_bar=false",
                 "localization.cam_curve_interval=0.01"]
    cfg = compose_config("train", overrides, run, data_dir)
    metrics = train(cfg)
    (run / ".hydra").mkdir(exist_ok=True)
    with open_dict(cfg):
        hydra_cfg = cfg.pop("hydra")
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": hydra_cfg.runtime.choices}}}),
                   run / ".hydra" / "hydra.yaml")
    lines = make_report(tmp_path / "runs")
    ours = _line(lines, "Synthetic demo", "tinynet GAP", "test/acc_top1_pct")
    assert ours["run"] == "gap" and ours["preset"] == "synthetic_gap"
    assert ours["ours"] == pytest.approx(100 * metrics["test/acc_top1"])
    assert _line(lines, "Synthetic demo", "tinynet GAP", "test/MaxBoxAccV2")["ours"] == pytest.approx(
        metrics["test/MaxBoxAccV2"])
    assert _line(lines, "Synthetic demo", "tinynet GMP", "test/MaxBoxAccV2")["status"] == "missing"


def _choices(folder: Path, **choices: str) -> None:
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))


def test_report_of_runs_that_are_not_presets(tmp_path: Path, capsys) -> None:
    """A pool sweep, a run of another training method, and an eval of another localization
    method: one row per run, its values, the differing overrides as its label."""
    root = tmp_path / "sweep"
    data = {"_target_": "camexp.data.datamodule.CUBDataModule", "root": "/data/mybirds", "eval_size": [112, 112]}
    for n, pool in enumerate(("gap", "gmp")):
        fake_run(root / str(n), {"task_name": "train", "model": {"arch": "vgg16", "pool": pool}, "data": data,
                                 "localization": {"method": "cam"}},
                 {"test/acc_top1": 0.812 - n / 2, "test/acc_top5": 0.95, "test/MaxBoxAccV2": 30.1 - 30 * n,
                  "test/MaxBoxAccV2_center_baseline": 21.0, "val/acc_top1": 0.8},
                 overrides=("data=cub", "data.root=/data/mybirds", f"model.pool={pool}"))
        _choices(root / str(n), model="vgg_gap", data="cub")
    warned = json.loads((root / "1" / "metrics.json").read_text())
    warned["warnings"] = ["test/MaxBoxAccV2 0.1 is below the centre-Gaussian baseline 21.0: worse than a blob."]
    (root / "1" / "metrics.json").write_text(json.dumps(warned))
    fake_run(root / "2", {"task_name": "train", "model": {"arch": "vgg16", "pool": "gap"}, "data": data,
                          "method": {"_target_": "camexp.methods.HaS"}, "localization": {"method": "cam"}},
             {"test/acc_top1": 0.7, "test/MaxBoxAccV2": 35.0}, overrides=("data=cub", "data.root=/data/mybirds",
                                                                           "method=has"))
    _choices(root / "2", model="vgg_gap", data="cub", method="has")
    fake_run(root / "3", {"task_name": "train", "model": {"arch": "vgg16", "pool": "gap"}}, None,
             overrides=("data=cub", "data.root=/data/mybirds", "model.head.width=512"))
    ckpt = root / "0" / "checkpoints" / "last.ckpt"
    fake_run(tmp_path / "evals" / "0", {"task_name": "eval", "ckpt_path": str(ckpt), "data": data,
                                        "localization": {"method": "gradcam"}},
             {"test/acc_top1": 0.812, "test/MaxBoxAccV2": 28.0},
             overrides=(f"ckpt_path={ckpt}", "localization.method=gradcam"))
    _choices(tmp_path / "evals" / "0", data="cub")

    make_report(root)
    assert ("4 runs (3 finished, 1 unfinished): 4 rows in the runs table; 0 runs in the paper tables"
            in capsys.readouterr().out)
    with (root / "report" / "runs.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [r["run"] for r in rows] == ["0", "1", "2", "3"]
    gap, gmp, has, unfinished = rows
    assert (gap["label"], gap["model"], gap["pool"], gap["method"], gap["localization"], gap["data"]) == (
        "model.pool=gap", "vgg_gap", "gap", "cam", "cam", "cub (mybirds, 112x112)")
    assert float(gap["top-1 %"]) == pytest.approx(81.2) and float(gap["MaxBoxAccV2"]) == pytest.approx(30.1)
    assert (gmp["label"], gmp["pool"], float(gmp["MaxBoxAccV2"])) == ("model.pool=gmp", "gmp", pytest.approx(0.1))
    assert gmp["warnings"].startswith("test/MaxBoxAccV2 0.1 is below") and gap["warnings"] == ""
    assert (has["label"], has["method"], has["top-1 %"]) == ("method=has", "has", "70.0")
    assert (unfinished["status"], unfinished["top-1 %"], unfinished["label"]) == ("unfinished", "", "model.head.width=512")
    markdown = (root / "report" / "report.md").read_text()
    assert "## Runs" in markdown and "## Table" not in markdown
    assert ("| model.pool=gmp | train | vgg_gap | gmp | cam | cam | cub (mybirds, 112x112) | 31.20 | 95.00 | 0.10 | "
            "21.00 |  | test/MaxBoxAccV2 0.1 is below the centre-Gaussian baseline 21.0 | `1` | finished |") in markdown
    assert (root / "report" / "runs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # an eval run takes model, pool and training method from its checkpoint's training run
    make_report(tmp_path, out=tmp_path / "all")
    with (tmp_path / "all" / "runs.csv").open() as file:
        rows = {r["run"]: r for r in csv.DictReader(file)}
    scored = rows["evals/0"]
    assert (scored["kind"], scored["model"], scored["pool"], scored["method"], scored["localization"]) == (
        "eval", "vgg_gap", "gap", "cam", "gradcam")
    assert scored["label"] == "localization.method=gradcam" and scored["trained_in"] == str(root / "0")


def test_an_eval_run_is_described_by_its_checkpoint_and_its_own_map(tmp_path: Path) -> None:
    """A Backprop eval of a GAP checkpoint gets the Backprop rows without naming them; a
    Grad-CAM eval of it gets none; a CAM run on the field's split gets the field's row only."""
    root = tmp_path / "runs"
    cam = {"data": IMAGENET, "method": CAM, "localization": {"method": "cam"}}
    fake_run(root / "train", {**cam, "model": VGG}, {"test/acc_top1": 0.6}, experiment="ilsvrc_vgg_gap")
    ckpt = str(root / "train" / "checkpoints" / "last.ckpt")
    for method in ("backprop", "gradcam"):
        fake_run(root / method, {"ckpt_path": ckpt, "data": IMAGENET, "localization": {"method": method}},
                 {"test/loc_top1_err": 62.12, "test/loc_top5_err": 50.0})
    fake_run(root / "field", field_protocol_config("vgg16", "CAM", "ImageNet"), {"test/MaxBoxAccV2": 61.0})
    lines = make_report(root)
    by_run = {}
    for line in lines:
        by_run.setdefault(line["run"], set()).add((line["table"], line["row"]))
    assert by_run["train"] == {("Table 1", "VGGnet-GAP"), ("Table 2", "VGGnet-GAP")}
    assert by_run["backprop"] == {("Table 2", "Backprop on VGGnet")}
    assert "gradcam" not in by_run
    assert by_run["field"] == {("ImageNet MaxBoxAccV2", "CAM VGG16")}
    backprop = _line(lines, "Table 2", "Backprop on VGGnet", "test/loc_top1_err")
    assert (backprop["preset"], backprop["diff"]) == ("ilsvrc_vgg_gap", pytest.approx(1.0))


def test_all_lists_the_recipes_of_the_method_rows(tmp_path: Path) -> None:
    lines = make_report(tmp_path, out=tmp_path / "out", all_tables=True)
    has = _line(lines, "CUB MaxBoxAccV2", "HaS VGG16", "test/MaxBoxAccV2")
    assert (has["preset"], has["paper"], has["status"]) == ("wsol_cub_vgg16 method=has", 63.7, "missing")
    # rows without a recipe (the centre baseline, methods camexp does not have) are not listed
    assert not [x for x in lines if x["row"] == "Centre baseline"
                or ("since 2021" in x["table"] and x["preset"] == "")]
    bas = _line(lines, "CUB since 2021", "BAS ResNet50", "test/top1_loc")
    assert (bas["preset"], bas["paper"], bas["status"]) == ("bas_cub_resnet50 method=bas", 77.25, "missing")
    sat = _line(lines, "CUB since 2021", "SAT DeiT-S", "test/gt_known_loc")
    assert (sat["preset"], sat["paper"], sat["status"]) == ("transformer_cub_deit_small method=sat", 98.45, "missing")


@pytest.mark.parametrize(("row", "match"), [
    ({"table": "T", "row": "r", "dataset": "CUB", "method": "CAM", "metrics": {"test/PxAP": 1}},
     r"published.yaml, row 1 \('T' / 'r'\): missing \['source'\]"),
    ({"source": "s", "table": "T", "row": "r", "dataset": "CUB", "method": "CAM",
      "metrics": {"test/nothing": 1}}, r"row 1 .*every metric needs its unit and convention"),
    ({"source": "elsewhere", "table": "T", "row": "r", "dataset": "CUB", "method": "CAM",
      "metrics": {"test/PxAP": 1}}, r"source 'elsewhere' is not one of `sources:`"),
    ({"source": "s", "table": "T", "row": "r", "dataset": "CUB", "method": "CAM", "colour": "red",
      "metrics": {"test/PxAP": 1}}, r"unknown \['colour'\]"),
])
def test_a_bad_published_row_is_named(tmp_path: Path, row: dict, match: str) -> None:
    published = tmp_path / "published.yaml"
    published.write_text(yaml.safe_dump({"sources": {"s": "a source"},
                                         "metrics": {"test/PxAP": {"unit": "%"}}, "rows": [row]}))
    with pytest.raises(UserError, match=match):
        make_report(tmp_path, out=tmp_path / "out", published=published, all_tables=True)


# what a transformer preset's run says it trained (conf/experiment/transformer_cub_deit_small.yaml)
CUB = {"_target_": "camexp.data.datamodule.CUBDataModule", "split": "official"}
TSCAM_RULE = {"rule": "largest_contour", "threshold": 0.1, "resize": "bilinear",
              "gt_known_map": "ground_truth", "iou": 0.5}


def test_transformer_runs_are_compared_under_their_papers_own_box_rule(tmp_path: Path) -> None:
    """Like with like: TS-CAM's published top-1/top-5/GT-known accuracies meet a run only when
    it scored them with TS-CAM's rule (bilinear, largest contour, 0.1 on CUB), and camexp's
    MaxBoxAccV2 and PxAP stand beside them, published by none."""
    deit = {"arch": "deit_small", "pool": "gap"}
    metrics = {"test/acc_top1": 0.8, "test/top1_loc": 70.0, "test/top5_loc": 80.0, "test/gt_known_loc": 85.5,
               "test/MaxBoxAccV2": 66.0, "test/PxAP": 71.0}
    for name, rule in (("own", TSCAM_RULE), ("other", {**TSCAM_RULE, "threshold": 0.2}), ("none", None)):
        fake_run(tmp_path / name, {"model": deit, "data": CUB, "method": {"_target_": "camexp.methods.tscam.TSCAM"},
                                   "localization": {"method": "cam", "box_rule": rule}}, metrics,
                 experiment="transformer_cub_deit_small")
    lines = make_report(tmp_path)
    rows = [line for line in lines if line["row"] == "TS-CAM DeiT-S"]
    own = {line["metric"]: line for line in rows if line["run"] == "own"}
    gt_known = own["test/gt_known_loc"]
    assert (gt_known["paper"], gt_known["ours"], gt_known["diff"]) == (87.7, 85.5, pytest.approx(-2.2))
    assert (own["test/acc_top1_pct"]["paper"], own["test/acc_top1_pct"]["ours"]) == (80.3, pytest.approx(80.0))
    for metric, value in (("test/MaxBoxAccV2", 66.0), ("test/PxAP", 71.0)):
        beside = own[metric]
        assert (beside["paper"], beside["ours"], beside["diff"], beside["status"]) == (None, value, None, "ok")
    # a run scored under another rule (or none) is listed, its own-rule numbers not compared
    for run in ("other", "none"):
        found = {line["metric"]: line for line in rows if line["run"] == run}
        for metric in ("test/top1_loc", "test/top5_loc", "test/gt_known_loc"):
            assert (found[metric]["ours"], found[metric]["status"]) == (None, "other box rule")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| TS-CAM DeiT-S | transformer_cub_deit_small | test/MaxBoxAccV2 | not published | 66.00 |  |  | `own` | ok |" in report
    # the other transformer rows of the table are listed as missing with their recipes
    sat = _line(lines, "CUB since 2021", "SAT DeiT-S", "test/gt_known_loc")
    assert (sat["status"], sat["preset"]) == ("missing", "transformer_cub_deit_small method=sat")
