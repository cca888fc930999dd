"""Experiment presets (conf/experiment/) and the published numbers (conf/published.yaml): each
preset composes and runs, every published row's recipe composes into a config that the report
matches to exactly that recipe's rows, with the numbers restated here."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from camexp.config.validate import validate
from camexp.report.published import load_published, rows_of_run
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
    # BAS (Wu et al. 2022): top-1 / top-5 / GT-known localization under its own box rule
    ("CUB since 2021", "BAS VGG16"): {"test/top1_loc": 71.33, "test/top5_loc": 85.33, "test/gt_known_loc": 91.07},
    ("CUB since 2021", "BAS ResNet50"): {"test/top1_loc": 77.25, "test/top5_loc": 90.08, "test/gt_known_loc": 95.13},
    ("CUB since 2021", "BAS InceptionV3"): {"test/top1_loc": 73.29, "test/top5_loc": 86.31,
                                            "test/gt_known_loc": 92.24},
    ("ImageNet since 2021", "BAS VGG16"): {"test/top1_loc": 52.96, "test/top5_loc": 65.41,
                                           "test/gt_known_loc": 69.64},
    ("ImageNet since 2021", "BAS ResNet50"): {"test/top1_loc": 57.18, "test/top5_loc": 68.44,
                                              "test/gt_known_loc": 71.77},
    ("ImageNet since 2021", "BAS InceptionV3"): {"test/top1_loc": 58.51, "test/top5_loc": 69.0,
                                                 "test/gt_known_loc": 71.93},
}
# BAS's box threshold per (dataset, backbone): the paper's for ResNet50, the authors' code's
BAS_THRESHOLDS = {("cub", "vgg16"): 0.15, ("cub", "resnet50"): 0.15, ("cub", "inceptionv3"): 0.1,
                  ("imagenet", "vgg16"): 0.5, ("imagenet", "resnet50"): 0.45,
                  ("imagenet", "inceptionv3"): 0.3}
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
    "synthetic_pooling_lse": ("tinynet_gap", "synthetic", "lse", "cam"),
    "synthetic_pooling_wildcat": ("tinynet_gap", "synthetic", "wildcat", "cam"),
    **{f"bas_{data}_{back}": (model, data, "gap", "cam")
       for data in ("cub", "imagenet")
       for back, model in (("vgg16", "vgg_gap"), ("resnet50", "resnet50_gap"), ("inceptionv3", "inceptionv3_gap"))},
    "transformer_cub_deit_small": ("deit_small", "cub", "gap", "cam"),
    "transformer_cub_deit_tiny": ("deit_tiny", "cub", "gap", "cam"),
    "transformer_imagenet_deit_small": ("deit_small", "imagenet", "gap", "cam"),
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
# recipe (the overrides after experiment=) -> (model config, data config, model.pool,
# localization.method, method choice)
RECIPES = {preset: (*SETTINGS[preset], "cam") for preset in SETTINGS if not preset.startswith("bas_")}
RECIPES.update({f"{preset} method=bas": (*SETTINGS[preset], "bas")
                for preset in SETTINGS if preset.startswith("bas_")})
for _method, (_label, _cells) in FIELD.items():
    for (_data, _data_label, _metric), _row in zip(FIELD_DATA, _cells, strict=True):
        for (_back, _back_label, _model), _value in zip(FIELD_BACKBONES, _row, strict=True):
            _recipe = f"wsol_{_data}_{_back} method={_method}"
            RECIPES[_recipe] = (_model, _data, "gap", "cam", _method)
            PAPER[(f"{_data_label} {_metric}", f"{_label} {_back_label}")] = {f"test/{_metric}": _value}
# the transformer papers' rows (docs/methods.md#transformers): recipe -> (table, row, numbers);
# each scored under its paper's own box rule (the recipe's localization.box_rule)
TRANSFORMER_ROWS = {
    "transformer_cub_deit_small method=tscam": ("CUB since 2021", "TS-CAM DeiT-S", {
        "test/top1_loc": 71.3, "test/top5_loc": 83.8, "test/gt_known_loc": 87.7, "test/acc_top1_pct": 80.3}),
    "transformer_imagenet_deit_small method=tscam": ("ImageNet since 2021", "TS-CAM DeiT-S", {
        "test/top1_loc": 53.4, "test/top5_loc": 64.3, "test/gt_known_loc": 67.6, "test/acc_top1_pct": 74.3}),
    "transformer_cub_deit_tiny method=tscam": ("CUB since 2021", "TS-CAM DeiT-T", {
        "test/top1_loc": 64.5, "test/top5_loc": 80.9, "test/gt_known_loc": 86.4}),
    "transformer_cub_deit_small method=scm": ("CUB since 2021", "SCM DeiT-S", {
        "test/top1_loc": 76.4, "test/top5_loc": 91.6, "test/gt_known_loc": 96.6, "test/acc_top1_pct": 78.5}),
    "transformer_imagenet_deit_small method=scm": ("ImageNet since 2021", "SCM DeiT-S", {
        "test/top1_loc": 56.1, "test/top5_loc": 66.4, "test/gt_known_loc": 68.8, "test/acc_top1_pct": 76.7}),
    "transformer_cub_deit_small method=sat": ("CUB since 2021", "SAT DeiT-S", {
        "test/top1_loc": 80.96, "test/top5_loc": 94.13, "test/gt_known_loc": 98.45}),
    "transformer_imagenet_deit_small method=sat": ("ImageNet since 2021", "SAT DeiT-S", {
        "test/top1_loc": 60.15, "test/top5_loc": 70.52, "test/gt_known_loc": 73.13}),
}
# recipe -> the box rule its runs score with (rule, threshold, resize, gt_known_map)
TRANSFORMER_BOXES = {
    "transformer_cub_deit_small method=tscam": ("largest_contour", 0.1, "bilinear", "ground_truth"),
    "transformer_imagenet_deit_small method=tscam": ("largest_contour", 0.12, "bilinear", "ground_truth"),
    "transformer_cub_deit_tiny method=tscam": ("largest_contour", 0.1, "bilinear", "ground_truth"),
    "transformer_cub_deit_small method=scm": ("largest_contour", 0.1, "bilinear", "top1_prediction"),
    "transformer_imagenet_deit_small method=scm": ("largest_contour", 0.12, "bilinear", "top1_prediction"),
    "transformer_cub_deit_small method=sat": ("largest_component", 0.4, "bilinear", "ground_truth"),
    "transformer_imagenet_deit_small method=sat": ("largest_component", 0.3, "bilinear", "ground_truth"),
}
for _preset in [p for p in RECIPES if p.startswith("transformer_")]:
    del RECIPES[_preset]  # the transformer CAM control (method=cam): no published row
for _recipe, (_table, _row, _numbers) in TRANSFORMER_ROWS.items():
    _preset, _method = _recipe.split()[0], _recipe.split("=")[-1]
    RECIPES[_recipe] = (*SETTINGS[_preset][:4], _method)
    PAPER[(_table, _row)] = _numbers
PUBLISHED = load_published()


def test_every_preset_is_known_and_every_paper_row_is_published_with_a_recipe() -> None:
    assert set(PRESETS) == set(SETTINGS)
    published = {(row.table, row.row): row for row in PUBLISHED}
    assert set(PAPER) <= set(published)
    for key, metrics in PAPER.items():
        assert published[key].metrics == pytest.approx(metrics), key
    recipes = {row.recipe for row in PUBLISHED if row.recipe}
    assert recipes == set(RECIPES)  # the presets, 54 methods on the field's recipes, BAS's 6, 7 transformer rows
    assert {recipe.split()[0] for recipe in recipes} == set(PRESETS)


def _compose(recipe: str, tmp_path: Path):
    overrides = [f"experiment={recipe.split()[0]}", *recipe.split()[1:], "model.pretrained=false"]
    # pretrained=false: validate() then needs no weights (it changes nothing else)
    return compose_config("train", overrides, tmp_path / "run", tmp_path / "data")


def _as_run_config(cfg) -> dict:
    """The config as a run folder's .hydra/config.yaml holds it (interpolations resolved)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra")
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_composes_and_the_report_finds_exactly_its_rows(recipe: str, tmp_path: Path) -> None:
    model, data, pool, maps, method = RECIPES[recipe]
    cfg = _compose(recipe, tmp_path)
    choices = cfg.hydra.runtime.choices
    assert (choices.experiment, choices.model, choices.data) == (recipe.split()[0], model, data)
    assert (cfg.model.pool, cfg.localization.method) == (pool, maps)
    assert choices.method == method and cfg.model.method == cfg.method
    assert cfg.tags and all(isinstance(tag, str) for tag in cfg.tags)
    if recipe.startswith(("wsol_", "bas_")):  # the method's tag comes from method=
        assert cfg.tags[-1] == method
    if recipe.startswith("bas_"):  # BAS's own box rule, its threshold for the dataset and backbone
        _, data_name, back = recipe.split()[0].split("_")
        assert dict(cfg.localization.box_rule) == {
            "rule": "largest_component", "threshold": BAS_THRESHOLDS[(data_name, back)], "iou": 0.5,
            "resize": "bilinear", "gt_known_map": "ground_truth"}
    if recipe.startswith("transformer_"):  # the method's tag comes from method=
        assert cfg.tags[-1] == method
    if recipe in TRANSFORMER_BOXES:  # the paper's own box rule, the method's where it differs
        rule = cfg.localization.box_rule
        assert (rule.rule, rule.threshold, rule.resize, rule.gt_known_map) == TRANSFORMER_BOXES[recipe]
    if recipe == "transformer_cub_deit_small method=sat":  # conf/method_data/sat_cub.yaml
        assert (cfg.model.optim.lr, cfg.model.scheduler.name, cfg.data.epochs) == (1e-4, "none", 30)
        assert (cfg.data.batch_size, cfg.method.area_threshold) == (256, 0.25)
    if method == "fsl" and data == "openimages":  # conf/method_data/fsl_openimages.yaml
        assert (cfg.method.target, cfg.callbacks.model_checkpoint.monitor) == ("masks", "val/PxAP")
    # the composed config passes camexp's checks with the recipe's hyper-parameters
    validate(cfg)
    assert cfg.trainer.max_epochs == cfg.data.epochs
    found = rows_of_run(_as_run_config(cfg), tmp_path / "run", PUBLISHED)
    assert found and {row.recipe for row in found} == {recipe}
    assert len(found) == sum(row.recipe == recipe for row in PUBLISHED)


def test_a_preset_over_synthetic_data_runs_a_quick_fit(tmp_path: Path, data_dir: Path) -> None:
    # the CUB preset with its data and model swapped for the tiny synthetic ones
    overrides = ["experiment=cub_googlenet_gap", "data=synthetic", "model=tinynet_gap",
                 *TINY_SYNTHETIC, *QUICK_FIT]
    cfg = compose_config("train", overrides, tmp_path / "run", data_dir)
    assert cfg.model.scheduler.step_size == 15
    metrics = train(cfg)
    assert {"test/acc_top1", "test/loc_gt_known", "test/MaxBoxAccV2"} <= set(metrics)
    assert (tmp_path / "run" / "metrics.json").is_file()
