"""Warnings of a run that failed while looking finished (collapsed training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint

from camexp.callbacks.health import TrainingHealth, health_warnings
from camexp.methods.acol import ACoL
from camexp.methods.cam import CAM
from camexp.methods.fsl import FSL
from camexp.methods.spg import SPG
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
    assert not any("localize nothing" in w for w in warnings)
    assert any(w.startswith("every test ground-truth-class map is constant (20 of 20 images") for w in warnings)
    err = capsys.readouterr().err
    assert "camexp: WARNING: The training loss never left ln(10)" in err
    assert "camexp: WARNING: every test ground-truth-class map is constant" in err


class _TwoEpochs(L.LightningModule):
    """Epoch 1's loss sits at ln(10), epoch 2's at 1.0; ``score`` is highest at epoch 1, so
    the best checkpoint (the one the test loads) is epoch 1's."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        target = math.log(10) if self.current_epoch == 0 else 1.0
        return {"loss": self.weight.sum() * 0 + target}

    def validation_step(self, batch, batch_idx):
        self.log("score", 1.0 - self.current_epoch)

    def test_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=2)

    val_dataloader = test_dataloader = train_dataloader


def test_the_test_of_the_best_epoch_keeps_the_whole_runs_loss_history(tmp_path: Path) -> None:
    """The best checkpoint carries the loss history up to its epoch; loading it for the test
    used to replace the run's history, and a run whose loss left ln(10) in epoch 2 warned that
    it never did."""
    health = TrainingHealth()
    best = ModelCheckpoint(dirpath=tmp_path, monitor="score", mode="max")
    trainer = L.Trainer(max_epochs=2, callbacks=[health, best], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    module = _TwoEpochs()
    trainer.fit(module)
    assert best.best_model_path.endswith("epoch=0-step=2.ckpt")
    trainer.test(module, ckpt_path=best.best_model_path, verbose=False)
    assert health.epoch_losses == pytest.approx([math.log(10), 1.0])
    assert health_warnings(HEALTHY, health, num_classes=10) == []
    # a training resumed from that checkpoint takes its history (and continues it)
    resumed = TrainingHealth()
    trainer = L.Trainer(max_epochs=2, callbacks=[resumed], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(_TwoEpochs(), ckpt_path=best.best_model_path)
    assert resumed.epoch_losses == pytest.approx([math.log(10), 1.0])


def test_each_warning_says_only_what_its_methods_evidence_shows() -> None:
    ln10 = math.log(10)
    at_chance = {**HEALTHY, "test/acc_top1": 0.1}
    # FSL trains no classifier: chance accuracy is expected, and its BCE has no chance value
    assert health_warnings(at_chance, _health([ln10, ln10], images=200), method=FSL()) == []
    # the chance warning of a method that trains its classifier no longer says the maps fail
    [chance] = health_warnings(at_chance, _health(images=200), method=CAM())
    assert "localize nothing" not in chance and "judge the maps by them" in chance
    # ACoL's loss is two cross-entropies: 2 ln(10) at chance, and ln(10) is progress
    assert health_warnings(HEALTHY, _health([ln10, ln10], images=200), method=ACoL()) == []
    [acol] = health_warnings(HEALTHY, _health([2 * ln10] * 2, images=200), method=ACoL())
    assert acol.startswith("The training loss never left 4.605, method=acol's loss when every one")
    # SPG adds seed losses whose value at chance is unknown: no loss warning either way
    assert health_warnings(HEALTHY, _health([ln10, ln10], images=200), method=SPG()) == []
