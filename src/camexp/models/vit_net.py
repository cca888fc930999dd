"""The CAM network on a vision transformer (docs/methods.md, "Transformers").

timm's ViT gives the patch tokens as a (B, D, h, w) map (:mod:`camexp.models.vit`); the head is
a 3x3 convolution (stride 1, padding 1, bias) from D to the classes, so the head's output is one
map per class, and global pooling of those maps is the logits (GAP: their mean). The class
token is not used for the logits. The CAM of class c is the head's channel c: with GAP,
``logit_c = mean(M_c)`` exactly, as in the CNN network (:mod:`camexp.models.cam_net`).
``head.num_convs`` > 0 puts that many (3x3 conv, ReLU) layers before the class convolution
(0, the transformer papers' head, by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.errors import ConfigError
from camexp.models.backbones import BACKBONES
from camexp.models.cam_net import CAMNet, NetworkEdits, NoEdits, _checked_points
from camexp.models.layers import GlobalPool, Pool, head_convs, make_pool
from camexp.models.vit import (
    VIT_ARCHS,
    build_vit,
    download_vit_state,
    load_vit_state,
    read_weights_file,
    vit_trunk,
)
from camexp.models.weights import read_state_dict


def class_map_head(in_channels: int, num_convs: int, width: int, num_classes: int) -> nn.Sequential:
    """``num_convs`` x (3x3 conv, ReLU), then the 3x3 convolution to the classes (with bias)."""
    head = head_convs(in_channels, num_convs, width)
    classes = nn.Conv2d(width if num_convs else in_channels, num_classes, 3, stride=1, padding=1)
    nn.init.trunc_normal_(classes.weight, std=0.02)  # timm's initialisation of new layers
    nn.init.zeros_(classes.bias)
    head.add_module("classes", classes)
    return head


class ViTCAMNet(CAMNet):
    """A transformer trunk, a class-map head, global pooling: the logits.

    Args (the others as :class:`~camexp.models.cam_net.CAMNet`):
        arch: a transformer of :data:`~camexp.models.vit.VIT_ARCHS` (deit_tiny, deit_small,
            deit_base, minivit).
        pretrained: timm's ImageNet weights by timm's name (downloaded or from timm's cache).
        weights_path: a local file (DeiT's release, timm's, or a camexp network's state dict).
        img_size: the square input size the position embeddings are made for (the data's crop
            and evaluation size); None: the architecture's (224 for DeiT).
        drop_path: stochastic depth rate of the last block (timm's linear rule over the blocks).
    """

    # post-hoc maps explain the token grid (the trunk's output) unless told otherwise
    posthoc_target = "trunk"

    def __init__(
        self,
        arch: str,
        num_classes: int,
        pool: Pool | GlobalPool = "gap",
        pool_settings: Mapping[str, object] | None = None,
        head_num_convs: int = 0,
        head_width: int = 1024,
        pretrained: bool = False,
        weights_path: str | Path | None = None,
        method: NetworkEdits | None = None,
        img_size: int | None = None,
        drop_path: float = 0.0,
    ) -> None:
        nn.Module.__init__(self)
        if arch not in VIT_ARCHS:
            raise ValueError(f"model.arch={arch!r} is not a transformer; use one of {sorted(VIT_ARCHS)}.")
        vit_arch, spec = VIT_ARCHS[arch], BACKBONES[arch]
        self.arch = arch
        self.method = method or NoEdits()
        self.method.check(arch)
        head_num_convs, head_width = self.method.head_shape(arch, head_num_convs, head_width)
        self.img_size = int(img_size or vit_arch.img_size)
        vit = build_vit(vit_arch, self.img_size, drop_path)
        self.trunk = vit_trunk(vit)
        self.trunk_channels = vit_arch.width
        self.trunk_points = _checked_points(arch, spec.points, self.trunk)
        self.pool = pool if isinstance(pool, GlobalPool) else make_pool(pool, **(pool_settings or {}))
        self.num_classes = num_classes
        # the head's class maps: WILDCAT's several per class (laid out class by class)
        self.head_channels = num_classes * self.pool.maps_per_class
        self.head = class_map_head(vit_arch.width, head_num_convs, head_width, self.head_channels)
        self.method.edit(self)
        self.method_layers = self.method.branches(self)

        external = read_weights_file(str(weights_path), read_state_dict) if weights_path else None
        if external is not None and any(key.startswith("trunk.") for key in external):
            self._load_camnet_state(external, weights_path)
        elif external is not None:
            load_vit_state(vit, external, f"Weights file {weights_path}")
        elif pretrained:
            load_vit_state(vit, download_vit_state(vit_arch), str(spec.imagenet_weights))

    def features(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) normalized images -> the class maps (B, num_classes, h, w)."""
        if tuple(images.shape[-2:]) != (self.img_size, self.img_size):
            raise ConfigError(
                f"model.arch={self.arch} was built for {self.img_size}x{self.img_size} images "
                f"(model.backbone.img_size; its position embeddings have one entry per patch), but "
                f"got {tuple(images.shape[-2:])}. Set data.crop_size={self.img_size} and "
                f"data.eval_size=[{self.img_size},{self.img_size}], or build it for your size."
            )
        return self.head(self.trunk(images))

    def classify(self, features: Tensor) -> Tensor:
        """(B, num_classes, h, w) class maps -> (B, num_classes) logits: their pooling."""
        return self.pool.reduce(features)

    def cams(self, features: Tensor, classes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """The head's maps of ``classes`` ((B,) or (B, K)): (B, K, h, w), or upsampled to ``size``."""
        if classes.dim() == 1:
            classes = classes[:, None]
        features = self.pool.per_class(features)
        height, width = features.shape[-2:]
        maps = features.gather(1, classes[:, :, None, None].expand(-1, -1, height, width))
        if size is not None:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return maps

    def new_parameters(self) -> list[nn.Parameter]:
        extra = self.method_layers.parameters() if self.method_layers is not None else []
        return [*self.head.parameters(), *extra]
