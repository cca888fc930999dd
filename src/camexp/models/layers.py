"""The layers a CAM network adds to a trunk: the head's convolutions and the global pooling.

A pooling (``model.pool``) is one small class of :data:`POOLINGS`: it turns the head's features
and the linear classifier into class scores, and defines the class activation map of each
class (docs/protocol.md, "Poolings"):

- ``gap``: ``s_c = w_c . mean(f) + b_c`` (the CAM paper's); map ``M_c = w_c . f``.
- ``gmp``: ``s_c = w_c . max(f) + b_c`` (Oquab et al.'s max over each feature map, then the
  linear layer, as the CAM paper compares it); map ``M_c = w_c . f``.
- ``lse``: the classifier at every position gives the score map ``x_c = w_c . f + b_c``;
  ``s_c = m + (1/r) log(mean(exp(r (x_c - m))))``, ``m`` its maximum (log-sum-exp: GAP as
  ``r -> 0``, GMP of the score map as ``r -> inf``); map ``M_c = w_c . f``.
- ``wildcat``: the classifier gives ``maps`` score maps per class (its output is laid out class
  by class, ``c * maps + j``), averaged per class into ``x_c``; ``s_c`` = the mean of the
  ``k_max`` highest positions of ``x_c``, and with ``k_min > 0`` and ``alpha != 0`` plus
  ``alpha`` x the mean of the ``k_min`` lowest, the sum halved (Durand et al., CVPR 2017); a
  ``k`` below 1 is a fraction of the positions, rounded; map ``M_c`` = the mean of the class's
  maps without bias.

Every pooling's map has GAP's shape and class order, ``(B, K, h, w)`` for ``K`` asked classes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.values import check_nonnegative, check_number, check_positive

Pool = Literal["gap", "gmp", "lse", "wildcat"]


def score_maps(features: Tensor, classifier: nn.Linear) -> Tensor:
    """The linear classifier at every position: ``(B, C, h, w)`` features -> ``(B, N, h, w)``
    score maps, bias included (``N`` = the classifier's outputs)."""
    return F.conv2d(features, classifier.weight[:, :, None, None], classifier.bias)


class GlobalPool(nn.Module):
    """A global pooling of the CAM head (see the module docstring); subclasses set ``name``.

    ``forward(features, classifier)`` gives the logits ``(B, num_classes)``;
    :meth:`reduce` pools score maps that are already per class (one per output of the
    classifier); :meth:`class_maps` gives the classes' activation maps. No parameters: the
    classifier stays the network's ``classifier`` (its state-dict key never moves).
    """

    name: ClassVar[str] = ""
    # score maps per class in the classifier's output (WILDCAT's M)
    maps_per_class: int = 1

    @classmethod
    def from_settings(cls, settings: dict[str, Any], error: type[Exception]) -> GlobalPool:
        """The pooling from the ``model.pool_*`` settings it takes (none by default)."""
        return cls()

    def forward(self, features: Tensor, classifier: nn.Linear) -> Tensor:
        return self.reduce(score_maps(features, classifier))

    def reduce(self, maps: Tensor) -> Tensor:
        """``(B, num_classes * maps_per_class, h, w)`` score maps -> ``(B, num_classes)``."""
        raise NotImplementedError

    def per_class(self, maps: Tensor) -> Tensor:
        """``(B, num_classes * maps_per_class, h, w)`` -> ``(B, num_classes, h, w)``: each
        class's map from its score maps (one per class: themselves)."""
        return maps

    def class_weights(self, classifier: nn.Linear) -> Tensor:
        """``(num_classes, C)``: the weights whose product with the features is each class's
        map."""
        return classifier.weight

    def class_maps(self, features: Tensor, classifier: nn.Linear, classes: Tensor) -> Tensor:
        """Maps ``(B, K, h, w)`` of ``classes`` ``(B, K)`` from features ``(B, C, h, w)``."""
        weights = self.class_weights(classifier)[classes]  # (B, K, C)
        return torch.einsum("bkc,bchw->bkhw", weights, features)

    def extra_repr(self) -> str:
        return self.name


class AveragePool(GlobalPool):
    """GAP: the mean of each feature map, then the classifier (``S_c = mean(M_c) + b_c``)."""

    name = "gap"

    def forward(self, features: Tensor, classifier: nn.Linear) -> Tensor:
        return classifier(features.mean(dim=(2, 3)))

    def reduce(self, maps: Tensor) -> Tensor:
        return maps.mean(dim=(2, 3))


class MaxPool(GlobalPool):
    """GMP: the maximum of each feature map, then the classifier."""

    name = "gmp"

    def forward(self, features: Tensor, classifier: nn.Linear) -> Tensor:
        return classifier(features.amax(dim=(2, 3)))

    def reduce(self, maps: Tensor) -> Tensor:
        return maps.amax(dim=(2, 3))


class LogSumExpPool(GlobalPool):
    """LSE of each class's score map with sharpness ``r``, computed from the maximum (no
    overflow for large ``r``) with ``log1p``/``expm1`` (no cancellation for small ``r``)."""

    name = "lse"

    def __init__(self, r: float = 10.0) -> None:
        super().__init__()
        self.r = float(r)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], error: type[Exception]) -> GlobalPool:
        return cls(r=check_number("model.pool_r", settings["pool_r"], error, above=0))

    def reduce(self, maps: Tensor) -> Tensor:
        flat = maps.flatten(2).float()  # bf16 under mixed precision: too coarse for expm1/log1p
        peak = flat.amax(dim=2, keepdim=True)
        # log(mean(exp(u))) as log1p(mean(expm1(u))): exact to float precision as r -> 0 too
        mean_exp = torch.expm1(self.r * (flat - peak)).mean(dim=2)
        return peak[..., 0] + torch.log1p(mean_exp) / self.r

    def extra_repr(self) -> str:
        return f"lse, r={self.r}"


def positions(k: float, n: int) -> int:
    """WILDCAT's count of positions for ``k`` among ``n``: ``round(k * n)`` for ``0 < k < 1``
    (Python's rounding, as the original), ``int(k)`` capped at ``n`` otherwise, 0 for ``k <= 0``."""
    if k <= 0:
        return 0
    if k < 1:
        return round(k * n)
    return min(int(k), n)


class WildcatPool(GlobalPool):
    """WILDCAT: ``maps`` score maps per class averaged per class, then the top ``k_max`` and
    bottom ``k_min`` positions (see the module docstring)."""

    name = "wildcat"

    def __init__(self, maps: int = 8, k_max: float = 0.2, k_min: float = 0.2,
                 alpha: float = 0.7) -> None:
        super().__init__()
        self.maps_per_class = int(maps)
        self.k_max, self.k_min, self.alpha = float(k_max), float(k_min), float(alpha)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], error: type[Exception]) -> GlobalPool:
        note = " (below 1: a fraction of the positions)"
        return cls(
            maps=check_positive("model.pool_maps", settings["pool_maps"], error),
            k_max=check_number("model.pool_k_max", settings["pool_k_max"], error, above=0, note=note),
            k_min=check_nonnegative("model.pool_k_min", settings["pool_k_min"], error, note=note),
            alpha=check_number("model.pool_alpha", settings["pool_alpha"], error),
        )

    def per_class(self, maps: Tensor) -> Tensor:
        """``(B, N * maps, h, w)`` -> ``(B, N, h, w)``: the mean of each class's maps."""
        batch, channels, height, width = maps.shape
        return maps.view(batch, channels // self.maps_per_class, self.maps_per_class,
                         height, width).mean(dim=2)

    def reduce(self, maps: Tensor) -> Tensor:
        flat = self.per_class(maps).flatten(2)
        n = flat.shape[2]
        top, bottom = positions(self.k_max, n), positions(self.k_min, n)
        ordered = flat.sort(dim=2, descending=True).values
        score = ordered[..., :top].mean(dim=2)
        if bottom > 0 and self.alpha != 0:
            score = (score + self.alpha * ordered[..., n - bottom:].mean(dim=2)) / 2
        return score

    def class_weights(self, classifier: nn.Linear) -> Tensor:
        weight = classifier.weight
        return weight.view(-1, self.maps_per_class, weight.shape[1]).mean(dim=1)

    def extra_repr(self) -> str:
        return (f"wildcat, maps={self.maps_per_class}, k_max={self.k_max}, k_min={self.k_min}, "
                f"alpha={self.alpha}")


# model.pool -> its pooling class
POOLINGS: dict[str, type[GlobalPool]] = {
    cls.name: cls for cls in (AveragePool, MaxPool, LogSumExpPool, WildcatPool)
}
POOLS = tuple(POOLINGS)
# the model.pool_* settings and their defaults (conf/model/_cam_base.yaml states the same)
POOL_SETTINGS: dict[str, Any] = {"pool_r": 10.0, "pool_maps": 8, "pool_k_max": 0.2,
                                 "pool_k_min": 0.2, "pool_alpha": 0.7}


def make_pool(kind: str, error: type[Exception] = ValueError, **settings: Any) -> GlobalPool:
    """The pooling ``model.pool=kind`` built from its ``model.pool_*`` settings (the others are
    ignored, missing ones take :data:`POOL_SETTINGS`' defaults), each checked: a bad value
    raises ``error`` naming its key."""
    if kind not in POOLINGS:
        raise error(f"model.pool={kind!r} is not allowed; use one of {sorted(POOLS)}.")
    values = {**POOL_SETTINGS, **{k: v for k, v in settings.items() if v is not None}}
    return POOLINGS[kind].from_settings(values, error)


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
