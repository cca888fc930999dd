"""Adversarial Complementary Learning (Zhang et al., CVPR 2018): two classifiers on the same
features; the second sees them with the first one's most discriminative region erased, so
together they cover more of the object.

As the field's benchmark runs it (docs/methods.md, "ACoL"):

- Feature source: VGG16 with every 2x2 pool as a 3x3 stride-2 pad-1 max-pool, pool5 as a 3x3
  stride-1 pad-1 max-pool, then a 3x3 stride-1 pad-1 average pool (smoothing); ResNet50's
  layer4 output; InceptionV3's Mixed_6e output (camexp adds ResNet18 and the tiny CPU net:
  their trunk outputs).
- Classifiers A and B, identical: 3x3 conv + ReLU, 3x3 conv + ReLU, 1x1 conv to the classes,
  global pooling (A is camexp's head with two convs + the linear classifier, i.e. a 1x1 conv
  then pooling; B is its copy beside the network). The field's width is 1024 (camexp: the
  model's ``head.width``, 1024 for the paper's models).
- Erasing: A's class map of label y (ground truth when known, else A's argmax), detached and
  min-max normalized per image, sets the features to 0 on every channel where it is
  ``>= threshold``; B classifies the erased features.
- Loss ``CE(A) + CE(B)``; predictions are A's.
- Map: the element-wise maximum of A's and B's class maps, each min-max normalized. The
  erasing uses the ground truth at evaluation too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.values import check_fraction
from camexp.methods.base import Method, normalize_maps, replace_layer


@dataclass(frozen=True)
class SmoothedSource:
    """A feature source made of the trunk: its ``pools`` (point names) become 3x3 stride-2
    pad-1 max-pools, then a 3x3 stride-1 max-pool (pool5) and a 3x3 average pool follow it."""

    pools: tuple[str, ...]

    def build(self, method: Method, net) -> None:
        for name in self.pools:
            pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            replace_layer(net, method.point(net, name).path, pool)
        net.trunk.add_module("pool5", nn.MaxPool2d(kernel_size=3, stride=1, padding=1))
        net.trunk.add_module("smooth", nn.AvgPool2d(kernel_size=3, stride=1, padding=1))


# how a trunk of each backbone family becomes ACoL's feature source (None: its output as it is)
ACOL_SOURCES: dict[str, SmoothedSource | None] = {
    "vgg": SmoothedSource(pools=("pool1", "pool2", "pool3", "pool4")),
    "resnet": None,
    "inception": None,
    "tiny": None,
}


def erase(features: Tensor, class_map: Tensor, threshold: float) -> Tensor:
    """Zero ``features`` (B, C, h, w) where the normalized ``class_map`` (B, h, w) is
    ``>= threshold``."""
    keep = normalize_maps(class_map.detach()) < threshold
    return features * keep[:, None].to(features.dtype)


def fuse(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """ACoL's map: the element-wise max of the two classifiers' normalized maps (B, K, h, w)."""
    return torch.maximum(normalize_maps(maps_a), normalize_maps(maps_b))


class ACoL(Method):
    """Args:
    threshold: delta, the normalized map value from which features are erased for B (0.7).
    """

    name = "acol"
    placements = ACOL_SOURCES

    def __init__(self, threshold: float = 0.7) -> None:
        super().__init__()
        self.threshold = self.checked(check_fraction, "threshold", threshold)

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]:
        return 2, width

    def edit(self, net) -> None:
        source = self.placement(net.arch)
        if source is not None:
            source.build(self, net)

    def branches(self, net) -> nn.Module:
        from camexp.models.layers import head_convs

        width = net.classifier.in_features
        classifier_b = nn.Linear(width, net.classifier.out_features)
        nn.init.normal_(classifier_b.weight, 0.0, 0.01)
        nn.init.zeros_(classifier_b.bias)
        return nn.ModuleDict({"head_b": head_convs(net.trunk_channels, 2, width),
                              "classifier_b": classifier_b})

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        trunk = net.trunk(images)
        features = net.head(trunk)
        logits = net.classify(features)
        target = labels if labels is not None else logits.argmax(dim=1)
        class_map = net.cams(features, target)[:, 0]
        branch = net.method_layers
        features_b = branch["head_b"](erase(trunk, class_map, self.threshold))
        logits_b = net.pool(features_b, branch["classifier_b"])
        return {"logits": logits, "features": features, "logits_b": logits_b, "features_b": features_b}

    def chance_loss(self, num_classes: int) -> float:
        """Two cross-entropies, each ln(C) at chance."""
        return 2 * math.log(num_classes)

    def loss(self, net, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        labels = batch["label"]
        return F.cross_entropy(outputs["logits"], labels) + F.cross_entropy(outputs["logits_b"], labels)

    def maps(self, net, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        maps_a = net.cams(outputs["features"], classes)
        maps_b = net.pool.class_maps(outputs["features_b"], net.method_layers["classifier_b"], classes)
        return fuse(maps_a, maps_b)
