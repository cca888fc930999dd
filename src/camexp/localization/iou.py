"""Box IoU with the field's inclusive-pixel convention (docs/protocol.md).

Boxes are ``(x0, y0, x1, y1)`` with both corners *inside* the box (inclusive pixels):
``width = x1 - x0 + 1`` and ``height = y1 - y0 + 1``. The intersection of two boxes has width
``max(0, min(x1) - max(x0) + 1)``. IoU is computed in float64 from exact integer areas; a
non-positive union (only possible for malformed boxes) gives IoU 0, as in the field's code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_iou", "max_iou"]


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(boxes)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x0, y0, x1, y1); got {arr.shape}.")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64, copy=False)
    return arr.astype(np.float64, copy=False)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two box sets, inclusive-pixel convention.

    Args:
        boxes_a: ``(N, 4)`` boxes ``(x0, y0, x1, y1)`` (a single ``(4,)`` box is accepted).
        boxes_b: ``(M, 4)`` boxes.

    Returns:
        ``(N, M)`` float64 IoU; 0 where the union is not positive.
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    ix = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    iy = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.maximum(ix, 0) * np.maximum(iy, 0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    positive = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(positive, inter / np.where(positive, union, 1), 0.0)
    return iou.astype(np.float64, copy=False)


def max_iou(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """Best IoU of each box against any ground-truth box.

    Args:
        boxes: ``(N, 4)`` predicted boxes.
        gt_boxes: ``(K, 4)`` ground-truth boxes, ``K >= 1``.

    Returns:
        ``(N,)`` float64.
    """
    return box_iou(boxes, gt_boxes).max(axis=1)
