"""Draw class activation maps over their image, with ground-truth (and predicted) boxes.

Importable without Lightning; draws with matplotlib's object API (``Figure``), which needs no
backend and no display, and leaves pyplot's state and the user's backend alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

GT_COLOR = "#00ff00"


def heatmap_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured map over an image.

    Args:
        image: (H, W, 3) uint8 RGB.
        cam: (H, W) map in [0, 1] (e.g. from :func:`camexp.localization.normalize_map`).
        alpha: weight of the heatmap.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    colours = matplotlib.colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    return (alpha * colours + (1.0 - alpha) * image.astype(np.float64)).round().astype(np.uint8)


OUTLINE = "#000000"


def _draw_boxes(axis, boxes: np.ndarray, color: str, style: str = "-", outline: bool = False) -> None:
    """Boxes (K, 4) as (x0, y0, x1, y1) pixel corners (inclusive convention); ``outline``
    draws a wider dark line under each, so a box shows on any colour of the map."""
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        corner, width, height = (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1
        if outline:
            axis.add_patch(Rectangle(corner, width, height, fill=False, edgecolor=OUTLINE,
                                     linewidth=3.0, linestyle="-"))
        axis.add_patch(Rectangle(corner, width, height, fill=False, edgecolor=color,
                                 linewidth=1.5, linestyle=style))


def draw_cam_panel(
    path: str | Path,
    image: np.ndarray,
    maps: Sequence[tuple[str, np.ndarray]],
    gt_boxes: np.ndarray,
    title: str = "",
    pred_boxes: Sequence[Sequence[tuple[np.ndarray, str]]] | None = None,
    box_legend: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Save one row: the image with its ground-truth boxes, then each map overlaid.

    Args:
        path: PNG file to write.
        image: (H, W, 3) uint8 RGB.
        maps: (caption, (H, W) map in [0, 1]) per panel, e.g. the GT class and the top-k.
        gt_boxes: (K, 4) ground-truth boxes, drawn on every panel in green.
        title: a line above the row (image id, label, prediction).
        pred_boxes: per map panel, a list of (box (4,), colour) to draw dashed.
        box_legend: (label, colour) of each predicted-box colour, for the legend below the row.

    The row ends with a colour bar of the maps' scale (jet, 0 = the map's minimum, 1 = its
    maximum) and a legend of the box colours, so a picture reads without the README.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = 1 + len(maps)
    figure = Figure(figsize=(2.6 * columns + 0.6, 3.3), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title("image + GT box", fontsize=8)
    _draw_boxes(axes[0], gt_boxes, GT_COLOR)
    for column, (caption, cam) in enumerate(maps, start=1):
        axes[column].imshow(heatmap_overlay(image, cam))
        axes[column].set_title(caption, fontsize=8)
        _draw_boxes(axes[column], gt_boxes, GT_COLOR)
        if pred_boxes is not None:
            for box, colour in pred_boxes[column - 1]:
                _draw_boxes(axes[column], np.asarray(box)[None], colour, "--", outline=True)
    for axis in axes:
        axis.set_axis_off()
    if maps:
        bar = figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), matplotlib.colormaps["jet"]),
                              ax=list(axes), fraction=0.025, pad=0.01, aspect=25)
        bar.set_label("map, min-max normalized", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    handles = [Line2D([], [], color=GT_COLOR, linewidth=1.5, label="ground-truth box")]
    handles += [Line2D([], [], color=colour, linewidth=1.5, linestyle="--", label=label)
                for label, colour in box_legend or ()]
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7,
                  frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=100)
    return path
