"""A map-style dataset of images with labels, boxes (and optional masks), and its collate.

Each item is a dict:
``image`` (3, H, W) uint8, ``label`` int (0-based), ``boxes`` (K, 4) float32 in the
transformed image's pixels (``x0, y0, x1, y1``, see :mod:`camexp.data.transforms`),
``image_id`` str (the path relative to the images folder), and ``mask`` (H, W) uint8 when
masks are loaded. :func:`collate` pads boxes to the batch's largest K and adds ``num_boxes``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from camexp.data.cub import DatasetError
from camexp.data.samplers import sample_seed

# torchvision 0.29 announces a move of its decoders to torchcodec; they remain the fastest
# decoders in our stack, and the warning would repeat in every worker.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def read_image(path: Path) -> Tensor:
    """Decode a JPEG/PNG file to (3, H, W) uint8 RGB with torchvision's native decoders."""
    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as error:
        raise DatasetError(
            f"Cannot read image {path}: {error}. Replace the file with an intact copy."
        ) from error


def read_mask(path: Path) -> Tensor:
    """Decode a mask PNG to (H, W) uint8 (CUB's segmentations are 8-bit grayscale)."""
    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.GRAY)[0]
    except (RuntimeError, OSError) as error:
        raise DatasetError(
            f"Cannot read mask {path}: {error}. Replace it, or set data.load_masks=false."
        ) from error


class WSOLDataset(Dataset):
    """Images listed by file with their label and boxes; the transform sees image, boxes, mask."""

    def __init__(
        self,
        image_files: Sequence[Path],
        image_ids: Sequence[str],
        labels: np.ndarray,
        boxes: Sequence[np.ndarray],
        transform: Callable,
        mask_files: Sequence[Path] | None = None,
        seed: int = 0,
    ) -> None:
        self.image_files = list(image_files)
        self.image_ids = list(image_ids)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.boxes = [torch.as_tensor(b, dtype=torch.float32) for b in boxes]
        self.transform = transform
        self.mask_files = None if mask_files is None else list(mask_files)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.image_files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key`` is an index, or ``(epoch, index)`` from the training sampler: random
        augmentation is then seeded from ``(seed, epoch, index)`` and nothing else."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = read_image(self.image_files[index])
        mask = None if self.mask_files is None else read_mask(self.mask_files[index])
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, index))
        image, boxes, mask = self.transform(image, self.boxes[index], mask, generator=generator)
        item = {
            "image": image,
            "label": int(self.labels[index]),
            "boxes": boxes,
            "image_id": self.image_ids[index],
            "index": index,
        }
        if mask is not None:
            item["mask"] = mask
        return item


def collate(items: list[dict]) -> dict:
    """Stack items; pad boxes with zeros to the largest count and record ``num_boxes``."""
    max_boxes = max(len(item["boxes"]) for item in items)
    boxes = torch.zeros(len(items), max_boxes, 4)
    for row, item in enumerate(items):
        boxes[row, : len(item["boxes"])] = item["boxes"]
    batch = {
        "image": torch.stack([item["image"] for item in items]),
        "label": torch.tensor([item["label"] for item in items]),
        "boxes": boxes,
        "num_boxes": torch.tensor([len(item["boxes"]) for item in items]),
        "image_id": [item["image_id"] for item in items],
        "index": torch.tensor([item["index"] for item in items]),
    }
    if "mask" in items[0]:
        batch["mask"] = torch.stack([item["mask"] for item in items])
    return batch
