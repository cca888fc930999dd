"""The compiled sweep (``_sweep_kernel``) against the reference on the cases it treats apart:
holes, islands inside holes (the traced fallback), nested rings, plateaus, ties, tiny maps,
many small blobs; and the OpenCV path that runs without numba or with float boxes."""

from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import box_sweep, cam_thresholds, quantize_map, reference_box_sweep
from camexp.localization import fast as fast_module
from camexp.localization.random_maps import random_boxes, random_map

pytest.importorskip("numba")

TAUS = cam_thresholds(0.01)
IOUS = (30, 50, 70)


def check(q: np.ndarray, gt, taus: np.ndarray = TAUS, ious=IOUS) -> None:
    gt = np.asarray(gt)
    fast = box_sweep(q, gt, taus, ious)
    ref = reference_box_sweep(q, gt, taus, ious)
    assert np.array_equal(fast.multi, ref.multi)
    assert np.array_equal(fast.largest, ref.largest)


@pytest.fixture
def traced_calls(monkeypatch):
    """Counts the levels that the fast path hands to OpenCV (islands left open)."""
    calls = []
    original = fast_module._traced_best

    def counting(quantized, levels, gts):
        calls.append(len(levels))
        return original(quantized, levels, gts)

    monkeypatch.setattr(fast_module, "_traced_best", counting)
    return calls


def volcano() -> np.ndarray:
    """A ring (200) around a moat (0) around a peak (255 inside 120)."""
    q = np.full((40, 40), 30, dtype=np.uint8)
    q[5:35, 5:35] = 200
    q[9:31, 9:31] = 0
    q[15:25, 15:25] = 120
    q[18:22, 18:22] = 255
    return q


def test_island_inside_a_hole_is_traced(traced_calls) -> None:
    q = volcano()
    # the island's box: only an island reaches IoU 1, the ring's boxes stay far below
    check(q, [[15, 15, 25, 25]])
    assert sum(traced_calls) > 0
    # a box far from the hole: the bound settles every level, nothing traced
    traced_calls.clear()
    check(q, [[0, 0, 3, 3]])
    assert sum(traced_calls) == 0


@pytest.mark.parametrize(
    "gt",
    [[[5, 5, 35, 35]], [[8, 8, 32, 32]], [[15, 15, 25, 25]], [[18, 18, 22, 22]], [[0, 0, 39, 39]]],
)
def test_volcano_against_reference(gt) -> None:
    check(volcano(), gt, cam_thresholds())


def test_nested_rings_and_islands() -> None:
    q = np.zeros((48, 48), dtype=np.uint8)
    for k, value in enumerate((60, 0, 140, 0, 220, 0, 255)):
        q[3 * k + 2 : 46 - 3 * k, 3 * k + 2 : 46 - 3 * k] = value
    for gt in ([[2, 2, 46, 46]], [[5, 5, 42, 42]], [[11, 11, 36, 36]], [[20, 20, 27, 27]]):
        check(q, gt, cam_thresholds())


def test_binary_masks_with_many_blobs_holes_and_ties() -> None:
    # salt and pepper: many 1-pixel blobs and holes, diagonal contacts, equal-area ties
    rng = np.random.default_rng(11)
    for _ in range(60):
        h, w = rng.integers(2, 40, 2)
        q = np.where(rng.random((h, w)) < rng.uniform(0.2, 0.8), 255, 0).astype(np.uint8)
        check(q, random_boxes(rng, int(min(h, w))), cam_thresholds(0.1))


def test_few_level_noise_maps() -> None:
    # plateaus at a few levels: holes and islands appear and vanish between levels
    rng = np.random.default_rng(12)
    for _ in range(60):
        size = int(rng.integers(8, 48))
        levels = rng.integers(2, 6)
        q = (rng.integers(0, levels, (size, size)) * (255 // (levels - 1))).astype(np.uint8)
        gts = [random_boxes(rng, size)]
        # boxes on the map's structures: the extent of a random level set
        ys, xs = np.nonzero(q == q[rng.integers(size), rng.integers(size)])
        gts.append(np.array([[xs.min(), ys.min(), xs.max(), ys.max()]]))
        for gt in gts:
            check(q, gt, cam_thresholds(0.02))


def test_tiny_maps_and_max_zero() -> None:
    rng = np.random.default_rng(13)
    for shape in [(1, 1), (1, 7), (7, 1), (2, 2), (2, 5), (3, 3)]:
        for _ in range(5):
            q = rng.integers(0, 256, shape).astype(np.uint8)
            h, w = shape
            check(q, [[0, 0, w - 1, h - 1]], cam_thresholds())
            check(q, [[0, 0, 0, 0]], cam_thresholds())
        check(np.zeros(shape, dtype=np.uint8), [[0, 0, 0, 0]], cam_thresholds())
        check(np.full(shape, 255, dtype=np.uint8), [[0, 0, w - 1, h - 1]], cam_thresholds())


def test_out_of_range_thresholds_and_boxes() -> None:
    rng = np.random.default_rng(14)
    q = quantize_map(random_map(rng, 32))
    taus = np.array([-0.5, 0.0, 0.3, 0.999, 1.0, 1.5])
    check(q, [[-5, -5, 40, 40]], taus)
    check(q, [[10, 10, 12, 12], [30, 0, 31, 31]], taus)


def test_non_contiguous_map() -> None:
    rng = np.random.default_rng(15)
    q = quantize_map(random_map(rng, 64))
    check(q.T, random_boxes(rng, 64))
    check(q[::2, 1::2], random_boxes(rng, 32))


def test_opencv_path_without_numba(monkeypatch) -> None:
    monkeypatch.setattr(fast_module, "_kernel", lambda: None)
    rng = np.random.default_rng(16)
    for _ in range(40):
        size = int(rng.integers(16, 64))
        check(quantize_map(random_map(rng, size)), random_boxes(rng, size))
