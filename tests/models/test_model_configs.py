"""Every model config composes and builds its network (no weights downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from camexp.config.validate import validate
from tests.helpers.configs import compose_config


@pytest.mark.parametrize("model", ["vgg_gap", "googlenet_gap", "alexnet_gap", "alexnet_star_gap",
                                   "resnet50_gap", "inceptionv3_gap", "resnet18_gap", "tinynet_gap"])
def test_every_model_config_builds(model: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"model={model}", "model.pretrained=false", "data=cub",
                                   "data.num_classes=200"],
                         tmp_path / "run", tmp_path)
    validate(cfg)
    module = instantiate(cfg.model, _convert_="all")
    assert module.net.classifier.out_features == 200
    expected_convs = {"alexnet_star_gap": 3, "inceptionv3_gap": 2}.get(model, 1)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in module.net.head.modules()) == expected_convs


def test_googlenet_gmp_is_a_config_override(tmp_path: Path) -> None:
    cfg = compose_config("train", ["model=googlenet_gap", "model.pool=gmp", "model.pretrained=false"],
                         tmp_path / "run", tmp_path)
    module = instantiate(cfg.model, _convert_="all")
    assert module.net.arch == "googlenet" and module.net.pool.name == "gmp"
