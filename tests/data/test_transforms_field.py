"""The run's evaluation transform scales boxes and resizes masks as the field's offline
evaluation does (``camexp.eval_maps``), so a run's saved maps score the same numbers there."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from camexp.data.transforms import EvalTransform, resize_mask
from camexp.localization.boxes import scale_boxes as field_scale_boxes


def test_eval_boxes_are_scaled_with_the_fields_arithmetic() -> None:
    # float32 x * (224 / 166) puts x = 83 at 111.99..., floored to 111; the field gets 112
    transform = EvalTransform((224, 224))
    for width in (135, 166, 184, 375, 500):
        xs = torch.arange(width + 1, dtype=torch.float32)
        boxes = torch.stack([xs, xs * 0, xs, xs * 0], dim=1)
        ours = transform.apply_boxes(boxes, (width, width), (0, 0, False)).numpy()
        field = field_scale_boxes(boxes.numpy(), (width, width), 224)
        np.testing.assert_array_equal(ours, field)
    one = transform.apply_boxes(torch.tensor([[83.0, 10.0, 166.0, 50.0]]), (100, 166), (0, 0, False))
    assert one.tolist() == [[112.0, 22.0, 224.0, 112.0]]


def test_masks_are_resized_as_opencv_nearest() -> None:
    rng = np.random.default_rng(0)
    for (h, w), size in [((128, 128), (112, 112)), ((375, 500), (224, 224)), ((100, 77), (224, 224))]:
        mask = ((rng.random((h, w)) > 0.5) * 255).astype(np.uint8)
        ours = resize_mask(torch.from_numpy(mask), size).numpy()
        field = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(ours, field)
