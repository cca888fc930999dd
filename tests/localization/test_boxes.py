from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import (
    BoxError,
    box_iou,
    check_boxes,
    contour_boxes,
    mask_boxes,
    paper_box,
    scale_boxes,
)


def test_single_blob() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[4:9, 10:17] = True  # rows 4..8, cols 10..16
    boxes, areas = contour_boxes(mask)
    assert boxes.tolist() == [[10, 4, 17, 9]]  # (x, y, x + w, y + h)
    assert areas.tolist() == [6.0 * 4.0]  # polygon through the border pixel centres
    assert mask_boxes(mask, multi_contour=False).tolist() == [[10, 4, 17, 9]]


def test_two_blobs_all_boxes_and_largest() -> None:
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[2:7, 2:7] = 1  # 5x5
    mask[10:13, 10:13] = 1  # 3x3
    boxes = mask_boxes(mask, multi_contour=True)
    assert sorted(boxes.tolist()) == [[2, 2, 7, 7], [10, 10, 13, 13]]
    assert mask_boxes(mask, multi_contour=False).tolist() == [[2, 2, 7, 7]]


def test_ring_hole_contour_counts() -> None:
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[1:8, 1:8] = 1
    mask[3:6, 3:6] = 0  # hole: rows/cols 3..5
    boxes, areas = contour_boxes(mask)
    # outer contour (clipped to W - 1 = 8) and the hole contour (hole extent grown by 1 pixel)
    assert boxes.tolist() == [[1, 1, 8, 8], [2, 2, 7, 7]]
    assert areas.tolist() == [36.0, 14.0]
    gt = np.array([[2, 2, 7, 7]])
    assert box_iou(mask_boxes(mask, multi_contour=True), gt).max() == 1.0
    # V1 only sees the outer contour: IoU 36 / 64
    assert box_iou(mask_boxes(mask, multi_contour=False), gt).max() == 36 / 64


def test_empty_mask_gives_zero_box() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    boxes, areas = contour_boxes(mask)
    assert boxes.shape == (0, 4) and areas.shape == (0,)
    assert mask_boxes(mask).tolist() == [[0, 0, 0, 0]]
    assert mask_boxes(mask, multi_contour=False).tolist() == [[0, 0, 0, 0]]


def test_boxes_at_the_image_border_are_clipped() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[6:10, 8:12] = True  # touches the bottom and right borders
    assert mask_boxes(mask).tolist() == [[8, 6, 11, 9]]  # x + w = 12 -> 11, y + h = 10 -> 9
    mask[:] = True
    assert mask_boxes(mask).tolist() == [[0, 0, 11, 9]]


def test_paper_box_takes_largest_component_above_fraction() -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    strong = np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / (2 * 4.0**2))
    weak_low = 0.15 * np.exp(-((xx - 45) ** 2 + (yy - 45) ** 2) / (2 * 12.0**2))
    # the weak blob never exceeds 20% of the max: only the strong blob counts
    box = paper_box(strong + weak_low, 0.2)
    expected = paper_box(strong, 0.2)
    assert box.tolist() == expected.tolist()
    assert 8 <= box[0] <= 12 and 20 <= box[2] <= 24
    # a weaker but wider blob above 20% of the max is the larger component: it wins
    weak_wide = 0.6 * np.exp(-((xx - 45) ** 2 + (yy - 45) ** 2) / (2 * 9.0**2))
    box = paper_box(strong + weak_wide, 0.2)
    assert box[0] > 30 and box[1] > 30
    # a higher fraction drops the weak blob again
    assert paper_box(strong + weak_wide, 0.7).tolist() == paper_box(strong, 0.7).tolist()


def test_paper_box_hand_case_and_empty() -> None:
    m = np.zeros((10, 10))
    m[2:5, 3:8] = 1.0  # 15 pixels
    m[7, 7] = 0.5  # 1 pixel, above 20%
    assert paper_box(m, 0.2).tolist() == [3, 2, 8, 5]
    assert paper_box(np.zeros((4, 4)), 0.2).tolist() == [0, 0, 0, 0]


def test_scale_boxes_floors_like_the_field() -> None:
    boxes = np.array([[60, 27, 385, 331], [0, 0, 500, 400]], dtype=np.float64)
    out = scale_boxes(boxes, (500, 400), 224)
    assert out.dtype == np.int64
    assert out.tolist() == [
        [int(60 * 224 / 500), int(27 * 224 / 400), int(385 * 224 / 500), int(331 * 224 / 400)],
        [0, 0, 224, 224],
    ]


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        (np.zeros((0, 4)), "no ground-truth box"),
        (np.array([[5, 5, 3, 8]]), "x1 < x0"),
        (np.array([[-1, 0, 3, 3]]), "negative"),
        (np.array([[0, 0, 30, 3]]), "outside the image"),
        (np.array([[0, 0, 3]]), "shape"),
    ],
)
def test_check_boxes_errors(boxes: np.ndarray, match: str) -> None:
    with pytest.raises(BoxError, match=match) as info:
        check_boxes(boxes, width=20, height=20, where="image id 'a.jpg'")
    if boxes.ndim == 2 and boxes.shape[1] == 4:
        assert "image id 'a.jpg'" in str(info.value)


def test_check_boxes_accepts_border() -> None:
    assert check_boxes(np.array([[0, 0, 20, 20]]), width=20, height=20).shape == (1, 4)
