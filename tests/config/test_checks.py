"""Early config checks: every disallowed value named with its key, the value and the choices,
before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from camexp.config.validate import validate
from camexp.core.errors import ConfigError
from tests.helpers.configs import TINY_SYNTHETIC, compose_config


def test_eval_batch_size_and_crop_size_are_checked_with_the_config(tmp_path: Path) -> None:
    cfg = compose_config("train", TINY_SYNTHETIC + ["data.eval_batch_size=-1"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"data.eval_batch_size=-1 must be a positive integer"):
        validate(cfg)
    cfg = compose_config("train", TINY_SYNTHETIC + ["data.crop_size=80"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"data.crop_size=80 is larger than data.resize_size=\[64, 64\].*"
                                          r"data.crop_size<=64"):
        validate(cfg)


def test_unknown_added_keys_are_refused_or_warned_with_the_group_keys(tmp_path: Path, capsys) -> None:
    cfg = compose_config("train", TINY_SYNTHETIC + ["+data.batchsize=4"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"\+data.batchsize=4: data has no key 'batchsize', and "
                                          r"camexp.data.datamodule.CUBDataModule does not take one.*"
                                          r"data has: .*batch_size"):
        validate(cfg)
    cfg = compose_config("train", TINY_SYNTHETIC + ["+localization.iou=[50]", "+model.optim.lr_mult=2",
                                                    "+trainer.profiler=simple", "+paper_preset=x"],
                         tmp_path, tmp_path)
    validate(cfg)
    out = capsys.readouterr().out
    warning = next(line for line in out.splitlines() if "+localization.iou=[50]" in line)
    assert "adds the key 'localization.iou', which nothing reads. localization has: " in warning
    listed = warning.split("localization has: ")[1].split(". ")[0].split(", ")
    assert {"cam_curve_interval", "center_baseline", "iou_thresholds", "method"} <= set(listed)
    assert listed == sorted(listed)
    assert "+model.optim.lr_mult=2 adds the key" in out and "model.optim has: head_lr_mult, lr" in out
    # a key the trainer takes, and one a camexp tool reads, are not warned about
    assert "profiler" not in out and "paper_preset" not in out


@pytest.mark.parametrize("override, message", [
    ("model.pool=avg", "model.pool='avg' is not allowed; use one of ['gap', 'gmp', 'lse', 'wildcat']"),
    ("model.arch=vgg19", "model.arch='vgg19' is not allowed"),
    ("data.batch_size=0", "data.batch_size=0 must be a positive integer"),
    ("model.scheduler.name=poly", "model.scheduler.name='poly' is not allowed"),
    ("localization.paper_fraction=1.2", "localization.paper_fraction=1.2 must be a number in [0, 1)"),
    ("localization.method=gradcamm", "localization.method='gradcamm' is not allowed"),
    ("localization.iou_thresholds=[0.5]", "localization.iou_thresholds contains 0.5"),
    ("trainer.devices=3", "data.batch_size=32 (the global batch) does not divide by trainer.devices x trainer.num_nodes = 3"),
    ("data.split=fullsup", "data.split='fullsup' is not allowed; use one of ['official', 'wsol']"),
    ("data.on_bad_image=ignore", "data.on_bad_image='ignore' is not allowed; use one of ['error', 'skip']"),
    ("localization.cam_curve_interval=0", "localization.cam_curve_interval=0 must be a number in (0, 1]"),
])
def test_bad_config_values_are_named(override: str, message: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [override], tmp_path / "run", tmp_path)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)


@pytest.mark.parametrize("overrides, message", [
    (["model.pool=lse", "model.pool_r=0"], "model.pool_r=0 must be a number > 0."),
    (["model.pool=wildcat", "model.pool_maps=0"], "model.pool_maps=0 must be a positive integer."),
    (["model.pool=wildcat", "model.pool_k_max=0"],
     "model.pool_k_max=0 must be a number > 0 (below 1: a fraction of the positions)."),
    (["model.pool=wildcat", "model.pool_k_min=-0.1"],
     "model.pool_k_min=-0.1 must be a number >= 0 (below 1: a fraction of the positions)."),
    (["model.pool=wildcat", "model.pool_alpha=high"], "model.pool_alpha='high' must be a finite number."),
])
def test_bad_pooling_settings_are_named(overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path)
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    assert message in str(error.value)
    # the settings of a pooling not in use are not checked (gap reads none)
    validate(compose_config("train", [overrides[1]], tmp_path / "run", tmp_path))
