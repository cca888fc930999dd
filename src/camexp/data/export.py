"""The field's metadata folder written for a dataset camexp reads (``python -m
camexp.write_metadata``): what ``camexp.eval_maps`` and the field's own evaluation code read.

For each split, ``<out>/<split>/`` gets (docs/eval_maps.md):

* ``image_ids.txt``: the image ids, paths relative to the images folder, in the split's order;
* ``class_labels.txt``: ``path,label``, labels from 0;
* ``image_sizes.txt``: ``path,w,h``, the images' sizes in pixels (read from their headers when
  the dataset's files do not give them);
* ``localization.txt``: with ``annotations=boxes`` the boxes, ``path,x0,y0,x1,y1`` in original
  pixels (one line per box, the corners camexp reads: CUB's ``x, y, x + w, y + h``); with
  ``annotations=masks`` the masks, ``path,mask_path,`` (one line per image, no ignore mask),
  each mask written as ``<out>/masks/<image id>.png``: the union of the image's masks
  thresholded as camexp's PxAP thresholds it (> 127), 0 or 255, at the original size.

The splits are those a run reads from the same ``data=`` settings (the seeded val split of
``data.split=official``, ``data.val_per_class``, ``data.train_on``), so the maps a run saves
(``save_maps=[val,test]``) match them image for image. Box and mask files hold the values a
run uses, so ``eval_maps`` at the run's evaluation size gives the run's numbers exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from camexp.core.errors import DatasetError
from camexp.data.images import read_mask
from camexp.data.tables import Split, Tables
from camexp.data.text_files import check_inside

LOCALIZATIONS = ("boxes", "masks")
MASKS_FOLDER = "masks"
# a run's PxAP: mask pixels above this value are foreground (callbacks.localization)
MASK_THRESHOLD = 127


def _number(value: float) -> str:
    """The shortest text that reads back as the same float64 (``60.0``, ``27.5``)."""
    return repr(float(value))


def image_sizes(split: Split) -> list[tuple[int, int]]:
    """``(w, h)`` of each image: the split's own sizes, else the image files' headers."""
    if split.sizes is not None:
        return [(int(w), int(h)) for w, h in split.sizes]
    from PIL import Image

    sizes = []
    for image_id in split.ids:
        path = split.images_root / image_id
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except (OSError, ValueError) as error:
            raise DatasetError(f"Cannot read the size of {path} ({error}); python -m "
                               "camexp.check_data data=... lists the unreadable images.") from None
    return sizes


def _union_mask(files: Sequence[Path] | Path) -> np.ndarray:
    """The image's foreground as a run scores it: the union of its masks, > 127, as 0/255."""
    paths = [files] if isinstance(files, (str, Path)) else list(files)
    masks = [read_mask(Path(p)) for p in paths]
    union = torch.stack(masks).amax(0) if masks else None
    if union is None:
        raise DatasetError(f"No mask file for the image of {files}.")
    return ((union > MASK_THRESHOLD).to(torch.uint8) * 255).numpy()


def write_split(split: Split, folder: Path, localization: str = "boxes",
                mask_files: list | None = None, out: Path | None = None) -> int:
    """Write one split folder; returns the number of images. ``mask_files``: the split's mask
    files (per image, as the DataModule gives them) for ``localization=masks``, written under
    ``out/masks``."""
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in split.ids:
        check_inside(image_id, f"image id {image_id!r} of the {split.name} split")
    sizes = image_sizes(split)
    (folder / "image_ids.txt").write_text("".join(f"{i}\n" for i in split.ids))
    (folder / "class_labels.txt").write_text(
        "".join(f"{i},{int(label)}\n" for i, label in zip(split.ids, split.labels, strict=True)))
    (folder / "image_sizes.txt").write_text(
        "".join(f"{i},{w},{h}\n" for i, (w, h) in zip(split.ids, sizes, strict=True)))
    lines = []
    if localization == "boxes":
        for index, image_id in enumerate(split.ids):
            for box in split.boxes[split.offsets[index]:split.offsets[index + 1]]:
                lines.append(f"{image_id}," + ",".join(_number(v) for v in box) + "\n")
    else:
        import cv2

        if mask_files is None or out is None:
            raise DatasetError(f"annotations=masks: the {split.name} split has no masks here; set "
                               "data.load_masks=true on a dataset with masks (CUB's segmentations, "
                               "the synthetic data).")
        for image_id, files in zip(split.ids, mask_files, strict=True):
            relative = f"{MASKS_FOLDER}/{Path(image_id).with_suffix('.png').as_posix()}"
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), _union_mask(files)):
                raise DatasetError(f"Cannot write {target}; check that the folder can be written.")
            lines.append(f"{image_id},{relative},\n")
    (folder / "localization.txt").write_text("".join(lines))
    return len(split)


def write_metadata(tables: Tables, out: Path, splits: Sequence[str], localization: str = "boxes",
                   masks_for: Callable[[Split], list | None] | None = None) -> dict[str, int]:
    """Write ``out/<split>/`` for each of ``splits``; returns the images written per split."""
    if localization not in LOCALIZATIONS:
        raise DatasetError(f"annotations={localization!r}: use one of {list(LOCALIZATIONS)}.")
    unknown = [name for name in splits if name not in tables.splits]
    if unknown:
        raise DatasetError(f"splits={list(splits)}: {unknown} not among the dataset's splits "
                           f"{list(tables.splits)}.")
    written = {}
    for name in splits:
        split = tables.splits[name]
        masks = masks_for(split) if localization == "masks" and masks_for is not None else None
        written[name] = write_split(split, out / name, localization, masks, out)
    return written
