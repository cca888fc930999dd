"""A map-style dataset of images with labels, boxes (and optional masks), and its collate.

Each item is a dict:
``image`` (3, H, W) uint8, ``label`` int (0-based), ``boxes`` (K, 4) float32 in the
transformed image's pixels (``x0, y0, x1, y1``, see :mod:`camexp.data.transforms`),
``image_id`` str (the path relative to the images folder), ``index``, ``mask`` (H, W) uint8
when masks are loaded, and ``ignore`` (H, W) uint8 when the dataset has ignore regions
(OpenImages; nonzero = leave the pixel out of PxAP). :func:`collate` pads boxes to the batch's largest K and adds ``num_boxes``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from camexp.core.errors import DatasetError
from camexp.data.images import read_encoded, read_image, read_mask
from camexp.data.samplers import sample_seed
from camexp.data.transforms import TrainTransform, resize_mask

log = logging.getLogger(__name__)


class WSOLDataset(Dataset):
    """Images listed by file with their label and boxes; the transform sees image, boxes, mask.

    Paths and boxes are kept as numpy arrays (bytes paths, one flat box array with offsets), not
    per-item Python objects: a 1.28M-image split costs tens of MB, and worker processes forked
    from it do not copy it page by page through reference counts.

    ``mask_files[i]`` is a path or a tuple of instance-mask paths (their union is the mask);
    ``ignore_files[i]`` an ignore-region mask or None (item key ``ignore``, evaluation only);
    ``boxes_from_masks`` derives each image's boxes from its instance masks (OpenImages).
    ``on_bad_image="skip"`` makes an unreadable image yield None (logged once per process),
    which :func:`collate` leaves out.
    """

    def __init__(
        self,
        image_files: Sequence[Path],
        image_ids: Sequence[str],
        labels: np.ndarray,
        boxes: Sequence[np.ndarray],
        transform: Callable,
        mask_files: Sequence[Path | Sequence[Path]] | None = None,
        seed: int = 0,
        ignore_files: Sequence[Path | None] | None = None,
        on_bad_image: str = "error",
        boxes_from_masks: bool = False,
        root: Path | None = None,
        box_offsets: np.ndarray | None = None,
    ) -> None:
        self.root = None if root is None else Path(root)
        self._files = np.array([os.fsencode(str(f)) for f in image_files], dtype=np.bytes_)
        self._ids = np.array([i.encode("utf-8") for i in image_ids], dtype=np.bytes_)
        self.labels = np.asarray(labels, dtype=np.int64)
        if box_offsets is None:
            counts = [len(b) for b in boxes]
            self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self._boxes = (np.concatenate([np.asarray(b, dtype=np.float32).reshape(-1, 4)
                                           for b in boxes]) if counts else np.zeros((0, 4), np.float32))
        else:
            self._offsets = np.asarray(box_offsets, dtype=np.int64)
            self._boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.transform = transform
        self.mask_files = None if mask_files is None else list(mask_files)
        self.ignore_files = None if ignore_files is None else list(ignore_files)
        self.on_bad_image = on_bad_image
        self.boxes_from_masks = boxes_from_masks
        self.seed = seed
        # data.decode_device=cuda: items carry encoded JPEGs, decoded on the device
        # (camexp.data.device_decode); set by the DataModule once it knows the device
        self.decode_on_device = False

    @classmethod
    def from_split(cls, split, transform: Callable, mask_files=None, ignore_files=None,
                   seed: int = 0, on_bad_image: str = "error",
                   boxes_from_masks: bool = False) -> WSOLDataset:
        """A dataset over a :class:`camexp.data.wsol.Split` (paths relative to its root)."""
        return cls(split.ids, split.ids, split.labels, split.boxes, transform,
                   mask_files=mask_files, seed=seed, ignore_files=ignore_files,
                   on_bad_image=on_bad_image, boxes_from_masks=boxes_from_masks,
                   root=split.images_root, box_offsets=split.offsets)

    def __len__(self) -> int:
        return len(self._files)

    def image_file(self, index: int) -> Path:
        name = os.fsdecode(self._files[index])
        return Path(name) if self.root is None else self.root / name

    @property
    def image_files(self) -> list[Path]:
        return [self.image_file(i) for i in range(len(self))]

    @property
    def image_ids(self) -> list[str]:
        return [i.decode("utf-8") for i in self._ids]

    @property
    def boxes(self) -> list[Tensor]:
        return [self.boxes_of(i) for i in range(len(self))]

    def boxes_of(self, index: int) -> Tensor:
        return torch.from_numpy(self._boxes[self._offsets[index] : self._offsets[index + 1]].copy())

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """``key`` is an index, or ``(epoch, index)`` from the training sampler: random
        augmentation is then seeded from ``(seed, epoch, index)`` and nothing else."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        path = self.image_file(index)
        encoded = None
        try:
            encoded = read_encoded(path) if self.decode_on_device else None
            image = read_image(path) if encoded is None else None
            mask = None if self.mask_files is None else self._mask(index)
        except DatasetError as error:
            if self.on_bad_image != "skip":
                raise DatasetError(
                    f"{error} Found during the run (the checks before training decode every val "
                    "and test image but only a sample of train): set data.on_bad_image=skip to "
                    "leave such images out, and continue with resume=auto from the last checkpoint."
                ) from None
            _warn_once(str(path), str(error))
            return None
        boxes = self.boxes_of(index)
        if self.boxes_from_masks and mask is not None:
            boxes, mask = mask
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        if encoded is None:
            image, boxes, mask = self.transform(image, boxes, mask, generator=generator)
        else:  # the same draws and box/mask arithmetic; the image waits for the device
            params = self.transform.draw(generator)
            boxes = self.transform.apply_boxes(boxes, encoded[1], params)
            mask = self.transform.apply_mask(mask, params)
        item = {
            "image": image,
            "label": int(self.labels[index]),
            "boxes": boxes,
            "image_id": self._ids[index].decode("utf-8"),
            "index": index,
        }
        if encoded is not None:
            item["encoded"], item["params"] = encoded[0], params
            item["train"] = isinstance(self.transform, TrainTransform)
        if mask is not None:
            item["mask"] = mask
        if self.ignore_files is not None:
            ignore = self.ignore_files[index]
            size = tuple(self.transform.output_size if image is None else image.shape[-2:])
            item["ignore"] = (torch.zeros(size, dtype=torch.uint8) if ignore is None
                              else resize_mask(read_mask(Path(ignore)), size))
        return item

    def _mask(self, index: int):
        """The mask; with ``boxes_from_masks`` the pair (boxes of the instances, mask)."""
        entry = self.mask_files[index]
        if isinstance(entry, (str, Path)):
            return read_mask(Path(entry))
        masks = [read_mask(Path(p)) for p in entry]
        union = torch.stack(masks).amax(0) if masks else None
        if not self.boxes_from_masks:
            return union
        return instance_boxes(masks), union


def instance_boxes(masks: Sequence[Tensor]) -> Tensor:
    """(K, 4) tight boxes ``(x0, y0, x1 + 1, y1 + 1)`` of the instance masks (> 127) that are
    not empty; ``[[0, 0, 0, 0]]`` when all are."""
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask > 127, as_tuple=True)
        if len(xs):
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes or [[0, 0, 0, 0]], dtype=torch.float32)


_WARNED: set[str] = set()


def _warn_once(path: str, error: str) -> None:
    if path not in _WARNED:
        _WARNED.add(path)
        log.warning("data.on_bad_image=skip: skipping %s (%s)", path, error)


def collate(items: list[dict | None]) -> dict:
    """Stack items; pad boxes with zeros to the largest count and record ``num_boxes``.

    None items (images skipped by ``data.on_bad_image=skip``) are left out."""
    items = [item for item in items if item is not None]
    if not items:
        raise DatasetError(
            "Every image of a batch was unreadable and skipped (data.on_bad_image=skip); the "
            "warnings above name them. Replace the files or run python -m camexp.check_data."
        )
    max_boxes = max(len(item["boxes"]) for item in items)
    boxes = torch.zeros(len(items), max_boxes, 4)
    for row, item in enumerate(items):
        boxes[row, : len(item["boxes"])] = item["boxes"]
    batch = {
        "image": _stack_images(items),
        "label": torch.tensor([item["label"] for item in items]),
        "boxes": boxes,
        "num_boxes": torch.tensor([len(item["boxes"]) for item in items]),
        "image_id": [item["image_id"] for item in items],
        "index": torch.tensor([item["index"] for item in items]),
    }
    if "mask" in items[0]:
        batch["mask"] = torch.stack([item["mask"] for item in items])
    if "ignore" in items[0]:
        batch["ignore"] = torch.stack([item["ignore"] for item in items])
    if any("encoded" in item for item in items):
        batch["decode"] = _decode_entry(items)
    return batch


def _stack_images(items: list[dict]) -> Tensor | None:
    """The images, or None when some wait for the device (``batch["decode"]`` holds them)."""
    if any(item["image"] is None for item in items):
        return None
    return torch.stack([item["image"] for item in items])


def _decode_entry(items: list[dict]) -> dict:
    """What :func:`camexp.data.device_decode.decode_batch` needs: the encoded bytes (None for
    rows decoded in the worker), their (top, left, flip), and the worker-decoded images."""
    cpu_rows = [row for row, item in enumerate(items) if item["image"] is not None]
    return {
        "train": any(item.get("train", False) for item in items),
        "encoded": [item.get("encoded") for item in items],
        "params": torch.tensor([item.get("params", (0, 0, False)) for item in items],
                               dtype=torch.int64),
        "cpu_rows": torch.tensor(cpu_rows, dtype=torch.int64),
        "cpu_images": (torch.stack([items[row]["image"] for row in cpu_rows]) if cpu_rows
                       else torch.zeros(0, dtype=torch.uint8)),
    }
