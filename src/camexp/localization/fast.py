"""Fast threshold sweep of one map: same counts as :mod:`camexp.localization.reference`.

The reference runs ``findContours`` once per threshold (1000 times per map). Two implementations
here give identical results:

* **Compiled sweep** (default when numba is installed and the ground-truth boxes are integers, as
  the field floors them): :mod:`camexp.localization._sweep_kernel` sorts the pixels by value once
  and sweeps the levels with union-find, getting every level's outer-contour boxes, hole-contour
  boxes and the largest contour's box (with OpenCV's polygon area and tie order) without tracing;
  see that module for the facts it relies on. Boxes of components nested inside holes
  (*islands*) are bounded instead of computed; the rare levels where that bound leaves V2 open
  are traced with OpenCV. The kernel is imported on first use (numba import plus loading its
  cached machine code: ~0.1-0.3 s per process; ~4 s the very first time, compiling).
  ``bench/bench_localization.py``, one process: about 20-30x the reference on 224x224 maps.
* **Tracing of the distinct masks** (without numba, or with non-integer boxes), about 5x:

  1. *Distinct masks.* The mask at ``tau`` is ``q > int(tau * max)``; a uint8 map has at most
     256 distinct levels and two levels give the same mask when no pixel value lies between them.
     Masks are keyed by their pixel count (``#{q > level}``), which identifies the mask because
     the masks are nested; each distinct mask is processed once.
  2. *An exact IoU upper bound.* Every contour box of a mask lies inside the mask's bounding box
     ``B`` (extended by the field's ``+1`` corner and clipping). For any box ``b`` inside ``B``
     and ground truth ``g``: ``IoU(b, g) <= |b & g| / |g| <= |B & g| / |g|``; rounding is
     monotone, so when that bound (computed in float64) is below the smallest IoU threshold, no
     contour can reach any threshold and the mask needs no contours at all. Only applied when the
     ground-truth boxes are integers, so the bound is computed exactly.
  3. *Cropping.* Contours are traced on the mask's bounding box only (``findContours`` with an
     offset). OpenCV pads the image with zeros internally, so the crop's contours, their order
     and their hierarchy are those of the full image, translated.
  4. *Vectorized post-processing.* Bounding boxes (min/max of contour points) and polygon areas
     (shoelace formula on the integer points, exact, equal to ``cv2.contourArea``) of all
     contours of all masks are computed in a few numpy calls, then IoU for all boxes at once. V1
     takes the first contour of maximal area in OpenCV's order, like
     ``max(contours, key=cv2.contourArea)``.

Maps are independent: :func:`box_sweep_counts` spreads them over a process pool
(:func:`sweep_pool`).

The test-suite compares both implementations with the reference count for count on random smooth
maps, binary noise, plateaus, nested rings and islands, tiny maps (the cropping argument relies on
OpenCV >= 3.2 padding the image instead of zeroing its border; the compiled sweep relies on
OpenCV's contour order and areas; the tests would catch a change).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context

import cv2
import numpy as np

from camexp.localization.iou import box_iou
from camexp.localization.maps import as_quantized, as_size, prepare_map, threshold_levels
from camexp.localization.sweep import BoxSweep, as_gt_boxes, iou_fractions

__all__ = ["box_sweep", "box_sweep_counts", "distinct_masks", "sweep_pool"]


def distinct_masks(quantized: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group the thresholds by the mask they produce.

    Args:
        quantized: ``(H, W)`` uint8 map.
        thresholds: ``(T,)`` float64 thresholds ``tau``.

    Returns:
        levels: ``(D,)`` int64, one integer level per distinct mask (mask = ``quantized > level``),
            ordered by decreasing mask size.
        inverse: ``(T,)`` int64, ``inverse[t]`` = index into ``levels`` of threshold ``t``.
    """
    levels = threshold_levels(thresholds, int(quantized.max()))
    hist = np.bincount(quantized.ravel(), minlength=256)
    at_most = np.concatenate(([0], np.cumsum(hist)))  # at_most[v + 1] = #pixels <= v
    above = quantized.size - at_most[np.clip(levels, -1, 255) + 1]  # #pixels > level
    _, first, inverse = np.unique(-above, return_index=True, return_inverse=True)
    return levels[first], inverse.reshape(-1)


def _mask_extents(quantized: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel bounding box of each mask ``quantized > level``.

    Returns:
        nonempty: ``(D,)`` bool.
        extents: ``(D, 4)`` int64 ``(x0, y0, x1, y1)`` of the mask pixels (inclusive; zeros when
            the mask is empty).
    """
    height, width = quantized.shape
    row_max = quantized.max(axis=1).astype(np.int64)
    col_max = quantized.max(axis=0).astype(np.int64)
    rows = row_max[None, :] > levels[:, None]
    cols = col_max[None, :] > levels[:, None]
    nonempty = rows.any(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = height - 1 - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = width - 1 - cols[:, ::-1].argmax(axis=1)
    extents = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    extents[~nonempty] = 0
    return nonempty, extents


def _iou_upper_bound(
    extents: np.ndarray, gt_boxes: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Upper bound of the IoU of any contour box inside each extent with any ground-truth box.

    Args:
        extents: ``(D, 4)`` pixel extents of the masks.
        gt_boxes: ``(K, 4)`` int64 ground-truth boxes.
        shape: ``(H, W)``.

    Returns:
        ``(D,)`` float64 ``max_g |B & g| / |g|`` with ``B`` the extent in the field's box
        convention (``x1 + 1`` clipped to ``W - 1``).
    """
    height, width = shape
    outer = extents.copy()
    outer[:, 2] = np.minimum(outer[:, 2] + 1, width - 1)
    outer[:, 3] = np.minimum(outer[:, 3] + 1, height - 1)
    g = gt_boxes
    ix = (
        np.minimum(outer[:, None, 2], g[None, :, 2])
        - np.maximum(outer[:, None, 0], g[None, :, 0])
        + 1
    )
    iy = (
        np.minimum(outer[:, None, 3], g[None, :, 3])
        - np.maximum(outer[:, None, 1], g[None, :, 1])
        + 1
    )
    inter = np.maximum(ix, 0) * np.maximum(iy, 0)
    area_g = (g[:, 2] - g[:, 0] + 1) * (g[:, 3] - g[:, 1] + 1)
    return (inter / area_g[None, :]).max(axis=1)


def _trace(
    quantized: np.ndarray, levels: np.ndarray, extents: np.ndarray, todo: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """``findContours`` on the cropped mask of every level marked in ``todo``.

    Returns:
        contours: OpenCV contours ``(n, 1, 2)`` int32 in full-image coordinates, grouped by level
            in OpenCV's order.
        owner: ``(C,)`` int64, index of the level of each contour.
    """
    contours: list[np.ndarray] = []
    owner: list[int] = []
    boxes = extents.tolist()
    values = levels.tolist()
    threshold, find = cv2.threshold, cv2.findContours
    tree, simple, binary = cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, cv2.THRESH_BINARY
    for d in np.flatnonzero(todo).tolist():
        x0, y0, x1, y1 = boxes[d]
        _, mask = threshold(quantized[y0 : y1 + 1, x0 : x1 + 1], values[d], 255, binary)
        found, _ = find(mask, tree, simple, offset=(x0, y0))
        contours.extend(found)
        owner.extend([d] * len(found))
    return contours, np.asarray(owner, dtype=np.int64)


def _contour_boxes_areas(
    contours: list[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (field convention) and twice the polygon areas of many contours at once.

    Returns:
        boxes: ``(C, 4)`` int64 ``(xmin, ymin, min(xmax + 1, W - 1), min(ymax + 1, H - 1))``,
            equal to ``cv2.boundingRect`` turned into the field's box.
        area2: ``(C,)`` int64, ``2 * cv2.contourArea`` (exact shoelace sum).
    """
    height, width = shape
    lengths = np.array(list(map(len, contours)), dtype=np.int64)
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    x, y = points[:, 0], points[:, 1]
    following = np.arange(1, len(points) + 1)
    following[starts + lengths - 1] = starts
    cross = x * y[following] - x[following] * y
    area2 = np.abs(np.add.reduceat(cross, starts))
    boxes = np.stack(
        [
            np.minimum.reduceat(x, starts),
            np.minimum.reduceat(y, starts),
            np.minimum(np.maximum.reduceat(x, starts) + 1, width - 1),
            np.minimum(np.maximum.reduceat(y, starts) + 1, height - 1),
        ],
        axis=1,
    )
    return boxes, area2


def _traced_best(quantized: np.ndarray, levels: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Best IoU over all contour boxes of the nonempty masks ``quantized > level`` (traced)."""
    _, extents = _mask_extents(quantized, levels)
    contours, owner = _trace(quantized, levels, extents, np.ones(len(levels), dtype=bool))
    boxes, _ = _contour_boxes_areas(contours, quantized.shape)
    best = np.full(len(levels), -1.0)
    np.maximum.at(best, owner, box_iou(boxes, gts).max(axis=1))
    return best


def _first_argmax_per_segment(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first maximum of ``values`` within each segment beginning at ``starts``."""
    count = len(values)
    seg_max = np.maximum.reduceat(values, starts)
    seg_id = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, count)))
    candidates = np.where(values == seg_max[seg_id], np.arange(count), count)
    return np.minimum.reduceat(candidates, starts)


_KERNEL: list = []


def _kernel():
    """The compiled kernel module, or None without numba (imported on first use)."""
    if not _KERNEL:
        try:
            from camexp.localization import _sweep_kernel
        except ImportError:
            _sweep_kernel = None
        _KERNEL.append(_sweep_kernel)
    return _KERNEL[0]


def box_sweep(
    score_map: np.ndarray,
    gt_boxes: np.ndarray,
    thresholds: Sequence[float],
    iou_thresholds: Sequence[float] = (30, 50, 70),
) -> BoxSweep:
    """Per-threshold correctness of one map, V1 and V2 at once (fast path).

    Args:
        score_map: ``(H, W)`` uint8 quantized map, or a ``[0, 1]`` float map at evaluation size
            (quantized with ``uint8(map * 255)``).
        gt_boxes: ``(K, 4)`` ground-truth boxes ``(x0, y0, x1, y1)`` at evaluation size,
            inclusive corners, ``K >= 1``.
        thresholds: ``(T,)`` CAM thresholds ``tau`` (cast to float64).
        iou_thresholds: ``(L,)`` IoU thresholds in percent.

    Returns:
        :class:`~camexp.localization.sweep.BoxSweep` with ``(L, T)`` bool arrays, identical to
        :func:`~camexp.localization.reference.reference_box_sweep`.
    """
    quantized = as_quantized(score_map)
    shape = quantized.shape
    gts = as_gt_boxes(gt_boxes)
    ious = iou_fractions(iou_thresholds)
    taus = np.asarray(thresholds, dtype=np.float64).reshape(-1)

    kernel = _kernel() if np.issubdtype(gts.dtype, np.integer) else None
    if kernel is not None:
        index = np.clip(threshold_levels(taus, int(quantized.max())), -1, 255) + 1
        need = np.zeros(257, dtype=bool)
        need[index] = True
        largest_iou, multi_iou, island = kernel.level_ious(
            np.ascontiguousarray(quantized), np.ascontiguousarray(gts), need
        )
        # V2 is open where an island box might reach an IoU threshold the other boxes miss
        open_levels = np.flatnonzero(
            need & ((island[:, None] >= ious) & (multi_iou[:, None] < ious)).any(axis=1)
        )
        if open_levels.size:
            multi_iou[open_levels] = _traced_best(quantized, open_levels - 1, gts)
        return BoxSweep(
            multi=multi_iou[index][None, :] >= ious[:, None],
            largest=largest_iou[index][None, :] >= ious[:, None],
        )

    levels, inverse = distinct_masks(quantized, taus)
    nonempty, extents = _mask_extents(quantized, levels)
    todo = nonempty.copy()
    if np.issubdtype(gts.dtype, np.integer):
        todo &= _iou_upper_bound(extents, gts, shape) >= ious.min()

    multi = np.zeros((len(ious), len(levels)), dtype=bool)
    largest = np.zeros_like(multi)
    if (~nonempty).any():
        empty_ok = box_iou(np.zeros((1, 4), dtype=np.int64), gts).max() >= ious
        multi[:, ~nonempty] = empty_ok[:, None]
        largest[:, ~nonempty] = empty_ok[:, None]

    contours, owner = _trace(quantized, levels, extents, todo)
    if contours:
        boxes, area2 = _contour_boxes_areas(contours, shape)
        best_per_box = box_iou(boxes, gts).max(axis=1)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        traced = owner[starts]
        best = np.maximum.reduceat(best_per_box, starts)
        best_largest = best_per_box[_first_argmax_per_segment(area2, starts)]
        multi[:, traced] = best[None, :] >= ious[:, None]
        largest[:, traced] = best_largest[None, :] >= ious[:, None]
    return BoxSweep(multi=multi[:, inverse], largest=largest[:, inverse])


def _sweep_item(
    item: tuple[np.ndarray, np.ndarray],
    thresholds: np.ndarray,
    iou_thresholds: Sequence[float],
    size: tuple[int, int] | None,
) -> BoxSweep:
    """One ``(map, gt_boxes)`` pair -> :class:`BoxSweep` (top level: picklable for processes)."""
    score_map, gt_boxes = item
    if size is not None:
        score_map = prepare_map(score_map, size)
    return box_sweep(score_map, gt_boxes, thresholds, iou_thresholds)


def _chunksize(items: Iterable, executor: Executor, workers: int) -> int:
    """About four chunks per worker (load balance), at most 16 maps per chunk."""
    if not hasattr(items, "__len__"):
        return 8
    count = int(getattr(executor, "_max_workers", workers) or workers)
    return max(1, min(16, len(items) // (4 * max(count, 1))))  # type: ignore[arg-type]


def sweep_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool for :func:`box_sweep_counts` (``spawn`` start method).

    Processes, not threads: the OpenCV path makes ~200 short calls per map and threads serialize
    on the GIL between them (the compiled sweep takes about a millisecond per 224x224 map, so a
    pool pays off for large splits only). ``spawn`` avoids forking a parent that holds CUDA or OpenCV thread
    state; each worker imports numpy and OpenCV once (``camexp.localization`` loads torch only
    when a metric class is used). Reuse one pool for many calls and shut it down after
    (``with sweep_pool(4) as pool: ...``).
    """
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


def box_sweep_counts(
    items: Iterable[tuple[np.ndarray, np.ndarray]],
    thresholds: Sequence[float],
    iou_thresholds: Sequence[float] = (30, 50, 70),
    size: int | Sequence[int] | None = None,
    workers: int = 1,
    pool: Executor | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Sum :func:`box_sweep` over many ``(map, gt_boxes)`` pairs.

    Args:
        items: pairs ``(score_map, gt_boxes)``. Without ``size`` the maps are quantized uint8 or
            ``[0, 1]`` float maps at evaluation size; with ``size`` they are raw maps that get
            resized and min-max normalized first (:func:`~camexp.localization.maps.prepare_map`).
        thresholds: ``(T,)`` CAM thresholds.
        iou_thresholds: ``(L,)`` IoU thresholds in percent.
        size: evaluation ``(H, W)`` for raw maps, or None.
        workers: with no ``pool``, ``workers > 1`` starts a :func:`sweep_pool` for this call
            (a few seconds of start-up: worth it for thousands of maps, not for one batch).
        pool: an executor to reuse (e.g. from :func:`sweep_pool`); overrides ``workers``.

    Returns:
        ``(multi_counts, largest_counts, num_images)``: two ``(L, T)`` int64 arrays of correct
        images per threshold, and the number of images.
    """
    taus = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    ious = [float(t) for t in iou_thresholds]
    hw = None if size is None else as_size(size)
    multi = np.zeros((len(ious), len(taus)), dtype=np.int64)
    largest = np.zeros_like(multi)
    job = partial(_sweep_item, thresholds=taus, iou_thresholds=ious, size=hw)
    if pool is None and workers <= 1:
        results: Iterable[BoxSweep] = map(job, items)
    else:
        executor = pool if pool is not None else sweep_pool(workers)
        results = executor.map(job, items, chunksize=_chunksize(items, executor, workers))
    count = 0
    try:
        for res in results:
            multi += res.multi
            largest += res.largest
            count += 1
    finally:
        if pool is None and workers > 1:
            executor.shutdown(cancel_futures=True)
    return multi, largest, count
