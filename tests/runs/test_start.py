"""The template's conveniences: debug= presets, the config tree, tags in sweeps, logger=many."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from camexp.core.errors import MissingTagsError
from camexp.runs.start import require_tags, save_config_tree
from tests.helpers.configs import compose_config


def test_config_tree_is_printed_and_saved(tmp_path: Path, capsys) -> None:
    cfg = compose_config("train", ["model.pool=gmp"], tmp_path / "run", tmp_path)
    path = save_config_tree(cfg, tmp_path / "run")
    text = path.read_text()
    assert path.name == "config_tree.txt"
    assert text.startswith("CONFIG")
    assert "pool: gmp" in text and "max_epochs: 15" in text  # resolved (${data.epochs})
    assert text.index("data") < text.index("model") < text.index("trainer")
    assert "\x1b[" not in text  # no colour codes in the file
    assert "pool: gmp" in capsys.readouterr().out


def test_sweeps_need_tags(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    cfg = compose_config("train", [], tmp_path / "run", tmp_path)
    require_tags(cfg)  # a single run needs none
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(MissingTagsError, match=r"This sweep has no tags.*tags=\[search,cub,vgg16\]"):
        require_tags(cfg)
    cfg.tags = ["search"]
    require_tags(cfg)


def test_an_eval_sweep_needs_tags_as_a_train_sweep_does(tmp_path: Path) -> None:
    """The same rule for train and eval sweeps (issue 20: eval sweeps skipped it)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from camexp.eval import evaluate

    cfg = compose_config("eval", ["ckpt_path=/nowhere.ckpt"], tmp_path / "run", tmp_path)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(MissingTagsError, match=r"camexp.train and camexp.eval alike"):
        evaluate(cfg)


def test_a_sweep_without_tags_stops_with_the_message(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "camexp.train", "-m", "model.pool=gap,gmp",
                           f"paths.data_dir={tmp_path}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "MissingTagsError: This sweep has no tags" in done.stderr
    assert "Traceback" not in done.stderr




@pytest.mark.parametrize("entry", ["train", "eval", "check_data", "eval_maps"])
def test_every_entry_point_takes_print_config(entry: str, tmp_path: Path, capsys) -> None:
    """print_config= in every entry point (issue 20: eval refused it and always printed)."""
    from camexp.runs.start import print_config_tree

    cfg = compose_config(entry, ["print_config=false"], tmp_path / "run", tmp_path)
    assert cfg.print_config is False
    print_config_tree(cfg)
    assert capsys.readouterr().out == ""
    cfg.print_config = True
    print_config_tree(cfg)
    assert capsys.readouterr().out.startswith("CONFIG")


def test_eval_takes_the_debug_presets_and_tags_as_train_does(tmp_path: Path) -> None:
    cfg = compose_config("eval", ["debug=fdr", "tags=[thresholds]", "ckpt_path=x"], tmp_path / "run", tmp_path)
    assert cfg.trainer.fast_dev_run is True and list(cfg.tags) == ["thresholds"]
    assert "/eval/debug/" in cfg.hydra.run.dir
