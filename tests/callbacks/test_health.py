"""Warnings of a run that failed while looking finished (collapsed training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from hydra.utils import instantiate

from camexp.callbacks.health import TrainingHealth, health_warnings
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

HEALTHY = {"test/acc_top1": 0.9, "test/MaxBoxAccV2": 80.0, "test/MaxBoxAccV2_center_baseline": 21.3}


def _health(losses=(), images=0, constant=0, classes=10) -> TrainingHealth:
    health = TrainingHealth()
    health.epoch_losses, health.test_images, health.constant_maps = list(losses), images, constant
    health.num_classes = classes
    return health


def test_a_healthy_run_has_no_warning() -> None:
    assert health_warnings(HEALTHY, _health([2.0, 1.0, 0.4], images=200)) == []
    assert health_warnings(HEALTHY, None, num_classes=10) == []


def test_each_sign_of_collapse_is_named() -> None:
    ln10 = math.log(10)
    [loss] = health_warnings(HEALTHY, _health([ln10 + 0.01, ln10 - 0.02], images=200))
    assert loss.startswith("The training loss never left ln(10) = 2.303 (epoch means 2.283 to 2.313 over 2 epochs)")
    # 1/10 + 2 * sqrt(0.1 * 0.9 / 200) = 0.1424: 14% is at chance, 15% is not
    [chance] = health_warnings({**HEALTHY, "test/acc_top1": 0.14}, _health(images=200))
    assert chance.startswith("test top-1 accuracy 14.0% is at chance for 10 classes (1/10 = 10.0%")
    assert "on 200 images" in chance
    assert health_warnings({**HEALTHY, "test/acc_top1": 0.15}, _health(images=200)) == []
    [maps] = health_warnings(HEALTHY, _health(images=200, constant=200))
    assert maps.startswith("every test ground-truth-class map is constant (200 of 200 images")
    [half] = health_warnings(HEALTHY, _health(images=200, constant=150))
    assert half.startswith("75% of the test ground-truth-class maps are constant (150 of 200")
    assert health_warnings(HEALTHY, _health(images=200, constant=20)) == []
    [below] = health_warnings({**HEALTHY, "test/MaxBoxAccV2": 0.0}, _health(images=200))
    assert below.startswith("test/MaxBoxAccV2 0.0 is below the centre-Gaussian baseline 21.3")
    [nan] = health_warnings(HEALTHY, _health([2.0, float("nan")], images=200))
    assert "NaN or infinite" in nan


def test_a_planted_collapsed_run_warns_in_metrics_json_and_the_console(tmp_path: Path, data_dir: Path,
                                                                        capsys) -> None:
    """Learning rate 0 and a zeroed classifier: the loss is ln(10) at every step, every map is
    0, every prediction the same class."""
    overrides = [*TINY_SYNTHETIC, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
                 "localization.cam_curve_interval=0.01", "model.optim.lr=0"]
    module = instantiate(compose_config("train", overrides, tmp_path / "x", data_dir).model, _convert_="all")
    torch.nn.init.zeros_(module.net.classifier.weight)
    torch.nn.init.zeros_(module.net.classifier.bias)
    torch.save(module.net.state_dict(), tmp_path / "dead_head.pt")
    cfg = compose_config("train", [*overrides, f"model.weights_path={tmp_path / 'dead_head.pt'}"],
                         tmp_path / "run", data_dir)
    metrics = train(cfg)
    assert abs(metrics["train/loss"] - math.log(10)) < 1e-5
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    warnings = saved.pop("warnings")
    assert saved == metrics  # the numbers are unchanged
    assert any(w.startswith("The training loss never left ln(10) = 2.303") for w in warnings), warnings
    assert any(w.startswith("test top-1 accuracy 10.0% is at chance for 10 classes") for w in warnings)
    assert any(w.startswith("every test ground-truth-class map is constant (20 of 20 images") for w in warnings)
    err = capsys.readouterr().err
    assert "camexp: WARNING: The training loss never left ln(10)" in err
    assert "camexp: WARNING: every test ground-truth-class map is constant" in err
