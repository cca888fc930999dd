"""Where the maps that are scored come from: one source object per ``localization.method``.

A map source gives, for an evaluation batch, the maps of the ground-truth class and of the
top-5 predicted classes (:meth:`MapSource.batch_maps`). Each source is a small subclass that
fills one hook, :meth:`MapSource.class_maps`: the trained method's own map
(:class:`~camexp.maps.trained.TrainedMaps`, ``cam``), Backprop saliency
(:class:`~camexp.maps.backprop.BackpropSaliency`) and each post-hoc method of the Grad-CAM
family (:mod:`camexp.maps.posthoc`); :mod:`camexp.maps.registry` picks one by name, once.

A source keeps the maps of the last batch it was asked for: the localization callback and the
pictures callback ask the same source about the same batch, so the pictures show exactly the
maps that were scored (ACoL's fused map, a post-hoc map), computed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    import lightning as L


@dataclass(frozen=True)
class MapSettings:
    """The ``localization`` settings of the post-hoc methods and attention rollout
    (docs/posthoc.md); the other sources have none."""

    target_layer: str | None = None
    relu: bool = True
    aug_smooth: bool = False
    eigen_smooth: bool = False
    batch_size: int = 32
    # attention rollout (camexp.maps.rollout)
    rollout_head_fusion: str = "mean"
    rollout_discard: float = 0.0


class MapSource:
    """Maps (B, K, h, w) of classes (B, K) for the batches of an evaluation epoch.

    Subclasses set :attr:`name` (the ``localization.method`` value) and fill
    :meth:`class_maps`; :meth:`start` and :meth:`close` frame each evaluation epoch.
    """

    name: ClassVar[str]

    def __init__(self, settings: MapSettings | None = None) -> None:
        self.settings = settings or MapSettings()
        self._kept: tuple[Any, Tensor, Tensor] | None = None

    def start(self, stage: str, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Before an evaluation epoch: check that the network has what the source needs."""

    def class_maps(self, pl_module: L.LightningModule, outputs: dict[str, Tensor],
                   batch: dict[str, Any], classes: Tensor) -> Tensor:
        """The hook: maps (B, K, h, w) of ``classes`` (B, K) for one batch (normalized images in
        ``batch["input"]``) and the evaluation step's ``outputs``."""
        raise NotImplementedError

    def batch_maps(self, pl_module: L.LightningModule, outputs: dict[str, Tensor],
                   batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """The scored classes (B, 1 + k): the ground truth, then the top k = min(5, C) by logit;
        and their maps (B, 1 + k, h, w). Computed once per batch."""
        if self._kept is not None and self._kept[0] is batch:
            return self._kept[1], self._kept[2]
        logits = outputs["logits"]
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        classes = torch.cat([batch["label"][:, None], top], dim=1)
        maps = self.class_maps(pl_module, outputs, batch, classes)
        self._kept = (batch, classes, maps)
        return classes, maps

    def close(self) -> None:
        """After an evaluation epoch: let go of the kept maps (and of any hooks)."""
        self._kept = None
