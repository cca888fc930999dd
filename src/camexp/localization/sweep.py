"""Shared types of the threshold sweep (fast and reference implementations)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BoxSweep", "as_gt_boxes", "iou_fractions"]


@dataclass(frozen=True)
class BoxSweep:
    """Per-threshold correctness of one map against its ground-truth boxes.

    Attributes:
        multi: ``(L, T)`` bool; ``multi[l, t]`` is True when the best box over *all* contours of
            the mask at ``thresholds[t]`` has IoU ``>= iou_thresholds[l] / 100`` with some
            ground-truth box (MaxBoxAccV2 with ``multi_contour=True``).
        largest: ``(L, T)`` bool; same for the box of the contour of largest polygon area only
            (MaxBoxAcc, V1, and V2 with ``multi_contour=False``).
    """

    multi: np.ndarray
    largest: np.ndarray

    def select(self, multi_contour: bool) -> np.ndarray:
        """``multi`` if ``multi_contour`` else ``largest``."""
        return self.multi if multi_contour else self.largest


def iou_fractions(iou_thresholds: Sequence[float]) -> np.ndarray:
    """IoU thresholds given in percent (e.g. ``[30, 50, 70]``) -> float64 ``thr / 100``.

    Raises:
        ValueError: if empty or outside ``(0, 100]``.
    """
    thr = np.asarray(list(iou_thresholds), dtype=np.float64).reshape(-1)
    if thr.size == 0 or (thr <= 0).any() or (thr > 100).any():
        raise ValueError(
            "IoU thresholds are percentages in (0, 100], e.g. [30, 50, 70]; "
            f"got {list(iou_thresholds)!r}."
        )
    return thr / 100


def as_gt_boxes(gt_boxes: np.ndarray) -> np.ndarray:
    """Ground-truth boxes as an ``(K, 4)`` array, ``K >= 1`` (int64 when integral, else float64).

    Raises:
        ValueError: for a wrong shape, no box, non-finite values or inverted corners.
    """
    arr = np.asarray(gt_boxes)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
        raise ValueError(f"gt_boxes must have shape (K, 4) with K >= 1; got {arr.shape}.")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64, copy=False)
    else:
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            raise ValueError(f"gt_boxes must be finite; got {arr.tolist()}.")
        if np.array_equal(arr, np.trunc(arr)):
            arr = arr.astype(np.int64)
    if (arr[:, 2] < arr[:, 0]).any() or (arr[:, 3] < arr[:, 1]).any():
        raise ValueError(
            f"gt_boxes must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0; got {arr.tolist()}."
        )
    return arr
