"""The transformer methods through the real configs on the embedded data (``model=minivit``):
train, test, ``python -m camexp.eval``, the same numbers again, and an exact resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camexp.eval import evaluate
from camexp.train import train
from tests.helpers.configs import REPO, TINY_SYNTHETIC, compose_config

FAST = TINY_SYNTHETIC + ["model=minivit", "trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=2",
                         "localization.cam_curve_interval=0.01", "trainer.limit_val_batches=1"]
# a paper's own rule scored beside (SAT's, here on every method: the keys must come out)
OWN_RULE = "localization.box_rule={rule:largest_component,threshold:0.4,resize:bilinear}"
TARGETS = {"cam": "CAM", "tscam": "TSCAM", "scm": "SCM", "sat": "SAT"}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _eval_cli(checkpoint: Path, output: Path, data_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "camexp.eval", *FAST, f"ckpt_path={checkpoint}",
               f"paths.data_dir={data_dir}", f"hydra.run.dir={output}"]
    result = subprocess.run(command, cwd=output.parent, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((output / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(TARGETS))
def test_transformer_method_trains_evaluates_repeats_and_resumes_exactly(method: str, tmp_path: Path,
                                                                        data_dir: Path) -> None:
    run = FAST + [f"method={method}", "trainer.max_epochs=2", OWN_RULE]
    full = tmp_path / "full"
    train(compose_config("train", run, full, data_dir))
    saved = json.loads((full / "metrics.json").read_text())
    for key in ("test/MaxBoxAccV2", "test/PxAP", "test/loc_gt_known", "test/acc_top1", "test/top1_loc",
                "test/top5_loc", "test/gt_known_loc"):
        assert key in saved, key
    assert 0.0 <= saved["test/MaxBoxAccV2"] <= 100.0 and 0.0 <= saved["test/gt_known_loc"] <= 100.0
    assert len(list((full / "cam_pictures").glob("*.png"))) == 2
    last = full / "checkpoints" / "last.ckpt"
    hyper = torch.load(last, weights_only=True)["hyper_parameters"]
    assert hyper["method"]["_target_"].endswith(TARGETS[method]) and hyper["optim"]["name"] == "adamw"
    assert hyper["backbone"] == {"img_size": 56, "drop_path": 0.0}
    # python -m camexp.eval rebuilds the network from the checkpoint, with the run's settings
    evaluated = _eval_cli(last, tmp_path / "eval", data_dir)
    again = evaluate(compose_config("eval", FAST + [f"ckpt_path={last}"], tmp_path / "eval2", data_dir))
    for key in ("test/acc_top1", "test/MaxBoxAccV2", "test/PxAP", "test/top1_loc", "test/gt_known_loc"):
        assert evaluated[key] == pytest.approx(again[key], abs=1e-6), key

    # one epoch, then resume=auto for the second: bit-exact weights
    half = tmp_path / "half"
    one = FAST + [f"method={method}", "trainer.max_epochs=1", "test=false", OWN_RULE]
    train(compose_config("train", one, half, data_dir))
    train(compose_config("train", run + ["resume=auto", "test=false"], half, data_dir))
    first, second = _weights(last), _weights(half / "checkpoints" / "last.ckpt")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
