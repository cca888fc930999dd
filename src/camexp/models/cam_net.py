"""The CAM network: trunk -> head convolutions -> global pooling -> linear (docs/protocol.md).

With ``f_k(x, y)`` the head's output and ``w_k^c`` the linear weights, the class score is
``S_c = sum_k w_k^c * pool_{x,y} f_k(x, y) + b_c`` and the class activation map is
``M_c(x, y) = sum_k w_k^c * f_k(x, y)``. With GAP, ``S_c = mean(M_c) + b_c`` exactly, so one
forward pass gives both the classification and the maps. The other poolings
(:mod:`camexp.models.layers`: GMP, log-sum-exp, WILDCAT) define their scores and maps in the
same terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import torch.nn.functional as F
from torch import Tensor, nn

from camexp.core.errors import WeightsError
from camexp.models.backbones import BACKBONES, Point
from camexp.models.layers import GlobalPool, Pool, head_convs, make_pool
from camexp.models.weights import download_imagenet_state_dict, load_trunk_state, read_state_dict


class CAMOutput(NamedTuple):
    """What one forward pass gives: logits (B, num_classes), the head's feature maps
    (B, C, h, w) and, for the requested classes, their CAMs (B, K, h, w)."""

    logits: Tensor
    features: Tensor
    cams: Tensor | None


class NetworkEdits(Protocol):
    """What a training method may do to the network as it is built (:mod:`camexp.methods`
    implements it; the network does not know the methods)."""

    def check(self, arch: str) -> None: ...

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]: ...

    def edit(self, net: CAMNet) -> None: ...

    def branches(self, net: CAMNet) -> nn.Module | None: ...


class NoEdits:
    """The plain CAM network: no method changes it."""

    def check(self, arch: str) -> None:
        pass

    def head_shape(self, arch: str, num_convs: int, width: int) -> tuple[int, int]:
        return num_convs, width

    def edit(self, net: CAMNet) -> None:
        pass

    def branches(self, net: CAMNet) -> nn.Module | None:
        return None


class CAMNet(nn.Module):
    """A classifier whose last feature maps go straight into global pooling and one linear layer.

    Args:
        arch: trunk name, a key of ``camexp.models.backbones.BACKBONES``.
        num_classes: output classes.
        pool: ``"gap"`` (CAM), ``"gmp"`` (Oquab et al.'s global max pooling), ``"lse"``
            (log-sum-exp) or ``"wildcat"`` (:mod:`camexp.models.layers`), or a built pooling.
        pool_settings: the ``model.pool_*`` settings of the pooling (``pool_r``, ``pool_maps``,
            ``pool_k_max``, ``pool_k_min``, ``pool_alpha``); missing ones take their defaults.
        head_num_convs: conv 3x3 layers added on the trunk (1 in the paper; 3 gives AlexNet*,
            0 pools the trunk's maps directly as the field's ResNet50).
        head_width: units of each added conv (1024 in the paper).
        pretrained: load torchvision's ImageNet weights into the trunk.
        weights_path: a local state dict (torchvision's, or a whole CAMNet's); wins over
            ``pretrained``.
        method: the WSOL training method (:mod:`camexp.methods`; CAM when None). It may set
            the head's shape, insert parameter-free layers into the trunk or head, and add
            layers beside them (``method_layers``); the trunk's parameter names never change,
            so torchvision's weights load into every method's network.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        pool: Pool | GlobalPool = "gap",
        pool_settings: Mapping[str, object] | None = None,
        head_num_convs: int = 1,
        head_width: int = 1024,
        pretrained: bool = False,
        weights_path: str | Path | None = None,
        method: NetworkEdits | None = None,
    ) -> None:
        super().__init__()
        if arch not in BACKBONES:
            raise ValueError(f"model.arch={arch!r} is unknown; use one of {sorted(BACKBONES)}.")
        spec = BACKBONES[arch]
        self.arch = arch
        self.method = method or NoEdits()
        self.method.check(arch)
        self.trunk_channels = spec.out_channels
        head_num_convs, head_width = self.method.head_shape(arch, head_num_convs, head_width)

        self.trunk = spec.cut(spec.make_classifier())
        self.trunk_points = _checked_points(arch, spec.points, self.trunk)
        self.head = head_convs(spec.out_channels, head_num_convs, head_width)
        self.head_channels = head_width if head_num_convs else spec.out_channels
        self.pool = pool if isinstance(pool, GlobalPool) else make_pool(pool, **(pool_settings or {}))
        self.num_classes = num_classes
        # WILDCAT's classifier gives several maps per class
        self.classifier = nn.Linear(head_width if head_num_convs else spec.out_channels,
                                    num_classes * self.pool.maps_per_class)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)
        self.method.edit(self)
        self.method_layers = self.method.branches(self)

        # after the method's edits, which keep every parameter name of the trunk
        external = read_state_dict(weights_path) if weights_path else None
        is_camnet_file = external is not None and any(k.startswith("trunk.") for k in external)
        if external is not None and not is_camnet_file:
            load_trunk_state(self.trunk, external, f"Weights file {weights_path}")
        elif pretrained and external is None:
            state = download_imagenet_state_dict(spec.name, spec.imagenet_weights)
            load_trunk_state(self.trunk, state, str(spec.imagenet_weights))

        if is_camnet_file:
            self._load_camnet_state(external, weights_path)

    def points(self) -> dict[str, Point]:
        """The named points of the network (paths from it): the backbone's, under ``trunk``
        (:mod:`camexp.models.backbones`), and ``head.last``, the head's last layer, when the
        head has layers."""
        points = {name: point.under("trunk") for name, point in self.trunk_points.items()}
        if self.head._modules:
            points["head.last"] = Point(f"head.{list(self.head._modules)[-1]}", self.head_channels)
        return points

    def features(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalized images -> (B, C, h, w) maps ``f_k`` that feed the pooling."""
        return self.head(self.trunk(images))

    def classify(self, features: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, num_classes) logits, by the model's pooling."""
        return self.pool(features, self.classifier)

    def cams(self, features: Tensor, classes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Class activation maps ``M_c = sum_k w_k^c f_k`` (no bias, no ReLU, not normalized),
        as the pooling defines them (WILDCAT: the mean of the class's maps).

        Args:
            features: (B, C, h, w) from :meth:`features`.
            classes: (B,) or (B, K) class indices.
            size: if given, bilinearly upsample the maps to this (H, W), e.g. the input's.
        Returns:
            (B, K, h, w), or (B, K, H, W) with ``size``; K = 1 for (B,) classes.
        """
        if classes.dim() == 1:
            classes = classes[:, None]
        maps = self.pool.class_maps(features, self.classifier, classes)
        if size is not None:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        return self.classify(self.features(images))

    def forward_with_cams(
        self, images: Tensor, classes: Tensor | None = None, upsample: bool = False
    ) -> CAMOutput:
        """Logits and, for ``classes`` ((B,) or (B, K)), CAMs from the same forward pass."""
        features = self.features(images)
        logits = self.classify(features)
        size = tuple(images.shape[-2:]) if upsample else None
        cams = None if classes is None else self.cams(features, classes, size=size)
        return CAMOutput(logits, features, cams)

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters of the layers added to the trunk: trained at a higher learning rate."""
        extra = self.method_layers.parameters() if self.method_layers is not None else []
        return [*self.head.parameters(), *self.classifier.parameters(), *extra]

    def trunk_parameters(self) -> list[nn.Parameter]:
        return list(self.trunk.parameters())

    def _load_camnet_state(self, state: dict[str, Tensor], path: str | Path | None) -> None:
        own = self.state_dict()
        missing = [key for key in own if key not in state]
        unexpected = [key for key in state if key not in own]
        mismatched = [key for key in own if key in state and state[key].shape != own[key].shape]
        if missing or unexpected or mismatched:
            raise WeightsError(
                f"Weights file {path} is a camexp network state dict, but it does not match "
                f"model.arch={self.arch!r} with these head and class settings: missing "
                f"{missing[:3]}, unexpected {unexpected[:3]}, other shape {mismatched[:3]}. Use the "
                "same model config as the run that saved it."
            )
        self.load_state_dict(state, strict=True)


def _checked_points(arch: str, points: Mapping[str, Point], trunk: nn.Module) -> dict[str, Point]:
    """The backbone's declared points, each checked to name a module of its trunk."""
    for name, point in points.items():
        try:
            trunk.get_submodule(point.path)
        except AttributeError:
            raise ValueError(f"Backbone {arch!r} declares point {name!r} at {point.path!r}, which its "
                             "trunk does not have: fix its points in camexp.models.backbones.") from None
    return dict(points)
