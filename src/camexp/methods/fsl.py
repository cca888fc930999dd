"""The few-shot-learning (FSL) baseline of the field (Choe et al., CVPR 2020; docs/methods.md):
a localizer trained with full supervision on the small fully-annotated split only, to show
how far a few boxes or masks go against weak supervision on the whole training set.

Its code was never released; this is **camexp's reading** of it (docs/methods.md): the same
backbone and head with a 1x1 convolution to one foreground channel, trained with per-pixel
binary cross-entropy against the filled ground-truth boxes (``target=boxes``, CUB and
ImageNet) or the masks (``target=masks``) of the val split (``data.train_on=val``: the val
split minus a seeded ``data.holdout_fraction`` trains, the held-out part validates and drives
its hyper-parameter search), then scored on test by the same metrics. The map is the
foreground logit map, the same for every class. The classifier is not trained (the
baseline localizes only), so its classification and top-1/top-5 numbers mean nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.errors import MethodError
from camexp.core.values import check_choice
from camexp.methods.base import Method

TARGETS = ("boxes", "masks")


def filled_boxes(boxes: Tensor, num_boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 1, H, W) float mask, 1 inside any of each image's boxes (B, K, 4) ``x0, y0, x1, y1``
    in pixels (inclusive corners, the protocol's convention), 0 elsewhere."""
    height, width = size
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[None, None, :, None]
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None, None, None, :]
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))  # (B, K, 1, 1)
    inside = (xs >= x0.floor()) & (xs <= x1.ceil()) & (ys >= y0.floor()) & (ys <= y1.ceil())
    valid = torch.arange(boxes.shape[1], device=boxes.device)[None, :] < num_boxes[:, None]
    inside = inside & valid[:, :, None, None]
    return inside.any(dim=1, keepdim=True).to(torch.float32)


class FSL(Method):
    """Args:
    target: ``boxes`` (filled ground-truth boxes) or ``masks`` (the batch's ``mask``, > 127).
    """

    name = "fsl"
    # the classifier is never trained: its chance accuracy says nothing about the maps, and the
    # per-pixel BCE has no fixed value at "learnt nothing" (it depends on the foreground share)
    trains_classifier = False

    def __init__(self, target: str = "boxes") -> None:
        super().__init__()
        self.target = self.checked(check_choice, "target", target, allowed=TARGETS)

    def branches(self, net) -> nn.Module:
        foreground = nn.Conv2d(net.classifier.in_features, 1, kernel_size=1)
        nn.init.normal_(foreground.weight, 0.0, 0.01)
        nn.init.zeros_(foreground.bias)
        return nn.ModuleDict({"foreground": foreground})

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        features = net.features(images)
        foreground = net.method_layers["foreground"](features)
        return {"logits": net.classify(features.detach()), "features": features, "foreground": foreground}

    def loss(self, net, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        size = tuple(batch["input"].shape[-2:])
        logits = F.interpolate(outputs["foreground"], size=size, mode="bilinear", align_corners=False)
        if self.target == "boxes":
            target = filled_boxes(batch["boxes"], batch["num_boxes"], size)
        elif "mask" in batch:
            target = (batch["mask"][:, None] > 127).to(logits.dtype)
        else:
            raise MethodError(
                "method=fsl method.target=masks, but the training batches carry no masks: set "
                "data.load_masks=true on a dataset with one mask per image (CUB's "
                "segmentations), or use method.target=boxes."
            )
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))

    def maps(self, net, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        return outputs["foreground"].expand(-1, classes.shape[1], -1, -1)
