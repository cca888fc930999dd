"""A paper's own box rule and its top-1 / top-5 / GT-known localization accuracies
(docs/protocol.md, "A paper's own box rule").

Papers since 2021 (BAS, TS-CAM, SAT, ...) report top-1 / top-5 / GT-known localization with
their own fixed rule instead of the field's threshold sweep: the map resized to the image,
min-max normalized, the pixels above a threshold, one box. :class:`BoxRule` states such a rule
(``localization.box_rule``) and :class:`RuleLocalization` counts its accuracies, logged as
``top1_loc``, ``top5_loc`` and ``gt_known_loc`` (%, higher is better) so that runs compare with
the published rows that state the same rule (``box:`` in ``conf/published.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from camexp.localization.boxes import largest_contour_box, paper_box
from camexp.localization.iou import box_iou
from camexp.localization.maps import INTERPOLATIONS, as_size, normalize_map
from camexp.localization.metrics import _gt_boxes

RESIZES = INTERPOLATIONS
GT_KNOWN_MAPS = ("ground_truth", "top1_prediction")
# the one box of a normalized map at a fraction of its maximum: the 8-connected component of
# most pixels (the 2016 paper's, SAT's), or TS-CAM's contour of largest area on the
# uint8-quantized map
RULES = {"largest_component": paper_box, "largest_contour": largest_contour_box}


@dataclass(frozen=True)
class BoxRule:
    """A box rule: ``resize`` the map to the image (``bicubic``, camexp's, or ``bilinear``),
    min-max normalize it, keep the pixels above ``threshold`` (a fraction of the normalized
    maximum), box the ``rule``'s region (``largest_component``, 8-connected, or
    ``largest_contour``); a box is correct at IoU >= ``iou``. GT-known scores the map of
    ``gt_known_map`` (``ground_truth``, or ``top1_prediction``: the top-1 predicted class's
    map, as some papers' code does)."""

    rule: str
    threshold: float
    iou: float = 0.5
    resize: str = "bicubic"
    gt_known_map: str = "ground_truth"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], error: type[Exception] = ValueError) -> BoxRule:
        """The rule of a ``localization.box_rule`` mapping, each key checked (``error`` names it)."""
        from camexp.core.values import check_choice, check_fraction

        known = {"rule", "threshold", "iou", "resize", "gt_known_map"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise error(f"localization.box_rule has unknown keys {unknown}; it takes "
                        f"{sorted(known)} (docs/protocol.md).")
        where = "localization.box_rule"
        return cls(
            rule=check_choice(f"{where}.rule", config.get("rule"), error, RULES),
            threshold=check_fraction(f"{where}.threshold", config.get("threshold"), error,
                                     high_open=True),
            iou=check_fraction(f"{where}.iou", config.get("iou", 0.5), error, low_open=True),
            resize=check_choice(f"{where}.resize", config.get("resize", "bicubic"), error, RESIZES),
            gt_known_map=check_choice(f"{where}.gt_known_map",
                                      config.get("gt_known_map", "ground_truth"), error,
                                      GT_KNOWN_MAPS),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def normalized(self, raw_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """``raw_map`` resized to ``size`` (H, W) by the rule's interpolation, min-max
        normalized (a constant map becomes zeros)."""
        return normalize_map(raw_map, size, self.resize)

    def box(self, raw_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The rule's box ``(x0, y0, x1, y1)`` of a raw map at the image size."""
        return RULES[self.rule](self.normalized(raw_map, size), self.threshold)


class RuleLocalization(Metric):
    """``top1_loc``, ``top5_loc``, ``gt_known_loc`` (%) under a :class:`BoxRule`.

    * ``top1_loc``: the top-1 class is the label and its map's box is correct.
    * ``top5_loc``: the label is among the given top-k classes and its map's box is correct.
    * ``gt_known_loc``: the box of the ``gt_known_map`` is correct, whatever the prediction.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    top1_correct: Tensor
    top5_correct: Tensor
    gt_known_correct: Tensor
    num_images: Tensor

    def __init__(self, rule: BoxRule, image_size: int | Sequence[int] = (224, 224),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule
        self.image_size = as_size(image_size)
        for state in ("top1_correct", "top5_correct", "gt_known_correct", "num_images"):
            self.add_state(state, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _correct(self, raw_map: Tensor, gt: np.ndarray) -> bool:
        box = self.rule.box(raw_map.detach().to("cpu", torch.float64).numpy(), self.image_size)
        return bool(box_iou(box[None, :], gt).max() >= self.rule.iou)

    def update(self, gt_maps: Tensor, topk_classes: Tensor, labels: Tensor, boxes: Tensor,
               num_boxes: Tensor, topk_maps: Tensor) -> None:
        """One batch: ``gt_maps`` (B, h, w) of the labels, ``topk_classes`` (B, k) best first
        with their maps ``topk_maps`` (B, k, h, w), ``labels`` (B,), ground-truth ``boxes``
        (B, K, 4) at the image size with ``num_boxes`` (B,) valid rows."""
        top1 = top5 = known = 0
        classes = topk_classes.detach().cpu()
        targets = labels.detach().cpu()
        for b in range(len(gt_maps)):
            gt = _gt_boxes(boxes, num_boxes, b, self.image_size)
            known_map = gt_maps[b] if self.rule.gt_known_map == "ground_truth" else topk_maps[b, 0]
            known += self._correct(known_map, gt)
            ranks = (classes[b] == targets[b]).nonzero().flatten()
            if len(ranks):
                rank = int(ranks[0])
                hit = self._correct(topk_maps[b, rank], gt)
                top1 += int(hit and rank == 0)
                top5 += int(hit)
        self.top1_correct += top1
        self.top5_correct += top5
        self.gt_known_correct += known
        self.num_images += len(gt_maps)

    def compute(self) -> dict[str, Tensor]:
        n = int(self.num_images)
        if n == 0:
            raise ValueError("RuleLocalization.compute() called before any sample was counted.")
        values = {"top1_loc": self.top1_correct, "top5_loc": self.top5_correct,
                  "gt_known_loc": self.gt_known_correct}
        return {key: torch.tensor(100.0 * int(v) / n, dtype=torch.float32, device=self.device)
                for key, v in values.items()}
