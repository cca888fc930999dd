"""Networks for tests: VGG16 without its FC layers (the same trunk, seconds faster), a
forward pass on the meta device (shapes without arithmetic), and a transformer block's attention
computed directly."""

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


def qk_attention(block: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of ``block`` for its input ``tokens``, from its own qkv layer."""
    attn = block.attn
    normed = block.norm1(tokens)
    batch, count, width = normed.shape
    qkv = attn.qkv(normed).reshape(batch, count, 3, attn.num_heads, width // attn.num_heads)
    q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
    return torch.softmax(q @ k.transpose(-2, -1) / (width // attn.num_heads) ** 0.5, dim=-1)
