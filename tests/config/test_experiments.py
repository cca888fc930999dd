"""Experiment presets (conf/experiment/): each composes, carries its paper numbers, and runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from camexp.config.validate import validate
from camexp.report.collect import parse_paper
from camexp.train import train
from tests.helpers.configs import CONF_DIR, TINY_SYNTHETIC, compose_config

PRESETS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
QUICK_FIT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
             "callbacks.cam_pictures.num_images=2", "trainer.enable_progress_bar=false",
             "localization.cam_curve_interval=0.01"]

# (table, row) -> {metric: paper number}, restated from docs/protocol.md
PAPER = {
    ("Table 1", "VGGnet-GAP"): {"test/cls_top1_err": 33.4, "test/cls_top5_err": 12.2},
    ("Table 1", "GoogLeNet-GAP"): {"test/cls_top1_err": 35.0, "test/cls_top5_err": 13.2},
    ("Table 1", "AlexNet*-GAP"): {"test/cls_top1_err": 44.9, "test/cls_top5_err": 20.9},
    ("Table 1", "AlexNet-GAP"): {"test/cls_top1_err": 51.1, "test/cls_top5_err": 26.3},
    ("Table 1", "GoogLeNet-GMP"): {"test/cls_top1_err": 35.6, "test/cls_top5_err": 13.9},
    ("Table 2", "GoogLeNet-GAP"): {"test/loc_top1_err": 56.40, "test/loc_top5_err": 43.00},
    ("Table 2", "VGGnet-GAP"): {"test/loc_top1_err": 57.20, "test/loc_top5_err": 45.14},
    ("Table 2", "AlexNet*-GAP"): {"test/loc_top1_err": 63.75, "test/loc_top5_err": 49.53},
    ("Table 2", "AlexNet-GAP"): {"test/loc_top1_err": 67.19, "test/loc_top5_err": 52.16},
    ("Table 2", "Backprop on GoogLeNet"): {"test/loc_top1_err": 61.31, "test/loc_top5_err": 50.55},
    ("Table 2", "Backprop on VGGnet"): {"test/loc_top1_err": 61.12, "test/loc_top5_err": 51.46},
    ("Table 2", "Backprop on AlexNet"): {"test/loc_top1_err": 65.17, "test/loc_top5_err": 52.64},
    ("Table 2", "GoogLeNet-GMP"): {"test/loc_top1_err": 57.78, "test/loc_top5_err": 45.26},
    ("Table 4", "GoogLeNet-GAP on full image"): {"test/acc_top1_pct": 63.0},
    ("CUB localization", "GoogLeNet-GAP"): {"test/loc_gt_known": 41.0},
    ("ImageNet MaxBoxAccV2", "CAM VGG16"): {"test/MaxBoxAccV2": 60.0},
    ("ImageNet MaxBoxAccV2", "CAM InceptionV3"): {"test/MaxBoxAccV2": 63.4},
    ("ImageNet MaxBoxAccV2", "CAM ResNet50"): {"test/MaxBoxAccV2": 63.7},
    ("CUB MaxBoxAccV2", "CAM VGG16"): {"test/MaxBoxAccV2": 63.7},
    ("CUB MaxBoxAccV2", "CAM InceptionV3"): {"test/MaxBoxAccV2": 56.7},
    ("CUB MaxBoxAccV2", "CAM ResNet50"): {"test/MaxBoxAccV2": 63.0},
    ("OpenImages PxAP", "CAM VGG16"): {"test/PxAP": 58.3},
    ("OpenImages PxAP", "CAM InceptionV3"): {"test/PxAP": 63.2},
    ("OpenImages PxAP", "CAM ResNet50"): {"test/PxAP": 58.5},
}
# preset -> (model config, data config, model.pool, localization.method)
SETTINGS = {
    "ilsvrc_vgg_gap": ("vgg_gap", "imagenet", "gap", "cam"),
    "ilsvrc_googlenet_gap": ("googlenet_gap", "imagenet", "gap", "cam"),
    "ilsvrc_alexnet_gap": ("alexnet_gap", "imagenet", "gap", "cam"),
    "ilsvrc_alexnet_star_gap": ("alexnet_star_gap", "imagenet", "gap", "cam"),
    "ilsvrc_googlenet_gmp": ("googlenet_gap", "imagenet", "gmp", "cam"),
    "ilsvrc_backprop_googlenet": ("googlenet_gap", "imagenet", "gap", "backprop"),
    "ilsvrc_backprop_vgg": ("vgg_gap", "imagenet", "gap", "backprop"),
    "ilsvrc_backprop_alexnet": ("alexnet_gap", "imagenet", "gap", "backprop"),
    "cub_googlenet_gap": ("googlenet_gap", "cub", "gap", "cam"),
    "wsol_cub_vgg16": ("vgg_gap", "cub", "gap", "cam"),
    "wsol_cub_inceptionv3": ("inceptionv3_gap", "cub", "gap", "cam"),
    "wsol_cub_resnet50": ("resnet50_gap", "cub", "gap", "cam"),
    "wsol_imagenet_vgg16": ("vgg_gap", "imagenet", "gap", "cam"),
    "wsol_imagenet_inceptionv3": ("inceptionv3_gap", "imagenet", "gap", "cam"),
    "wsol_imagenet_resnet50": ("resnet50_gap", "imagenet", "gap", "cam"),
    "wsol_openimages_vgg16": ("vgg_gap", "openimages", "gap", "cam"),
    "wsol_openimages_inceptionv3": ("inceptionv3_gap", "openimages", "gap", "cam"),
    "wsol_openimages_resnet50": ("resnet50_gap", "openimages", "gap", "cam"),
    "synthetic_gap": ("tinynet_gap", "synthetic", "gap", "cam"),
    "synthetic_gmp": ("tinynet_gap", "synthetic", "gmp", "cam"),
    "synthetic_pooling_gap": ("tinynet_gap", "synthetic", "gap", "cam"),
    "synthetic_pooling_gmp": ("tinynet_gap", "synthetic", "gmp", "cam"),
}

# the field's table (docs/methods.md), methods beside CAM: (ImageNet, CUB, OpenImages) x (VGG16,
# InceptionV3, ResNet50); MaxBoxAccV2 for ImageNet and CUB, PxAP for OpenImages
FIELD = {
    "has": ("HaS", [[60.6, 63.7, 63.4], [63.7, 53.4, 64.7], [58.1, 58.1, 55.9]]),
    "acol": ("ACoL", [[57.4, 63.7, 62.3], [57.4, 56.2, 66.5], [54.3, 57.2, 57.3]]),
    "spg": ("SPG", [[59.9, 63.3, 63.3], [56.3, 55.9, 60.4], [58.3, 62.3, 56.7]]),
    "adl": ("ADL", [[59.8, 61.4, 63.7], [66.3, 58.8, 58.4], [58.7, 56.8, 55.2]]),
    "cutmix": ("CutMix", [[59.4, 63.9, 63.3], [62.3, 57.5, 62.8], [58.1, 62.5, 57.7]]),
    "fsl": ("FSL", [[60.3, 65.3, 66.3], [71.6, 86.6, 82.4], [65.9, 74.1, 74.4]]),
}
FIELD_DATA = [("imagenet", "ImageNet", "MaxBoxAccV2"), ("cub", "CUB", "MaxBoxAccV2"),
              ("openimages", "OpenImages", "PxAP")]
FIELD_BACKBONES = [("vgg16", "VGG16", "vgg_gap"), ("inceptionv3", "InceptionV3", "inceptionv3_gap"),
                   ("resnet50", "ResNet50", "resnet50_gap")]
# preset -> training method (the CAM presets train with method=cam)
METHOD = {preset: "cam" for preset in SETTINGS}
for _method, (_label, _cells) in FIELD.items():
    for (_data, _data_label, _metric), _row in zip(FIELD_DATA, _cells, strict=True):
        for (_back, _back_label, _model), _value in zip(FIELD_BACKBONES, _row, strict=True):
            _preset = f"wsol_{_data}_{_back}_{_method}"
            SETTINGS[_preset] = (_model, _data, "gap", "cam")
            METHOD[_preset] = _method
            PAPER[(f"{_data_label} {_metric}", f"{_label} {_back_label}")] = {f"test/{_metric}": _value}


def test_every_preset_is_known_and_every_paper_row_has_a_preset() -> None:
    assert set(PRESETS) == set(SETTINGS)
    covered = set()
    for preset in PRESETS:
        document = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "experiment" / f"{preset}.yaml"))
        covered |= {(row.table, row.row) for row in parse_paper(document["paper"])}
    assert set(PAPER) <= covered


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_its_paper_numbers(preset: str, tmp_path: Path) -> None:
    model, data, pool, method = SETTINGS[preset]
    if not (CONF_DIR / "data" / f"{data}.yaml").is_file():
        pytest.skip(f"conf/data/{data}.yaml is not there yet")
    # pretrained=false: validate() then needs no weights (it changes nothing else)
    cfg = compose_config("train", [f"experiment={preset}", "model.pretrained=false"],
                         tmp_path / "run", tmp_path / "data")
    choices = cfg.hydra.runtime.choices
    assert (choices.experiment, choices.model, choices.data) == (preset, model, data)
    assert (cfg.model.pool, cfg.localization.method) == (pool, method)
    assert choices.method == METHOD[preset] and cfg.model.method == cfg.method
    assert cfg.tags and all(isinstance(tag, str) for tag in cfg.tags)
    rows = parse_paper(OmegaConf.to_container(cfg.paper, resolve=True))
    assert rows
    for row in rows:
        if (row.table, row.row) in PAPER:
            assert row.metrics == pytest.approx(PAPER[row.table, row.row])
    # the composed config passes camexp's checks with the preset's hyper-parameters
    validate(cfg)
    assert cfg.trainer.max_epochs == cfg.data.epochs


def test_a_preset_over_synthetic_data_runs_a_quick_fit(tmp_path: Path, data_dir: Path) -> None:
    # the CUB preset with its data and model swapped for the tiny synthetic ones
    overrides = ["experiment=cub_googlenet_gap", "data=synthetic", "model=tinynet_gap",
                 *TINY_SYNTHETIC, *QUICK_FIT]
    cfg = compose_config("train", overrides, tmp_path / "run", data_dir)
    assert cfg.model.scheduler.step_size == 15 and cfg.paper.rows[0].table == "Table 4"
    metrics = train(cfg)
    assert {"test/acc_top1", "test/loc_gt_known", "test/MaxBoxAccV2"} <= set(metrics)
    assert (tmp_path / "run" / "metrics.json").is_file()
