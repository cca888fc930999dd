"""A paper's own box rule (localization.box_rule): the box of a hand-made map, the accuracies
it counts, and the refusals of a bad rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camexp.core.errors import ConfigError
from camexp.localization.box_rule import BoxRule, RuleLocalization

# a 10 x 10 map: a large blob (rows 1-5, columns 1-4, value 1) and a smaller, weaker one (row 8,
# columns 6-9, value 0.5); 0 elsewhere
MAP = np.zeros((10, 10))
MAP[1:6, 1:5] = 1.0
MAP[8, 6:10] = 0.5


@pytest.mark.parametrize("rule", ["largest_component", "largest_contour"])
def test_the_box_of_the_largest_region_above_the_threshold(rule: str) -> None:
    for resize in ("bicubic", "bilinear"):
        # at the map's own size no interpolation happens: the regions are the blobs
        assert BoxRule(rule, 0.3, resize=resize).box(MAP, (10, 10)).tolist() == [1, 1, 5, 6]
        # above 0.6 only the large blob is left; at 0.99 of the maximum too (strict: > 0.99)
        assert BoxRule(rule, 0.6, resize=resize).box(MAP, (10, 10)).tolist() == [1, 1, 5, 6]
    # nothing above the threshold: the empty box
    assert BoxRule(rule, 0.5).box(np.zeros((4, 4)), (4, 4)).tolist() == [0, 0, 0, 0]


def test_the_interpolation_and_the_normalization_come_first() -> None:
    small = np.array([[0.0, 0.0], [0.0, 4.0]])  # the peak at the bottom right, any scale
    bilinear = BoxRule("largest_component", 0.5, resize="bilinear").normalized(small, (4, 4))
    bicubic = BoxRule("largest_component", 0.5, resize="bicubic").normalized(small, (4, 4))
    assert bilinear.max() == 1.0 and bilinear.min() == 0.0 and bicubic.max() == 1.0
    assert not np.allclose(bilinear, bicubic)
    assert BoxRule("largest_component", 0.5, resize="bilinear").box(small, (4, 4)).tolist() == [2, 2, 3, 3]


def _batch():
    """Two images, 3 classes; image 0 labelled 1, image 1 labelled 2. The right map of a class
    covers the box (rows/columns 0-4 of a 10 x 10 image), the wrong one the opposite corner."""
    right, wrong = torch.zeros(10, 10), torch.zeros(10, 10)
    right[0:5, 0:5] = 1.0
    wrong[6:10, 6:10] = 1.0
    boxes = torch.tensor([[[0.0, 0.0, 4.0, 4.0]], [[0.0, 0.0, 4.0, 4.0]]])
    return right, wrong, boxes, torch.tensor([1, 1]), torch.tensor([1, 2])


def test_top1_top5_and_gt_known_under_the_rule() -> None:
    right, wrong, boxes, num_boxes, labels = _batch()
    metric = RuleLocalization(BoxRule("largest_component", 0.5), image_size=(10, 10))
    # image 0: predicted [1, 0] (right class first, right map); image 1: predicted [0, 2]:
    # top-1 wrong, the label second with a right map
    topk = torch.tensor([[1, 0], [0, 2]])
    topk_maps = torch.stack([torch.stack([right, wrong]), torch.stack([wrong, right])])
    metric.update(torch.stack([right, right]), topk, labels, boxes, num_boxes, topk_maps)
    assert {k: float(v) for k, v in metric.compute().items()} == {
        "top1_loc": 50.0, "top5_loc": 100.0, "gt_known_loc": 100.0}
    # GT-known from the top-1 prediction's map (as SCM's code): image 1's top-1 map is wrong
    by_prediction = RuleLocalization(BoxRule("largest_component", 0.5, gt_known_map="top1_prediction"),
                                     image_size=(10, 10))
    by_prediction.update(torch.stack([right, right]), topk, labels, boxes, num_boxes, topk_maps)
    assert float(by_prediction.compute()["gt_known_loc"]) == 50.0


def test_a_bad_rule_is_named() -> None:
    cases = [({"rule": "largest_blob", "threshold": 0.2}, "localization.box_rule.rule='largest_blob' is not allowed"),
             ({"rule": "largest_component", "threshold": 1.5},
              "localization.box_rule.threshold=1.5 must be a number in [0, 1)"),
             ({"rule": "largest_component", "threshold": 0.2, "resize": "nearest"},
              "localization.box_rule.resize='nearest' is not allowed"),
             ({"rule": "largest_component", "threshold": 0.2, "iou": 50},
              "localization.box_rule.iou=50 must be a number in (0, 1]"),
             ({"rule": "largest_component", "threshold": 0.2, "tau": 1},
              "localization.box_rule has unknown keys ['tau']")]
    for config, message in cases:
        with pytest.raises(ConfigError) as error:
            BoxRule.from_config(config, ConfigError)
        assert message in str(error.value)
    assert BoxRule.from_config({"rule": "largest_contour", "threshold": 0.1}) == BoxRule("largest_contour", 0.1)
