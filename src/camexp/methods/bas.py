"""Background Activation Suppression (Wu et al., CVPR 2022): a foreground generator trained so
that what it leaves out of the image scores low for the class (docs/methods.md, "BAS").

- The classifier: the trunk, two 3x3 convs of the model's width, the linear classifier at every
  position (a 1x1 conv, bias included) and a ReLU give class score maps; the model's pooling
  (GAP in the paper) gives the scores S1 (the logits).
- The generator: a 3x3 conv to one map per class and a sigmoid, on the features x at a point of
  the trunk (VGG16: conv4_3; ResNet50: layer3 at stride 1, followed by a 2x2 max-pool before
  layer4; InceptionV3: Mixed_6e; camexp's tiny net: conv3). M = its map of the ground-truth class.
- The background score: x, detached, times (1 - M), through a frozen copy of the rest of the
  network (the layers after the point, the head and the classifier, with the live weights of
  this step, no gradient to them), pooled: S_bg at the ground-truth class. Only the generator
  (and, through its input, the trunk below it) gets gradient from it.
- The BAS loss: the batch mean of S_bg / (S_fg + 1e-8), S_fg = S1 at the ground-truth class
  detached, set to 0 where S_bg >= S_fg, plus ``area_weight`` x the mean of M.
- S2: the pooled class score maps times M (average-pooled to their size). Loss: CE(S1) +
  ``s2_weight`` CE(S2) + the BAS loss.
- The map at inference: the generator's map of the class (``map_top_k: 0``), or the mean of its
  maps of the ``map_top_k`` best-scored classes, the same map for every class asked.

``area_weight``, ``s2_weight`` and ``map_top_k`` are a number, or one per backbone family (the
paper's values, conf/method/bas.yaml and conf/method_data/bas_imagenet.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.errors import MethodError
from camexp.core.values import check_count, check_nonnegative
from camexp.methods.base import (
    FeatureTaps,
    Method,
    frozen_forward,
    insert_after,
    module_at,
    rest_of_network,
)
from camexp.models.backbones import BACKBONES
from camexp.models.layers import score_maps


@dataclass(frozen=True)
class BASLayout:
    """Where BAS's generator reads a backbone family (a point name), and the trunk edits that
    put it at the paper's resolution."""

    generator_at: str
    # a block set to stride 1 (ResNet's layer3: the generator at stride 8, not 16)
    unstride: str | None = None
    # a 2x2 max-pool after the generator's point (ResNet: before layer4, back to stride 16)
    pool_after: bool = False


BAS_LAYOUTS = {
    "vgg": BASLayout("stage4"),
    "resnet": BASLayout("stage4", unstride="stage4.first", pool_after=True),
    "inception": BASLayout("stage4"),
    "tiny": BASLayout("stage3"),
}


def unstride(block: nn.Module) -> None:
    """Set every strided convolution of ``block`` to stride 1 (a parameter-free edit)."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride != (1, 1):
            module.stride = (1, 1)


def bas_loss(background: Tensor, foreground: Tensor, mask: Tensor, area_weight: float) -> Tensor:
    """BAS's loss from the background scores ``background`` (B,) (with gradient), the
    foreground scores ``foreground`` (B,) (detached here) and the foreground maps ``mask``
    (B, 1, h, w): mean over the batch of ``bg / (fg + 1e-8)`` (0 where ``bg >= fg``) +
    ``area_weight * mean(mask)``."""
    foreground = foreground.detach()
    ratio = background / (foreground + 1e-8)
    ratio = torch.where(background >= foreground, torch.zeros_like(ratio), ratio)
    return (ratio + area_weight * mask.flatten(1).mean(dim=1)).mean()


def _per_family(name: str, value: Any, check) -> Any:
    """A setting given as one value or as ``{family: value}``, each value checked."""
    if isinstance(value, Mapping):
        return {str(family): check(f"method.{name}.{family}", item) for family, item in value.items()}
    return check(f"method.{name}", value)


class BAS(Method):
    """Args (each a number, or ``{family: number}`` with one entry per backbone family used):
    area_weight: a, the weight of the mean foreground map in the BAS loss (>= 0).
    s2_weight: w, the weight of the cross-entropy of S2 (>= 0).
    map_top_k: the map at inference: 0, the class's own generator map; k > 0, the mean of the
        maps of the k best-scored classes (all classes when k >= their number).
    """

    name = "bas"
    placements = BAS_LAYOUTS

    def __init__(self, area_weight: Any = 1.2, s2_weight: Any = 0.5, map_top_k: Any = 0) -> None:
        super().__init__()

        def number(key: str, value: Any) -> float:
            return check_nonnegative(key, value, MethodError, context="method=bas")

        def count(key: str, value: Any) -> int:
            return check_count(key, value, MethodError, context="method=bas",
                               note=" (0: the class's own map)")

        self.area_weight = _per_family("area_weight", area_weight, number)
        self.s2_weight = _per_family("s2_weight", s2_weight, number)
        self.map_top_k = _per_family("map_top_k", map_top_k, count)
        self._taps: FeatureTaps | None = None
        self._point = ""
        self._rest: nn.Sequential | None = None

    def setting(self, name: str, arch: str) -> Any:
        """The value of setting ``name`` for backbone ``arch``."""
        value = getattr(self, name)
        if not isinstance(value, Mapping):
            return value
        family = BACKBONES[arch].family
        if family not in value:
            raise MethodError(
                f"method.{name} gives values for the backbone families {sorted(value)}, not for "
                f"{family!r} (model.arch={arch!r}): add `{family}: <value>` to it, or set one "
                f"number for every backbone (method.{name}=<value>)."
            )
        return value[family]

    def check(self, arch: str) -> None:
        super().check(arch)
        for name in ("area_weight", "s2_weight", "map_top_k"):
            self.setting(name, arch)

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]:
        return 2, width

    def edit(self, net) -> None:
        layout = self.placement(net.arch)
        point = self.point(net, layout.generator_at)
        if layout.unstride:
            unstride(module_at(net, self.point(net, layout.unstride).path))
        if layout.pool_after:
            insert_after(net, point.path, "bas_pool", nn.MaxPool2d(kernel_size=2))
        self._point = point.path
        self._taps = FeatureTaps(net, [point.path])
        self._rest = rest_of_network(net, point.path)

    def branches(self, net) -> nn.Module:
        channels = self.point(net, self.placement(net.arch).generator_at).channels
        conv = nn.Conv2d(channels, net.num_classes, kernel_size=3, padding=1)
        nn.init.xavier_uniform_(conv.weight)
        nn.init.zeros_(conv.bias)
        return nn.ModuleDict({"generator": nn.Sequential(conv, nn.Sigmoid())})

    # -- the forward pass and the loss -------------------------------------------------------

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        features = net.features(images)
        trunk_point = self._taps[self._point]
        maps = F.relu(score_maps(features, net.classifier))
        outputs = {"logits": net.pool.reduce(maps), "features": features,
                   "generator": net.method_layers["generator"](trunk_point)}
        if net.training and labels is not None:
            mask = pick(outputs["generator"], labels)
            erased = trunk_point.detach() * (1 - mask)
            background = frozen_forward(self._rest, erased)
            weight, bias = net.classifier.weight.detach(), net.classifier.bias.detach()
            background_maps = F.relu(F.conv2d(background, weight[:, :, None, None], bias))
            outputs["background"] = net.pool.reduce(background_maps)
            outputs["mask"] = mask
            outputs["logits_masked"] = net.pool.reduce(
                maps * F.adaptive_avg_pool2d(mask, maps.shape[-2:]))
        return outputs

    def loss(self, net, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        labels = batch["label"]
        logits = outputs["logits"]
        foreground = logits.gather(1, labels[:, None])[:, 0]
        background = outputs["background"].gather(1, labels[:, None])[:, 0]
        loss = F.cross_entropy(logits, labels) + bas_loss(
            background, foreground, outputs["mask"], self.setting("area_weight", net.arch))
        s2_weight = self.setting("s2_weight", net.arch)
        if s2_weight:
            loss = loss + s2_weight * F.cross_entropy(outputs["logits_masked"], labels)
        return loss

    # -- the map ---------------------------------------------------------------------------

    def maps(self, net, outputs: dict[str, Tensor], classes: Tensor) -> Tensor:
        generator = outputs["generator"]
        top_k = min(self.setting("map_top_k", net.arch), generator.shape[1])
        if not top_k:
            return pick(generator, classes)
        best = outputs["logits"].topk(top_k, dim=1).indices
        return pick(generator, best).mean(dim=1, keepdim=True).expand(-1, classes.shape[1], -1, -1)


def pick(maps: Tensor, classes: Tensor) -> Tensor:
    """``maps`` (B, C, h, w) of ``classes`` (B,) or (B, K): (B, 1 or K, h, w)."""
    if classes.dim() == 1:
        classes = classes[:, None]
    index = classes[:, :, None, None].expand(-1, -1, *maps.shape[-2:])
    return maps.gather(1, index)
