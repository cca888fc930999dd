"""torchmetrics ``Metric`` classes for localization (docs/protocol.md).

All states are counts with ``dist_reduce_fx="sum"``, so they synchronize across DDP processes
and two metrics updated on two halves of a split sum to one metric updated on all of it.

Common input conventions:

* ``maps``: float tensor ``(B, h, w)`` of raw scores at any resolution (any device). Each map is
  moved to the CPU, cast to float64, resized to ``image_size`` (bicubic) and min-max normalized
  (:func:`~camexp.localization.maps.normalize_map`).
* ``boxes``: tensor ``(B, K, 4)`` of ground-truth boxes ``(x0, y0, x1, y1)`` in pixels of the
  image *already scaled to* ``image_size`` (the field scales by ``224 / W`` and floors); non-integer
  values are floored. Rows ``k >= num_boxes[b]`` are padding and ignored. Valid boxes satisfy
  ``0 <= x0 <= x1 <= W`` and ``0 <= y0 <= y1 <= H``; anything else raises
  :class:`~camexp.localization.boxes.BoxError`.
* ``num_boxes``: integer tensor ``(B,)``, at least 1 per evaluated sample.
* ``mask``: optional bool tensor ``(B,)``; samples with False are skipped (e.g. the duplicates a
  distributed sampler pads the last batch with).

Maps with NaN or infinite values raise :class:`~camexp.localization.maps.MapError` (the field
silently turns them into zeros; here a diverged model stops the evaluation instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from camexp.localization.box_accuracy import BoxAccuracy
from camexp.localization.boxes import BOX_RULES, check_boxes
from camexp.localization.fast import box_sweep_counts
from camexp.localization.iou import box_iou
from camexp.localization.maps import INTERPOLATIONS, as_size, cam_thresholds, normalize_map
from camexp.localization.pxap import (
    pxap_bin_edges,
    pxap_curve,
    pxap_from_histograms,
    pxap_histograms,
)

__all__ = ["GT_KNOWN_MAPS", "MaxBoxAcc", "MaxBoxAccV2", "PaperLocalization", "PxAP"]

# which map a paper's GT-known accuracy boxes: the ground-truth class's (the 2016 paper's), or
# the top-1 predicted class's (SCM's code)
GT_KNOWN_MAPS = ("ground_truth", "top1_prediction")


def _maps_numpy(maps: Tensor, name: str = "maps") -> np.ndarray:
    """``(B, h, w)`` tensor -> float64 numpy array on the CPU."""
    if not isinstance(maps, Tensor):
        maps = torch.as_tensor(maps)
    if maps.ndim != 3:
        raise ValueError(
            f"{name} must have shape (B, h, w), one map per sample; got {tuple(maps.shape)}. "
            "Select the map of one class per sample before calling update()."
        )
    return maps.detach().to(device="cpu", dtype=torch.float64).numpy()


def _selected(mask: Tensor | None, batch: int) -> np.ndarray:
    """Bool ``(B,)`` of the samples to evaluate."""
    if mask is None:
        return np.ones(batch, dtype=bool)
    keep = torch.as_tensor(mask).detach().to("cpu").reshape(-1).numpy().astype(bool)
    if keep.shape[0] != batch:
        raise ValueError(f"mask must have shape ({batch},); got {tuple(keep.shape)}.")
    return keep


def _gt_boxes(boxes: Tensor, num_boxes: Tensor, index: int, size: tuple[int, int]) -> np.ndarray:
    """Valid ground-truth boxes of sample ``index`` as ``(k, 4)`` int64 (floored, checked)."""
    count = int(num_boxes[index])
    arr = boxes[index, :count].detach().to("cpu", torch.float64).numpy()
    height, width = size
    checked = check_boxes(
        np.floor(arr), width=width, height=height, where=f"sample {index} of the batch"
    )
    return checked.astype(np.int64)


def _check_batch(boxes: Tensor, num_boxes: Tensor, batch: int) -> None:
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
        raise ValueError(f"boxes must have shape ({batch}, K, 4); got {tuple(boxes.shape)}.")
    if tuple(num_boxes.shape) != (batch,):
        raise ValueError(f"num_boxes must have shape ({batch},); got {tuple(num_boxes.shape)}.")
    if batch and int(num_boxes.max()) > boxes.shape[1]:
        raise ValueError(
            f"num_boxes has a count {int(num_boxes.max())} larger than the K={boxes.shape[1]} "
            "rows of boxes."
        )


class _MaxBoxAccBase(Metric):
    """Per-threshold box accuracy counts, the states of a
    :class:`~camexp.localization.box_accuracy.BoxAccuracy`; see :class:`MaxBoxAcc` and
    :class:`MaxBoxAccV2`."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    num_correct: Tensor
    num_images: Tensor

    def __init__(
        self,
        name: str,
        iou_thresholds: Sequence[float],
        multi_contour: bool,
        cam_curve_interval: float = 0.001,
        image_size: int | Sequence[int] = (224, 224),
        report_v1: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.report_v1 = bool(report_v1)
        self.image_size = as_size(image_size)
        self.thresholds = cam_thresholds(cam_curve_interval)
        self.box_accuracy = BoxAccuracy(self.thresholds, iou_thresholds, multi_contour,
                                        v1=self.report_v1, name=name)
        self.iou_thresholds = self.box_accuracy.iou_thresholds
        self.multi_contour = self.box_accuracy.multi_contour
        self.add_state("num_correct", default=torch.from_numpy(self.box_accuracy.correct.copy()),
                       dist_reduce_fx="sum")
        self.add_state(
            "num_images", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum"
        )
        if self.report_v1:  # the sweep gives the largest contour's counts too: keep V1's
            self.add_state("num_correct_v1", default=torch.zeros(len(self.thresholds),
                                                                 dtype=torch.long),
                           dist_reduce_fx="sum")

    def update(
        self, maps: Tensor, boxes: Tensor, num_boxes: Tensor, mask: Tensor | None = None
    ) -> None:
        """Count, per CAM threshold, the samples whose box is correct.

        Args:
            maps: ``(B, h, w)`` raw maps of the ground-truth class.
            boxes: ``(B, K, 4)`` ground-truth boxes at ``image_size``.
            num_boxes: ``(B,)`` number of valid rows of ``boxes``.
            mask: optional ``(B,)`` bool, False = skip the sample.
        """
        raw = _maps_numpy(maps)
        batch = raw.shape[0]
        _check_batch(boxes, num_boxes, batch)
        keep = _selected(mask, batch)
        items = [
            (raw[b], _gt_boxes(boxes, num_boxes, b, self.image_size))
            for b in range(batch)
            if keep[b]
        ]
        if not items:
            return
        part = self.box_accuracy.empty()
        part.add(*box_sweep_counts(items, self.thresholds, part.sweep_ious, size=self.image_size))
        device = self.num_correct.device
        self.num_correct += torch.from_numpy(part.correct).to(device)
        if self.report_v1:
            self.num_correct_v1 += torch.from_numpy(part.correct_v1).to(device)
        self.num_images += part.num_images

    def _accumulated(self) -> BoxAccuracy:
        """The accumulator holding this metric's (current, possibly synced) states."""
        v1 = self.num_correct_v1.cpu().numpy() if self.report_v1 else None
        return self.box_accuracy.with_counts(self.num_correct.cpu().numpy(), v1,
                                             int(self.num_images))

    def compute(self) -> dict[str, Tensor]:
        """Accuracies in percent and best thresholds; see the subclass for the key names."""
        return {
            k: torch.tensor(v, dtype=torch.float32, device=self.device)
            for k, v in self._accumulated().results().items()
        }

    def curve(self) -> dict[str, Any]:
        """The accuracy-vs-threshold curve of the whole split, for plots and CSV files
        (:meth:`~camexp.localization.box_accuracy.BoxAccuracy.curve`).

        The states are summed over DDP processes first, so every process must call it.
        """
        with self.sync_context():
            return self._accumulated().curve()


class MaxBoxAcc(_MaxBoxAccBase):
    """MaxBoxAcc (V1): the largest-area contour's box, IoU >= 50 %, best threshold for the split.

    ``compute()`` returns ``{"MaxBoxAcc": acc %, "MaxBoxAcc_best_tau": tau}``.

    Args:
        iou_threshold: IoU threshold in percent (50 in the field).
        cam_curve_interval: spacing of the CAM thresholds ``arange(0, 1, interval)``.
        image_size: evaluation ``(H, W)`` (or int).
    """

    def __init__(
        self,
        iou_threshold: float = 50,
        cam_curve_interval: float = 0.001,
        image_size: int | Sequence[int] = (224, 224),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            "MaxBoxAcc",
            [iou_threshold],
            multi_contour=False,
            cam_curve_interval=cam_curve_interval,
            image_size=image_size,
            **kwargs,
        )


class MaxBoxAccV2(_MaxBoxAccBase):
    """MaxBoxAccV2: best box over all contours, at several IoU thresholds, mean reported.

    ``compute()`` returns ``{"MaxBoxAccV2": mean %, "MaxBoxAccV2_IoU30": %, "MaxBoxAccV2_IoU50": %,
    "MaxBoxAccV2_IoU70": %, "MaxBoxAccV2_best_tau_IoU30": tau, ..._IoU50, ..._IoU70}`` (the
    suffixes follow ``iou_thresholds``; with a single threshold the keys are ``"MaxBoxAccV2"`` and
    ``"MaxBoxAccV2_best_tau"``).

    Args:
        iou_thresholds: IoU thresholds in percent.
        multi_contour: False evaluates only the largest-area contour (the field's option).
        cam_curve_interval: spacing of the CAM thresholds.
        image_size: evaluation ``(H, W)`` (or int).
        report_v1: also return ``"MaxBoxAcc"`` and ``"MaxBoxAcc_best_tau"`` (V1: the largest
            contour's box at IoU 50, swept along with ``iou_thresholds``), from the same
            threshold sweep: one sweep per map instead of one per metric.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (30, 50, 70),
        multi_contour: bool = True,
        cam_curve_interval: float = 0.001,
        image_size: int | Sequence[int] = (224, 224),
        report_v1: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            "MaxBoxAccV2",
            iou_thresholds,
            multi_contour=multi_contour,
            cam_curve_interval=cam_curve_interval,
            image_size=image_size,
            report_v1=report_v1,
            **kwargs,
        )


class PaperLocalization(Metric):
    """The paper's localization numbers at a fixed threshold (docs/protocol.md).

    The box of a map is :func:`~camexp.localization.boxes.paper_box` (largest 8-connected
    component above ``fraction`` of the normalized map's maximum); it is correct when its IoU
    (inclusive pixels) with some ground-truth box is ``>= iou_threshold``.

    * ``loc_top1_err``: 100 - % of samples whose top-1 class is the label and whose box is correct.
    * ``loc_top5_err``: 100 - % of samples whose label is among the given top-k classes (k = 5
      normally; all given columns are used) and whose box for that class is correct.
    * ``loc_gt_known``: % of samples whose ground-truth-class box is correct (CorLoc).

    Only the label's class can make a top-k guess right, and its map is the ground-truth-class
    map, so ``topk_maps`` is optional: without it, the label's box is the ``gt_maps`` box.

    ``compute()`` returns ``{"loc_top1_err": %, "loc_top5_err": %, "loc_gt_known": %}``.

    A later paper's own rule (``localization.box_rule``) is the same count with other settings:
    ``rule`` (``largest_component``, above; ``largest_contour``: TS-CAM's,
    :func:`~camexp.localization.boxes.largest_contour_box`), ``resize`` (``bicubic``, the field's;
    ``bilinear``) and ``gt_known_map`` (``ground_truth``; ``top1_prediction``: the top-1
    predicted class's map, as SCM's code scores GT-known, which needs ``topk_maps``); with
    ``accuracies=True`` it returns ``{"top1_loc", "top5_loc", "gt_known_loc"}`` (accuracies, %),
    as those papers report.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    top1_correct: Tensor
    top5_correct: Tensor
    gt_known_correct: Tensor
    num_images: Tensor

    def __init__(
        self,
        fraction: float = 0.2,
        iou_threshold: float = 0.5,
        image_size: int | Sequence[int] = (224, 224),
        rule: str = "largest_component",
        resize: str = "bicubic",
        gt_known_map: str = "ground_truth",
        accuracies: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fraction = float(fraction)
        self.iou_threshold = float(iou_threshold)
        self.image_size = as_size(image_size)
        for name, value, allowed in (("rule", rule, BOX_RULES), ("resize", resize, INTERPOLATIONS),
                                     ("gt_known_map", gt_known_map, GT_KNOWN_MAPS)):
            if value not in allowed:
                raise ValueError(f"{name}={value!r}; use one of {sorted(allowed)}.")
        self.box = BOX_RULES[rule]
        self.resize = resize
        self.gt_known_map = gt_known_map
        self.accuracies = bool(accuracies)
        for state in ("top1_correct", "top5_correct", "gt_known_correct", "num_images"):
            self.add_state(state, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _box_correct(self, raw_map: np.ndarray, gt: np.ndarray) -> bool:
        box = self.box(normalize_map(raw_map, self.image_size, self.resize), self.fraction)
        return bool(box_iou(box[None, :], gt).max() >= self.iou_threshold)

    def update(
        self,
        gt_maps: Tensor,
        topk_classes: Tensor,
        labels: Tensor,
        boxes: Tensor,
        num_boxes: Tensor,
        topk_maps: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> None:
        """Accumulate one batch.

        Args:
            gt_maps: ``(B, h, w)`` raw maps of the ground-truth class.
            topk_classes: ``(B, k)`` predicted classes, best first.
            labels: ``(B,)`` ground-truth classes.
            boxes: ``(B, K, 4)`` ground-truth boxes at ``image_size``.
            num_boxes: ``(B,)`` valid rows of ``boxes``.
            topk_maps: optional ``(B, k, h, w)`` raw maps of the top-k classes.
            mask: optional ``(B,)`` bool, False = skip the sample.
        """
        raw = _maps_numpy(gt_maps, "gt_maps")
        batch = raw.shape[0]
        _check_batch(boxes, num_boxes, batch)
        keep = _selected(mask, batch)
        classes = torch.as_tensor(topk_classes).detach().cpu().reshape(batch, -1).numpy()
        targets = torch.as_tensor(labels).detach().cpu().reshape(-1).numpy()
        if targets.shape[0] != batch:
            raise ValueError(f"labels must have shape ({batch},); got {tuple(targets.shape)}.")
        extra = None if topk_maps is None else torch.as_tensor(topk_maps).detach()
        if self.gt_known_map == "top1_prediction" and extra is None:
            raise ValueError("gt_known_map='top1_prediction' needs topk_maps (the predicted classes' maps).")
        top1 = top5 = gt_known = count = 0
        for b in range(batch):
            if not keep[b]:
                continue
            gt = _gt_boxes(boxes, num_boxes, b, self.image_size)
            known = self._box_correct(raw[b], gt)
            if self.gt_known_map == "top1_prediction":
                predicted = bool(classes[b, 0] == targets[b])
                known_map = known if predicted else self._box_correct(_maps_numpy(extra[b, :1])[0], gt)
            else:
                known_map = known
            ranks = np.flatnonzero(classes[b] == targets[b])
            if ranks.size:
                rank = int(ranks[0])
                if extra is None:
                    hit = known
                else:
                    hit = self._box_correct(_maps_numpy(extra[b, rank : rank + 1])[0], gt)
                top1 += int(hit and rank == 0)
                top5 += int(hit)
            gt_known += int(known_map)
            count += 1
        self.top1_correct += top1
        self.top5_correct += top5
        self.gt_known_correct += gt_known
        self.num_images += count

    def compute(self) -> dict[str, Tensor]:
        """``{"loc_top1_err", "loc_top5_err", "loc_gt_known"}`` in percent."""
        n = int(self.num_images)
        if n == 0:
            raise ValueError("PaperLocalization.compute() called before any sample was counted.")
        if self.accuracies:
            values = {"top1_loc": 100.0 * int(self.top1_correct) / n,
                      "top5_loc": 100.0 * int(self.top5_correct) / n,
                      "gt_known_loc": 100.0 * int(self.gt_known_correct) / n}
            return {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in values.items()}
        values = {
            "loc_top1_err": 100.0 - 100.0 * int(self.top1_correct) / n,
            "loc_top5_err": 100.0 - 100.0 * int(self.top5_correct) / n,
            "loc_gt_known": 100.0 * int(self.gt_known_correct) / n,
        }
        return {
            k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in values.items()
        }


class PxAP(Metric):
    """Pixel average precision from pooled histograms (see :mod:`camexp.localization.pxap`).

    States are the per-bin positive and negative pixel counts (``T + 2`` bins, 1002 with the
    default interval 0.001), summed across processes.

    ``compute()`` returns ``{"PxAP": %}``; :meth:`curve` gives precision and recall.

    Args:
        cam_curve_interval: bin width (the field's threshold list).
        image_size: evaluation ``(H, W)``; maps are resized and normalized to it, masks of another
            size are resized with nearest-neighbour interpolation.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    positive_hist: Tensor
    negative_hist: Tensor

    def __init__(
        self,
        cam_curve_interval: float = 0.001,
        image_size: int | Sequence[int] = (224, 224),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_size = as_size(image_size)
        self.edges = pxap_bin_edges(cam_curve_interval)
        bins = len(self.edges) - 1
        self.add_state(
            "positive_hist", default=torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state(
            "negative_hist", default=torch.zeros(bins, dtype=torch.long), dist_reduce_fx="sum"
        )

    def _mask_numpy(self, masks: Tensor, index: int) -> np.ndarray:
        arr = torch.as_tensor(masks[index]).detach().to("cpu").numpy()
        if arr.ndim != 2:
            raise ValueError(
                f"masks must have shape (B, H, W); sample {index} has shape {arr.shape}."
            )
        height, width = self.image_size
        if arr.shape != (height, width):
            arr = cv2.resize(
                arr.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST
            )
        return arr > 0.5

    def update(
        self,
        maps: Tensor,
        gt_masks: Tensor,
        ignore_masks: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> None:
        """Accumulate histograms.

        Args:
            maps: ``(B, h, w)`` raw maps.
            gt_masks: ``(B, H, W)`` ground-truth foreground (bool or 0/1).
            ignore_masks: optional ``(B, H, W)`` region to drop where not foreground.
            mask: optional ``(B,)`` bool, False = skip the sample.
        """
        raw = _maps_numpy(maps)
        batch = raw.shape[0]
        keep = _selected(mask, batch)
        pos_total = np.zeros(len(self.edges) - 1, dtype=np.int64)
        neg_total = np.zeros_like(pos_total)
        for b in range(batch):
            if not keep[b]:
                continue
            fg = self._mask_numpy(gt_masks, b)
            ignore = None if ignore_masks is None else self._mask_numpy(ignore_masks, b)
            pos, neg = pxap_histograms(
                normalize_map(raw[b], self.image_size), fg, ignore, self.edges
            )
            pos_total += pos
            neg_total += neg
        self.positive_hist += torch.from_numpy(pos_total).to(self.positive_hist.device)
        self.negative_hist += torch.from_numpy(neg_total).to(self.negative_hist.device)

    def compute(self) -> dict[str, Tensor]:
        """``{"PxAP": %}``."""
        value = pxap_from_histograms(
            self.positive_hist.cpu().numpy(), self.negative_hist.cpu().numpy()
        )
        return {"PxAP": torch.tensor(value, dtype=torch.float32, device=self.device)}

    def curve(self) -> dict[str, np.ndarray]:
        """``{"thresholds": lower bin edges, top bin first, "precision", "recall", "valid"}``,
        from the histograms summed over DDP processes (every process must call it)."""
        with self.sync_context():
            precision, recall, valid = pxap_curve(
                self.positive_hist.cpu().numpy(), self.negative_hist.cpu().numpy()
            )
        return {
            "thresholds": self.edges[:-1][::-1].copy(),
            "precision": precision,
            "recall": recall,
            "valid": valid,
        }
