"""Image + box transforms of the WSOL field, on uint8 tensors.

Box convention everywhere in camexp: ``(x0, y0, x1, y1)`` float pixel coordinates of the
image they belong to, as the field's metadata writes them (CUB's ``x y w h`` becomes
``x, y, x + w, y + h``); IoU counts pixels inclusively (PAPER.md section 2).

- Evaluation (:class:`EvalTransform`): the image is resized to ``size`` directly (no
  aspect-preserving crop) and boxes are scaled by ``size / original`` and floored, exactly as
  the field's evaluation does.
- Training (:class:`TrainTransform`): resize to ``resize`` (square), random crop ``crop``,
  random horizontal flip; boxes follow (scaled, shifted, clipped to the crop, mirrored).

Images stay uint8 (B, 3, H, W) until they reach the device, where the LightningModule
normalizes them: a quarter of the bytes to copy, and the pictures get the original pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(3, h, w) uint8 -> (3, H, W) uint8, bilinear with antialiasing (as PIL's resize)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                            align_corners=False)
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(h, w) uint8 mask -> (H, W) uint8, nearest neighbour so labels stay labels."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[None, None], size=size, mode="nearest-exact")[0, 0]


def scale_boxes(boxes: Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int], floor: bool) -> Tensor:
    """(K, 4) boxes from an image of size ``from_hw`` to one of ``to_hw``.

    ``floor=True`` floors the scaled coordinates to integers, as the field's evaluation does.
    """
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    scaled = boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype)
    return scaled.floor() if floor else scaled


def normalize_images(images: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 -> float, scaled to [0, 1] then ImageNet mean/std normalized."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class EvalTransform:
    """Resize to ``size`` (H, W) directly; boxes scaled and floored (the field's protocol)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, image: Tensor, boxes: Tensor, mask: Tensor | None = None, generator=None):
        original = tuple(image.shape[-2:])
        boxes = scale_boxes(boxes, original, self.size, floor=True)
        mask = None if mask is None else resize_mask(mask, self.size)
        return resize_image(image, self.size), boxes, mask


class TrainTransform:
    """Resize to ``resize`` (H, W), random ``crop`` x ``crop`` window, random horizontal flip.

    Boxes are scaled (not floored), shifted into the crop, clipped to ``[0, crop - 1]`` and
    mirrored with the inclusive-pixel convention (``x -> crop - 1 - x``).
    """

    def __init__(self, resize: tuple[int, int], crop: int, flip: bool = True) -> None:
        self.resize = (int(resize[0]), int(resize[1]))
        self.crop = int(crop)
        self.flip = flip
        if self.crop > min(self.resize):
            raise ValueError(
                f"data.crop_size={crop} is larger than data.resize_size={list(resize)}; "
                "the crop must fit inside the resized image."
            )

    def __call__(
        self, image: Tensor, boxes: Tensor, mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ):
        """``generator`` draws the crop and the flip (the global RNG when None)."""
        original = tuple(image.shape[-2:])
        image = resize_image(image, self.resize)
        boxes = scale_boxes(boxes, original, self.resize, floor=False)
        mask = None if mask is None else resize_mask(mask, self.resize)

        top = int(torch.randint(0, self.resize[0] - self.crop + 1, (), generator=generator))
        left = int(torch.randint(0, self.resize[1] - self.crop + 1, (), generator=generator))
        image = image[:, top : top + self.crop, left : left + self.crop]
        mask = None if mask is None else mask[top : top + self.crop, left : left + self.crop]
        boxes = (boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)).clamp_(0, self.crop - 1)

        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image = image.flip(-1)
            mask = None if mask is None else mask.flip(-1)
            boxes = torch.stack([self.crop - 1 - boxes[:, 2], boxes[:, 1],
                                 self.crop - 1 - boxes[:, 0], boxes[:, 3]], dim=1)
        return image.contiguous(), boxes, mask

