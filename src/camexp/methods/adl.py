"""Attention-based Dropout Layer (Choe & Shim, CVPR 2019): during training, either hide the
most activated region of a feature map or stress it, so later layers learn from the rest.

As the field's benchmark runs it (docs/methods.md, "ADL"), a layer without parameters inserted at
three places of the network: ``a`` = the channel mean of its input (B, 1, h, w); importance map
``sigmoid(a)``; drop mask ``1[a < threshold * max(a)]`` (maximum per image); once per forward
call of each layer, for the whole batch, the drop mask with probability ``drop_rate``, else the
importance map; output = input x the chosen map. Identity in eval mode, so the map at
inference is CAM's.

Placements (insert after), per backbone family in point names (:mod:`camexp.models.backbones`):
VGG16 pool3, conv4_3's ReLU (``stage4``), conv5_3's ReLU (``stage5``); ResNet50 layer3
block 0 (``stage4.first``), layer4 block 0, layer4's last block; InceptionV3 Mixed_5d
(``stage3``), Mixed_6e (``stage4``), the head's last conv (before the classifier). camexp adds
ResNet18 (as ResNet50) and the tiny CPU net (after pool2, conv3's ReLU, conv4's ReLU). The
field's Inception ADL head has no dropout; camexp's Inception head has none for any method.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camexp.core.values import check_fraction
from camexp.methods.base import Method, insert_after

# after which points the three layers go, per backbone family
ADL_POINTS = {
    "vgg": ("pool3", "stage4", "stage5"),
    "resnet": ("stage4.first", "stage5.first", "stage5.last"),
    "inception": ("stage3", "stage4", "head.last"),
    "tiny": ("pool2", "stage3", "stage4"),
}


def adl_maps(features: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """The importance map ``sigmoid(a)`` and the drop mask ``1[a < threshold * max(a)]``, both
    (B, 1, h, w), of ``features`` (B, C, h, w), with ``a`` its channel mean."""
    attention = features.mean(dim=1, keepdim=True)
    importance = torch.sigmoid(attention)
    peak = attention.amax(dim=(2, 3), keepdim=True)
    drop = (attention < threshold * peak).to(features.dtype)
    return importance, drop


class ADLLayer(nn.Module):
    """One attention-based dropout layer; draws its choice from its method's generator."""

    def __init__(self, method: ADL) -> None:
        super().__init__()
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        importance, drop = adl_maps(x, self.method.threshold)
        use_drop = self.method.rng.random() < self.method.drop_rate
        return x * (drop if use_drop else importance)

    def extra_repr(self) -> str:
        return f"drop_rate={self.method.drop_rate}, threshold={self.method.threshold}"


class ADL(Method):
    """Args:
    drop_rate: probability of using the drop mask rather than the importance map (0.75).
    threshold: gamma, the fraction of the maximum attention above which pixels are dropped (0.9).
    """

    name = "adl"
    placements = ADL_POINTS

    def __init__(self, drop_rate: float = 0.75, threshold: float = 0.9) -> None:
        super().__init__()
        self.drop_rate = self.checked(check_fraction, "drop_rate", drop_rate)
        self.threshold = self.checked(check_fraction, "threshold", threshold)

    def edit(self, net) -> None:
        for index, name in enumerate(self.placement(net.arch), start=1):
            insert_after(net, self.point(net, name).path, f"adl{index}", ADLLayer(self))
