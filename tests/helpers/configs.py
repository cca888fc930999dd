"""Composing camexp's Hydra configs as the command line would, with paths under a test's tmp."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"


# A synthetic dataset small enough for seconds-long runs (10 classes x (6 train + 2 test)).
TINY_SYNTHETIC = [
    "data.synthetic.train_per_class=6",
    "data.synthetic.test_per_class=2",
    "data.synthetic.image_size=64",
    "data.resize_size=[64,64]",
    "data.crop_size=56",
    "data.eval_size=[56,56]",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.val_fraction=0.34",
]


def compose_config(config_name: str, overrides: list[str], output_dir: Path, data_dir: Path):
    """Compose ``conf/<config_name>.yaml`` as the CLI would, with paths moved under tmp."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(output_dir.parent)
        cfg.paths.data_dir = str(data_dir)
        cfg.paths.output_dir = str(output_dir)
    return cfg
