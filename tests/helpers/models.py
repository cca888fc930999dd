"""Networks for tests: VGG16 without its FC layers (the same trunk, seconds faster), and a
forward pass on the meta device (shapes without arithmetic)."""

from __future__ import annotations

import torch
from torchvision import models as tvm
from torchvision.models import vgg as tv_vgg


def vgg16_without_fc() -> torch.nn.Module:
    """torchvision's VGG16 with its conv layers on the CPU and its FC layers on meta."""
    with torch.device("meta"):
        model = tvm.vgg16(weights=None)
    model.features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=False)
    return model


def meta_forward(net: torch.nn.Module, size: int = 224, batch: int = 2):
    """Run ``net.method.forward`` on the meta device: shapes (and hooks) without arithmetic."""
    net = net.to("meta")
    images = torch.empty(batch, 3, size, size, device="meta")
    labels = torch.zeros(batch, dtype=torch.long, device="meta")
    return net.method.forward(net, images, labels)
