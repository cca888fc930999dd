"""The optional ``local`` config group: a user's own settings in conf/local/default.yaml (every
command) and conf/local/data/<data>.yaml (that data= only), ignored by git but the example.

Each test composes a copy of conf/ in which only the files it writes exist, so a developer's
own local files change nothing here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from camexp.check_data import check_data
from tests.helpers.configs import CONF_DIR, REPO
from tests.helpers.datasets import write_cub

ENTRIES = ("train", "eval", "check_data", "eval_maps")
WITH_DATA = ("train", "eval", "check_data")
EXAMPLE = CONF_DIR / "local" / "example.yaml"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of conf/ whose local group holds the example only."""
    copy = tmp_path / "conf"
    shutil.copytree(CONF_DIR, copy)
    for path in (copy / "local").iterdir():
        if path.name != EXAMPLE.name:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return copy


def compose(conf: Path, entry: str, *overrides: str):
    """``conf/<entry>.yaml`` composed as the command line would, ``${hydra:...}`` resolvable."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = hydra_compose(entry, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_without_local_files_every_command_keeps_its_defaults(conf: Path) -> None:
    default_data = str(Path.cwd() / "data")
    for entry in ENTRIES:
        assert compose(conf, entry).paths.data_dir == default_data, entry
    for entry in WITH_DATA:
        cfg = compose(conf, entry, "data=cub")
        assert cfg.data.root == f"{default_data}/CUB_200_2011", entry
        assert cfg.data.metadata_root is None, entry


def test_the_example_as_default_sets_every_commands_data_folder(conf: Path) -> None:
    shutil.copy(EXAMPLE, conf / "local" / "default.yaml")
    data_dir = OmegaConf.load(EXAMPLE).paths.data_dir
    assert data_dir and data_dir != str(Path.cwd() / "data")
    for entry in ENTRIES:
        assert compose(conf, entry).paths.data_dir == data_dir, entry
    for entry in WITH_DATA:
        assert compose(conf, entry, "data=imagenet").data.root == f"{data_dir}/imagenet", entry
    preset = compose(conf, "train", "experiment=wsol_cub_vgg16")
    assert preset.data.root == f"{data_dir}/CUB_200_2011"
    assert preset.data.metadata_root == f"{data_dir}/metadata/CUB"
    # the command line still wins
    assert compose(conf, "train", "paths.data_dir=/cli").paths.data_dir == "/cli"


def test_a_data_file_sets_its_dataset_only_and_wins_over_the_presets(conf: Path) -> None:
    write(conf / "local" / "data" / "cub.yaml",
          "root: /datasets/CUB_200_2011\nmetadata_root: /datasets/metadata/CUB\n")
    default_data = str(Path.cwd() / "data")
    for entry in WITH_DATA:
        cfg = compose(conf, entry, "data=cub")
        assert (cfg.data.root, cfg.data.metadata_root) == (
            "/datasets/CUB_200_2011", "/datasets/metadata/CUB"), entry
        assert compose(conf, entry, "data=imagenet").data.root == f"{default_data}/imagenet"
        assert compose(conf, entry).data.root == f"{default_data}/synthetic"  # data=synthetic
    preset = compose(conf, "train", "experiment=wsol_cub_vgg16")
    assert preset.data.metadata_root == "/datasets/metadata/CUB"  # the preset says .../CUB too
    assert compose(conf, "train", "data=cub", "data.root=/cli").data.root == "/cli"


def test_the_wandb_team_goes_to_the_jobs_environment(conf: Path) -> None:
    write(conf / "local" / "default.yaml",
          "# @package _global_\nhydra:\n  job:\n    env_set:\n      WANDB_ENTITY: my-team\n")
    for entry in ENTRIES:
        assert compose(conf, entry).hydra.job.env_set == {"WANDB_ENTITY": "my-team"}, entry


def test_check_data_reads_the_dataset_a_local_file_names(conf: Path, tmp_path: Path,
                                                         capsys) -> None:
    cub = write_cub(tmp_path / "elsewhere")
    write(conf / "local" / "data" / "cub.yaml", f"root: {cub}\nnum_classes: 3\nval_fraction: 0.5\nbatch_size: 2\n")
    report = check_data(compose(conf, "check_data", "data=cub", "workers=1"))
    assert report.ok
    assert f"at {cub}" in capsys.readouterr().out


def test_git_ignores_the_local_files_but_the_example() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    assert ignored("conf/local/default.yaml")
    assert ignored("conf/local/data/cub.yaml")
    assert not ignored("conf/local/example.yaml")
