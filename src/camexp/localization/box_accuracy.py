"""The box-accuracy accumulator: MaxBoxAcc (V1) and MaxBoxAccV2 of a split from one threshold
sweep per map (docs/protocol.md).

The field's evaluator keeps, per IoU threshold, a ``(T,)`` count of the images whose box is
correct at each CAM threshold, plus the number of images; the accuracy curve is
``100 * count / images`` and MaxBoxAcc is its maximum over the thresholds. This class keeps the
same counts for both metrics at once, so that the torchmetrics classes
(:mod:`camexp.localization.metrics`), the localization callback and ``eval_maps``
(:mod:`camexp.localization.offline`) compute them one way.

Conventions (shapes: ``T`` CAM thresholds, ``L`` IoU thresholds of V2, ``S`` swept IoUs):

* ``thresholds``: ``(T,)`` float64 CAM thresholds ``tau``, ``arange(0, 1, interval)``
  (:func:`~camexp.localization.maps.cam_thresholds`); a map's mask at ``tau`` is
  ``quantized > int(tau * max)``.
* ``iou_thresholds``: V2's IoU thresholds in percent, e.g. ``[30, 50, 70]``; a box is correct
  when its IoU (inclusive pixels) with some ground-truth box is ``>= iou / 100``.
* V2 counts the best box over all contours of the mask (``multi_contour=True``, the field's V2)
  or the largest contour's box only; V1 counts the largest contour's box at IoU 50.
* :attr:`BoxAccuracy.sweep_ious` (``(S,)``, sorted) are the IoU thresholds each sweep must be
  computed at: V2's and, with ``v1``, 50. A sweep is a
  :class:`~camexp.localization.sweep.BoxSweep` of one map (``(S, T)`` bool) or the sum of many
  (``(S, T)`` int64, :func:`~camexp.localization.fast.box_sweep_counts`).
* ``correct``: ``(L, T)`` int64 V2 counts; ``correct_v1``: ``(T,)`` int64 V1 counts (None
  without ``v1``); ``num_images``: int. Counts add, so accumulators of two halves of a split
  (or of two DDP processes) sum to the accumulator of the whole.
* The best threshold of a curve is the first ``tau`` of maximal accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camexp.localization.summary import accuracy_curve, format_iou, summarize_max_box_acc
from camexp.localization.sweep import BoxSweep

__all__ = ["V1_IOU", "BoxAccuracy", "curve_columns"]

#: MaxBoxAcc (V1)'s IoU threshold in percent.
V1_IOU = 50.0


class BoxAccuracy:
    """Correct-image counts per (IoU threshold, CAM threshold) of V2, and of V1 (IoU 50).

    Args:
        thresholds: ``(T,)`` CAM thresholds.
        iou_thresholds: V2's IoU thresholds in percent.
        multi_contour: V2 takes every contour's box (True) or the largest contour's only.
        v1: also count MaxBoxAcc (V1: the largest contour's box at IoU 50).
        name: V2's key prefix (``"MaxBoxAcc"`` for the single-IoU largest-contour metric).
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        iou_thresholds: Sequence[float] = (30, 50, 70),
        multi_contour: bool = True,
        v1: bool = True,
        name: str = "MaxBoxAccV2",
    ) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        self.iou_thresholds = [float(t) for t in iou_thresholds]
        self.multi_contour = bool(multi_contour)
        self.v1 = bool(v1)
        self.name = name
        self.sweep_ious = sorted(set(self.iou_thresholds) | ({V1_IOU} if self.v1 else set()))
        self._rows = [self.sweep_ious.index(t) for t in self.iou_thresholds]
        self._row_v1 = self.sweep_ious.index(V1_IOU) if self.v1 else 0
        self.correct = np.zeros((len(self.iou_thresholds), len(self.thresholds)), dtype=np.int64)
        self.correct_v1 = np.zeros(len(self.thresholds), dtype=np.int64) if self.v1 else None
        self.num_images = 0

    def add(self, multi: np.ndarray, largest: np.ndarray, num_images: int = 1) -> None:
        """Count a sweep at :attr:`sweep_ious`: ``(S, T)`` bool of one map (``num_images=1``)
        or ``(S, T)`` counts summed over ``num_images`` maps."""
        chosen = multi if self.multi_contour else largest
        self.correct += np.asarray(chosen, dtype=np.int64)[self._rows]
        if self.correct_v1 is not None:
            self.correct_v1 += np.asarray(largest[self._row_v1], dtype=np.int64)
        self.num_images += int(num_images)

    def add_sweep(self, sweep: BoxSweep) -> None:
        """Count one map's :class:`~camexp.localization.sweep.BoxSweep` (at :attr:`sweep_ious`)."""
        self.add(sweep.multi, sweep.largest, 1)

    def empty(self) -> BoxAccuracy:
        """A new accumulator with these settings and no counts."""
        return BoxAccuracy(self.thresholds, self.iou_thresholds, self.multi_contour, self.v1,
                           self.name)

    def with_counts(
        self, correct: np.ndarray, correct_v1: np.ndarray | None, num_images: int
    ) -> BoxAccuracy:
        """A new accumulator with these settings holding the given counts (e.g. the states of a
        metric summed over processes): ``correct`` ``(L, T)``, ``correct_v1`` ``(T,)`` (ignored
        without ``v1``)."""
        copy = self.empty()
        copy.correct = np.asarray(correct, dtype=np.int64).reshape(copy.correct.shape)
        if copy.correct_v1 is not None:
            copy.correct_v1 = np.asarray(correct_v1, dtype=np.int64).reshape(copy.correct_v1.shape)
        copy.num_images = int(num_images)
        return copy

    def results(self) -> dict[str, float]:
        """Accuracies in percent and best thresholds: with ``v1`` ``{"MaxBoxAcc",
        "MaxBoxAcc_best_tau"}``, then V2's keys (see
        :func:`~camexp.localization.summary.summarize_max_box_acc`).

        Raises:
            ValueError: if no image was counted.
        """
        out: dict[str, float] = {}
        if self.correct_v1 is not None:
            out.update(summarize_max_box_acc(self.correct_v1[None, :], self.num_images,
                                             self.thresholds, [V1_IOU], "MaxBoxAcc"))
        out.update(summarize_max_box_acc(self.correct, self.num_images, self.thresholds,
                                         self.iou_thresholds, self.name))
        return out

    def curve(self) -> dict:
        """The accuracy-versus-threshold curves, for plots and CSV files.

        Returns:
            ``{"thresholds": (T,) float64, "iou_thresholds": list of L floats,
            "accuracy": (L, T) float64 in percent, "num_images": int}``, plus
            ``"accuracy_v1"``: (T,) V1's curve with ``v1``.
        """
        curve = {
            "thresholds": self.thresholds.copy(),
            "iou_thresholds": list(self.iou_thresholds),
            "accuracy": accuracy_curve(self.correct, self.num_images),
            "num_images": self.num_images,
            "name": self.name,
        }
        if self.correct_v1 is not None:
            curve["accuracy_v1"] = accuracy_curve(self.correct_v1, self.num_images)
        return curve


def curve_columns(curve: dict) -> dict[str, np.ndarray]:
    """The curves of :meth:`BoxAccuracy.curve` by column name, V1 first:
    ``{"MaxBoxAcc_IoU50": (T,), "MaxBoxAccV2_IoU30": (T,), ...}`` (the curve files' columns)."""
    columns = {}
    if "accuracy_v1" in curve:
        columns[f"MaxBoxAcc_IoU{format_iou(V1_IOU)}"] = curve["accuracy_v1"]
    for iou, accuracy in zip(curve["iou_thresholds"], curve["accuracy"], strict=True):
        columns[f"{curve['name']}_IoU{format_iou(iou)}"] = accuracy
    return columns
