"""Pixel average precision (PxAP) from pooled score histograms (docs/protocol.md).

Binning (the field's): with ``thresholds = arange(0, 1, interval)`` (1000 values by default) the
bin edges are ``thresholds + [1.0, 2.0, 3.0]``, i.e. ``T + 2`` bins ``[0, i), [i, 2i), ...,
[1 - i, 1), [1, 2), [2, 3]`` (1002 bins by default; a map value of exactly 1.0 falls in
``[1, 2)``). Values are the resized, min-max normalized float maps (not the uint8 quantization).

For each image, pixels of the ground-truth foreground are positives, pixels of the ignore region
(ignore box minus foreground) are dropped, all others are negatives. Positive and negative
histograms are summed over the split. Sweeping the threshold from the top bin down gives
``tp``, ``fp`` (cumulative sums) and ``fn = #positives - tp``; precision ``tp / (tp + fp)``,
recall ``tp / #positives``; PxAP is ``sum(precision[i] * (recall[i] - recall[i - 1]))`` over the
bins where ``tp + fp > 0``, in percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camexp.core.errors import PxAPError
from camexp.localization.maps import cam_thresholds

__all__ = [
    "PxAPError",
    "pxap_bin_edges",
    "pxap_curve",
    "pxap_from_histograms",
    "pxap_histograms",
]


def pxap_bin_edges(interval: float = 0.001) -> np.ndarray:
    """Bin edges ``arange(0, 1, interval) + [1, 2, 3]``: ``(T + 3,)`` float64, ``T + 2`` bins."""
    return np.append(cam_thresholds(interval), [1.0, 2.0, 3.0])


def pxap_histograms(
    map01: np.ndarray, gt_mask: np.ndarray, ignore_mask: np.ndarray | None, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of one map's values over positive and negative pixels.

    Args:
        map01: ``(H, W)`` float map in ``[0, 1]`` (resized and normalized).
        gt_mask: ``(H, W)`` bool ground-truth foreground.
        ignore_mask: ``(H, W)`` bool region to drop (only where not foreground), or None.
        edges: bin edges from :func:`pxap_bin_edges`.

    Returns:
        ``(positive_hist, negative_hist)``, each ``(len(edges) - 1,)`` int64.
    """
    values = np.asarray(map01, dtype=np.float64)
    fg = np.asarray(gt_mask, dtype=bool)
    if fg.shape != values.shape:
        raise PxAPError(
            f"ground-truth mask shape {fg.shape} differs from the map shape {values.shape}; "
            "resize the mask to the evaluation size with nearest-neighbour interpolation."
        )
    negative = ~fg
    if ignore_mask is not None:
        ignore = np.asarray(ignore_mask, dtype=bool)
        if ignore.shape != values.shape:
            raise PxAPError(
                f"ignore mask shape {ignore.shape} differs from the map shape {values.shape}."
            )
        negative &= ~ignore
    pos, _ = np.histogram(values[fg], bins=edges)
    neg, _ = np.histogram(values[negative], bins=edges)
    return pos.astype(np.int64), neg.astype(np.int64)


def pxap_curve(
    positive_hist: Sequence[float], negative_hist: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall per threshold, from the top bin down.

    Returns:
        ``(precision, recall, valid)``: ``(B,)`` float64 arrays ordered from the highest threshold
        to the lowest, and a bool mask of the entries with ``tp + fp > 0`` (precision is NaN
        elsewhere).

    Raises:
        PxAPError: if there is no positive pixel or no pixel at all.
    """
    pos = np.asarray(positive_hist, dtype=np.float64)
    neg = np.asarray(negative_hist, dtype=np.float64)
    num_pos = pos.sum()
    if num_pos <= 0:
        raise PxAPError(
            "PxAP needs at least one ground-truth foreground pixel in the evaluated set; "
            "check the masks (all empty?) and the mask paths."
        )
    tp = pos[::-1].cumsum()
    fp = neg[::-1].cumsum()
    predicted = tp + fp
    valid = predicted > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / predicted
    recall = tp / num_pos
    return precision, recall, valid


def pxap_from_histograms(positive_hist: Sequence[float], negative_hist: Sequence[float]) -> float:
    """PxAP in percent: ``100 * sum(precision[1:] * diff(recall))`` over valid bins."""
    precision, recall, valid = pxap_curve(positive_hist, negative_hist)
    steps = precision[1:] * np.diff(recall)
    return float(steps[valid[1:]].sum() * 100.0)
