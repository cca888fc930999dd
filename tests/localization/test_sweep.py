"""The fast sweep against the reference, count for count, and hand-built sweeps."""

from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import (
    box_sweep,
    box_sweep_counts,
    cam_thresholds,
    distinct_masks,
    quantize_map,
    reference_box_sweep,
    sweep_pool,
    threshold_levels,
)
from camexp.localization.random_maps import random_boxes, random_map


def assert_same(fast, ref) -> None:
    assert fast.multi.shape == ref.multi.shape
    assert np.array_equal(fast.multi, ref.multi)
    assert np.array_equal(fast.largest, ref.largest)


def test_two_level_map_hand_curve() -> None:
    # inner 8x8 square at 255 inside a 16x16 square at 127: below level 127 the mask is the
    # outer square, from level 127 on the inner one.
    q = np.zeros((32, 32), dtype=np.uint8)
    q[8:24, 8:24] = 127
    q[12:20, 12:20] = 255
    gt = np.array([[12, 12, 19, 19]])
    taus = cam_thresholds()
    sweep = box_sweep(q, gt, taus, (30, 50, 70))
    # the inner box (12, 12, 20, 20) has IoU 64/81 with the ground truth, the outer one 64/289
    first = int(np.argmax(threshold_levels(taus, 255) >= 127))
    assert taus[first] == pytest.approx(0.499)
    expected = np.zeros(1000, dtype=bool)
    expected[first:] = True
    for row in range(3):
        assert np.array_equal(sweep.multi[row], expected)
        assert np.array_equal(sweep.largest[row], expected)
    assert_same(sweep, reference_box_sweep(q, gt, taus, (30, 50, 70)))


def test_ring_hole_counts_in_v2_only() -> None:
    q = np.zeros((9, 9), dtype=np.uint8)
    q[1:8, 1:8] = 255
    q[3:6, 3:6] = 0
    gt = np.array([[2, 2, 7, 7]])  # the hole contour's box
    taus = cam_thresholds(0.1)
    sweep = box_sweep(q, gt, taus, (50, 70))
    assert sweep.multi.all()  # hole box: IoU 1
    assert sweep.largest[0].all() and not sweep.largest[1].any()  # outer box: IoU 36/64
    assert_same(sweep, reference_box_sweep(q, gt, taus, (50, 70)))


def test_constant_and_empty_maps() -> None:
    taus = cam_thresholds(0.01)
    zero = np.zeros((16, 16))
    # empty mask at every threshold -> box (0, 0, 0, 0)
    corner = box_sweep(zero, np.array([[0, 0, 0, 0]]), taus, (50,))
    assert corner.multi.all() and corner.largest.all()
    far = box_sweep(zero, np.array([[5, 5, 9, 9]]), taus, (50,))
    assert not far.multi.any()
    # a constant nonzero quantized map: the whole image at every threshold
    full = np.full((16, 16), 200, dtype=np.uint8)
    sweep = box_sweep(full, np.array([[0, 0, 15, 15]]), taus, (50,))
    assert sweep.multi.all()
    assert_same(sweep, reference_box_sweep(full, np.array([[0, 0, 15, 15]]), taus, (50,)))


def test_twin_blobs_equal_area_tie_follows_opencv_order() -> None:
    q = np.zeros((20, 20), dtype=np.uint8)
    q[2:6, 2:6] = 255
    q[12:16, 12:16] = 255
    taus = cam_thresholds(0.05)
    for gt in ([[2, 2, 5, 5]], [[12, 12, 15, 15]]):
        sweep = box_sweep(q, np.array(gt), taus, (50,))
        ref = reference_box_sweep(q, np.array(gt), taus, (50,))
        assert_same(sweep, ref)
        assert sweep.multi.all()
    # exactly one of the twins is "the largest" (the first in OpenCV's order)
    a = box_sweep(q, np.array([[2, 2, 5, 5]]), taus, (50,)).largest.all()
    b = box_sweep(q, np.array([[12, 12, 15, 15]]), taus, (50,)).largest.all()
    assert a != b


def test_distinct_masks_groups_identical_masks() -> None:
    q = np.array([[0, 10, 10, 200]], dtype=np.uint8)
    taus = cam_thresholds()
    levels, inverse = distinct_masks(q, taus)
    masks = [q > lv for lv in levels]
    # levels 0..199 (tau < 1): levels 0..9 keep {10, 10, 200}, levels 10..199 keep {200}
    assert len({m.tobytes() for m in masks}) == len(levels) == 2
    for t in range(0, 1000, 37):
        assert np.array_equal(q > threshold_levels(taus[t : t + 1], 200)[0], masks[inverse[t]])


def test_fast_equals_reference_on_many_small_maps() -> None:
    rng = np.random.default_rng(1234)
    taus = cam_thresholds(0.002)  # 500 thresholds
    for _ in range(300):
        size = int(rng.integers(24, 72))
        q = quantize_map(random_map(rng, size))
        gt = random_boxes(rng, size)
        ious = (30, 50, 70)
        assert_same(box_sweep(q, gt, taus, ious), reference_box_sweep(q, gt, taus, ious))


def test_fast_equals_reference_at_224_with_1000_thresholds() -> None:
    rng = np.random.default_rng(99)
    taus = cam_thresholds()
    for _ in range(30):
        q = quantize_map(random_map(rng, 224))
        gt = random_boxes(rng, 224)
        assert_same(box_sweep(q, gt, taus), reference_box_sweep(q, gt, taus))


def test_float_ground_truth_disables_only_the_bound() -> None:
    rng = np.random.default_rng(5)
    taus = cam_thresholds(0.01)
    for _ in range(20):
        q = quantize_map(random_map(rng, 48))
        gt = random_boxes(rng, 48).astype(np.float64) + 0.5
        assert_same(box_sweep(q, gt, taus), reference_box_sweep(q, gt, taus))


def test_counts_with_a_process_pool_equal_serial() -> None:
    rng = np.random.default_rng(7)
    items = [(random_map(rng, 40), random_boxes(rng, 40)) for _ in range(16)]
    taus = cam_thresholds(0.01)
    serial = box_sweep_counts(items, taus, (30, 50, 70), workers=1)
    with sweep_pool(2) as pool:
        pooled = box_sweep_counts(items, taus, (30, 50, 70), pool=pool)
    assert serial[2] == pooled[2] == 16
    assert np.array_equal(serial[0], pooled[0]) and np.array_equal(serial[1], pooled[1])
    manual = sum(reference_box_sweep(m, g, taus).multi.astype(np.int64) for m, g in items)
    assert np.array_equal(serial[0], manual)


def test_counts_prepare_raw_maps() -> None:
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(7, 7))
    gt = np.array([[3, 3, 20, 20]])
    taus = cam_thresholds(0.01)
    multi, largest, count = box_sweep_counts([(raw, gt)], taus, (50,), size=32)
    from camexp.localization import prepare_map

    ref = reference_box_sweep(prepare_map(raw, 32), gt, taus, (50,))
    assert count == 1
    assert np.array_equal(multi[0], ref.multi[0]) and np.array_equal(largest[0], ref.largest[0])
