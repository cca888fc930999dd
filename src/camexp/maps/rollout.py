"""Attention rollout (Abnar & Zuidema 2020) as a post-hoc map: ``localization.method=rollout``.

For a transformer (a camexp DeiT/minivit checkpoint, timm's or torchvision's ViT classifier):
each block's attention weights (read as :mod:`camexp.models.attention` says) are fused over the
heads (``localization.rollout_head_fusion``: mean, or max, a common variant), optionally with
the lowest ``localization.rollout_discard`` fraction of each matrix set to 0 (the variant keeps
the class token's own entry), plus the identity, each row renormalized to sum 1 (with the mean:
``(A + I) / 2``); the blocks' matrices are multiplied from the first to the last, and the map
is the class token's row over the patch tokens' columns, as their grid. One class-agnostic map
per image, from one extra forward pass per batch, scored like every other map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from typing_extensions import override

from camexp.core.errors import UserError
from camexp.maps.sources import MapSource
from camexp.models.attention import AttentionTaps, attention_modules
from camexp.models.vit import token_layout

if TYPE_CHECKING:
    import lightning as L

HEAD_FUSIONS = ("mean", "max")


def fuse_heads(weights: Tensor, fusion: str = "mean", discard: float = 0.0) -> Tensor:
    """(B, heads, N, N) -> (B, N, N): the heads fused by ``fusion``, then the lowest ``discard``
    fraction of each image's entries set to 0 (entry (0, 0), the class token's own, kept)."""
    fused = weights.mean(dim=1) if fusion == "mean" else weights.amax(dim=1)
    count = int(fused[0].numel() * discard)
    if count:
        flat = fused.flatten(1).clone()
        lowest = flat.topk(count, dim=1, largest=False).indices
        keep_first = flat[:, :1].clone()
        flat.scatter_(1, lowest, 0.0)
        flat[:, :1] = keep_first
        fused = flat.view_as(fused)
    return fused


def rollout(fused: list[Tensor]) -> Tensor:
    """The joint attention (B, N, N) of the blocks' fused weights (each (B, N, N), first block
    first): each plus the identity, rows renormalized, multiplied from the first to the last."""
    identity = torch.eye(fused[0].shape[-1], dtype=fused[0].dtype, device=fused[0].device)
    joint = identity.expand_as(fused[0])
    for weights in fused:
        step = weights + identity
        joint = (step / step.sum(dim=-1, keepdim=True)) @ joint
    return joint


class AttentionRollout(MapSource):
    """The rollout map of the module's network (the same map for every class)."""

    name = "rollout"

    def __init__(self, settings=None) -> None:
        super().__init__(settings)
        self.taps: AttentionTaps | None = None
        self.layout = None

    @override
    def start(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.close()
        net = pl_module.net
        what = getattr(pl_module, "network_name", f"model.arch={getattr(net, 'arch', type(net).__name__)}")
        modules, layout = attention_modules(net), token_layout(net)
        if not modules or layout is None:
            raise UserError(
                f"localization.method=rollout needs a vision transformer (timm's or torchvision's "
                f"attention blocks); {what} has none. Use a transformer (model=deit_small, "
                "minivit, model=timm, model=torchvision model.name=vit_b_16) or another map "
                "(cam, gradcam, ...)."
            )
        if layout.prefix < 1:
            raise UserError(f"localization.method=rollout reads the class token's row, and {what} "
                            "has no class token. Use gradcam (or another post-hoc map) instead.")
        fusion, discard = self.settings.rollout_head_fusion, self.settings.rollout_discard
        self.taps = AttentionTaps(modules, keep=lambda w: fuse_heads(w, fusion, discard))
        self.layout = layout
        if trainer.is_global_zero and not trainer.sanity_checking:
            print(f"localization.method=rollout ({stage}): {len(modules)} attention blocks, heads fused "
                  f"by {fusion}, lowest {discard:.0%} discarded; one extra forward pass per batch.")

    @override
    def class_maps(self, pl_module: L.LightningModule, outputs: dict[str, Tensor],
                   batch: dict[str, Any], classes: Tensor) -> Tensor:
        with torch.no_grad(), self.taps.recording():
            pl_module.net(batch["input"])
        joint = rollout(self.taps.stacked())
        prefix, (height, width) = self.layout.prefix, self.layout.grid
        maps = joint[:, 0, prefix:prefix + height * width].reshape(len(joint), 1, height, width)
        return maps.expand(-1, classes.shape[1], -1, -1)

    @override
    def close(self) -> None:
        super().close()
        if self.taps is not None:
            self.taps.remove()
            self.taps = None
