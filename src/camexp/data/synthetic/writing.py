"""Writing the synthetic dataset in the CUB-200-2011 layout, once per spec (atomically)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from camexp.data.synthetic.classes import CLASS_CATALOGUE
from camexp.data.synthetic.drawing import generate_sample
from camexp.data.synthetic.spec import (
    CUB_DIRNAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_NAME,
    SyntheticSpec,
    class_dirs,
    spec_hash,
)


def _split_flags(spec: SyntheticSpec, class_index: int) -> np.ndarray:
    """Train(1)/test(0) per image of a class, shuffled like CUB's interleaved split."""
    flags = np.array([1] * spec.train_per_class + [0] * spec.test_per_class, dtype=np.int64)
    return np.random.default_rng([spec.seed, class_index, 1]).permutation(flags)


def _metadata(spec: SyntheticSpec) -> dict:
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "spec_hash": spec_hash(spec),
        "classes": [
            {"class_id": i + 1, "class_dir": d, "shape": c.shape, "texture": c.texture}
            for i, (d, c) in enumerate(zip(class_dirs(spec), CLASS_CATALOGUE, strict=False))
        ],
        "num_images": spec.num_images,
        "bounding_boxes": "one line per object; two-object images repeat the image_id",
    }


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def write_synthetic_cub(root: Path | str, spec: SyntheticSpec | None = None) -> Path:
    """Write the dataset to ``root/CUB_200_2011`` and return that folder.

    Refuses to write into a non-empty ``CUB_200_2011`` so a real dataset is never overwritten.
    ``synthetic.json`` is written last, so its presence marks a finished write.
    """
    spec = SyntheticSpec() if spec is None else spec
    cub = Path(root) / CUB_DIRNAME
    if cub.exists() and any(cub.iterdir()):
        raise FileExistsError(f"{cub} exists and is not empty; refusing to overwrite it")
    dirs = class_dirs(spec)
    for d in dirs:
        (cub / "images" / d).mkdir(parents=True, exist_ok=True)
        (cub / "segmentations" / d).mkdir(parents=True, exist_ok=True)

    images, labels, split, boxes = [], [], [], []
    for class_index, class_dir in enumerate(dirs):
        flags = _split_flags(spec, class_index)
        name_stem = CLASS_CATALOGUE[class_index].name
        for k in range(spec.images_per_class):
            image_index = class_index * spec.images_per_class + k
            image_id = image_index + 1
            sample = generate_sample(spec, image_index)
            name = f"{name_stem}_{k + 1:04d}"
            Image.fromarray(sample.image, mode="RGB").save(
                cub / "images" / class_dir / f"{name}.jpg",
                format="JPEG",
                quality=spec.jpeg_quality,
                subsampling=0,
                optimize=False,
            )
            seg = np.where(sample.mask, 255, 0).astype(np.uint8)
            Image.fromarray(seg, mode="L").save(
                cub / "segmentations" / class_dir / f"{name}.png", format="PNG"
            )
            images.append(f"{image_id} {class_dir}/{name}.jpg")
            labels.append(f"{image_id} {class_index + 1}")
            split.append(f"{image_id} {int(flags[k])}")
            boxes.extend(
                f"{image_id} {float(x):.1f} {float(y):.1f} {float(w):.1f} {float(h):.1f}"
                for x, y, w, h in sample.boxes
            )

    _write_lines(cub / "classes.txt", [f"{i + 1} {d}" for i, d in enumerate(dirs)])
    _write_lines(cub / "images.txt", images)
    _write_lines(cub / "image_class_labels.txt", labels)
    _write_lines(cub / "train_test_split.txt", split)
    _write_lines(cub / "bounding_boxes.txt", boxes)
    (cub / META_NAME).write_text(
        json.dumps(_metadata(spec), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return cub


def _is_complete(cub: Path, spec: SyntheticSpec) -> bool:
    try:
        meta = json.loads((cub / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        meta.get("format_version") == FORMAT_VERSION
        and meta.get("spec") == spec.to_dict()
        and (cub / "images.txt").is_file()
    )


def ensure_synthetic_cub(cache_dir: Path | str, spec: SyntheticSpec | None = None) -> Path:
    """Return ``cache_dir/synthetic-<hash12>/CUB_200_2011``, writing it first if needed.

    The write goes to a uniquely named temporary sibling that is renamed into place, so a crashed
    write (a leftover ``.synthetic-<hash>.tmp-*`` folder) is never mistaken for a dataset, and two
    processes racing to write it both end up with one complete copy.
    """
    spec = SyntheticSpec() if spec is None else spec
    cache_dir = Path(cache_dir)
    digest = spec_hash(spec)
    final = cache_dir / f"synthetic-{digest}"
    cub = final / CUB_DIRNAME
    if _is_complete(cub, spec):
        return cub

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".synthetic-{digest}.tmp-", dir=cache_dir))
    try:
        write_synthetic_cub(tmp, spec)
        if final.exists():
            if _is_complete(cub, spec):  # another process finished first
                return cub
            # Not ours to trust (e.g. edited by hand): move it aside, then remove it.
            trash = cache_dir / f".synthetic-{digest}.trash-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if _is_complete(cub, spec):  # lost a race to a concurrent writer
                return cub
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return cub
