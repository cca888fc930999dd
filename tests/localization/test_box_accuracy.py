"""The box-accuracy accumulator: counts of one sweep per map, V1 from the same sweep, sums."""

from __future__ import annotations

import numpy as np
import pytest

from camexp.localization import cam_thresholds, reference_box_sweep
from camexp.localization.box_accuracy import BoxAccuracy, curve_columns
from camexp.localization.random_maps import random_boxes, random_map

TAUS = cam_thresholds(0.25)  # 0, 0.25, 0.5, 0.75


def ring_map() -> np.ndarray:
    """A 1-valued ring (outer 20..79, hole 30..69) on a 100x100 map: its largest contour's box
    is the outer one (20, 20, 80, 80), the hole's contour box is (29, 29, 71, 71)."""
    m = np.zeros((100, 100))
    m[20:80, 20:80] = 1.0
    m[30:70, 30:70] = 0.0
    return m


def test_hand_case_v1_is_the_largest_contour_at_iou_50() -> None:
    # ground truth = the hole's box: every contour's best box hits it (IoU 1), the largest
    # contour's box has IoU 43 * 43 / 61 ** 2 = 0.497: right at 30, wrong at 50
    sweep = reference_box_sweep(ring_map(), np.array([[29, 29, 71, 71]]), TAUS, [30, 50, 70])
    accuracy = BoxAccuracy(TAUS, [30, 70])
    assert accuracy.sweep_ious == [30.0, 50.0, 70.0]
    accuracy.add_sweep(sweep)
    miss = reference_box_sweep(ring_map(), np.array([[0, 0, 9, 9]]), TAUS, [30, 50, 70])
    accuracy.add_sweep(miss)
    np.testing.assert_array_equal(accuracy.correct, [[1, 1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(accuracy.correct_v1, [0, 0, 0, 0])
    assert accuracy.num_images == 2
    assert accuracy.results() == {
        "MaxBoxAcc": 0.0, "MaxBoxAcc_best_tau": 0.0,
        "MaxBoxAccV2": 50.0, "MaxBoxAccV2_IoU30": 50.0, "MaxBoxAccV2_IoU70": 50.0,
        "MaxBoxAccV2_best_tau_IoU30": 0.0, "MaxBoxAccV2_best_tau_IoU70": 0.0,
    }  # fmt: skip
    # the largest contour only: the outer box passes at 30, fails at 70
    single = BoxAccuracy(TAUS, [30, 70], multi_contour=False)
    single.add_sweep(sweep)
    np.testing.assert_array_equal(single.correct, [[1, 1, 1, 1], [0, 0, 0, 0]])
    columns = curve_columns(single.curve())
    assert list(columns) == ["MaxBoxAcc_IoU50", "MaxBoxAccV2_IoU30", "MaxBoxAccV2_IoU70"]
    np.testing.assert_array_equal(columns["MaxBoxAccV2_IoU30"], [100.0] * 4)


def test_best_tau_is_the_first_maximum_and_v1_alone() -> None:
    accuracy = BoxAccuracy(TAUS, [50], v1=False, name="MaxBoxAcc")
    assert accuracy.sweep_ious == [50.0] and accuracy.correct_v1 is None
    counts = np.array([[0, 3, 3, 1]])
    accuracy.add(counts, counts, num_images=4)
    assert accuracy.results() == {"MaxBoxAcc": 75.0, "MaxBoxAcc_best_tau": 0.25}
    assert list(curve_columns(accuracy.curve())) == ["MaxBoxAcc_IoU50"]


def test_halves_sum_to_the_whole_and_counts_round_trip() -> None:
    rng = np.random.default_rng(4)
    items = [(random_map(rng, 40), random_boxes(rng, 40)) for _ in range(8)]
    taus = cam_thresholds(0.02)
    whole, first, second = (BoxAccuracy(taus) for _ in range(3))
    for index, (score_map, gt) in enumerate(items):
        sweep = reference_box_sweep(score_map, gt, taus, whole.sweep_ious)
        whole.add_sweep(sweep)
        (first if index < 3 else second).add_sweep(sweep)
    summed = whole.with_counts(first.correct + second.correct,
                               first.correct_v1 + second.correct_v1,
                               first.num_images + second.num_images)
    assert summed.results() == whole.results()
    assert whole.empty().num_images == 0 and not whole.empty().correct.any()


def test_no_image_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no image was evaluated"):
        BoxAccuracy(TAUS).results()
