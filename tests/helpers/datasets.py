"""Builders of datasets in their real on-disk layouts, with real image files: CUB-200-2011,
ILSVRC 2012 (XML or CSV boxes) and the field's metadata folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


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


def save_image(path: Path, size=(40, 30), box=(5, 4, 25, 20), seed: int = 0, colour=(200, 90, 40)) -> None:
    """A small JPEG/PNG (by suffix): noise with a bright rectangle at ``box`` (x0, y0, x1, y1)."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = (int(v) for v in box)
    pixels[y0:y1, x0:x1] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") \
        else Image.fromarray(pixels).save(path)


WNIDS = ("n01440764", "n01443537", "n01484850")


def write_imagenet(root: Path, boxes: str = "xml", per_class: int = 3, val_per_class: int = 2,
                   size=(40, 30), foldered_val: bool = False) -> Path:
    """An ILSVRC 2012 layout: ``train/<wnid>/<wnid>_<n>.JPEG`` and ``val/ILSVRC2012_val_*.JPEG``
    with boxes as one XML per image in ``bbox_val/`` (``boxes="xml"``) or as
    ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt`` (``boxes="csv"``). The first val image
    of each class has two boxes. Returns ``root``."""
    width, height = size
    mapping = [f"{w} fish number {i}, Piscis {i}" for i, w in enumerate(WNIDS)]
    for label, wnid in enumerate(WNIDS):
        for k in range(per_class):
            save_image(root / "train" / wnid / f"{wnid}_{k}.JPEG", size, (3 + k, 2, 20 + 5 * label, 18),
                        seed=label * 100 + k, colour=(200, 70 * label % 255, 40))
    rows = ["ImageId,PredictionString"]
    number = 0
    for label, wnid in enumerate(WNIDS):
        for k in range(val_per_class):
            number += 1
            stem = f"ILSVRC2012_val_{number:08d}"
            image_boxes = [(3 + k, 2, 20 + 5 * label, 18)] + ([(25, 15, 38, 28)] if k == 0 else [])
            folder = root / "val" / wnid if foldered_val else root / "val"
            save_image(folder / f"{stem}.JPEG", size, image_boxes[0], seed=1000 + number,
                        colour=(200, 70 * label % 255, 40))
            if boxes == "xml":
                objects = "".join(
                    f"<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                    f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b in image_boxes)
                xml = (f"<annotation><filename>{stem}</filename><size><width>{width}</width>"
                       f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>\n")
                (root / "bbox_val").mkdir(parents=True, exist_ok=True)
                (root / "bbox_val" / f"{stem}.xml").write_text(xml)
            else:
                rows.append(f"{stem}," + " ".join(f"{wnid} {b[0]} {b[1]} {b[2]} {b[3]}" for b in image_boxes))
    if boxes == "csv":
        (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
        (root / "LOC_synset_mapping.txt").write_text("\n".join(mapping) + "\n")
    return root


def write_metadata(meta: Path, images_root: Path, splits: dict[str, list[tuple]], masks: bool = False,
                   size=(40, 30)) -> Path:
    """The field's metadata folders ``meta/<split>/`` and the images they list under
    ``images_root``. Each split is a list of ``(image_id, label, boxes)``; with ``masks=True``
    localization.txt lists ``path,mask_path,ignore_path`` (one PNG mask per box, and an ignore
    mask for the first image) instead of boxes. Returns ``meta``."""
    width, height = size
    for split, items in splits.items():
        folder = meta / split
        folder.mkdir(parents=True, exist_ok=True)
        ids, labels, sizes, loc = [], [], [], []
        for n, (image_id, label, boxes) in enumerate(items):
            save_image(images_root / image_id, size, boxes[0] if boxes else (5, 4, 25, 20), seed=n)
            ids.append(image_id)
            labels.append(f"{image_id},{label}")
            sizes.append(f"{image_id},{width},{height}")
            for j, box in enumerate(boxes):
                if masks:
                    mask_id = image_id.rsplit(".", 1)[0] + f"_m{j}.png"
                    mask = np.zeros((height, width), dtype=np.uint8)
                    x0, y0, x1, y1 = (int(v) for v in box)
                    mask[y0:y1, x0:x1] = 255
                    (images_root / mask_id).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(images_root / mask_id)
                    ignore = ""
                    if n == 0 and j == 0:
                        ignore = image_id.rsplit(".", 1)[0] + "_ignore.png"
                        region = np.zeros((height, width), dtype=np.uint8)
                        region[:, :4] = 255
                        Image.fromarray(region).save(images_root / ignore)
                    loc.append(f"{image_id},{mask_id},{ignore}")
                else:
                    loc.append(f"{image_id}," + ",".join(f"{v:g}" for v in box))
        (folder / "image_ids.txt").write_text("\n".join(ids) + "\n")
        (folder / "class_labels.txt").write_text("\n".join(labels) + "\n")
        (folder / "image_sizes.txt").write_text("\n".join(sizes) + "\n")
        if loc:
            (folder / "localization.txt").write_text("\n".join(loc) + "\n")
    return meta


def box_metadata_with_perfect_maps(tmp_path: Path, images: Path | None = None) -> tuple[Path, Path]:
    """A two-image box split (40 x 30 images) and perfect maps for it."""
    images = images or tmp_path / "images"
    meta = write_metadata(tmp_path / "metadata", images, {
        "test": [("a/x.jpg", 0, [(10, 5, 30, 25)]), ("b/y.jpg", 1, [(0, 0, 20, 15)])]})
    maps = tmp_path / "maps"
    for image_id, (x0, y0, x1, y1) in (("a/x.jpg", (10, 5, 30, 25)), ("b/y.jpg", (0, 0, 20, 15))):
        score = np.zeros((30, 40))
        score[y0:y1, x0:x1] = 1.0
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", score)
    return meta, maps
