"""Non-local Combinational CAM (Yang et al., WACV 2020): a VGG16 with LeakyReLU and non-local
blocks, whose map combines the maps of *all* classes, weighted by the rank of their predicted
score (docs/methods.md, "NL-CCAM").

- The network: every ReLU of the trunk becomes a LeakyReLU of slope 0.2; a non-local block
  follows pool2, pool3, pool4 and conv5_3 (camexp's tiny net: pool2, pool3 and conv4, the same
  strides as VGG16's first, second and last); no head convolution: GAP (the model's pooling)
  and the linear classifier on conv5_3's features. Cross-entropy.
- A non-local block on x (C channels, n positions): query and key 1x1 convs to C/8 channels, a
  value 1x1 conv to C, attention = softmax over the positions of query . key, y = the
  attention-weighted sum of the values, then a 1x1 conv and a BatchNorm whose weight and bias
  start at 0, added to x: the identity at initialization.
- The combinational map: the classes sorted by predicted score; rank r of the first ``p``
  weighted by ``linspace(1, 0, p)[r]^2``, the other ``C - p`` ranks by
  ``-linspace(0, -1, C - p)[r - p]^2``; the map is the weighted sum of all the class activation
  maps, the same map for every class asked. ``p`` = ``positive_ranks`` (100, the framework's
  code) when there are at least that many classes; with fewer, ``ceil(C / 2)``: half of them,
  as the 100 of CUB's 200 (camexp's choice, the paper does not say).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from camexp.core.values import check_positive
from camexp.methods.base import Method, apply_after, replace_layer

# after which points the non-local blocks go, per backbone family
NLCCAM_POINTS = {
    "vgg": ("pool2", "pool3", "pool4", "stage5"),
    "tiny": ("pool2", "pool3", "stage4"),
}
LEAKY_SLOPE = 0.2


class NonLocalBlock(nn.Module):
    """``x + BN(W_out(y))``, ``y_i = sum_j softmax_j(q_i . k_j) v_j``; BN starts at 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, kernel_size=1)
        self.key = nn.Conv2d(channels, inner, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.out = nn.Conv2d(channels, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        query = self.query(x).flatten(2)  # (B, C/8, n)
        key = self.key(x).flatten(2)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (B, n, n): row i over j
        mixed = self.value(x).flatten(2) @ attention.transpose(1, 2)  # (B, C, n)
        return x + self.norm(self.out(mixed.view(batch, channels, height, width)))


def split_rank(num_classes: int, positive_ranks: int) -> int:
    """How many of the best-ranked classes get a positive weight (see the module docstring)."""
    return positive_ranks if num_classes >= positive_ranks else math.ceil(num_classes / 2)


def rank_weights(num_classes: int, positive: int) -> Tensor:
    """The weight of each rank (best first): ``linspace(1, 0, positive)^2`` then
    ``-linspace(0, -1, num_classes - positive)^2``."""
    top = torch.linspace(1.0, 0.0, positive) ** 2
    rest = -(torch.linspace(0.0, -1.0, num_classes - positive) ** 2)
    return torch.cat([top, rest])


def class_weights(logits: Tensor, positive_ranks: int) -> Tensor:
    """(B, C) weight of each class: the weight of its rank by predicted score (ties keep the
    class order)."""
    num_classes = logits.shape[1]
    ranks = rank_weights(num_classes, split_rank(num_classes, positive_ranks)).to(logits)
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices
    return torch.zeros_like(logits).scatter(1, order, ranks.expand_as(logits))


class NLCCAM(Method):
    """Args:
    positive_ranks: the best-ranked classes weighted positively in the combinational map (100;
        with fewer classes, half of them).
    """

    name = "nlccam"
    placements = NLCCAM_POINTS

    def __init__(self, positive_ranks: int = 100) -> None:
        super().__init__()
        self.positive_ranks = self.checked(check_positive, "positive_ranks", positive_ranks)

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]:
        return 0, width

    def edit(self, net) -> None:
        self.placement(net.arch)
        relus = [name for name, module in net.trunk.named_modules() if isinstance(module, nn.ReLU)]
        for name in relus:
            inplace = net.trunk.get_submodule(name).inplace
            replace_layer(net, f"trunk.{name}", nn.LeakyReLU(LEAKY_SLOPE, inplace=inplace))

    def branches(self, net) -> nn.Module:
        blocks = nn.ModuleDict()
        for index, name in enumerate(self.placement(net.arch), start=1):
            point = self.point(net, name)
            blocks[f"nonlocal{index}"] = NonLocalBlock(point.channels)
            apply_after(net, point.path, blocks[f"nonlocal{index}"])
        return blocks

    def maps(self, net, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        logits, features = outputs["logits"], outputs["features"]
        every = torch.arange(logits.shape[1], device=logits.device).expand_as(logits)
        weights = class_weights(logits, self.positive_ranks)
        combined = torch.einsum("bc,bchw->bhw", weights, net.cams(features, every))
        return combined[:, None].expand(-1, classes.shape[1], -1, -1)
