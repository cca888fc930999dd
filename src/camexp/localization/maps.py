"""Score-map preparation for localization evaluation (docs/protocol.md).

Conventions used everywhere in :mod:`camexp.localization`:

* A score map is a 2-D array ``(H, W)``, row ``y`` first, column ``x`` second.
* Sizes are given as ``(H, W)`` (height first, like array shapes). OpenCV calls take ``(W, H)``;
  the conversion happens inside these functions only.
* Order of operations (the field's): cast to float64 -> resize to ``(H, W)`` with bicubic
  interpolation -> min-max normalize to ``[0, 1]`` -> quantize with ``uint8(map * 255)``
  (truncation) -> threshold each level with ``q > int(tau * q.max())`` (strict).
* All arithmetic is float64, as the field's numpy code does. This matters: with a maximum of 100,
  the 291st threshold of ``arange(0, 1, 0.001)`` gives ``int(0.29 * 100) = 28`` in float64 but
  29 in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from camexp.core.errors import MapError

__all__ = [
    "INTERPOLATIONS",
    "MapError",
    "as_quantized",
    "as_size",
    "cam_thresholds",
    "check_score_map",
    "normalize_map",
    "prepare_map",
    "quantize_map",
    "threshold_levels",
]


def as_size(size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``size`` as ``(H, W)``; an int ``s`` means ``(s, s)``.

    Raises:
        ValueError: if the size is not one or two positive integers.
    """
    if isinstance(size, (int, np.integer)):
        height = width = int(size)
    else:
        values = [int(v) for v in size]
        if len(values) != 2:
            raise ValueError(
                f"image size must be an int or a pair (H, W); got {list(size)!r}. "
                "Pass e.g. 224 or [224, 224]."
            )
        height, width = values
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive; got (H, W) = ({height}, {width}).")
    return height, width


def check_score_map(
    score_map: np.ndarray, where: str = "score map", unit_range: bool = True
) -> None:
    """Validate a raw score map.

    Args:
        score_map: array expected to be 2-D ``(h, w)`` and finite.
        where: text naming the map in error messages (e.g. ``"image id X (file Y)"``).
        unit_range: also require every value to lie in ``[0, 1]`` (the saved-map convention of
            the field's evaluation); maps straight from a network need not satisfy it.

    Raises:
        MapError: with one paragraph naming ``where``, the problem and the fix.
    """
    arr = np.asarray(score_map)
    if arr.ndim != 2:
        raise MapError(
            f"{where}: a score map must be 2-D (H, W) but this one has shape {arr.shape}. "
            "Save one map per image, for the ground-truth class only (squeeze channel and "
            "class axes)."
        )
    if arr.size == 0:
        raise MapError(f"{where}: the score map is empty (shape {arr.shape}).")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise MapError(f"{where}: the score map has dtype {arr.dtype}; save a real float array.")
    if not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise MapError(
            f"{where}: the score map contains {n_nan} NaN and {n_inf} infinite values. "
            "The model or the map computation diverged; fix the producer of the maps "
            "(a common cause is a division by a zero maximum when normalizing)."
        )
    if unit_range:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise MapError(
                f"{where}: score map values must lie in [0, 1] but range from {lo!r} to {hi!r}. "
                "Min-max normalize each map before saving it "
                "(camexp.localization.normalize_map does this)."
            )


# how a map is resized to the evaluation size: the field's bicubic; TS-CAM's code resizes
# bilinearly (a later paper's own box rule, localization.box_rule.resize)
INTERPOLATIONS = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


def normalize_map(score_map: np.ndarray, size: int | Sequence[int] = (224, 224),
                  interpolation: str = "bicubic") -> np.ndarray:
    """Resize a map to ``size`` with bicubic interpolation, then min-max normalize it.

    Args:
        score_map: ``(h, w)`` real array, any size, any range (finite).
        size: target ``(H, W)`` (or an int for a square).
        interpolation: ``bicubic`` (the field's) or ``bilinear``.

    Returns:
        ``(H, W)`` float64 array in ``[0, 1]``. A constant map (after resizing) becomes all zeros.
        The map is cast to float64 *before* resizing; when ``(h, w) == (H, W)`` OpenCV copies it
        unchanged.

    Raises:
        MapError: if the map is not 2-D or not finite.
    """
    check_score_map(score_map, unit_range=False)
    height, width = as_size(size)
    arr = np.asarray(score_map, dtype=np.float64)
    resized = cv2.resize(arr, (width, height), interpolation=INTERPOLATIONS[interpolation])
    lo = resized.min()
    hi = resized.max()
    if hi == lo:
        return np.zeros((height, width), dtype=np.float64)
    resized -= lo
    resized /= resized.max()
    return resized


def quantize_map(map01: np.ndarray) -> np.ndarray:
    """Quantize a ``[0, 1]`` float map to ``uint8`` by truncation, ``uint8(map * 255)``.

    Args:
        map01: ``(H, W)`` float array in ``[0, 1]`` (e.g. from :func:`normalize_map`).

    Returns:
        ``(H, W)`` uint8 array, values ``0..255``.
    """
    return (np.asarray(map01, dtype=np.float64) * 255).astype(np.uint8)


def prepare_map(score_map: np.ndarray, size: int | Sequence[int] = (224, 224)) -> np.ndarray:
    """``quantize_map(normalize_map(score_map, size))``: raw map -> ``(H, W)`` uint8."""
    return quantize_map(normalize_map(score_map, size))


def cam_thresholds(interval: float = 0.001) -> np.ndarray:
    """The CAM thresholds ``tau``: ``np.arange(0, 1, interval)`` in float64 (1000 by default).

    Raises:
        ValueError: unless ``0 < interval <= 1``.
    """
    interval = float(interval)
    if not 0.0 < interval <= 1.0:
        raise ValueError(
            f"cam_curve_interval must be in (0, 1]; got {interval!r}. The field uses 0.001."
        )
    return np.arange(0, 1, interval, dtype=np.float64)


def threshold_levels(thresholds: np.ndarray, max_value: int) -> np.ndarray:
    """Integer threshold per ``tau``: ``int(tau * max_value)`` computed in float64.

    Args:
        thresholds: ``(T,)`` thresholds ``tau`` (cast to float64 first).
        max_value: maximum of the quantized map (``0..255``).

    Returns:
        ``(T,)`` int64 levels; the mask at ``tau`` is ``q > level`` (strict).
    """
    taus = np.asarray(thresholds, dtype=np.float64)
    return np.trunc(taus * np.float64(max_value)).astype(np.int64)


def as_quantized(score_map: np.ndarray, where: str = "score map") -> np.ndarray:
    """Return a quantized ``(H, W)`` uint8 map.

    A uint8 array is taken as already quantized (``0..255``). Any other real array must be a
    ``[0, 1]`` map at the evaluation size (e.g. from :func:`normalize_map`) and is quantized with
    :func:`quantize_map`; it is *not* resized or normalized here.

    Raises:
        MapError: for a non-2-D, non-finite or out-of-range map.
    """
    arr = np.asarray(score_map)
    if arr.dtype == np.uint8:
        if arr.ndim != 2:
            raise MapError(f"{where}: a quantized map must be 2-D (H, W); got shape {arr.shape}.")
        return arr
    check_score_map(arr, where=where, unit_range=True)
    return quantize_map(arr)
