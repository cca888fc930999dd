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
    assert "+model.optim.lr_mult=2 adds the key" in out and "model.optim has: betas, eps, head_lr_mult, lr" in out
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


HYDRA_NOT_IN_STRUCT = ("Could not override 'model.pol'.\nTo append to your config use +model.pol=gmp\n"
                       "Key 'pol' is not in struct\n    full_key: model.pol\n    object_type=dict")


def test_a_mistyped_override_gets_a_did_you_mean_with_the_groups_keys() -> None:
    from camexp.config.validate import unknown_key_hint

    hint = unknown_key_hint(HYDRA_NOT_IN_STRUCT, "train", ["-m", "model=vgg_gap", "model.pol=gap,gmp",
                                                          "tags=[x]", "--config-name", "train"])
    assert hint.startswith("camexp: model.pol: model has no key 'pol'. Did you mean model.pool")
    assert "Model has: arch, channels_last, compile, head," in hint
    top = ("Could not override 'lcalization.method'.\nKey 'lcalization' is not in struct\n"
           "    full_key: lcalization\n    object_type=dict")
    assert "Did you mean localization?" in unknown_key_hint(top, "eval", ["lcalization.method=cam"])
    assert unknown_key_hint("Could not load 'model/nope'.", "train", []) is None


def test_the_cli_prints_the_did_you_mean_after_hydras_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "camexp.eval", "localization.metod=gradcam"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Key 'metod' is not in struct" in done.stderr
    assert "camexp: localization.metod: localization has no key 'metod'. Did you mean localization.method?" \
        in done.stderr


def test_trainer_gpu_without_a_gpu_is_one_paragraph(tmp_path: Path, monkeypatch) -> None:
    import torch

    from camexp.config.validate import validate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for trainer in ("gpu", "ddp"):
        cfg = compose_config("train", [f"trainer={trainer}"], tmp_path / "run", tmp_path)
        with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu \(trainer=gpu or trainer=ddp\) asks "
                                              r"for 1 GPU\(s\), but torch finds no GPU on this machine.*trainer=cpu"):
            validate(cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    validate(compose_config("train", ["trainer=gpu", "trainer.devices=2"], tmp_path / "run", tmp_path))
    with pytest.raises(ConfigError, match=r"asks for 4 GPU\(s\), but torch finds 2 GPU\(s\)"):
        validate(compose_config("train", ["trainer=gpu", "trainer.devices=4"], tmp_path / "run", tmp_path))


def test_train_with_model_torchvision_says_it_cannot_train(tmp_path: Path) -> None:
    from camexp.train import train

    cfg = compose_config("train", ["model=torchvision", "model.name=resnet18"], tmp_path / "run", tmp_path)
    with pytest.raises(ConfigError, match=r"model=torchvision cannot train.*python -m camexp.eval "
                                          r"model=torchvision.*model=vgg_gap"):
        train(cfg)
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
