"""SAT (Wu et al., ICCV 2023): a spatial-aware token whose attention is the localization map.

The method's edit of the transformer (placed by point names, as ADL's layers are):

- one extra learnable token with its own position embedding (both 1 x 1 x D, truncated normal
  with std 0.02) is appended after the patch tokens where the token sequence enters the first
  block (point ``tokens``): N + 1 tokens, the class token first, the extra token last;
- in the last three blocks (``block-3``, ``block-2``, ``block-1``): m = sigmoid of the head mean
  of the extra token's scaled attention logits (its query row, q k^T / sqrt(d), before the
  softmax; B x (N + 1)); the post-softmax attention of every head and query is multiplied per
  key column by m (no renormalization).

The map M (B, 1, h, w): the mean over those three blocks of m at the patch tokens' columns, one
class-agnostic foreground map. The head and the classification loss are the transformer CAM
network's; two losses are added, weight 1 each:

- batch area: | mean over the batch and the pixels of M - area_threshold |;
- normalization: mean((1 - G*M) (G*M)), G a fixed 3x3 Gaussian (padding 1), which pushes M
  towards 0 or 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.values import check_fraction, check_nonnegative
from camexp.methods.base import Method, module_at
from camexp.models.attention import AttentionTaps


def gaussian_kernel(size: int = 3, sigmas: float = 6.0) -> Tensor:
    """SAT's fixed smoothing kernel (1, 1, size, size): the normal distribution's mass over
    ``size`` equal intervals spanning +-(sigmas + half an interval), outer product, square root,
    normalized to sum 1 (3x3: centre 0.8054, edges 0.0460, corners 0.0026)."""
    interval = (2 * sigmas + 1.0) / size
    edges = torch.linspace(-sigmas - interval / 2, sigmas + interval / 2, size + 1, dtype=torch.float64)
    cdf = torch.tensor([0.5 * (1 + math.erf(float(x) / math.sqrt(2))) for x in edges], dtype=torch.float64)
    mass = cdf[1:] - cdf[:-1]
    kernel = torch.sqrt(torch.outer(mass, mass))
    return (kernel / kernel.sum()).float()[None, None]


def area_loss(foreground: Tensor, threshold: float) -> Tensor:
    """| mean of the maps (B, 1, h, w) over the batch and the pixels - threshold |."""
    return (foreground.mean() - threshold).abs()


def normalization_loss(foreground: Tensor, kernel: Tensor) -> Tensor:
    """mean((1 - G*M) (G*M)) with G*M the maps smoothed by ``kernel`` (padding 1)."""
    smooth = F.conv2d(foreground, kernel.to(foreground), padding=kernel.shape[-1] // 2)
    return ((1 - smooth) * smooth).mean()


def _nothing(weights: Tensor) -> None:
    """SAT keeps its gates, not the gated weights."""
    return None


class SpatialToken(nn.Module):
    """SAT's extra token and its position embedding (its new parameters, no weight decay)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.token, std=0.02)
        nn.init.trunc_normal_(self.position, std=0.02)

    def append(self, tokens: Tensor) -> Tensor:
        """(B, N, D) -> (B, N + 1, D): the token, position embedding added, after the others."""
        extra = (self.token + self.position).expand(len(tokens), -1, -1)
        return torch.cat([tokens, extra.to(tokens.dtype)], dim=1)

    def no_weight_decay(self) -> set[str]:
        return {"token", "position"}


class SAT(Method):
    """Args:
    area_threshold: the batch area loss's target fraction of foreground (0.25 CUB, 0.35 ILSVRC).
    area_weight, normalization_weight: the two losses' weights (1, 1).
    """

    name = "sat"
    # where the token enters and which blocks are gated, per backbone family
    placements = {"vit": {"token": "tokens", "gated": ("block-3", "block-2", "block-1")}}

    def __init__(self, area_threshold: float = 0.25, area_weight: float = 1.0,
                 normalization_weight: float = 1.0) -> None:
        super().__init__()
        self.area_threshold = self.checked(check_fraction, "area_threshold", area_threshold)
        self.area_weight = self.checked(check_nonnegative, "area_weight", area_weight)
        self.normalization_weight = self.checked(check_nonnegative, "normalization_weight",
                                                 normalization_weight)
        self._token: SpatialToken | None = None
        self._gates: AttentionTaps | None = None
        self._last_gates: dict[int, Tensor] = {}  # block index -> m of the last forward pass
        self._layout: tuple[int, tuple[int, int]] = (1, (14, 14))
        self._kernel = gaussian_kernel()

    # -- the network ------------------------------------------------------------------------

    def edit(self, net) -> None:
        placement = self.placement(net.arch)
        entry = self.point(net, placement["token"])
        self._token = SpatialToken(entry.channels)
        module_at(net, entry.path).register_forward_pre_hook(
            lambda _module, inputs: (self._token.append(inputs[0]), *inputs[1:]))
        gated = [module_at(net, self.point(net, f"{block}.attention").path) for block in placement["gated"]]
        self._gates = AttentionTaps(gated, edit=self._gate, always=True, keep=_nothing)
        grid = module_at(net, self.point(net, "output").path)
        self._layout = (grid.prefix, grid.grid)

    def branches(self, net) -> nn.Module:
        return self._token

    def _gate(self, index: int, weights: Tensor, queries: Tensor, keys: Tensor, scale: float) -> Tensor:
        """The gated weights of one block; keeps its m (B, N + 1)."""
        logits = (queries[:, :, -1:] * scale) @ keys.transpose(-2, -1)  # the extra token's row
        gate = torch.sigmoid(logits.mean(dim=1))  # (B, 1, N + 1)
        self._last_gates[index] = gate[:, 0]
        return weights * gate[:, None]

    def foreground(self) -> Tensor:
        """M (B, 1, h, w) of the last forward pass: the mean of the gated blocks' m over the
        patch tokens."""
        prefix, (height, width) = self._layout
        gates = [self._last_gates[index] for index in range(len(self._gates.modules))]
        mean = torch.stack(gates).mean(dim=0)[:, prefix:prefix + height * width]
        return mean.reshape(len(mean), 1, height, width)

    # -- training and maps -------------------------------------------------------------------

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        self._last_gates = {}
        features = net.features(images)
        return {"logits": net.classify(features), "features": features, "foreground": self.foreground()}

    def loss(self, net, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        foreground = outputs["foreground"]
        return (super().loss(net, outputs, batch)
                + self.area_weight * area_loss(foreground, self.area_threshold)
                + self.normalization_weight * normalization_loss(foreground, self._kernel))

    def maps(self, net, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        foreground = outputs["foreground"]
        return foreground.expand(-1, classes.shape[1], -1, -1)
