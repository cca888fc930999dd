"""Training and evaluation through the real Hydra configs, on a tiny synthetic dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camexp.core.errors import UserError
from camexp.eval import evaluate
from camexp.train import train
from tests.helpers.configs import TINY_SYNTHETIC, compose_config

REPO = Path(__file__).resolve().parents[1]
QUICK_FIT = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
             "callbacks.cam_pictures.num_images=4", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir: Path) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("run") / "train"
    cfg = compose_config("train", TINY_SYNTHETIC + QUICK_FIT, output_dir, data_dir)
    return output_dir, train(cfg)


def test_train_writes_checkpoints_metrics_and_pictures(trained_run) -> None:
    output_dir, metrics = trained_run
    assert (output_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((output_dir / "checkpoints").glob("epoch_*.ckpt"))) == 1
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert isinstance(saved.pop("warnings"), list)  # signs of a collapsed run, maybe none
    assert saved == pytest.approx(metrics)
    for key in ("train/loss", "val/loss", "val/acc_top1", "val/acc_top5", "test/acc_top1",
                "test/acc_top5", "test/loss"):
        assert key in saved, key
    assert 0.0 <= saved["test/acc_top1"] <= saved["test/acc_top5"] <= 1.0
    pictures = sorted((output_dir / "cam_pictures").glob("*.png"))
    assert len(pictures) == 4
    assert pictures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_log = output_dir / "csv" / "metrics.csv"
    assert "val/acc_top1" in csv_log.read_text().splitlines()[0]


def test_learning_rate_curves_are_named_by_parameter_group(trained_run) -> None:
    output_dir, _ = trained_run
    header = (output_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "lr-SGD/trunk" in header and "lr-SGD/head" in header
    assert not [column for column in header if "/pg" in column], header


def test_eval_reproduces_the_test_metrics_of_the_best_checkpoint(trained_run, tmp_path, data_dir) -> None:
    output_dir, metrics = trained_run
    best = next((output_dir / "checkpoints").glob("epoch_*.ckpt"))
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={best}", "callbacks.cam_pictures.num_images=2",
                                                   "trainer.enable_progress_bar=false"],
                         tmp_path / "eval", data_dir)
    results = evaluate(cfg)
    assert results["test/acc_top1"] == pytest.approx(metrics["test/acc_top1"])
    assert results["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert len(list((tmp_path / "eval" / "cam_pictures").glob("*.png"))) == 2


def _cli(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_missing_cub_stops_at_once_with_the_path_and_the_override(tmp_path: Path) -> None:
    result = _cli("camexp.train", "model=vgg_gap", "data=cub", f"data.root={tmp_path}/CUB",
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{tmp_path}/CUB" in result.stderr and "does not exist" in result.stderr
    assert "images.txt" in result.stderr and "data.root=" in result.stderr


def test_unknown_model_lists_the_available_ones(tmp_path: Path) -> None:
    result = _cli("camexp.train", "model=vgg19_gap", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Could not find 'model/vgg19_gap'" in result.stderr
    assert "vgg_gap" in result.stderr and "resnet50_gap" in result.stderr  # the available options


def test_eval_of_a_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("camexp.eval", f"ckpt_path={tmp_path}/none.ckpt", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "none.ckpt does not exist" in result.stderr


def test_eval_of_a_truncated_checkpoint_is_a_clear_error(trained_run, tmp_path: Path, data_dir) -> None:
    output_dir, _ = trained_run
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((output_dir / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={truncated}"], tmp_path / "eval", data_dir)
    with pytest.raises(UserError, match=r"Cannot load checkpoint .*truncated.ckpt: it is truncated or "
                                        r"damaged \(5000 bytes; its zip archive cannot be read\)"):
        evaluate(cfg)
    for name, content, reason in (
            ("empty.ckpt", b"", r"Cannot load checkpoint .*empty.ckpt: the file is empty \(0 bytes\)"),
            ("text.ckpt", b"e" * 10, r"text.ckpt is a text file, not a checkpoint \(a binary file written by torch.save\)"),
            ("binary.ckpt", b"\x00\x01" * 10, r"Cannot load checkpoint .*binary.ckpt: it is not a file "
                                               r"written by torch.save \(20 bytes of something else\)")):
        (tmp_path / name).write_bytes(content)
        cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={tmp_path / name}"], tmp_path / name[:4],
                             data_dir)
        with pytest.raises(UserError, match=rf"{reason}\. Pass ckpt_path="):
            evaluate(cfg)


@pytest.mark.slow
def test_cli_trains_tests_and_draws_from_its_default_config(tmp_path: Path) -> None:
    """The README's command with a smaller dataset: a real process, real run folder."""
    result = _cli("camexp.train", *TINY_SYNTHETIC, "trainer.max_epochs=3", f"paths.data_dir={tmp_path}/data",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(run_dirs) == 1
    run = run_dirs[0]
    assert f"Run folder: {run}" in result.stdout
    assert f"CAM pictures: {run / 'cam_pictures'}" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc_top1"] > 0.1  # chance on 10 classes; 3 epochs of 40 images
    assert len(list((run / "cam_pictures").glob("*.png"))) == 12
    assert (tmp_path / "data" / "synthetic").is_dir()


def test_fast_dev_run_of_train_through_the_configs(tmp_path: Path, data_dir: Path) -> None:
    cfg = compose_config("train", TINY_SYNTHETIC + ["trainer.fast_dev_run=true",
                                                    "trainer.enable_progress_bar=false"],
                         tmp_path / "run", data_dir)
    metrics = train(cfg)
    assert {"train/loss", "val/acc_top1", "test/acc_top1", "test/MaxBoxAccV2"} <= set(metrics)


@pytest.mark.slow
def test_vgg_gap_trains_on_a_cub_folder_unchanged(cub_dir: Path, tmp_path: Path) -> None:
    """The README's `model=vgg_gap data=cub` command on a tiny CUB-layout folder (real JPEGs):
    only the dataset's size-related settings differ."""
    overrides = ["model=vgg_gap", "data=cub", f"data.root={cub_dir}", "data.num_classes=3",
                 "model.pretrained=false", "data.resize_size=[64,64]", "data.crop_size=56",
                 "data.eval_size=[56,56]", "data.batch_size=2", "data.num_workers=0",
                 "data.val_fraction=0.5", "data.load_masks=true", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=1", "trainer.enable_progress_bar=false",
                 "callbacks.cam_pictures.num_images=2", "localization.cam_curve_interval=0.01"]
    cfg = compose_config("train", overrides, tmp_path / "run", tmp_path / "data")
    metrics = train(cfg)
    assert {"test/acc_top1", "test/MaxBoxAccV2", "test/PxAP"} <= set(metrics)
    assert len(list((tmp_path / "run" / "cam_pictures").glob("*.png"))) == 2


# -- issue 19: eval reads (or refuses) what it needs before the test, and keeps its numbers -------


def _copied_run(trained_run, tmp_path: Path) -> Path:
    import shutil

    output_dir, _ = trained_run
    run = tmp_path / "copied"
    shutil.copytree(output_dir, run)
    (run / ".hydra").mkdir(exist_ok=True)
    return run


@pytest.mark.parametrize("content", [b"seed: [12345\n", b"\xff\xfe\x00bad", b"- a list\n"])
def test_eval_refuses_an_unreadable_training_record_before_the_test(
        trained_run, tmp_path: Path, data_dir, monkeypatch, content: bytes) -> None:
    run = _copied_run(trained_run, tmp_path)
    (run / ".hydra" / "config.yaml").write_bytes(content)
    monkeypatch.setattr("camexp.eval.test_or_exit_preempted",
                        lambda *a: pytest.fail("the test ran before the record was read"))
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"],
                         tmp_path / "eval", data_dir)
    with pytest.raises(UserError, match=r"config.yaml, the Hydra record of the run that trained "
                                        r"last.ckpt, .*Nothing was tested"):
        evaluate(cfg)


def test_eval_writes_its_metrics_before_the_ledger(trained_run, tmp_path: Path, data_dir) -> None:
    run = _copied_run(trained_run, tmp_path)
    (tmp_path / "not_a_folder").write_text("")  # the ledger cannot be written under a file
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
                                                   "callbacks.cam_pictures.num_images=1",
                                                   "trainer.enable_progress_bar=false"],
                         tmp_path / "eval", data_dir)
    cfg.paths.log_dir = str(tmp_path / "not_a_folder" / "outputs")
    with pytest.raises(OSError):
        evaluate(cfg)
    assert "test/acc_top1" in json.loads((tmp_path / "eval" / "metrics.json").read_text())


def test_eval_refuses_an_unreadable_run_settings_file_before_the_test(
        trained_run, tmp_path: Path, data_dir, monkeypatch) -> None:
    import torch

    run = _copied_run(trained_run, tmp_path)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    state.pop("camexp")  # a checkpoint without settings: eval reads run_settings.yaml
    torch.save(state, run / "checkpoints" / "last.ckpt")
    (run / "run_settings.yaml").write_text("data: {eval_size: [56, 56]\n")
    monkeypatch.setattr("camexp.eval.test_or_exit_preempted",
                        lambda *a: pytest.fail("the test ran before the settings were read"))
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"],
                         tmp_path / "eval", data_dir)
    with pytest.raises(UserError, match=r"run_settings.yaml cannot be read .*Nothing was tested"):
        evaluate(cfg)


def test_a_train_split_smaller_than_a_batch_is_refused_before_training(tmp_path: Path, data_dir) -> None:
    """40 training images at batch 64: Lightning would take no step, test the untrained
    network and write its metrics (issue 19); the run stops first, with the numbers and the fix."""
    overrides = [o for o in TINY_SYNTHETIC if not o.startswith("data.batch_size=")]
    cfg = compose_config("train", overrides + QUICK_FIT + ["data.batch_size=64"], tmp_path / "run", data_dir)
    with pytest.raises(UserError, match=r"Nothing to train: the train split .* has 40 image\(s\), fewer "
                                        r"than one batch of data.batch_size=64.*at most 40"):
        train(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "test_record.json").exists()


def test_eval_refuses_a_method_other_than_the_checkpoints(tmp_path: Path, data_dir, monkeypatch) -> None:
    """+method=cam on an ACoL checkpoint evaluated ACoL while the eval's record said CAM."""
    acol = REPO / "tests" / "fixtures" / "old_layout_run" / "checkpoints" / "preempted.ckpt"
    monkeypatch.setattr("camexp.eval.test_or_exit_preempted", lambda *a: pytest.fail("tested"))
    for method, expected in (("cam", r"method._target_: 'camexp.methods.ACoL' in the checkpoint, "
                                     r"'camexp.methods.cam.CAM' asked.*method.threshold: 0.7 in the checkpoint, "
                                     r"'<unset>' asked.*drop the \+method=... override"),
                             ("has", r"method._target_: 'camexp.methods.ACoL' in the checkpoint, "
                                     r"'camexp.methods.has.HideAndSeek' asked")):
        cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={acol}", f"+method={method}"],
                             tmp_path / method, data_dir)
        with pytest.raises(UserError, match=expected):
            evaluate(cfg)
        assert not (tmp_path / method / "metrics.json").exists()
    # the checkpoint's own method, as stored, is allowed (then evaluated as before)
    from camexp.eval import check_method

    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={acol}", "+method=acol"], tmp_path / "same", data_dir)
    check_method(cfg, acol)


def test_a_finished_search_trial_returns_its_recorded_objective(tmp_path: Path) -> None:
    """A requeued sweep re-runs its finished trials with resume=auto: they are left alone and
    give the sweeper the value their trial.json recorded (the best epoch's), not a recomputed one."""
    import json as _json

    from omegaconf import OmegaConf

    from camexp.train import _stored_objective

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "optimized_metric": "val/MaxBoxAccV2"})
    numbers = {"val/MaxBoxAccV2": 40.0}
    assert _stored_objective(cfg, numbers) == 40.0  # no trial.json: the metric of metrics.json
    (tmp_path / "trial.json").write_text(_json.dumps({"status": "complete", "value": 42.5}))
    assert _stored_objective(cfg, numbers) == 42.5


def test_eval_of_a_run_folder_tests_the_checkpoint_the_run_tested(trained_run, tmp_path, data_dir,
                                                                  capsys) -> None:
    """The README's reproduction check: ckpt_path=<run folder> gives the run's own test numbers
    (last.ckpt would not: the run tested its best epoch) and names the checkpoint."""
    output_dir, metrics = trained_run
    record = json.loads((output_dir / "test_record.json").read_text())
    best = next((output_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert record["tested"] == f"checkpoints/{best.name}"
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={output_dir}", "callbacks.cam_pictures.num_images=1",
                                                   "trainer.enable_progress_bar=false", "print_config=false"],
                         tmp_path / "eval", data_dir)
    results = evaluate(cfg)
    out = capsys.readouterr().out
    assert f"ckpt_path={output_dir} is a run folder: evaluating {best}, the checkpoint" in out
    assert "CONFIG" not in out  # print_config=false works for eval too
    for key in ("test/acc_top1", "test/MaxBoxAccV2", "test/PxAP", "test/loc_gt_known"):
        assert results[key] == metrics[key], key


def test_eval_says_what_a_file_that_is_no_checkpoint_is(trained_run, tmp_path: Path) -> None:
    import torch

    output_dir, _ = trained_run
    module_state = torch.load(next((output_dir / "checkpoints").glob("epoch_*.ckpt")),
                              map_location="cpu", weights_only=True)["state_dict"]
    (tmp_path / "metrics.json").write_text(json.dumps({"test/acc_top1": 0.5}))
    torch.save(module_state, tmp_path / "weights.pt")
    torch.save({"state_dict": module_state, "epoch": 3}, tmp_path / "hand.ckpt")
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    cases = {
        tmp_path / "metrics.json": r"metrics.json is a JSON file, a run's metrics.json \(its final numbers\), not a ch",
        tmp_path / "weights.pt": r"weights.pt is a plain state dict \(\d+ tensors: weights only.*model.weights_path=<file> train=false",
        tmp_path / "hand.ckpt": r"hand.ckpt holds a 'state_dict' but was not written by Lightning's checkpointing",
        tmp_path / "empty_run": r"empty_run is a folder without checkpoints",
        tmp_path / "nothing": r"nothing does not exist \(no file or folder of that name\)",
    }
    for path, message in cases.items():
        cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={path}", "print_config=false"],
                             tmp_path / "eval", tmp_path / "data")
        with pytest.raises(UserError, match=message) as caught:
            evaluate(cfg)
        text = str(caught.value)
        assert "weights_only" not in text and ": 'pytorch-lightning_version'" not in text, text
        assert "run folder" in text or "ckpt_path=" in text  # what to pass instead


def test_post_hoc_pictures_name_their_map_method(trained_run, tmp_path: Path, data_dir, monkeypatch) -> None:
    import camexp.callbacks.cam_pictures as pictures

    output_dir, _ = trained_run
    titles, draw = [], pictures.draw_cam_panel
    monkeypatch.setattr(pictures, "draw_cam_panel",
                        lambda path, image, maps, boxes, title, **kw: titles.append(title) or draw(
                            path, image, maps, boxes, title, **kw))
    cfg = compose_config("eval", TINY_SYNTHETIC + [f"ckpt_path={output_dir}", "callbacks.cam_pictures.num_images=2",
                                                   "localization.method=gradcam", "print_config=false",
                                                   "trainer.enable_progress_bar=false"],
                         tmp_path / "eval", data_dir)
    evaluate(cfg)
    assert len(titles) == 2 and all(t.endswith("maps: localization.method=gradcam") for t in titles), titles
