"""The synthetic classes: each a fixed (shape, texture, colour palette) triple, drawn from
shared pools so that colour alone neither names the class nor finds the object."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

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


SHAPES: dict[str, _ShapeOps] = {
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


def render_shape(
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


TEXTURES: dict[str, _Texture] = {
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
COLOUR_POOL = np.array(
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
