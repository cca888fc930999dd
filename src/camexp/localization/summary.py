"""Turn per-threshold correct counts into the reported numbers (accuracies in percent)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["accuracy_curve", "format_iou", "summarize_max_box_acc"]


def format_iou(iou_threshold: float) -> str:
    """``30 -> "30"``, ``37.5 -> "37.5"``: the suffix used in result keys (``..._IoU30``)."""
    value = float(iou_threshold)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def accuracy_curve(num_correct: np.ndarray, num_images: int) -> np.ndarray:
    """``100 * num_correct / num_images`` as float64 (same shape as ``num_correct``).

    Raises:
        ValueError: if no image was counted.
    """
    if num_images <= 0:
        raise ValueError(
            "no image was evaluated, so localization accuracy is undefined; "
            "check that update() received samples (and that the skip mask is not all False)."
        )
    return np.asarray(num_correct, dtype=np.float64) * 100.0 / float(num_images)


def summarize_max_box_acc(
    num_correct: np.ndarray,
    num_images: int,
    thresholds: np.ndarray,
    iou_thresholds: Sequence[float],
    name: str,
) -> dict[str, float]:
    """Maximum over thresholds of the accuracy, per IoU threshold, and the best ``tau``.

    Args:
        num_correct: ``(L, T)`` correct images per IoU threshold and CAM threshold.
        num_images: number of images counted.
        thresholds: ``(T,)`` CAM thresholds.
        iou_thresholds: ``(L,)`` IoU thresholds in percent.
        name: metric name used as key prefix, e.g. ``"MaxBoxAccV2"``.

    Returns:
        ``{name: mean over IoU thresholds, f"{name}_IoU{t}": max accuracy,
        f"{name}_best_tau_IoU{t}": tau of the first maximum}``; with a single IoU threshold the
        keys are just ``name`` and ``f"{name}_best_tau"``.
    """
    curve = accuracy_curve(num_correct, num_images)
    taus = np.asarray(thresholds, dtype=np.float64)
    best_index = curve.argmax(axis=1)
    best = curve.max(axis=1)
    ious = list(iou_thresholds)
    if len(ious) == 1:
        return {name: float(best[0]), f"{name}_best_tau": float(taus[best_index[0]])}
    out: dict[str, float] = {name: float(best.mean())}
    for i, iou in enumerate(ious):
        out[f"{name}_IoU{format_iou(iou)}"] = float(best[i])
    for i, iou in enumerate(ious):
        out[f"{name}_best_tau_IoU{format_iou(iou)}"] = float(taus[best_index[i]])
    return out
