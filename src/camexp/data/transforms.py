"""Image + box transforms of the WSOL field, on uint8 tensors.

Box convention everywhere in camexp: ``(x0, y0, x1, y1)`` float pixel coordinates of the
image they belong to, as the field's metadata writes them (CUB's ``x y w h`` becomes
``x, y, x + w, y + h``); IoU counts pixels inclusively (docs/protocol.md).

- Evaluation (:class:`EvalTransform`): the image is resized to ``size`` directly (no
  aspect-preserving crop) and boxes are scaled by ``size / original`` and floored, exactly as
  the field's evaluation does.
- Training (:class:`TrainTransform`): resize to ``resize`` (square), random crop ``crop``,
  random horizontal flip; boxes follow (scaled, shifted, clipped to the crop, mirrored).

Images stay uint8 (B, 3, H, W) until they reach the device, where the LightningModule
normalizes them: a quarter of the bytes to copy, and the pictures get the original pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(3, h, w) uint8 -> (3, H, W) uint8, bilinear with antialiasing (as PIL's resize).

    uint8 images go through torch's native uint8 antialiased kernel (vectorized, no float
    copy): about 5x faster on CPU than converting to float first, within 1 grey level of it.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if image.dtype == torch.uint8 and image.device.type == "cpu":
        return TF.resize(image, list(size), interpolation=TF.InterpolationMode.BILINEAR,
                         antialias=True)
    return resize_image_float(image, size)


def resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(h, w) uint8 mask -> (H, W) uint8, nearest neighbour so labels stay labels.

    torch's ``nearest`` picks the pixels OpenCV's ``INTER_NEAREST`` picks, the field's mask
    resize (and ``camexp.eval_maps``'s), so a run and the offline evaluation of its saved maps
    score the same mask pixels.
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask[None, None], size=size, mode="nearest")[0, 0]


def scale_boxes(boxes: Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Tensor:
    """(K, 4) boxes from an image of size ``from_hw`` to one of ``to_hw``, floored to integers
    with the field's evaluation arithmetic: float64, ``x * W_new / W`` in that order, as
    :func:`camexp.localization.boxes.scale_boxes` does for saved maps (float32
    ``x * (W_new / W)`` lands one pixel lower on some boxes: x = 83 of a 166-px image at 224
    gives 111, not 112).
    """
    new = torch.tensor([to_hw[1], to_hw[0], to_hw[1], to_hw[0]], dtype=torch.float64)
    old = torch.tensor([from_hw[1], from_hw[0], from_hw[1], from_hw[0]], dtype=torch.float64)
    return (boxes.to(torch.float64) * new / old).trunc().to(boxes.dtype)


def normalize_images(images: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 -> float, scaled to [0, 1] then ImageNet mean/std normalized."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def resize_image_float(image: Tensor, size: tuple[int, int]) -> Tensor:
    """(3, h, w) uint8 -> (3, H, W) uint8 through float: bilinear with antialiasing, rounded.

    The device path's resize (``data.decode_device=cuda``; torch has no uint8 antialiased
    kernel on CUDA), on whatever device ``image`` lives: within a grey level of
    :func:`resize_image`'s uint8 kernel.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                            align_corners=False)
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


class EvalTransform:
    """Resize to ``size`` (H, W) directly; boxes scaled and floored (the field's protocol).

    The pieces (:meth:`draw`, :meth:`apply_boxes`, :meth:`apply_mask`, :meth:`apply_image`)
    are what the device-decoding path (:mod:`camexp.data.device_decode`) calls separately:
    boxes and masks in the worker, the image on the GPU after decoding.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    @property
    def output_size(self) -> tuple[int, int]:
        return self.size

    def draw(self, generator=None) -> tuple[int, int, bool]:
        """No random draw: ``(top, left, flip)`` of the identity."""
        return 0, 0, False

    def apply_boxes(self, boxes: Tensor, original_hw: tuple[int, int], params) -> Tensor:
        return scale_boxes(boxes, tuple(original_hw), self.size)

    def apply_mask(self, mask: Tensor | None, params) -> Tensor | None:
        return None if mask is None else resize_mask(mask, self.size)

    def apply_image(self, image: Tensor, params, resize=resize_image) -> Tensor:
        return resize(image, self.size)

    def __call__(self, image: Tensor, boxes: Tensor, mask: Tensor | None = None, generator=None):
        params = self.draw(generator)
        boxes = self.apply_boxes(boxes, tuple(image.shape[-2:]), params)
        return self.apply_image(image, params), boxes, self.apply_mask(mask, params)


class TrainTransform:
    """Resize to ``resize`` (H, W), random ``crop`` x ``crop`` window, random horizontal flip.

    Boxes are scaled (not floored), shifted into the crop, clipped to ``[0, crop - 1]`` and
    mirrored with the inclusive-pixel convention (``x -> crop - 1 - x``). The crop and the
    flip (:meth:`draw`) come from the sample's generator only, so the device-decoding path,
    which draws them in the worker and applies them on the GPU, gets the same ones.
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

    @property
    def output_size(self) -> tuple[int, int]:
        return self.crop, self.crop

    def draw(self, generator: torch.Generator | None = None) -> tuple[int, int, bool]:
        """``(top, left, flip)``: the crop's corner and the flip, from ``generator`` (the
        global RNG when None), in this order."""
        (resized_h, resized_w), crop = self.resize, self.crop
        top = int(torch.randint(0, resized_h - crop + 1, (), generator=generator))
        left = int(torch.randint(0, resized_w - crop + 1, (), generator=generator))
        flip = self.flip and float(torch.rand((), generator=generator)) < 0.5
        return top, left, bool(flip)

    def apply_boxes(self, boxes: Tensor, original_hw: tuple[int, int], params) -> Tensor:
        # box arithmetic on a few numbers: a handful of numpy operations, not a chain of torch ops
        top, left, flip = params
        height, width = original_hw
        (resized_h, resized_w), crop = self.resize, self.crop
        sx, sy = resized_w / width, resized_h / height
        b = boxes.numpy().reshape(-1, 4) * np.array([sx, sy, sx, sy]) - (left, top, left, top)
        b.clip(0, crop - 1, out=b)
        if flip:
            b = b[:, [2, 1, 0, 3]]
            b[:, 0::2] = (crop - 1) - b[:, 0::2]
        return torch.from_numpy(b.astype(np.float32)).to(boxes.dtype)

    def _crop_flip(self, pixels: Tensor, params) -> Tensor:
        top, left, flip = params
        pixels = pixels[..., top : top + self.crop, left : left + self.crop]
        return pixels.flip(-1) if flip else pixels

    def apply_mask(self, mask: Tensor | None, params) -> Tensor | None:
        return None if mask is None else self._crop_flip(resize_mask(mask, self.resize), params)

    def apply_image(self, image: Tensor, params, resize=resize_image) -> Tensor:
        # a view of the resized image: collate's stack copies it once, into the batch
        return self._crop_flip(resize(image, self.resize), params)

    def __call__(
        self, image: Tensor, boxes: Tensor, mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ):
        """``generator`` draws the crop and the flip (the global RNG when None)."""
        params = self.draw(generator)
        boxes = self.apply_boxes(boxes, tuple(image.shape[-2:]), params)
        return self.apply_image(image, params), boxes, self.apply_mask(mask, params)
