"""Straightforward reference of the threshold sweep (the field's algorithm, plain loops).

For each threshold ``tau``: threshold the quantized map at ``int(tau * max)``, run
``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, turn every contour into a box, pick the
largest-area contour for V1, and compare with the ground-truth boxes using plain Python IoU
loops. It exists to check :func:`camexp.localization.fast.box_sweep` count for count and as a
readable statement of the protocol; it is about 4-7 times slower on 224x224 maps
(``bench/bench_localization.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from camexp.localization.maps import as_quantized
from camexp.localization.sweep import BoxSweep, as_gt_boxes

__all__ = ["iou_inclusive", "reference_box_sweep", "reference_boxes_at_level"]


def iou_inclusive(box: Sequence[float], gt: Sequence[float]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes with inclusive pixels (0 for a non-positive union)."""
    ix = min(box[2], gt[2]) - max(box[0], gt[0]) + 1
    iy = min(box[3], gt[3]) - max(box[1], gt[1]) + 1
    inter = max(ix, 0) * max(iy, 0)
    area_box = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    area_gt = (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1)
    union = area_box + area_gt - inter
    return inter / union if union > 0 else 0.0


def reference_boxes_at_level(
    quantized: np.ndarray, level: int
) -> tuple[list[tuple[int, int, int, int]], tuple[int, int, int, int]]:
    """All contour boxes and the largest-area contour's box of ``quantized > level``.

    Returns:
        ``(boxes, largest)``; ``([(0, 0, 0, 0)], (0, 0, 0, 0))`` for an empty mask.
    """
    height, width = quantized.shape
    _, mask = cv2.threshold(quantized, level, 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 0:
        return [(0, 0, 0, 0)], (0, 0, 0, 0)
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append((x, y, min(x + w, width - 1), min(y + h, height - 1)))
    areas = [cv2.contourArea(contour) for contour in contours]
    largest = boxes[areas.index(max(areas))]
    return boxes, largest


def reference_box_sweep(
    score_map: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: Sequence[float],
    iou_thresholds: Sequence[float] = (30, 50, 70),
) -> BoxSweep:
    """Per-threshold correctness, one ``findContours`` per threshold.

    Args:
        score_map: ``(H, W)`` uint8 quantized map, or a ``[0, 1]`` float map at evaluation size.
        gt_boxes: ``(K, 4)`` ground-truth boxes ``(x0, y0, x1, y1)`` at evaluation size.
        thresholds: ``(T,)`` CAM thresholds ``tau`` (float64, e.g. ``cam_thresholds()``).
        iou_thresholds: IoU thresholds in percent.

    Returns:
        :class:`BoxSweep` with ``(L, T)`` bool arrays.
    """
    quantized = as_quantized(score_map)
    gts = [tuple(box) for box in as_gt_boxes(gt_boxes).tolist()]
    ious = [float(t) / 100 for t in iou_thresholds]
    taus = [float(t) for t in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    max_value = int(quantized.max())
    multi = np.zeros((len(ious), len(taus)), dtype=bool)
    largest_ok = np.zeros((len(ious), len(taus)), dtype=bool)
    for t, tau in enumerate(taus):
        boxes, largest = reference_boxes_at_level(quantized, int(tau * max_value))
        best = max(max(iou_inclusive(box, gt) for gt in gts) for box in boxes)
        best_largest = max(iou_inclusive(largest, gt) for gt in gts)
        for i, thr in enumerate(ious):
            multi[i, t] = best >= thr
            largest_ok[i, t] = best_largest >= thr
    return BoxSweep(multi=multi, largest=largest_ok)
