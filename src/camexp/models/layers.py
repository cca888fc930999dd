"""The layers a CAM network adds to a trunk: the head's convolutions and the global pooling."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import Tensor, nn

Pool = Literal["gap", "gmp"]


POOLS = ("gap", "gmp")


class GlobalPool(nn.Module):
    """Global average (GAP) or max (GMP) pooling over the spatial axes: (B, C, h, w) -> (B, C)."""

    def __init__(self, kind: Pool) -> None:
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"model.pool={kind!r} is not a pooling; use one of {POOLS}.")
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3)) if self.kind == "gap" else x.amax(dim=(2, 3))

    def extra_repr(self) -> str:
        return self.kind


def head_convs(in_channels: int, num_convs: int, width: int) -> nn.Sequential:
    """The layers added on top of the trunk: ``num_convs`` x (conv 3x3, stride 1, pad 1, ReLU)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index in range(num_convs):
        conv = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers[f"conv{index + 1}"] = conv
        layers[f"relu{index + 1}"] = nn.ReLU(inplace=True)
        in_channels = width
    return nn.Sequential(layers)
