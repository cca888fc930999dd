"""Hide-and-Seek (Singh & Lee, ICCV 2017): hide random patches of every training image so the
network must find more than the most discriminative part.

As the field's benchmark runs it (docs/methods.md, "HaS"): on the normalized batch after
augmentation, the image is cut into square patches of side ``grid_size`` *pixels* (patches at
the right and bottom edges are truncated); each patch of each image is hidden independently
with probability ``drop_rate``, set to 0 on every channel (in normalized space that is the
ImageNet mean colour, the paper's "dataset mean" fill). Loss and inference are CAM's; nothing
is hidden at evaluation. ``grid_size=0`` disables hiding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from camexp.core.values import check_count, check_fraction
from camexp.methods.base import Method


def hide_patches(images: Tensor, grid_size: int, drop_rate: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Hide patches of ``images`` (B, C, H, W).

    Returns the images with hidden pixels set to 0 and the hidden-pixel mask (B, H, W) bool.
    One draw per patch and image: patch (i, j) of image b is hidden when ``U[0,1) < drop_rate``.
    """
    batch, _, height, width = images.shape
    rows, cols = math.ceil(height / grid_size), math.ceil(width / grid_size)
    hidden = torch.from_numpy(rng.random((batch, rows, cols)) < drop_rate)
    mask = hidden.repeat_interleave(grid_size, 1).repeat_interleave(grid_size, 2)[:, :height, :width]
    mask = mask.to(images.device)
    return images.masked_fill(mask[:, None], 0.0), mask


class HideAndSeek(Method):
    """Args:
    grid_size: side of the square patches in pixels (the benchmark's default 4; the paper
        uses 16-56 px at 224); 0 disables hiding.
    drop_rate: probability that a patch is hidden (0.5).
    """

    name = "has"

    def __init__(self, grid_size: int = 4, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.grid_size = self.checked(check_count, "grid_size", grid_size,
                                      describe="the patch side in pixels", note=" (0 disables hiding)")
        self.drop_rate = self.checked(check_fraction, "drop_rate", drop_rate)

    def transform_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.grid_size:
            batch["input"], _ = hide_patches(batch["input"], self.grid_size, self.drop_rate, self.rng)
        return batch
