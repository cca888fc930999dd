"""Self-Produced Guidance (Zhang et al., ECCV 2018): the classifier's own confident map
becomes pixel-level seeds (foreground, background, ignored) that train extra branches on
earlier features, which in turn make the classifier's map cover more of the object.

As the field's benchmark runs it (docs/methods.md, "SPG"):

- A: the classification path. VGG16: conv1-conv3 with pools 1-3, then A1 = conv4_1-4_3 and a
  3x3 stride-2 pad-1 max-pool (in place of pool4), A2 = conv5_1-5_3, A3 = two new 3x3 convs
  512 + ReLU, A4 = 1x1 conv to the classes. ResNet50: A1 = layer3 block 0, A2 = layer3 blocks
  1-5, A3 = layer4 (stride 1), A4 = 1x1 conv 2048 -> classes. InceptionV3: B1 on Mixed_5d's
  output, B2 on **Mixed_6d**'s (not 6e), A3 = the two 3x3 convs of 1024. Logits = GAP of A4
  (in camexp, A3 is the head and A4 the linear classifier, applied per pixel for the maps).
- B1 (on A1's output) and B2 (on A2's) each have their own 3x3 conv + ReLU, then share
  3x3 conv + ReLU and a 1x1 conv to one channel. C (on A3's output): 3x3 conv 512 + ReLU,
  1x1 conv to one channel.
- Losses, on maps bilinearly upsampled to the input size (224 in the field): the attention
  map is A4's map of the ground-truth class, upsampled, min-max normalized, detached; the
  seed mask of a map M with thresholds (h, l) is 255 (ignored) everywhere, 1 where M > h
  (where fewer than 30 pixels of an image pass, 0.7 x that image's maximum is used instead),
  then 0 where M < l. BCE-with-logits over the non-ignored pixels of the batch for B2 against
  the attention's mask (1h, 1l), B1 against the mask of sigmoid(B2) (2h, 2l), and C against
  the mask of the fused map (sigmoid(B1) + sigmoid(B2)) / 2 (3h, 3l); total = CE + the three.
- Map: A4's map of the class (CAM); the branches are not used at inference.

camexp also lays SPG on ResNet18 (as ResNet50: branches as wide as the tapped stage, 256, and
C 256) and on the tiny CPU net (B1 after conv3, B2 after conv4, branch width 64). The layouts
are written per backbone family in point names (:data:`SPG_LAYOUTS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.values import check_fraction
from camexp.methods.base import FeatureTaps, Method, normalize_maps, replace_layer

IGNORE = 255


@dataclass(frozen=True)
class SPGLayout:
    """Where SPG's branches tap a backbone family (point names), and the widths of its layers."""

    b1_tap: str
    b2_tap: str
    head_convs: int  # A3: 3x3 convs on the trunk (0: the trunk output is A3's)
    head_width: int | None  # None: the model's head.width
    branch_width: int | None  # None: the channels at the B1 tap
    c_width: int | None  # None: the branch width, at most 512
    swap_b1_pool: bool = False  # the B1 tap is a pool, made 3x3 stride 2 pad 1

    def widths(self, b1_channels: int) -> tuple[int, int]:
        """The width of the B branches and of C."""
        branch = self.branch_width or b1_channels
        return branch, self.c_width or min(512, branch)


SPG_LAYOUTS = {
    "vgg": SPGLayout("pool4", "stage5", 2, 512, 512, 512, swap_b1_pool=True),
    "resnet": SPGLayout("stage4.first", "stage4", 0, None, None, None),
    # B2 on Mixed_6d, not Mixed_6e, as the field's code
    "inception": SPGLayout("stage3", "stage4.block4", 2, 1024, 512, 512),
    "tiny": SPGLayout("stage3", "stage4", 2, None, 64, 64),
}


def seed_mask(maps: Tensor, high: float, low: float, min_foreground: int = 30) -> Tensor:
    """SPG's seed mask (B, 1, H, W) uint8 of ``maps`` (B, 1, H, W): 1 foreground, 0 background,
    255 ignored.

    Foreground: ``maps > high``; an image with fewer than ``min_foreground`` such pixels uses
    ``maps > 0.7 * its maximum`` instead. Background (``maps < low``) is set last and wins.
    """
    foreground = maps > high
    few = foreground.flatten(1).sum(dim=1) < min_foreground
    fallback = maps > 0.7 * maps.amax(dim=(2, 3), keepdim=True)
    foreground = torch.where(few[:, None, None, None], fallback, foreground)
    mask = torch.full_like(maps, IGNORE, dtype=torch.uint8)
    mask[foreground] = 1
    mask[maps < low] = 0
    return mask


def seed_loss(logits: Tensor, mask: Tensor) -> Tensor:
    """BCE-with-logits of ``logits`` against ``mask`` averaged over its non-ignored pixels of
    the whole batch (0 when every pixel is ignored)."""
    valid = mask != IGNORE
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid], mask[valid].to(logits.dtype))


def _conv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return [conv, nn.ReLU(inplace=True)]


def _to_one_channel(in_channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, 1, kernel_size=1)
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class SPG(Method):
    """Args: the seed thresholds (high, low) of the three losses, docs/methods.md's defaults:
    ``threshold_1h/1l`` (0.7, 0.01) for B2 against the attention map, ``threshold_2h/2l``
    (0.5, 0.05) for B1 against sigmoid(B2), ``threshold_3h/3l`` (0.7, 0.1) for C against the
    fused map; ``min_foreground`` (30) pixels before the 0.7 x max fallback.
    """

    name = "spg"
    placements = SPG_LAYOUTS

    def __init__(
        self,
        threshold_1h: float = 0.7,
        threshold_1l: float = 0.01,
        threshold_2h: float = 0.5,
        threshold_2l: float = 0.05,
        threshold_3h: float = 0.7,
        threshold_3l: float = 0.1,
        min_foreground: int = 30,
    ) -> None:
        super().__init__()
        for key, value in list(locals().items()):
            if key.startswith("threshold_"):
                setattr(self, key, self.checked(check_fraction, key, value))
        self.min_foreground = int(min_foreground)
        self._taps: FeatureTaps | None = None
        self._tapped: tuple[str, str] = ("", "")

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]:
        layout = self.placement(arch)
        return layout.head_convs, layout.head_width or width

    def edit(self, net) -> None:
        layout = self.placement(net.arch)
        b1, b2 = self.point(net, layout.b1_tap), self.point(net, layout.b2_tap)
        if layout.swap_b1_pool:
            replace_layer(net, b1.path, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self._tapped = (b1.path, b2.path)
        self._taps = FeatureTaps(net, self._tapped)

    def branches(self, net) -> nn.Module:
        layout = self.placement(net.arch)
        b1, b2 = self.point(net, layout.b1_tap), self.point(net, layout.b2_tap)
        width, c_width = layout.widths(b1.channels)
        return nn.ModuleDict({
            "b1": nn.Sequential(*_conv_relu(b1.channels, width)),
            "b2": nn.Sequential(*_conv_relu(b2.channels, width)),
            "b_shared": nn.Sequential(*_conv_relu(width, width), _to_one_channel(width)),
            "c": nn.Sequential(*_conv_relu(net.classifier.in_features, c_width),
                               _to_one_channel(c_width)),
        })

    def forward(self, net, images: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        features = net.features(images)
        outputs = {"logits": net.classify(features), "features": features}
        if net.training:  # the branches only train; the map at inference is A4's
            (b1, b2), branch = self._tapped, net.method_layers
            outputs["b1"] = branch["b_shared"](branch["b1"](self._taps[b1]))
            outputs["b2"] = branch["b_shared"](branch["b2"](self._taps[b2]))
            outputs["c"] = branch["c"](features)
        return outputs

    def loss(self, net, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        labels, size = batch["label"], tuple(batch["input"].shape[-2:])

        def up(maps: Tensor) -> Tensor:
            return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)

        attention = normalize_maps(up(net.cams(outputs["features"], labels))).detach()
        b1, b2, c = up(outputs["b1"]), up(outputs["b2"]), up(outputs["c"])
        sig_b1, sig_b2 = torch.sigmoid(b1).detach(), torch.sigmoid(b2).detach()
        fused = (sig_b1 + sig_b2) / 2
        n = self.min_foreground
        return (
            F.cross_entropy(outputs["logits"], labels)
            + seed_loss(b2, seed_mask(attention, self.threshold_1h, self.threshold_1l, n))
            + seed_loss(b1, seed_mask(sig_b2, self.threshold_2h, self.threshold_2l, n))
            + seed_loss(c, seed_mask(fused, self.threshold_3h, self.threshold_3l, n))
        )
