"""Which network a backbone gets: the CNN's CAM network, or the transformer's (one entry per
backbone family that needs its own), built from the model settings."""

from __future__ import annotations

import inspect
from typing import Any

from camexp.core.errors import ConfigError
from camexp.models.backbones import BACKBONES
from camexp.models.cam_net import CAMNet
from camexp.models.vit_net import ViTCAMNet

# backbone family -> its network class; every other family gets CAMNet
NETWORKS: dict[str, type[CAMNet]] = {"vit": ViTCAMNet}


def network_class(arch: str) -> type[CAMNet]:
    """The network class of backbone ``arch``."""
    if arch not in BACKBONES:
        raise ConfigError(f"model.arch={arch!r} is unknown; use one of {sorted(BACKBONES)}.")
    return NETWORKS.get(BACKBONES[arch].family, CAMNet)


def backbone_settings(arch: str) -> list[str]:
    """The settings of ``model.backbone`` that the network of ``arch`` takes (transformers:
    ``img_size``, ``drop_path``; CNNs: none)."""
    shared = set(inspect.signature(CAMNet.__init__).parameters)
    own = inspect.signature(network_class(arch).__init__).parameters
    return [name for name in own if name not in shared]


def build_network(arch: str, backbone: dict[str, Any] | None = None, **settings: Any) -> CAMNet:
    """The network of ``arch`` with the model's ``settings`` (see :class:`CAMNet`) and the
    backbone's own ``backbone`` settings, which must be ones it takes."""
    backbone = dict(backbone or {})
    accepted = backbone_settings(arch)
    unknown = sorted(set(backbone) - set(accepted))
    if unknown:
        raise ConfigError(
            f"model.backbone.{unknown[0]} is not a setting of model.arch={arch!r}; its backbone "
            f"settings are {accepted or 'none'} (transformers take img_size and drop_path)."
        )
    return network_class(arch)(arch, **settings, **backbone)
