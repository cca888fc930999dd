"""A later paper's own box rule (``localization.box_rule``): TS-CAM's largest contour of the
quantized map, bilinear resizing, SCM's GT-known on the top-1 predicted class's map, and the
accuracies those papers report."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from camexp.localization import PaperLocalization, normalize_map
from camexp.localization.box_rule import BoxRule, RuleLocalization
from camexp.localization.boxes import largest_contour_box, paper_box


def test_largest_contour_box_quantizes_and_keeps_the_contour_of_largest_area() -> None:
    score = np.zeros((20, 20))
    score[2:6, 2:12] = 1.0      # a wide bar: area 27 by cv2.contourArea (9 x 3)
    score[10:19, 14:18] = 0.6   # a tall bar: area 24 (3 x 8)
    score[15, 2] = 0.05         # below 0.1 x max after quantization: int(0.1 * 255) = 25 > 12
    assert largest_contour_box(score, 0.1).tolist() == [2, 2, 12, 6]
    # at 0.7 the tall bar (0.6 -> 153 <= int(0.7 * 255) = 178) is gone
    assert largest_contour_box(score, 0.7).tolist() == [2, 2, 12, 6]
    # the 2016 rule counts pixels instead: the wide bar has 40, the tall one 36
    assert paper_box(score, 0.1).tolist() == [2, 2, 12, 6]
    score[10:19, 14:19] = 0.6   # now 45 pixels (area 32): largest for both rules
    assert largest_contour_box(score, 0.1).tolist() == [14, 10, 19, 19]
    assert paper_box(score, 0.1).tolist() == [14, 10, 19, 19]
    assert largest_contour_box(np.zeros((8, 8)), 0.1).tolist() == [0, 0, 0, 0]


def test_the_quantization_is_the_rule_of_tscams_code() -> None:
    """Pixels kept: uint8(map * 255) > int(threshold * max of that) (strict)."""
    score = np.full((10, 10), 0.1)
    score[3:7, 3:7] = 1.0
    score[0, 0] = 25.5 / 255  # quantizes to 25 = int(0.1 * 255): not kept
    score[9, 9] = 26.5 / 255  # 26: kept, a one-pixel contour of area 0
    assert largest_contour_box(score, 0.1).tolist() == [3, 3, 7, 7]


def test_bilinear_resize_is_opencvs_before_the_min_max() -> None:
    raw = np.array([[0.0, 1.0], [2.0, 5.0]])
    resized = cv2.resize(raw, (8, 8), interpolation=cv2.INTER_LINEAR)
    expected = (resized - resized.min()) / (resized.max() - resized.min())
    np.testing.assert_allclose(normalize_map(raw, 8, "bilinear"), expected)
    assert not np.allclose(normalize_map(raw, 8, "bilinear"), normalize_map(raw, 8))


def _maps() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 16x16 images: the ground truth's map and the top-2 maps. Image 0 is predicted right
    (top-1 = label 3); image 1 wrong (top-1 = 4, its map on the object; label 2 second, its
    map off it)."""
    on = torch.zeros(16, 16)
    on[4:12, 4:12] = 1.0
    off = torch.zeros(16, 16)
    off[0:3, 12:16] = 1.0
    gt_maps = torch.stack([on, off])
    top_maps = torch.stack([torch.stack([on, off]), torch.stack([on, off])])
    return gt_maps, top_maps


def test_own_rule_reports_accuracies_and_scms_gt_known_uses_the_prediction() -> None:
    gt_maps, top_maps = _maps()
    boxes = torch.tensor([[[4, 4, 11, 11]], [[4, 4, 11, 11]]])
    args = (gt_maps, torch.tensor([[3, 1], [4, 2]]), torch.tensor([3, 2]), boxes, torch.tensor([1, 1]))
    tscam = BoxRule(rule="largest_contour", threshold=0.1, resize="bilinear")
    truth = RuleLocalization(tscam, image_size=16)
    truth.update(*args, top_maps)
    assert {k: float(v) for k, v in truth.compute().items()} == {"top1_loc": 50.0, "top5_loc": 50.0,
                                                                 "gt_known_loc": 50.0}
    scm = BoxRule(rule="largest_contour", threshold=0.1, resize="bilinear", gt_known_map="top1_prediction")
    predicted = RuleLocalization(scm, image_size=16)
    predicted.update(*args, top_maps)
    # image 1: the wrongly predicted class's map sits on the object, so SCM's GT-known counts it
    assert float(predicted.compute()["gt_known_loc"]) == 100.0
    assert float(predicted.compute()["top1_loc"]) == 50.0
    errors = PaperLocalization(fraction=0.2, image_size=16)
    errors.update(*args, topk_maps=top_maps)
    assert set(errors.compute()) == {"loc_top1_err", "loc_top5_err", "loc_gt_known"}
    with pytest.raises(ValueError, match=r"localization.box_rule.rule"):
        BoxRule.from_config({"rule": "largest", "threshold": 0.1})
