"""Drawing one synthetic image: background clutter and pasted objects with their exact masks
and boxes, a pure function of the spec and the image index."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from camexp.data.synthetic.classes import (
    CLASS_CATALOGUE,
    COLOUR_POOL,
    SHAPES,
    TEXTURES,
    SyntheticClass,
    render_shape,
)
from camexp.data.synthetic.spec import MAX_OVERLAP, SyntheticSpec

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
    tint = (COLOUR_POOL[rng.integers(len(COLOUR_POOL))] - 128.0) * rng.uniform(0.08, 0.25)
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
    textures = sorted(TEXTURES)
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = rng.uniform(0.35, 1.0, k)
        poly = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        r = rng.uniform(0.035, 0.09) * size
        centre = rng.uniform(0, size, 2)
        mask = render_shape([(poly, 1)], size, centre[0], centre[1], r, 0.0)
        if not mask.any():
            continue
        colour = COLOUR_POOL[rng.integers(len(COLOUR_POOL))] + rng.uniform(-20, 20, 3)
        alpha = rng.uniform(0.45, 0.8)
        if rng.random() < 0.4:
            # Some clutter carries a class texture too, so texture alone does not localise.
            ys, xs = np.nonzero(mask)
            texture = TEXTURES[textures[rng.integers(len(textures))]]
            t = texture((xs - centre[0]) / r, (ys - centre[1]) / r, rng)[:, None]
            other = COLOUR_POOL[rng.integers(len(COLOUR_POOL))]
            colour = colour * (1 - t) + other * t
        img[mask] += (colour - img[mask]) * alpha


def _object_colours(rng: np.random.Generator, cls: SyntheticClass) -> tuple[np.ndarray, np.ndarray]:
    i, j = rng.choice(3, size=2, replace=False)
    jitter = rng.uniform(-18, 18, (2, 3))
    return COLOUR_POOL[cls.palette[i]] + jitter[0], COLOUR_POOL[cls.palette[j]] + jitter[1]


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
    t = TEXTURES[cls.texture](u, v, rng)[:, None]
    col_a, col_b = _object_colours(rng, cls)
    shade = 1.0 + 0.12 * (u * rng.uniform(-1, 1) + v * rng.uniform(-1, 1))  # soft lighting
    img[ys, xs] = (col_a * (1 - t) + col_b * t) * shade[:, None]


def _place_objects(
    rng: np.random.Generator, spec: SyntheticSpec, cls: SyntheticClass, count: int
) -> list[tuple[np.ndarray, float, float, float, float]]:
    """Choose size, centre and rotation per object; two objects overlap at most lightly."""
    size = spec.image_size
    ops = SHAPES[cls.shape]
    fracs = rng.uniform(spec.min_object_frac, spec.max_object_frac, count)
    placed: list[tuple[np.ndarray, float, float, float, float]] = []
    attempts = 0
    while len(placed) < count:
        i = len(placed)
        radius = fracs[i] * size / 2.0
        cx, cy = rng.uniform(radius, size - radius, 2)
        angle = float(rng.uniform(0, 2 * np.pi))
        mask = render_shape(ops, size, float(cx), float(cy), radius, angle)
        ok = True
        for other in placed:
            inter = np.count_nonzero(mask & other[0])
            if inter > MAX_OVERLAP * min(np.count_nonzero(mask), np.count_nonzero(other[0])):
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
