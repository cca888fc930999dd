"""CutMix (Yun et al., ICCV 2019): paste a box of another training image into each image and
weight the two labels by the areas.

As the field's benchmark runs it (docs/methods.md, "CutMix"), per batch, only when ``beta > 0``
and ``prob > U[0,1)``: draw ``lam ~ Beta(beta, beta)`` and a random permutation ``pi`` of the
batch; ``r = sqrt(1 - lam)``, box sides ``cut_h = floor(H r)``, ``cut_w = floor(W r)``; a
centre uniform over the integer pixels; edges ``centre +- floor(cut / 2)`` clipped to the
image; the same box pasted into every image ``i`` from image ``pi(i)``; ``lam' = 1 - box area
/ (H W)``; loss ``lam' CE(logits, y) + (1 - lam') CE(logits, y_pi)``. Inference is CAM's.

torchvision's ``transforms.v2.CutMix`` computes the same box and ``lam'`` from the same
``lam`` and centre (``tests/methods/test_cutmix.py`` checks it), but pastes from
``batch.roll(1)`` rather than a random permutation and draws from torch's global generator;
camexp keeps the benchmark's permutation and its own seeded draws (repeatable, resumable).
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from camexp.core.values import check_fraction, check_nonnegative
from camexp.methods.base import Method


def cutmix_box(lam: float, center_y: int, center_x: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The pasted box ``(y0, y1, x0, x1)`` (end-exclusive slices) for ``lam`` and a centre."""
    ratio = math.sqrt(1.0 - lam)
    half_h, half_w = int(height * ratio) // 2, int(width * ratio) // 2
    y0, y1 = max(center_y - half_h, 0), min(center_y + half_h, height)
    x0, x1 = max(center_x - half_w, 0), min(center_x + half_w, width)
    return y0, y1, x0, x1


def paste_box(images: Tensor, order: Tensor, box: tuple[int, int, int, int]) -> tuple[Tensor, float]:
    """Images (B, C, H, W) with ``box`` taken from ``images[order]``; and ``lam'``, the share of
    each image that is still its own."""
    y0, y1, x0, x1 = box
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[order][:, :, y0:y1, x0:x1]
    height, width = images.shape[-2:]
    return mixed, 1.0 - (y1 - y0) * (x1 - x0) / (height * width)


class CutMix(Method):
    """Args:
    beta: the Beta distribution's parameter (1.0: lam uniform); 0 disables CutMix.
    prob: probability that a batch is mixed (1.0).
    """

    name = "cutmix"

    def __init__(self, beta: float = 1.0, prob: float = 1.0) -> None:
        super().__init__()
        self.beta = self.checked(check_nonnegative, "beta", beta,
                                 note=" (the Beta(beta, beta) parameter; 0 disables CutMix)")
        self.prob = self.checked(check_fraction, "prob", prob)

    def transform_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.beta <= 0 or not self.prob > self.rng.random():
            return batch
        images = batch["input"]
        height, width = images.shape[-2:]
        lam = float(self.rng.beta(self.beta, self.beta))
        order = self.rng.permutation(len(images))
        center_y, center_x = int(self.rng.integers(height)), int(self.rng.integers(width))
        box = cutmix_box(lam, center_y, center_x, height, width)
        batch["input"], batch["mix_weight"] = paste_box(images, order, box)
        batch["mix_label"] = batch["label"][order]
        return batch

    def chance_loss(self, num_classes: int) -> float:
        """The area-weighted mean of two cross-entropies, ln(C) at chance as CAM's."""
        return math.log(num_classes)

    def loss(self, net, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        logits = outputs["logits"]
        if "mix_label" not in batch:
            return F.cross_entropy(logits, batch["label"])
        weight = batch["mix_weight"]
        return weight * F.cross_entropy(logits, batch["label"]) + (1.0 - weight) * F.cross_entropy(
            logits, batch["mix_label"]
        )
