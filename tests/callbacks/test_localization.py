"""The localization callback: maps, baseline, logged metrics, curve files, DDP exactness."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from camexp.maps.backprop import backprop_saliency
from camexp.maps.center import center_gaussian
from camexp.train import train
from tests.helpers.configs import compose_config

LOCALIZATION_KEYS = [
    "MaxBoxAcc", "MaxBoxAcc_best_tau", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50",
    "MaxBoxAccV2_IoU70", "MaxBoxAccV2_best_tau_IoU30", "MaxBoxAccV2_best_tau_IoU50",
    "MaxBoxAccV2_best_tau_IoU70", "loc_top1_err", "loc_top5_err", "loc_gt_known", "PxAP",
    "MaxBoxAccV2_center_baseline", "PxAP_center_baseline",
]


def test_center_gaussian_peaks_in_the_middle_and_is_symmetric() -> None:
    gaussian = center_gaussian((5, 7), sigma_fraction=0.25)
    assert gaussian.shape == (5, 7)
    assert gaussian[2, 3] == 1.0 and gaussian.argmax() == 2 * 7 + 3
    torch.testing.assert_close(gaussian, gaussian.flip(0))
    torch.testing.assert_close(gaussian, gaussian.flip(1))
    # one pixel right of centre: exp(-1 / (2 * (0.25 * 5)^2))
    assert gaussian[2, 4].item() == pytest.approx(torch.exp(torch.tensor(-1 / 3.125)).item())


def test_backprop_saliency_is_the_max_absolute_input_gradient() -> None:
    """For a linear classifier the gradient of S_c is its weight row: known by hand."""
    torch.manual_seed(0)
    weight = torch.randn(3, 2 * 2 * 2)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3, bias=False))
    net[1].weight.data = weight
    inputs = torch.randn(2, 2, 2, 2)
    maps = backprop_saliency(net, inputs, torch.tensor([[2, 0], [1, 1]]))
    assert maps.shape == (2, 2, 2, 2)
    expected = weight.view(3, 2, 2, 2).abs().amax(dim=1)  # (class, H, W)
    torch.testing.assert_close(maps[0, 0], expected[2])
    torch.testing.assert_close(maps[0, 1], expected[0])
    torch.testing.assert_close(maps[1, 1], expected[1])


SMALL = [
    "data.synthetic.train_per_class=6", "data.synthetic.image_size=64", "data.resize_size=[64,64]",
    "data.crop_size=56", "data.eval_size=[56,56]", "data.batch_size=8", "data.num_workers=0",
    "data.val_fraction=0.34", "trainer.enable_progress_bar=false",
    "callbacks.cam_pictures.num_images=3", "localization.cam_curve_interval=0.01",
]


def test_training_run_logs_every_localization_metric_and_writes_the_curve(tmp_path, data_dir) -> None:
    cfg = compose_config("train", SMALL + ["data.synthetic.test_per_class=2", "trainer.max_epochs=1",
                                           "trainer.limit_train_batches=2"],
                         tmp_path / "run", data_dir)
    metrics = train(cfg)
    for stage in ("val", "test"):
        for key in LOCALIZATION_KEYS:
            assert f"{stage}/{key}" in metrics, f"{stage}/{key}"
    assert 0.0 <= metrics["test/MaxBoxAccV2"] <= 100.0
    assert metrics["test/MaxBoxAccV2_IoU30"] >= metrics["test/MaxBoxAccV2_IoU70"]
    assert metrics["test/loc_top1_err"] >= metrics["test/loc_top5_err"]
    curve = tmp_path / "run" / "localization" / "test_box_accuracy_curve.csv"
    rows = list(csv.reader(curve.open()))
    assert rows[0] == ["threshold", "MaxBoxAcc_IoU50", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50",
                       "MaxBoxAccV2_IoU70"]
    assert len(rows) == 1 + 100  # arange(0, 1, 0.01)
    best_v1 = max(float(row[1]) for row in rows[1:])
    assert best_v1 == pytest.approx(metrics["test/MaxBoxAcc"], abs=1e-3)
    # the field's centre baseline with masks: the Gaussian map's PxAP on the test masks
    from hydra.utils import instantiate

    from camexp.localization.metrics import PxAP

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("test")
    pxap = PxAP(0.01, image_size=(56, 56))
    for batch in datamodule.test_dataloader():
        centre = center_gaussian((56, 56)).expand(len(batch["mask"]), -1, -1)
        pxap.update(centre, batch["mask"] > 127, batch.get("ignore"))
    assert metrics["test/PxAP_center_baseline"] == pytest.approx(float(pxap.compute()["PxAP"]), abs=1e-4)
    assert metrics["test/PxAP_center_baseline"] != pytest.approx(metrics["test/PxAP"], abs=1e-3)
    assert (tmp_path / "run" / "localization" / "test_box_accuracy_curve.png").stat().st_size > 1000


@pytest.mark.slow
def test_two_ddp_processes_give_exactly_one_process_metrics(tmp_path, data_dir) -> None:
    """An odd-sized test split (9 classes x 3 = 27 images) over 2 gloo processes: nothing is
    counted twice, so every summed metric equals the single-process run's, for CAM and for
    Grad-CAM (gradients on each process's share)."""
    odd = SMALL + ["data.num_classes=9", "data.synthetic.test_per_class=3"]
    cfg = compose_config("train", odd + ["trainer.max_epochs=1", "trainer.limit_train_batches=2",
                                         "test=false"], tmp_path / "train", data_dir)
    train(cfg)
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    for method in ("cam", "gradcam"):  # and a gradient-based post-hoc method
        results = {}
        for devices in (1, 2):
            out = tmp_path / f"eval_{method}{devices}"
            command = [sys.executable, "-m", "camexp.eval", *odd, f"ckpt_path={ckpt}",
                       f"paths.data_dir={data_dir}", f"hydra.run.dir={out}", "trainer.accelerator=cpu",
                       f"trainer.devices={devices}", "data.eval_batch_size=4",
                       f"localization.method={method}"]
            if devices > 1:
                command.append("+trainer.strategy=ddp")
            done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            if devices > 1:
                assert "MEMBER: 2/2" in done.stdout + done.stderr
            results[devices] = json.loads((out / "metrics.json").read_text())
        assert results[1]["test/MaxBoxAcc"] == results[2]["test/MaxBoxAcc"]
        for key in LOCALIZATION_KEYS + ["acc_top1", "acc_top5"]:
            assert results[2][f"test/{key}"] == results[1][f"test/{key}"], (method, key)
        # the curve files count the whole split too, not rank 0's share
        curves = [(tmp_path / f"eval_{method}{d}/localization/test_box_accuracy_curve.csv").read_text()
                  for d in (1, 2)]
        assert curves[0] == curves[1]
        if method == "gradcam":
            # camexp.report reads the method from each run's config
            assert "\nlocalization:\n  method: gradcam\n" in (out / ".hydra/config.yaml").read_text()


def test_maxboxacc_without_iou50_in_v2_still_logged(tmp_path, data_dir) -> None:
    cfg = compose_config("train", SMALL + ["data.synthetic.test_per_class=2", "train=false",
                                           "localization.iou_thresholds=[30,70]"],
                         tmp_path / "run", data_dir)
    metrics = train(cfg)
    assert {"test/MaxBoxAcc", "test/MaxBoxAcc_best_tau", "test/MaxBoxAccV2_IoU70"} <= set(metrics)
    assert "test/MaxBoxAccV2_IoU50" not in metrics
    header = (tmp_path / "run/localization/test_box_accuracy_curve.csv").read_text().splitlines()[0]
    assert header == "threshold,MaxBoxAcc_IoU50,MaxBoxAccV2_IoU30,MaxBoxAccV2_IoU70"


def test_backprop_method_runs_in_the_test_loop(tmp_path, data_dir) -> None:
    cfg = compose_config("train", SMALL + ["data.synthetic.test_per_class=2", "train=false",
                                           "localization.method=backprop"],
                         tmp_path / "run", data_dir)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/MaxBoxAccV2"] <= 100.0
    assert "test/loc_gt_known" in metrics


def test_wandb_gets_boxes_pictures_and_the_curve_table(tmp_path, data_dir, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb_dir = tmp_path / "wb"
    cfg = compose_config("train", SMALL + ["data.synthetic.test_per_class=2", "train=false",
                                           "+logger.wb._target_=lightning.pytorch.loggers.WandbLogger",
                                           "+logger.wb.offline=true", f"+logger.wb.save_dir={wandb_dir}"],
                         tmp_path / "run", data_dir)
    train(cfg)
    import wandb

    wandb.finish()
    media = list(wandb_dir.glob("wandb/offline-run-*/files/media/**/*"))
    names = " ".join(path.name for path in media)
    assert "cam_boxes" in names and "cam_panels" in names
    assert "box_accuracy_curve_table" in names and "box_accuracy_curve" in names
