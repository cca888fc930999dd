"""Embedded default dataset: a seeded synthetic WSOL set written in the CUB-200-2011 layout.

Why it exists: the real CUB/ILSVRC downloads are large and licensed separately, yet every part of
the pipeline (training, CAM extraction, box evaluation) needs *some* localization data to run out of
the box, in CI and on a laptop CPU. This module draws a small dataset whose ground truth is exact
(each object is a pasted binary mask, so its box and segmentation are known to the pixel) and writes
it once in the official CUB-200-2011 on-disk layout, so the ordinary CUB reader reads it unchanged.

What an image looks like: a cluttered, low-contrast textured background (value noise, lines, soft
blobs, small irregular distractor polygons that match no class shape) with one object, or, with
probability ``two_object_prob``, two objects of the same class that overlap at most lightly. A class
is a fixed (shape, texture, colour palette) triple. Palettes are drawn from one shared pool and
overlap between classes, and distractors use the same colours, so colour alone neither names the
class nor finds the object: shape and texture do.

Layout written under ``<root>/CUB_200_2011/`` (as the official tarball plus its separate
segmentations download; ``parts/`` is optional in CUB and not written)::

    images/<class_dir>/<name>.jpg          e.g. images/001.Disc_Striped/Disc_Striped_0001.jpg
    segmentations/<class_dir>/<name>.png   8-bit grey, 0 background / 255 object (union of objects)
    classes.txt                            <class_id> <class_dir>
    images.txt                             <image_id> <class_dir>/<name>.jpg   (ids 1..N)
    image_class_labels.txt                 <image_id> <class_id>
    train_test_split.txt                   <image_id> <1 train | 0 test>
    bounding_boxes.txt                     <image_id> <x> <y> <width> <height>   (floats, pixels)
    synthetic.json                         the spec, format version and class list

Boxes are the tight boxes of each object's *visible* mask pixels: ``x, y`` is the top-left mask
pixel, ``width = max_col - min_col + 1`` (height likewise), written as floats like CUB
(``60.0 27.0 325.0 304.0``). They are computed from the mask, never from the (lossy) JPEG.

**The one extension of the official format:** an image with two objects has TWO lines in
``bounding_boxes.txt`` with the same ``image_id`` (one per object, in paste order). Official CUB has
exactly one line per image; a reader that keeps only the first line per id still works, and one
that collects all lines per id gets every object (as ILSVRC's multi-box evaluation expects).

Determinism: every image is drawn from ``np.random.default_rng([seed, image_index])``, so the same
spec gives byte-identical files (JPEG quality fixed, 4:4:4 chroma, no metadata) in any order, and
different seeds give different images. ``ensure_synthetic_cub`` writes into a temporary sibling
folder and renames it into place, so a crash never leaves a half-written dataset that is reused.

Command line: ``python -m camexp.data.synthetic --out DIR [--seed N ...]`` writes
``DIR/CUB_200_2011``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import operator
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "CLASS_CATALOGUE",
    "CUB_DIRNAME",
    "FORMAT_VERSION",
    "SyntheticClass",
    "SyntheticSample",
    "SyntheticSpec",
    "class_dirs",
    "ensure_synthetic_cub",
    "generate_sample",
    "main",
    "spec_hash",
    "write_synthetic_cub",
]

#: Bumped whenever the drawing or the files change, so cached copies of an older look are not reused
#: (the version is part of the cache folder's hash).
FORMAT_VERSION = 1
CUB_DIRNAME = "CUB_200_2011"
_META_NAME = "synthetic.json"
_FORMAT_NAME = "camexp-synthetic-cub"

# Objects in a two-object image may overlap by at most this fraction of the smaller one's area,
# so that both stay clearly visible and their boxes stay meaningful.
_MAX_OVERLAP = 0.05


# --------------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that decides the dataset's content; its hash names the cache folder.

    Object sizes are the diameter of the object's bounding circle as a fraction of the image side,
    so a rotated object always fits. In two-object images both objects may be shrunk below
    ``min_object_frac`` when the drawn sizes leave no room to place them without heavy overlap.
    """

    num_classes: int = 10
    train_per_class: int = 60
    test_per_class: int = 20
    image_size: int = 128
    two_object_prob: float = 0.25
    min_object_frac: float = 0.3
    max_object_frac: float = 0.6
    seed: int = 0
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        # Coerce numpy scalars and ints given for float fields, so equal specs hash equally.
        for name in (
            "num_classes",
            "train_per_class",
            "test_per_class",
            "image_size",
            "seed",
            "jpeg_quality",
        ):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise ValueError(f"SyntheticSpec.{name} must be an integer, got {value!r}")
            try:
                object.__setattr__(self, name, operator.index(value))
            except TypeError:
                raise ValueError(
                    f"SyntheticSpec.{name} must be an integer, got {value!r}"
                ) from None
        for name in ("two_object_prob", "min_object_frac", "max_object_frac"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise ValueError(f"SyntheticSpec.{name} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"SyntheticSpec.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        n_max = len(CLASS_CATALOGUE)
        if not 2 <= self.num_classes <= n_max:
            raise ValueError(f"num_classes must be in [2, {n_max}], got {self.num_classes}")
        if self.train_per_class < 1:
            raise ValueError(f"train_per_class must be >= 1, got {self.train_per_class}")
        if self.test_per_class < 1:
            raise ValueError(f"test_per_class must be >= 1, got {self.test_per_class}")
        if not 32 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in [32, 1024] pixels, got {self.image_size}")
        if not 0.0 <= self.two_object_prob <= 1.0:
            raise ValueError(f"two_object_prob must be in [0, 1], got {self.two_object_prob}")
        if not 0.0 < self.min_object_frac <= self.max_object_frac <= 1.0:
            raise ValueError(
                "object fractions must satisfy 0 < min_object_frac <= max_object_frac <= 1, got "
                f"min_object_frac={self.min_object_frac}, max_object_frac={self.max_object_frac}"
            )
        if self.min_object_frac * self.image_size < 12:
            raise ValueError(
                f"min_object_frac * image_size = {self.min_object_frac * self.image_size:.1f} px "
                "is too small to draw a recognisable shape (need >= 12 px)"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in [1, 95], got {self.jpeg_quality}")

    @property
    def images_per_class(self) -> int:
        return self.train_per_class + self.test_per_class

    @property
    def num_images(self) -> int:
        return self.num_classes * self.images_per_class

    def to_dict(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)


def spec_hash(spec: SyntheticSpec) -> str:
    """12 hex digits naming the cache folder; changes with the spec and with FORMAT_VERSION."""
    payload = json.dumps(
        {"format": _FORMAT_NAME, "format_version": FORMAT_VERSION, "spec": spec.to_dict()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------------
# Shapes: lists of (polygon in unit-circle coordinates, fill value); later polygons cut holes.
# --------------------------------------------------------------------------------------------------

_Poly = np.ndarray
_ShapeOps = list[tuple[_Poly, int]]


def _circle(radius: float, cx: float = 0.0, cy: float = 0.0, n: int = 72) -> _Poly:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _regular(n: int, radius: float, phase: float = -np.pi / 2) -> _Poly:
    t = phase + np.arange(n) * 2.0 * np.pi / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star(points: int, outer: float, inner: float) -> _Poly:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart() -> _Poly:
    t = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(axis=0) + pts.min(axis=0)) / 2.0
    return pts * (0.97 / np.linalg.norm(pts, axis=1).max())


def _centre_and_fit(pts: _Poly, radius: float = 0.97) -> _Poly:
    pts = pts - (pts.max(axis=0) + pts.min(axis=0)) / 2.0
    return pts * (radius / np.linalg.norm(pts, axis=1).max())


def _cross() -> _Poly:
    a, w = 0.92, 0.27
    return np.array(
        [
            [-w, -a],
            [w, -a],
            [w, -w],
            [a, -w],
            [a, w],
            [w, w],
            [w, a],
            [-w, a],
            [-w, w],
            [-a, w],
            [-a, -w],
            [-w, -w],
        ]
    )


def _arrow() -> _Poly:
    pts = np.array(
        [
            [-1.0, -0.2],
            [0.15, -0.2],
            [0.15, -0.55],
            [1.0, 0.0],
            [0.15, 0.55],
            [0.15, 0.2],
            [-1.0, 0.2],
        ]
    )
    return _centre_and_fit(pts)


_SHAPES: dict[str, _ShapeOps] = {
    "disc": [(_circle(0.9), 1)],
    "square": [(np.array([[-0.68, -0.68], [0.68, -0.68], [0.68, 0.68], [-0.68, 0.68]]), 1)],
    "triangle": [(_regular(3, 0.98), 1)],
    "star": [(_star(5, 0.98, 0.42), 1)],
    "cross": [(_cross(), 1)],
    "ring": [(_circle(0.92), 1), (_circle(0.5), 0)],
    "ellipse": [(_circle(1.0) * np.array([0.96, 0.5]), 1)],
    "diamond": [(np.array([[0.0, -0.97], [0.6, 0.0], [0.0, 0.97], [-0.6, 0.0]]), 1)],
    "hexagon": [(_regular(6, 0.93, phase=0.0), 1)],
    "crescent": [(_circle(0.92), 1), (_circle(0.74, cx=0.45), 0)],
    "heart": [(_heart(), 1)],
    "arrow": [(_arrow(), 1)],
}


def _render_shape(
    ops: _ShapeOps, size: int, cx: float, cy: float, radius: float, angle: float
) -> np.ndarray:
    """Rasterise a shape (exact binary mask, no anti-aliasing) on a size x size canvas."""
    mask = np.zeros((size, size), dtype=np.uint8)
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    for poly, value in ops:
        pts = poly @ rot.T * radius + np.array([cx, cy])
        fixed = np.round(pts * 16.0).astype(np.int32)  # 4 fractional bits (shift=4)
        cv2.fillPoly(mask, [fixed], int(value), lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


# --------------------------------------------------------------------------------------------------
# Textures: t(u, v) in [0, 1] in the object's own rotated unit coordinates (mix of two colours).
# --------------------------------------------------------------------------------------------------

_Texture = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _soft(x: np.ndarray, sharpness: float = 2.5) -> np.ndarray:
    """Square wave with slightly soft edges: crisp bands that JPEG does not ring around badly."""
    return np.clip(0.5 + sharpness * x, 0.0, 1.0)


def _freq(rng: np.random.Generator, base: float) -> float:
    return base * float(rng.uniform(0.88, 1.12))


def _grid_lookup(grid: np.ndarray, u: np.ndarray, v: np.ndarray, smooth: bool) -> np.ndarray:
    """Sample a random grid spanning [-1, 1]^2 (bilinear+smoothstep, or nearest)."""
    n = grid.shape[0] - 1
    gx = np.clip((u + 1.0) * 0.5 * n, 0.0, n - 1e-6)
    gy = np.clip((v + 1.0) * 0.5 * n, 0.0, n - 1e-6)
    ix, iy = gx.astype(np.int64), gy.astype(np.int64)
    if not smooth:
        return grid[iy, ix]
    fx, fy = gx - ix, gy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _tex_striped(u, v, rng):
    f, ph = _freq(rng, 2.6), rng.uniform(0, 2 * np.pi)
    a = np.pi / 4  # stripes at 45 degrees to the object's own axis
    return _soft(np.sin(2 * np.pi * f * (u * math.cos(a) + v * math.sin(a)) + ph))


def _tex_dotted(u, v, rng):
    f = _freq(rng, 2.4)
    a = (u * f + rng.uniform()) % 1.0 - 0.5
    b = (v * f + rng.uniform()) % 1.0 - 0.5
    return _soft(0.3**2 - (a * a + b * b), sharpness=40.0)


def _tex_checkered(u, v, rng):
    f = _freq(rng, 2.0)
    return _soft(
        np.sin(np.pi * f * u + rng.uniform(0, 2 * np.pi))
        * np.sin(np.pi * f * v + rng.uniform(0, 2 * np.pi)),
        sharpness=4.0,
    )


def _tex_gradient(u, v, rng):
    a = rng.uniform(0, 2 * np.pi)
    # Steep enough that most of the object shows the two pure colours, not their muddy mean.
    return np.clip(0.5 + 1.1 * (u * math.cos(a) + v * math.sin(a)), 0.0, 1.0)


def _tex_ringed(u, v, rng):
    f = _freq(rng, 2.6)
    return _soft(np.sin(2 * np.pi * f * np.sqrt(u * u + v * v) + rng.uniform(0, 2 * np.pi)))


def _tex_zigzag(u, v, rng):
    f, g = _freq(rng, 2.6), 2.2
    tri = np.abs((v * g + rng.uniform()) % 1.0 - 0.5) * 2.0
    return _soft(np.sin(2 * np.pi * f * (u + 0.3 * tri) + rng.uniform(0, 2 * np.pi)))


def _tex_camo(u, v, rng):
    grid = rng.random((6, 6))
    return _soft(_grid_lookup(grid, u, v, smooth=True) - 0.5, sharpness=8.0)


def _tex_gridded(u, v, rng):
    f = _freq(rng, 2.4)
    a = (u * f + rng.uniform()) % 1.0
    b = (v * f + rng.uniform()) % 1.0
    return ((a < 0.28) | (b < 0.28)).astype(np.float64)


def _tex_spiral(u, v, rng):
    r, th = np.sqrt(u * u + v * v), np.arctan2(v, u)
    return _soft(np.sin(3 * th + 2 * np.pi * _freq(rng, 1.8) * r + rng.uniform(0, 2 * np.pi)))


def _tex_speckled(u, v, rng):
    grid = (rng.random((15, 15)) < 0.5).astype(np.float64)
    return _grid_lookup(grid, u, v, smooth=False)


_TEXTURES: dict[str, _Texture] = {
    "Striped": _tex_striped,
    "Dotted": _tex_dotted,
    "Checkered": _tex_checkered,
    "Gradient": _tex_gradient,
    "Ringed": _tex_ringed,
    "Zigzag": _tex_zigzag,
    "Camo": _tex_camo,
    "Gridded": _tex_gridded,
    "Spiral": _tex_spiral,
    "Speckled": _tex_speckled,
}

# One shared pool of colours (RGB). Class palettes overlap and distractors use the same pool, so
# colour is weak evidence for both the class and the object's position.
_POOL = np.array(
    [
        [214, 48, 39],  # red
        [241, 140, 32],  # orange
        [238, 212, 46],  # yellow
        [58, 168, 72],  # green
        [32, 170, 170],  # teal
        [48, 92, 212],  # blue
        [138, 62, 192],  # purple
        [222, 64, 150],  # magenta
        [242, 242, 236],  # white
        [34, 34, 42],  # near black
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class SyntheticClass:
    """One class: a fixed (shape, texture, palette) combination."""

    shape: str
    texture: str
    palette: tuple[int, int, int]  # indices into the shared colour pool

    @property
    def name(self) -> str:
        return f"{self.shape.capitalize()}_{self.texture}"


def _catalogue() -> tuple[SyntheticClass, ...]:
    # (shape, texture, palette). Each palette mixes a light, a mid and a dark pool colour so the
    # texture always shows, and each pool colour serves 2-4 of the first ten classes.
    table = [
        # The first ten differ in both shape and texture.
        ("disc", "Striped", (0, 4, 8)),
        ("square", "Dotted", (2, 5, 0)),
        ("triangle", "Checkered", (1, 3, 6)),
        ("star", "Gradient", (2, 7, 4)),
        ("cross", "Ringed", (8, 6, 1)),
        ("ring", "Zigzag", (2, 5, 9)),
        ("ellipse", "Camo", (8, 3, 7)),
        ("diamond", "Gridded", (1, 4, 9)),
        ("hexagon", "Spiral", (0, 3, 8)),
        ("crescent", "Speckled", (1, 5, 7)),
        ("heart", "Striped", (0, 6, 2)),
        ("arrow", "Checkered", (7, 2, 5)),
        # The last four reuse an earlier class's shape and palette with another texture:
        # only the texture tells them apart.
        ("disc", "Checkered", (0, 4, 8)),
        ("square", "Striped", (2, 5, 0)),
        ("star", "Dotted", (2, 7, 4)),
        ("triangle", "Ringed", (1, 3, 6)),
    ]
    return tuple(SyntheticClass(shape, texture, palette) for shape, texture, palette in table)


CLASS_CATALOGUE: tuple[SyntheticClass, ...] = _catalogue()


def class_dirs(spec: SyntheticSpec) -> list[str]:
    """CUB-style class folder names, e.g. ``001.Disc_Striped``."""
    return [f"{i + 1:03d}.{c.name}" for i, c in enumerate(CLASS_CATALOGUE[: spec.num_classes])]


# --------------------------------------------------------------------------------------------------
# Drawing one image
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticSample:
    """One drawn image with its exact ground truth (visible mask and tight box per object)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    masks: tuple[np.ndarray, ...]  # per object, (H, W) bool, visible pixels only
    boxes: tuple[tuple[int, int, int, int], ...]  # per object, (x, y, width, height)
    class_index: int  # 0-based

    @property
    def mask(self) -> np.ndarray:
        """Union of the objects' masks (what the segmentation PNG holds)."""
        return np.logical_or.reduce(self.masks)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency value noise in [-1, 1] (cubic upsampling of a coarse random grid)."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)


def _draw_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cluttered but low-contrast scene: tinted grey, noise, lines, soft blobs."""
    grey = rng.uniform(85, 175)
    tint = (_POOL[rng.integers(len(_POOL))] - 128.0) * rng.uniform(0.08, 0.25)
    img = np.full((size, size, 3), grey, dtype=np.float64) + tint
    # Two scales of value noise, partly per channel so the background is not a flat hue.
    img += _smooth_noise(rng, size, int(rng.integers(3, 6)))[..., None] * rng.uniform(10, 25)
    for ch in range(3):
        img[..., ch] += _smooth_noise(rng, size, int(rng.integers(6, 12))) * rng.uniform(4, 10)
    # Soft blobs.
    for _ in range(int(rng.integers(2, 6))):
        layer = np.zeros((size, size), dtype=np.float32)
        centre = (int(rng.integers(size)), int(rng.integers(size)))
        axes = (int(rng.uniform(0.05, 0.2) * size) + 1, int(rng.uniform(0.05, 0.2) * size) + 1)
        cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        k = 2 * (size // 24) + 1
        layer = cv2.GaussianBlur(layer, (k, k), 0).astype(np.float64)
        colour = grey + tint + rng.uniform(-45, 45, 3)
        alpha = rng.uniform(0.2, 0.45)
        img += (colour - img) * (layer[..., None] * alpha)
    # Thin lines and scribbles.
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        p0 = tuple(int(x) for x in rng.integers(-size // 4, size + size // 4, 2))
        p1 = tuple(int(x) for x in rng.integers(-size // 4, size + size // 4, 2))
        colour = tuple(float(c) for c in np.clip(grey + tint + rng.uniform(-50, 50, 3), 0, 255))
        cv2.line(canvas, p0, p1, colour, int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return canvas.astype(np.float64)


def _draw_distractors(rng: np.random.Generator, img: np.ndarray) -> None:
    """Small irregular polygons in class colours: clutter that matches no class shape."""
    size = img.shape[0]
    textures = sorted(_TEXTURES)
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = rng.uniform(0.35, 1.0, k)
        poly = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        r = rng.uniform(0.035, 0.09) * size
        centre = rng.uniform(0, size, 2)
        mask = _render_shape([(poly, 1)], size, centre[0], centre[1], r, 0.0)
        if not mask.any():
            continue
        colour = _POOL[rng.integers(len(_POOL))] + rng.uniform(-20, 20, 3)
        alpha = rng.uniform(0.45, 0.8)
        if rng.random() < 0.4:
            # Some clutter carries a class texture too, so texture alone does not localise.
            ys, xs = np.nonzero(mask)
            texture = _TEXTURES[textures[rng.integers(len(textures))]]
            t = texture((xs - centre[0]) / r, (ys - centre[1]) / r, rng)[:, None]
            other = _POOL[rng.integers(len(_POOL))]
            colour = colour * (1 - t) + other * t
        img[mask] += (colour - img[mask]) * alpha


def _object_colours(rng: np.random.Generator, cls: SyntheticClass) -> tuple[np.ndarray, np.ndarray]:
    i, j = rng.choice(3, size=2, replace=False)
    jitter = rng.uniform(-18, 18, (2, 3))
    return _POOL[cls.palette[i]] + jitter[0], _POOL[cls.palette[j]] + jitter[1]


def _paste_object(
    rng: np.random.Generator,
    img: np.ndarray,
    cls: SyntheticClass,
    mask: np.ndarray,
    cx: float,
    cy: float,
    radius: float,
    angle: float,
) -> None:
    """Fill the mask pixels with the class texture in the object's own (rotated) frame."""
    ys, xs = np.nonzero(mask)
    dx, dy = (xs - cx) / radius, (ys - cy) / radius
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    t = _TEXTURES[cls.texture](u, v, rng)[:, None]
    col_a, col_b = _object_colours(rng, cls)
    shade = 1.0 + 0.12 * (u * rng.uniform(-1, 1) + v * rng.uniform(-1, 1))  # soft lighting
    img[ys, xs] = (col_a * (1 - t) + col_b * t) * shade[:, None]


def _place_objects(
    rng: np.random.Generator, spec: SyntheticSpec, cls: SyntheticClass, count: int
) -> list[tuple[np.ndarray, float, float, float, float]]:
    """Choose size, centre and rotation per object; two objects overlap at most lightly."""
    size = spec.image_size
    ops = _SHAPES[cls.shape]
    fracs = rng.uniform(spec.min_object_frac, spec.max_object_frac, count)
    placed: list[tuple[np.ndarray, float, float, float, float]] = []
    attempts = 0
    while len(placed) < count:
        i = len(placed)
        radius = fracs[i] * size / 2.0
        cx, cy = rng.uniform(radius, size - radius, 2)
        angle = float(rng.uniform(0, 2 * np.pi))
        mask = _render_shape(ops, size, float(cx), float(cy), radius, angle)
        ok = True
        for other in placed:
            inter = np.count_nonzero(mask & other[0])
            if inter > _MAX_OVERLAP * min(np.count_nonzero(mask), np.count_nonzero(other[0])):
                ok = False
                break
        if ok:
            placed.append((mask, float(cx), float(cy), radius, angle))
            continue
        attempts += 1
        if attempts % 20 == 0:  # no room at these sizes: shrink everything and start over
            fracs = fracs * 0.9
            placed = []
    return placed


def _image_class(spec: SyntheticSpec, image_index: int) -> int:
    return image_index // spec.images_per_class


def generate_sample(spec: SyntheticSpec, image_index: int) -> SyntheticSample:
    """Draw image ``image_index`` (0-based) from its own RNG, so order and parallelism don't matter."""
    if not 0 <= image_index < spec.num_images:
        raise ValueError(f"image_index must be in [0, {spec.num_images}), got {image_index}")
    rng = np.random.default_rng([spec.seed, image_index])
    class_index = _image_class(spec, image_index)
    cls = CLASS_CATALOGUE[class_index]
    size = spec.image_size

    img = _draw_background(rng, size)
    _draw_distractors(rng, img)
    count = 2 if rng.random() < spec.two_object_prob else 1
    objects = _place_objects(rng, spec, cls, count)
    visible: list[np.ndarray] = []
    for mask, cx, cy, radius, angle in objects:
        _paste_object(rng, img, cls, mask, cx, cy, radius, angle)
        visible = [m & ~mask for m in visible]  # later objects occlude earlier ones
        visible.append(mask.copy())
    img += rng.normal(0.0, 2.5, img.shape)  # sensor noise over everything
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return SyntheticSample(
        image=image,
        masks=tuple(visible),
        boxes=tuple(_mask_box(m) for m in visible),
        class_index=class_index,
    )


# --------------------------------------------------------------------------------------------------
# Writing the CUB layout
# --------------------------------------------------------------------------------------------------


def _split_flags(spec: SyntheticSpec, class_index: int) -> np.ndarray:
    """Train(1)/test(0) per image of a class, shuffled like CUB's interleaved split."""
    flags = np.array([1] * spec.train_per_class + [0] * spec.test_per_class, dtype=np.int64)
    return np.random.default_rng([spec.seed, class_index, 1]).permutation(flags)


def _metadata(spec: SyntheticSpec) -> dict:
    return {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "spec_hash": spec_hash(spec),
        "classes": [
            {"class_id": i + 1, "class_dir": d, "shape": c.shape, "texture": c.texture}
            for i, (d, c) in enumerate(zip(class_dirs(spec), CLASS_CATALOGUE, strict=False))
        ],
        "num_images": spec.num_images,
        "bounding_boxes": "one line per object; two-object images repeat the image_id",
    }


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def write_synthetic_cub(root: Path | str, spec: SyntheticSpec | None = None) -> Path:
    """Write the dataset to ``root/CUB_200_2011`` and return that folder.

    Refuses to write into a non-empty ``CUB_200_2011`` so a real dataset is never overwritten.
    ``synthetic.json`` is written last, so its presence marks a finished write.
    """
    spec = SyntheticSpec() if spec is None else spec
    cub = Path(root) / CUB_DIRNAME
    if cub.exists() and any(cub.iterdir()):
        raise FileExistsError(f"{cub} exists and is not empty; refusing to overwrite it")
    dirs = class_dirs(spec)
    for d in dirs:
        (cub / "images" / d).mkdir(parents=True, exist_ok=True)
        (cub / "segmentations" / d).mkdir(parents=True, exist_ok=True)

    images, labels, split, boxes = [], [], [], []
    for class_index, class_dir in enumerate(dirs):
        flags = _split_flags(spec, class_index)
        name_stem = CLASS_CATALOGUE[class_index].name
        for k in range(spec.images_per_class):
            image_index = class_index * spec.images_per_class + k
            image_id = image_index + 1
            sample = generate_sample(spec, image_index)
            name = f"{name_stem}_{k + 1:04d}"
            Image.fromarray(sample.image, mode="RGB").save(
                cub / "images" / class_dir / f"{name}.jpg",
                format="JPEG",
                quality=spec.jpeg_quality,
                subsampling=0,
                optimize=False,
            )
            seg = np.where(sample.mask, 255, 0).astype(np.uint8)
            Image.fromarray(seg, mode="L").save(
                cub / "segmentations" / class_dir / f"{name}.png", format="PNG"
            )
            images.append(f"{image_id} {class_dir}/{name}.jpg")
            labels.append(f"{image_id} {class_index + 1}")
            split.append(f"{image_id} {int(flags[k])}")
            boxes.extend(
                f"{image_id} {float(x):.1f} {float(y):.1f} {float(w):.1f} {float(h):.1f}"
                for x, y, w, h in sample.boxes
            )

    _write_lines(cub / "classes.txt", [f"{i + 1} {d}" for i, d in enumerate(dirs)])
    _write_lines(cub / "images.txt", images)
    _write_lines(cub / "image_class_labels.txt", labels)
    _write_lines(cub / "train_test_split.txt", split)
    _write_lines(cub / "bounding_boxes.txt", boxes)
    (cub / _META_NAME).write_text(
        json.dumps(_metadata(spec), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return cub


def _is_complete(cub: Path, spec: SyntheticSpec) -> bool:
    try:
        meta = json.loads((cub / _META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        meta.get("format_version") == FORMAT_VERSION
        and meta.get("spec") == spec.to_dict()
        and (cub / "images.txt").is_file()
    )


def ensure_synthetic_cub(cache_dir: Path | str, spec: SyntheticSpec | None = None) -> Path:
    """Return ``cache_dir/synthetic-<hash12>/CUB_200_2011``, writing it first if needed.

    The write goes to a uniquely named temporary sibling that is renamed into place, so a crashed
    write (a leftover ``.synthetic-<hash>.tmp-*`` folder) is never mistaken for a dataset, and two
    processes racing to write it both end up with one complete copy.
    """
    spec = SyntheticSpec() if spec is None else spec
    cache_dir = Path(cache_dir)
    digest = spec_hash(spec)
    final = cache_dir / f"synthetic-{digest}"
    cub = final / CUB_DIRNAME
    if _is_complete(cub, spec):
        return cub

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".synthetic-{digest}.tmp-", dir=cache_dir))
    try:
        write_synthetic_cub(tmp, spec)
        if final.exists():
            if _is_complete(cub, spec):  # another process finished first
                return cub
            # Not ours to trust (e.g. edited by hand): move it aside, then remove it.
            trash = cache_dir / f".synthetic-{digest}.trash-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if _is_complete(cub, spec):  # lost a race to a concurrent writer
                return cub
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return cub


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Write a copy of the synthetic dataset to ``--out/CUB_200_2011``."""
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(
        prog="python -m camexp.data.synthetic",
        description="Write the seeded synthetic WSOL dataset in the CUB-200-2011 layout.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to hold CUB_200_2011/")
    for field in dataclasses.fields(SyntheticSpec):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"(default: {default})",
        )
    args = parser.parse_args(argv)
    try:
        spec = SyntheticSpec(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)}
        )
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    try:
        cub = write_synthetic_cub(args.out, spec)
    except FileExistsError as err:
        parser.error(str(err))
    print(f"wrote {spec.num_images} images to {cub} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
