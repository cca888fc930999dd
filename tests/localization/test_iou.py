from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import box_iou, max_iou
from camexp.localization.reference import iou_inclusive


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 9, 9), (0, 0, 9, 9), 1.0),
        ((0, 0, 1, 1), (1, 1, 2, 2), 1 / 7),  # 2x2 boxes overlapping in one pixel
        ((0, 0, 9, 9), (10, 10, 19, 19), 0.0),  # touching corners, no shared pixel
        ((0, 0, 9, 9), (0, 0, 4, 9), 0.5),  # half of it
        ((0, 0, 0, 0), (0, 0, 0, 0), 1.0),  # single pixel (the empty-mask box) on itself
        ((0, 0, 0, 0), (0, 0, 1, 1), 0.25),
        ((2, 3, 5, 7), (4, 3, 9, 7), (2 * 5) / (4 * 5 + 6 * 5 - 2 * 5)),
    ],
)
def test_box_iou_hand_values(a, b, expected) -> None:
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected, abs=0, rel=1e-15)
    assert iou_inclusive(a, b) == pytest.approx(expected, abs=0, rel=1e-15)


def test_box_iou_is_vectorized_and_exact() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, (30, 2))
    a = np.concatenate([a, a + rng.integers(0, 30, (30, 2))], axis=1)
    b = rng.integers(0, 50, (7, 2))
    b = np.concatenate([b, b + rng.integers(0, 30, (7, 2))], axis=1)
    iou = box_iou(a, b)
    assert iou.shape == (30, 7)
    assert iou.dtype == np.float64
    loops = np.array([[iou_inclusive(x, y) for y in b.tolist()] for x in a.tolist()])
    assert np.array_equal(iou, loops)  # bit for bit
    assert np.array_equal(max_iou(a, b), loops.max(axis=1))


def test_box_iou_degenerate_union_is_zero() -> None:
    # inverted boxes are malformed; like the field, a non-positive union gives 0
    assert box_iou(np.array([[5, 5, 3, 3]]), np.array([[5, 5, 3, 3]]))[0, 0] == 0.0
