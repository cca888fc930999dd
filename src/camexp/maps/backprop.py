"""Backprop saliency (Simonyan et al. 2014), the CAM paper's second baseline: the gradient of
the class score with respect to the input pixels (``localization.method=backprop``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from typing_extensions import override

from camexp.maps.sources import MapSource

if TYPE_CHECKING:
    import lightning as L


def backprop_saliency(net: torch.nn.Module, inputs: Tensor, classes: Tensor) -> Tensor:
    """Simonyan et al.'s saliency: ``max_channel |d S_c / d x|`` for each requested class.

    Args:
        net: maps (B, 3, H, W) to logits (B, C).
        inputs: (B, 3, H, W) normalized images.
        classes: (B, K) class indices.
    Returns:
        (B, K, H, W) saliency maps (non-negative, not normalized).
    """
    maps = []
    with torch.enable_grad():
        for k in range(classes.shape[1]):
            x = inputs.detach().clone().requires_grad_(True)
            logits = net(x)
            score = logits.gather(1, classes[:, k : k + 1]).sum()
            (grad,) = torch.autograd.grad(score, x)
            maps.append(grad.abs().amax(dim=1))
    return torch.stack(maps, dim=1)


class BackpropSaliency(MapSource):
    """:func:`backprop_saliency` of the module's network, with gradients switched on."""

    name = "backprop"

    @override
    def class_maps(self, pl_module: L.LightningModule, outputs: dict[str, Tensor],
                   batch: dict[str, Any], classes: Tensor) -> Tensor:
        return backprop_saliency(pl_module.net, batch["input"], classes)
