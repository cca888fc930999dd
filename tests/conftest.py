"""Shared fixtures: a tiny CUB-200-2011 folder with real JPEGs, and Hydra configs for runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def write_cub(root: Path, num_classes: int = 3, per_class: int = 4, size=(60, 48), seed: int = 0) -> Path:
    """Write ``root/CUB_200_2011`` in the official layout: a bright rectangle per image on noise.

    Returns the CUB_200_2011 folder. Half of each class is train, half test; image ``k`` of a
    class has its rectangle at a known place (``bounding_boxes.txt`` holds x y w h floats).
    """
    rng = np.random.default_rng(seed)
    cub = root / "CUB_200_2011"
    lines = {name: [] for name in ("images", "labels", "split", "boxes", "classes")}
    image_id = 0
    width, height = size
    for class_id in range(1, num_classes + 1):
        class_dir = f"{class_id:03d}.Bird_{class_id}"
        lines["classes"].append(f"{class_id} {class_dir}")
        (cub / "images" / class_dir).mkdir(parents=True)
        (cub / "segmentations" / class_dir).mkdir(parents=True)
        for k in range(per_class):
            image_id += 1
            name = f"Bird_{class_id}_{k:04d}_{image_id}.jpg"
            pixels = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
            x, y, w, h = 5 + k, 4 + k, 20 + 2 * class_id, 15 + class_id
            pixels[y : y + h, x : x + w] = (200, 60 * class_id % 255, 40)
            Image.fromarray(pixels).save(cub / "images" / class_dir / name, quality=95)
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[y : y + h, x : x + w] = 255
            Image.fromarray(mask).save(cub / "segmentations" / class_dir / name.replace(".jpg", ".png"))
            lines["images"].append(f"{image_id} {class_dir}/{name}")
            lines["labels"].append(f"{image_id} {class_id}")
            lines["split"].append(f"{image_id} {1 if k < per_class // 2 else 0}")
            lines["boxes"].append(f"{image_id} {float(x)} {float(y)} {float(w)} {float(h)}")
    files = {"images": "images.txt", "labels": "image_class_labels.txt",
             "split": "train_test_split.txt", "boxes": "bounding_boxes.txt", "classes": "classes.txt"}
    for key, filename in files.items():
        (cub / filename).write_text("\n".join(lines[key]) + "\n")
    return cub


@pytest.fixture
def cub_dir(tmp_path: Path) -> Path:
    return write_cub(tmp_path / "cub")


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


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One folder for generated datasets, shared by the whole session (written once)."""
    return tmp_path_factory.mktemp("data")
