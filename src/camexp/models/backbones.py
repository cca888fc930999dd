"""Convolutional trunks cut where CAM needs them (docs/protocol.md).

Each trunk is built from torchvision's own definition, so torchvision's ImageNet state dicts
load into it under torchvision's parameter names, and then cut:

- ``vgg16``: VGG16 up to conv5_3 + ReLU (pool5 and the FC layers removed): 14x14 at 224.
- ``googlenet``: GoogLeNet up to inception4e (maxpool4 and after removed): 14x14 at 224.
- ``alexnet``: AlexNet up to conv5 + ReLU (pool5 removed): 13x13 at 224.
- ``resnet50`` / ``resnet18``: every stage, with layer4 at stride 1 (no dilation): 14x14.
- ``inception_v3``: up to Mixed_6e, with Mixed_6a at stride 1 (and padding 1, so it keeps
  the resolution, as the field's CAM code does): 25x25 at 224.
- ``tiny``: a small VGG-style net trained from scratch, for CPU demos and tests: stride 8.

AlexNet* is AlexNet with two extra convolutions before the head: that lives in the head
(``head.num_convs=3``, see ``conf/model/alexnet_star_gap.yaml``), not here.

Named points
------------
Each backbone declares the places of its trunk that methods refer to (:class:`Point`: the
module whose output the place is, and that output's channels), under names that mean the same
on every backbone, so that a method places its layers by name (:mod:`camexp.methods`) and a new
backbone declares its points rather than editing each method:

- ``stage1`` ... ``stage5``: where the trunk's k-th stage of convolutions ends, in the conv1 ...
  conv5 sense (in the uncut network each stage works at one resolution, half the previous one):
  VGG's last ReLU of conv{k}_x, ResNet's stem ReLU (conv1) then ``layer1`` ... ``layer4``
  (conv2_x ... conv5_x), InceptionV3's Conv2d_2b, Conv2d_4a, Mixed_5d, Mixed_6e. Only the
  stages the cut trunk keeps.
- ``pool1`` ... ``pool4``: the max-pool right after stage k, where the trunk has one.
- ``stage{k}.first``, ``stage{k}.last``, ``stage{k}.block{n}`` (from 1): the blocks of a stage
  made of blocks (ResNet's bottlenecks, Inception modules).
- ``output``: the trunk's output (``out_channels``).

The network adds ``head.last``, the head's last layer (:meth:`camexp.models.CAMNet.points`).

Transformer backbones (timm's VisionTransformer, :mod:`camexp.models.vit`) have no stages; they
declare their blocks instead (:func:`vit_points`): ``tokens`` (the token sequence entering the
first block), ``block1`` ... ``blockN``, the same counted from the end as ``block-1`` (the last)
... ``block-N``, each block's attention module as ``block<n>.attention``, and ``output``.

``family`` says which published layout of the methods the trunk follows (the field states
ADL's, ACoL's and SPG's placements per family: VGG, ResNet, Inception); a method keeps one
placement per family, written in point names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models._api import WeightsEnum
from torchvision.models.inception import InceptionB

from camexp.models.vit import VIT_ARCHS, TimmWeights, ViTArch, build_vit, vit_trunk


@dataclass(frozen=True)
class Point:
    """A named place of a network: the dotted path of the module whose output it is, and the
    channels of that output."""

    path: str
    channels: int

    def under(self, prefix: str) -> Point:
        """The same point, its path seen from the module that holds ``prefix``."""
        return Point(f"{prefix}.{self.path}", self.channels)


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one trunk, and its named points.

    ``make_classifier`` returns the full torchvision network with torchvision's parameter
    names (ImageNet state dicts load into it); ``cut`` turns it into the trunk. ``points``
    (paths inside the trunk) and ``family`` are described in the module's docstring.
    """

    name: str
    make_classifier: Callable[[], nn.Module]
    cut: Callable[[nn.Module], nn.Sequential]
    out_channels: int
    stride: int
    imagenet_weights: WeightsEnum | TimmWeights | None
    family: str = ""
    points: Mapping[str, Point] = field(default_factory=dict)


class TransformInput(nn.Module):
    """Map ImageNet-normalized input to the [-1, 1] scaling that Google's weights expect.

    torchvision's GoogLeNet and InceptionV3 do this inside ``forward`` when their ImageNet
    weights are loaded (``transform_input=True``); the cut trunk must keep doing it.
    """

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 0.5
        shift = (torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) - 0.5) / 0.5
        return x * scale + shift


class InceptionBStride1(InceptionB):
    """InceptionV3's Mixed_6a with stride 1 and padding 1: keeps 25x25 at 224 input.

    Same parameters as torchvision's ``InceptionB`` (its weights load unchanged); only the
    strides of its two 3x3 convolutions and of its max-pool change.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels)
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride = (1, 1)
            conv.padding = (1, 1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [branch3x3, branch3x3dbl, branch_pool]


def _children(model: nn.Module, names: list[str]) -> nn.Sequential:
    """An ``nn.Sequential`` of ``model``'s named children, keeping their names (and so the
    state-dict keys) so that torchvision checkpoints and ours speak the same language."""
    return nn.Sequential(OrderedDict((name, getattr(model, name)) for name in names))


def _cut_vgg16(model: nn.Module) -> nn.Sequential:
    # features[29] is the ReLU after conv5_3; features[30] is pool5.
    return nn.Sequential(OrderedDict(features=model.features[:30]))


def _cut_alexnet(model: nn.Module) -> nn.Sequential:
    # features[11] is the ReLU after conv5; features[12] is pool5.
    return nn.Sequential(OrderedDict(features=model.features[:12]))


def _cut_googlenet(model: nn.Module) -> nn.Sequential:
    names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
             "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e"]
    trunk = _children(model, names)
    if model.transform_input:
        trunk = nn.Sequential(OrderedDict([("transform_input", TransformInput()), *trunk.named_children()]))
    return trunk


def _cut_resnet(model: nn.Module) -> nn.Sequential:
    first_block = model.layer4[0]
    conv_with_stride = first_block.conv2 if hasattr(first_block, "conv3") else first_block.conv1
    conv_with_stride.stride = (1, 1)
    first_block.downsample[0].stride = (1, 1)
    return _children(model, ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"])


def _cut_inception_v3(model: nn.Module) -> nn.Sequential:
    stride1 = InceptionBStride1(288)
    stride1.load_state_dict(model.Mixed_6a.state_dict())
    model.Mixed_6a = stride1
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
             "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
             "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]
    trunk = _children(model, names)
    if model.transform_input:
        trunk = nn.Sequential(OrderedDict([("transform_input", TransformInput()), *trunk.named_children()]))
    return trunk


class TinyNet(nn.Module):
    """A small VGG-style net (conv-BN-ReLU stages, max-pool between them), stride 8.

    Not a torchvision model: it exists so the demo and the tests train in minutes on a CPU.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 128)) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        for index, width in enumerate(widths):
            if index > 0:
                layers[f"pool{index}"] = nn.MaxPool2d(2)
            layers[f"conv{index + 1}"] = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
            layers[f"bn{index + 1}"] = nn.BatchNorm2d(width)
            layers[f"relu{index + 1}"] = nn.ReLU(inplace=True)
            in_channels = width
        self.features = nn.Sequential(layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def stage_points(stages: Sequence[tuple[str, int]], pools: Mapping[int, str] | None = None,
                 prefix: str = "") -> dict[str, Point]:
    """``stage1``, ``stage2``... at the (path, channels) of each stage's end, ``pool{k}`` at the
    max-pool after stage k, and ``output`` at the last stage; paths under ``prefix``."""
    points: dict[str, Point] = {}
    for number, (path, channels) in enumerate(stages, start=1):
        points[f"stage{number}"] = points["output"] = Point(prefix + path, channels)
        if number in (pools or {}):
            points[f"pool{number}"] = Point(prefix + pools[number], channels)
    return points


def block_points(stage: int, blocks: Sequence[tuple[str, int]]) -> dict[str, Point]:
    """``stage{k}.block1``, ``.block2``..., ``.first`` and ``.last`` of a stage made of blocks,
    at the (path, channels) of each block."""
    points = {f"stage{stage}.block{n}": Point(*block) for n, block in enumerate(blocks, start=1)}
    points[f"stage{stage}.first"] = Point(*blocks[0])
    points[f"stage{stage}.last"] = Point(*blocks[-1])
    return points


def resnet_points(blocks: Sequence[int], widths: Sequence[int]) -> dict[str, Point]:
    """A torchvision ResNet's points from its blocks per layer (ResNet50: 3, 4, 6, 3) and the
    channels of the stem and of each layer (ResNet50: 64, 256, 512, 1024, 2048)."""
    layers = [(f"layer{i}", width) for i, width in enumerate(widths[1:], start=1)]
    points = stage_points([("relu", widths[0]), *layers], pools={1: "maxpool"})
    for stage, ((layer, width), count) in enumerate(zip(layers, blocks, strict=True), start=2):
        points.update(block_points(stage, [(f"{layer}.{i}", width) for i in range(count)]))
    return points


# VGG16's features: each stage's last ReLU and the pool after it (pool5 is cut away)
VGG16_POINTS = stage_points([("3", 64), ("8", 128), ("15", 256), ("22", 512), ("29", 512)],
                            pools={1: "4", 2: "9", 3: "16", 4: "23"}, prefix="features.")
ALEXNET_POINTS = stage_points([("1", 64), ("4", 192), ("7", 384), ("9", 256), ("11", 256)],
                              pools={1: "2", 2: "5"}, prefix="features.")
GOOGLENET_POINTS = {
    **stage_points([("conv1", 64), ("conv3", 192), ("inception3b", 480), ("inception4e", 832)],
                   pools={1: "maxpool1", 2: "maxpool2", 3: "maxpool3"}),
    **block_points(3, [("inception3a", 256), ("inception3b", 480)]),
    **block_points(4, [("inception4a", 512), ("inception4b", 512), ("inception4c", 512),
                       ("inception4d", 528), ("inception4e", 832)]),
}
INCEPTION_V3_POINTS = {
    **stage_points([("Conv2d_2b_3x3", 64), ("Conv2d_4a_3x3", 192), ("Mixed_5d", 288),
                    ("Mixed_6e", 768)], pools={1: "maxpool1", 2: "maxpool2"}),
    **block_points(3, [("Mixed_5b", 256), ("Mixed_5c", 288), ("Mixed_5d", 288)]),
    **block_points(4, [(f"Mixed_6{c}", 768) for c in "abcde"]),
}
TINY_POINTS = stage_points([("relu1", 24), ("relu2", 48), ("relu3", 96), ("relu4", 128)],
                           pools={1: "pool1", 2: "pool2", 3: "pool3"}, prefix="features.")


def _googlenet() -> nn.Module:
    # aux_logits=True so that torchvision's state dict (which has aux1/aux2) loads strictly.
    return tvm.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)


def _inception_v3() -> nn.Module:
    return tvm.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=True)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec("vgg16", lambda: tvm.vgg16(weights=None), _cut_vgg16, 512, 16,
                     tvm.VGG16_Weights.IMAGENET1K_V1, "vgg", VGG16_POINTS),
        BackboneSpec("googlenet", _googlenet, _cut_googlenet, 832, 16,
                     tvm.GoogLeNet_Weights.IMAGENET1K_V1, "googlenet", GOOGLENET_POINTS),
        BackboneSpec("alexnet", lambda: tvm.alexnet(weights=None), _cut_alexnet, 256, 16,
                     tvm.AlexNet_Weights.IMAGENET1K_V1, "alexnet", ALEXNET_POINTS),
        BackboneSpec("resnet50", lambda: tvm.resnet50(weights=None), _cut_resnet, 2048, 16,
                     tvm.ResNet50_Weights.IMAGENET1K_V1, "resnet",
                     resnet_points((3, 4, 6, 3), (64, 256, 512, 1024, 2048))),
        BackboneSpec("resnet18", lambda: tvm.resnet18(weights=None), _cut_resnet, 512, 16,
                     tvm.ResNet18_Weights.IMAGENET1K_V1, "resnet",
                     resnet_points((2, 2, 2, 2), (64, 64, 128, 256, 512))),
        BackboneSpec("inception_v3", _inception_v3, _cut_inception_v3, 768, 8,
                     tvm.Inception_V3_Weights.IMAGENET1K_V1, "inception", INCEPTION_V3_POINTS),
        BackboneSpec("tiny", TinyNet, lambda model: _children(model, ["features"]), 128, 8, None,
                     "tiny", TINY_POINTS),
    ]
}


def vit_points(depth: int, width: int, heads: int) -> dict[str, Point]:
    """The named points of a transformer trunk (:func:`camexp.models.vit.vit_trunk`): ``tokens``
    (timm's position-embedding dropout, whose output enters block 1), ``block<n>`` and
    ``block-<n>`` (from the end), ``block<n>.attention`` (channels: heads), ``output``."""
    points = {"tokens": Point("vit.pos_drop", width), "output": Point("grid", width)}
    for number in range(1, depth + 1):
        block = Point(f"vit.blocks.{number - 1}", width)
        attention = Point(f"vit.blocks.{number - 1}.attn", heads)
        for name in (f"block{number}", f"block-{depth - number + 1}"):
            points[name], points[f"{name}.attention"] = block, attention
    return points


def _vit_spec(arch: ViTArch) -> BackboneSpec:
    weights = TimmWeights(arch.timm_name) if arch.timm_name else None
    return BackboneSpec(arch.name, lambda: build_vit(arch), vit_trunk, arch.width, arch.patch,
                        weights, "vit", vit_points(arch.depth, arch.width, arch.heads))


# DeiT-Tiny/Small/Base and the CPU demo's transformer (camexp.models.vit): family "vit"
BACKBONES.update({name: _vit_spec(arch) for name, arch in VIT_ARCHS.items()})
