"""Random smooth score maps and boxes, for tests and benchmarks of the localization code.

The families mimic what the evaluation sees: blurred noise (many blobs, pits and holes), sums
of Gaussians, and CAM-like maps (a few bumps on a 14x14 grid upsampled bicubically). All maps are
float64 in ``[0, 1]``; boxes are ``(x0, y0, x1, y1)`` int64 with inclusive corners.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "blurred_noise",
    "box_around",
    "cam_like",
    "gaussian_bumps",
    "random_boxes",
    "random_map",
]


def blurred_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred uniform noise, min-max normalized to [0, 1] (many blobs and pits)."""
    noise = rng.random((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma).astype(np.float64)
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def gaussian_bumps(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Sum of ``count`` random Gaussians plus a little smooth noise, normalized to [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((size, size))
    for _ in range(count):
        cx, cy = rng.uniform(0, size, 2)
        sigma = rng.uniform(0.04, 0.25) * size
        out += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    out += 0.05 * blurred_noise(rng, size, size / 50)
    return (out - out.min()) / (out.max() - out.min())


def cam_like(rng: np.random.Generator, size: int, low: int = 14) -> np.ndarray:
    """A CAM-like map: a few bumps on a ``low x low`` grid, bicubic-upsampled, normalized."""
    small = gaussian_bumps(rng, low, int(rng.integers(1, 4))) + 0.1 * rng.random((low, low))
    big = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return (big - big.min()) / (big.max() - big.min())


def random_map(rng: np.random.Generator, size: int) -> np.ndarray:
    """One of the families above, sometimes coarsely quantized (plateaus, equal-area ties)."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        m = blurred_noise(rng, size, rng.uniform(size / 40, size / 8))
    elif kind == 1:
        m = gaussian_bumps(rng, size, int(rng.integers(1, 5)))
    else:
        m = cam_like(rng, size)
    if kind == 3:
        m = np.floor(m * rng.integers(3, 12)) / 12
        m = m / m.max() if m.max() > 0 else m
    return m


def box_around(map01: np.ndarray, level: float = 0.5) -> np.ndarray:
    """A ground-truth-like box: the extent of the pixels above ``level``, as ``(1, 4)`` int64."""
    ys, xs = np.nonzero(map01 > level)
    return np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=np.int64)


def random_boxes(rng: np.random.Generator, size: int) -> np.ndarray:
    """1-3 random ground-truth boxes ``(x0, y0, x1, y1)`` int64 inside a ``size`` image."""
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        w, h = rng.integers(1, size, 2)
        x0 = int(rng.integers(0, size - w + 1))
        y0 = int(rng.integers(0, size - h + 1))
        boxes.append([x0, y0, x0 + int(w) - 1, y0 + int(h) - 1])
    return np.asarray(boxes, dtype=np.int64)
