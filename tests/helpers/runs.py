"""Run folders for tests: one written by hand as Hydra and camexp leave it, and a real
``camexp.train`` subprocess that a signal can stop (with its checkpoints compared by weight)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from tests.helpers.configs import REPO, TINY_SYNTHETIC


def fake_run(folder: Path, config: dict, metrics: dict | None, experiment: str | None = None,
             overrides: tuple[str, ...] = ()) -> Path:
    """A run folder as Hydra and camexp leave it: .hydra/{config,hydra,overrides}.yaml, metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    choices = {"experiment": experiment} if experiment else {}
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


FIELD_DATA = {"CUB": ("CUBDataModule", 50), "ImageNet": ("ImageNetDataModule", 10),
              "OpenImages": ("OpenImagesDataModule", 10)}


def field_protocol_config(arch: str, method: str, dataset: str = "CUB", **changes) -> dict:
    """The config of a training run under the field's protocol (as ``experiment=wsol_<dataset>_
    <backbone> method=<method>`` writes it): the field's splits, schedule, checkpoint choice
    and evaluation. ``changes``: dotted keys with ``__`` for ``.`` set to other values."""
    module, epochs = FIELD_DATA[dataset]
    config = {
        "task_name": "train", "train": True,
        "model": {"arch": arch, "pool": "gap"},
        "method": {"_target_": f"camexp.methods.{method}"},
        "data": {"_target_": f"camexp.data.datamodule.{module}", "split": "wsol", "epochs": epochs,
                 "eval_size": [224, 224]},
        "trainer": {"max_epochs": "${data.epochs}", "limit_train_batches": None,
                    "limit_val_batches": None, "limit_test_batches": None, "fast_dev_run": False},
        "callbacks": {"model_checkpoint": {
            "monitor": "val/PxAP" if dataset == "OpenImages" else "val/MaxBoxAccV2"}},
        "localization": {"method": "cam", "cam_curve_interval": 0.001,
                         "iou_thresholds": [30, 50, 70], "multi_contour": True},
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return config


# 40 training images in batches of 8: 5 steps an epoch, 3 epochs; with 2 DataLoader workers
# (persistent, as by default), since a resume must be exact with them (issue 19)
RESUMABLE_RUN = [o for o in TINY_SYNTHETIC if not o.startswith("data.num_workers=")] + [
    "data.num_workers=2", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
    "callbacks.cam_pictures.num_images=1", "localization.cam_curve_interval=0.05"]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def assert_same_metrics(expected_run: Path, run: Path) -> None:
    """Every number of the two runs' ``metrics.json`` is equal, bit for bit, and none is missing."""
    expected = json.loads((expected_run / "metrics.json").read_text())
    got = json.loads((run / "metrics.json").read_text())
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if key != "warnings":
            assert got[key] == value, key


def train_cli(run_dir: Path, data_dir: Path, *extra: str, env: dict | None = None,
              preexec_fn=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "camexp.train", *RESUMABLE_RUN, f"paths.data_dir={data_dir}",
               f"hydra.run.dir={run_dir}", *extra]
    return subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True,
                          timeout=600, preexec_fn=preexec_fn)


def signal_at(step: int, name: str) -> list[str]:
    return ["+callbacks.signal._target_=tests.helpers.signals.SignalAtStep",
            f"+callbacks.signal.step={step}", f"+callbacks.signal.signum={name}"]
