"""Eval takes the training run's data and localization settings; CUB counts its classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from camexp.core.errors import DatasetError
from camexp.eval import evaluate
from camexp.runs.job import prepare_data
from camexp.runs.settings import CHECKPOINT_KEY, apply_training_settings
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

QUICK_FIT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "callbacks.cam_pictures.num_images=1",
             "trainer.enable_progress_bar=false", "localization.cam_curve_interval=0.01"]
# the eval's own loader and picture settings
EVAL = ["data.num_workers=0", "callbacks.cam_pictures.num_images=1", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, data_dir: Path) -> tuple[Path, dict]:
    """A run trained and tested at 64/56 px (synthetic's defaults: 128/112) with a coarse
    threshold step (the default: 0.001)."""
    output_dir = tmp_path_factory.mktemp("settings") / "train"
    cfg = compose_config("train", TINY_SYNTHETIC + QUICK_FIT, output_dir, data_dir)
    return output_dir, train(cfg)


def _best(run: Path) -> Path:
    return next((run / "checkpoints").glob("epoch_*.ckpt"))


def test_the_checkpoint_and_the_run_folder_hold_the_resolved_settings(small_run, data_dir) -> None:
    run, _ = small_run
    stored = torch.load(_best(run), map_location="cpu", weights_only=True)[CHECKPOINT_KEY]
    assert stored["data"]["eval_size"] == [56, 56] and stored["data"]["crop_size"] == 56
    assert stored["data"]["root"] == str(data_dir / "synthetic")  # resolved, no ${...}
    assert stored["data"]["synthetic"]["image_size"] == 64
    assert stored["localization"]["cam_curve_interval"] == 0.01
    assert stored["choices"]["data"] == "synthetic" and stored["method"] == "cam"
    assert yaml.safe_load((run / "run_settings.yaml").read_text())["data"] == stored["data"]


def test_eval_with_no_data_overrides_reproduces_the_run_exactly(small_run, tmp_path, data_dir, capsys) -> None:
    run, metrics = small_run
    cfg = compose_config("eval", [f"ckpt_path={_best(run)}", *EVAL], tmp_path / "eval", data_dir)
    assert list(cfg.data.eval_size) == [112, 112]  # eval's own default differs
    results = evaluate(cfg)
    assert list(cfg.data.eval_size) == [56, 56] and cfg.localization.cam_curve_interval == 0.01
    test_metrics = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert {k: results[k] for k in test_metrics} == test_metrics  # exactly
    out = capsys.readouterr().out
    assert f"training run's data and localization settings, from the checkpoint {_best(run)}" in out
    assert "data.eval_size=[56, 56]" in out and "differ" not in out
    saved = yaml.safe_load((tmp_path / "eval" / "run_settings.yaml").read_text())
    assert saved["data"]["eval_size"] == [56, 56] and saved["trained_from"] == str(_best(run))


def test_an_override_wins_and_its_difference_is_printed(small_run, tmp_path, data_dir, capsys) -> None:
    run, _ = small_run
    overrides = [f"ckpt_path={_best(run)}", "data.eval_size=[64,64]", "localization.paper_fraction=0.3",
                 "data.synthetic.two_object_prob=0.5"]
    cfg = compose_config("eval", overrides + EVAL, tmp_path / "eval", data_dir)
    lines = apply_training_settings(cfg, _best(run), overrides)
    assert list(cfg.data.eval_size) == [64, 64] and cfg.data.crop_size == 56
    # a nested override changes that value only; the rest of the spec stays the training run's
    assert (cfg.data.synthetic.two_object_prob, cfg.data.synthetic.image_size) == (0.5, 64)
    assert cfg.localization.paper_fraction == 0.3 and cfg.localization.cam_curve_interval == 0.01
    printed = capsys.readouterr()
    assert ("camexp: WARNING: evaluating on data settings that differ from the training run's: "
            "data.eval_size=[64, 64] (training run: [56, 56])") in printed.err
    assert "localization.paper_fraction=0.3 (training run: 0.2)" in printed.out
    assert lines[-1] in printed.out + printed.err


def test_another_data_group_is_used_as_configured(small_run, tmp_path, data_dir, cub_dir, capsys) -> None:
    run, _ = small_run
    overrides = [f"ckpt_path={_best(run)}", "data=cub", f"data.root={cub_dir}"]
    cfg = compose_config("eval", overrides, tmp_path / "eval", data_dir)
    apply_training_settings(cfg, _best(run), overrides)
    assert cfg.data.root == str(cub_dir) and list(cfg.data.eval_size) == [224, 224]
    assert "data=cub differs from the training run's data=synthetic" in capsys.readouterr().out


def test_an_older_checkpoint_falls_back_on_its_run_folder(small_run, tmp_path, data_dir, capsys) -> None:
    """A checkpoint without stored settings: the run folder's .hydra/config.yaml is read."""
    run, _ = small_run
    old_run = tmp_path / "old"
    (old_run / "checkpoints").mkdir(parents=True)
    checkpoint = torch.load(_best(run), map_location="cpu", weights_only=True)
    checkpoint.pop(CHECKPOINT_KEY)
    torch.save(checkpoint, old_run / "checkpoints" / "last.ckpt")
    trained = compose_config("train", TINY_SYNTHETIC + QUICK_FIT, old_run, data_dir)
    (old_run / ".hydra").mkdir()
    from omegaconf import OmegaConf, open_dict

    with open_dict(trained):
        trained.pop("hydra")
    OmegaConf.save(trained, old_run / ".hydra" / "config.yaml")
    cfg = compose_config("eval", [f"ckpt_path={old_run}/checkpoints/last.ckpt"], tmp_path / "eval", data_dir)
    apply_training_settings(cfg, old_run / "checkpoints" / "last.ckpt", [])
    assert list(cfg.data.eval_size) == [56, 56] and cfg.data.root == str(data_dir / "synthetic")
    assert f"from {old_run / '.hydra' / 'config.yaml'}" in capsys.readouterr().out
    bare = tmp_path / "bare.ckpt"
    torch.save(checkpoint, bare)
    cfg = compose_config("eval", [f"ckpt_path={bare}"], tmp_path / "eval2", data_dir)
    apply_training_settings(cfg, bare, [])
    assert list(cfg.data.eval_size) == [112, 112]
    assert "no training settings found" in capsys.readouterr().out


def test_cub_counts_its_classes_from_classes_txt(cub_dir: Path, tmp_path: Path) -> None:
    overrides = ["data=cub", f"data.root={cub_dir}", "model.pretrained=false", "data.num_workers=0"]
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path)
    assert cfg.data.num_classes is None
    datamodule = prepare_data(cfg)
    assert datamodule.num_classes == 3 and cfg.data.num_classes == 3 and cfg.model.num_classes == 3
    cfg = compose_config("train", [*overrides, "data.num_classes=5"], tmp_path / "run", tmp_path)
    with pytest.raises(DatasetError, match=r"classes.txt lists 3 classes but data.num_classes=5\. "
                                           r"Set data.num_classes=3\."):
        prepare_data(cfg)


def test_eval_metrics_json_keeps_numbers_and_a_warnings_list(small_run) -> None:
    run, metrics = small_run
    saved = json.loads((run / "metrics.json").read_text())
    assert isinstance(saved.pop("warnings"), list)
    assert saved == pytest.approx(metrics)
