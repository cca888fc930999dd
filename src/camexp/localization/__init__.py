"""Localization evaluation of score maps (CAM) against boxes and masks.

Importable without Lightning: it needs torch, torchmetrics, numpy and OpenCV only (torch and
torchmetrics are imported on first use of a metric class). See
docs/protocol.md for the protocol; every module documents its conventions (box corners,
inclusive pixels, order of resizing, normalization and quantization).

Main entry points:

* Map preparation: :func:`normalize_map`, :func:`quantize_map`, :func:`prepare_map`,
  :func:`cam_thresholds`.
* Boxes: :func:`mask_boxes` (the field's contour rule), :func:`paper_box` (the paper's rule),
  :func:`box_iou`, :func:`scale_boxes`, :func:`check_boxes`.
* Threshold sweep: :func:`box_sweep` (fast), :func:`reference_box_sweep` (plain loops),
  :func:`box_sweep_counts` (many maps, thread pool).
* Box accuracy of a split: :class:`BoxAccuracy` (MaxBoxAcc and MaxBoxAccV2 counts from one sweep
  per map; the torchmetrics classes, the callback and ``eval_maps`` all use it).
* Metrics (torchmetrics): :class:`MaxBoxAcc`, :class:`MaxBoxAccV2`, :class:`PaperLocalization`,
  :class:`PxAP`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from camexp.core.errors import BoxError, MapError, PxAPError
from camexp.localization.box_accuracy import BoxAccuracy
from camexp.localization.boxes import (
    EMPTY_BOX,
    check_boxes,
    contour_boxes,
    mask_boxes,
    paper_box,
    scale_boxes,
)
from camexp.localization.fast import box_sweep, box_sweep_counts, distinct_masks, sweep_pool
from camexp.localization.iou import box_iou, max_iou
from camexp.localization.maps import (
    as_quantized,
    as_size,
    cam_thresholds,
    check_score_map,
    normalize_map,
    prepare_map,
    quantize_map,
    threshold_levels,
)
from camexp.localization.pxap import (
    pxap_bin_edges,
    pxap_curve,
    pxap_from_histograms,
    pxap_histograms,
)
from camexp.localization.reference import reference_box_sweep
from camexp.localization.summary import accuracy_curve, summarize_max_box_acc
from camexp.localization.sweep import BoxSweep, iou_fractions

if TYPE_CHECKING:
    from camexp.localization.metrics import MaxBoxAcc, MaxBoxAccV2, PaperLocalization, PxAP

# The torchmetrics classes import torch; load them on first use so that worker processes of
# sweep_pool() start with numpy and OpenCV only.
_LAZY = {
    name: "camexp.localization.metrics"
    for name in ("MaxBoxAcc", "MaxBoxAccV2", "PaperLocalization", "PxAP")
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EMPTY_BOX",
    "BoxAccuracy",
    "BoxError",
    "BoxSweep",
    "MapError",
    "MaxBoxAcc",
    "MaxBoxAccV2",
    "PaperLocalization",
    "PxAP",
    "PxAPError",
    "accuracy_curve",
    "as_quantized",
    "as_size",
    "box_iou",
    "box_sweep",
    "box_sweep_counts",
    "cam_thresholds",
    "check_boxes",
    "check_score_map",
    "contour_boxes",
    "distinct_masks",
    "iou_fractions",
    "mask_boxes",
    "max_iou",
    "normalize_map",
    "paper_box",
    "prepare_map",
    "pxap_bin_edges",
    "pxap_curve",
    "pxap_from_histograms",
    "pxap_histograms",
    "quantize_map",
    "reference_box_sweep",
    "scale_boxes",
    "summarize_max_box_acc",
    "sweep_pool",
    "threshold_levels",
]
