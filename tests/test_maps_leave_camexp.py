"""Maps that leave camexp: a run's saved maps (save_maps=[val,test]) and the metadata folder
``camexp.write_metadata`` writes give, through ``camexp.eval_maps``, the run's own numbers
exactly (the saved maps are at the run's evaluation size; eval_maps scores at image_size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camexp.eval import evaluate
from camexp.localization.offline import evaluate_maps
from camexp.train import train
from camexp.write_metadata import write
from tests.helpers.configs import REPO, TINY_SYNTHETIC, compose_config

QUIET = ["trainer.enable_progress_bar=false", "callbacks.cam_pictures.num_images=1",
         "localization.cam_curve_interval=0.01"]
BOX_KEYS = ("MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU50", "MaxBoxAccV2_IoU70",
            "MaxBoxAcc_best_tau", "MaxBoxAccV2_best_tau_IoU50")


def _same(result: dict, metrics: dict, stage: str, keys) -> None:
    """Equal to the run's logged numbers (logged as float32): exactly, not approximately."""
    for key in keys:
        assert np.float32(result[key]) == np.float32(metrics[f"{stage}/{key}"]), (stage, key)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, data_dir: Path) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("maps") / "run"
    cfg = compose_config("train", [*TINY_SYNTHETIC, *QUIET, "trainer.max_epochs=2",
                                   "trainer.limit_train_batches=3", "save_maps=[val,test]"], run, data_dir)
    return run, train(cfg)


@pytest.mark.parametrize("stage", ["val", "test"])
def test_eval_maps_on_the_saved_maps_and_the_written_metadata_gives_the_runs_numbers(
        saved_run, stage: str, tmp_path: Path, data_dir: Path) -> None:
    run, metrics = saved_run
    maps = run / "maps" / stage
    assert len(list(maps.rglob("*.npy"))) == {"val": 20, "test": 20}[stage]
    for localization in ("boxes", "masks"):
        cfg = compose_config("write_metadata", [*TINY_SYNTHETIC, f"out={tmp_path / localization}",
                                                f"annotations={localization}"], tmp_path, data_dir)
        written = write(cfg)
        assert written[stage] == {"val": 20, "test": 20}[stage]
    settings = dict(split=stage, image_size=[56, 56], cam_curve_interval=0.01)
    boxes = evaluate_maps(maps, tmp_path / "boxes", **settings)
    assert boxes["num_images"] == len(list(maps.rglob("*.npy"))) and boxes["extra_maps"] == 0
    _same(boxes, metrics, stage, BOX_KEYS)
    masks = evaluate_maps(maps, tmp_path / "masks", mask_root=tmp_path / "masks", **settings)
    _same(masks, metrics, stage, ["PxAP"])


def test_an_eval_saves_its_test_maps_and_the_cli_scores_them(saved_run, tmp_path: Path, data_dir: Path) -> None:
    """The commands as a user types them: eval with save_maps=[test], write_metadata, eval_maps."""
    run, metrics = saved_run
    cfg = compose_config("eval", [*TINY_SYNTHETIC, *QUIET, f"ckpt_path={run}", "save_maps=[test]",
                                  "print_config=false"], tmp_path / "eval", data_dir)
    evaluated = evaluate(cfg)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    written = subprocess.run([sys.executable, "-m", "camexp.write_metadata", *TINY_SYNTHETIC,
                              f"paths.data_dir={data_dir}", f"out={tmp_path / 'meta'}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr[-2000:]
    assert "image_size=[56,56]" in written.stdout
    scored = subprocess.run([sys.executable, "-m", "camexp.eval_maps", f"maps_dir={tmp_path / 'eval' / 'maps' / 'test'}",
                             f"metadata_dir={tmp_path / 'meta'}", "split=test", "image_size=[56,56]",
                             "cam_curve_interval=0.01", f"output={tmp_path / 'scored.json'}"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    result = json.loads((tmp_path / "scored.json").read_text())
    _same(result, evaluated, "test", BOX_KEYS)
    _same(result, metrics, "test", BOX_KEYS)  # the eval reproduced the run, and so do its maps
