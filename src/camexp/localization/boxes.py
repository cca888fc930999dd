"""Boxes from masks and maps, and ground-truth box checks (docs/protocol.md).

Box convention (the field's): ``(x0, y0, x1, y1)`` int64, ``x`` = column, ``y`` = row. A box
estimated from a contour with OpenCV bounding rectangle ``(x, y, w, h)`` is
``(x, y, x + w, y + h)`` with ``x1`` clipped to ``W - 1`` and ``y1`` to ``H - 1``. IoU then treats
both corners as inclusive (see :mod:`camexp.localization.iou`), so such a box is one pixel larger
than the pixels it covers unless clipped; this is the field's convention, kept on purpose so that
numbers stay comparable. An empty mask gives the box ``(0, 0, 0, 0)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from camexp.core.errors import BoxError
from camexp.localization.maps import as_size

__all__ = [
    "BoxError",
    "EMPTY_BOX",
    "check_boxes",
    "contour_boxes",
    "largest_contour_box",
    "mask_boxes",
    "paper_box",
    "scale_boxes",
]

EMPTY_BOX = np.zeros(4, dtype=np.int64)


def check_boxes(
    boxes: np.ndarray,
    width: float | None = None,
    height: float | None = None,
    where: str = "boxes",
) -> np.ndarray:
    """Validate ground-truth boxes ``(K, 4)`` as ``(x0, y0, x1, y1)``.

    Requires ``K >= 1``, finite values, ``0 <= x0 <= x1`` and ``0 <= y0 <= y1``, and, when the
    image size is given, ``x1 <= width`` and ``y1 <= height`` (``x1 == width`` is allowed: scaled
    boxes of the field reach it).

    Args:
        boxes: ``(K, 4)`` array.
        width: image width in the boxes' coordinates, or None to skip the upper bound.
        height: image height, or None.
        where: text naming the boxes' origin in error messages (image id, file, line).

    Returns:
        The boxes as a float64 ``(K, 4)`` array.

    Raises:
        BoxError: one paragraph naming ``where``, the offending box and the fix.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise BoxError(
            f"{where}: boxes must have shape (K, 4) as (x0, y0, x1, y1); got {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise BoxError(
            f"{where}: no ground-truth box. Every evaluated image needs at least one box; "
            "drop the image from the split or add its box."
        )
    for k, (x0, y0, x1, y1) in enumerate(arr.tolist()):
        box = f"box {k} (x0, y0, x1, y1) = ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if not np.isfinite([x0, y0, x1, y1]).all():
            raise BoxError(f"{where}: {box} is not finite. Fix the annotation.")
        if x0 < 0 or y0 < 0:
            raise BoxError(
                f"{where}: {box} has a negative corner. Boxes are in pixels of the image with "
                "the origin at the top-left corner; fix or clip the annotation."
            )
        if x1 < x0 or y1 < y0:
            raise BoxError(
                f"{where}: {box} has x1 < x0 or y1 < y0. Boxes must be (x0, y0, x1, y1) corners, "
                "not (x, y, width, height); convert with x1 = x + width, y1 = y + height."
            )
        if (width is not None and x1 > width) or (height is not None and y1 > height):
            raise BoxError(
                f"{where}: {box} lies outside the image of size (W, H) = ({width:g}, {height:g}). "
                "Check that the box and the image size refer to the same image, or clip the box."
            )
    return arr


def scale_boxes(
    boxes: np.ndarray, image_wh: Sequence[float], size: int | Sequence[int] = (224, 224)
) -> np.ndarray:
    """Scale boxes from the original image to the evaluation size and floor them (the field's).

    Each coordinate becomes ``int(x * new_W / W)`` (or the ``H`` analogue), float64 arithmetic in
    that order, truncation toward zero.

    Args:
        boxes: ``(K, 4)`` boxes in original-image pixels.
        image_wh: original ``(W, H)``.
        size: evaluation ``(H, W)``.

    Returns:
        ``(K, 4)`` int64 boxes.
    """
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    new_h, new_w = as_size(size)
    w, h = (float(v) for v in image_wh)
    scale = np.array([new_w, new_h, new_w, new_h], dtype=np.float64)
    orig = np.array([w, h, w, h], dtype=np.float64)
    return np.trunc(arr * scale / orig).astype(np.int64)


def _as_mask_u8(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W); got shape {arr.shape}.")
    if arr.dtype == np.uint8:
        return arr
    return (arr != 0).astype(np.uint8)


def contour_boxes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and polygon areas of all contours of a binary mask (the field's rule).

    Contours come from ``cv2.findContours(mask, RETR_TREE, CHAIN_APPROX_SIMPLE)``: outer
    contours of the 8-connected foreground components and hole contours, in OpenCV's order.

    Args:
        mask: ``(H, W)`` binary mask (bool, or uint8 with nonzero = foreground).

    Returns:
        boxes: ``(C, 4)`` int64, ``(x, y, min(x + w, W - 1), min(y + h, H - 1))`` per contour.
        areas: ``(C,)`` float64 ``cv2.contourArea`` per contour. ``C = 0`` for an empty mask.
    """
    m = _as_mask_u8(mask)
    height, width = m.shape
    contours, _ = cv2.findContours(m, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    boxes = np.zeros((len(contours), 4), dtype=np.int64)
    areas = np.zeros(len(contours), dtype=np.float64)
    for i, contour in enumerate(contours):
        x, y, w, h = cv2.boundingRect(contour)
        boxes[i] = (x, y, min(x + w, width - 1), min(y + h, height - 1))
        areas[i] = cv2.contourArea(contour)
    return boxes, areas


def mask_boxes(mask: np.ndarray, multi_contour: bool = True) -> np.ndarray:
    """Estimated boxes of a mask, as the field evaluates them.

    Args:
        mask: ``(H, W)`` binary mask.
        multi_contour: True -> one box per contour (MaxBoxAccV2); False -> only the box of the
            contour of largest ``cv2.contourArea``, the first one in OpenCV's order on ties
            (MaxBoxAcc, V1).

    Returns:
        ``(K, 4)`` int64 boxes, ``K >= 1``; ``[[0, 0, 0, 0]]`` for an empty mask.
    """
    boxes, areas = contour_boxes(mask)
    if len(boxes) == 0:
        return EMPTY_BOX[None, :].copy()
    if multi_contour:
        return boxes
    return boxes[int(np.argmax(areas))][None, :]


def paper_box(score_map: np.ndarray, fraction: float = 0.2) -> np.ndarray:
    """The paper's box rule (docs/protocol.md): largest connected component above a fraction of max.

    Keeps the pixels with ``value > fraction * max(map)`` (strict, float64), labels them with
    8-connectivity (``cv2.connectedComponentsWithStats``), takes the component with the most
    pixels (the lowest label, i.e. first in raster order, on ties) and returns its bounding box in
    the field's corner convention ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``.

    Args:
        score_map: ``(H, W)`` map, normally already resized and min-max normalized
            (:func:`camexp.localization.normalize_map`); on such a map the rule keeps values
            above ``fraction``.
        fraction: the threshold as a fraction of the map's maximum (the paper uses 0.2).

    Returns:
        ``(4,)`` int64 box; ``(0, 0, 0, 0)`` when no pixel passes (e.g. an all-zero map).
    """
    arr = np.asarray(score_map, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"score_map must be 2-D (H, W); got shape {arr.shape}.")
    height, width = arr.shape
    mask = (arr > float(fraction) * arr.max()).astype(np.uint8)
    if not mask.any():
        return EMPTY_BOX.copy()
    n_labels, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:n_labels, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    x, y, w, h = (int(v) for v in stats[best, :4])
    return np.array([x, y, min(x + w, width - 1), min(y + h, height - 1)], dtype=np.int64)


def largest_contour_box(score_map: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """TS-CAM's box rule: the largest contour of the quantized map above a fraction of its max.

    The ``[0, 1]`` map is quantized as the field does (``uint8(map * 255)``), pixels with
    ``q > int(fraction * max(q))`` are kept, and the box is that of the contour of largest
    ``cv2.contourArea`` (:func:`mask_boxes` with ``multi_contour=False``, the field's corner
    convention); ``(0, 0, 0, 0)`` when no pixel passes.

    Args:
        score_map: ``(H, W)`` map, resized and min-max normalized to ``[0, 1]``.
        fraction: the threshold as a fraction of the map's maximum (TS-CAM: 0.1 CUB, 0.12 ILSVRC).
    """
    arr = np.asarray(score_map, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"score_map must be 2-D (H, W); got shape {arr.shape}.")
    quantized = (arr * 255).astype(np.uint8)
    mask = quantized > int(float(fraction) * int(quantized.max()))
    return mask_boxes(mask, multi_contour=False)[0]
